"""One store's rows copied into another, as one snapshot (``paper-monitor copy-store``).

Every row keeps its id, so matches and deliveries still point at their papers, and every state:
a daemon pointed at the copy alerts nothing again and loses nothing. The target is filled in one
transaction, so a failure leaves it empty, as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import StoreError
from monitor.store.base import READ_ONLY, reason
from monitor.store.schema import deliveries, matches, papers, sources, titles
from monitor.store.sql import SqlStore

# In the order the foreign keys need; the meta table is the target's own (its schema version), and
# the standbys' lines are of the processes on the source.
TABLES = (papers, titles, matches, deliveries, sources)
CHUNK = 2_000  # rows read and written at a time


def row_counts(store: SqlStore) -> dict[str, int]:
    """The rows of each copied table in ``store``."""
    with store.read("counting the rows") as conn:
        return _counts(conn)


def copy_rows(source: SqlStore, target: SqlStore, progress: Callable[[int], None] = lambda rows: None,
              counted: Callable[[dict[str, int]], None] = lambda counts: None) -> dict[str, int]:
    """Copy every row of ``TABLES`` from ``source`` into the empty ``target`` and return the counts;
    ``counted`` hears them before the copy begins, ``progress`` the rows as they are written.
    ``StoreError`` if the target is not empty or a database fails."""
    with _snapshot(source) as src:
        counts = _counts(src)
        counted(counts)
        try:
            with target.engine.begin() as dst:
                if any((held := _counts(dst)).values()):
                    found = ", ".join(f"{n:,} in {name}" for name, n in held.items() if n)
                    raise StoreError(f"the target holds rows already ({found}): "
                                     "copy-store fills empty stores only")
                for table in TABLES:
                    key = next(iter(table.primary_key.columns))
                    rows = src.execution_options(yield_per=CHUNK).execute(sa.select(table).order_by(key))
                    for part in rows.partitions(CHUNK):
                        dst.execute(table.insert(), [row._asdict() for row in part])
                        progress(len(part))
                if dst.dialect.name == "postgresql":  # the next ids follow the copied ones
                    for table in (papers, matches, deliveries):
                        dst.exec_driver_sql(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table.name}")
                written = _counts(dst)
                if written != counts:
                    raise StoreError(f"the copy holds {written}, not the {counts} read; nothing was written")
        except SQLAlchemyError as exc:
            raise StoreError(f"copying the rows: {reason(exc)}") from exc
    return counts


@contextmanager
def _snapshot(store: SqlStore) -> Iterator[Connection]:
    """One read transaction that sees the store as it was when it began, whatever is written
    meanwhile (SQLite's WAL gives that to every read; PostgreSQL, at REPEATABLE READ)."""
    try:
        with store.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the store: {reason(exc)}") from exc


def _counts(conn: Connection) -> dict[str, int]:
    return {table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in TABLES}
