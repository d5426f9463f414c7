"""Source health and the dispatcher's heartbeat: backoff after failures, staleness, /healthz.

Pure bookkeeping fed by the daemon (no I/O), safe to call from the scheduler's threads and the
HTTP server's thread at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.config import SourceConfig
from monitor.logs import utc_text

STALE_AFTER_INTERVALS = 3
BACKOFF_CAP_INTERVALS = 4


@dataclass
class SourceState:
    """What the daemon knows of one source's recent polls."""

    name: str
    every: float
    watching_since: float
    last_attempt: float | None = None
    last_success: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    failures: int = 0
    not_before: float = 0.0  # no poll before this time (backoff, Retry-After)
    # The last poll that failed on the store, not on the source: no step towards staleness.
    last_store_failure: float | None = None


class SourceHealth:
    """Backoff and staleness per source.

    After the n-th failure in a row the next poll waits min(2**(n-1), 4) intervals, or longer
    when the source said so (429 Retry-After, HF's RateLimit ``t=``). A source is stale when it
    had no successful poll within 3 intervals (counted from the start when it never had one).
    """

    def __init__(self, sources: Sequence[SourceConfig], now: float | None = None) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, SourceState] = {}
        self.reconfigure(sources, now)

    def reconfigure(self, sources: Sequence[SourceConfig], now: float | None = None) -> None:
        """Follow a new config: keep the history of sources that stay, forget the others."""
        now = time.time() if now is None else now
        with self._lock:
            old = self._states
            self._states = {}
            for source in sources:
                state = old.get(source.name) or SourceState(source.name, source.every, now)
                state.every = source.every
                self._states[source.name] = state

    def seed(self, name: str, last_success: float | None, failures: int) -> None:
        """Start from what the store remembers (a restart is not a fresh source)."""
        with self._lock:
            state = self._states.get(name)
            if state is not None:
                state.last_success = last_success
                state.failures = failures

    def clock_stepped(self, step: float) -> None:
        """The wall clock stepped back ``step`` seconds (negative): each backoff ends as much earlier
        by it, as long after its failure as it was."""
        with self._lock:
            for state in self._states.values():
                state.not_before += min(0.0, step)

    def due(self, name: str, now: float | None = None) -> bool:
        """Whether a poll may run now (it is not backing off)."""
        now = time.time() if now is None else now
        with self._lock:
            state = self._states.get(name)
            return state is not None and now >= state.not_before

    def record(
        self,
        name: str,
        *,
        ok: bool,
        status: int | None,
        error: str | None = None,
        retry_after: float | None = None,
        now: float | None = None,
    ) -> float:
        """Note a poll's outcome; returns the seconds until the next poll may run."""
        now = time.time() if now is None else now
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return 0.0
            state.last_attempt = now
            state.last_status = status
            if ok:
                state.last_success = now
                state.last_error = None
                state.failures = 0
                # A success can still say "no more for now" (HF's RateLimit with r=0; t= seconds).
                state.not_before = now + retry_after if retry_after else 0.0
                return retry_after or 0.0
            state.failures += 1
            state.last_error = error
            # The regular tick comes one interval later anyway; a little slack keeps a jittered
            # tick that fires slightly early from being skipped.
            intervals = float(min(2 ** (state.failures - 1), BACKOFF_CAP_INTERVALS))
            wait: float = max(intervals * state.every, retry_after or 0.0)
            state.not_before = max(now + (intervals - 0.25) * state.every, now + (retry_after or 0.0))
            return wait

    def record_store_failure(self, name: str, *, status: int | None, now: float | None = None) -> float:
        """Note a poll that failed on the store (its page fetched and read, or not yet): no failure
        of the source's, no backoff, no step towards staleness. Returns the seconds until the next
        poll may run: the regular interval."""
        now = time.time() if now is None else now
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return 0.0
            state.last_attempt = now
            if status is not None:
                state.last_status = status
            state.last_store_failure = now
            state.not_before = 0.0
            return state.every

    def stale(self, name: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            state = self._states.get(name)
            return state is not None and _is_stale(state, now)

    def snapshot(self, now: float | None = None) -> dict[str, dict[str, object]]:
        """Per source: ok (fresh), last success, consecutive failures, last status and error."""
        now = time.time() if now is None else now
        with self._lock:
            return {
                name: {
                    "ok": not _is_stale(state, now),
                    "last_success": state.last_success,
                    "failures": state.failures,
                    "last_status": state.last_status,
                    "last_error": state.last_error,
                }
                for name, state in self._states.items()
            }


def _is_stale(state: SourceState, now: float) -> bool:
    since = max(state.last_success if state.last_success is not None else state.watching_since,
                state.last_store_failure or 0.0)
    return now - since > STALE_AFTER_INTERVALS * state.every


class Heartbeat:
    """The dispatcher's pulse: alive while it keeps finishing runs, or one is within its deadline."""

    def __init__(self, period: float, deadline: float) -> None:
        self.period = period
        self.deadline = deadline
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_beat: float | None = None
        self._running_since: float | None = None

    def begin(self) -> None:
        with self._lock:
            self._running_since = time.monotonic()

    def end(self) -> None:
        with self._lock:
            self._running_since = None
            self._last_beat = time.monotonic()

    def alive(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._running_since is not None:
                return now - self._running_since <= self.deadline
            last = self._last_beat if self._last_beat is not None else self._started
            return now - last <= max(3 * self.period, self.period + self.deadline)


class StoreHealth:
    """Whether the store answers the daemon's reads (its periodic read) and takes its writes (its
    periodic write, and each poll's), and since when it has not. SQLite locked for writes by another
    process still answers reads: each is told apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Since when, and the last error, of reads and of writes.
        self._down: dict[str, tuple[float, str]] = {}

    def record(self, error: str | None, now: float) -> None:
        """The outcome of a read."""
        self._note("reads", error, now)

    def record_write(self, error: str | None, now: float) -> bool:
        """The outcome of a write; whether that changed whether writes work."""
        return self._note("writes", error, now)

    def _note(self, kind: str, error: str | None, now: float) -> bool:
        with self._lock:
            down = self._down.pop(kind, None)
            if error is not None:
                self._down[kind] = (down[0] if down else now, error)
            return (down is None) != (error is None)

    @property
    def ok(self) -> bool:
        return not self._down

    @property
    def writes_ok(self) -> bool:
        return "writes" not in self._down

    @property
    def error(self) -> str | None:
        with self._lock:
            down = self._down.get("reads") or self._down.get("writes")
        return down[1] if down else None

    def problem(self) -> str | None:
        """``store: failing since <time> (<error>)`` (reads fail), ``store: writes failing since
        <time> (<error>)``, or None while it answers both."""
        with self._lock:
            found = dict(self._down)
        for kind, what in (("reads", "failing"), ("writes", "writes failing")):
            if (down := found.get(kind)) is not None:
                return f"store: {what} since {utc_text(down[0])} ({down[1]})"
        return None


def health_report(
    health: SourceHealth, heartbeat: Heartbeat, store: StoreHealth
) -> tuple[bool, dict[str, object]]:
    """/healthz of a daemon at work: healthy while every source is fresh, the dispatcher runs and
    the store answers and takes writes; the body names each problem (a poll that failed on the store
    is the store's problem, not its source's)."""
    sources = health.snapshot()
    alive = heartbeat.alive()
    problems = [f"source {name}: no successful poll within {STALE_AFTER_INTERVALS} intervals" + (
        f" (last error: {s['last_error']})" if s["last_error"] else "")
        for name, s in sources.items() if not s["ok"]]
    if not alive:
        problems.append("dispatcher: not running")
    if (problem := store.problem()) is not None:
        problems.append(problem)
    body: dict[str, object] = {"status": "ok" if not problems else "unhealthy", "problems": problems,
                               "sources": sources, "dispatcher": {"alive": alive},
                               "store": {"ok": store.ok, "error": store.error, "writes_ok": store.writes_ok}}
    return not problems, body


def standby_report(heartbeat: Heartbeat, active: str | None) -> tuple[bool, dict[str, object]]:
    """/healthz of a standby: healthy while it keeps trying the store's lock; ``active`` is the
    holder's line of the daemon it waits for."""
    alive = heartbeat.alive()
    return alive, {"status": "standby" if alive else "unhealthy", "active": active,
                   "problems": [] if alive else ["standby: not trying the store's lock"]}
