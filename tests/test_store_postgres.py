"""The store on a real PostgreSQL server (tests/pg_support.py): what only PostgreSQL can get wrong.

The store and outbox behaviour shared with SQLite runs on both in tests/test_store.py and
tests/test_outbox.py (the ``store_url`` fixture); this file has the schema as PostgreSQL sees it,
concurrent starts, row locking of claims, values PostgreSQL is strict about, random pages, and
``paper-monitor once`` against a PostgreSQL URL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import load_settings
from monitor.errors import StoreError
from monitor.models import Hit, Paper
from monitor.outbox import open_dispatcher
from monitor.store import open_store
from monitor.store.deliveries import Head
from monitor.store.lock import StoreBusy
from monitor.store.schema import SCHEMA_VERSION, deliveries, meta
from monitor.store.sql import SqlStore
from tests.daemon_support import Daemon, cli, source, wait_for
from tests.helpers import HF_JSON, REPO, ReplayServer, Reply, free_port
from tests.outbox_support import paper as outbox_paper
from tests.outbox_support import record
from tests.pg_support import PgServer
from tests.slack_standin import SlackStandIn
from tests.test_store import everything, hf_papers, nothing, paper, sightings


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    return pg_server.new_database()


@pytest.fixture
def store(pg_url: str) -> Iterator[SqlStore]:
    opened = open_store(pg_url)
    yield opened
    opened.close()


def column_types(store: SqlStore, table: str) -> dict[str, str]:
    query = sa.text("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t")
    with store.engine.connect() as conn:
        return {name: kind for name, kind in conn.execute(query, {"t": table})}


# -- schema --------------------------------------------------------------------------------


def test_schema_is_created_versioned_and_kept_on_reopen(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        assert store.engine.dialect.name == "postgresql" and store.engine.driver == "psycopg"
        assert store.schema_version() == SCHEMA_VERSION
        papers = column_types(store, "papers")
        assert papers["authors"] == "json" and papers["published"] == "date"
        assert papers["first_seen"] == papers["last_seen"] == "double precision"  # epoch seconds
        assert papers["id"] == "integer" and column_types(store, "matches")["reasons"] == "json"
        store.apply_poll(hf_papers(), everything)
    finally:
        store.close()
    again = open_store(pg_url)
    try:
        assert again.schema_version() == SCHEMA_VERSION
        assert again.count_papers() == 30
        with again.engine.connect() as conn:
            assert conn.execute(sa.select(meta.c.name, meta.c.value)).all() == [
                ("schema_version", str(SCHEMA_VERSION))
            ]
    finally:
        again.close()


def test_processes_starting_at_once_on_a_new_database_all_open_it(pg_url: str) -> None:
    opened: list[SqlStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(open_store(pg_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == [] and len(opened) == 4
        assert {s.schema_version() for s in opened} == {SCHEMA_VERSION}
    finally:
        for s in opened:
            s.close()


def test_a_server_that_is_not_there_is_a_store_error(pg_server: PgServer) -> None:
    # Port 1: nobody listens there.
    url = sa.make_url(pg_server.admin_url).set(port=1, database="nope").render_as_string(False)
    began = time.monotonic()
    with pytest.raises(StoreError, match="OperationalError") as err:
        open_store(url + "?connect_timeout=5")
    assert isinstance(err.value.__cause__, sa.exc.OperationalError) and time.monotonic() - began < 30
    missing = sa.make_url(pg_server.admin_url).set(database="no_such_db").render_as_string(False)
    with pytest.raises(StoreError, match="no_such_db"):
        open_store(missing)


# -- values PostgreSQL is strict about ---------------------------------------------------------


def test_long_scraped_values_and_long_names_are_stored(store: SqlStore) -> None:
    title = "An " + " ".join(f"w{i}" for i in range(2000))  # 10 kB: over a btree entry's 2704 bytes
    long_id = "a" * 80 + "/1234567"  # an old-style arXiv id of any length parses
    page = [paper(title, source="hf-text"), paper("Short", arxiv_id=long_id)]
    rule, channel = "r" * 300, "c" * 300

    def long_rule(p: Paper) -> list[Hit]:
        return [Hit(rule=rule, reasons=("x" * 5000,), notify=(channel,))]

    diff = store.apply_poll(page, long_rule)
    assert len(diff.new) == 2 and len(diff.matches) == 2
    assert store.apply_poll(page, long_rule).new == []  # found again by its (long) title
    assert store.apply_poll([paper(title + " part two", source="hf-text")], nothing).new != []
    assert store.get_paper(f"arxiv:{long_id}") is not None
    state = store.record_failure("s" * 300, "http://x/" + "p" * 3000, error="e" * 5000)
    assert state.consecutive_failures == 1 and len(state.last_error or "") == 2000


def test_epoch_seconds_and_json_round_trip_exactly(store: SqlStore) -> None:
    now = 1781234567.123456
    state = store.record_success("hf", "http://h", status=200, etag='W/"x"', last_modified=None, now=now)
    assert state.last_success == now and store.get_source_state("hf") == state
    names = ['Zoë "Q" O\'Brien', "李 雷", "back\\slash", "emoji 🧪"]
    stored = store.apply_poll([paper("Unicode", arxiv_id="2606.00042", authors=names)], nothing, now=now)
    assert stored.new[0].authors == names
    got = store.get_paper("arxiv:2606.00042")
    assert got is not None and got.authors == names
    assert [p.key for p in store.iter_papers(since=now)] == ["arxiv:2606.00042"]
    assert list(store.iter_papers(since=now + 1e-5)) == []


# -- claims under concurrency ----------------------------------------------------------------


def claim_in_thread(store: SqlStore, head: Head, limit: int = 10) -> tuple[str, list[int]]:
    """``claim_batch`` in a thread, so that a claim waiting on a lock fails the test, not hangs it."""
    out: list[tuple[str, list[int]]] = []

    def claim() -> None:
        key, rows = store.claim_batch("hook", time.time() + 1, head=head, limit=limit)
        out.append((key, [r.id for r in rows]))

    thread = threading.Thread(target=claim, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the claim waited for another transaction's row locks"
    return out[0]


def test_a_claim_passes_over_rows_another_dispatcher_is_claiming(store: SqlStore) -> None:
    ids = record(store, "llm", [outbox_paper(f"P{i}") for i in range(5)], ["hook"])
    head = store.queue_head("hook")
    assert head is not None
    with store.engine.connect() as other, other.begin():  # another dispatcher, mid-claim
        other.execute(sa.select(deliveries.c.id).where(deliveries.c.id.in_(ids[:2])).with_for_update())
        key, claimed = claim_in_thread(store, head)
        assert claimed == ids[2:]
    key2, claimed2 = claim_in_thread(store, head)  # once released, the rest is claimed
    assert claimed2 == ids[:2] and key2 != key

    # A retried batch that another dispatcher holds is not waited for either.
    assert store.mark_failed(key, "HTTP 503", retry_at=0.0, now=0.0) == 3
    failed = store.queue_head("hook")
    assert failed is not None and failed.batch_key == key and failed.state == "failed"
    with store.engine.connect() as other, other.begin():
        other.execute(sa.select(deliveries.c.id).where(deliveries.c.batch_key == key).with_for_update())
        assert claim_in_thread(store, failed) == (key, [])
    assert claim_in_thread(store, failed) == (key, ids[2:])
    assert store.mark_sent(key, time.time()) == 3 and store.mark_sent(key2, time.time()) == 2
    assert store.delivery_counts(0.0, ["hook"])["hook"].sent_today == 5


def test_polls_from_two_processes_wait_for_each_other_and_readers_go_on(store: SqlStore, pg_url: str) -> None:
    other = open_store(pg_url)
    try:
        with store.engine.connect() as holder, holder.begin():  # a poll in progress elsewhere
            holder.exec_driver_sql("LOCK TABLE papers IN SHARE ROW EXCLUSIVE MODE")
            done = threading.Event()

            def poll() -> None:
                other.apply_poll([paper("Later")], nothing)
                done.set()

            thread = threading.Thread(target=poll)
            thread.start()
            assert not done.wait(0.5)  # the second poll waits ...
            assert other.count_papers() == 0  # ... while reads go on
        thread.join(10)
        assert done.is_set() and store.count_papers() == 1
    finally:
        other.close()


# -- the diff under random pages, on PostgreSQL ------------------------------------------------


@pytest.fixture(scope="module")
def shared_store(pg_server: PgServer) -> Iterator[SqlStore]:
    opened = open_store(pg_server.new_database())
    yield opened
    opened.close()


@settings(max_examples=25, deadline=None)
@given(pages=st.lists(st.lists(sightings, max_size=6), min_size=1, max_size=4))
def test_random_pages_on_postgres(shared_store: SqlStore, pages: list[list[Paper]]) -> None:
    store = shared_store
    with store.engine.begin() as conn:  # a fresh store per example, cheaper than a database
        conn.exec_driver_sql("TRUNCATE deliveries, matches, titles, papers RESTART IDENTITY")
    announced: list[str] = []
    matched: list[str] = []
    for page in pages:
        diff = store.apply_poll(page, everything)
        announced += [p.key for p in diff.new]
        matched += [m.paper.key for m in diff.matches]
        assert all(store.get_paper(p.key) is not None for p in page if p.arxiv_id)
    stored = list(store.iter_papers())
    assert len(announced) == len(set(announced)) == len(stored) == store.count_papers()
    assert sorted(matched) == sorted(announced)


# -- the real CLI ----------------------------------------------------------------------------


@pytest.mark.slow
def test_once_against_postgres_stores_the_page_once(
    pg_url: str, replay: ReplayServer, tmp_path: Path
) -> None:
    json_type = {"Content-Type": "application/json"}
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes(), headers=json_type))
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[monitor]\ndatabase = "{pg_url}"\n\n'
        f'[[sources]]\nname = "hf"\nurl = "{replay.url("/api/daily_papers")}"\nformat = "hf-json"\n\n'
        '[[channels]]\nname = "console"\ntype = "console"\n\n'
        '[[rules]]\nname = "all"\nnotify = ["console"]\n',
        encoding="utf-8",
    )
    for new in (30, 0):
        run = subprocess.run(
            [sys.executable, "-m", "monitor", "once", "--config", str(config)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        )
        assert run.returncode == 0, run.stderr
        (line,) = [line for line in run.stdout.splitlines() if line.startswith("hf: ")]
        assert f"30 papers, {new} new, 0 changed, {new} matched" in line, line
        assert sum(line.startswith("[all] ") for line in run.stdout.splitlines()) == new
    store = open_store(pg_url)
    try:
        assert store.count_papers() == 30
        assert store.delivery_counts(0.0, ["console"])["console"].sent_today == 30
        state = store.get_source_state("hf")
        assert state is not None and state.consecutive_failures == 0 and state.last_status == 200
    finally:
        store.close()


def test_the_lock_of_a_killed_holder_is_free_at_once(pg_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from monitor.store import open_store; "
         "store = open_store(sys.argv[1]); store.hold('run'); print('held', flush=True); time.sleep(120)",
         pg_url],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    store = open_store(pg_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match=rf"another paper-monitor \(run, pid {holder.pid} on "):
            store.hold("once")
        holder.kill()  # SIGKILL: the connection drops with the process, nothing is released by hand
        holder.wait()
        deadline = time.monotonic() + 10
        while True:
            try:
                store.hold("once")
                break
            except StoreBusy:
                assert time.monotonic() < deadline, "the killed holder's lock was never let go"
                time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
        store.close()


@pytest.mark.slow
def test_the_daemon_lives_through_a_database_outage_and_holds_the_lock_again(
    pg_server: PgServer, pg_url: str, replay: ReplayServer, tmp_path: Path
) -> None:
    """The server goes down (an upgrade): polls fail as store errors, /healthz says the store fails,
    no traceback; once it is back, the daemon takes its lock again (a ``once`` is turned away as
    before) and is healthy again."""
    replay.route("/papers", Reply(HF_JSON.read_bytes(), headers={"Content-Type": "application/json"}))
    port = free_port()
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[monitor]\ndatabase = "{pg_url}"\nfeeds_dir = "{tmp_path}/feeds"\n\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\n\n{source("hf", replay.url("/papers"))}\n'
        '[[channels]]\nname = "console"\ntype = "console"\n\n[[channels]]\nname = "feed"\ntype = "rss"\n\n'
        '[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["console", "feed"]\n',
        encoding="utf-8",
    )
    daemon = Daemon(config, port)
    look = open_store(pg_url)

    def held_by_daemon() -> bool:
        try:
            return (look.holder() or "").startswith(f"run, pid {daemon.proc.pid} on ")
        except StoreError:  # the server is still coming back
            return False

    try:
        daemon.wait_up()
        wait_for(held_by_daemon, 20, "the daemon to hold the lock")
        if not pg_server.pause():
            pytest.skip("the PostgreSQL server is not this test session's own: it cannot be restarted")
        try:
            wait_for(lambda: any(p.startswith("store: failing since ") for p in daemon.get("/healthz").json()
                                 ["problems"]), 15, "/healthz to say the store fails")
            metrics = daemon.get("/metrics").text
            assert 'paper_monitor_poll_errors_total{kind="store",source="hf"}' in metrics
            assert "paper_monitor_store_reachable 0.0" in metrics
            # A rule's feed not asked for before is read from the store: not now, and a reader is told so.
            rule_feed = daemon.get("/feeds/feed.atom?rule=hot")
            assert (rule_feed.status_code, rule_feed.headers.get("Retry-After")) == (503, "30")
            time.sleep(4.5)  # two dispatches more while the store is away
        finally:
            pg_server.resume()
        polls = len(daemon.polls("hf"))

        wait_for(held_by_daemon, 20, "the daemon to hold the lock again after the restart")
        once = subprocess.run(
            [sys.executable, "-m", "monitor", "once", "--config", str(config)],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        )
        assert once.returncode == 1, once
        assert f"another paper-monitor (run, pid {daemon.proc.pid} on " in once.stderr
        wait_for(lambda: any(p.get("status") == 200 for p in daemon.polls("hf")[polls:]), 20,
                 "a good poll after the restart")
        wait_for(lambda: daemon.get("/healthz").status_code == 200, 20, "/healthz to be ok again")
        assert daemon.proc.poll() is None
    finally:
        code, _ = daemon.stop()
        look.close()
    assert code == 0
    log = daemon.log_text()
    assert "the database session holding the store's lock ended (a server restart?); taken again" in log
    # One line (the error's class depends on the moment the server went: OperationalError, InterfaceError).
    assert "outbox gauges not read: reading outbox statistics: " in log, [
        line for line in log.splitlines() if "outbox" in line or "store" in line
    ]
    assert "Traceback" not in log
    assert log.count("dispatch failed") == 1 and "dispatch: the store answers again" in log  # once an outage


# -- a fresh start after a holder lost its lock ------------------------------------------------


class _HeldSlack(SlackStandIn):
    """The stand-in Slack API, holding the first post until ``release`` (a send in flight), the others
    answered at once."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        super().__init__()

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        if not self.held.is_set():
            self.held.set()
            self.release.wait(30)
        return super()._answer(path, headers, raw)


def _end_lock_session(pg_url: str) -> None:
    """The database session that holds the store's lock ends, as in an outage; its process lives on."""
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            ended = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )).scalars().all()
        assert ended == [True]
    finally:
        engine.dispose()


def _states(pg_url: str) -> dict[str, str]:
    """Each delivery's state, by its rule."""
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(deliveries.c.rule, deliveries.c.state)).all())
    finally:
        engine.dispose()


@contextmanager
def _daemon_inside_a_send(pg_url: str, slack: SlackStandIn, config: Path) -> Iterator[SqlStore]:
    """A daemon's store and dispatcher (this process) inside the send of the alert of "Speculative
    Decoding", its lock lost to an outage; on leaving, the send ends and the daemon records it."""
    settings = load_settings(config)
    store = open_store(pg_url)
    store.hold("run")
    record(store, "hot", [outbox_paper("Speculative Decoding")], ["team"])
    dispatcher = open_dispatcher(settings, store)
    sending = threading.Thread(target=dispatcher.run_due)
    sending.start()
    try:
        assert isinstance(slack, _HeldSlack)
        wait_for(slack.held.is_set, 10, "the daemon's send to begin")
        _end_lock_session(pg_url)
        yield store
    finally:
        slack.release.set()
        sending.join(30)
        dispatcher.close()
        store.close()


def test_a_fresh_once_leaves_a_batch_claimed_seconds_ago_to_the_daemon_that_lost_the_lock(
    pg_url: str, tmp_path: Path
) -> None:
    """A daemon's session ends in an outage while it is inside a send: the lock is free, but that
    daemon lives, and will record the send. A ``once`` started then sends the batch it claimed
    seconds ago not at once (it would arrive twice), but one claimed long ago it does."""
    with _HeldSlack() as slack:
        config = tmp_path / "monitor.toml"
        config.write_text(
            f'[monitor]\ndatabase = "{pg_url}"\n\n'
            f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\nchannel = "#papers"\n'
            f'base_url = "{slack.base_url}"\ntimeout = 60\n\n'
            '[[rules]]\nname = "hot"\nnotify = ["team"]\n[[rules]]\nname = "old"\nnotify = ["team"]\n',
            encoding="utf-8",
        )
        with _daemon_inside_a_send(pg_url, slack, config) as store:
            record(store, "old", [outbox_paper("Left Long Ago")], ["team"])  # a crash, ten minutes ago
            with store.engine.begin() as conn:
                conn.execute(deliveries.update().where(deliveries.c.rule == "old")
                             .values(state="sending", claimed_at=time.time() - 600, batch_key="gone"))
            once = cli(config, "once")
            assert once.returncode == 0, once.stderr
        assert _states(pg_url) == {"hot": "sent", "old": "sent"}
    alerts = Counter(title for m in slack.messages for title in ("Speculative Decoding", "Left Long Ago")
                     if title in json.dumps(m.payload))
    assert alerts == {"Speculative Decoding": 1, "Left Long Ago": 1}
    assert "delivery: team: 1 sent" in once.stdout
    assert "1 deliveries claimed less than 60 s ago" in once.stderr, once.stderr


@pytest.mark.slow
def test_a_fresh_daemon_sends_a_batch_claimed_seconds_ago_only_if_still_in_flight_a_minute_later(
    pg_url: str, tmp_path: Path
) -> None:
    """As above, a ``run`` started then: the batch claimed long ago goes at once; the batch of the
    daemon that lost the lock is left to it, and it records it; a batch claimed seconds ago by one
    that died is sent once the grace has passed (a minute; half that here, the same code path)."""
    # Longer than "hot" and "died" were claimed before the daemon looks (a start slowed by a busy
    # machine: 15-20 s seen at a load of 11), and than it takes to record "hot" after that.
    grace = 30.0
    port = free_port()
    with _HeldSlack() as slack:
        config = tmp_path / "monitor.toml"
        config.write_text(
            f'[monitor]\ndatabase = "{pg_url}"\nfeeds_dir = "{tmp_path}/feeds"\n\n'
            f'[server]\nlisten = "127.0.0.1:{port}"\n\n'
            f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\nchannel = "#papers"\n'
            f'base_url = "{slack.base_url}"\ntimeout = 60\n\n'
            + "".join(f'[[rules]]\nname = "{rule}"\nnotify = ["team"]\n' for rule in ("hot", "old", "died")),
            encoding="utf-8",
        )
        daemon: Daemon | None = None
        try:
            with _daemon_inside_a_send(pg_url, slack, config) as store:
                for rule, title, ago in (("old", "Left Long Ago", 600), ("died", "Claimed By The Dead", 5)):
                    record(store, rule, [outbox_paper(title)], ["team"])
                    with store.engine.begin() as conn:
                        conn.execute(deliveries.update().where(deliveries.c.rule == rule)
                                     .values(state="sending", claimed_at=time.time() - ago, batch_key=rule))
                daemon = Daemon(config, port, tune={"monitor.outbox.RECOVERY_GRACE": grace,
                                                    "monitor.daemon.RECOVERY_GRACE": grace})
                began = time.monotonic()
                daemon.wait_up()
                wait_for(lambda: "Left Long Ago" in json.dumps([m.payload for m in slack.messages]), 20,
                         "the batch left long ago to be sent")
                time.sleep(3)
                assert len(slack.messages) == 1
            wait_for(lambda: len(slack.messages) == 3, grace + 30, "the dead one's batch, after the grace")
            assert time.monotonic() - began >= grace
        finally:
            code = daemon.stop()[0] if daemon is not None else 0
        assert code == 0
        assert _states(pg_url) == {"hot": "sent", "old": "sent", "died": "sent"}
    titles = ("Speculative Decoding", "Left Long Ago", "Claimed By The Dead")
    alerts = Counter(title for m in slack.messages for title in titles if title in json.dumps(m.payload))
    assert alerts == dict.fromkeys(titles, 1)
    assert daemon is not None
    assert "2 deliveries claimed less than 30 s ago, by a paper-monitor that may still" in daemon.log_text()
