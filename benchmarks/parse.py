"""Parse speed per format (papers per second) against a naive floor, and the time of one poll.

Run: .venv/bin/python benchmarks/parse.py [--seconds S]
The floor is what no parser of that format can beat (json.loads alone, building the HTML tree
alone, ElementTree alone, decoding and splitting the text); the ratio says what our work costs
on top. The poll is fetch from a loopback server + parse + diff into a fresh SQLite store.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from selectolax.lexbor import LexborHTMLParser  # noqa: E402

from monitor.sources import detect_format, parse_page  # noqa: E402
from tests.helpers import (  # noqa: E402
    ARXIV_ATOM,
    ARXIV_ATOM_LEGACY,
    DATA,
    HF_HTML,
    HF_JSON,
    SEED_PAGES,
    ReplayServer,
    Reply,
)

TODAY = date(2026, 6, 14)


def per_call(func: Callable[[], object], seconds: float) -> float:
    """Seconds per call: the best of five runs of as many calls as fit in ``seconds / 5``."""
    func()
    calls = 1
    start = time.perf_counter()
    func()
    one = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(seconds / 5 / one))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            func()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def floor_for(fmt: str, data: bytes) -> Callable[[], object]:
    if fmt == "hf-json":
        return lambda: json.loads(data)
    if fmt == "hf-html":
        return lambda: LexborHTMLParser(data.decode("utf-8")).css_first('[data-target="DailyPapers"]')
    if fmt in ("arxiv-atom", "arxiv-rss"):
        return lambda: ET.fromstring(data)
    return lambda: data.decode("utf-8").splitlines()


def bench_formats(seconds: float) -> None:
    pages: list[tuple[str, str, bytes]] = [
        ("hf-json", HF_JSON.name, HF_JSON.read_bytes()),
        ("hf-json", "2024 schema (tests/data)", (DATA / "hf_api_daily_papers_2024-08-01.json").read_bytes()),
        ("hf-html", HF_HTML.name, HF_HTML.read_bytes()),
        ("arxiv-atom", ARXIV_ATOM.name, ARXIV_ATOM.read_bytes()),
        ("arxiv-atom", ARXIV_ATOM_LEGACY.name, ARXIV_ATOM_LEGACY.read_bytes()),
        ("arxiv-rss", "cs sample (tests/data)", (DATA / "arxiv_rss_cs_sample.xml").read_bytes()),
        *[("hf-text", seed.name, seed.read_bytes()) for seed in SEED_PAGES],
    ]
    print(f"{'format':<11} {'page':<44} {'KiB':>6} {'papers':>6} {'ms/page':>8} {'papers/s':>10} "
          f"{'floor ms':>9} {'x floor':>7} {'detect ms':>9}")
    for fmt, name, data in pages:
        papers = len(parse_page(data, fmt, today=TODAY))
        parse_s = per_call(lambda data=data, fmt=fmt: parse_page(data, fmt, today=TODAY), seconds)  # type: ignore[misc]
        floor_s = per_call(floor_for(fmt, data), seconds)
        detect_s = per_call(lambda data=data: detect_format(data), seconds / 4)  # type: ignore[misc]
        print(
            f"{fmt:<11} {name[:44]:<44} {len(data) / 1024:>6.0f} {papers:>6} {parse_s * 1e3:>8.3f} "
            f"{papers / parse_s:>10,.0f} {floor_s * 1e3:>9.3f} {parse_s / floor_s:>7.1f} "
            f"{detect_s * 1e3:>9.3f}"
        )


def bench_poll(rounds: int) -> None:
    """One poll of the 30-paper JSON page into a fresh SQLite store, via the real pipeline."""
    missing = [m for m in ("monitor.pipeline", "monitor.store", "monitor.fetch", "monitor.match")
               if importlib.util.find_spec(m) is None]
    if missing:
        print(f"poll: skipped ({', '.join(missing)} not there yet)")
        return
    from monitor.config import SourceConfig
    from monitor.fetch import Fetcher
    from monitor.match import compile_rules
    from monitor.store import open_store

    poll = importlib.import_module("monitor.pipeline").poll

    body = HF_JSON.read_bytes()
    index = compile_rules([])
    polls: list[float] = []
    fetches: list[float] = []
    with ReplayServer() as server, tempfile.TemporaryDirectory() as tmp, Fetcher() as fetcher:
        server.route("/api/daily_papers", Reply(body, headers={"Content-Type": "application/json"}))
        source = SourceConfig(name="hf-daily", url=server.url("/api/daily_papers"))
        for round_ in range(rounds):
            start = time.perf_counter()
            fetcher.get(source.url)
            fetches.append(time.perf_counter() - start)
            store = open_store(f"sqlite:///{tmp}/poll-{round_}.db")
            try:
                start = time.perf_counter()
                report = poll(source, store, fetcher, index, today=TODAY)
                polls.append(time.perf_counter() - start)
            finally:
                store.close()
    parse_s = per_call(lambda: parse_page(body, "hf-json", today=TODAY), 0.5)
    poll_ms, fetch_ms = statistics.median(polls) * 1e3, statistics.median(fetches) * 1e3
    print(f"poll of {HF_JSON.name} ({report.papers} papers, {report.new} new) into a fresh SQLite store, "
          f"median of {rounds}:")
    rest_ms = poll_ms - fetch_ms - parse_s * 1e3
    print(f"  whole poll {poll_ms:8.2f} ms   (fetch alone {fetch_ms:.2f} ms, "
          f"parse alone {parse_s * 1e3:.2f} ms, store diff + rest ~{rest_ms:.2f} ms)")
    print(f"  parse share of the poll: {parse_s * 1e3 / poll_ms:.1%}")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=1.0, help="time budget per measurement")
    args.add_argument("--rounds", type=int, default=15, help="polls to take the median of")
    options = args.parse_args()
    bench_formats(options.seconds)
    print()
    bench_poll(options.rounds)


if __name__ == "__main__":
    main()
