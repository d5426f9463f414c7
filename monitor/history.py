"""The past days of a source, for ``backfill`` (history to try rules on) and the catch-up of a poll
(the days a stopped daemon or a failing source missed).

Two kinds of source keep their past: the Hugging Face Daily Papers API (``?date=YYYY-MM-DD``, in
pages of up to 100) and the arXiv API (a query, paged newest first with ``start``, one request
every 3 seconds as arXiv asks). Other pages show only the current listing.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tqdm import tqdm  # type: ignore[import-untyped]

from monitor.config import SourceConfig
from monitor.errors import MonitorError
from monitor.fetch import Fetcher
from monitor.models import Hit, Paper
from monitor.sources import parse_page
from monitor.store import SourceState, Store

HF_PAGE = 100  # the API's largest `limit`
ARXIV_PAGE = 100
ARXIV_PAUSE = 3.0  # seconds between arXiv API requests
ARXIV_MAX_RESULTS = 10_000  # how deep a backfill pages into one arXiv query
DAY = timedelta(days=1)
T = TypeVar("T")


@dataclass
class Tally:
    """What reading the past of one source did."""

    source: str
    requests: int = 0
    papers: int = 0
    new: int = 0
    matched: int = 0
    failures: list[str] = field(default_factory=list)
    new_papers: list[Paper] = field(default_factory=list)
    matched_rules: Counter[str] = field(default_factory=Counter)
    days: int = 0  # days read whole (the HF API)

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


@dataclass
class Run:
    """Reading the past of one source: its client, the store, and the tally. Papers are stored as
    seen on the day they were listed, and alerted only if ``alert``."""

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
            self.tally.new_papers += diff.new
            self.tally.matched += len(diff.matches)
            self.tally.matched_rules.update(match.rule for match in diff.matches)


# What the page walkers are given: ``Run.fetch``.
Fetch = Callable[[str, str, date | None, Callable[[Paper], bool]], list[Paper] | None]


def hf_days(config: SourceConfig, first: date, last: date, fetch: Fetch) -> None:
    """Every page of each day from ``first`` to ``last``, with a progress bar on a terminal."""
    days = [first + n * DAY for n in range((last - first).days + 1)]
    for day in _progress(days, " days", config.name):
        hf_day(config, day, fetch)


def hf_day(config: SourceConfig, day: date, fetch: Fetch) -> bool:
    """Every page of the HF API's listing of ``day``; False if a page failed."""
    page = 0
    while True:
        query = {"date": day.isoformat(), "limit": str(HF_PAGE), "p": str(page)}
        url = with_query(config.url, query, drop=("week", "month", "sort"))
        papers = fetch(url, f"{day.isoformat()} page {page}", day, _everything)
        if papers is None:
            return False
        if len(papers) < HF_PAGE:
            return True
        page += 1


def arxiv_pages(config: SourceConfig, first: date, last: date, fetch: Fetch,
                sleep: Callable[[float], None]) -> None:
    """Newest first, until a page reaches back before ``first`` (or runs out)."""

    def within(paper: Paper) -> bool:
        return paper.published is None or first <= paper.published <= last

    for start in _progress(range(0, ARXIV_MAX_RESULTS, ARXIV_PAGE), " pages", config.name, known=False):
        if start:
            sleep(ARXIV_PAUSE)
        query = {"start": str(start), "max_results": str(ARXIV_PAGE), "sortBy": "submittedDate",
                 "sortOrder": "descending"}
        papers = fetch(with_query(config.url, query), f"results from {start}", None, within)
        if not papers:
            break
        oldest = min((p.published for p in papers if p.published), default=None)
        if len(papers) < ARXIV_PAGE or (oldest is not None and oldest < first):
            break


def polled_url(url: str) -> str:
    """The URL a poll asks. An arXiv API query is asked newest first, 100 results, unless it says
    otherwise: the API's default (10 results by relevance) would hide most new papers for good.
    The HF API is asked for 100 papers (its default, 50, is less than a busy day)."""
    kind = history_kind(url)
    given = {key for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if kind == "hf-api":
        wanted = {"limit": str(HF_PAGE)}
    elif kind == "arxiv-api":
        wanted = {"sortBy": "submittedDate", "sortOrder": "descending", "max_results": str(ARXIV_PAGE)}
        if "sortBy" in given:  # the user chose an order: keep theirs, and their direction
            del wanted["sortBy"], wanted["sortOrder"]
    else:
        return url
    missing = {key: value for key, value in wanted.items() if key not in given}
    if not missing:
        return url
    parts = urlsplit(url)  # the user's query as written, the defaults after it
    return urlunsplit(parts._replace(query="&".join(filter(None, [parts.query, urlencode(missing)]))))


def catch_up(config: SourceConfig, store: Store, fetcher: Fetcher, match: Callable[[Paper], list[Hit]],
             *, before: SourceState | None, today: date) -> Tally | None:
    """After a good poll of an HF API source, read whole the listings of the past days it has not
    read whole since its last good poll (at most ``catch_up`` back), as a poll running then would
    have: their new papers alert. Daily, that is yesterday's listing once, with the papers added
    after the last poll of the day; after a stop or an outage, each day missed. The days read are
    recorded as each ends, so a failure leaves the rest to the next poll. None: nothing to read."""
    if config.catch_up is None or history_kind(config.url) != "hf-api":
        return None
    yesterday = today - DAY
    if before is None or before.last_success is None:  # the first poll: the source starts today
        store.record_caught_up(config.name, yesterday)
        return None
    done = before.caught_up or datetime.fromtimestamp(before.last_success, UTC).date() - DAY
    first = max(done + DAY, today - max(1, round(config.catch_up / 86_400)) * DAY)
    if first > yesterday:
        return None
    run = Run(config, fetcher, store, match, alert=True, today=today, sleep=fetcher.sleep)
    for n in range((yesterday - first).days + 1):
        day = first + n * DAY
        if not hf_day(config, day, run.fetch):
            break
        store.record_caught_up(config.name, day)
        run.tally.days += 1
    return run.tally


def _progress(items: Sequence[T], unit: str, name: str, known: bool = True) -> Iterator[T]:
    """``items`` with a progress bar on stderr, for a person watching a run that lasts; a count
    without a total when how many will be needed is not ``known``."""
    yield from tqdm(items, total=None if known else float("inf"), unit=unit, desc=name, file=sys.stderr,
                    disable=not sys.stderr.isatty(), delay=1.0)


def _everything(paper: Paper) -> bool:
    return True


def with_query(url: str, values: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    """``url`` with these query parameters set (and those in ``drop`` removed)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in values and k not in drop]
    return urlunsplit(parts._replace(query=urlencode([*query, *values.items()])))
