"""What ``paper-monitor copy-store`` costs on a long history: a SQLite store of ``--rows`` matches
(each delivered to two channels, papers with abstracts of real length; built as benchmarks/history.py
builds it) copied into a new SQLite file and into a new PostgreSQL database (a throwaway server,
as the tests start it), with the rows per second and the copying process's peak memory, which stays
flat however long the history (the rows stream through in chunks).

    .venv/bin/python benchmarks/copy_store.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.history import build
from monitor.store import open_store
from monitor.store.copy import copy_rows, row_counts
from tests.pg_support import PgServer

ABSTRACT = ("We study how long histories move between databases, and find that streaming rows in chunks "
            "keeps memory flat while the copy runs at the speed of the target's inserts. ") * 8


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy(source_url: str, target_url: str, what: str) -> None:
    source, target = open_store(source_url), open_store(target_url)
    try:
        start = time.perf_counter()
        counts = copy_rows(source, target)
        seconds = time.perf_counter() - start
        assert row_counts(target) == counts
    finally:
        source.close()
        target.close()
    rows = sum(counts.values())
    print(f"{what:<22} {rows:>10,} rows in {seconds:6.1f} s  {rows / seconds:9,.0f} rows/s  "
          f"peak RSS so far {peak_mb():5.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="matches in the store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        build(path, args.rows, rules=10_000)
        db = sqlite3.connect(path)
        db.execute("UPDATE papers SET abstract = ?", (ABSTRACT,))
        db.commit()
        db.close()
        counts = row_counts(open_store(f"sqlite:///{path}"))
        size = path.stat().st_size / 1e6
        print(f"store: {counts} ({size:.0f} MB); peak RSS before copying {peak_mb():.0f} MB")
        copy(f"sqlite:///{path}", f"sqlite:///{tmp}/copy.db", "SQLite -> SQLite")
        server = PgServer()
        server.start()
        try:
            copy(f"sqlite:///{path}", server.new_database(), "SQLite -> PostgreSQL")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
