"""A store with a long history: what the running daemon asks of it again and again (outbox gauges,
feed versions, a feed's newest items, status counts, the queue heads) reads the few rows that are
not sent, or an index range, never every delivery or match ever recorded; the schema upgrade that
adds the index keeps the data; the matches gauge stays bounded with 100,000 rules.
(benchmarks/history.py measures it on a year of deliveries.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.metrics import OTHER_RULES, RULE_SERIES, Metrics
from monitor.models import Hit
from monitor.store import open_store
from monitor.store.schema import SCHEMA_VERSION, meta
from monitor.store.sql import SqlStore
from tests.outbox_support import paper, record
from tests.test_store import everything, hf_papers

DAY = 86_400.0


@pytest.fixture
def store(tmp_path: Any) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path}/history.db")
    yield opened
    opened.close()


def _send(store: SqlStore, channel: str, at: float) -> int:
    """Claim the next batch of ``channel`` and mark it sent at ``at``; how many rows it held."""
    head = store.queue_head(channel)
    assert head is not None
    key, rows = store.claim_batch(channel, at, head=head, limit=2)
    assert store.mark_sent(key, at) == len(rows) > 0
    return len(rows)


def _full_scans(store: SqlStore, work: Callable[[], object]) -> list[str]:
    """The statements ``work`` runs whose SQLite plan reads a whole table (or a whole index)."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", keep)
    try:
        work()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", keep)
    assert statements, "nothing was asked of the database"
    return _scans(store, statements)


def _scans(store: SqlStore, statements: list[tuple[str, Any]]) -> list[str]:
    found = []
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            found += [f"{row[3]}  <-  {statement}" for row in plan
                      if row[3].startswith(("SCAN deliveries", "SCAN matches"))]
    return found


def test_a_rules_feed_reads_that_rules_rows_alone(store: SqlStore) -> None:
    record(store, "often", [paper(f"Often {i}") for i in range(6)], ["feed"], at=time.time() - 100)
    record(store, "rare", [paper("Rare")], ["feed"], at=time.time() - 200)
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", keep)
    try:
        assert store.feed_rows("feed", 100, rule="rare") == []  # nothing sent yet
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", keep)
    with store.engine.connect() as conn:
        plans = [row[3] for statement, parameters in statements if statement.lstrip().startswith("SELECT")
                 for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                 if "deliveries" in row[3]]
    wanted = "ix_deliveries_rule (channel=? AND rule=? AND state=?)"
    assert plans and all(wanted in plan for plan in plans), plans


def test_a_feed_item_finds_its_papers_older_rows_by_index(store: SqlStore) -> None:
    now = time.time()
    early = paper("Early")
    record(store, "first", [early], ["feed"], at=now - 100)
    record(store, "r", [paper(f"Between {i}") for i in range(40)], ["feed"], at=now - 90)
    record(store, "later", [early], ["feed"], at=now - 80)
    _send_all(store, "feed", now)
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", keep)
    try:
        assert [rule for _, rule, _, _, _ in store.feed_rows("feed", 1)] == ["later", "first"]
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", keep)
    assert _scans(store, statements) == []
    with store.engine.connect() as conn:
        plans = [row[3] for statement, parameters in statements if "paper_id IN" in statement
                 for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    assert any("ix_deliveries_paper (channel=? AND paper_id=?)" in plan for plan in plans), plans


def test_the_checker_sees_a_query_that_reads_the_whole_history(store: SqlStore) -> None:
    # The shape of what the gauges asked before: counted every delivery ever made.
    assert _scans(store, [("SELECT channel, state, count(*) FROM deliveries GROUP BY channel, state", ())])
    assert _scans(store, [("SELECT rule, count(*) FROM matches GROUP BY rule", ())])


def test_what_the_daemon_asks_again_and_again_reads_no_whole_table(store: SqlStore) -> None:
    now = time.time()
    ids = record(store, "r", [paper(f"Paper {i}") for i in range(6)], ["team", "feed"], at=now - 100)
    _send(store, "feed", now - 50)
    repeated: dict[str, Callable[[], object]] = {
        "outbox gauges": store.outbox_stats,
        "feed versions": lambda: store.feed_versions(["feed", "team"]),
        "a feed's newest items": lambda: store.feed_rows("feed", 100, include=ids[:2]),
        "a feed's newest item, with its papers' every rule": lambda: store.feed_rows("feed", 1),
        "status": lambda: store.delivery_counts(now - 86_400, ["team", "feed"]),
        "a queue head": lambda: store.queue_head("team"),
        "why, a paper's story": lambda: store.paper_story(next(store.iter_papers()).key),
        "recovery at start": lambda: store.recover_sending(now),
        "deleting old sent rows (daily)": lambda: store.prune_sent(now - 10, keep={"feed": 2}),
    }
    for what, work in repeated.items():
        assert _full_scans(store, work) == [], what


def test_a_version_1_database_gains_the_indexes_the_catch_up_column_and_the_standbys_and_keeps_its_data(
    store_url: str,
) -> None:
    first = open_store(store_url)
    try:
        record(first, "r", [paper("Kept")], ["team"])
        first.record_success("hf", "http://hf/api/daily_papers", status=200, etag=None, last_modified=None)
        with first.engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_deliveries_state")
            conn.exec_driver_sql("DROP INDEX ix_deliveries_rule")
            conn.exec_driver_sql("ALTER TABLE sources DROP COLUMN caught_up")
            conn.exec_driver_sql("DROP TABLE standbys")
            conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN failing_since")
            conn.exec_driver_sql("ALTER TABLE sources DROP COLUMN format")
            conn.exec_driver_sql("DROP TABLE titles")
            conn.exec_driver_sql("DROP INDEX ix_deliveries_paper")
            conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN posted_at")
            _as_v9(conn)
            conn.execute(meta.update().where(meta.c.name == "schema_version").values(value="1"))
    finally:
        first.close()
    upgraded = open_store(store_url)
    try:
        assert upgraded.schema_version() == SCHEMA_VERSION == 10
        assert upgraded.apply_poll([paper("K-ept", arxiv_id=None)], lambda p: []).new == []  # by its form
        indexes = {ix["name"] for ix in sa.inspect(upgraded.engine).get_indexes("deliveries")}
        assert {"ix_deliveries_state", "ix_deliveries_rule", "ix_deliveries_paper"} <= indexes
        assert upgraded.delivery_counts(0.0, ["team"])["team"].pending == 1
        head = upgraded.queue_head("team")
        assert head is not None
        key, claimed = upgraded.claim_batch("team", time.time(), head=head, limit=10)
        assert [row.failing_since for row in claimed] == [None]
        upgraded.mark_failed(key, "HTTP 503", retry_at=0.0, now=123.0)
        head = upgraded.queue_head("team")
        assert head is not None
        _, claimed = upgraded.claim_batch("team", time.time(), head=head, limit=10)
        assert [row.failing_since for row in claimed] == [123.0]
        state = upgraded.get_source_state("hf")
        assert state is not None and state.last_status == 200 and state.caught_up is None
        upgraded.record_caught_up("hf", date(2026, 11, 30))
        assert (upgraded.get_source_state("hf") or state).caught_up == date(2026, 11, 30)
        assert state.format is None
        upgraded.record_success("hf", "http://hf/api/daily_papers", status=200, etag=None, last_modified=None,
                                fmt="hf-json")
        assert (upgraded.get_source_state("hf") or state).format == "hf-json"
        upgraded.note_standby("run --standby, pid 1 on b, since 2026-12-01 10:00 UTC", 1.0)
        assert upgraded.standbys() == [("run --standby, pid 1 on b, since 2026-12-01 10:00 UTC", 1.0)]
    finally:
        upgraded.close()


def test_a_version_8_database_gains_the_posted_column_and_the_paper_index_and_keeps_its_data(
    store_url: str,
) -> None:
    first = open_store(store_url)
    try:
        now = time.time()
        record(first, "r", [paper("Sent"), paper("Old")], ["feed"], at=now - 3 * DAY)
        _send_all(first, "feed", now - 2 * DAY)
        record(first, "later", [paper("Pending")], ["feed", "team"], at=now - DAY)
        with first.engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_deliveries_paper")
            conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN posted_at")
            _as_v9(conn)
            conn.execute(meta.update().where(meta.c.name == "schema_version").values(value="8"))
        assert "posted_at" not in {c["name"] for c in sa.inspect(first.engine).get_columns("deliveries")}
    finally:
        first.close()
    upgraded = open_store(store_url)
    try:
        assert upgraded.schema_version() == SCHEMA_VERSION == 10
        by_paper = [ix["column_names"] for ix in sa.inspect(upgraded.engine).get_indexes("deliveries")
                    if ix["name"] == "ix_deliveries_paper"]
        assert by_paper == [["channel", "paper_id"]]
        assert [(rule, p.title) for _, rule, p, _, _ in upgraded.feed_rows("feed", 10)] == [
            ("r", "Old"), ("r", "Sent")]
        counts = upgraded.delivery_counts(0.0, ["feed", "team"])
        assert (counts["feed"].pending, counts["feed"].sent_today, counts["team"].pending) == (1, 2, 1)
        head = upgraded.queue_head("team")
        assert head is not None
        key, claimed = upgraded.claim_batch("team", now, head=head, limit=10)
        assert [(row.paper.title, row.posted) for row in claimed] == [("Pending", False)]
        assert upgraded.mark_posted(key, [claimed[0].id], now) == 1
        upgraded.recover_sending(now)
        head = upgraded.queue_head("team")
        assert head is not None and head.batch_key == key
        _, claimed = upgraded.claim_batch("team", now, head=head, limit=10)
        assert [(row.paper.title, row.posted) for row in claimed] == [("Pending", True)]
    finally:
        upgraded.close()


def _as_v9(conn: sa.Connection) -> None:
    """The indexes back as v9 had them: ix_deliveries_due, none of v10's."""
    for name in ("ix_deliveries_queue", "ix_deliveries_batch", "ix_matches_paper"):
        conn.exec_driver_sql(f"DROP INDEX {name}")
    conn.exec_driver_sql("CREATE INDEX ix_deliveries_due ON deliveries (channel, state, next_attempt_at)")


def test_a_version_9_database_gains_the_queue_batch_and_match_indexes_and_keeps_its_data(
    store_url: str,
) -> None:
    first = open_store(store_url)
    try:
        now = time.time()
        record(first, "r", [paper("Sent"), paper("Old")], ["feed"], at=now - 3 * DAY)
        _send_all(first, "feed", now - 2 * DAY)
        record(first, "later", [paper("Pending"), paper("Failing")], ["team"], at=now - DAY)
        with first.engine.begin() as conn:
            _as_v9(conn)
            conn.execute(meta.update().where(meta.c.name == "schema_version").values(value="9"))
    finally:
        first.close()
    upgraded = open_store(store_url)
    try:
        assert upgraded.schema_version() == SCHEMA_VERSION == 10
        indexes = {ix["name"]: ix["column_names"] for table in ("deliveries", "matches")
                   for ix in sa.inspect(upgraded.engine).get_indexes(table)}
        assert indexes["ix_deliveries_queue"] == ["channel", "state", "id"]
        assert indexes["ix_deliveries_batch"] == ["batch_key"]
        assert indexes["ix_matches_paper"] == ["paper_id"]
        assert "ix_deliveries_due" not in indexes
        assert [p.title for _, _, p, _, _ in upgraded.feed_rows("feed", 10)] == ["Old", "Sent"]
        head = upgraded.queue_head("team")
        assert head is not None and head.rule == "later"
        key, claimed = upgraded.claim_batch("team", now, head=head, limit=1)
        assert [row.paper.title for row in claimed] == ["Pending"]
        upgraded.mark_failed(key, "HTTP 503", retry_at=now - 1, now=now)
        head = upgraded.queue_head("team")
        assert head is not None and head.batch_key == key and head.state == "failed"
        again, claimed = upgraded.claim_batch("team", now, head=head, limit=1)
        assert again == key and [row.paper.title for row in claimed] == ["Pending"]
        assert upgraded.mark_sent(key, now) == 1
        head = upgraded.queue_head("team")
        assert head is not None and head.batch_key is None
        _, claimed = upgraded.claim_batch("team", now, head=head, limit=10)
        assert [row.paper.title for row in claimed] == ["Failing"]
        # and the matches already recorded stay recorded: the same papers again alert nothing
        assert upgraded.apply_poll([paper("Other")], lambda p: [Hit("r", ("k",), ("feed",))]).matches != []
    finally:
        upgraded.close()


def _backlog(store: SqlStore, channel: str, rows: int, rules: int) -> None:
    """``rows`` more pending deliveries of ``channel`` over ``rules`` rules, behind those there."""
    now = time.time()
    with store.engine.begin() as conn:
        first = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM papers").scalar_one() + 1
        conn.exec_driver_sql(
            "INSERT INTO papers (id, key, title_norm, title, authors, source, first_seen, last_seen,"
            " updated_at)"
            " VALUES (?, ?, ?, ?, '[]', 'hf-json', ?, ?, ?)",
            [(i, f"title:backlog{i}", f"backlog {i}", f"Backlog {i}", now, now, now)
             for i in range(first, first + rows)])
        conn.exec_driver_sql(
            "INSERT INTO matches (rule, paper_id, reasons, matched_at) VALUES (?, ?, '[]', ?)",
            [(f"rule-{i % rules}", i, now) for i in range(first, first + rows)])
        conn.exec_driver_sql(
            "INSERT INTO deliveries (match_id, rule, paper_id, channel, state, attempts, next_attempt_at,"
            " created_at) SELECT id, rule, paper_id, ?, 'pending', 0, ?, ? FROM matches WHERE paper_id >= ?",
            (channel, now, now, first))


def _steps(store: SqlStore, work: Callable[[], object]) -> int:
    """How much work SQLite does for ``work``: its virtual machine's instructions, in thousands."""
    ticks = [0]

    def count() -> int:
        ticks[0] += 1
        return 0

    def watch(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        conn.connection.dbapi_connection.set_progress_handler(count, 1000)

    sa.event.listen(store.engine, "before_cursor_execute", watch)
    try:
        work()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", watch)
    return ticks[0]


def test_an_outbox_batch_costs_the_same_however_long_the_backlog(store: SqlStore) -> None:
    """The head of a queue, a claim and a retry's claim read the batch, not the queue: with 20 times
    the backlog, the same work (they sorted, or read, every pending row of the channel)."""
    def batch() -> None:
        head = store.queue_head("team")
        assert head is not None and head.batch_key is None
        key, rows = store.claim_batch("team", time.time(), head=head, limit=10)
        assert len(rows) == 10
        store.mark_failed(key, "HTTP 503", retry_at=0.0, now=time.time())
        head = store.queue_head("team")
        assert head is not None and head.batch_key == key
        assert len(store.claim_batch("team", time.time(), head=head, limit=10)[1]) == 10
        assert store.mark_sent(key, time.time()) == 10

    _backlog(store, "team", 1_000, 50)
    small = _steps(store, batch)
    _backlog(store, "team", 19_000, 50)
    large = _steps(store, batch)
    assert large < 2 * small + 20, (small, large)


def test_a_feed_version_moves_with_every_batch_sent_even_at_the_same_instant(store: SqlStore) -> None:
    record(store, "r", [paper(f"Paper {i}") for i in range(4)], ["feed"])
    assert store.feed_versions(["feed"]) == {}
    at = time.time()
    _send(store, "feed", at)
    first = store.feed_versions(["feed"])
    _send(store, "feed", at)  # a second batch, stamped with the very same time
    second = store.feed_versions(["feed"])
    assert first["feed"] != second["feed"]
    assert [row[0] for row in store.feed_rows("feed", 3)] == [4, 3, 2]  # newest first, up to the limit


def test_the_matches_gauge_counts_on_from_the_store_and_stays_bounded() -> None:
    rules = [f"rule-{i}" for i in range(RULE_SERIES + 5)]
    metrics = Metrics(rules=lambda: rules)
    metrics.matches.seed({"rule-0": 7, f"rule-{RULE_SERIES + 1}": 3, "gone": 99})
    metrics.matches.add({"rule-0": 1, f"rule-{RULE_SERIES + 4}": 2})
    body = metrics.render().decode()
    series = [line for line in body.splitlines() if line.startswith("paper_monitor_matches{")]
    assert len(series) == RULE_SERIES + 1  # one per rule, then the rest summed
    assert 'paper_monitor_matches{rule="rule-0"} 8.0' in series
    assert f'paper_monitor_matches{{rule="{OTHER_RULES}"}} 5.0' in series
    assert not any('rule="gone"' in line for line in series)  # rules no longer configured drop out


def _send_all(store: SqlStore, channel: str, at: float) -> None:
    while (head := store.queue_head(channel)) is not None and head.next_attempt_at <= at:
        key, _ = store.claim_batch(channel, at, head=head, limit=100)
        store.mark_sent(key, at)


def test_a_feed_keeps_its_newest_papers_however_many_rules_each_matched(store_url: str) -> None:
    def three_rules(paper: Any) -> list[Hit]:
        return [Hit(rule=rule, reasons=("every paper",), notify=("feed",)) for rule in ("a", "b", "c")]

    store = open_store(store_url)
    try:
        now, papers = time.time(), hf_papers()
        for i in range(10):  # a poll a day, a paper each, matched by three rules
            store.apply_poll(papers[i : i + 1], three_rules, now=now - (400 - i) * DAY)
        _send_all(store, "feed", now - 300 * DAY)
        assert store.prune_sent(now - 200 * DAY, keep={"feed": 4}) == 6 * 3
        assert [paper.key for _, _, paper, _, _ in store.feed_rows("feed", 4)][::3] == [
            paper.key for paper in papers[9:5:-1]
        ]
    finally:
        store.close()


def test_a_feed_keeps_the_old_row_of_a_rule_that_matched_one_of_its_papers_long_before(
    store_url: str,
) -> None:
    store = open_store(store_url)
    try:
        now = time.time()
        early = paper("Matched twice")
        for rule, found, days in (("first", [early], 400), ("r", [paper(f"Old {i}") for i in range(40)], 390),
                                  ("later", [early], 10), ("r", [paper(f"New {i}") for i in range(4)], 9)):
            record(store, rule, found, ["feed"], at=now - days * DAY)
            _send_all(store, "feed", now - days * DAY + 1)
        assert store.prune_sent(now - 365 * DAY, keep={"feed": 5}) == 40  # the old papers' rows alone
        items = store.feed_rows("feed", 5)
        assert [rule for _, rule, p, _, _ in items if p.key == early.key] == ["later", "first"]
        assert len({p.key for _, _, p, _, _ in items}) == 5
    finally:
        store.close()


def test_old_sent_deliveries_go_but_feeds_keep_their_newest_and_nothing_is_alerted_again(
    store_url: str,
) -> None:
    store = open_store(store_url)
    try:
        now, papers = time.time(), hf_papers()
        store.apply_poll(papers[:10], everything, now=now - 400 * DAY)  # channels console and feed
        for channel in ("console", "feed"):
            _send_all(store, channel, now - 400 * DAY)
        store.apply_poll(papers[10:20], everything, now=now - 10 * DAY)
        for channel in ("console", "feed"):
            _send_all(store, channel, now - 10 * DAY)
        store.apply_poll(papers[20:25], everything, now=now - 400 * DAY)  # old, and never sent

        assert store.prune_sent(now - 365 * DAY, keep={"feed": 12}) == 10 + 8
        counts = store.delivery_counts(now - 30 * DAY, ["console", "feed"])
        assert (counts["console"].sent_today, counts["console"].pending) == (10, 5)
        assert (counts["feed"].sent_today, counts["feed"].pending) == (10, 5)
        assert len(store.feed_rows("feed", 100)) == 12  # the feed's newest 12: 10 recent, 2 old
        assert store.matches_by_rule() == {"all": 25}
        again = store.apply_poll(papers[:25], everything)
        assert again.matches == []  # a paper whose deliveries went is not alerted again
        assert store.prune_sent(now - 365 * DAY, keep={"feed": 12}) == 0
    finally:
        store.close()
