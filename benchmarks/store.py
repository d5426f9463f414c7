"""The poll diff's speed: ``SqlStore.apply_poll`` (bulk SELECT, executemany) against a naive store
that asks the database once per paper, on the recorded pages and a synthetic 1000-paper page.

    .venv/bin/python benchmarks/store.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.models import Paper, normalize_title
from monitor.sources import parse_page
from monitor.store import open_store
from monitor.store.schema import papers
from monitor.store.sql import SqlStore
from tests.helpers import HF_JSON, SEED_PAGES

TODAY = date(2026, 6, 12)


def naive_apply(store: SqlStore, page: list[Paper], now: float) -> int:
    """The floor: per paper, look it up by key, then id, then title; insert or update it."""
    new = 0
    with store.engine.begin() as conn:
        for paper in page:
            norm = normalize_title(paper.title)
            row = conn.execute(sa.select(papers.c.id).where(papers.c.key == paper.key)).first()
            if row is None and paper.arxiv_id:
                row = conn.execute(sa.select(papers.c.id).where(papers.c.arxiv_id == paper.arxiv_id)).first()
            if row is None:
                row = conn.execute(sa.select(papers.c.id).where(papers.c.title_norm == norm)).first()
            values = {
                "key": paper.key, "arxiv_id": paper.arxiv_id, "title": paper.title,
                "abstract": paper.abstract,
                "authors": paper.authors, "authors_count": paper.authors_count, "upvotes": paper.upvotes,
                "organization": paper.organization, "url": paper.url, "source": paper.source,
                "published": paper.published, "last_seen": now, "updated_at": now,
            }
            if row is None:
                conn.execute(papers.insert().values(title_norm=norm, first_seen=now, **values))
                new += 1
            else:
                conn.execute(papers.update().where(papers.c.id == row.id).values(**values))
    return new


def median_ms(
    rounds: int, page: list[Paper], apply: Callable[[SqlStore, list[Paper]], object]
) -> tuple[float, float]:
    """Median milliseconds of a first poll (all new) and of a repeat poll (all known)."""
    first: list[float] = []
    again: list[float] = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(f"sqlite:///{tmp}/db.sqlite")
            try:
                for into in (first, again):
                    start = time.perf_counter()
                    apply(store, page)
                    into.append((time.perf_counter() - start) * 1e3)
            finally:
                store.close()
    return statistics.median(first), statistics.median(again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    pages = {
        "hf-json 30": parse_page(HF_JSON.read_bytes(), "hf-json", today=TODAY),
        "hf-text 141": parse_page(SEED_PAGES[1].read_bytes(), "hf-text", today=TODAY),
        "synthetic 1000": [
            Paper.build(title=f"Synthetic paper number {i}", arxiv_id=f"2606.{i:05d}", upvotes=i,
                        authors=["A B", "C D"], source="hf-json")
            for i in range(1000)
        ],
    }
    print(f"apply_poll vs one query per paper, SQLite WAL on disk, median of {rounds} (ms)")
    print(f"{'page':<16}{'first':>9}{'naive':>9}{'x':>6}{'repeat':>9}{'naive':>9}{'x':>6}")
    for name, page in pages.items():
        bulk = median_ms(rounds, page, lambda s, p: s.apply_poll(p, lambda paper: []))
        naive = median_ms(rounds, page, lambda s, p: naive_apply(s, p, time.time()))
        print(f"{name:<16}{bulk[0]:9.1f}{naive[0]:9.1f}{naive[0] / bulk[0]:6.1f}"
              f"{bulk[1]:9.1f}{naive[1]:9.1f}{naive[1] / bulk[1]:6.1f}")
    print("(apply_poll also merges fields, computes the changed set and matches; the naive floor does not)")


if __name__ == "__main__":
    main()
