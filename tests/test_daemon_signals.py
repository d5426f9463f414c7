"""Signals that reach ``paper-monitor`` while its code still loads (a second or more on a slow
machine): a SIGHUP neither kills the daemon nor is lost, a SIGTERM stops it cleanly, and the other
commands end at a SIGTERM as before."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_support import Daemon, source, wait_for, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port

# Loaded first by every Python process started with it on PYTHONPATH: the import of monitor.cli
# (and so everything but the entry point) takes a few seconds, and says when it begins.
SLOW_LOADING = """
import importlib.abc, os, sys, time

class _Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "monitor.cli":
            open(os.environ["LOADING_MARK"], "w").close()
            time.sleep(3)
        return None

sys.meta_path.insert(0, _Slow())
"""


@pytest.fixture
def mark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file made when a process (started from now on) begins to load monitor.cli."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_LOADING)
    monkeypatch.setenv("PYTHONPATH", str(hook))
    monkeypatch.setenv("LOADING_MARK", str(tmp_path / "loading"))
    return tmp_path / "loading"


def _config(tmp_path: Path, replay: ReplayServer, port: int) -> Path:
    replay.route("/hf", Reply(HF_JSON.read_bytes()))
    return write_config(tmp_path, port=port, sources=source("hf", replay.url("/hf")),
                        channels='[[channels]]\nname = "feed"\ntype = "rss"\n',
                        rules='[[rules]]\nname = "r"\nnotify = ["feed"]\n')


@pytest.mark.slow
def test_a_sighup_while_the_code_loads_does_not_kill_the_daemon(
    tmp_path: Path, replay: ReplayServer, mark: Path
) -> None:
    port = free_port()
    daemon = Daemon(_config(tmp_path, replay, port), port)
    try:
        wait_for(mark.exists, 30, "the code to begin loading")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_up(timeout=30)
        wait_for(lambda: len(daemon.polls("hf")) >= 1, 15, "a poll")
    finally:
        code, _ = daemon.stop()
    assert code == 0, daemon.log_text()[-2000:]
    assert "SIGHUP while starting: ignored (the config is about to be read)" in daemon.log_text()


@pytest.mark.slow
def test_a_sigterm_while_the_code_loads_stops_the_daemon_cleanly(
    tmp_path: Path, replay: ReplayServer, mark: Path
) -> None:
    port = free_port()
    daemon = Daemon(_config(tmp_path, replay, port), port)
    wait_for(mark.exists, 30, "the code to begin loading")
    code, _ = daemon.stop(timeout=30)
    assert code == 0, daemon.log_text()[-2000:]
    assert "stopping (signal) before the start was done" in daemon.log_text()


def test_another_command_still_ends_at_a_sigterm_while_its_code_loads(
    tmp_path: Path, replay: ReplayServer, mark: Path
) -> None:
    config = _config(tmp_path, replay, free_port())
    status = subprocess.Popen([sys.executable, "-m", "monitor", "status", "--config", str(config)],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(mark.exists, 30, "the code to begin loading")
        status.send_signal(signal.SIGTERM)
        assert status.wait(timeout=30) == -signal.SIGTERM
    finally:
        status.kill()
        status.wait()


def test_a_stop_in_a_poll_s_wait_between_tries_is_no_failure_of_its_source(
    replay: ReplayServer, tmp_path: Path
) -> None:
    """A source answering 503 (Retry-After: 60), the daemon stopped while it waits to try again:
    ``status`` has no failure of the source ('FetchError: stopped while waiting to retry' was
    recorded, hiding the 503, and counted towards the backoff of the next start's polls)."""
    replay.route("/api/daily_papers", Reply(b"busy", status=503, headers={"Retry-After": "60"}))
    port = free_port()
    config = write_config(tmp_path, port=port,
                          sources=source("hf", replay.url("/api/daily_papers"), every="1h", timeout="5s"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules="")
    daemon = Daemon(config, port)
    daemon.wait_up()
    wait_for(lambda: replay.hits("/api/daily_papers") >= 1, 20, "the first try")
    code, _ = daemon.stop()
    assert code == 0, daemon.log_text()
    assert replay.hits("/api/daily_papers") == 1  # (the stop came in the wait, not after a second try)
    assert any("interrupted by the stop" in r["message"] for r in daemon.log_records()), daemon.log_text()
    ran = subprocess.run([sys.executable, "-m", "monitor", "status", "--json", "--config", str(config)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    sources = json.loads(ran.stdout)["sources"]
    assert all(s["failures"] == 0 and s["last_error"] is None for s in sources), sources
