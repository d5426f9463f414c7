"""The paper store: every paper seen, the matches, the delivery outbox, per-source state.

``Store`` is the seam the pipeline talks to; ``open_store(url)`` gives the SQL implementation
(SQLite by default, any SQLAlchemy URL in principle). Every method raises ``StoreError`` when the
database fails, wrapping the SQLAlchemy error as its cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Protocol

from monitor.models import Hit, Match, Paper

if TYPE_CHECKING:
    from monitor.store.sql import SqlStore

# The fields whose change makes a known paper "changed" (and so matched again). Authors and the
# organization decide author/org rules, upvotes decide min_upvotes; an abstract that was missing
# and now is known decides keyword rules. Edits of a known title or abstract are cosmetic.
CHANGE_FIELDS = ("upvotes", "authors", "organization", "abstract (was missing)")


@dataclass(frozen=True)
class PollDiff:
    """What one poll changed: papers never seen before, known papers whose fields changed (both as
    merged and stored, in page order), and the matches recorded for the first time."""

    new: list[Paper] = field(default_factory=list)
    changed: list[Paper] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)


@dataclass(frozen=True)
class SourceState:
    """A source's polling state: conditional GET validators and health."""

    name: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: float | None = None
    last_success: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    caught_up: date | None = None  # the last past day read whole (``monitor.history.catch_up``)
    format: str | None = None  # what its page read as at the last poll that read one


class Store(Protocol):
    """The paper store. Every method raises ``StoreError`` when the database fails."""

    def apply_poll(
        self, papers: list[Paper], match: Callable[[Paper], list[Hit]], *, now: float | None = None,
        seen_at: float | None = None, deliver: bool = True,
    ) -> PollDiff:
        """Store the papers of one page and return the diff: a part of the page at a time, each
        part's papers with their matches and deliveries in one transaction (a page that takes long
        to store is several, so that other writers get their turns).

        A paper is the same paper when its key, arXiv id or normalized title is; its key moves to
        ``arxiv:`` when an id appears, and values the page lacks keep their stored ones. ``match``
        is called on every new or changed paper; each (rule, paper) match is recorded once, with
        one pending delivery per channel it notifies (none when not ``deliver``: a backfill's
        history). ``seen_at`` is when the page listed the papers (default ``now``); a paper's
        ``last_seen`` never moves back. Raises ``StoreError`` (the parts stored before stay: the
        next poll finds their papers known, matched and queued, and stores the rest).
        """
        ...

    def iter_papers(self, since: float | None = None) -> Iterator[Paper]:
        """Every stored paper last seen at or after ``since`` (epoch seconds), oldest first.
        Raises ``StoreError``."""
        ...

    def get_paper(self, key: str) -> Paper | None:
        """The paper with this key, or ``None``. Raises ``StoreError``."""
        ...

    def count_papers(self) -> int:
        """How many papers the store holds. Raises ``StoreError``."""
        ...

    def get_source_state(self, name: str) -> SourceState | None:
        """The state of the source called ``name``, or ``None`` before its first poll.
        Raises ``StoreError``."""
        ...

    def list_source_states(self) -> list[SourceState]:
        """The state of every source polled so far, by name. Raises ``StoreError``."""
        ...

    def record_caught_up(self, name: str, day: date | None) -> None:
        """Remember that the listings up to ``day`` were read whole (None: nothing is left to read,
        for an arXiv listing). Raises ``StoreError``."""
        ...

    def record_success(
        self, name: str, url: str, *, status: int, etag: str | None, last_modified: str | None,
        now: float | None = None, fmt: str | None = None,
    ) -> SourceState:
        """A poll that worked: store these validators (and the format its page read as, if one was
        read), reset the failure count. Raises ``StoreError``."""
        ...

    def record_failure(
        self, name: str, url: str, *, error: str, status: int | None = None, now: float | None = None
    ) -> SourceState:
        """A poll that failed: count it, keep the old validators. Raises ``StoreError``."""
        ...

    def close(self) -> None:
        """Release the database connections."""
        ...


def open_store(url: str) -> SqlStore:
    """Open the store at a SQLAlchemy URL, creating or upgrading its schema; ``StoreError`` if not."""
    from monitor.store.sql import open_sql_store

    return open_sql_store(url)


__all__ = ["CHANGE_FIELDS", "PollDiff", "SourceState", "Store", "open_store"]
