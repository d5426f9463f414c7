"""What the SQL store and its outbox queries share: transactions that turn database failures into
``StoreError`` (with the driver's one-line reason, never the SQL or its parameters), and row -> Paper."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from monitor.errors import StoreError
from monitor.models import Paper

# Execution option that makes the SQLite "begin" hook open a deferred BEGIN (no write lock).
READ_ONLY = "paper_monitor_read_only"


def sqlite_file(url: URL) -> Path | None:
    """The file SQLite opens for ``url``, as the URL names it (relative to the working directory
    if it is); None for other databases and for stores in memory (``sqlite://``, ``:memory:``, a
    ``file:`` URI of ``:memory:`` or with ``mode=memory``). Read as SQLAlchemy hands the URL to
    SQLite: with ``?uri=true`` a SQLite URI (``sqlite:///file:/var/m.db?uri=true&mode=rwc``), else a
    path as written (``~`` is no home directory). ``StoreError`` for a URL SQLite cannot open."""
    if url.get_backend_name() != "sqlite":
        return None
    try:
        with warnings.catch_warnings():  # (arguments SQLite ignores: warned when the engine is made)
            warnings.simplefilter("ignore")
            args, options = url.get_dialect()().create_connect_args(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: uri=maybe
        raise StoreError(f"bad database URL: {exc}") from exc
    name = str(args[0]) if args else ":memory:"
    if not options.get("uri"):
        return None if name == ":memory:" else Path(url.database or name)
    return _uri_file(name)


def _uri_file(name: str) -> Path | None:
    """The file of SQLite's filename ``name`` given as a URI (https://www.sqlite.org/uri.html)."""
    if not name.startswith("file:"):
        return None if name in ("", ":memory:") else Path(name)  # a plain name, "?" and all
    path, _, query = name[len("file:"):].partition("#")[0].partition("?")
    if path.startswith("//"):
        authority, slash, rest = path[2:].partition("/")
        if authority not in ("", "localhost"):
            raise StoreError(f'bad database URL: a file: URI names no host ("{authority}"), only a path')
        path = slash + rest
    params = {unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in query.split("&") if p)}
    path = unquote(path)
    if path in ("", ":memory:") or params.get("mode") == "memory" or params.get("vfs") == "memdb":
        return None
    return Path(path)


class Transactions:
    """A base for the store's query classes: ``read`` and ``_write`` on ``self.engine``."""

    engine: Engine

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """One write transaction; a database failure becomes ``StoreError("<action>: ...")``."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{action}: {reason(exc)}") from exc

    @contextmanager
    def read(self, action: str) -> Iterator[Connection]:
        """One read transaction (deferred on SQLite: takes no write lock); errors become StoreError."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{action}: {reason(exc)}") from exc


def insert_ignore(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: list[str]
) -> None:
    """Insert ``rows``, skipping those that clash on the unique ``keys`` (any dialect)."""
    if not rows:
        return
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        conn.execute(insert(table).on_conflict_do_nothing(index_elements=keys), list(rows))
        return
    for row in rows:
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), dict(row))
        except IntegrityError:
            pass


def insert_ignore_select(
    conn: Connection, table: sa.Table, columns: list[str], rows: sa.Select[Any], keys: list[str]
) -> None:
    """INSERT INTO ``table`` (``columns``) the rows of the SELECT ``rows``, skipping those that clash
    on the unique ``keys`` (SQLite and PostgreSQL; others row by row)."""
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        conn.execute(insert(table).from_select(columns, rows).on_conflict_do_nothing(index_elements=keys))
        return
    insert_ignore(conn, table, [dict(zip(columns, row, strict=True)) for row in conn.execute(rows)], keys)


def reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, one line, without SQLAlchemy's SQL dump and background link."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    return f"{type(orig or exc).__name__}: {text.splitlines()[0] if text else ''}"


def paper_from_row(row: Any) -> Paper:
    """A ``Paper`` from a row holding the ``papers`` columns; ``StoreError`` if it does not hold one."""
    try:
        return Paper(
            key=row.key, arxiv_id=row.arxiv_id, title=row.title, abstract=row.abstract,
            authors=list(row.authors or []), authors_count=row.authors_count,
            organization=row.organization, organization_id=row.organization_id,
            published=row.published, upvotes=row.upvotes, url=row.url, source=row.source,
        )
    except ValidationError as exc:
        raise StoreError(f"paper row {row.key!r} is unreadable: {exc.errors()[0]['msg']}") from exc
