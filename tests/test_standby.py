"""``run --standby``: a second daemon for the same store serves the feeds and its health while the
first polls and delivers, and takes over when the first dies, sending what is new once and nothing
again. Real daemon processes, the recorded HF page, the Slack stand-in, feedparser.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import feedparser
import pytest

import monitor.standby as standby_module
from monitor.standby import Standby
from monitor.store import open_store
from tests.daemon_support import Daemon, cli, source, unsent, wait_for, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port
from tests.pg_support import PgServer
from tests.slack_standin import SlackStandIn

RULES = '[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["team", "feed"]\n'
LATE = "2606.13289"  # 25 upvotes: on the page only after the first daemon died


class Pair:
    """A daemon at work (``active``) and, once ``stand_by()`` is called, a standby: one store, two
    configs that differ in the port, a Slack stand-in and an rss channel."""

    def __init__(self, tmp: Path, replay: ReplayServer, database: str | None) -> None:
        self.tmp = tmp
        self.slack = SlackStandIn()
        channels = (f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{self.slack.token}"\n'
                    f'channel = "#papers"\nbase_url = "{self.slack.base_url}"\ntimeout = 10\n\n'
                    '[[channels]]\nname = "feed"\ntype = "rss"\n')
        hf = source("hf", replay.url("/papers"), every="1h")
        self.config = write_config(tmp, port=free_port(), sources=hf, channels=channels, rules=RULES)
        text = self.config.read_text(encoding="utf-8")
        if database is not None:
            text = re.sub(r'database = "[^"]*"', f'database = "{database}"', text)
            self.config.write_text(text, encoding="utf-8")
        self.standby_config = tmp / "standby.toml"
        listen = f'listen = "127.0.0.1:{free_port()}"'
        self.standby_config.write_text(re.sub(r'listen = "127\.0\.0\.1:\d+"', listen, text), encoding="utf-8")
        self.active = Daemon(self.config, _port(self.config))
        self.standby: Daemon | None = None
        self.code: int | None = None  # the standby's exit code, once stopped

    def stand_by(self) -> Daemon:
        port = _port(self.standby_config)
        self.standby = Daemon(self.standby_config, port, "--standby", log_name="standby.log")
        self.standby.wait_up()
        return self.standby

    def close(self) -> None:
        if self.active.proc.poll() is None:
            self.active.kill()
        self.code = self.standby.stop()[0] if self.standby is not None else 0
        self.slack.close()


@contextmanager
def pair(tmp: Path, replay: ReplayServer, database: str | None = None) -> Iterator[Pair]:
    both = Pair(tmp, replay, database)
    try:
        both.active.wait_up()
        yield both
    finally:
        both.close()


def _port(config: Path) -> int:
    return int(re.findall(r'listen = "127\.0\.0\.1:(\d+)"', config.read_text(encoding="utf-8"))[0])


def _slack_papers(slack: SlackStandIn) -> Counter[str]:
    """How many Slack messages each paper (by arXiv id) was in."""
    found: Counter[str] = Counter()
    for message in slack.messages:
        found.update(set(re.findall(r"\d{4}\.\d{5}", json.dumps(message.payload.get("blocks")))))
    return found


def _feed_ids(daemon: Daemon) -> set[str]:
    reply = daemon.get("/feeds/feed.xml")
    assert reply.status_code == 200, reply.text
    return {re.findall(r"\d{4}\.\d{5}", entry.link)[0] for entry in feedparser.parse(reply.content).entries}


def _health(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    reply = daemon.get("/healthz")
    return reply.status_code, reply.json()


@pytest.mark.slow
def test_a_standby_serves_the_feeds_then_takes_over_when_the_daemon_dies(
    tmp_path: Path, replay: ReplayServer
) -> None:
    items = json.loads(HF_JSON.read_bytes())
    hot = {item["paper"]["id"] for item in items if item["paper"].get("upvotes", 0) >= 10}
    replay.route("/papers", Reply(json.dumps([i for i in items if i["paper"]["id"] != LATE]).encode()))
    replay.route("/more", Reply(b"[]"))
    with pair(tmp_path, replay) as both:
        active, slack = both.active, both.slack
        wait_for(lambda: len(_slack_papers(slack)) == len(hot) - 1 and unsent(tmp_path) == 0, 30,
                 "the first daemon to deliver the hot papers")

        standby = both.stand_by()
        code, health = _health(standby)
        assert code == 200 and health["status"] == "standby", health
        assert f"run, pid {active.proc.pid} on " in health["active"]
        assert "paper_monitor_active 0.0" in standby.get("/metrics").text
        wait_for(lambda: _feed_ids(standby) == hot - {LATE}, 10, "the standby's feed")  # read from the store
        assert "standing by: another paper-monitor (run, pid" in standby.log_text()

        # While it stands by, an edit of its config is taken (a second source); it polls nothing.
        text = both.standby_config.read_text(encoding="utf-8")
        both.standby_config.write_text(text + "\n" + source("more", replay.url("/more"), every="1h"),
                                       encoding="utf-8")
        wait_for(lambda: "reloaded" in standby.log_text(), 10, "the standby to reload its config")
        time.sleep(2.5)  # more than a try of the lock
        assert replay.hits("/papers") == 1 and replay.hits("/more") == 0
        assert "taking over" not in standby.log_text()
        # status names both; the daemon at work counts the standby in its metrics.
        lines = cli(both.config, "status").stdout.splitlines()
        assert lines[-2].startswith(f"daemon: running (run, pid {active.proc.pid} on "), lines
        assert re.fullmatch(rf"standby: run --standby, pid {standby.proc.pid} on .+ \(heard from \d+s ago\)",
                            lines[-1]), lines
        wait_for(lambda: "paper_monitor_standbys 1.0" in active.get("/metrics").text, 15,
                 "the daemon at work to count the standby")

        replay.route("/papers", Reply(HF_JSON.read_bytes()))  # the late paper turns up
        active.kill()  # SIGKILL: the lock goes with the process

        wait_for(lambda: _slack_papers(slack).get(LATE) == 1, 30, "the standby to take over and alert")
        assert "taking over: the other paper-monitor (run, pid" in standby.log_text()
        wait_for(lambda: replay.hits("/more") == 1, 10, "the source added while standing by to be polled")
        wait_for(lambda: _feed_ids(standby) == hot, 10, "the late paper in the feed")
        wait_for(lambda: _health(standby)[1]["status"] == "ok", 10, "the healthz of an active daemon")
        assert "paper_monitor_active 1.0" in standby.get("/metrics").text
        status = cli(both.standby_config, "status")
        last = status.stdout.splitlines()[-1]  # the standby's line went with the takeover
        assert last.startswith(f"daemon: running (run, pid {standby.proc.pid} on "), status.stdout
        wait_for(lambda: "paper_monitor_standbys 0.0" in standby.get("/metrics").text, 15,
                 "no standby counted any more")
        time.sleep(1)
        papers = _slack_papers(slack)
        assert set(papers) == hot and max(papers.values()) == 1, papers  # each once, none twice
        assert replay.hits("/papers") == 2
    assert both.code == 0


@pytest.mark.slow
def test_a_standby_stops_at_once_and_leaves_the_store_to_the_daemon(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    with pair(tmp_path, replay) as both:
        standby = both.stand_by()
        code, took = standby.stop(signal.SIGTERM)
        both.standby = None
        assert code == 0 and took < 10
        log = standby.log_text()
        assert "standing by" in log and "taking over" not in log and "Traceback" not in log
        assert "standby:" not in cli(both.config, "status").stdout  # it took its line out
        once = cli(both.config, "once")
        assert once.returncode == 1 and f"(run, pid {both.active.proc.pid} on " in once.stderr  # still held
        assert both.active.proc.poll() is None
        code, _ = both.active.stop()
    assert code == 0


def test_a_standby_with_no_daemon_to_wait_for_is_the_daemon(tmp_path: Path, replay: ReplayServer) -> None:
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    slack = SlackStandIn()
    config = write_config(tmp_path, port=free_port(), sources=source("hf", replay.url("/papers"), every="1h"),
                          channels=f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\n'
                                   f'channel = "#papers"\nbase_url = "{slack.base_url}"\n',
                          rules='[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["team"]\n')
    daemon = Daemon(config, _port(config), "--standby")
    try:
        daemon.wait_up()
        wait_for(lambda: replay.hits("/papers") == 1 and unsent(tmp_path) == 0 and slack.messages != [], 30,
                 "a poll and its alerts")
        assert "paper-monitor running" in daemon.log_text() and "standing by" not in daemon.log_text()
    finally:
        code, _ = daemon.stop()
        slack.close()
    assert code == 0


@pytest.mark.slow
def test_a_standby_takes_over_a_postgresql_store(
    tmp_path: Path, replay: ReplayServer, pg_server: PgServer
) -> None:
    """On PostgreSQL the lock is the daemon's database session: it ends with the process."""
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    with pair(tmp_path, replay, database=pg_server.new_database()) as both:
        wait_for(lambda: replay.hits("/papers") == 1 and both.slack.messages != [], 30, "the first alerts")
        standby = both.stand_by()
        assert _health(standby)[1]["status"] == "standby"
        status = cli(both.config, "status").stdout
        assert f"standby: run --standby, pid {standby.proc.pid} on " in status, status
        sent = len(both.slack.messages)
        both.active.kill()
        wait_for(lambda: "taking over" in standby.log_text() and replay.hits("/papers") == 2, 30,
                 "the standby to take over and poll")
        wait_for(lambda: _health(standby)[1]["status"] == "ok", 10, "the healthz of an active daemon")
        time.sleep(1)
        assert len(both.slack.messages) == sent  # the page had nothing new: nothing is sent again
    assert both.code == 0


def test_status_tells_a_standby_not_heard_from_and_day_old_lines_go(tmp_path: Path, store_url: str) -> None:
    """A standby that was killed leaves its line: status says since when it has not been heard
    from; a line a day old goes when another standby writes its own."""
    config = write_config(tmp_path, port=free_port(), sources="", channels="", rules="")
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r'database = "[^"]*"', f'database = "{store_url}"', text), encoding="utf-8")
    now = time.time()
    store = open_store(store_url)
    try:
        store.note_standby("run --standby, pid 11 on a, since 2026-12-01 08:00 UTC", now - 3 * 86_400)
        store.note_standby("run --standby, pid 22 on b, since 2026-12-01 09:00 UTC", now - 600)
        store.note_standby("run --standby, pid 33 on c, since 2026-12-01 10:00 UTC", now - 3)
        assert [line.split(",")[1] for line, _ in store.standbys()] == [" pid 33 on c", " pid 22 on b"]
        store.note_standby("run --standby, pid 33 on c, since 2026-12-01 10:00 UTC", now)  # its next note
        assert len(store.standbys()) == 2
    finally:
        store.close()
    lines = cli(config, "status").stdout.splitlines()
    assert lines[-3] == "daemon: not running (no run or once holds the store)", lines
    fresh = r"standby: run --standby, pid 33 on c, since 2026-12-01 10:00 UTC \(heard from \ds ago\)"
    assert re.fullmatch(fresh, lines[-2]), lines
    stale = time.strftime("%Y-%m-%d %H:%M", time.localtime(now - 600))
    assert lines[-1] == (f"standby: run --standby, pid 22 on b, since 2026-12-01 09:00 UTC: not heard from "
                         f"since {stale} (stopped, or cannot reach the store)"), lines


def _rows(tmp: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(tmp / "monitor.db", timeout=5)
    try:
        with db:
            return db.execute(sql, args).fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_a_takeover_leaves_what_the_daemon_before_was_sending_to_it_for_a_while(
    tmp_path: Path, replay: ReplayServer
) -> None:
    """Its lock lost in a database outage, a daemon may still finish a send and record it: the batch
    it claimed just now is not sent again at once (a batch left from long ago is)."""
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    with pair(tmp_path, replay) as both:
        slack = both.slack
        wait_for(lambda: slack.messages != [] and unsent(tmp_path) == 0, 30, "the first alerts")
        both.stand_by()
        first = "SELECT min(id) FROM deliveries WHERE channel = ?"
        recent, old = _rows(tmp_path, first, "feed")[0][0], _rows(tmp_path, first, "team")[0][0]
        now = time.time()
        for delivery, claimed in ((recent, now), (old, now - 600)):
            _rows(tmp_path, "UPDATE deliveries SET state = 'sending', claimed_at = ?, sent_at = NULL"
                  " WHERE id = ?", claimed, delivery)
        before = _slack_papers(slack)
        paper = "SELECT p.arxiv_id FROM deliveries d JOIN papers p ON p.id = d.paper_id WHERE d.id = ?"
        old_paper = _rows(tmp_path, paper, old)[0][0]
        both.active.kill()

        wait_for(lambda: _slack_papers(slack)[old_paper] == before[old_paper] + 1, 30,
                 "the takeover to send again the batch left long ago")
        time.sleep(3)
        assert _rows(tmp_path, "SELECT state FROM deliveries WHERE id = ?", recent) == [("sending",)]
    assert both.code == 0


@pytest.mark.slow
def test_after_a_database_outage_the_daemon_that_held_the_store_takes_it_back(
    tmp_path: Path, replay: ReplayServer, pg_server: PgServer
) -> None:
    """The outage ends the session that held the lock, so the lock is free when the database is
    back: the standby leaves it to that daemon for a while instead of racing it for the work."""
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    with pair(tmp_path, replay, database=pg_server.new_database()) as both:
        wait_for(lambda: both.slack.messages != [], 30, "the first alerts")
        standby = both.stand_by()
        pg_server.pause()  # every session ends, the lock's with them
        try:
            wait_for(lambda: "the store does not answer" in standby.log_text(), 10, "the standby to notice")
        finally:
            pg_server.resume()
        wait_for(lambda: "taken again" in both.active.log_text(), 20, "the daemon to take its lock back")
        time.sleep(2)
        assert both.active.proc.poll() is None
        assert "paper_monitor_active 1.0" in both.active.get("/metrics").text
        assert _health(standby)[1]["status"] == "standby"
        assert "the store answers again" in standby.log_text() and "taking over" not in standby.log_text()
    assert both.code == 0


def test_a_standby_tries_the_lock_only_a_while_after_the_store_answers_again(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standby_module, "QUIET", 1.5)
    store = open_store(pg_server.new_database())
    try:
        waiting = Standby("run, pid 1 on elsewhere")
        pg_server.pause()
        try:
            assert not waiting.try_take(store)  # the store does not answer
        finally:
            pg_server.resume()
        assert not waiting.try_take(store)  # it answers: the lock is left to its holder a while
        assert not waiting.try_take(store)
        time.sleep(1.6)
        assert waiting.try_take(store)  # nobody took it back: it is this process's now
        assert store.holder() is not None
    finally:
        store.close()


def test_a_standby_on_sqlite_tries_the_lock_without_waiting_for_it(tmp_path: Path) -> None:
    # Its turns come every 2 s; a try that waited as long made the scheduler skip every other turn,
    # with a warning each time (21,000 a day).
    url = f"sqlite:///{tmp_path}/monitor.db"
    active, other = open_store(url), open_store(url)
    try:
        active.hold("run")
        waiting = Standby(active.holder() or "")
        began = time.monotonic()
        assert not waiting.try_take(other)
        assert time.monotonic() - began < 0.5
        active.close()
        assert waiting.try_take(other)
    finally:
        active.close()
        other.close()
