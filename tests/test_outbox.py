"""The outbox end to end: SQLite on disk or PostgreSQL (``store_url``), real webhook receivers on
loopback, real dispatchers."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
import sqlalchemy as sa

from monitor.channels.base import Channel
from monitor.channels.rss import RssChannel
from monitor.channels.webhook import WebhookChannel
from monitor.config import RssConfig, WebhookConfig
from monitor.outbox import Backoff, Digest, Dispatcher
from monitor.store import open_store, sql
from tests.helpers import HF_JSON, REPO, ReplayServer, Reply
from tests.outbox_support import open_test_store, paper, record, rows, states

OK = Reply(b'{"ok": true}', 200)


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    s = open_test_store(store_url)
    yield s
    s.close()


def hook(server: ReplayServer, name: str, path: str = "/hook", timeout: float = 10.0) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(name=name, type="webhook", url=server.url(path), timeout=timeout))


def posted(server: ReplayServer, path: str = "/hook") -> list[dict[str, Any]]:
    """The JSON bodies the receiver got on ``path``, with the Idempotency-Key under "key"."""
    out = []
    for seen in server.requests:
        if seen.path == path:
            body = json.loads(seen.body)
            body["key"] = seen.headers.get("Idempotency-Key")
            out.append(body)
    return out


def titles(bodies: list[dict[str, Any]]) -> list[str]:
    return [p["title"] for body in bodies for p in body["papers"]]


def test_one_message_per_rule_in_order_and_each_only_once(store: Any, replay: ReplayServer) -> None:
    replay.route("/hook", OK)
    record(store, "llm", [paper("A1"), paper("A2")], ["hook"])
    record(store, "vision", [paper("B1")], ["hook"])
    record(store, "llm", [paper("A3")], ["hook"])
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        first = dispatcher.run_due()
        second = dispatcher.run_due()
    bodies = posted(replay)
    assert [(b["channel"], b["rule"], [p["title"] for p in b["papers"]]) for b in bodies] == [
        ("hook", "llm", ["A1", "A2", "A3"]),
        ("hook", "vision", ["B1"]),
    ]
    assert bodies[0]["reasons"] == {p["key"]: ["keyword: test"] for p in bodies[0]["papers"]}
    assert all(seen.headers["Content-Type"] == "application/json" for seen in replay.requests)
    assert len({b["key"] for b in bodies}) == 2
    assert (first.sent, second.sent) == (4, 0)
    assert states(store) == {"sent": 4}


def test_a_429_is_waited_out_with_the_same_idempotency_key(store: Any, replay: ReplayServer) -> None:
    replay.route("/hook", Reply(b"slow down", 429, {"Retry-After": "1"}), OK)
    record(store, "llm", [paper("P1")], ["hook"])
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        report = dispatcher.run_due()
    bodies = posted(replay)
    assert len(bodies) == 2 and bodies[0]["key"] == bodies[1]["key"]
    assert report.sent == 1 and states(store) == {"sent": 1}


@pytest.mark.parametrize("channels", [1, 100])
def test_a_turn_asks_the_store_once_however_many_channels_at_rest_or_failing(
    store: Any, replay: ReplayServer, channels: int
) -> None:
    """200 webhooks cost ~15% of a core at rest (32% failing): every 2 s each channel's worker read
    its queue head. Now the turn reads every head in one statement and starts no channel with
    nothing due."""
    names = [f"w{i}" for i in range(channels)]
    replay.route("/hook", Reply(b"down", 503))
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):  # (SQLite's BEGIN)
            statements.append(statement)

    with Dispatcher(store, {n: hook(replay, n) for n in names}) as dispatcher:
        dispatcher.run_due()  # (the pool's first connection, whatever the dialect asks then)
        sa.event.listen(store.engine, "before_cursor_execute", seen)
        at_rest = dispatcher.run_due()
        sa.event.remove(store.engine, "before_cursor_execute", seen)
        assert len(statements) == 1, statements  # at rest: one question, whatever the channel count
        assert at_rest.sent == 0 and at_rest.next_due is None

        record(store, "llm", [paper("P1")], names)
        assert dispatcher.run_due().failed == channels and len(replay.requests) == channels
        retries = {r.next_attempt_at for n in names for r in rows(store, n)}
        statements.clear()
        sa.event.listen(store.engine, "before_cursor_execute", seen)
        failing = dispatcher.run_due()  # every channel failing, its retry not due yet
        sa.event.remove(store.engine, "before_cursor_execute", seen)
        assert len(statements) == 1, statements
        assert failing.next_due == min(retries) and len(replay.requests) == channels  # no try before it


def test_a_channel_down_for_a_while_gets_everything_later_in_order(store: Any, replay: ReplayServer) -> None:
    replay.route("/hook", Reply(b"down", 503))
    t0 = time.time()
    record(store, "llm", [paper("P1"), paper("P2")], ["hook"], at=t0)
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        for hours in range(6):  # six hours of outage, new papers arriving meanwhile
            now = t0 + 3600 * hours + 1
            record(store, "llm", [paper(f"P{hours + 3}")], ["hook"], at=now)
            record(store, "other", [paper(f"Q{hours + 1}")], ["hook"], at=now)
            dispatcher.run_due(now=now)
        failed = rows(store, "hook")
        assert {r.state for r in failed} == {"failed", "pending"}
        assert all(r.next_attempt_at > t0 + 5 * 3600 for r in failed if r.state == "failed")
        down_keys = {b["key"] for b in posted(replay)}
        replay.route("/hook", OK)
        replay.requests.clear()
        report = dispatcher.run_due(now=t0 + 86400)
    bodies = posted(replay)
    assert states(store) == {"sent": 14} and report.sent == 14
    # Oldest first: the batch that failed (retried as the same batch), then the rest, per rule in order.
    assert [[p["title"] for p in b["papers"]] for b in bodies] == [
        ["P1", "P2", "P3"], ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"], ["P4", "P5", "P6", "P7", "P8"],
    ]
    assert bodies[0]["key"] in down_keys and not {b["key"] for b in bodies[1:]} & down_keys


def test_backoff_is_persisted_and_grows(store: Any, replay: ReplayServer) -> None:
    replay.route("/hook", Reply(b"", 500))
    t0 = time.time()
    record(store, "llm", [paper("P1")], ["hook"], at=t0)
    backoff = Backoff(base=60, cap=3600)
    waits = []
    now = t0
    with Dispatcher(store, {"hook": hook(replay, "hook")}, backoff=backoff) as dispatcher:
        for _ in range(4):
            assert dispatcher.run_due(now=now).failed == 1
            assert dispatcher.run_due(now=now).failed == 0  # held until its time: nothing sent
            (row,) = rows(store, "hook")
            waits.append(row.next_attempt_at - now)
            now = row.next_attempt_at
    assert row.attempts == 4 and row.last_error.startswith("webhook 127.0.0.1")
    assert [30 <= w <= 60 for w in waits[:1]] == [True]
    assert all(60 * 2**i / 2 <= w <= 60 * 2**i for i, w in enumerate(waits))
    assert replay.hits("/hook") == 4


def test_a_permanent_error_goes_dead_and_the_queue_moves_on(store: Any, replay: ReplayServer) -> None:
    replay.route("/hook", Reply(b'{"error": "bad field"}', 400), OK)
    record(store, "llm", [paper("P1")], ["hook"])
    record(store, "other", [paper("P2")], ["hook"])
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        report = dispatcher.run_due()
    assert (report.dead, report.sent) == (1, 1)
    dead, sent = rows(store, "hook")
    assert dead.state == "dead" and "HTTP 400" in dead.last_error and sent.state == "sent"


def test_backoff_after_thousands_of_tries_is_the_cap() -> None:
    rng = random.Random(1)
    assert 1800 <= Backoff().delay(5000, rng) <= 3600  # 2.0 ** 4999 overflowed a float


class Clock:
    """The dispatcher's clock, set by the test: ``step`` it as NTP steps a wrong one."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> None:
        self.now += seconds


def _tries_until_dead(store: Any, dispatcher: Dispatcher, clock: Clock, limit: int = 500) -> list[float]:
    """Run the dispatcher at each retry time its schedule sets (the peer failing) until the batch
    is dead; the clock at each try."""
    tries: list[float] = []
    while len(tries) < limit:
        tries.append(clock())
        report = dispatcher.run_due()
        if report.dead:
            return tries
        assert report.failed == 1 and states(store, "hook") == {"failed": 1}
        (row,) = rows(store, "hook")
        clock.now = row.next_attempt_at
    raise AssertionError(f"not given up after {limit} tries")


def test_gives_up_two_days_after_the_first_failure(store: Any, replay: ReplayServer) -> None:
    replay.route("/hook", Reply(b"", 502))
    t0 = time.time()
    record(store, "llm", [paper("P1")], ["hook"], at=t0 - 5 * 86400)  # waited days behind others
    clock = Clock(t0)
    with Dispatcher(store, {"hook": hook(replay, "hook")}, clock=clock, rng=random.Random(7)) as dispatcher:
        tries = _tries_until_dead(store, dispatcher, clock)
    assert tries[-2] < t0 + 2 * 86400 <= tries[-1]  # the first try two days on is the last
    (row,) = rows(store, "hook")
    assert row.state == "dead"
    hours = round((tries[-1] - t0) / 3600)
    assert hours in (48, 49) and row.last_error.startswith(
        f"gave up after {hours} hours of failures ({len(tries)} attempts): webhook ")
    assert replay.hits("/hook") == len(tries)


def test_a_clock_stepping_days_forward_between_two_tries_kills_no_alert(
    store: Any, replay: ReplayServer
) -> None:
    # A machine booted with a clock days behind; NTP sets it right while the peer is down.
    replay.route("/hook", *[Reply(b"busy", 503)] * 4, OK)
    t0 = time.time() - 3 * 86400
    record(store, "llm", [paper("P1"), paper("P2")], ["hook"], at=t0)
    clock = Clock(t0 + 1)
    with Dispatcher(store, {"hook": hook(replay, "hook")}, clock=clock) as dispatcher:
        assert dispatcher.run_due().failed == 2
        clock.step(3 * 86400)
        for _ in range(3):  # a few quick tries, the clock three days on: still failing, not dead
            assert dispatcher.run_due().failed == 2
            (row, _) = rows(store, "hook")
            assert row.state == "failed" and row.next_attempt_at - clock() <= 240
            clock.now = row.next_attempt_at
        assert dispatcher.run_due().sent == 2  # the peer is back: everything delivered
    assert states(store, "hook") == {"sent": 2} and replay.hits("/hook") == 5
    assert titles(posted(replay)[-1:]) == ["P1", "P2"]


def test_after_a_clock_step_a_batch_is_given_up_after_two_days_of_tries_on_schedule(
    store: Any, replay: ReplayServer
) -> None:
    """The days a stopped daemon or a stepped clock skipped do not count; the tries after do."""
    replay.route("/hook", Reply(b"", 502))
    t0 = time.time()
    record(store, "llm", [paper("P1")], ["hook"], at=t0)
    clock = Clock(t0)
    with Dispatcher(store, {"hook": hook(replay, "hook")}, clock=clock) as dispatcher:
        assert dispatcher.run_due().failed == 1
        clock.step(3 * 86400)
        stepped = clock()
        tries = _tries_until_dead(store, dispatcher, clock)
    assert 2 * 86400 - 3600 <= tries[-1] - stepped <= 2 * 86400 + 3600


def test_a_peer_asking_to_wait_a_day_each_time_is_given_up_after_two_days(
    store: Any, replay: ReplayServer
) -> None:
    replay.route("/hook", Reply(b"down for the day", 503, {"Retry-After": "86400"}))
    t0 = time.time()
    record(store, "llm", [paper("P1")], ["hook"], at=t0)
    clock = Clock(t0)
    with Dispatcher(store, {"hook": hook(replay, "hook")}, clock=clock) as dispatcher:
        tries = _tries_until_dead(store, dispatcher, clock)
    assert [round((at - t0) / 86400) for at in tries] == [0, 1, 2]


def test_a_peer_asking_for_short_pauses_is_waited_for_not_given_up_on(
    store: Any, replay: ReplayServer
) -> None:
    # A receiver being deployed answers 503 with Retry-After: 1 (or 0) for a minute; then it is back.
    pauses = [Reply(b"", 503, {"Retry-After": "1" if i % 2 else "0"}) for i in range(60)]
    replay.route("/hook", *pauses, OK)
    t0 = time.time()
    record(store, "llm", [paper("P1")], ["hook"], at=t0)
    now = t0
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        for _ in range(60):
            assert dispatcher.run_due(now=now).failed == 1
            (row,) = rows(store, "hook")
            assert row.next_attempt_at == now + 1  # Retry-After: 0 too: never a loop without a pause
            now += 1
        assert dispatcher.run_due(now=now).sent == 1
    assert states(store, "hook") == {"sent": 1} and replay.hits("/hook") == 61


def test_other_channels_deliver_on_time_while_one_is_slow_or_dead(
    store: Any, replay: ReplayServer, tmp_path: Path
) -> None:
    replay.route("/slow", Reply(b"", 200, delay=4))
    replay.route("/dead", Reply(b"", 500))
    replay.route("/fine", OK)
    for rule in ("r1", "r2"):
        record(store, rule, [paper(f"{rule}-a"), paper(f"{rule}-b")], ["slow", "dead", "fine", "feed"])
    feed = RssChannel(RssConfig(name="feed", type="rss"), store, tmp_path / "feeds")
    channels: dict[str, Channel] = {
        "slow": hook(replay, "slow", "/slow"), "dead": hook(replay, "dead", "/dead"),
        "fine": hook(replay, "fine", "/fine"), "feed": feed,
    }
    with Dispatcher(store, channels) as dispatcher:
        report = dispatcher.run_due(timeout=2)
        assert report.channels["slow"].busy
        assert report.channels["dead"].failed == 2  # its first batch; the second waits behind it
        assert states(store, "dead") == {"failed": 2, "pending": 2}
        assert report.channels["fine"].sent == 4 and report.channels["feed"].sent == 4
        assert (tmp_path / "feeds" / "feed.xml").exists()
        # New matches while "slow" is still sending: the others take them at once.
        record(store, "r1", [paper("r1-c")], ["slow", "fine", "feed"])
        again = dispatcher.run_due(timeout=2)
        assert again.channels["slow"].busy  # not started a second time
        assert again.channels["fine"].sent == 1 and again.channels["feed"].sent == 1
    # close() let the slow channel finish the batch in flight, and start no other
    assert states(store, "slow") == {"sent": 2, "pending": 3}
    assert titles(posted(replay, "/fine")) == ["r1-a", "r1-b", "r2-a", "r2-b", "r1-c"]


def test_a_closed_dispatcher_starts_nothing_and_raises_nothing(store: Any, replay: ReplayServer) -> None:
    """A dispatch job that picked a dispatcher just before a reload closed it: a no-op, no traceback."""
    replay.route("/hook", OK)
    record(store, "llm", [paper("P1")], ["hook"])
    dispatcher = Dispatcher(store, {"hook": hook(replay, "hook")})
    dispatcher.close()
    report = dispatcher.run_due()
    assert report.channels == {} and replay.hits("/hook") == 0
    assert states(store) == {"pending": 1}


def test_a_reloads_dispatcher_takes_a_channel_once_the_old_ones_send_on_it_ends(
    store: Any, replay: ReplayServer
) -> None:
    """Closing the old dispatcher waits for its send in flight (beside the daemon's work); its
    successor leaves that channel be meanwhile, so its batches still go one at a time, in order,
    and counts what the old one sent."""
    replay.route("/hook", Reply(b"", 200, delay=2), OK)
    record(store, "r1", [paper("first")], ["hook"])
    old = Dispatcher(store, {"hook": hook(replay, "hook")})
    assert old.run_due(timeout=0.2).channels["hook"].busy
    record(store, "r2", [paper("second")], ["hook"])
    new = Dispatcher(store, {"hook": hook(replay, "hook")})
    new.take_over(old)
    closing = threading.Thread(target=old.close, kwargs={"successor": new})
    closing.start()
    try:
        assert old.run_due(timeout=0.2).channels == {}
        assert new.run_due(timeout=0.2).channels["hook"].busy
        assert replay.hits("/hook") == 1
        closing.join(timeout=10)
        assert new.run_due().channels["hook"].sent == 2
    finally:
        new.close()
    assert titles(posted(replay)) == ["first", "second"]
    assert states(store) == {"sent": 2}


def test_a_channel_that_keeps_failing_is_told_once_and_once_more_when_it_answers_again(
    store: Any, replay: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook answering 429 Retry-After: 1 four times: one warning, not one a try, and a line
    when it takes the batch; tries keep going at the pace it asks."""
    busy = Reply(b"", 429, headers={"Retry-After": "1"})
    replay.route("/hook", busy, busy, busy, busy, OK)
    record(store, "r1", [paper("a")], ["hook"])
    caplog.set_level(logging.DEBUG, logger="monitor.outbox")
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        assert dispatcher.run_due().channels["hook"].sent == 1
    assert replay.hits("/hook") == 5
    told = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    warnings = [message for level, message in told if level == "WARNING"]
    assert len(warnings) == 1 and "to retry in 1s" in warnings[0] and "HTTP 429" in warnings[0], told
    assert any(line.startswith("channel hook answers again (failing since ") and "4 failed tries" in line
               for _, line in told), told


def test_a_peer_that_asks_for_short_pauses_for_over_a_minute_gets_longer_ones(
    store: Any, replay: ReplayServer
) -> None:
    """Retry-After is the least wait: after a minute of 429 Retry-After: 1, a try a minute, not a
    second (200 such channels kept a core busy with 200 tries a second)."""
    replay.route("/hook", Reply(b"", 429, {"Retry-After": "1"}))
    t0 = time.time()
    record(store, "llm", [paper("P1")], ["hook"], at=t0)
    now = t0
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        while now < t0 + 60:
            assert dispatcher.run_due(now=now).failed == 1
            (row,) = rows(store, "hook")
            assert row.next_attempt_at == now + 1
            now += 1
        assert dispatcher.run_due(now=now).failed == 1
        (row,) = rows(store, "hook")
        assert row.next_attempt_at == now + 60 and row.state == "failed"


def test_crash_recovery_sends_the_batch_in_flight_once_more(store: Any, replay: ReplayServer) -> None:
    replay.route("/hook", OK)
    record(store, "llm", [paper("P1"), paper("P2")], ["hook"])
    head = store.queue_head("hook")
    key, claimed = store.claim_batch("hook", time.time(), head=head, limit=100)  # then the process dies
    assert len(claimed) == 2 and states(store) == {"sending": 2}
    with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
        assert dispatcher.run_due().sent == 0  # in flight elsewhere: not touched
        assert dispatcher.recover() == 2
        assert dispatcher.run_due().sent == 2
        assert dispatcher.run_due().sent == 0
    bodies = posted(replay)
    assert len(bodies) == 1 and bodies[0]["key"] == key and titles(bodies) == ["P1", "P2"]


@pytest.mark.parametrize("then", ["next run", "reload", "stop"])
def test_a_batch_sent_while_another_writer_held_the_database_is_marked_later_not_sent_again(
    tmp_path: Path, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """A backup or an sqlite3 shell holds the database past the busy timeout just as a sent batch is
    to be marked: the next run marks it (the next dispatcher's, after a reload; or the stop, as it
    closes), rather than leaving it "sending" for the next start to send again."""
    monkeypatch.setattr(sql, "BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "db.sqlite"
    store = open_test_store(path)
    replay.route("/hook", Reply(b'{"ok": true}', 200, delay=0.5))
    record(store, "llm", [paper("P1"), paper("P2")], ["hook"])
    other = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)

    def write_while_it_sends() -> None:
        deadline = time.monotonic() + 10
        while states(store) != {"sending": 2} and time.monotonic() < deadline:
            time.sleep(0.01)
        other.execute("BEGIN IMMEDIATE")
        time.sleep(1.5)
        other.execute("COMMIT")

    try:
        dispatcher = Dispatcher(store, {"hook": hook(replay, "hook")})
        writer = threading.Thread(target=write_while_it_sends)
        writer.start()
        first = dispatcher.run_due()
        writer.join()
        assert "marking a batch" in (first.channels["hook"].error or "")
        assert states(store) == {"sending": 2}
        if then == "reload":
            successor = Dispatcher(store, {"hook": hook(replay, "hook")})
            dispatcher.close(successor=successor)
            dispatcher = successor
        if then == "stop":
            dispatcher.close()  # no run after it: the stop records the batch
        else:
            second = dispatcher.run_due()
            dispatcher.close()
            assert second.channels["hook"].error is None
        assert states(store) == {"sent": 2}
        assert len(posted(replay)) == 1
    finally:
        other.close()
        store.close()


def test_two_dispatchers_at_once_send_each_alert_once(store_url: str, replay: ReplayServer) -> None:
    replay.route("/hook", OK)
    stores = [open_test_store(store_url) for _ in range(2)]
    try:
        for i in range(30):
            record(stores[0], f"rule{i % 3}", [paper(f"P{i}")], ["hook"])
        dispatchers = [Dispatcher(s, {"hook": hook(replay, "hook")}, batch_size=2) for s in stores]
        threads = [threading.Thread(target=d.run_due) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for d in dispatchers:
            d.close()
        assert sorted(titles(posted(replay))) == sorted(f"P{i}" for i in range(30))
        assert states(stores[0]) == {"sent": 30}
    finally:
        for s in stores:
            s.close()


def test_a_digest_holds_alerts_until_its_time_then_sends_one_message(
    store: Any, replay: ReplayServer
) -> None:
    replay.route("/hook", OK)
    digest = Digest.parse("08:00", "Europe/Berlin")
    day = datetime(2026, 6, 12, 6, 0, tzinfo=UTC).timestamp()  # 08:00 in Berlin (summer time)
    record(store, "llm", [paper("A1")], ["hook"], at=day - 5000)
    record(store, "vision", [paper("B1")], ["hook"], at=day - 4000)
    record(store, "llm", [paper("A2")], ["hook"], at=day - 3000)
    with Dispatcher(store, {"hook": hook(replay, "hook")}, digests={"hook": digest}) as dispatcher:
        held = dispatcher.run_due(now=day - 60)
        assert held.sent == 0 and held.next_due == day  # before 08:00: held, until 08:00
        assert dispatcher.run_due(now=day + 60).sent == 3
        record(store, "llm", [paper("A3")], ["hook"], at=day + 120)
        held = dispatcher.run_due(now=day + 3600)
        assert held.sent == 0 and held.next_due == day + 86400  # waits for tomorrow
        assert dispatcher.run_due(now=day + 86400).sent == 1
    bodies = posted(replay)
    assert [(b["rule"], [p["title"] for p in b["papers"]]) for b in bodies] == [
        ("digest", ["A1", "B1", "A2"]), ("digest", ["A3"]),
    ]


def test_digest_slot_follows_the_time_zone() -> None:
    digest = Digest.parse("07:30", "America/New_York")
    now = datetime(2026, 1, 15, 20, 0, tzinfo=UTC).timestamp()  # 15:00 in New York
    assert datetime.fromtimestamp(digest.last_slot(now), UTC) == datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
    early = datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp()  # 07:00 there: yesterday's slot
    assert datetime.fromtimestamp(digest.last_slot(early), UTC) == datetime(2026, 1, 14, 12, 30, tzinfo=UTC)


def test_digest_slot_is_never_ahead_of_now_on_the_day_the_clocks_go_forward() -> None:
    digest = Digest.parse("02:30", "America/New_York")  # 2026-03-08: 02:00 EST is 03:00 EDT
    for minute in (10, 25):
        now = datetime(2026, 3, 8, 7, minute, tzinfo=UTC).timestamp()  # 03:10, 03:25 EDT
        assert digest.last_slot(now) <= now
        assert datetime.fromtimestamp(digest.last_slot(now), UTC) == datetime(2026, 3, 7, 7, 30, tzinfo=UTC)
    later = datetime(2026, 3, 8, 8, 0, tzinfo=UTC).timestamp()  # 04:00 EDT: that day's slot went by
    assert datetime.fromtimestamp(digest.last_slot(later), UTC) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def write_config(tmp_path: Path, replay: ReplayServer, source: bool = False, database: str = "") -> Path:
    config = tmp_path / "monitor.toml"
    database = database or f"sqlite:///{tmp_path}/monitor.db"
    text = (
        f'[monitor]\ndatabase = "{database}"\nfeeds_dir = "{tmp_path}/feeds"\n\n'
        f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{replay.url("/hook")}"\n\n'
        '[[channels]]\nname = "feed"\ntype = "rss"\n\n'
        '[[channels]]\nname = "console"\ntype = "console"\n\n'
        '[[rules]]\nname = "everything"\nnotify = ["hook", "feed", "console"]\n'
    )
    if source:
        text += f'\n[[sources]]\nname = "hf"\nurl = "{replay.url("/api/daily_papers")}"\nformat = "hf-json"\n'
    config.write_text(text)
    return config


@pytest.mark.slow
def test_status_shows_a_dead_delivery_and_retry_dead_requeues_it(
    tmp_path: Path, replay: ReplayServer, store_url: str
) -> None:
    config = write_config(tmp_path, replay, database=store_url)
    replay.route("/hook", Reply(b"unknown field", 422))
    store = open_test_store(store_url)
    try:
        record(store, "everything", [paper("Alpha"), paper("Beta")], ["hook", "feed"])
        channels: dict[str, Channel] = {"hook": hook(replay, "hook")}
        with Dispatcher(store, channels) as dispatcher:
            dispatcher.run_due()
        status = run_cli("status", "--config", str(config))
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0].split() == ["channel", "type", "pending", "failed", "dead", "sent", "today"]
        assert lines[1].split() == ["hook", "webhook", "0", "0", "2", "0"]
        assert lines[2].strip().startswith("last error: webhook 127.0.0.1:") and "HTTP 422" in lines[2]
        assert lines[3].split() == ["feed", "rss", "2", "0", "0", "0"]
        assert lines[4].split() == ["console", "console", "0", "0", "0", "0"]

        retried = run_cli("retry-dead", "--config", str(config), "hook")
        assert retried.returncode == 0
        assert retried.stdout.strip() == "requeued 2 dead deliveries (channel hook)"
        assert run_cli("retry-dead", "--config", str(config), "nope").returncode == 2
        replay.route("/hook", OK)
        with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
            assert dispatcher.run_due().sent == 2
        after = run_cli("status", "--config", str(config)).stdout.splitlines()
        assert after[1].split() == ["hook", "webhook", "0", "0", "0", "2"]
    finally:
        store.close()


def test_once_polls_then_delivers_everything_due_on_every_channel(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes(), 200, {"Content-Type": "application/json"}))
    replay.route("/hook", OK)
    config = write_config(tmp_path, replay, source=True)
    first = run_cli("once", "--config", str(config))
    assert first.returncode == 0, first.stderr
    papers = json.loads(HF_JSON.read_bytes())
    bodies = posted(replay)
    assert len(bodies) == 1 and len(bodies[0]["papers"]) == len(papers)
    assert sum(line.startswith("[everything] ") for line in first.stdout.splitlines()) == len(papers)
    parsed = feedparser.parse((tmp_path / "feeds" / "feed.xml").read_bytes())
    assert parsed.bozo == 0 and len(parsed.entries) == min(100, len(papers))
    second = run_cli("once", "--config", str(config))
    assert second.returncode == 0, second.stderr
    assert len(posted(replay)) == 1  # nothing new: nothing sent twice


def test_once_deletes_deliveries_sent_longer_ago_than_keep_sent(tmp_path: Path, replay: ReplayServer) -> None:
    replay.route("/hook", OK)
    config = write_config(tmp_path, replay)
    config.write_text(config.read_text().replace("[monitor]\n", '[monitor]\nkeep_sent = "30d"\n'))
    store = open_test_store(tmp_path / "monitor.db")
    try:
        long_ago = time.time() - 40 * 86_400
        record(store, "everything", [paper(f"Old {i}") for i in range(3)], ["hook"], at=long_ago)
        with Dispatcher(store, {"hook": hook(replay, "hook")}) as dispatcher:
            assert dispatcher.run_due(now=long_ago + 60).sent == 3
        record(store, "everything", [paper("Recent")], ["hook"], at=time.time() - 86_400)
        once = run_cli("once", "--config", str(config))
        assert once.returncode == 0, once.stderr
        assert "deleted 3 deliveries sent over 30 days ago" in once.stderr
        assert states(store) == {"sent": 1}  # the recent one, sent by this once
    finally:
        store.close()


@pytest.mark.slow
def test_status_shows_each_sources_last_poll_and_its_failures_in_a_row(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()), Reply(b"gone", 404))
    replay.route("/hook", OK)
    config = write_config(tmp_path, replay, source=True)

    def source_lines() -> list[str]:
        status = run_cli("status", "--config", str(config))
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("source "))
        assert lines[start].split() == ["source", "last", "poll", "status", "failures", "last", "success"]
        rows = lines[start + 1 :]
        return rows[: rows.index("")]  # (the daemon's line follows a blank one)

    before = run_cli("status", "--config", str(config))  # no store yet: none made by looking
    assert before.returncode == 2 and before.stderr.startswith("monitor.database: no store at "), before
    assert run_cli("once", "--config", str(config)).returncode == 0
    [ok] = source_lines()
    name, day, clock, status, failures, success_day, success_clock = ok.split()
    assert (name, status, failures, (success_day, success_clock)) == ("hf", "200", "0", (day, clock))
    assert run_cli("once", "--config", str(config)).returncode == 1
    failed, error = source_lines()
    assert failed.split()[3:5] == ["404", "1"] and failed.split()[5:] == [success_day, success_clock]
    assert error.strip().startswith("last error: FetchError: GET ") and "HTTP 404" in error
    # The days its catch-up has still to read, when it is behind.
    store = open_store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        store.record_caught_up("hf", datetime.now(UTC).date() - timedelta(days=4))
    finally:
        store.close()
    behind = source_lines()[2]
    first = datetime.now(UTC).date() - timedelta(days=3)
    assert behind.strip() == f"past days to read: from {first} (at the next good poll)"
