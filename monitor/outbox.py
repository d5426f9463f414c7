"""The outbox dispatcher: claims due deliveries, sends them as batches, marks them (the operator's
commands over it are in ``monitor.admin``).

Each channel's queue is FIFO and runs on its own worker thread, so a slow or dead channel never
delays the others; a transient failure holds that channel's queue until its retry time (in order).
A dispatch turn asks the store once which channels have something due (every queue's head in one
statement) and starts only those: 200 channels at rest cost no more than one.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from functools import partial
from typing import TypeVar
from zoneinfo import ZoneInfo

from monitor.channels.base import DIGEST_RULE, Alert, Batch, Channel, GroupChannel
from monitor.config import EmailConfig, RssConfig, Settings, SlackConfig
from monitor.errors import DeliveryError, StoreError
from monitor.logs import utc_text
from monitor.store.deliveries import Claimed, DeliveryQueries, Head
from monitor.store.lock import StoreBusy

log = logging.getLogger(__name__)

T = TypeVar("T")

# A process that lost the store's lock under it (its PostgreSQL session ended in an outage) may still
# be finishing a send, and record it: what it claimed this recently is left to it for this long.
RECOVERY_GRACE = 60.0
# A channel that keeps failing is told when it starts, then at most this often, and when it answers
# again: 200 webhooks answering 429 Retry-After: 1 made 2,000 warnings a minute.
FAILURE_LOG_EVERY = 60.0


@dataclass
class _Failing:
    """A channel's tries failing in a row: since when, how many, when last told in the log."""

    since: float
    tries: int
    told: float


# A channel whose every send does the same whole work (a feed) is sent the batches due together, up to
# this many batches or alerts, or this many seconds of claiming them: with 100,000 rules one poll
# made ~1,500 batches, and the feed rendered whole (RSS and Atom, fsynced) for each took minutes.
GROUP_BATCHES = 500
GROUP_ALERTS = 2_000
GROUP_SECONDS = 5.0


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter, retrying until ``give_up_after`` seconds have passed
    since the first failure (two days by default, so that an outage of a day ends with everything
    delivered). The clock, not a count of tries, decides: a peer asking for short pauses
    (``Retry-After: 1``) makes many tries in a minute, and none of them is a reason to give up. But
    only time spent trying counts: a try more than ``late`` seconds after its time (the daemon was
    stopped for days, or the clock stepped forward: a machine booted with a stale clock that NTP set
    right) does not count the time past it as failing."""

    base: float = 30.0
    factor: float = 2.0
    cap: float = 3600.0
    give_up_after: float = 2 * 86400.0
    # The least pause before a try again, whatever a peer asks (``Retry-After: 0``).
    least: float = 1.0
    # A try this much past its time or more: the time beyond was not spent trying.
    late: float = 600.0
    # A peer's short Retry-After is obeyed as asked for this long after the first failure; then
    # the pauses are at least the backoff's, up to ``patient_cap``.
    patient_for: float = 60.0
    patient_cap: float = 60.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        raw = self._longest(attempts)
        return raw / 2 + rng.uniform(0, raw / 2)

    def _longest(self, attempts: int) -> float:
        """The longest pause after try number ``attempts``."""
        # The exponent is bounded: tries are not (a peer asking for 1 s pauses makes thousands).
        return min(self.cap, self.base * self.factor ** min(max(0, attempts - 1), 64))


@dataclass(frozen=True)
class Digest:
    """A once-a-day send time ("HH:MM" in a time zone): rows wait for the first slot after them."""

    at: clock_time
    zone: ZoneInfo

    @classmethod
    def parse(cls, hh_mm: str, zone: str = "UTC") -> Digest:
        hours, minutes = hh_mm.split(":")
        return cls(clock_time(int(hours), int(minutes)), ZoneInfo(zone))

    def last_slot(self, now: float) -> float:
        """The latest send time at or before ``now`` (epoch seconds). Compared as instants: on the
        day the clocks go forward, 02:30 (no such time) is an hour later than the wall clock says."""
        today = datetime.fromtimestamp(now, self.zone).date()
        slot = datetime.combine(today, self.at, tzinfo=self.zone).timestamp()
        if slot > now:
            slot = datetime.combine(today - timedelta(days=1), self.at, tzinfo=self.zone).timestamp()
        return slot

    def next_slot(self, now: float) -> float:
        """The first send time after ``now`` (epoch seconds)."""
        today = datetime.fromtimestamp(now, self.zone).date()
        slot = datetime.combine(today, self.at, tzinfo=self.zone).timestamp()
        if slot <= now:
            slot = datetime.combine(today + timedelta(days=1), self.at, tzinfo=self.zone).timestamp()
        return slot


@dataclass(frozen=True)
class _Claim:
    """A batch claimed, not sent yet: its key, rows, the batch made of them, and the claim's time."""

    key: str
    rows: list[Claimed]
    batch: Batch
    current: float
    due: float  # when the batch's head was due (a try long past it: time not spent failing)


@dataclass
class ChannelReport:
    """What one channel did in one ``run_due``. Counts are deliveries (papers), not messages."""

    channel: str
    sent: int = 0
    batches: int = 0
    failed: int = 0
    dead: int = 0
    busy: bool = False  # still working through an earlier run; it was not started again
    error: str | None = None
    next_due: float | None = None  # when its queue has a batch to send again, as the run ended


@dataclass
class DispatchReport:
    channels: dict[str, ChannelReport] = field(default_factory=dict)
    # When the earliest thing not due at this call falls due (a retry, a digest's time): on a channel
    # it did not start, or as a channel's run (reported here) left its queue; None: nothing waits.
    next_due: float | None = None

    def due_at(self, at: float | None) -> None:
        """Something (if ``at`` is not None) falls due at ``at``: ``next_due`` is the earliest."""
        if at is not None and (self.next_due is None or at < self.next_due):
            self.next_due = at

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.channels.values())

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.channels.values())

    @property
    def dead(self) -> int:
        return sum(r.dead for r in self.channels.values())

    @property
    def ok(self) -> bool:
        """Nothing failed or died, and no channel stopped on an error."""
        return all(not (r.failed or r.dead or r.error) for r in self.channels.values())

    def summary(self) -> str:
        parts = [f"{r.channel}: {r.sent} sent" + (f", {r.failed} to retry" if r.failed else "")
                 + (f", {r.dead} dead" if r.dead else "") + (" (busy)" if r.busy else "")
                 for r in self.channels.values()]
        return "; ".join(parts) or "no channels"


class Dispatcher:
    """Sends what is due, channel by channel, each on its own worker thread.

    The dispatcher owns ``channels`` and closes them in ``close()``. ``run_due`` may be called
    from a scheduler: a channel still busy from the previous call is skipped, not queued twice.
    """

    def __init__(
        self,
        store: DeliveryQueries,
        channels: Mapping[str, Channel],
        *,
        clock: Callable[[], float] = time.time,
        digests: Mapping[str, Digest] | None = None,
        backoff: Backoff | None = None,
        batch_size: int = 100,
        inline_wait: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._channels = dict(channels)
        self._clock = clock
        self._digests = dict(digests or {})
        self._backoff = backoff or Backoff()
        self._batch_size = batch_size
        self._inline_wait = inline_wait  # a Retry-After this short is waited out on the spot
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, Future[ChannelReport]] = {}
        # What each channel's runs did, told by the next ``run_due`` that looks (a run may outlast
        # the call that started it); shared with a reload's successor (``take_over``).
        self._finished: queue.SimpleQueue[ChannelReport] = queue.SimpleQueue()
        self._failing: dict[str, _Failing] = {}  # by channel; each is touched by its own worker only
        # Per channel, the batches whose store write failed (the database was down, or locked past
        # its busy timeout): that write, done first at the channel's next run, so the batch is
        # neither left "sending" until a restart nor sent again.
        self._unfinished: dict[str, dict[str, Callable[[], object]]] = {name: {} for name in self._channels}
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._channels)), thread_name_prefix="deliver")

    def recover(self, claimed_before: float | None = None) -> int:
        """At start: deliveries a crash left in "sending" (those claimed before ``claimed_before``)
        go back to pending (same batch key)."""
        count = self._store.recover_sending(self._clock(), claimed_before=claimed_before)
        if count:
            log.warning("recovered %d deliveries left in flight by an earlier run", count)
        return count

    def recover_at_start(self, *, wait: bool) -> float:
        """What an earlier holder of the store left "sending" goes back to pending, to be sent
        again. If that holder may still be at work (``wait``: it lost the lock, not its send), only
        what it claimed over ``RECOVERY_GRACE`` ago: the rest is its own to record for a while, and
        ``recover(claimed_before=<the start>)`` once that has passed. Returns the start."""
        now = self._clock()
        self.recover(claimed_before=now - RECOVERY_GRACE if wait else None)
        if wait:  # nothing of this process is in flight yet: what is "sending" is the other's
            left = sum(n for _, state, n in self._store.outbox_stats().counts if state == "sending")
            if left:
                log.warning("%d deliveries claimed less than %.0f s ago, by a paper-monitor that may still "
                            "be sending them, are left to it; they go again if still in flight then",
                            left, RECOVERY_GRACE)
        return now

    def run_due(self, now: float | None = None, *, timeout: float | None = None) -> DispatchReport:
        """Send everything due on every channel. Waits up to ``timeout`` seconds (None: until
        done); a channel still working then goes on in the background and is reported busy (what
        it did is in the report of a later call). ``now`` fixes the time (tests); by default the
        clock is read before each batch. A dispatcher closing (``close``, ``take_over``) starts
        nothing: its report is empty.

        The store is asked once which channels have something due (``queue_heads``); only those
        start (and those with a store write owed), each reading its own queue from there on.
        ``StoreError`` if the store does not answer that.
        """
        report = DispatchReport()
        started: dict[str, Future[ChannelReport]] = {}
        if self._stop.is_set():
            return report
        heads = self._store.queue_heads()
        current = self._clock() if now is None else now
        with self._lock:
            if self._stop.is_set():
                return report
            for name in self._channels:
                running = self._running.get(name)
                if running is not None and not running.done():
                    report.channels[name] = ChannelReport(name, busy=True)
                    continue
                due = self._due_at(name, heads.get(name), current)
                if self._unfinished[name] or (due is not None and due <= current):
                    started[name] = self._running[name] = self._pool.submit(self._run_channel, name, now)
                else:
                    report.channels[name] = ChannelReport(name)  # nothing due: not started
                    report.due_at(due)
        wait(list(started.values()), timeout=timeout)
        for name, future in started.items():
            if not future.done():
                report.channels[name] = ChannelReport(name, busy=True)
        while True:
            try:
                done = self._finished.get_nowait()
            except queue.Empty:
                break
            report.channels[done.channel] = _added(report.channels.get(done.channel), done)
            report.due_at(done.next_due)
        return report

    def _due_at(self, name: str, head: Head | None, current: float) -> float | None:
        """When the queue whose head is ``head`` has a batch to send, seen at ``current`` (the one
        decision: a turn starts the channel, ``_claim_next`` claims, once it has come): its retry
        time, or a digest's next time for rows that wait for it; None if the queue is empty."""
        if head is None:
            return None
        digest = self._digests.get(name)
        if digest is not None and head.batch_key is None and head.created_at >= digest.last_slot(current):
            return max(head.next_attempt_at, digest.next_slot(current))  # held for the next digest
        return head.next_attempt_at

    def take_over(self, old: Dispatcher) -> None:
        """Work from now on in place of ``old`` (a reload's): it starts nothing more, and a channel
        it is still sending on stays busy here until that send ends, so that a channel's batches
        still go one at a time, in order. Then close ``old`` (which may wait for those sends)."""
        with old._lock:
            old._stop.set()
            running = {name: future for name, future in old._running.items() if not future.done()}
        with self._lock:
            self._finished = old._finished  # (this one has run nothing yet)
            self._running.update({name: f for name, f in running.items() if name in self._channels})

    def close(self, successor: Dispatcher | None = None) -> None:
        """Stop after the batches in flight, and close the channels. The store writes still owed
        pass to ``successor`` (a reload's dispatcher) for the channels it has."""
        with self._lock:  # (no run_due submits after this)
            self._stop.set()
        self._pool.shutdown(wait=True)
        for name, unfinished in self._unfinished.items():
            if successor is not None and not successor._stop.is_set() and name in successor._unfinished:
                successor._unfinished[name].update(unfinished)
                continue
            try:
                self._finish_unfinished(name)  # a last try: the store may answer by now
            except StoreError as exc:
                log.warning("channel %s: %d batch(es) could not be recorded in the store (%s); the next "
                            "start sends them again", name, len(unfinished), exc)
        for channel in self._channels.values():
            try:
                channel.close()
            except Exception:
                log.exception("closing channel %s failed", channel.name)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_channel(self, name: str, now: float | None) -> ChannelReport:
        report = ChannelReport(name)
        try:
            self._finish_unfinished(name)
            # Bounded, so one run cannot spin forever on a queue that keeps growing.
            channel = self._channels[name]
            for _ in range(10_000):
                if self._stop.is_set():
                    break
                if isinstance(channel, GroupChannel):
                    if not self._send_group(name, channel, now, report):
                        break
                elif not self._send_next(name, now, report):
                    break
            if not self._stop.is_set():  # (a retry it set, a digest's time: the daemon wakes for it)
                current = self._clock() if now is None else now
                report.next_due = self._due_at(name, self._store.queue_head(name), current)
        except StoreError as exc:  # the database is unreachable, or the store's lock was lost
            log.error("delivery to channel %s stopped: %s", name, exc)
            report.error = str(exc)
        except Exception as exc:  # a bug: report it, the next run tries again
            log.exception("delivery to channel %s stopped", name)
            report.error = str(exc)
        self._finished.put(report)
        return report

    def _finish_unfinished(self, name: str) -> None:
        """The store writes that failed at earlier runs, in order; failing again ends this run."""
        unfinished = self._unfinished[name]
        for key, write in list(unfinished.items()):
            write()
            del unfinished[key]
            log.info("channel %s: batch %s recorded in the store, which answers again", name, key)

    def _write(
        self, name: str, key: str, write: Callable[[], T], undo: Callable[[], object] | None = None
    ) -> T:
        """A store write about batch ``key``. Should it fail, ``undo`` (by default the write
        again) is left for the channel's next run. A lost lock leaves nothing: the batch is the
        new holder's now."""
        try:
            return write()
        except StoreBusy:
            raise
        except StoreError:
            self._unfinished[name][key] = undo or write
            raise

    def _claim_next(self, name: str, now: float | None) -> tuple[bool, _Claim | None]:
        """Claim the batch at the head of the queue: ``(False, None)`` when nothing more is due now,
        ``(True, None)`` when another dispatcher claimed it first."""
        current = self._clock() if now is None else now
        head = self._store.queue_head(name)
        due = self._due_at(name, head, current)
        if head is None or due is None or due > current:
            return False, None  # empty, backing off (everything behind the head waits, in order), or held
        digest = self._digests.get(name)
        slot = digest.last_slot(current) if digest else None
        key = head.batch_key or uuid.uuid4().hex
        claim = partial(self._store.claim_batch, name, current, head=head, key=key,
                        limit=self._batch_size if slot is None else 10_000, created_before=slot)
        # A claim whose answer was lost may have happened: its rows, if any, go back to pending
        # (only that claim's, should another process have claimed the batch since).
        undo = partial(self._store.recover_sending, current, key=key, claimed_at=current)
        _, rows = self._write(name, key, claim, undo=undo)
        if not rows:
            return True, None
        batch = _batch(name, key, rows, digest=slot is not None, on_posted=partial(self._posted, name, key))
        return True, _Claim(key, rows, batch, current, head.next_attempt_at)

    def _send_next(self, name: str, now: float | None, report: ChannelReport) -> bool:
        """Claim and send the batch at the head of the queue; False when nothing more is due now."""
        more, claimed = self._claim_next(name, now)
        if claimed is None:
            return more
        try:
            self._channels[name].send(claimed.batch)
        except DeliveryError as exc:
            return self._failed(name, claimed, exc, report, now)
        except Exception as exc:  # a bug in a channel: retried like a transient error, loudly
            log.exception("channel %s raised while sending batch %s", name, claimed.key)
            return self._failed(name, claimed, DeliveryError(repr(exc)), report, now)
        self._sent(name, claimed, now, report)
        return True

    def _send_group(self, name: str, channel: GroupChannel, now: float | None, report: ChannelReport) -> bool:
        """The batches due on a channel whose every send is the same whole work (a feed, rendered
        whole): claimed one by one (up to ``GROUP_BATCHES`` of them, ``GROUP_ALERTS`` alerts, or
        ``GROUP_SECONDS`` of claiming), sent at once, each confirmed once that returns. Should the
        send fail, the first batch fails as it would alone and the others go back to the queue
        behind it, untried. False when nothing more is due now."""
        claims: list[_Claim] = []
        more, lost, alerts = True, None, 0
        began = time.monotonic()
        try:
            while (more and not self._stop.is_set() and len(claims) < GROUP_BATCHES and alerts < GROUP_ALERTS
                   and time.monotonic() - began < GROUP_SECONDS):
                more, claimed = self._claim_next(name, now)
                if claimed is not None:
                    claims.append(claimed)
                    alerts += len(claimed.rows)
        except StoreError as exc:  # what was claimed is sent, and recorded or left to the next run
            if not claims:
                raise
            lost = exc
        if claims:
            try:
                channel.send_all([c.batch for c in claims])
            except Exception as exc:
                first, *others = claims
                if not isinstance(exc, DeliveryError):  # a bug in a channel: retried, loudly
                    log.exception("channel %s raised while sending batch %s", name, first.key)
                    exc = DeliveryError(repr(exc))
                for c in others:
                    self._write(name, c.key, partial(self._store.recover_sending, c.current, key=c.key,
                                                     claimed_at=c.current))
                self._failed(name, first, exc, report, now)
                return False  # (a Retry-After is not waited out here: the next run tries again)
            for c in claims:
                self._sent(name, c, now, report)
        if lost is not None:
            raise lost
        return more

    def _sent(self, name: str, claimed: _Claim, now: float | None, report: ChannelReport) -> None:
        key = claimed.key
        self._write(name, key, partial(self._store.mark_sent, key, self._clock() if now is None else now))
        report.sent += len(claimed.rows)
        report.batches += 1
        if (failing := self._failing.pop(name, None)) is not None:
            log.info("channel %s answers again (failing since %s, %d failed tries)", name,
                     utc_text(failing.since), failing.tries)
        log.info("delivered %d alert(s) of rule %s to channel %s", len(claimed.rows), claimed.batch.rule,
                 name)

    def _posted(self, name: str, key: str, ids: Sequence[int]) -> None:
        """A message of batch ``key`` reached the channel, and the batch goes on: recorded, so that
        no later try sends it again. Should the store not answer, the channel's own memory of it
        serves this process, and only a restart before the batch is recorded sends it again."""
        try:
            self._store.mark_posted(key, ids, self._clock())
        except StoreError as exc:
            log.warning("channel %s: a message of batch %s reached it but could not be recorded (%s); "
                        "sent again only if this process stops before the batch is done", name, key, exc)

    def _failed(
        self, name: str, claimed: _Claim, exc: DeliveryError, report: ChannelReport, now: float | None
    ) -> bool:
        key, rows, current, due = claimed.key, claimed.rows, claimed.current, claimed.due
        attempts = max(r.attempts for r in rows)
        since = min((r.failing_since for r in rows if r.failing_since is not None), default=current)
        # Time this try came past its due time was not spent failing (see ``Backoff``).
        unexplained = max(0.0, current - due - self._backoff.late) if since < current else 0.0
        since += unexplained
        report.error = str(exc)
        if exc.permanent or current - since >= self._backoff.give_up_after:
            why = str(exc) if exc.permanent else (
                f"gave up after {(current - since) / 3600:.0f} hours of failures ({attempts} attempts): {exc}"
            )
            self._write(name, key, partial(self._store.mark_dead, key, why))
            report.dead += len(rows)
            log.error("channel %s: %d alert(s) dead: %s", name, len(rows), why)
            return True  # the queue moves on past a batch that can never be delivered
        asked = exc.retry_after
        if asked is not None:
            delay = max(asked, self._backoff.least)
            if current - since >= self._backoff.patient_for:
                # A peer that has asked for short pauses for a while gets longer ones (Retry-After
                # is the least wait): 200 webhooks answering 429 Retry-After: 1 were 200 tries a second.
                delay = max(delay, min(self._backoff.patient_cap, self._backoff.delay(attempts, self._rng)))
        else:
            delay = self._backoff.delay(attempts, self._rng)
        self._write(name, key, partial(self._store.mark_failed, key, str(exc), current + delay, current,
                                       not_failing=unexplained))
        failing = self._failing.get(name)
        if failing is None:
            self._failing[name] = _Failing(since=current, tries=1, told=current)
            log.warning("channel %s: %d alert(s) to retry in %.0fs: %s", name, len(rows), delay, exc)
        else:
            failing.tries += 1
            if current - failing.told >= FAILURE_LOG_EVERY:
                failing.told = current
                log.warning("channel %s: still failing since %s (%d tries), next try in %.0fs: %s", name,
                            utc_text(failing.since), failing.tries, delay, exc)
            else:
                log.debug("channel %s: %d alert(s) to retry in %.0fs: %s", name, len(rows), delay, exc)
        if now is None and asked is not None and delay <= self._inline_wait:
            self._stop.wait(delay)  # a short Retry-After (429): wait it out, then go on
            return True
        report.failed += len(rows)
        return False


def _added(before: ChannelReport | None, done: ChannelReport) -> ChannelReport:
    """One channel's report of a call: what ``done`` did added to what was there."""
    if before is None:
        return done
    return ChannelReport(done.channel, sent=before.sent + done.sent, batches=before.batches + done.batches,
                         failed=before.failed + done.failed, dead=before.dead + done.dead,
                         busy=before.busy, error=done.error or before.error, next_due=done.next_due)


def _batch(
    channel: str, key: str, rows: list[Claimed], *, digest: bool,
    on_posted: Callable[[Sequence[int]], None] | None = None,
) -> Batch:
    alerts = [Alert(paper=r.paper, reasons=r.reasons, delivery_id=r.id, rule=r.rule, posted=r.posted)
              for r in rows]
    return Batch(channel=channel, rule=DIGEST_RULE if digest else rows[0].rule, alerts=alerts, key=key,
                 on_posted=on_posted)


def prune_sent(settings: Settings, store: DeliveryQueries, now: float | None = None) -> int:
    """Delete the deliveries sent longer ago than ``keep_sent`` (each rss channel keeps its newest
    ``max_items``); how many went."""
    keep_for = settings.monitor.keep_sent
    if keep_for is None:
        return 0
    feeds = {c.name: c.max_items for c in settings.channels if isinstance(c, RssConfig)}
    deleted = store.prune_sent((time.time() if now is None else now) - keep_for, keep=feeds)
    if deleted:
        log.info("deleted %d deliveries sent over %g days ago (their matches stay; feeds keep their "
                 "newest items)", deleted, keep_for / 86400)
    return deleted


def digest_schedules(settings: Settings) -> dict[str, Digest]:
    """The digest times of the email and Slack channels that have one."""
    return {
        c.name: Digest.parse(c.digest, c.timezone)
        for c in settings.channels
        if isinstance(c, EmailConfig | SlackConfig) and c.digest
    }


def open_dispatcher(
    settings: Settings, store: DeliveryQueries, *, clock: Callable[[], float] = time.time,
    inline_wait: float = 5.0,
) -> Dispatcher:
    """A dispatcher over every configured channel (built from ``settings``); close it after use."""
    from monitor.channels import build_channels

    channels = build_channels(settings, store)
    return Dispatcher(
        store, channels, clock=clock, digests=digest_schedules(settings), inline_wait=inline_wait
    )
