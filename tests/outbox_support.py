"""Helpers for the outbox and channel tests: a store on disk and matches recorded into it."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from monitor.models import Paper, normalize_title
from monitor.store.deliveries import DeliveryQueries
from monitor.store.schema import deliveries, matches, metadata, papers

_serial = itertools.count(1)


class _DiskStore(DeliveryQueries):
    """Only the outbox part of the store, for when monitor.store.open_store is not there."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def open_test_store(path: Path | str) -> Any:
    """The store in a SQLite file at ``path``, or at a database URL."""
    url = path if isinstance(path, str) else f"sqlite:///{path}"
    try:
        from monitor.store import open_store

        return open_store(url)
    except ImportError:
        return _DiskStore(url)


def paper(title: str, **fields: Any) -> Paper:
    """A paper with an arXiv id made up from a counter (unless given)."""
    n = next(_serial)
    fields.setdefault("arxiv_id", f"2601.{n:05d}")
    fields.setdefault("url", f"https://arxiv.org/abs/{fields['arxiv_id']}")
    fields.setdefault("abstract", f"Abstract of {title}.")
    fields.setdefault("authors", ["Ada Lovelace", "Alan Turing"])
    return Paper.build(title=title, source="hf-json", **fields)


def record(
    store: Any, rule: str, items: Sequence[Paper], channels: Sequence[str],
    *, at: float | None = None, reasons: Sequence[str] = ("keyword: test",),
) -> list[int]:
    """Record each paper as matched by ``rule`` with a pending delivery per channel, the way
    ``apply_poll`` does; returns the delivery ids. Times grow by a millisecond per paper."""
    now = time.time() if at is None else at
    ids: list[int] = []
    with store.engine.begin() as conn:
        for i, p in enumerate(items):
            t = now + i / 1000
            found = conn.execute(sa.select(papers.c.id).where(papers.c.key == p.key)).scalar()
            if found is None:
                found = conn.execute(sa.insert(papers).values(
                    key=p.key, arxiv_id=p.arxiv_id, title_norm=normalize_title(p.title) + f" {p.key}",
                    title=p.title, abstract=p.abstract, authors=p.authors, authors_count=p.authors_count,
                    organization=p.organization, organization_id=p.organization_id,
                    published=p.published, upvotes=p.upvotes, url=p.url, source=p.source,
                    first_seen=t, last_seen=t, updated_at=t,
                )).inserted_primary_key[0]
            match_id = conn.execute(sa.insert(matches).values(
                rule=rule, paper_id=found, reasons=list(reasons), matched_at=t,
            )).inserted_primary_key[0]
            for channel in channels:
                ids.append(conn.execute(sa.insert(deliveries).values(
                    match_id=match_id, rule=rule, paper_id=found, channel=channel, state="pending",
                    attempts=0, next_attempt_at=t, created_at=t,
                )).inserted_primary_key[0])
    return ids


def states(store: Any, channel: str | None = None) -> dict[str, int]:
    """How many rows are in each state (of ``channel``, or all)."""
    query = sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)
    if channel is not None:
        query = query.where(deliveries.c.channel == channel)
    with store.engine.connect() as conn:
        return {state: int(n) for state, n in conn.execute(query)}


def rows(store: Any, channel: str) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(
            sa.select(deliveries).where(deliveries.c.channel == channel).order_by(deliveries.c.id)
        ))
