"""What a long history costs the running daemon: the store's periodic queries (outbox gauges every
10 s, feed versions after every dispatch, a feed's newest items, ``status``) and /metrics, on a
SQLite store holding a year of sent deliveries, against the queries they replaced (which read the
whole history each time), run in the same process on the same file.

    .venv/bin/python benchmarks/history.py [--rows 1000000] [--rules 100000] [--rounds 5]

The store is built with plain INSERTs: ``--rows`` matches, each delivered to two channels (a Slack
channel and an RSS feed), in batches of 20 spread over 365 days, plus a few hundred rows not sent.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Gauge, generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.metrics import Metrics
from monitor.store import open_store
from monitor.store.sql import SqlStore

DAY = 86_400.0
CHANNELS = ("team", "feed")


def build(path: Path, rows: int, rules: int, seed: int = 1) -> None:
    open_store(f"sqlite:///{path}").close()  # the schema, indexes included
    rng = random.Random(seed)
    papers = max(1, rows // 20)
    start = time.time() - 365 * DAY
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO papers (id, key, title_norm, title, authors, source, first_seen, last_seen, updated_at)"
        " VALUES (?, ?, ?, ?, '[]', 'hf', ?, ?, ?)",
        ((i, f"arxiv:{i}", f"paper {i}", f"Paper {i}", start, start, start) for i in range(1, papers + 1)),
    )
    match_rows = []
    delivery_rows = []
    fired: list[int] = []
    for i in range(1, rows + 1):
        paper = (i - 1) // 20 + 1  # 20 rules fire on each paper
        if not fired:
            fired = rng.sample(range(rules), min(20, rules))
        rule = f"rule-{fired.pop()}"
        created = start + (i / rows) * 365 * DAY
        match_rows.append((i, rule, paper, created))
        for channel in CHANNELS:
            unsent = i > rows - 200
            state = rng.choice(("pending", "failed", "dead")) if unsent else "sent"
            sent_at = None if unsent else created + 5 + (i // 20) % 7  # a batch shares its time
            delivery_rows.append((i, rule, paper, channel, state, created, sent_at))
    db.executemany("INSERT INTO matches (id, rule, paper_id, reasons, matched_at) VALUES (?, ?, ?, '[]', ?)",
                   match_rows)
    db.executemany(
        "INSERT INTO deliveries (match_id, rule, paper_id, channel, state, attempts, next_attempt_at,"
        " created_at, sent_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
        ((m, r, p, c, s, t, t, sent) for m, r, p, c, s, t, sent in delivery_rows),
    )
    db.commit()
    db.close()


# The queries the daemon ran before (each reads every delivery or match ever recorded).
BY_STATE = "SELECT channel, state, count(*) FROM deliveries GROUP BY channel, state"


def old_outbox_stats(store: SqlStore) -> object:
    with store.engine.connect() as conn:
        return (conn.exec_driver_sql(BY_STATE).all(),
                conn.exec_driver_sql("SELECT channel, min(created_at) FROM deliveries WHERE state IN"
                                     " ('pending', 'failed', 'sending') GROUP BY channel").all(),
                conn.exec_driver_sql("SELECT rule, count(*) FROM matches GROUP BY rule").all())


def old_feed_versions(store: SqlStore) -> object:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT channel, count(*), max(sent_at) FROM deliveries"
                                    " WHERE state = 'sent' AND channel IN ('feed') GROUP BY channel").all()


def old_feed_rows(store: SqlStore) -> object:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT d.id, d.rule, m.reasons, d.created_at, p.key, p.title FROM deliveries d"
            " JOIN matches m ON d.match_id = m.id JOIN papers p ON d.paper_id = p.id"
            " WHERE d.channel = 'feed' AND (d.state = 'sent' OR d.id IN (-1))"
            " ORDER BY d.created_at DESC, d.id DESC LIMIT 100").all()


def old_rule_feed_rows(store: SqlStore, rule: str) -> object:
    """A rule's feed as the store read it before ix_deliveries_rule: the channel's sent rows, all."""
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT d.id, d.rule, m.reasons, d.created_at, p.key, p.title"
            " FROM deliveries d INDEXED BY ix_deliveries_state"
            " JOIN matches m ON d.match_id = m.id JOIN papers p ON d.paper_id = p.id"
            " WHERE d.channel = 'feed' AND d.state = 'sent' AND d.rule = ?"
            " ORDER BY d.created_at DESC, d.id DESC LIMIT 100", (rule,)).all()


def old_delivery_counts(store: SqlStore, since: float) -> object:
    with store.engine.connect() as conn:
        return (conn.exec_driver_sql(BY_STATE).all(),
                conn.exec_driver_sql(f"SELECT channel, count(*) FROM deliveries WHERE state = 'sent'"
                                     f" AND sent_at >= {since} GROUP BY channel").all())


def timed(work: Callable[[], object], rounds: int) -> float:
    """The median seconds of ``rounds`` runs (after one to warm the page cache)."""
    work()
    spent = []
    for _ in range(rounds):
        began = time.perf_counter()
        work()
        spent.append(time.perf_counter() - began)
    return statistics.median(spent)


def prune(store: SqlStore, copy: Path) -> None:
    """keep_sent = 180d on the year of history: the store's chunked deletes (each its own short
    transaction), then a day later, against one DELETE (on a copy), which holds the database's
    write lock throughout, stopping polls and sends meanwhile."""
    before = time.time() - 180 * DAY
    chunks: list[float] = []
    began = [0.0]

    def start(conn: object) -> None:
        began[0] = time.perf_counter()

    def end(conn: object) -> None:
        chunks.append(time.perf_counter() - began[0])

    sa.event.listen(store.engine, "begin", start)
    sa.event.listen(store.engine, "commit", end)
    try:
        t0 = time.perf_counter()
        gone = store.prune_sent(before, keep={"feed": 100})
        first_s = time.perf_counter() - t0
    finally:
        sa.event.remove(store.engine, "begin", start)
        sa.event.remove(store.engine, "commit", end)
    daily_s = timed(lambda: store.prune_sent(before + DAY, keep={"feed": 100}), 1)
    db = sqlite3.connect(copy)
    try:
        t0 = time.perf_counter()
        with db:
            naive = db.execute("DELETE FROM deliveries WHERE state = 'sent' AND sent_at < ?",
                               (before,)).rowcount
        naive_s = time.perf_counter() - t0
    finally:
        db.close()
    print(f"keep_sent 180d, first run: {gone:,} rows in {first_s:.1f}s, the longest transaction "
          f"{max(chunks) * 1e3:.0f}ms; one DELETE ({naive:,} rows): {naive_s:.1f}s holding the database "
          f"({naive_s / max(chunks):.0f}x longer); the next day's run: {daily_s * 1e3:.1f}ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="matches in the store")
    parser.add_argument("--rules", type=int, default=100_000, help="rules they are spread over")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        began = time.perf_counter()
        build(path, args.rows, args.rules)
        print(f"store: {args.rows:,} matches, {2 * args.rows:,} deliveries over 365 days, "
              f"{path.stat().st_size / 1e6:,.0f} MB (built in {time.perf_counter() - began:.0f}s)")
        store = open_store(f"sqlite:///{path}")
        midnight = time.time() - DAY
        try:
            pairs = [
                ("outbox gauges (every 10 s)", lambda: store.outbox_stats(),
                 lambda: old_outbox_stats(store), 6),
                ("feed version (every dispatch, 2 s)", lambda: store.feed_versions(["feed"]),
                 lambda: old_feed_versions(store), 30),
                ("a feed's newest 100 items", lambda: store.feed_rows("feed", 100),
                 lambda: old_feed_rows(store), 0),
                ("a rule's feed (?rule=), 100 items", lambda: store.feed_rows("feed", 100, rule="rule-7"),
                 lambda: old_rule_feed_rows(store, "rule-7"), 0),
                ("status: per channel counts", lambda: store.delivery_counts(midnight, list(CHANNELS)),
                 lambda: old_delivery_counts(store, midnight), 0),
            ]
            per_minute_old = per_minute_new = 0.0
            print(f"{'query':<36} {'now':>10} {'before':>10} {'ratio':>8}")
            for what, new, old, times_a_minute in pairs:
                new_s, old_s = timed(new, args.rounds), timed(old, args.rounds)
                per_minute_new += new_s * times_a_minute
                per_minute_old += old_s * times_a_minute
                print(f"{what:<36} {new_s * 1e3:8.2f}ms {old_s * 1e3:8.1f}ms {old_s / new_s:7.0f}x")
            print(f"database time per minute of the idle daemon: {per_minute_new:.3f}s now, "
                  f"{per_minute_old:.1f}s before ({per_minute_old / 60:.0%} of a core)")
            seed_s = timed(store.matches_by_rule, 1)
            print(f"matches by rule, read once at start: {seed_s:.2f}s")
            by_rule = store.matches_by_rule()
            copy = Path(tmp) / "copy.db"
            shutil.copyfile(path, copy)
            prune(store, copy)
        finally:
            store.close()

    rules = [f"rule-{i}" for i in range(args.rules)]
    metrics = Metrics(rules=lambda: rules)
    metrics.matches.seed(by_rule)
    render_s = timed(metrics.render, args.rounds)
    size = len(metrics.render())
    before = CollectorRegistry()  # before: a gauge series for every rule with matches
    gauge = Gauge("paper_monitor_matches", "Matches recorded, by rule", ["rule"], registry=before)
    for rule, n in by_rule.items():
        gauge.labels(rule).set(n)
    before_s = timed(lambda: generate_latest(before), args.rounds)
    print(f"/metrics with {args.rules:,} rules: {render_s * 1e3:.1f}ms, {size / 1024:,.0f} KiB now; "
          f"the matches gauge alone before: {before_s * 1e3:,.0f}ms, "
          f"{len(generate_latest(before)) / 1024:,.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
