"""The one orchestrator: ``poll(source)`` runs fetch -> parse -> store diff (-> match), and
``run_once(settings)`` polls every source once. The only module that imports every stage."""

from __future__ import annotations

import logging
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Protocol, TextIO

from monitor.config import ANNOUNCE_TYPES, Settings, SourceConfig
from monitor.errors import FetchError, FetchInterrupted, MonitorError, ParseError, StoreError
from monitor.fetch import Fetcher, RetryPolicy
from monitor.history import Tally, catch_up, polled_url
from monitor.models import Hit, Paper
from monitor.redact import redact_urls
from monitor.sources import detect_format, parse_page
from monitor.store import PollDiff, Store, open_store
from monitor.store.deliveries import DeliveryQueries

if TYPE_CHECKING:
    from monitor.outbox import DispatchReport

log = logging.getLogger(__name__)


class Matcher(Protocol):
    """What ``poll`` needs of the rule index (``monitor.match.RuleIndex``)."""

    def match(self, paper: Paper) -> list[Hit]: ...


@dataclass(frozen=True)
class PollReport:
    """How one poll of one source went. ``status`` is the HTTP status (304: nothing changed);
    ``error`` the one-line reason when it failed (fetch, parse or store), else ``None``."""

    source: str
    status: int | None
    papers: int
    new: int
    changed: int
    matched: int
    duration: float
    error: str | None = None
    # What failed, for the metrics: fetch, rate_limited, http_4xx/5xx, parse, store, internal.
    error_kind: str | None = None
    new_papers: list[Paper] = field(default_factory=list)
    matched_rules: dict[str, int] = field(default_factory=dict)  # of ``matched``, how many by rule
    # Seconds the server asked us to stay away (Retry-After, HF RateLimit), for the scheduler.
    retry_after: float | None = None
    # Papers of the page left out by the source's ``announce_types`` (arXiv replacements).
    left_out: int = 0
    # The past days read whole after the poll (``monitor.history.catch_up``); counted in new and matched.
    caught_up: Tally | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def left_out_note(self) -> str:
        return f" (and {self.left_out} left out by announce_types)" if self.left_out else ""

    def caught_up_note(self) -> str:
        past = self.caught_up
        if past is None:
            return ""
        failed = f", then failed: {past.failures[0]}" if past.failures else ""
        days = f" on {past.days} past day{'s' if past.days != 1 else ''}" if past.days else ""
        what = f"caught up{days}" if past.days or not past.failures else "catching up"
        return (f"; {what}: {past.requests} requests, {past.papers} papers, {past.new} new,"
                f" {past.matched} matched{failed}")

    def fields(self) -> dict[str, object]:
        """The figures of the poll, for the fields of a JSON log line."""
        return {"source": self.source, "status": self.status, "papers": self.papers, "new": self.new,
                "changed": self.changed, "matched": self.matched, "duration": round(self.duration, 3),
                "left_out": self.left_out, "caught_up_days": self.caught_up.days if self.caught_up else 0}

    def line(self) -> str:
        """One line for people: name, status, papers, new, changed, matched, duration (and error)."""
        status = str(self.status) if self.status is not None else "-"
        text = (
            f"{self.source}: status {status}, {self.papers} papers{self.left_out_note()}, {self.new} new,"
            f" {self.changed} changed, {self.matched} matched, {self.duration:.2f}s"
        )
        return f"{text}, FAILED: {self.error}" if self.error else text + self.caught_up_note()


def open_fetcher(source: SourceConfig, user_agent: str | None,
                 sleep: Callable[[float], None] = time.sleep) -> Fetcher:
    """The client for ``source``: its ``retries`` and ``max_size``, and waits between tries bounded
    by its interval, so that a poll's retries end before the next poll is due."""
    policy = RetryPolicy(attempts=source.retries + 1, max_total=min(120.0, source.every / 2),
                         base=min(1.0, source.every / 10), cap=min(30.0, source.every / 4))
    return Fetcher(user_agent, policy=policy, max_bytes=source.max_size, sleep=sleep)


def poll(
    source: SourceConfig, store: Store, fetcher: Fetcher, index: Matcher, *, today: date | None = None
) -> PollReport:
    """Poll ``source`` once: fetch (conditional), parse, store the diff, match what is new or changed.

    Never raises: a failure (fetch, parse, store, or a bug in a stage) is logged with its one-line
    reason and returned in the report (the papers stay untouched); each but the store's, which is no
    failure of the source, is recorded in the source's state.
    """
    started = time.monotonic()
    status: int | None = None
    papers_read = 0

    def failed(exc: Exception, retry_after: float | None = None) -> PollReport:
        reason = redact_urls(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, FetchInterrupted):
            # The daemon stops: no failure of the source. Recorded, it would outlive the stop, in
            # status (its cause hidden) and in the backoff of the next start's polls.
            log.info("source %s: %s", source.name, reason)
            return PollReport(source.name, status, papers_read, 0, 0, 0, time.monotonic() - started,
                              reason, error_kind="fetch")
        if isinstance(exc, StoreError):  # the store failed, not the source: nothing of the source's
            log.warning("source %s: %s", source.name, reason)  # (and a second try of the store would wait)
            return PollReport(source.name, status, papers_read, 0, 0, 0, time.monotonic() - started,
                              reason, error_kind="store")
        try:
            store.record_failure(source.name, source.url, error=reason, status=status)
        except StoreError as again:  # (the disk full, say: told in the poll's one line)
            cause = str(again).split(": ", 1)[-1]  # (without its action: often the poll's own cause)
            reason += " (not recorded in the store" + ("" if cause in reason else f": {again}") + ")"
        if isinstance(exc, MonitorError):
            log.warning("source %s: %s", source.name, reason)
        else:  # a bug, not bad input: keep the traceback, but let the other sources run
            log.exception("source %s: unexpected %s", source.name, reason)
        return PollReport(
            source.name, status, papers_read, 0, 0, 0, time.monotonic() - started, reason,
            error_kind=error_kind(exc, status), retry_after=retry_after,
        )

    try:
        state = store.get_source_state(source.name)
        # Validators belong to a URL: a source pointed elsewhere starts afresh.
        known = state if state is not None and state.url == source.url else None
        result = fetcher.get(
            polled_url(source.url),
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
            timeout=source.timeout,
        )
        status = result.status
        if result.content is None:  # 304 Not Modified: the page is as we last stored it
            store.record_success(
                source.name, source.url, status=status,
                etag=result.etag or (known.etag if known else None),
                last_modified=result.last_modified or (known.last_modified if known else None),
            )
            diff, left_out = PollDiff(), 0
        else:
            fmt = page_format(result.content, source.format, known.format if known else None)
            papers = parse_page(result.content, fmt, today=today)
            papers, left_out = announced(papers, source.announce_types)
            papers_read = len(papers)
            diff = store.apply_poll(papers, index.match)
            # Only now keep the validators: a page that failed to parse or store must come again whole.
            store.record_success(
                source.name, source.url, status=status, etag=result.etag, last_modified=result.last_modified,
                fmt=fmt,
            )
        past = catch_up(source, store, fetcher, index.match, before=known,
                        today=today or datetime.now(UTC).date(), polled=(papers_read, len(diff.new)))
    except FetchError as exc:
        status = exc.status
        return failed(exc, exc.retry_after)
    except Exception as exc:  # ParseError, StoreError, or a bug in a stage
        return failed(exc)
    matched_rules = Counter(m.rule for m in diff.matches)
    if past is not None:
        matched_rules.update(past.matched_rules)
        if past.failures:  # the days not read are tried again at the next poll
            log.warning("source %s: catching up stopped at %s", source.name, past.failures[0])
    report = PollReport(
        source.name, status, papers_read, len(diff.new) + (past.new if past else 0), len(diff.changed),
        len(diff.matches) + (past.matched if past else 0), time.monotonic() - started,
        new_papers=diff.new + (past.new_papers if past else []), retry_after=result.retry_after_hint,
        matched_rules=dict(matched_rules), left_out=left_out, caught_up=past,
    )
    log.info("source %s", report.line())  # (the line starts with the source's name)
    return report


def page_format(content: bytes, configured: str, before: str | None) -> str:
    """The format to read a page as: the configured one, else what the page looks like; but plain
    text only where the source's page read as plain text before (or never read): a site's error or
    maintenance notice, served with a 200 where JSON was, would read as a listing of one new paper.
    (The other formats have structure no such notice has.)"""
    if configured != "auto":
        return configured
    fmt = detect_format(content)
    if fmt == "hf-text" and before not in (None, fmt):
        raise ParseError(f"the page reads as {fmt}, not {before} as before (an error or maintenance page?); "
                         f"if the source changed for good, set its format in the config")
    return fmt


def announced(papers: list[Paper], wanted: Set[str]) -> tuple[list[Paper], int]:
    """The papers announced as one of the ``wanted`` types, and how many others were left out. A
    paper whose listing gives no announce type, or one not known here, is kept: a changed feed
    must not turn into quiet days."""
    kept = [paper for paper in papers if paper.announce not in ANNOUNCE_TYPES or paper.announce in wanted]
    return kept, len(papers) - len(kept)


def error_kind(exc: Exception, status: int | None) -> str:
    """The kind of a poll's failure, as ``paper_monitor_poll_errors_total`` labels it."""
    if isinstance(exc, FetchError):
        if status == 429:
            return "rate_limited"
        return f"http_{status // 100}xx" if status is not None and status >= 400 else "fetch"
    if isinstance(exc, ParseError):
        return "parse"
    return "store" if isinstance(exc, StoreError) else "internal"


def printable(text: str) -> str:
    """Scraped text made safe for a terminal: control and format characters dropped."""
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))


def print_reports(reports: Sequence[PollReport], out: TextIO) -> None:
    """One line per source, then one line per new paper: its key and title."""
    for report in reports:
        print(printable(report.line()), file=out)
    for report in reports:
        for paper in report.new_papers:
            print(f"new {paper.key} {printable(paper.title)}", file=out)


def run_once(settings: Settings, *, out: TextIO | None = None) -> int:
    """Poll every source once and print what happened; 0 if every source worked, else 1."""
    from monitor.match import compile_rules
    from monitor.outbox import prune_sent

    store = open_store(settings.monitor.database)
    try:
        store.hold("once")
        index = compile_rules(settings.rules)
        reports = []
        for source in settings.sources:
            with open_fetcher(source, settings.monitor.user_agent) as fetcher:
                reports.append(poll(source, store, fetcher, index))
        delivered = deliver(settings, store, wait=store.holder_may_outlive_lock())
        try:
            prune_sent(settings, store)
        except StoreError as exc:  # the alerts are out; the old rows go another time
            log.warning("old sent deliveries not deleted: %s", exc)
    finally:
        store.close()
    print_reports(reports, out or sys.stdout)
    print(f"delivery: {delivered.summary()}", file=out or sys.stdout)
    return 0 if all(report.ok for report in reports) and delivered.ok else 1


def deliver(settings: Settings, store: DeliveryQueries, *, wait: bool = False) -> DispatchReport:
    """Send everything due on every channel (rows a crashed run left in flight first; if ``wait``,
    those claimed in the last minute are left to a run that may still be sending them), then return."""
    from monitor.outbox import open_dispatcher

    with open_dispatcher(settings, store) as dispatcher:
        dispatcher.recover_at_start(wait=wait)
        return dispatcher.run_due()
