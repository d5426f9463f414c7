"""The past days of a source, for ``backfill`` (history to try rules on) and the catch-up of a poll
(the days a stopped daemon or a failing source missed).

Two kinds of source keep their past: the Hugging Face Daily Papers API (``?date=YYYY-MM-DD``, in
pages of up to 100) and the arXiv API (a query, paged newest first with ``start``, one request
every 3 seconds as arXiv asks). An arXiv listing (``rss.arxiv.org/rss/cs.CL``) shows only the
latest announcement, but its past is the arXiv API's: its categories, by submission time. Other
pages show only the current listing.
"""

from __future__ import annotations

import logging
import re
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
from monitor.errors import FetchError, MonitorError
from monitor.fetch import Fetcher
from monitor.models import Hit, Paper
from monitor.sources import parse_page
from monitor.store import SourceState, Store

log = logging.getLogger(__name__)

HF_PAGE = 100  # the API's largest `limit`
ARXIV_PAGE = 100
ARXIV_PAUSE = 3.0  # seconds between arXiv API requests
ARXIV_MAX_RESULTS = 10_000  # how deep a backfill pages into one arXiv query
DAY = timedelta(days=1)
T = TypeVar("T")
ARXIV_API = "https://export.arxiv.org/api/query"
# An arXiv listing's path: /rss/cs.CL, /atom/cs.CL+cs.LG, /rss/physics, /rss/cond-mat.str-el; each
# category in one of arXiv's archives (so that /rss/feed.xml elsewhere is no listing).
_LISTING = re.compile(r"/(?:rss|atom)/([A-Za-z-]+(?:\.[A-Za-z-]+)?(?:\+[A-Za-z-]+(?:\.[A-Za-z-]+)?)*)/?")
_ARCHIVES = frozenset((
    "astro-ph", "cond-mat", "cs", "econ", "eess", "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math",
    "math-ph", "nlin", "nucl-ex", "nucl-th", "physics", "q-bio", "q-fin", "quant-ph", "stat",
))
# arXiv announces once a day (Sunday to Thursday, 20:00 US Eastern): between two good polls less
# than this apart, no announcement can have come and gone unseen.
MISSED_AFTER = 20 * 3600.0
# How long before the announcement a paper it lists may have been submitted: a weekend and a day.
LISTING_LAG = 4 * DAY
# A backfill sits out a rate limit (HF's windows last minutes) and asks for the page again, up to
# this many times a page; a wait longer than an hour is no window but a ban or a broken header.
RATE_LIMIT_PATIENCE = 3600.0
RATE_LIMIT_WAITS = 5


class RateLimitStop(FetchError):
    """A server asked for a wait longer than ``Run.patience``: the run of the source stops."""


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


def history_kind(url: str, fmt: str = "auto") -> str | None:
    """What a source's past days can be read from: ``hf-api``, ``hf-html`` (HF's Daily Papers
    page, whose past is read from the API: ``past_source``), ``arxiv-api``, ``arxiv-listing``;
    None if nothing."""
    parts = urlsplit(url)
    if parts.path.rstrip("/").endswith("/api/daily_papers"):
        return "hf-api"
    if parts.path.rstrip("/") == "/papers" and (parts.hostname == "huggingface.co" or fmt == "hf-html"):
        return "hf-html"
    if parts.path.rstrip("/") == "/api/query":  # export.arxiv.org, or a mirror of it
        return "arxiv-api"
    if listing_categories(url) is not None:
        return "arxiv-listing"
    return None


def past_source(config: SourceConfig) -> SourceConfig:
    """The source to read ``config``'s past days from: itself, but for HF's Daily Papers page, whose
    days are read from the HF API on its host (which allows five times the requests of pages), and
    for an arXiv listing, whose days are the arXiv API's Atom answers (whatever format it polls)."""
    kind = history_kind(config.url, config.format)
    if kind == "arxiv-listing":
        return config.model_copy(update={"format": "arxiv-atom"})
    if kind != "hf-html":
        return config
    parts = urlsplit(config.url)
    api = urlunsplit((parts.scheme, parts.netloc, "/api/daily_papers", "", ""))
    return config.model_copy(update={"url": api, "format": "hf-json"})


def listing_categories(url: str) -> list[str] | None:
    """The categories of an arXiv listing (``rss.arxiv.org/rss/cs.CL+cs.LG``, ``/atom/...``, the
    older ``export.arxiv.org/rss/...``); None for other URLs."""
    found = _LISTING.fullmatch(urlsplit(url).path)
    categories = found.group(1).split("+") if found else []
    if not categories or any(c.partition(".")[0] not in _ARCHIVES for c in categories):
        return None
    return categories


def listing_query(url: str, start: datetime, end: datetime) -> str:
    """The arXiv API query for the papers of the listing ``url`` submitted from ``start`` to ``end``:
    its categories (cross-lists included), newest first. The API of an arxiv.org listing is
    export.arxiv.org's; that of another host (a mirror) is at its ``/api/query``."""
    categories = listing_categories(url) or []
    parts = urlsplit(url)
    host = parts.hostname or ""
    api = ARXIV_API if host == "arxiv.org" or host.endswith(".arxiv.org") else (
        f"{parts.scheme}://{parts.netloc}/api/query")
    search = " OR ".join(f"cat:{category}" for category in categories)
    if len(categories) > 1:
        search = f"({search})"
    search += f" AND submittedDate:[{start:%Y%m%d%H%M} TO {end:%Y%m%d%H%M}]"
    query = {"search_query": search, "sortBy": "submittedDate", "sortOrder": "descending"}
    return f"{api}?{urlencode(query)}"


def listing_keep(config: SourceConfig) -> Callable[[Paper], bool]:
    """Which papers of the API a listing source takes: as its ``announce_types`` say, a paper whose
    primary category is one of the listing's being ``new``, any other a ``cross``-list."""
    categories = tuple(listing_categories(config.url) or ())
    wanted = config.announce_types

    def keep(paper: Paper) -> bool:
        primary = paper.primary_category
        if primary is None:
            return True
        own = any(primary == c or primary.startswith(c + ".") for c in categories)
        return ("new" if own else "cross") in wanted

    return keep


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
    # The longest wait a 429 may ask that is sat out before the page is asked again (a longer one
    # stops the run: RateLimitStop); None: a 429 fails the page (a poll's catch-up, which the next
    # poll takes up again, must not hold the poll up).
    patience: float | None = None
    tally: Tally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = Tally(self.config.name)

    def fetch(self, url: str, label: str, listed: date | None,
              keep: Callable[[Paper], bool]) -> list[Paper] | None:
        """Fetch one page, store the papers ``keep`` accepts as listed on ``listed`` (None: on
        each paper's own date), and return all its papers; None if it failed. Raises RateLimitStop
        when the server asks for a wait beyond ``patience``."""
        for waits in range(RATE_LIMIT_WAITS + 1):
            self.tally.requests += 1
            try:
                result = self.fetcher.get(url, timeout=self.config.timeout)
                if result.retry_after_hint:  # HF's RateLimit says the window is used up: wait it out
                    self._wait(result.retry_after_hint, f"{label}: the rate limit window is used up")
                papers = parse_page(result.content or b"", self.config.format, today=self.today)
                self._store([p for p in papers if keep(p)], listed)
            except RateLimitStop:
                raise
            except FetchError as exc:
                if exc.status == 429 and exc.retry_after is not None and self.patience is not None \
                        and waits < RATE_LIMIT_WAITS:
                    self._wait(exc.retry_after, f"{label}: HTTP 429")
                    continue
                self.tally.failures.append(f"{label}: {exc}")
                return None
            except MonitorError as exc:
                self.tally.failures.append(f"{label}: {exc}")
                return None
            return papers
        return None  # not reached: the last try returns

    def _wait(self, seconds: float, why: str) -> None:
        """Sit out a wait the server asked for, saying so; RateLimitStop if it is beyond patience."""
        if self.patience is not None and seconds > self.patience:
            reason = (f"{why}: the server asks to wait {seconds:.0f}s, more than the {self.patience:.0f}s a "
                      "backfill waits: stopped here, run it again later")
            self.tally.failures.append(reason)
            raise RateLimitStop(reason)
        log.warning("%s: %s: waiting %.0fs as the server asks, then going on", self.config.name, why, seconds)
        self.sleep(seconds)

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


def arxiv_pages(url: str, name: str, first: date, last: date, fetch: Fetch,
                sleep: Callable[[float], None], keep: Callable[[Paper], bool] | None = None) -> bool:
    """The arXiv API query ``url`` newest first, until a page reaches back before ``first`` (or
    runs out); the papers submitted from ``first`` to ``last`` that ``keep`` accepts are stored.
    False if a page failed."""

    def within(paper: Paper) -> bool:
        dated = paper.published is None or first <= paper.published <= last
        return dated and (keep is None or keep(paper))

    for start in _progress(range(0, ARXIV_MAX_RESULTS, ARXIV_PAGE), " pages", name, known=False):
        if start:
            sleep(ARXIV_PAUSE)
        query = {"start": str(start), "max_results": str(ARXIV_PAGE), "sortBy": "submittedDate",
                 "sortOrder": "descending"}
        papers = fetch(with_query(url, query), f"results from {start}", None, within)
        if papers is None:
            return False
        if not papers:
            break
        oldest = min((p.published for p in papers if p.published), default=None)
        if len(papers) < ARXIV_PAGE or (oldest is not None and oldest < first):
            break
    return True


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
             *, before: SourceState | None, today: date, polled: tuple[int, int] = (0, 0)) -> Tally | None:
    """After a good poll of an HF API source, read whole the listings of the past days it has not
    read whole since its last good poll (at most ``catch_up`` back), as a poll running then would
    have: their new papers alert. Daily, that is yesterday's listing once, with the papers added
    after the last poll of the day; after a stop or an outage, each day missed. The days read are
    recorded as each ends, so a failure leaves the rest to the next poll. An arXiv listing catches
    up from the arXiv API (``_catch_up_listing``). None: nothing to read."""
    config = past_source(config)
    kind = history_kind(config.url)
    if config.catch_up is None or kind is None:
        return None
    if kind == "arxiv-listing":
        return _catch_up_listing(config, store, fetcher, match, before, today, time.time())
    if kind == "arxiv-api":
        return _catch_up_query(config, store, fetcher, match, before, today, polled)
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


def _catch_up_listing(config: SourceConfig, store: Store, fetcher: Fetcher,
                      match: Callable[[Paper], list[Hit]], before: SourceState | None, today: date,
                      now: float) -> Tally | None:
    """After a good poll of an arXiv listing, the announcements that came and went since the last
    good one (more than ``MISSED_AFTER`` ago), read from the arXiv API: the listing's papers
    submitted since then (less ``LISTING_LAG``, at most ``catch_up`` back). Until it has read them
    all, the last day known whole is recorded (``caught_up``): a catch-up that fails, or that a stop
    cuts short, starts again from there at the next poll."""
    if before is None or before.last_success is None:  # the first poll: the source starts now
        return None
    since = before.last_success
    if before.caught_up is not None:
        since = min(since, datetime.combine(before.caught_up + DAY, datetime.min.time(), UTC).timestamp())
    if now - since <= MISSED_AFTER:
        return None
    window = config.catch_up or 0.0
    start = datetime.fromtimestamp(max(since - LISTING_LAG.total_seconds(), now - window), UTC)
    end = datetime.fromtimestamp(now, UTC)
    missed_from = datetime.fromtimestamp(since, UTC).date()
    if before.caught_up != missed_from - DAY:  # kept if this fails, or the daemon stops meanwhile
        store.record_caught_up(config.name, missed_from - DAY)
    run = Run(config, fetcher, store, match, alert=True, today=today, sleep=fetcher.sleep)
    if arxiv_pages(listing_query(config.url, start, end), config.name, start.date(), end.date(),
                   run.fetch, fetcher.sleep, keep=listing_keep(config)):
        store.record_caught_up(config.name, None)
        run.tally.days = (end.date() - missed_from).days  # only now are they caught up: not if it failed
    return run.tally


def _catch_up_query(config: SourceConfig, store: Store, fetcher: Fetcher,
                    match: Callable[[Paper], list[Hit]], before: SourceState | None, today: date,
                    polled: tuple[int, int]) -> Tally | None:
    """After a good poll of an arXiv API query (newest first) whose page was full and all new, more
    may have come since the last good poll than a page holds (a broad query, a long stop): the next
    pages are read, and their new papers alert, until one holds a paper already known (at most
    ``catch_up`` back). Until then the day of the last good poll is recorded (``caught_up``): a
    catch-up that fails, or that a stop cuts short, pages back to it at the next poll."""
    if before is None or before.last_success is None:
        return None
    url = polled_url(config.url)
    asked = dict(parse_qsl(urlsplit(url).query))
    if asked.get("sortBy") != "submittedDate" or asked.get("sortOrder", "descending") != "descending":
        return None  # another order: the pages after the first are not "older"
    size = int(asked["max_results"]) if asked.get("max_results", "").isdigit() else ARXIV_PAGE
    read, new = polled
    back_to = before.caught_up
    if back_to is None:
        if size == 0 or read < size or new < read:
            return None  # the page reached back to what was known
        back_to = datetime.fromtimestamp(before.last_success, UTC).date() - DAY
        store.record_caught_up(config.name, back_to)
    first = max(back_to, today - max(1, round((config.catch_up or 0) / 86_400)) * DAY)
    run = Run(config, fetcher, store, match, alert=True, today=today, sleep=fetcher.sleep)

    def within(paper: Paper) -> bool:
        return paper.published is None or paper.published >= first

    for start in range(size, ARXIV_MAX_RESULTS, size):
        fetcher.sleep(ARXIV_PAUSE)
        known_before = run.tally.new
        papers = run.fetch(with_query(url, {"start": str(start)}), f"results from {start}", None, within)
        if papers is None:
            return run.tally  # the record stays: the next poll pages back again
        kept = sum(map(within, papers))
        oldest = min((p.published for p in papers if p.published), default=None)
        met_known = before.caught_up is None and run.tally.new - known_before < kept
        if len(papers) < size or met_known or (oldest is not None and oldest < first):
            break
    store.record_caught_up(config.name, None)
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
