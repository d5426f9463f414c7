"""The SQL store on SQLAlchemy Core: SQLite (WAL) by default, or PostgreSQL (psycopg).

One process polls and delivers for a store at a time (``hold``, ``monitor.store.lock``), but others
store papers too (``backfill``); two writing at once must wait for each other, not fail on a key
the other just inserted: on SQLite write transactions start with ``BEGIN IMMEDIATE``
(and wait on busy_timeout); on PostgreSQL ``apply_poll`` locks the papers table against other
writers (readers go on) and the schema upgrade takes an advisory lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from monitor.errors import StoreError
from monitor.models import Hit, Match, Paper
from monitor.store import PollDiff
from monitor.store.base import READ_ONLY, insert_ignore, insert_ignore_select, paper_from_row, sqlite_file
from monitor.store.deliveries import Claimed, DeliveryQueries, Head
from monitor.store.diff import Known, changed_fields, dedupe, plan, stored_title_norm, title_form
from monitor.store.lock import Held, file_holder, pg_holder, take
from monitor.store.lookup import PaperLookup
from monitor.store.schema import (
    SCHEMA_VERSION,
    deliveries,
    ix_deliveries_batch,
    ix_deliveries_paper,
    ix_deliveries_queue,
    ix_deliveries_rule,
    ix_deliveries_state,
    ix_matches_paper,
    matches,
    meta,
    metadata,
    standbys,
    titles,
)
from monitor.store.schema import papers as paper_table
from monitor.store.source_states import SourceStates

BUSY_TIMEOUT_MS = 10_000
_CHUNK = 500  # bound parameters per IN (...), far below every database's limit
_POLL_PART = 50  # page papers stored at a time (and their matches), halved while a part takes too long
_WRITE_BUDGET = 1.0  # seconds a poll's write transaction goes on taking parts (a long poll commits often)
_SQLITE_TURN = 0.1  # seconds between a poll's write transactions on SQLite, for other writers
_PG_SCHEMA_LOCK = 0x70617065  # pg_advisory_xact_lock key of the schema upgrade ("pape")


def _v1_create_all(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _v2_deliveries_by_state(conn: Connection) -> None:
    ix_deliveries_state.create(conn, checkfirst=True)


def _v3_sources_caught_up(conn: Connection) -> None:
    if "caught_up" not in {column["name"] for column in sa.inspect(conn).get_columns("sources")}:
        conn.exec_driver_sql("ALTER TABLE sources ADD COLUMN caught_up TEXT")


def _v4_deliveries_by_rule(conn: Connection) -> None:
    ix_deliveries_rule.create(conn, checkfirst=True)


def _v5_standbys(conn: Connection) -> None:
    standbys.create(conn, checkfirst=True)


def _v6_deliveries_failing_since(conn: Connection) -> None:
    if "failing_since" not in {column["name"] for column in sa.inspect(conn).get_columns("deliveries")}:
        conn.exec_driver_sql("ALTER TABLE deliveries ADD COLUMN failing_since FLOAT")


def _v7_sources_format(conn: Connection) -> None:
    if "format" not in {column["name"] for column in sa.inspect(conn).get_columns("sources")}:
        conn.exec_driver_sql("ALTER TABLE sources ADD COLUMN format VARCHAR(16)")


def _v8_titles(conn: Connection) -> None:
    """The titles table, filled with the stored papers' titles (oldest paper first, as it would be)."""
    titles.create(conn, checkfirst=True)
    rows = conn.execute(sa.select(paper_table.c.id, paper_table.c.title).order_by(paper_table.c.id)).all()
    for start in range(0, len(rows), 5_000):
        part = rows[start : start + 5_000]
        insert_ignore(conn, titles, [{"form": title_form(title), "paper_id": id_} for id_, title in part],
                      ["form"])


def _v9_deliveries_posted_and_by_paper(conn: Connection) -> None:
    if "posted_at" not in {column["name"] for column in sa.inspect(conn).get_columns("deliveries")}:
        conn.exec_driver_sql("ALTER TABLE deliveries ADD COLUMN posted_at FLOAT")
    ix_deliveries_paper.create(conn, checkfirst=True)


def _v10_queue_and_batch_indexes(conn: Connection) -> None:
    """The indexes that make an outbox batch and a poll's matches cost in proportion to themselves,
    not to the backlog or the history; ix_deliveries_due, which ix_deliveries_queue replaces, goes."""
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_deliveries_due")
    for index in (ix_deliveries_queue, ix_deliveries_batch, ix_matches_paper):
        index.create(conn, checkfirst=True)


# MIGRATIONS[n] upgrades a database at version n to n + 1. Version 1 creates every table as
# schema.py has it; later steps must check before they alter (a fresh database gets them via v1).
MIGRATIONS: list[Callable[[Connection], None]] = [
    _v1_create_all, _v2_deliveries_by_state, _v3_sources_caught_up, _v4_deliveries_by_rule, _v5_standbys,
    _v6_deliveries_failing_since, _v7_sources_format, _v8_titles, _v9_deliveries_posted_and_by_paper,
    _v10_queue_and_batch_indexes,
]
assert len(MIGRATIONS) == SCHEMA_VERSION


def open_sql_store(url: str) -> SqlStore:
    """A ``SqlStore`` at ``url`` (parent directories of a SQLite file are created); ``StoreError``."""
    try:
        parsed = sa.make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreError(f"bad database URL: {exc}") from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            if (path := sqlite_file(parsed)) is not None:
                if path.parts[0].startswith("~"):  # (it used to be expanded for the lock alone)
                    raise StoreError(f"the SQLite path {path} starts with a directory named {path.parts[0]}, "
                                     "not a home directory: write the path out")
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(parsed)
            _tune_sqlite(engine)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
    except (OSError, ImportError, SQLAlchemyError) as exc:
        raise StoreError(f"cannot open the database: {exc}") from exc
    return SqlStore(engine)


def _tune_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Take over transaction control from the sqlite3 module (see the "begin" hook).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


_FIELDS = (
    "key", "arxiv_id", "title_norm", "title", "abstract", "authors", "authors_count", "organization",
    "organization_id", "published", "upvotes", "url", "source",
)


def _columns(paper: Paper, title_norm: str) -> dict[str, Any]:
    return {
        "key": paper.key, "arxiv_id": paper.arxiv_id, "title_norm": title_norm, "title": paper.title,
        "abstract": paper.abstract, "authors": list(paper.authors), "authors_count": paper.authors_count,
        "organization": paper.organization, "organization_id": paper.organization_id,
        "published": paper.published, "upvotes": paper.upvotes, "url": paper.url, "source": paper.source,
    }


def _edited() -> sa.Update:
    """The executemany UPDATE of papers seen again with different values."""
    values: dict[str, Any] = {name: sa.bindparam(f"b_{name}") for name in _FIELDS}
    values["last_seen"] = _later(sa.bindparam("b_seen"))
    values["updated_at"] = sa.bindparam("b_now")
    return paper_table.update().where(paper_table.c.id == sa.bindparam("b_id")).values(values)


def _later(seen: Any) -> Any:
    """``last_seen`` moved on to ``seen``, never back (a backfill sees papers on past days)."""
    return sa.case((paper_table.c.last_seen < seen, seen), else_=paper_table.c.last_seen)


_EDITED = _edited()


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class SqlStore(DeliveryQueries, SourceStates, PaperLookup):
    """The store on a SQLAlchemy engine (``self.engine``). See ``monitor.store.Store``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._held: Held | None = None
        try:
            self._upgrade()
        except BaseException:
            engine.dispose()
            raise

    def hold(self, command: str, *, patience: float = 2.0) -> None:
        """Become the one process that polls and delivers for this store, until ``close``;
        ``StoreBusy`` (a line naming the holder) if another is (``monitor.store.lock``), after
        ``patience`` seconds of trying (SQLite; ``status`` looks at the lock for a moment)."""
        if self._held is None:
            self._held = take(self.engine, command, patience)

    def confirm_hold(self) -> None:
        """The lock ``hold`` took is still this process's: taken again if it was lost and is free,
        ``StoreBusy`` naming the holder if another process has it now (``StoreError`` if that cannot
        be told). Every claim asks first."""
        if self._held is not None:
            self._held.confirm()

    def claim_batch(
        self, channel: str, now: float, *, head: Head, limit: int, created_before: float | None = None,
        key: str | None = None,
    ) -> tuple[str, list[Claimed]]:
        self.confirm_hold()  # a process that lost the lock sends nothing more
        return super().claim_batch(channel, now, head=head, limit=limit, created_before=created_before,
                                   key=key)

    def holder_may_outlive_lock(self) -> bool:
        """Whether the process that held this store's lock before ``hold`` took it may still be at
        work: on PostgreSQL its session may have ended in an outage while it was inside a send, which
        it may yet finish and record. A file lock (SQLite) goes only with its process."""
        return self._held is not None and not self._held.ends_with_process

    def release_hold(self) -> None:
        """Let go of the lock ``hold`` took (``close`` does too)."""
        if self._held is not None:
            self._held.release()
            self._held = None

    def holder(self) -> str | None:
        """Who holds this store's lock (``run, pid 1234 on host, since ...``), or None. Looks
        without holding it (``status``)."""
        if self.engine.url.get_backend_name() == "postgresql":
            with self.read("reading the lock's holder") as conn:
                return pg_holder(conn)
        return file_holder(self.engine.url)

    def note_standby(self, line: str, now: float | None = None) -> None:
        """Record that the standby ``line`` (``run --standby, pid 1234 on host, since ...``) waits,
        as of ``now``; the lines of standbys not heard from for a day (killed) go."""
        now = time.time() if now is None else now
        with self._write("recording a standby") as conn:
            gone = (standbys.c.line == line) | (standbys.c.seen < now - 86_400)
            conn.execute(standbys.delete().where(gone))
            conn.execute(standbys.insert().values(line=line, seen=now))

    def drop_standby(self, line: str) -> None:
        """The standby ``line`` no longer waits (it took over, or stopped)."""
        with self._write("removing a standby") as conn:
            conn.execute(standbys.delete().where(standbys.c.line == line))

    def standbys(self) -> list[tuple[str, float]]:
        """The standbys' lines and when each was last heard from, the latest first."""
        with self.read("reading the standbys") as conn:
            rows = conn.execute(sa.select(standbys.c.line, standbys.c.seen).order_by(standbys.c.seen.desc()))
            return [(line, seen) for line, seen in rows]

    def close(self) -> None:
        self.release_hold()
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def _upgrade(self) -> None:
        # The first use of the database: a failure here is most often that it cannot be reached,
        # so the line names it (its password hidden), which a user with several stores needs.
        shown = self.engine.url.render_as_string(hide_password=True)
        with self._write(f"cannot open the store {shown} (creating or upgrading its schema)") as conn:
            if conn.dialect.name == "postgresql":  # two processes starting on a new database
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
            meta.create(conn, checkfirst=True)
            stored = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
            try:
                version = int(stored) if stored is not None else 0
            except ValueError:
                raise StoreError(f"unreadable schema version {stored!r} in the meta table") from None
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}; this paper-monitor knows up to "
                    f"{SCHEMA_VERSION}: upgrade paper-monitor"
                )
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            if stored is None:
                conn.execute(meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))
            elif version != SCHEMA_VERSION:
                conn.execute(
                    meta.update().where(meta.c.name == "schema_version").values(value=str(SCHEMA_VERSION))
                )

    def check_writes(self) -> None:
        """Whether the store takes a write now (the daemon's health): a write transaction that changes
        nothing, the schema version set to itself; ``StoreError`` if not (SQLite locked by another
        process past busy_timeout, a database read-only or away)."""
        with self._write("writing") as conn:
            conn.execute(meta.update().where(meta.c.name == "schema_version").values(value=meta.c.value))

    def schema_version(self) -> int:
        """The schema version the database is at."""
        with self.read("reading the schema version") as conn:
            stored = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
        return int(stored or 0)

    # -- papers and the diff -----------------------------------------------------------------

    def apply_poll(
        self, papers: list[Paper], match: Callable[[Paper], list[Hit]], *, now: float | None = None,
        seen_at: float | None = None, deliver: bool = True,
    ) -> PollDiff:
        now = time.time() if now is None else now
        seen_at = now if seen_at is None else seen_at
        norms = {paper.title: stored_title_norm(paper.title) for paper in papers}
        incoming = dedupe(papers, norms.__getitem__)
        if not incoming:
            return PollDiff()
        # Parts of the page, each stored with its matches and their deliveries in one transaction;
        # a transaction ends after the part that took it past _WRITE_BUDGET: a poll of thousands
        # of papers matching many rules held SQLite's write lock for over a minute (every other
        # writer timed out). A crash between two transactions loses nothing and doubles nothing:
        # the next poll finds the stored papers known (their matches recorded) and the rest new.
        new: list[Paper] = []
        changes: list[Paper] = []
        found: list[Match] = []
        start, size = 0, _POLL_PART
        while start < len(incoming):
            if start and self.engine.dialect.name == "sqlite":
                # A waiting writer's busy handler looks again every 0.1 s at most: a pause that long
                # lets it in (PostgreSQL queues the waiters: it has its turn as the lock goes).
                time.sleep(_SQLITE_TURN)
            with self._write("storing a poll") as conn:
                if conn.dialect.name == "postgresql":
                    # One poll at a time, like BEGIN IMMEDIATE on SQLite: the diff reads, then inserts.
                    # SHARE ROW EXCLUSIVE blocks only writers of papers; reads and FK checks go on.
                    conn.exec_driver_sql("LOCK TABLE papers IN SHARE ROW EXCLUSIVE MODE")
                began = time.monotonic()
                while True:
                    part = incoming[start : start + size]
                    started = time.monotonic()
                    fresh, changed, recorded = self._apply_part(conn, part, norms, match, now, seen_at,
                                                                deliver)
                    if time.monotonic() - started > _WRITE_BUDGET:
                        size = max(1, size // 2)  # papers that match many rules: smaller parts
                    start += len(part)
                    new += fresh
                    changes += changed
                    found += recorded
                    if start >= len(incoming) or time.monotonic() - began >= _WRITE_BUDGET:
                        break
        return PollDiff(new=new, changed=changes, matches=found)

    def _apply_part(
        self, conn: Connection, incoming: list[Paper], norms: Mapping[str, str],
        match: Callable[[Paper], list[Hit]], now: float, seen_at: float, deliver: bool,
    ) -> tuple[list[Paper], list[Paper], list[Match]]:
        """Store ``incoming`` (deduplicated page papers) and record their matches, in ``conn``'s
        transaction: (the new papers, the changed ones, the matches recorded)."""
        known, forms = self._load_known(conn, incoming, norms)
        todo = plan(incoming, known, norms.__getitem__, forms)
        ids: dict[str, int] = {}
        if todo.fresh:
            rows = [
                {**_columns(paper, norm), "first_seen": seen_at, "last_seen": seen_at, "updated_at": now}
                for paper, norm in todo.fresh
            ]
            insert = paper_table.insert().returning(paper_table.c.id, paper_table.c.key)
            inserted = conn.execute(insert, rows)
            ids.update({key: id_ for id_, key in inserted})
        changed: list[Paper] = []
        edits: list[dict[str, Any]] = []
        untouched: list[int] = []
        for row_id, sighting in todo.seen.items():
            ids[sighting.merged.key] = row_id
            old, merged = sighting.known.paper, sighting.merged
            if changed_fields(old, merged):
                changed.append(merged)
            if merged != old or sighting.title_norm != sighting.known.title_norm:
                columns = _columns(merged, sighting.title_norm)
                edits.append({f"b_{name}": value for name, value in columns.items()} | {
                    "b_id": row_id, "b_now": now, "b_seen": seen_at,
                })
            else:
                untouched.append(row_id)
        if edits:
            conn.execute(_EDITED, edits)
        for chunk in _chunks(untouched):  # the common case on a re-poll: one statement
            update = paper_table.update().where(paper_table.c.id.in_(chunk))
            conn.execute(update.values(last_seen=_later(seen_at)))
        fresh = [paper for paper, _ in todo.fresh]
        seen_forms = {title_form(paper.title): ids[paper.key] for paper in fresh}
        for row_id, sighting in todo.seen.items():
            seen_forms.update(dict.fromkeys(sighting.forms, row_id))
        new_forms = [{"form": f, "paper_id": id_} for f, id_ in seen_forms.items() if f not in forms]
        insert_ignore(conn, titles, new_forms, ["form"])
        recorded = self._record_matches(conn, [*fresh, *changed], ids, match, now, deliver)
        return fresh, changed, recorded

    def _load_known(
        self, conn: Connection, incoming: list[Paper], norms: Mapping[str, str]
    ) -> tuple[list[Known], dict[str, int]]:
        """The stored papers any page paper may be, by key, arXiv id, normalized title or a title
        it was seen with (and those titles' forms: form -> paper id): two SELECTs per 225 papers (at
        most 900 bound parameters, below SQLite's oldest limit)."""
        found: dict[int, Known] = {}
        forms: dict[str, int] = {}
        for start in range(0, len(incoming), 225):
            chunk = incoming[start : start + 225]
            arxiv_ids = {p.arxiv_id for p in chunk if p.arxiv_id}
            wanted = {title_form(p.title) for p in chunk}
            stored = sa.select(titles.c.form, titles.c.paper_id).where(titles.c.form.in_(wanted))
            by_form = {form: paper_id for form, paper_id in conn.execute(stored)}
            forms.update(by_form)
            # Ids, not a subquery: PostgreSQL reads the whole table for an OR with a subquery in it.
            query = sa.select(paper_table).where(sa.or_(
                paper_table.c.key.in_({p.key for p in chunk}),
                paper_table.c.title_norm.in_({norms[p.title] for p in chunk}),
                *([paper_table.c.id.in_(set(by_form.values()))] if by_form else []),
                *([paper_table.c.arxiv_id.in_(arxiv_ids)] if arxiv_ids else []),
            ))
            for row in conn.execute(query):
                found.setdefault(row.id, Known(row.id, paper_from_row(row), row.title_norm))
        return list(found.values()), forms

    def _record_matches(
        self, conn: Connection, candidates: list[Paper], ids: dict[str, int],
        match: Callable[[Paper], list[Hit]], now: float, deliver: bool,
    ) -> list[Match]:
        """Match the new and changed papers; record each (rule, paper) the first time, with one
        pending delivery per channel it notifies (if ``deliver``). Returns the matches recorded now."""
        found: dict[tuple[str, int], Match] = {}
        for paper in candidates:
            paper_id = ids[paper.key]
            for hit in match(paper):
                if (hit.rule, paper_id) not in found:
                    found[hit.rule, paper_id] = Match(hit.rule, paper, hit.reasons, hit.notify)
        if not found:
            return []
        paper_ids = sorted({paper_id for _, paper_id in found})
        known: set[tuple[str, int]] = set()
        for chunk in _chunks(paper_ids):
            query = sa.select(matches.c.rule, matches.c.paper_id).where(matches.c.paper_id.in_(chunk))
            known.update((rule, paper_id) for rule, paper_id in conn.execute(query))
        fresh = {pair: hit for pair, hit in found.items() if pair not in known}
        if not fresh:
            return []
        rows = [
            {"rule": rule, "paper_id": paper_id, "reasons": list(hit.reasons), "matched_at": now}
            for (rule, paper_id), hit in fresh.items()
        ]
        inserted = conn.execute(
            matches.insert().returning(matches.c.id, matches.c.rule, matches.c.paper_id), rows
        )
        match_ids = {(rule, paper_id): id_ for id_, rule, paper_id in inserted}
        if not deliver:
            return list(fresh.values())
        # The outbox rows from the matches just inserted, by INSERT ... SELECT, a statement per
        # channel and 500 matches: a row of parameters per delivery cost as much as the inserts.
        by_channel: dict[str, list[int]] = {}
        for pair, recorded in fresh.items():
            for channel in dict.fromkeys(recorded.notify):
                by_channel.setdefault(channel, []).append(match_ids[pair])
        m = matches.c
        for channel, of_channel in by_channel.items():
            for chunk in _chunks(of_channel):
                picked = sa.select(m.id, m.rule, m.paper_id, sa.literal(channel), sa.literal("pending"),
                                 sa.literal(0), sa.literal(now), sa.literal(now)).where(m.id.in_(chunk))
                columns = ["match_id", "rule", "paper_id", "channel", "state", "attempts", "next_attempt_at",
                           "created_at"]
                insert_ignore_select(conn, deliveries, columns, picked, ["rule", "paper_id", "channel"])
        return list(fresh.values())

    def iter_papers(self, since: float | None = None) -> Iterator[Paper]:
        # Keyset pages in short read transactions: no connection is held while the caller works.
        last_id = 0
        while True:
            query = sa.select(paper_table).where(paper_table.c.id > last_id)
            query = query.order_by(paper_table.c.id).limit(_CHUNK)
            if since is not None:
                query = query.where(paper_table.c.last_seen >= since)
            with self.read("reading papers") as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield paper_from_row(row)
            last_id = rows[-1].id

    def get_paper(self, key: str) -> Paper | None:
        with self.read("reading a paper") as conn:
            row = conn.execute(sa.select(paper_table).where(paper_table.c.key == key)).first()
        return paper_from_row(row) if row is not None else None

    def count_papers(self) -> int:
        with self.read("counting papers") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(paper_table)).scalar_one())
