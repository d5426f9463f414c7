"""``paper-monitor backfill``: fill the store with the papers of past days, so that ``backtest`` has
a history to try rules on from the first day, and a later poll knows what is old.

Two kinds of source keep their past: the Hugging Face Daily Papers API (``?date=YYYY-MM-DD``, in
pages of up to 100) and the arXiv API (a query, paged newest first with ``start``, one request
every 3 seconds as arXiv asks). Other pages show only the current listing and are skipped.

Backfilled papers are stored as seen on their day and matched, and each match is recorded, but
no alert is queued unless ``--alert`` asks: they are history, not news. Today is left to the
polls, so that today's papers still alert.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tqdm import tqdm  # type: ignore[import-untyped]

from monitor.config import Settings, SourceConfig
from monitor.errors import ConfigError, MonitorError
from monitor.fetch import Fetcher
from monitor.match import compile_rules
from monitor.models import Hit, Paper
from monitor.pipeline import open_fetcher, printable
from monitor.sources import parse_page
from monitor.store import Store, open_store

HF_PAGE = 100  # the API's largest `limit`
ARXIV_PAGE = 100
ARXIV_PAUSE = 3.0  # seconds between arXiv API requests
ARXIV_MAX_RESULTS = 10_000  # how deep a backfill pages into one arXiv query
T = TypeVar("T")


@dataclass
class Tally:
    """What a backfill of one source did."""

    source: str
    requests: int = 0
    papers: int = 0
    new: int = 0
    matched: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self, alert: bool) -> str:
        what = "alerts queued" if alert else "recorded, no alerts"
        text = (f"{self.source}: {self.requests} requests, {self.papers} papers, {self.new} new, "
                f"{self.matched} matched ({what})")
        return text + (f", {len(self.failures)} failed" if self.failures else "")


def history_kind(url: str) -> str | None:
    """``hf-api`` or ``arxiv-api`` for a source whose past days can be asked for, else None."""
    parts = urlsplit(url)
    if parts.path.rstrip("/").endswith("/api/daily_papers"):
        return "hf-api"
    if parts.path.rstrip("/") == "/api/query":  # export.arxiv.org, or a mirror of it
        return "arxiv-api"
    return None


def backfill(settings: Settings, *, since_seconds: float, source: str | None = None, alert: bool = False,
             today: date | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Backfill the days from ``since_seconds`` ago up to yesterday (UTC); 0 if every request
    worked, 1 if some failed (what worked is kept)."""
    chosen = [s for s in settings.sources if source is None or s.name == source]
    if source is not None and not chosen:
        known = ", ".join(s.name for s in settings.sources) or "none configured"
        raise ConfigError(f'--source: no source named "{source}" (sources: {known})')
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=max(1, round(since_seconds / 86_400)))
    last = today - timedelta(days=1)
    index = compile_rules(settings.rules)
    store = open_store(settings.monitor.database)
    ok = True
    try:
        for config in chosen:
            kind = history_kind(config.url)
            if kind is None:
                print(f"{config.name}: skipped: only the HF Daily Papers API and the arXiv API "
                      "serve past days")
                continue
            with open_fetcher(config, settings.monitor.user_agent) as fetcher:
                run = _Run(config, fetcher, store, index.match, alert, today, sleep)
                if kind == "hf-api":
                    _hf_days(config, first, last, run.fetch)
                else:
                    _arxiv_pages(config, first, last, run.fetch, sleep)
            print(printable(run.tally.line(alert)))
            for failure in run.tally.failures:
                print(f"  failed: {printable(failure)}")
            ok = ok and not run.tally.failures
    finally:
        store.close()
    return 0 if ok else 1


@dataclass
class _Run:
    """Backfilling one source: its client, the store, and the tally."""

    config: SourceConfig
    fetcher: Fetcher
    store: Store
    match: Callable[[Paper], list[Hit]]
    alert: bool
    today: date
    sleep: Callable[[float], None]
    tally: Tally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = Tally(self.config.name)

    def fetch(self, url: str, label: str, listed: date | None,
              keep: Callable[[Paper], bool]) -> list[Paper] | None:
        """Fetch one page, store the papers ``keep`` accepts as listed on ``listed`` (None: on
        each paper's own date), and return all its papers; None if it failed."""
        self.tally.requests += 1
        try:
            result = self.fetcher.get(url, timeout=self.config.timeout)
            if result.retry_after_hint:  # HF's RateLimit says the window is used up: wait it out
                self.sleep(result.retry_after_hint)
            papers = parse_page(result.content or b"", self.config.format, today=self.today)
            self._store([p for p in papers if keep(p)], listed)
        except MonitorError as exc:
            self.tally.failures.append(f"{label}: {exc}")
            return None
        return papers

    def _store(self, papers: list[Paper], listed: date | None) -> None:
        """Papers as seen on the day they were listed (noon UTC; no later than now)."""
        by_day: dict[date | None, list[Paper]] = {}
        for paper in papers:
            by_day.setdefault(listed or paper.published, []).append(paper)
        now = time.time()
        for day, group in by_day.items():
            noon = now if day is None else datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()
            diff = self.store.apply_poll(group, self.match, now=now, seen_at=min(noon, now),
                                         deliver=self.alert)
            self.tally.papers += len(group)
            self.tally.new += len(diff.new)
            self.tally.matched += len(diff.matches)


# What the page walkers are given: ``_Run.fetch``.
Fetch = Callable[[str, str, date | None, Callable[[Paper], bool]], list[Paper] | None]


def _hf_days(config: SourceConfig, first: date, last: date, fetch: Fetch) -> None:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    for day in _progress(days, " days", config.name):
        page = 0
        while True:
            query = {"date": day.isoformat(), "limit": str(HF_PAGE), "p": str(page)}
            url = _with_query(config.url, query, drop=("week", "month", "sort"))
            papers = fetch(url, f"{day.isoformat()} page {page}", day, _everything)
            if papers is None or len(papers) < HF_PAGE:
                break
            page += 1


def _arxiv_pages(config: SourceConfig, first: date, last: date, fetch: Fetch,
                 sleep: Callable[[float], None]) -> None:
    """Newest first, until a page reaches back before ``first`` (or runs out)."""

    def within(paper: Paper) -> bool:
        return paper.published is None or first <= paper.published <= last

    for start in _progress(range(0, ARXIV_MAX_RESULTS, ARXIV_PAGE), " pages", config.name, known=False):
        if start:
            sleep(ARXIV_PAUSE)
        query = {"start": str(start), "max_results": str(ARXIV_PAGE), "sortBy": "submittedDate",
                 "sortOrder": "descending"}
        papers = fetch(_with_query(config.url, query), f"results from {start}", None, within)
        if not papers:
            break
        oldest = min((p.published for p in papers if p.published), default=None)
        if len(papers) < ARXIV_PAGE or (oldest is not None and oldest < first):
            break


def _progress(items: Sequence[T], unit: str, name: str, known: bool = True) -> Iterator[T]:
    """``items`` with a progress bar on stderr, for a person watching a run that lasts; a count
    without a total when how many will be needed is not ``known``."""
    yield from tqdm(items, total=None if known else float("inf"), unit=unit, desc=name, file=sys.stderr,
                    disable=not sys.stderr.isatty(), delay=1.0)


def _everything(paper: Paper) -> bool:
    return True


def _with_query(url: str, values: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    """``url`` with these query parameters set (and those in ``drop`` removed)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in values and k not in drop]
    return urlunsplit(parts._replace(query=urlencode([*query, *values.items()])))
