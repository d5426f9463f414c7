"""One process polls and delivers for a store at a time: a second ``run``, or a ``once`` started
while the daemon runs (by hand, or by cron), stops with one line instead of re-sending what the
daemon has in flight. Real daemon processes, a slow stand-in Slack, the recorded HF page.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from monitor.store import open_store
from tests.daemon_support import Daemon, cli, source, unsent, wait_for, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port
from tests.slack_standin import SlackStandIn

SEND_DELAY = 1.5
RULES = '[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["team"]\n'


class SlowSlack(SlackStandIn):
    """The stand-in Slack API, answering each post after SEND_DELAY; ``sending`` is set while one is
    in flight."""

    def __init__(self) -> None:
        self.sending = threading.Event()
        super().__init__()

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        self.sending.set()
        time.sleep(SEND_DELAY)
        try:
            return super()._answer(path, headers, raw)
        finally:
            self.sending.clear()


def _config(tmp: Path, replay: ReplayServer, slack: SlackStandIn, port: int) -> Path:
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    channels = (f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\n'
                f'channel = "#papers"\nbase_url = "{slack.base_url}"\ntimeout = 10\n')
    return write_config(tmp, port=port, sources=source("hf", replay.url("/papers"), every="1h"),
                        channels=channels, rules=RULES)


def _posts(slack: SlackStandIn) -> Counter[str]:
    """How often each message (by its text) reached Slack."""
    return Counter(json.dumps(m.payload.get("blocks"), sort_keys=True) for m in slack.messages)


@pytest.mark.slow
def test_once_while_the_daemon_sends_refuses_and_nothing_is_sent_twice(
    tmp_path: Path, replay: ReplayServer
) -> None:
    slack = SlowSlack()
    port = free_port()
    config = _config(tmp_path, replay, slack, port)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(slack.sending.is_set, 20, "the daemon's first Slack post in flight")
        polls = replay.hits("/papers")

        once = cli(config, "once")

        assert once.returncode == 1, once
        lines = once.stderr.strip().splitlines()
        assert len(lines) == 1, once.stderr
        holder = f"another paper-monitor (run, pid {daemon.proc.pid} on "
        assert lines[0].startswith(f"paper-monitor once: {holder}"), lines[0]
        assert "Traceback" not in once.stderr
        assert replay.hits("/papers") == polls  # it did not poll either

        status = cli(config, "status")  # looking is fine while the daemon runs, and says so
        assert status.returncode == 0, status.stderr
        last = status.stdout.splitlines()[-1]
        assert last.startswith(f"daemon: running (run, pid {daemon.proc.pid} on "), status.stdout

        second = Daemon(config, free_port())
        assert second.proc.wait(timeout=30) == 1
        second.kill()  # (closes its log)
        assert holder in second.log_text()

        wait_for(lambda: unsent(tmp_path) == 0, 60, "the daemon to deliver everything")
    finally:
        code, _ = daemon.stop()
        slack.close()
    assert code == 0
    assert cli(config, "status").stdout.splitlines()[-1].startswith("daemon: not running")
    posts = _posts(slack)
    assert posts and max(posts.values()) == 1, posts


@pytest.mark.slow
def test_a_killed_daemon_leaves_no_lock_behind(tmp_path: Path, replay: ReplayServer) -> None:
    slack = SlackStandIn()
    port = free_port()
    config = _config(tmp_path, replay, slack, port)
    try:
        first = Daemon(config, port)
        first.wait_up()
        first.kill()  # SIGKILL: no clean-up of any kind runs
        again = Daemon(config, port)
        try:
            again.wait_up()
            assert again.proc.poll() is None
        finally:
            code, _ = again.stop()
        assert code == 0
        once = cli(config, "once")
        assert once.returncode == 0, once.stderr
    finally:
        slack.close()


def _lock_file(tmp: Path) -> Path:
    return tmp / "monitor.db.lock"


@pytest.mark.slow
def test_a_deleted_lock_file_is_made_again_and_once_still_stops(tmp_path: Path, replay: ReplayServer) -> None:
    slack = SlackStandIn()
    port = free_port()
    config = _config(tmp_path, replay, slack, port)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        _lock_file(tmp_path).unlink()  # an operator clearing "stale" lock files

        mine = f"run, pid {daemon.proc.pid} on "
        wait_for(lambda: _lock_file(tmp_path).exists() and _lock_file(tmp_path).read_text().startswith(mine),
                 10, "the daemon to lock a new lock file")
        once = cli(config, "once")
        assert once.returncode == 1, once
        assert f"another paper-monitor ({mine}" in once.stderr
        assert daemon.proc.poll() is None
    finally:
        code, _ = daemon.stop()
        slack.close()
    assert code == 0
    assert "was removed while this process held it; taken again" in daemon.log_text()


@pytest.mark.slow
@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_a_daemon_whose_store_file_is_removed_or_replaced_says_so_and_stops(
    tmp_path: Path, replay: ReplayServer, change: str
) -> None:
    slack = SlackStandIn()
    port = free_port()
    config = _config(tmp_path, replay, slack, port)
    store = tmp_path / "monitor.db"
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: bool(slack.messages) and unsent(tmp_path) == 0, 30, "the daemon's alerts")
        posts = _posts(slack)
        if change == "removed":  # an operator's clean-up
            for name in ("monitor.db", "monitor.db-wal", "monitor.db-shm"):
                (tmp_path / name).unlink(missing_ok=True)
        else:  # a backup put back in its place
            shutil.copy(store, tmp_path / "backup.db")
            os.replace(tmp_path / "backup.db", store)

        assert daemon.proc.wait(timeout=15) == 1
        errors = [r["message"] for r in daemon.log_records() if r["level"] == "error"]
        assert errors == [f"stopping: the store file {store} was {change}"
                          + (" by another file" if change == "replaced" else "")
                          + " while this process used it: what it records goes into "
                          + ("the file replaced (the next start opens the new one)" if change == "replaced"
                             else "a file nothing else can open (the next start makes a new, empty store "
                                  "there, unless it is put back first)")], daemon.log_text()
        assert _posts(slack) == posts  # nothing sent once the file was gone
    finally:
        daemon.kill()
    if change == "replaced":  # the next start goes on with the file put there: nothing alerted twice
        again = Daemon(config, port, log_name="again.log")
        try:
            again.wait_up()
            wait_for(lambda: bool(again.polls("hf")), 20, "a poll")
            time.sleep(3)  # (the dispatcher's turn)
        finally:
            code, _ = again.stop()
        assert code == 0 and _posts(slack) == posts
    slack.close()


@pytest.mark.slow
def test_a_daemon_whose_lock_another_process_took_stops_and_sends_nothing(
    tmp_path: Path, replay: ReplayServer
) -> None:
    slack = SlackStandIn()
    port = free_port()
    config = _config(tmp_path, replay, slack, port)
    replay.route("/papers", Reply(b"[]", headers={"Content-Type": "application/json"}))
    daemon = Daemon(config, port)
    other = open_store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        daemon.wait_up()
        wait_for(lambda: bool(daemon.polls("hf")), 20, "the daemon's first poll")
        daemon.proc.send_signal(signal.SIGSTOP)  # while it cannot look: its lock file goes,
        _lock_file(tmp_path).unlink()
        other.hold("once")  # another process locks a new one,
        replay.route("/papers", Reply(HF_JSON.read_bytes()))  # and there is something to send
        time.sleep(1.5)
        daemon.proc.send_signal(signal.SIGCONT)

        assert daemon.proc.wait(timeout=30) == 1
        log = daemon.log_text()
        assert "stopping: this daemon lost the store's lock: another paper-monitor (once, pid " in log, log
        assert not slack.messages
        other.close()

        once = cli(config, "once")  # nothing was lost: the next one to hold the lock sends it all
        assert once.returncode == 0, once.stderr
        assert unsent(tmp_path) == 0
        posts = _posts(slack)
        assert posts and max(posts.values()) == 1, posts
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGCONT)
        daemon.kill()
        other.close()
        slack.close()


@pytest.mark.slow
def test_a_second_daemon_naming_the_store_by_a_link_or_a_file_uri_exits_naming_the_holder(
    tmp_path: Path, replay: ReplayServer
) -> None:
    slack = SlowSlack()
    port = free_port()
    config = _config(tmp_path, replay, slack, port)
    real = tmp_path / "monitor.db"
    (tmp_path / "link.db").symlink_to(real)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(slack.sending.is_set, 20, "the daemon's first Slack post in flight")
        holder = f"another paper-monitor (run, pid {daemon.proc.pid} on "
        for name, url in (("link", f"sqlite:///{tmp_path}/link.db"),
                          ("uri", f"sqlite:///file:{real}?uri=true&mode=rw")):
            other = tmp_path / name
            other.mkdir()
            text = config.read_text().replace(f"sqlite:///{real}", url)
            assert url in text
            (other / "monitor.toml").write_text(text)
            second = Daemon(other / "monitor.toml", free_port())
            assert second.proc.wait(timeout=30) == 1, name
            second.kill()  # (closes its log)
            assert holder in second.log_text(), (name, second.log_text())
            once = cli(other / "monitor.toml", "once")
            assert once.returncode == 1, once
            assert once.stderr.startswith(f"paper-monitor once: {holder}"), once.stderr
        wait_for(lambda: unsent(tmp_path) == 0, 60, "the daemon to deliver everything")
    finally:
        code, _ = daemon.stop()
        slack.close()
    assert code == 0
    assert not (tmp_path / "link.db.lock").exists()
    posts = _posts(slack)
    assert posts and max(posts.values()) == 1, posts
