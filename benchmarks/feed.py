"""The feed channel under a poll of many rules: how long until every batch is in the feed.

    .venv/bin/python benchmarks/feed.py [--batches 1500] [--history 20000]

A SQLite store holds ``--history`` sent rows of the feed channel and ``--batches`` pending batches
(a rule each, one paper each: what one poll against 100,000 rules makes); the dispatcher sends them
all, first one batch per feed render (as before the batches due were written together:
``GROUP_BATCHES = 1``), then as it does now. Prints the wall time and batches per second of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from monitor import outbox  # noqa: E402
from monitor.channels.rss import RssChannel  # noqa: E402
from monitor.config import RssConfig  # noqa: E402
from monitor.outbox import Dispatcher  # noqa: E402
from monitor.store import open_store  # noqa: E402
from tests.outbox_support import paper, record  # noqa: E402


def run(root: Path, batches: int, history: int, group: int) -> float:
    store = open_store(f"sqlite:///{root}/monitor-{group}.db")
    cfg = RssConfig(name="feed", type="rss")
    try:
        record(store, "old", [paper(f"Old paper {i}") for i in range(history)], ["feed"],
               at=time.time() - 86400)
        with Dispatcher(store, {"feed": RssChannel(cfg, store, root / f"feeds-{group}")},
                        batch_size=100_000) as dispatcher:
            dispatcher.run_due()  # the history: sent
        for n in range(batches):
            record(store, f"rule-{n}", [paper(f"New paper {n}")], ["feed"])
        outbox.GROUP_BATCHES = group
        began = time.perf_counter()
        sent = 0
        with Dispatcher(store, {"feed": RssChannel(cfg, store, root / f"feeds-{group}")}) as dispatcher:
            while sent < batches:
                sent += dispatcher.run_due().channels["feed"].batches
        return time.perf_counter() - began
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--history", type=int, default=20_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="feed-bench-"))
    now = outbox.GROUP_BATCHES
    for what, group in (("a render per batch (before)", 1), (f"batches together (up to {now})", now)):
        took = run(root, args.batches, args.history, group)
        print(f"{what}: {args.batches} batches in the feed after {took:.1f}s, "
              f"{args.batches / took:.0f} batches/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
