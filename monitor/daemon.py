"""The daemon: the scheduler around the pipeline, and the HTTP server (``monitor.process`` runs it).

One interval job per source and one dispatcher job (which also sends the digests) on APScheduler. A
daemon whose lock on the store another process has taken (``SqlStore.confirm_hold``) stops. A
standby (``run --standby``) starts without the lock: it serves the feeds (read from the store) and
its health, and tries the lock every ``STANDBY_EVERY`` seconds; once it has it, it polls and
delivers like any daemon, beginning as one restarted after a crash does.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar, cast

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.channels.rss import FeedKind, render_feed
from monitor.clock import ClockWatch
from monitor.config import RssConfig, Settings, SourceConfig, load_settings
from monitor.errors import ConfigError, FetchInterrupted, MonitorError
from monitor.fetch import Fetcher
from monitor.health import Heartbeat, SourceHealth, StoreHealth, health_report, standby_report
from monitor.match import RuleIndex, compile_rules
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.outbox import RECOVERY_GRACE, Dispatcher, DispatchReport, open_dispatcher, prune_sent
from monitor.pipeline import PollReport, error_kind, open_fetcher, poll
from monitor.server import App, FeedCache, HttpServer
from monitor.standby import FRESH, Standby
from monitor.store import open_store
from monitor.store.lock import StoreBusy, StoreGone
from monitor.store.sql import SqlStore
from monitor.toml_text import beside_other_threads

log = logging.getLogger(__name__)

T = TypeVar("T")

DISPATCH_EVERY = 2.0  # seconds between outbox checks; new matches wake it at once
# A run_due waits this long, then slower channels go on in the background (the next runs find them
# busy, and leave them be): a slow send holds neither the other channels nor the job's next turn.
DISPATCH_WAIT = 1.0
DISPATCH_DEADLINE = 30.0  # a dispatch job running longer than this (+5 s) is a dead dispatcher
STATS_EVERY = 10.0
# Seconds between the daemon's writes that change nothing, to tell /healthz the store takes writes
# (SQLite locked by another process still answers the reads of STATS_EVERY).
STORE_WRITE_EVERY = 30.0
PRUNE_EVERY = 86_400.0
PRUNE_FIRST = 2.0  # seconds after the start (or a takeover) of the first prune
# A prune the store refused (busy, away) is tried again after this, then twice as long each time, up
# to PRUNE_RETRY_CAP: not a day later.
PRUNE_RETRY = 60.0
PRUNE_RETRY_CAP = 3600.0
STANDBY_EVERY = 2.0  # seconds between a standby's tries of the store's lock (and feed refreshes)
LET_GO_PAUSE = 0.002  # seconds between the slices in which a reload frees the rules of before
STOP_DEADLINE = 8.0  # SIGTERM to exit, leaving margin under the 10 s promise


class Daemon:
    """The running monitor. ``start()``, then ``stop()``; ``reload()`` from the main thread."""

    def __init__(self, config_path: Path, settings: Settings, *, standby: bool = False) -> None:
        self.config_path = config_path
        self.settings = settings
        self.metrics = Metrics(rules=self._rule_names)
        self.health = SourceHealth(settings.sources)
        self.heartbeat = Heartbeat(DISPATCH_EVERY, DISPATCH_DEADLINE + 5)
        self.stopping = threading.Event()
        self.lost: str | None = None  # why the store (its lock, or its file) is no longer this daemon's
        self._dispatch_failing = False  # the last dispatch failed on the store (told once an outage)
        self.standby: Standby | None = None  # while it waits for the store's lock
        self._jobs = threading.Lock()  # taking over and reloading both add poll jobs
        self.store_health = StoreHealth()
        self._lock = threading.Lock()  # guards the swap of settings, index, dispatcher on reload
        self._feed_versions: dict[str, tuple[float, int]] = {}
        self._polls_running: dict[str, float] = {}
        self._pruning = threading.Lock()  # the daily prune and a retry never run at once
        self._prune_failures = 0  # in a row
        self._skipped: set[str] = set()  # sources whose turn came while a poll of theirs still ran
        self._closing: list[threading.Thread] = []  # a reload's old dispatcher, closing
        self._dispatching = threading.Lock()  # held by the dispatch job's run
        self._dispatch_again = False  # a wake came while a run was on (which read the queues before it)
        self._waking = threading.Lock()  # a poll's wake is not put off by a wake for a retry
        self.store: SqlStore = open_store(settings.monitor.database)
        try:
            try:
                self.store.hold("run")
            except StoreBusy as exc:
                if not standby:
                    raise
                self.standby = Standby(exc.holder)
                with contextlib.suppress(MonitorError):  # at once, for status (and while it waits)
                    self.standby.note(self.store)
            self.index: RuleIndex = compile_rules(settings.rules)
            self.dispatcher: Dispatcher = open_dispatcher(settings, self.store)
        except BaseException:
            self.store.close()
            raise
        self.fetchers: dict[str, Fetcher] = {s.name: self._fetcher(s, settings) for s in settings.sources}
        self.feeds = FeedCache(self._render)
        app = App(self.feeds, self._rss_channels, self._healthz, self._livez, self._metrics, self._feed_rules,
                  self._rule_gone)
        self.server = HttpServer(app, settings.server.host, settings.server.port)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(settings.sources) + 4)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )

    @property
    def active(self) -> bool:
        """This daemon holds the store's lock: it polls and delivers."""
        return self.standby is None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.active:
            self._begin()
        self.server.start()
        now = datetime.now(UTC)
        self.scheduler.add_job(self._stats_job, IntervalTrigger(seconds=STATS_EVERY), id="stats",
                               next_run_time=now, misfire_grace_time=int(STATS_EVERY))
        if self.active:
            self._add_jobs(now)
        else:
            self._add_takeover_job()
        self.scheduler.start()
        ClockWatch(self.scheduler, stepped=self.health.clock_stepped).start(self.stopping)
        counts = (len(self.settings.sources), len(self.settings.channels), _rule_count(self.settings))
        if self.active:
            log.info("paper-monitor running: %d source(s), %d channel(s), %s", *counts)
        else:
            log.info("paper-monitor standing by: another paper-monitor (%s) polls and delivers with this "
                     "store; this one serves the feeds and takes over when it stops (%d source(s), "
                     "%d channel(s), %s)", self.standby and self.standby.holder, *counts)
        if not self.settings.sources:  # (a reload refuses such a file; a start says what it does)
            log.warning("%s has no [[sources]]: nothing is polled (an empty or unfinished file?)",
                        self.config_path)

    def _begin(self, takeover: bool = False) -> None:
        """Take up what an earlier holder of the store left (deliveries it was sending when it
        stopped; those it claimed within ``RECOVERY_GRACE`` only once that has passed, after a
        ``takeover`` or where the lock cannot prove it gone: PostgreSQL) and the counts the health
        and metrics start from."""
        wait = takeover or self.store.holder_may_outlive_lock()
        started = self.dispatcher.recover_at_start(wait=wait)
        if wait:
            self._recover_later(started)
        self.metrics.matches.seed(self.store.matches_by_rule())  # before any poll adds to them
        configured = {source.name for source in self.settings.sources}
        for state in self.store.list_source_states():
            if state.name not in configured:
                continue  # a source taken out of the config: its row stays, its series go
            self.health.seed(state.name, state.last_success, state.consecutive_failures)
            self.metrics.seed_last_success(state.name, state.last_success)

    def _add_jobs(self, now: datetime) -> None:
        with self._jobs:
            for i, source in enumerate(self.settings.sources):
                self._add_poll_job(source, first=now.timestamp() + 0.1 * i)
            self.scheduler.add_job(self._dispatch_job, IntervalTrigger(seconds=DISPATCH_EVERY), id="dispatch",
                                   next_run_time=now, misfire_grace_time=int(DISPATCH_EVERY * 5),
                                   max_instances=2)  # (see _dispatch_job)
            self.scheduler.add_job(self._store_write_job, IntervalTrigger(seconds=STORE_WRITE_EVERY),
                                   id="store-writes", misfire_grace_time=int(STORE_WRITE_EVERY))
            self.scheduler.add_job(self._prune_job, IntervalTrigger(seconds=PRUNE_EVERY), id="prune",
                                   next_run_time=now + timedelta(seconds=PRUNE_FIRST),
                                   misfire_grace_time=3600)
            self.standby = None

    def _recover_later(self, claimed_before: float) -> None:
        """In ``RECOVERY_GRACE``: what the daemon before had claimed and still has not recorded
        goes back to pending (that daemon is gone); tried again later if the store is away."""
        def recover() -> None:
            try:
                self.dispatcher.recover(claimed_before=claimed_before)
            except MonitorError as exc:
                log.warning("deliveries left in flight not recovered: %s; trying again", exc)
                self._recover_later(claimed_before)

        when = datetime.now(UTC) + timedelta(seconds=RECOVERY_GRACE)
        self.scheduler.add_job(recover, "date", run_date=when, id="recover", replace_existing=True,
                               misfire_grace_time=3600)

    def _add_takeover_job(self) -> None:
        self.scheduler.add_job(self._takeover_job, IntervalTrigger(seconds=STANDBY_EVERY), id="takeover",
                               misfire_grace_time=int(STANDBY_EVERY * 5))  # first in STANDBY_EVERY

    def _takeover_job(self) -> None:
        """A standby: take the store's lock if it is free, and from then on poll and deliver."""
        standby = self.standby
        if self.stopping.is_set() or standby is None:
            return
        self.heartbeat.begin()
        try:
            if not standby.try_take(self.store):
                with contextlib.suppress(MonitorError):  # (the store away: the next try says so)
                    self._refresh_feeds()  # the active daemon's deliveries, in the feeds this one serves
                return
        finally:
            self.heartbeat.end()
        log.info("taking over: the other paper-monitor (%s) has stopped; this one polls and delivers now",
                 standby.holder)
        self.scheduler.remove_job("takeover")
        try:
            self._begin(takeover=True)
        except MonitorError as exc:  # the store went away meanwhile: begin again at the next try
            log.warning("taking over failed: %s; trying again", exc)
            self.store.release_hold()
            self._add_takeover_job()
            return
        self._add_jobs(datetime.now(UTC))

    def stop(self) -> bool:
        """Stop taking work, let what is in flight finish; False if some of it had to be abandoned."""
        self.stopping.set()
        deadline = time.monotonic() + STOP_DEADLINE
        if self.scheduler.running:  # (not yet, when the start failed: the port was taken, say)
            self.scheduler.shutdown(wait=False)
        # A batch still sending when time runs out stays "sending"; the next start releases it.
        closer = threading.Thread(target=self._close, name="dispatcher-close", daemon=True)
        closer.start()
        while self._polls_running and time.monotonic() < deadline:
            time.sleep(0.05)
        closer.join(timeout=max(0.0, deadline - time.monotonic()))
        for old in self._closing:  # a reload's old dispatcher still sending
            old.join(timeout=max(0.0, deadline - time.monotonic()))
        clean = not self._polls_running and not any(t.is_alive() for t in (closer, *self._closing))
        self.server.stop()
        if clean:
            for fetcher in self.fetchers.values():
                fetcher.close()
            self.store.close()
        else:
            log.warning("stopping with work in flight (polls: %s); the next start recovers it",
                        ", ".join(self._polls_running) or "none")
        return clean

    def _close(self) -> None:
        """The dispatcher closed; a standby's line taken out of the store (``status``)."""
        self.dispatcher.close()
        if (standby := self.standby) is not None:
            with contextlib.suppress(MonitorError):
                self.store.drop_standby(standby.line)

    def reload(self) -> None:
        """Read the config again; a config with problems is reported and the running one kept."""
        prepared = self.prepare_reload()
        if prepared is not None:
            self.apply_reload(*prepared)

    def prepare_reload(self) -> tuple[Settings, RuleIndex] | None:
        """The config read again and its rules compiled, for ``apply_reload``; None (the problems
        logged) if it has problems. Seconds with 100,000 rules: it runs beside the daemon's work."""
        def read() -> tuple[Settings, RuleIndex]:
            with beside_other_threads():
                new = load_settings(self.config_path)
            if not new.sources:  # an emptied file, or one cut short: nothing would be watched
                raise ConfigError("no [[sources]]: nothing to poll (an empty or unfinished file?)")
            return new, compile_rules(new.rules)

        try:
            return built_for_good(read)
        except ConfigError as exc:
            for problem in exc.problems:
                # (a file that cannot be read names itself)
                problem = problem.removeprefix(f"{self.config_path}: ")
                log.error("reload: %s: %s (keeping the running config)", self.config_path, problem)
            return None

    def apply_reload(self, new: Settings, index: RuleIndex) -> None:
        """Work from now on with ``new`` and its rules ``index`` (``prepare_reload``)."""
        for what, old_value, new_value in (("database", self.settings.monitor.database, new.monitor.database),
                                           ("server.listen", self.settings.server.listen, new.server.listen)):
            if old_value != new_value:
                log.warning("reload: %s changed; it takes effect at the next restart", what)
        dispatcher = open_dispatcher(new, self.store)
        with self._lock:
            old_dispatcher, old_settings, old_index = self.dispatcher, self.settings, self.index
            dispatcher.take_over(old_dispatcher)  # (it starts nothing more; its sends hold their channels)
            self.settings, self.index, self.dispatcher = new, index, dispatcher
            swapped = time.monotonic()
        self._let_go(old_index, swapped)
        del old_index
        # Closed beside: it waits for its sends in flight, which may take a channel's timeout, and
        # this runs on the loop that takes the signals (a stop waits for it, up to its deadline).
        closing = threading.Thread(target=old_dispatcher.close, kwargs={"successor": dispatcher},
                                   name="dispatcher-close", daemon=True)
        closing.start()
        self._closing = [*(t for t in self._closing if t.is_alive()), closing]
        self.health.reconfigure(new.sources)
        with self._jobs:
            if self.active:
                self._reschedule(old_settings, new)
            else:  # a standby adds the poll jobs when it takes over
                for fetcher in self.fetchers.values():
                    fetcher.close()
                self.fetchers = {s.name: self._fetcher(s, new) for s in new.sources}
        self.feeds.forget_others(set())
        self._feed_versions.clear()
        log.info("reloaded %s: %d source(s), %d channel(s), %s", self.config_path,
                 len(new.sources), len(new.channels), _rule_count(new))

    def _let_go(self, index: RuleIndex, swapped: float) -> None:
        """The rules of before a reload freed beside the daemon's work, a slice at a time, once the
        polls that began with them have ended (freed at once, 100,000 rules stop every thread for
        seconds)."""
        def let_go() -> None:
            while any(began < swapped for began in list(self._polls_running.values())):
                if self.stopping.wait(0.5):
                    return  # (the process ends without freeing its heap)
            index.let_go(lambda: time.sleep(LET_GO_PAUSE))

        threading.Thread(target=let_go, name="old-rules", daemon=True).start()

    def _reschedule(self, old: Settings, new: Settings) -> None:
        before = {s.name: s for s in old.sources}
        after = {s.name: s for s in new.sources}
        for name in before.keys() - after.keys():
            self.scheduler.remove_job(f"poll:{name}")
            self._retire_fetcher(name, None)
            self.metrics.forget_source(name)  # its last success would stay, ever older: an alert
        for i, (name, source) in enumerate(after.items()):
            if before.get(name) == source:
                continue
            if name in before:
                self.scheduler.remove_job(f"poll:{name}")
            self._retire_fetcher(name, self._fetcher(source, new))
            self._add_poll_job(source, first=time.time() + 0.1 * i)

    def _retire_fetcher(self, name: str, successor: Fetcher | None) -> None:
        """A source's client replaced (or gone): closed now, or, while a poll of the source is using
        it, by that poll as it ends."""
        with self._lock:
            fetcher = self.fetchers.pop(name, None)
            if successor is not None:
                self.fetchers[name] = successor
            polling = name in self._polls_running
        if fetcher is not None and not polling:
            fetcher.close()

    def _add_poll_job(self, source: SourceConfig, first: float) -> None:
        self.scheduler.add_job(
            self._poll_job, IntervalTrigger(seconds=source.every, jitter=min(source.every * 0.1, 60.0)),
            args=(source.name,), id=f"poll:{source.name}", name=f"poll {source.name}",
            next_run_time=datetime.fromtimestamp(first, UTC),
            misfire_grace_time=max(1, int(source.every / 2)),
            # A reload replaces the job while its poll may still run: the new job's turn then comes
            # to _poll_job, which leaves it to that poll, rather than to the scheduler's warning.
            max_instances=2,
        )

    # -- jobs --------------------------------------------------------------------------------

    def _poll_job(self, name: str) -> None:
        if self.stopping.is_set() or not self.health.due(name):
            return
        with self._lock:
            source = next((s for s in self.settings.sources if s.name == name), None)
            index, fetcher = self.index, self.fetchers.get(name)
            if source is None or fetcher is None:
                return
            if name in self._polls_running:  # polling still, as it was before a reload
                self._skipped.add(name)
                return
            self._polls_running[name] = time.monotonic()
        try:
            report = poll(source, self.store, fetcher, index)
        except Exception as exc:  # a store failure or a bug: the source is unhealthy, the daemon lives
            log.exception("poll %s crashed", name)
            report = PollReport(source=name, status=None, papers=0, new=0, changed=0, matched=0,
                                duration=time.monotonic() - self._polls_running[name], error=str(exc),
                                error_kind=error_kind(exc, None))
        finally:
            with self._lock:
                self._polls_running.pop(name, None)
                current = self.fetchers.get(name)
                skipped = name in self._skipped
                self._skipped.discard(name)
        if current is not fetcher:  # the source was edited or taken out while it polled
            fetcher.close()
        self._after_poll(source, report)
        if current is not fetcher and current is not None and skipped:
            self._poll_now(name)  # its new settings' first turn was left to this poll

    def _poll_now(self, name: str) -> None:
        with contextlib.suppress(Exception):  # (taken out again, or the scheduler stopping)
            self.scheduler.modify_job(f"poll:{name}", next_run_time=datetime.now(UTC))

    def _after_poll(self, source: SourceConfig, report: PollReport) -> None:
        if self.stopping.is_set() and report.error:
            log.info("poll %s interrupted by the stop", source.name)
            return
        now = time.time()
        ok = report.error is None
        with self._lock:  # (as one with a reload taking the source out, and its series with it)
            gone = not any(s.name == source.name for s in self.settings.sources)
            if not gone:
                if report.error_kind == "store":  # the store's failure, not the source's
                    wait = self.health.record_store_failure(source.name, status=report.status, now=now)
                else:
                    wait = self.health.record(source.name, ok=ok, status=report.status, error=report.error,
                                              retry_after=report.retry_after, now=now)
                self.metrics.observe_poll(report, ok=ok, not_modified=report.status == 304,
                                          error_kind=report.error_kind, now=now)
        if report.error_kind == "store":
            self._writes(report.error, now)
        elif ok:  # (it wrote the source's state)
            self._writes(None, now)
        if gone:  # nothing recorded of a source no longer watched
            log.info("poll %s ended after its source was taken out of the config: %s", source.name,
                     "ok" if ok else report.error)
            if report.matched and not self.stopping.is_set():
                self._wake_dispatcher()
            return
        fields = report.fields()
        if ok:
            log.info("poll %s: HTTP %s, %d papers%s, %d new, %d changed, %d matched, %.2fs%s", source.name,
                     report.status, report.papers, report.left_out_note(), report.new, report.changed,
                     report.matched, report.duration, report.caught_up_note(), extra=fields)
        elif report.error_kind == "store":
            answered = f" (the source answered HTTP {report.status})" if report.status is not None else ""
            log.warning("poll %s: the store failed%s: %s; next try in %.0fs", source.name, answered,
                        report.error, wait, extra={**fields, "error": report.error, "retry_in": wait})
        else:
            answer = "no answer" if report.status is None else f"HTTP {report.status}"
            log.warning("poll %s: %s, failed: %s; next try in %.0fs", source.name, answer,
                        report.error, wait, extra={**fields, "error": report.error, "retry_in": wait})
        if report.matched and not self.stopping.is_set():
            self._wake_dispatcher()

    def _wake_dispatcher(self, at: float | None = None) -> None:
        """Run the dispatch job now, or at ``at`` (epoch seconds) if that is before its next turn."""
        try:
            with self._waking:
                if at is not None:
                    job = self.scheduler.get_job("dispatch")
                    if job is None or job.next_run_time is None or job.next_run_time.timestamp() <= at:
                        return
                when = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
                self.scheduler.modify_job("dispatch", next_run_time=when)
        except Exception:  # the scheduler is shutting down; the next start delivers
            log.debug("could not wake the dispatcher", exc_info=True)

    def _dispatch_job(self) -> None:
        # A turn (or a wake after a poll) that comes while a run is on is that run's: it starts
        # another once it ends (the run asked the store what is due at its start). The scheduler
        # would warn of each one skipped.
        if self.stopping.is_set():
            return
        if not self._dispatching.acquire(blocking=False):
            self._dispatch_again = True
            return
        with self._lock:
            dispatcher = self.dispatcher
        self.heartbeat.begin()
        next_due = None
        try:
            self._dispatch_again = False
            self.store.confirm_hold()
            report = dispatcher.run_due(timeout=DISPATCH_WAIT)
            next_due = report.next_due
            self._after_dispatch(report)
            if self._dispatch_failing:
                log.info("dispatch: the store answers again")
                self._dispatch_failing = False
        except StoreBusy as exc:  # another process delivers now: stop, rather than send beside it
            self.lost = f"this daemon lost the store's lock: {exc}"
            self.stopping.set()
        except StoreGone as exc:  # stop, rather than record into a file the next start will not see
            self.lost = str(exc)
            self.stopping.set()
        except MonitorError as exc:
            # Told once an outage, not every 2 s while it lasts (/healthz and the metrics tell on).
            log.log(logging.DEBUG if self._dispatch_failing else logging.ERROR, "dispatch failed: %s", exc)
            self._dispatch_failing = True
        finally:
            self.heartbeat.end()
            self._dispatching.release()
        if self._dispatch_again and not self.stopping.is_set():
            self._wake_dispatcher()
        elif next_due is not None and not self.stopping.is_set():
            self._wake_dispatcher(at=next_due)  # a retry due before the next turn is sent on time

    def _after_dispatch(self, report: DispatchReport) -> None:
        outcomes: dict[tuple[str, str], int] = {}
        for name, r in report.channels.items():
            outcomes[(name, "sent")] = r.sent
            outcomes[(name, "failed")] = r.failed
            outcomes[(name, "dead")] = r.dead
        self.metrics.observe_deliveries(outcomes)
        self._refresh_feeds({name for name, r in report.channels.items() if r.sent})

    def _refresh_feeds(self, sent: set[str] | None = None) -> None:
        """Re-render the feeds whose sent deliveries changed (the server serves them from memory):
        those this daemon just ``sent`` to, and those whose version in the store changed (which
        misses rows sent after the clock was set back, until it has caught up again)."""
        channels = self._rss_channels()
        if not channels:
            return
        versions = self.store.feed_versions(list(channels))
        for name, cfg in channels.items():
            version = versions.get(name, (0.0, 0))
            if self._feed_versions.get(name) != version or name in (sent or ()):
                self.feeds.refresh(cfg)
                self._feed_versions[name] = version

    def _stats_job(self) -> None:
        """Outbox and match gauges from the store, health gauges, and the overdue-poll watchdog."""
        now = time.time()
        try:
            stats = self.store.outbox_stats()
        except MonitorError as exc:  # the database is away: the gauges keep their last values
            log.warning("outbox gauges not read: %s", exc)
            self.store_health.record(str(exc), now)
        else:
            self.store_health.record(None, now)
            with self._lock:
                names = [c.name for c in self.settings.channels]
            self.metrics.set_outbox(stats.counts, stats.oldest, names, now)
            if self.active:
                with contextlib.suppress(MonitorError):
                    self.metrics.standbys.set(sum(now - seen < FRESH for _, seen in self.store.standbys()))
        for name, started in list(self._polls_running.items()):
            if time.monotonic() - started > _poll_deadline(self._source(name)):
                log.error("poll %s has been running for %.0fs, past its deadline", name,
                          time.monotonic() - started)

    def _store_write_job(self) -> None:
        """A write that changes nothing: whether the store takes writes, for /healthz and the metrics
        (told once when writes fail, and once when they work again)."""
        if self.stopping.is_set():
            return
        try:
            self.store.check_writes()
        except MonitorError as exc:
            self._writes(str(exc), time.time())
        else:
            self._writes(None, time.time())

    def _writes(self, error: str | None, now: float) -> None:
        """Note whether a write went through; a change is one line."""
        if self.store_health.record_write(error, now):
            if error is None:
                log.info("store: writes work again")
            else:
                log.error("store: writes fail: %s", error)

    def _prune_job(self) -> None:
        """Deliveries sent longer ago than ``keep_sent`` go (at start, then daily); if the store
        refuses, again in ``PRUNE_RETRY`` seconds, doubling up to ``PRUNE_RETRY_CAP``."""
        if self.stopping.is_set() or not self._pruning.acquire(blocking=False):
            return
        try:
            with self._lock:
                settings = self.settings
            prune_sent(settings, self.store)
        except MonitorError as exc:
            self._prune_failures += 1
            wait = min(PRUNE_RETRY_CAP, PRUNE_RETRY * 2 ** min(self._prune_failures - 1, 16))
            log.warning("old sent deliveries not deleted: %s; trying again in %.0fs", exc, wait)
            if not self.stopping.is_set():
                self.scheduler.add_job(self._prune_job, "date", id="prune-again", replace_existing=True,
                                       run_date=datetime.now(UTC) + timedelta(seconds=wait),
                                       misfire_grace_time=3600)
        else:
            self._prune_failures = 0
        finally:
            self._pruning.release()

    def _fetcher(self, source: SourceConfig, settings: Settings) -> Fetcher:
        """A client per source (see ``open_fetcher``), its waits cut short by a stop."""
        return open_fetcher(source, settings.monitor.user_agent, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise FetchInterrupted("stopped while waiting to retry")

    # -- what the server asks ----------------------------------------------------------------

    def _rule_names(self) -> list[str]:
        with self._lock:
            return [rule.name for rule in self.settings.active_rules]

    def _source(self, name: str) -> SourceConfig | None:
        with self._lock:
            return next((s for s in self.settings.sources if s.name == name), None)

    def _rss_channels(self) -> Mapping[str, RssConfig]:
        with self._lock:
            return {c.name: c for c in self.settings.channels if isinstance(c, RssConfig)}

    def _feed_rules(self, channel: str) -> frozenset[str]:
        """The rules that notify ``channel``, on or off (a rule switched off keeps its feed)."""
        with self._lock:
            return self.settings.rules_by_channel.get(channel, frozenset())

    def _rule_gone(self, channel: str, rule: str) -> bool:
        """Whether ``rule`` (which no longer notifies ``channel``) has items in its feed."""
        try:
            return self.store.has_sent(channel, rule)
        except MonitorError:  # the store away: a 404 for now
            return False

    def _render(self, cfg: RssConfig, kind: str, rule: str | None) -> bytes:
        return render_feed(self.store, cfg, cast(FeedKind, kind), rule=rule)

    def _healthz(self) -> tuple[bool, dict[str, object]]:
        if self.standby is not None:
            return standby_report(self.heartbeat, self.standby.holder)
        return health_report(self.health, self.heartbeat, self.store_health)

    def _livez(self) -> tuple[bool, dict[str, object]]:
        alive = self.heartbeat.alive() and self.scheduler.running
        return alive, {"status": "alive" if alive else "dead"}

    def _metrics(self) -> tuple[bytes, str]:
        fresh = {name: bool(s["ok"]) for name, s in self.health.snapshot().items()} if self.active else {}
        self.metrics.set_health(fresh, self.heartbeat.alive(), self.store_health.ok, active=self.active)
        return self.metrics.render(), CONTENT_TYPE


def built_for_good(work: Callable[[], T]) -> T:
    """``work`` (reading the config and compiling its rules) with the cyclic garbage collector paused,
    then everything alive frozen (``gc.freeze``), out of its reach. The rule index is millions of
    objects: each full collection walked all of them (and, in a reload, the running config's too),
    stopping every thread for seconds at a time (/healthz/live took 11 s with 100,000 rules), and,
    at rest, again whenever enough new objects had piled up. Reading a config makes no reference
    cycles (measured: none to collect after 100,000 rules), so nothing is left to the collector; what
    a reload lets go is freed by reference counting, frozen or not."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        built = work()
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()  # (not after a failure: its traceback's cycles are garbage for the collector)
    return built


def _rule_count(settings: Settings) -> str:
    off = len(settings.rules) - len(settings.active_rules)
    return f"{len(settings.active_rules)} rule(s)" + (f" ({off} off)" if off else "")


def _poll_deadline(source: SourceConfig | None) -> float:
    if source is None:
        return 300.0
    return min(120.0, source.every / 2) + 4 * 2 * source.timeout + 30.0


__all__ = ["Daemon", "built_for_good"]
