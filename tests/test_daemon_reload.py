"""A real daemon reloading its config while it works: a file saved in place in two writes, an
emptied or missing file, a reload meeting a slow send or a poll in flight."""

from __future__ import annotations

import copy
import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import feedparser
import pytest

from tests.daemon_support import Daemon, source, wait_for, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port

FEED = '[[channels]]\nname = "feed"\ntype = "rss"\n'
TEMPLATE = json.loads(HF_JSON.read_bytes())[0]


class Page:
    """An HF API page at ``path`` of ``replay`` holding papers 0..n-1 about agents; ``grow`` adds."""

    def __init__(self, replay: ReplayServer, path: str, n: int, delay: float = 0.0) -> None:
        self.replay, self.path, self.n, self.delay = replay, path, 0, delay
        self.grow(n)

    def grow(self, k: int = 1) -> None:
        self.n += k
        items = []
        for i in range(self.n):
            item = copy.deepcopy(TEMPLATE)
            item["paper"]["id"] = f"2699.{i:05d}"
            item["paper"]["title"] = item["title"] = f"Paper number {i} about agent systems"
            item["paper"]["summary"] = f"We study agent systems, case {i}."
            items.append(item)
        body = json.dumps(items).encode()
        self.replay.route(self.path, Reply(body, headers={"Content-Type": "application/json"},
                                           delay=self.delay))


def feed_titles(daemon: Daemon, name: str = "feed") -> set[str]:
    return {entry.title for entry in feedparser.parse(daemon.get(f"/feeds/{name}.xml").content).entries}


def messages(daemon: Daemon, level: str | None = None) -> list[str]:
    return [r["message"] for r in daemon.log_records() if level is None or r.get("level") == level]


@pytest.mark.slow
def test_a_config_saved_in_place_in_two_writes_is_applied_whole(tmp_path: Path, replay: ReplayServer) -> None:
    """``cat new > monitor.toml`` by a writer that pauses between its two halves: the half without
    the rules is never applied (a paper polled meanwhile would have been known before its rule held,
    and never alerted), nor one cut in a rule (a rule with no keyword yet matches every paper)."""
    page = Page(replay, "/hf", 3)
    port = free_port()
    config = write_config(tmp_path, port=port, sources=source("live", replay.url("/hf")), channels=FEED,
                          rules='[[rules]]\nname = "r1"\nnotify = ["feed"]\nkeywords = ["agent"]\n')
    whole = config.read_text()
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: len(feed_titles(daemon)) == 3, 15, "the first alerts")
        for cut in (whole.index("[[rules]]"), whole.index('keywords = ["agent"]')):
            with config.open("w") as writer:
                writer.write(whole[:cut])
                writer.flush()
                time.sleep(3)  # (longer than the watch lets a file settle)
                page.grow(1)
                wait_for(lambda: any(r["papers"] == page.n for r in daemon.polls("live")), 10,
                         "a poll of the new paper")
                writer.write(whole[cut:])
            wait_for(lambda: len(feed_titles(daemon)) == page.n, 15, "the new paper's alert")
        time.sleep(3)  # (the file read again, once whole: it is as it was)
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert not [m for m in messages(daemon) if m.startswith("reloaded ") and not m.endswith(", 1 rule(s)")]
    assert "Traceback" not in daemon.log_text()


@pytest.mark.slow
def test_an_emptied_or_missing_config_is_one_line_and_the_running_one_kept(
    tmp_path: Path, replay: ReplayServer
) -> None:
    Page(replay, "/hf", 3)
    port = free_port()
    config = write_config(tmp_path, port=port, sources=source("live", replay.url("/hf")), channels=FEED,
                          rules='[[rules]]\nname = "r1"\nnotify = ["feed"]\n')
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: len(daemon.polls("live")) >= 1, 15, "a poll")
        config.write_text("")
        wait_for(lambda: "no [[sources]]" in daemon.log_text(), 15, "the emptied file refused")
        config.unlink()
        wait_for(lambda: "cannot read" in daemon.log_text(), 15, "the missing file told")
        hits = replay.hits("/hf")
        wait_for(lambda: replay.hits("/hf") > hits + 1, 10, "polls going on with the running config")
        assert daemon.get("/healthz").status_code == 200
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert messages(daemon, "error") == [
        f"reload: {config}: no [[sources]]: nothing to poll (an empty or unfinished file?) "
        "(keeping the running config)",
        f"reload: {config}: cannot read: No such file or directory (keeping the running config)",
    ]
    assert not messages(daemon, "warning")  # (not "database changed", as an empty config's default)


@pytest.mark.slow
def test_a_reload_while_a_send_hangs_holds_neither_the_reload_nor_the_stop(
    tmp_path: Path, replay: ReplayServer
) -> None:
    """The old dispatcher, closing, waits for its send; the daemon does not: SIGTERM stops it within
    the 10 s the README promises, and the batch goes out at the next start."""
    Page(replay, "/hf", 3)
    replay.route("/hook", Reply(b"ok", delay=25), Reply(b"ok"))
    port = free_port()
    hook = f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{replay.url("/hook")}"\ntimeout = "30s"\n'
    rules = '[[rules]]\nname = "r1"\nnotify = ["hook"]\n'
    config = write_config(tmp_path, port=port, sources=source("live", replay.url("/hf")), channels=hook,
                          rules=rules)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: replay.hits("/hook") == 1, 15, "the send to begin")
        config.write_text(config.read_text() + rules.replace('"r1"', '"r2"\nkeywords = ["zzz"]'))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(m.startswith("reloaded ") for m in messages(daemon)), 5, "the reload")
        assert daemon.get("/healthz/live").status_code == 200
    finally:
        code, took = daemon.stop()
    assert code == 0 and took < 10, daemon.log_text()[-2000:]
    assert replay.hits("/hook") == 1  # the second rule's channel did not send beside the first

    again = Daemon(config, port, log_name="again.log")
    try:
        again.wait_up()
        wait_for(lambda: replay.hits("/hook") == 2, 15, "the batch released at the stop to go out")
    finally:
        again.stop()
    bodies = [json.loads(r.body) for r in replay.requests if r.path == "/hook"]
    assert [len(b["papers"]) for b in bodies] == [3, 3]


@pytest.mark.slow
def test_a_slow_send_holds_neither_the_other_channels_nor_fills_the_log(
    tmp_path: Path, replay: ReplayServer
) -> None:
    page = Page(replay, "/hf", 3)
    replay.route("/hook", Reply(b"ok", delay=10), Reply(b"ok"))  # (five dispatches' time)
    port = free_port()
    hook = f'[[channels]]\nname = "slow"\ntype = "webhook"\nurl = "{replay.url("/hook")}"\ntimeout = "30s"\n'
    config = write_config(tmp_path, port=port, sources=source("live", replay.url("/hf")),
                          channels=hook + FEED, rules='[[rules]]\nname = "r1"\nnotify = ["slow", "feed"]\n')
    daemon = Daemon(config, port)
    sent = 'paper_monitor_deliveries_total{channel="slow",state="sent"}'
    try:
        daemon.wait_up()
        wait_for(lambda: replay.hits("/hook") == 1, 15, "the slow send to begin")
        began = time.monotonic()
        page.grow(1)
        wait_for(lambda: len(feed_titles(daemon)) == 4, 10, "the new paper in the feed")
        assert time.monotonic() - began < 8  # before the slow send ended
        wait_for(lambda: f"{sent} 4.0" in daemon.get("/metrics").text, 30, "the slow channel's sends counted")
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert "skipped: maximum number of running instances" not in daemon.log_text()


@pytest.mark.slow
def test_a_source_edited_or_taken_out_while_it_polls_finishes_that_poll_without_a_failure(
    tmp_path: Path, replay: ReplayServer
) -> None:
    Page(replay, "/hf", 3)
    Page(replay, "/slow", 3, delay=4)
    port = free_port()
    live = source("live", replay.url("/hf"))
    slow = source("slow", replay.url("/slow"), every="60s", timeout="10s")
    config = write_config(tmp_path, port=port, sources=live + slow, channels=FEED,
                          rules='[[rules]]\nname = "r1"\nnotify = ["feed"]\n')
    text = config.read_text()
    daemon = Daemon(config, port)

    def counted() -> list[str]:
        """The poll counters of "slow" in /metrics."""
        return [line for line in daemon.get("/metrics").text.splitlines()
                if 'source="slow"' in line and line.startswith(("paper_monitor_poll_errors_total",
                                                                 "paper_monitor_polls_total"))]

    def edit(new: str, after: int) -> list[str]:
        """``new`` as the config, a second into the poll of "slow" after its ``after`` first; the
        poll counters before."""
        wait_for(lambda: replay.hits("/slow") > after, 20, "a poll of slow")
        before = counted()
        time.sleep(1)
        config.write_text(new)
        daemon.proc.send_signal(signal.SIGHUP)
        return before

    try:
        daemon.wait_up()
        edit(text.replace('every = "60s"', 'every = "5s"'), 0)
        # The poll in flight ends as it began; the new settings' first poll follows it at once.
        wait_for(lambda: len(daemon.polls("slow")) >= 2, 20, "the poll in flight, then the new one's")
        before = edit(text.replace(slow, ""), replay.hits("/slow"))
        time.sleep(5)  # (the poll in flight has ended)
        assert counted() == before  # nothing recorded of a source no longer watched
        assert daemon.get("/healthz").status_code == 200
        assert "poll slow ended after its source was taken out of the config: ok" in daemon.log_text()
    finally:
        code, _ = daemon.stop()
    assert code == 0
    db = sqlite3.connect(tmp_path / "monitor.db")
    query = "SELECT consecutive_failures, last_error FROM sources WHERE name = 'slow'"  # (its row stays)
    try:
        row = db.execute(query).fetchone()
    finally:
        db.close()
    assert row == (0, None)
    log = daemon.log_text()
    assert "Traceback" not in log and "client has been closed" not in log
    assert "maximum number of running instances" not in log
    assert not [m for m in messages(daemon) if re.match(r"poll slow: .*failed", m)]


def test_a_poll_in_flight_through_a_reload_matches_with_the_rules_it_began_with(
    tmp_path: Path, replay: ReplayServer
) -> None:
    """The rules of before a reload are freed a slice at a time beside the daemon's work, but only
    once the polls that began with them have ended: the slow poll's new papers are matched (by the
    old rule), stored and alerted, with no crash; the next poll's by the new rule."""
    page = Page(replay, "/slow", 3, delay=4)
    port = free_port()
    config = write_config(tmp_path, port=port, sources=source("slow", replay.url("/slow"), every="5s",
                                                              timeout="10s"),
                          channels=FEED, rules='[[rules]]\nname = "before"\nnotify = ["feed"]\n')
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: replay.hits("/slow") >= 1, 20, "the first poll of slow")
        time.sleep(1)  # the page is 3 s from its answer
        config.write_text(config.read_text().replace('name = "before"', 'name = "after"'))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded " in daemon.log_text(), 20, "the reload")
        wait_for(lambda: len(daemon.polls("slow")) >= 1, 20, "the poll in flight")
        page.grow()
        wait_for(lambda: len(daemon.polls("slow")) >= 2, 30, "a poll after the reload")
        assert daemon.get("/healthz").status_code == 200
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert "Traceback" not in daemon.log_text()
    db = sqlite3.connect(tmp_path / "monitor.db")
    try:
        rules = db.execute("SELECT rule, COUNT(*) FROM matches GROUP BY rule ORDER BY rule").fetchall()
    finally:
        db.close()
    assert rules == [("after", 1), ("before", 3)]


def test_a_start_on_a_config_without_sources_says_nothing_is_polled(tmp_path: Path) -> None:
    """An empty file at the start (a ConfigMap cut short, say): check-config lists 0 sources, and
    the daemon, which a reload would refuse it to, says once that it polls nothing (it said only
    'running: 0 source(s)', /healthz 200)."""
    port = free_port()
    config = write_config(tmp_path, port=port, sources="", channels=FEED, rules="")
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: messages(daemon, "warning") != [], 15, "the warning")
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert messages(daemon, "warning") == [
        f"{config} has no [[sources]]: nothing is polled (an empty or unfinished file?)"]
