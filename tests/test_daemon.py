"""``paper-monitor run`` as a real process: polls a replay server, delivers to a stand-in Slack API,
aiosmtpd and a feed, answers /healthz and /metrics, stops on SIGTERM, and keeps going through faults."""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest

from monitor.sources import parse_page
from monitor.store import open_store
from tests.daemon_support import Daemon, Inbox, source, unsent, wait_for, write_config
from tests.helpers import ARXIV_ATOM, HF_HTML, HF_JSON, SEED_PAGES, ReplayServer, Reply, free_port
from tests.slack_standin import SlackStandIn
from tests.test_store import everything, hf_papers
from tests.test_store_history import _send_all

HOT = sorted(p.title for p in parse_page(HF_JSON.read_bytes()) if (p.upvotes or 0) >= 50)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    server = Inbox()
    try:
        yield server
    finally:
        server.close()


def _channels(slack: SlackStandIn, inbox: Inbox) -> str:
    return (
        f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\nchannel = "#papers"\n'
        f'base_url = "{slack.base_url}"\ntimeout = 5\n\n'
        f'[[channels]]\nname = "me"\ntype = "email"\nsmtp_url = "smtp+plain://127.0.0.1:{inbox.port}"\n'
        f'from = "Monitor <monitor@example.org>"\nto = ["me@example.org"]\ntimeout = 5\n\n'
        '[[channels]]\nname = "feed"\ntype = "rss"\n'
    )


RULES = '[[rules]]\nname = "hot"\nmin_upvotes = 50\nnotify = ["team", "me", "feed"]\n'


@pytest.mark.slow
def test_daemon_polls_delivers_serves_and_stops_cleanly_then_sends_nothing_twice(
    tmp_path: Path, replay: ReplayServer, slack: SlackStandIn, inbox: Inbox
) -> None:
    page = Reply(HF_JSON.read_bytes(), headers={"Content-Type": "application/json"})
    replay.route("/api/daily_papers", page)
    port = free_port()
    config = write_config(tmp_path, port=port, sources=source("hf", replay.url("/api/daily_papers")),
                          channels=_channels(slack, inbox), rules=RULES)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: len(slack.messages) >= 1 and len(inbox.messages) >= 1, 20, "a Slack post and a mail")
        wait_for(lambda: len(daemon.polls("hf")) >= 2, 10, "a second poll")

        # Slack and mail: one batch of the three hot papers each.
        assert len(slack.messages) == 1
        text = str(slack.messages[0].payload)
        assert all(title[:30] in text for title in HOT)
        assert len(inbox.messages) == 1 and b"hot" in inbox.messages[0]

        # The feed, as a feed reader sees it, with a conditional GET.
        feed = daemon.get("/feeds/feed.xml")
        assert feed.status_code == 200
        parsed = feedparser.parse(feed.content)
        assert sorted(e.title for e in parsed.entries) == HOT
        conditional = daemon.get("/feeds/feed.xml", headers={"If-None-Match": feed.headers["etag"]})
        assert conditional.status_code == 304
        assert daemon.get("/feeds/nosuch.xml").status_code == 404

        health = daemon.get("/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok"
        metrics = daemon.get("/metrics").text
        assert 'paper_monitor_polls_total{outcome="ok",source="hf"}' in metrics
        assert 'paper_monitor_deliveries_total{channel="team",state="sent"} 3.0' in metrics
        assert 'paper_monitor_matches{rule="hot"} 3.0' in metrics
        assert "paper_monitor_source_last_success_timestamp_seconds" in metrics

        first = daemon.polls("hf")[0]
        assert first["status"] == 200 and first["papers"] == 30 and first["new"] == 30
        assert first["matched"] == 3 and first["changed"] == 0 and first["duration"] >= 0
        later = daemon.polls("hf")[1]
        assert later["new"] == 0 and later["matched"] == 0
    finally:
        code, took = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log_text()
    assert took < 10

    again = Daemon(config, port)
    try:
        again.wait_up()
        seen = len(again.polls("hf"))
        wait_for(lambda: len(again.polls("hf")) >= seen + 2, 15, "two polls after the restart")
        time.sleep(2.5)  # at least one dispatcher run after them
    finally:
        code, _ = again.stop(signal.SIGINT)
    assert code == 0
    assert len(slack.messages) == 1
    assert len(inbox.messages) == 1


@pytest.mark.slow
def test_daemon_survives_faulty_sources_reports_them_and_recovers(
    tmp_path: Path, replay: ReplayServer
) -> None:
    html = HF_HTML.read_bytes()
    faults = {
        "err500": Reply(b"oops", status=500),
        "limited": Reply(b"slow down", status=429, headers={"Retry-After": "3"}),
        "slow": Reply(HF_JSON.read_bytes(), delay=3.0),
        "truncated": Reply(html[: len(html) // 2], headers={"Content-Type": "text/html"}),
        "empty": Reply(b""),
        "other": Reply(b"<html><body><h1>Welcome to nginx!</h1></body></html>",
                       headers={"Content-Type": "text/html"}),
    }
    replay.route("/ok", Reply(HF_JSON.read_bytes()))
    sources = source("ok", replay.url("/ok"))
    for name, reply in faults.items():
        replay.route(f"/{name}", reply)
        sources += source(name, replay.url(f"/{name}"), timeout="1s")
    rules = '[[rules]]\nname = "all"\nnotify = ["feed"]\n'
    port = free_port()
    config = write_config(tmp_path, port=port, sources=sources,
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules=rules)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        # 429 with Retry-After: 3 is obeyed, though the source is polled every second otherwise.
        wait_for(lambda: replay.hits("/limited") >= 1, 10, "the first poll of the rate-limited source")
        time.sleep(2.0)
        assert replay.hits("/limited") == 1

        def unhealthy() -> set[str]:
            reply = daemon.get("/healthz")
            if reply.status_code == 200:
                return set()
            return {name for name, s in reply.json()["sources"].items() if not s["ok"]}

        wait_for(lambda: unhealthy() == set(faults), 15, "/healthz to name every faulty source")
        body = daemon.get("/healthz").json()
        assert body["status"] == "unhealthy" and body["sources"]["ok"]["ok"]
        assert any("err500" in p for p in body["problems"])
        assert daemon.proc.poll() is None


        # No false alerts: only the good source's 30 papers were matched.
        wait_for(lambda: len(feedparser.parse(daemon.get("/feeds/feed.xml").content).entries) == 30, 10,
                 "the feed to hold the good source's papers")
        metrics = daemon.get("/metrics").text
        assert 'paper_monitor_poll_errors_total{kind="http_5xx",source="err500"}' in metrics
        assert 'paper_monitor_source_healthy{source="err500"} 0.0' in metrics

        # The sources come back: everything is healthy again without a restart.
        seeds = [p.read_bytes() for p in SEED_PAGES]
        for i, name in enumerate(faults):
            page = seeds[i % len(seeds)] if i < len(seeds) else ARXIV_ATOM.read_bytes()
            replay.route(f"/{name}", Reply(page))
        wait_for(lambda: daemon.get("/healthz").status_code == 200, 20, "/healthz to recover")
        assert daemon.proc.poll() is None
    finally:
        code, _ = daemon.stop()
    assert code == 0, daemon.log_text()[-3000:]


@pytest.mark.slow
def test_each_rule_of_a_feed_channel_is_served_as_a_feed_of_its_own_and_is_gone_with_it(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()))
    port = free_port()
    rules = ('[[rules]]\nname = "hot"\nmin_upvotes = 50\nnotify = ["feed"]\n\n'
             '[[rules]]\nname = "all"\nnotify = ["feed"]\n')
    config = write_config(tmp_path, port=port, sources=source("hf", replay.url("/api/daily_papers")),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules=rules)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: len(feedparser.parse(daemon.get("/feeds/feed.xml").content).entries) == 30, 20,
                 "the feed to hold the page's papers")
        for kind in ("xml", "atom"):
            hot = feedparser.parse(daemon.get(f"/feeds/feed.{kind}?rule=hot").content)
            assert hot.feed.title == "paper-monitor: feed: hot"
            assert sorted(e.title for e in hot.entries) == HOT
            assert len(feedparser.parse(daemon.get(f"/feeds/feed.{kind}?rule=all").content).entries) == 30
        assert daemon.get("/feeds/feed.xml?rule=nosuch").status_code == 404
        front = daemon.get("/").text  # where a person or a feed reader finds them
        assert all(f'href="/feeds/feed.xml{q}"' in front for q in ("", "?rule=all", "?rule=hot"))

        # The rule "hot" deleted: its feed is gone for good (a reader may drop it); "nosuch" never was.
        config.write_text(config.read_text().replace('name = "hot"\nmin_upvotes = 50', 'name = "all2"'))
        wait_for(lambda: "reloaded" in daemon.log_text(), 10, "the config to be reloaded")
        for kind in ("xml", "atom"):
            gone = daemon.get(f"/feeds/feed.{kind}?rule=hot")
            assert gone.status_code == 410 and gone.text == "this rule no longer notifies this channel\n"
        assert daemon.get("/feeds/feed.xml?rule=nosuch").status_code == 404
        assert daemon.get("/feeds/feed.xml?rule=all2").status_code == 200  # (nothing in it yet)
    finally:
        code, _ = daemon.stop()
    assert code == 0, daemon.log_text()[-3000:]


def test_a_port_taken_is_one_line_and_exit_1_not_a_traceback(tmp_path: Path, replay: ReplayServer) -> None:
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port=port, sources=source("hf", replay.url("/api/daily_papers")),
                              channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules=RULES.replace(
                                  '["team", "me", "feed"]', '["feed"]'))
        daemon = Daemon(config, port)
        try:
            assert daemon.proc.wait(timeout=30) == 1
        finally:
            daemon.kill()
    text = daemon.log_text()
    assert "Traceback" not in text and "address already in use" in text.lower(), text


@pytest.mark.slow
def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(tmp_path: Path, replay: ReplayServer) -> None:
    replay.route("/a", Reply(HF_JSON.read_bytes()))
    replay.route("/b", Reply(ARXIV_ATOM.read_bytes()))
    port = free_port()
    channels = '[[channels]]\nname = "feed"\ntype = "rss"\n'
    config = write_config(tmp_path, port=port, sources=source("a", replay.url("/a")), channels=channels,
                          rules='[[rules]]\nname = "r"\nnotify = ["feed"]\n\n'
                                '[[rules]]\nname = "d"\nenabled = false\n')
    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: len(daemon.polls("a")) >= 1, 10, "a poll")
        assert any(r["message"].endswith(", 1 rule(s) (1 off)") for r in daemon.log_records())
        good = config.read_text()

        bad = good.replace('notify = ["feed"]', 'notify = ["nosuch"]') + "[[sources]]\nname = 1\n"
        config.write_text(bad)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "nosuch" in daemon.log_text(), 10, "the reload error")
        errors = [r for r in daemon.log_records() if r.get("level") == "error" and "reload" in r["message"]]
        assert len(errors) >= 2  # one line per problem
        hits = replay.hits("/a")
        wait_for(lambda: replay.hits("/a") > hits, 10, "polls going on with the old config")

        config.write_text(good + source("b", replay.url("/b")))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(daemon.polls("b")) >= 1, 10, "the new source's first poll")
        assert daemon.get("/healthz").status_code == 200
        reloaded = [r["message"] for r in daemon.log_records() if r["message"].startswith("reloaded ")]
        assert reloaded and reloaded[-1].endswith(": 2 source(s), 1 channel(s), 1 rule(s) (1 off)")
        gauge = "paper_monitor_source_last_success_timestamp_seconds"
        assert f'{gauge}{{source="a"}}' in daemon.get("/metrics").text

        config.write_text(good.replace(source("a", replay.url("/a")), "") + source("b", replay.url("/b")))
        daemon.proc.send_signal(signal.SIGHUP)  # "a" taken out: its last success, ever older, goes
        wait_for(lambda: f'{gauge}{{source="a"}}' not in daemon.get("/metrics").text, 10, "a's gauge gone")
    finally:
        code, _ = daemon.stop()
    assert code == 0, daemon.log_text()[-3000:]
    again = Daemon(config, port, log_name="again.log")  # nor does it come back with a restart
    try:
        again.wait_up()
        metrics = again.get("/metrics").text
        assert f'{gauge}{{source="b"}}' in metrics and f'{gauge}{{source="a"}}' not in metrics
    finally:
        again.stop()


@pytest.mark.slow
def test_sigterm_stops_at_once_while_a_large_config_is_read_at_start_or_again(
    tmp_path: Path, replay: ReplayServer
) -> None:
    """Reading 40,000 rules and compiling them takes seconds: a stop does not wait for it."""
    replay.route("/a", Reply(HF_JSON.read_bytes()))
    port = free_port()
    rules = "".join(f'[[rules]]\nname = "r{i}"\nkeywords = ["w{i} x{i}", "q{i}*", "k{i}"]\n'
                    'notify = ["feed"]\n' for i in range(40_000))
    config = write_config(tmp_path, port=port, sources=source("a", replay.url("/a"), every="1h"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules=rules)
    starting = Daemon(config, port, log_name="starting.log")
    wait_for(lambda: "starting: reading" in starting.log_text(), 20, "the start to begin")
    code, took = starting.stop()
    assert code == 0 and took < 5, starting.log_text()[-2000:]
    assert "stopping (signal) before the start was done" in starting.log_text()

    daemon = Daemon(config, port)
    try:
        daemon.wait_up(timeout=120)
        config.write_text(config.read_text() + '[[rules]]\nname = "new"\nnotify = ["feed"]\n')
        wait_for(lambda: "again (a file changed)" in daemon.log_text(), 10, "the reload to begin")
        assert daemon.get("/healthz/live").status_code == 200  # served meanwhile
    finally:
        code, took = daemon.stop()
    assert code == 0 and took < 5, daemon.log_text()[-2000:]
    assert "reloaded" not in daemon.log_text()  # abandoned: the stop did not wait for it


@pytest.mark.slow
def test_a_rule_file_added_edited_or_removed_reloads_the_rules(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/a", Reply(HF_JSON.read_bytes()))
    port = free_port()
    config = write_config(tmp_path, port=port, sources=source("a", replay.url("/a"), every="1h"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n',
                          rules='[[rules]]\nname = "own"\nnotify = ["feed"]\n')
    text = config.read_text()
    config.write_text(text.replace("[monitor]\n", '[monitor]\nrule_files = ["rules.d/*.toml"]\n', 1))
    (tmp_path / "rules.d").mkdir()
    daemon = Daemon(config, port)

    def reloaded(count: int) -> bool:
        return any(r["message"].startswith("reloaded ") and r["message"].endswith(f", {count} rule(s)")
                   for r in daemon.log_records())

    try:
        daemon.wait_up()
        team = tmp_path / "rules.d" / "team.toml"
        team.write_text('[[rules]]\nname = "t1"\nnotify = ["feed"]\n\n[[rules]]\nname = "t2"\n')
        wait_for(lambda: reloaded(3), 10, "the new rule file to be read")
        team.write_text('[[rules]]\nname = "t1"\nnotify = ["nosuch"]\n')
        wait_for(lambda: "rules.d/team.toml: rules[0].notify" in daemon.log_text(), 10, "the problem")
        errors = [r["message"] for r in daemon.log_records() if r.get("level") == "error"]
        assert any(m.endswith('rules.d/team.toml: rules[0].notify: unknown channel "nosuch" '
                              "(keeping the running config)") for m in errors), errors
        team.unlink()
        wait_for(lambda: reloaded(1), 10, "the rule file's rules to go")
    finally:
        code, _ = daemon.stop()
    assert code == 0, daemon.log_text()[-3000:]


class _HangingSlack(SlackStandIn):
    """Holds the first post for ``hang`` seconds (a peer that stopped answering), the rest at once."""

    hang = 30.0
    arrived = 0

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        self.arrived += 1
        if self.arrived == 1:
            time.sleep(self.hang)
        return super()._answer(path, headers, raw)


@pytest.mark.slow
def test_sigterm_during_a_hanging_send_exits_in_time_and_the_batch_goes_out_after_restart(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()))
    with _HangingSlack() as slack:
        channels = (f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\n'
                    f'channel = "#papers"\nbase_url = "{slack.base_url}"\ntimeout = 60\n')
        rules = '[[rules]]\nname = "hot"\nmin_upvotes = 50\nnotify = ["team"]\n'
        port = free_port()
        config = write_config(tmp_path, port=port, sources=source("hf", replay.url("/api/daily_papers")),
                              channels=channels, rules=rules)
        daemon = Daemon(config, port)
        try:
            daemon.wait_up()
            wait_for(lambda: slack.arrived >= 1, 15, "the send to start")
        finally:
            code, took = daemon.stop()
        assert code == 0 and took < 10, daemon.log_text()[-2000:]
        assert slack.messages == []

        again = Daemon(config, port)
        try:
            again.wait_up()
            wait_for(lambda: len(slack.messages) == 1, 15, "the released batch to be sent")
        finally:
            code, _ = again.stop()
        assert code == 0
        assert all(title[:30] in str(slack.messages[0].payload) for title in HOT)


def test_old_sent_deliveries_are_deleted_at_start_and_their_papers_not_alerted_again(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    port = free_port()
    channels = ('[[channels]]\nname = "feed"\ntype = "rss"\nmax_items = 5\n\n'
                '[[channels]]\nname = "console"\ntype = "console"\n')
    config = write_config(tmp_path, port=port, sources=source("hf", replay.url("/papers"), every="1h"),
                          channels=channels, rules='[[rules]]\nname = "all"\nnotify = ["feed", "console"]\n')
    config.write_text(config.read_text().replace("[monitor]\n", '[monitor]\nkeep_sent = "30d"\n'))
    store = open_store(f"sqlite:///{tmp_path}/monitor.db")
    long_ago = time.time() - 100 * 86_400
    store.apply_poll(hf_papers()[:20], everything, now=long_ago)  # 20 papers alerted 100 days ago
    for channel in ("console", "feed"):
        _send_all(store, channel, long_ago)
    store.close()

    daemon = Daemon(config, port)
    try:
        daemon.wait_up()
        wait_for(lambda: "deliveries sent over 30 days ago" in daemon.log_text(), 20, "the old rows to go")
        wait_for(lambda: len(feedparser.parse(daemon.get("/feeds/feed.xml").content).entries) == 5, 20,
                 "the feed to show its newest 5")

        def printed() -> int:
            return sum(line.startswith("[all] ") for line in daemon.log_text().splitlines())

        wait_for(lambda: printed() >= 10, 20, "the new papers on the console")  # (the feed's 5 may be old)
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert printed() == 10  # the 10 new only
    db = sqlite3.connect(tmp_path / "monitor.db")
    try:
        old = dict(db.execute(
            "SELECT channel, count(*) FROM deliveries WHERE created_at < ? GROUP BY channel",
            (time.time() - 30 * 86_400,),
        ).fetchall())
        assert db.execute("SELECT count(*) FROM matches").fetchone()[0] == 30
    finally:
        db.close()
    assert old.get("console", 0) == 0 and old.get("feed", 0) <= 5


@pytest.mark.slow
def test_a_prune_the_store_refused_is_tried_again_soon_not_in_a_day(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, sources="",
                          channels='[[channels]]\nname = "console"\ntype = "console"\n',
                          rules='[[rules]]\nname = "all"\nnotify = ["console"]\n')
    config.write_text(config.read_text().replace("[monitor]\n", '[monitor]\nkeep_sent = "30d"\n'))
    store = open_store(f"sqlite:///{tmp_path}/monitor.db")
    long_ago = time.time() - 100 * 86_400
    store.apply_poll(hf_papers()[:20], everything, now=long_ago)  # 20 papers alerted 100 days ago
    _send_all(store, "console", long_ago)
    store.close()

    def sent_rows() -> int:
        with contextlib.closing(sqlite3.connect(tmp_path / "monitor.db", timeout=30)) as db:
            return int(db.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()[0])

    def refused() -> list[str]:
        return [r["message"] for r in daemon.log_records() if "not deleted" in r.get("message", "")]

    assert sent_rows() == 20

    # Its retries in seconds, not minutes; the first prune 4 s after the start, for this test to
    # take the store's write lock first (another process writing, a backup holding the file...);
    # a write waits 1 s for the lock, not 10 (each refused try took 10 s of the test).
    daemon = Daemon(config, port, tune={"monitor.daemon.PRUNE_RETRY": 1.0,
                                          "monitor.daemon.PRUNE_FIRST": 4.0,
                                          "monitor.store.sql.BUSY_TIMEOUT_MS": 1000})
    locker = sqlite3.connect(tmp_path / "monitor.db", timeout=30, isolation_level=None)
    try:
        wait_for(lambda: "paper-monitor running" in daemon.log_text(), 30, "the daemon to start")
        locker.execute("BEGIN IMMEDIATE")
        wait_for(lambda: len(refused()) >= 2, 60, "two tries of the prune to fail on the locked store")
        locker.execute("ROLLBACK")
        wait_for(lambda: "deleted 20 deliveries sent over 30 days ago" in daemon.log_text(), 20,
                 "the prune to be tried again once the store is free")
        assert sent_rows() == 0
    finally:
        locker.close()
        code, _ = daemon.stop()
    assert code == 0
    first, second = refused()[:2]
    assert first.startswith("old sent deliveries not deleted: ") and "database is locked" in first
    assert first.endswith("; trying again in 1s") and second.endswith("; trying again in 2s")
    assert "Traceback" not in daemon.log_text()


@pytest.mark.slow
def test_a_store_locked_for_writes_by_another_process_is_the_store_s_problem_in_healthz_not_the_source_s(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    port = free_port()
    config = write_config(tmp_path, port=port,
                          sources=source("hf", replay.url("/papers"), every="2s") + 'catch_up = "off"\n',
                          channels='[[channels]]\nname = "console"\ntype = "console"\n',
                          rules='[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["console"]\n')
    # A write waits 1 s for the lock, not 10 (a poll every 2 s stays a poll every 2 s); the store's
    # writes are tried every 2 s.
    daemon = Daemon(config, port, tune={"monitor.store.sql.BUSY_TIMEOUT_MS": 1000,
                                        "monitor.daemon.STORE_WRITE_EVERY": 2.0})
    locker = sqlite3.connect(tmp_path / "monitor.db", timeout=30, isolation_level=None)
    seen = []
    try:
        daemon.wait_up()
        wait_for(lambda: daemon.get("/healthz").status_code == 200, 20, "a good poll")
        locker.execute("BEGIN IMMEDIATE")  # another process writing: a sqlite3 shell, a script...
        locked = time.monotonic()
        while time.monotonic() - locked < 10:  # the source would be stale after 6 s without a success
            reply = daemon.get("/healthz")
            seen.append((reply.status_code, reply.json()))
            time.sleep(0.5)
        metrics = daemon.get("/metrics").text
        locker.execute("ROLLBACK")
        wait_for(lambda: daemon.get("/healthz").status_code == 200, 20, "/healthz to be ok again")
    finally:
        locker.close()
        code, _ = daemon.stop()
    assert code == 0
    assert [p for _, body in seen for p in body["problems"] if not p.startswith("store: ")] == []
    assert all(body["sources"]["hf"]["ok"] and body["sources"]["hf"]["failures"] == 0 for _, body in seen)
    status, body = seen[-1]
    assert status == 503 and body["store"]["writes_ok"] is False
    (problem,) = body["problems"]
    assert problem.startswith("store: writes failing since ") and "database is locked" in problem
    assert "paper_monitor_store_reachable 0.0" in metrics
    failed = [r["message"] for r in daemon.polls("hf") if r.get("error")]
    assert failed and all(m.startswith("poll hf: the store failed (the source answered HTTP 200): ")
                          for m in failed), failed
    log = daemon.log_text()
    assert log.count("store: writes fail: ") == 1 and log.count("store: writes work again") == 1
    assert "cannot record the failure" not in log and "Traceback" not in log


@pytest.mark.slow
def test_a_daemon_with_many_rules_stops_fast_with_its_last_line_and_exit_code(
    tmp_path: Path, replay: ReplayServer
) -> None:
    """Once everything is written and closed, the process ends without freeing its heap object by
    object (with 100,000 rules that took 6-9 s after the ``stopped`` line, past a service manager's
    10 s); the exit code and the last lines are as before."""
    replay.route("/a", Reply(HF_JSON.read_bytes()))
    port = free_port()
    rules = "".join(f'[[rules]]\nname = "r{i}"\nkeywords = ["w{i} x{i}", "q{i}*", "k{i}"]\n'
                    'notify = ["feed"]\n' for i in range(60_000))
    config = write_config(tmp_path, port=port, sources=source("a", replay.url("/a"), every="1h"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules=rules)
    daemon = Daemon(config, port)
    try:
        daemon.wait_up(timeout=180)
        wait_for(lambda: bool(daemon.polls("a")), 30, "the first poll")
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopped" in [r["message"] for r in daemon.log_records()], 10, "the stopped line")
        seen = time.monotonic()
        code = daemon.proc.wait(timeout=30)
        after = time.monotonic() - seen
        daemon.stop()  # (closes the log)
    assert code == 0, daemon.log_text()[-2000:]
    assert [r["message"] for r in daemon.log_records()][-2:] == ["stopping (signal)", "stopped"]
    assert after < 0.5, f"the process took {after:.1f}s to end after its 'stopped' line"


@pytest.mark.slow
def test_a_reload_leaves_the_rules_out_of_the_garbage_collectors_walks(tmp_path: Path) -> None:
    """A full collection walked every object of the rule index (millions with 100,000 rules), stopping
    every thread, /healthz/live too, for seconds during a reload and now and then at rest: the config
    read again and its rules compiled are frozen (``gc.freeze``), and what is left to walk is small."""
    from monitor.config import load_settings
    from monitor.daemon import Daemon as InProcess

    rules = "".join(f'[[rules]]\nname = "r{i}"\nkeywords = ["w{i} x{i}", "q{i}*", "k{i}"]\n'
                    'notify = ["feed"]\n' for i in range(10_000))
    config = write_config(tmp_path, port=free_port(), sources=source("a", "http://127.0.0.1:9/a"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules=rules)
    daemon = InProcess(config, load_settings(config))  # not started: no jobs, no server
    try:
        gc.unfreeze()
        prepared = daemon.prepare_reload()
        assert prepared is not None
        walked = len(gc.get_objects())  # what a full collection now walks
        assert gc.get_freeze_count() > 20 * walked, (gc.get_freeze_count(), walked)
        bad = config.read_text().replace('notify = ["feed"]', 'notify = ["nosuch"]', 1)
        config.write_text(bad)
        assert daemon.prepare_reload() is None  # a config with problems: the collector is on after it
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        daemon.stop()


def test_a_retry_due_before_the_dispatcher_s_next_turn_is_tried_at_its_time(
    tmp_path: Path, replay: ReplayServer
) -> None:
    """The dispatcher asks the store what is due once a turn, and wakes for the first retry due
    before its next turn (turns a minute apart here): a webhook asking Retry-After: 8 is tried again
    8 s later, not at the next turn."""
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()))
    replay.route("/hook", Reply(b"busy", 503, {"Retry-After": "8"}), Reply(b'{"ok": true}', 200))
    channels = f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{replay.url("/hook")}"\n'
    rules = '[[rules]]\nname = "hot"\nmin_upvotes = 50\nnotify = ["hook"]\n'
    port = free_port()
    hf = source("hf", replay.url("/api/daily_papers"), every="1h")
    config = write_config(tmp_path, port=port, sources=hf, channels=channels, rules=rules)
    daemon = Daemon(config, port, tune={"monitor.daemon.DISPATCH_EVERY": 60.0})
    try:
        daemon.wait_up()
        wait_for(lambda: replay.hits("/hook") == 1, 20, "the first try")
        first = time.monotonic()
        wait_for(lambda: replay.hits("/hook") == 2, 40, "the retry")
        waited = time.monotonic() - first
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert 7 < waited < 30, waited  # at its time, not at the turn a minute later
    assert unsent(tmp_path) == 0
