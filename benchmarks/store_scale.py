"""The store at scale: a big poll's write-lock hold, and outbox batches against a large backlog.

Builds a SQLite store of ``--papers`` papers, ``--matches`` matches and a sent delivery per match
per channel (two channels), then

- big poll: ``apply_poll`` of ``--new`` new papers, each matching ``--hits`` rules (notifying both
  channels), while a probe thread times ``BEGIN IMMEDIATE`` every 0.2 s on its own connection: the
  poll's time and the longest wait for the write lock;
- backlog: ``--backlog`` rows pending per channel (over ``--rules`` rules), then queue_head +
  claim_batch + mark_sent for ``--batches`` batches: batches/s, and the costs of one queue_head and
  one claim_batch.

    .venv/bin/python benchmarks/store_scale.py [--papers 300000 --matches 500000 --new 2000 --hits 73]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.models import Hit, Paper
from monitor.store import open_store
from monitor.store.sql import SqlStore

CHANNELS = ("feed", "hook")


def build(path: Path, n_papers: int, n_matches: int) -> None:
    open_store(f"sqlite:///{path}").close()
    db = sqlite3.connect(path)
    start = time.time() - 365 * 86400
    db.executemany(
        "INSERT INTO papers (id, key, arxiv_id, title_norm, title, abstract, authors, authors_count, source,"
        " first_seen, last_seen, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ((i, f"arxiv:24{i // 100000:02d}.{i % 100000:05d}", f"24{i // 100000:02d}.{i % 100000:05d}",
          f"stored paper {i}", f"Stored paper {i}", "An abstract of a paper. " * 40, '["A B", "C D"]', 2,
          "hf-json", start + i, start + i, start + i) for i in range(1, n_papers + 1)))
    db.execute("INSERT INTO titles (form, paper_id) SELECT replace(title_norm, ' ', ''), id FROM papers")
    db.executemany(
        "INSERT OR IGNORE INTO matches (id, rule, paper_id, reasons, matched_at) VALUES (?,?,?,?,?)",
        ((j, f"rule-{(j * 7919) % 100000}", 1 + (j * n_papers) // (n_matches + 1), '["keyword \\"x\\""]',
          start + j) for j in range(1, n_matches + 1)))
    for channel in CHANNELS:
        db.execute(
            "INSERT INTO deliveries (match_id, rule, paper_id, channel, state, attempts, next_attempt_at,"
            " created_at, sent_at, batch_key) SELECT id, rule, paper_id, ?, 'sent', 1, matched_at,"
            " matched_at, matched_at + 5, lower(hex(randomblob(16))) FROM matches", (channel,))
    db.commit()
    db.close()


class LockProbe(threading.Thread):
    """BEGIN IMMEDIATE; COMMIT every 0.2 s on a connection of its own; the longest wait."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.waits, self.stop = path, [0.0], threading.Event()

    def run(self) -> None:
        db = sqlite3.connect(self.path, timeout=600, isolation_level=None)
        while not self.stop.is_set():
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
            self.waits.append(time.perf_counter() - started)
            self.stop.wait(0.2)
        db.close()


def big_poll(store: SqlStore, path: Path, new: int, hits: int) -> None:
    page = [Paper.build(title=f"A fresh paper number {i}", arxiv_id=f"2607.{i:05d}", authors=["A B"],
                        abstract="Fresh abstract. " * 80, source="hf-json") for i in range(new)]
    rules = [Hit(f"rule-{k}", ('keyword "x" in the abstract',), CHANNELS) for k in range(100_000)]

    def match(paper: Paper) -> list[Hit]:
        seed = int(paper.arxiv_id.split(".")[1]) if paper.arxiv_id else 0
        return [rules[(seed * 131 + k * 977) % len(rules)] for k in range(hits)]

    probe = LockProbe(path)
    probe.start()
    time.sleep(0.5)
    started = time.perf_counter()
    diff = store.apply_poll(page, match)
    took = time.perf_counter() - started
    time.sleep(0.5)
    probe.stop.set()
    probe.join()
    print(f"big poll: {len(diff.new)} new papers, {len(diff.matches)} matches, "
          f"{len(diff.matches) * len(CHANNELS)} deliveries in {took:.2f}s; "
          f"longest write-lock wait of the probe {max(probe.waits):.2f}s")


def backlog(store: SqlStore, path: Path, per_channel: int, n_rules: int, batches: int) -> None:
    db = sqlite3.connect(path)
    now = time.time()
    # pending rows over existing matches (the sent ones of other channels): as a big poll leaves them
    for channel in ("q1", "q2"):
        db.execute(
            "INSERT INTO deliveries (match_id, rule, paper_id, channel, state, attempts, next_attempt_at,"
            " created_at) SELECT id, 'rule-' || (id % ?), paper_id, ?, 'pending', 0, ?, ? FROM matches"
            " WHERE id <= ?", (n_rules, channel, now, now, per_channel))
    db.commit()
    db.close()
    heads, claims = [], []
    started = time.perf_counter()
    done = 0
    for _ in range(batches):
        for channel in ("q1", "q2"):
            t0 = time.perf_counter()
            head = store.queue_head(channel)
            t1 = time.perf_counter()
            assert head is not None
            key, _ = store.claim_batch(channel, time.time(), head=head, limit=100)
            t2 = time.perf_counter()
            store.mark_sent(key, time.time())
            heads.append(t1 - t0)
            claims.append(t2 - t1)
            done += 1
    took = time.perf_counter() - started
    print(f"backlog of {per_channel} pending rows a channel over {n_rules} rules: {done / took:.1f}"
          " batches/s;"
          f" queue_head median {statistics.median(heads) * 1e3:.1f} ms, claim_batch median"
          f" {statistics.median(claims) * 1e3:.1f} ms (max {max(claims) * 1e3:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=300_000)
    parser.add_argument("--matches", type=int, default=500_000)
    parser.add_argument("--new", type=int, default=2000)
    parser.add_argument("--hits", type=int, default=73)
    parser.add_argument("--backlog", type=int, default=290_000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--keep", help="build the store here (kept; built once if missing)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or f"{tmp}/db.sqlite")
        template = path.with_suffix(".template")
        if not template.exists():
            t0 = time.perf_counter()
            build(template, args.papers, args.matches)
            print(f"built the store in {time.perf_counter() - t0:.0f}s")
        path.write_bytes(template.read_bytes())
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
        store = open_store(f"sqlite:///{path}")  # upgrades the schema, as a start does
        try:
            big_poll(store, path, args.new, args.hits)
            backlog(store, path, args.backlog, args.rules, args.batches)
        finally:
            store.close()


if __name__ == "__main__":
    main()
