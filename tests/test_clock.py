"""The wall clock stepping back under a running scheduler (monitor.clock): the work goes on."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.clock import ClockWatch
from monitor.config import SourceConfig
from monitor.health import SourceHealth
from tests.daemon_support import Daemon, source, wait_for, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


@pytest.fixture
def scheduler() -> Iterator[BackgroundScheduler]:
    s = BackgroundScheduler(timezone=UTC)
    s.start()
    yield s
    s.shutdown(wait=False)


def test_after_a_step_back_the_jobs_run_at_their_pace_not_an_hour_later(
    scheduler: BackgroundScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler keeps its turns on the wall clock: the clock set back an hour leaves a job's
    next turn an hour ahead (here: put there, the real clock going on), as if asleep for an hour."""
    ran = threading.Event()
    turn = datetime.now(UTC) + timedelta(hours=1, seconds=1)
    scheduler.add_job(ran.set, IntervalTrigger(seconds=5), id="poll", next_run_time=turn)
    clocks = {"wall": time.time(), "monotonic": 100.0}
    steps: list[float] = []
    watch = ClockWatch(scheduler, stepped=steps.append, wall=lambda: clocks["wall"],
                       monotonic=lambda: clocks["monotonic"])
    assert watch.check() == 0.0
    clocks["wall"] += 1.0
    clocks["monotonic"] += 1.0
    assert watch.check() == 0.0  # the clocks went on together
    clocks["wall"] += 1.0 - 3600
    clocks["monotonic"] += 1.0
    with caplog.at_level(logging.WARNING, logger="monitor.clock"):
        assert watch.check() == pytest.approx(-3600)
    assert ran.wait(5), "the job did not run"
    next_turn = scheduler.get_job("poll").next_run_time
    assert next_turn - datetime.now(UTC) < timedelta(seconds=6)  # its pace, from now on
    (told,) = [r.getMessage() for r in caplog.records]
    assert told.startswith("the clock stepped back 3600s")
    assert steps == [pytest.approx(-3600)]


def test_a_sources_backoff_ends_as_long_after_its_failure_when_the_clock_steps_back() -> None:
    health = SourceHealth([SourceConfig(name="a", url="https://example.org/a", every=60)], now=0.0)
    failed = 10_000.0
    wait = health.record("a", ok=False, status=503, now=failed)
    assert not health.due("a", now=failed + wait / 2)
    health.clock_stepped(-3600)  # the clock now reads an hour less
    assert not health.due("a", now=failed - 3600 + wait / 2)
    assert health.due("a", now=failed - 3600 + wait)


@pytest.mark.slow
@pytest.mark.skipif(not FAKETIME.exists(), reason="libfaketime is not installed")
def test_a_daemon_goes_on_polling_and_sending_when_the_clock_steps_back_an_hour(
    tmp_path: Path, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset = tmp_path / "offset"
    offset.write_text("+0\n")
    shim = tmp_path / "shim"
    shim.mkdir()
    # Under libfaketime time.sleep fails (EINVAL from its clock_nanosleep): a monotonic wait instead.
    (shim / "sitecustomize.py").write_text(
        "import threading, time\ntime.sleep = lambda s: threading.Event().wait(s) if s > 0 else None\n")
    items = json.loads(HF_JSON.read_bytes())
    replay.route("/hf", Reply(json.dumps(items[:3]).encode()))
    port = free_port()
    config = write_config(tmp_path, port=port, sources=source("hf", replay.url("/hf"), every="2s"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n',
                          rules='[[rules]]\nname = "r"\nnotify = ["feed"]\n')
    for name, value in (("LD_PRELOAD", str(FAKETIME)), ("FAKETIME_TIMESTAMP_FILE", str(offset)),
                        ("FAKETIME_NO_CACHE", "1"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
                        ("PYTHONPATH", str(shim))):
        monkeypatch.setenv(name, value)
    daemon = Daemon(config, port)
    monkeypatch.delenv("LD_PRELOAD")  # (only the daemon's clock steps)

    def items_in_feed() -> int:
        return daemon.get("/feeds/feed.xml").text.count("<item>")

    try:
        daemon.wait_up(timeout=30)
        wait_for(lambda: items_in_feed() == 3, 20, "the first alerts")
        offset.write_text("-3600\n")
        time.sleep(2)
        replay.route("/hf", Reply(json.dumps(items[:5]).encode()))
        wait_for(lambda: items_in_feed() == 5, 20, "the new papers' alerts")
        time.sleep(3)
        assert "the clock stepped back 3600s" in daemon.log_text()
        assert daemon.get("/healthz/live").status_code == 200
        assert daemon.get("/healthz").status_code == 200
    finally:
        code, _ = daemon.stop()
        os.environ.pop("LD_PRELOAD", None)
    assert code == 0, daemon.log_text()[-2000:]
