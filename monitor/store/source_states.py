"""The store's record of each source: validators for conditional GETs, the last attempt and success,
failures in a row (what ``status``, ``/healthz`` and the backoff read)."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import sqlalchemy as sa

from monitor.store import SourceState
from monitor.store.base import Transactions, insert_ignore
from monitor.store.schema import sources


class SourceStates(Transactions):
    """Per-source state on ``self.engine``; part of ``SqlStore``."""

    def get_source_state(self, name: str) -> SourceState | None:
        with self.read("reading source state") as conn:
            row = conn.execute(sa.select(sources).where(sources.c.name == name)).first()
        return _state(row) if row is not None else None

    def list_source_states(self) -> list[SourceState]:
        with self.read("reading source state") as conn:
            return [_state(row) for row in conn.execute(sa.select(sources).order_by(sources.c.name))]

    def record_success(
        self, name: str, url: str, *, status: int, etag: str | None, last_modified: str | None,
        now: float | None = None, fmt: str | None = None,
    ) -> SourceState:
        now = time.time() if now is None else now
        values: dict[str, Any] = {
            "etag": etag, "last_modified": last_modified, "last_attempt": now, "last_success": now,
            "last_status": status, "last_error": None, "consecutive_failures": 0,
        }
        if fmt is not None:
            values["format"] = fmt
        return self._record(name, url, values)

    def record_failure(
        self, name: str, url: str, *, error: str, status: int | None = None, now: float | None = None
    ) -> SourceState:
        now = time.time() if now is None else now
        return self._record(name, url, {
            "last_attempt": now, "last_status": status, "last_error": error[:2000],
            "consecutive_failures": sources.c.consecutive_failures + 1,
        })

    def record_caught_up(self, name: str, day: date | None) -> None:
        with self._write(f"recording the catch-up of source {name}") as conn:
            conn.execute(sources.update().where(sources.c.name == name)
                         .values(caught_up=day.isoformat() if day is not None else None))

    def _record(self, name: str, url: str, values: dict[str, Any]) -> SourceState:
        with self._write(f"recording the state of source {name}") as conn:
            insert_ignore(conn, sources, [{"name": name, "url": url, "consecutive_failures": 0}], ["name"])
            conn.execute(sources.update().where(sources.c.name == name).values(url=url, **values))
            row = conn.execute(sa.select(sources).where(sources.c.name == name)).one()
        return _state(row)


def _state(row: Any) -> SourceState:
    return SourceState(
        name=row.name, url=row.url, etag=row.etag, last_modified=row.last_modified,
        last_attempt=row.last_attempt, last_success=row.last_success, last_status=row.last_status,
        last_error=row.last_error, consecutive_failures=row.consecutive_failures,
        caught_up=date.fromisoformat(row.caught_up) if row.caught_up else None, format=row.format,
    )
