"""The wall clock stepping (an NTP correction at boot, a VM resumed, a date set by hand): the
scheduler (APScheduler 3) keeps its jobs' next turns on that clock, so after a step back of an hour
it would wait an hour: no polls, no sends, ``/healthz/live`` failing. ``ClockWatch`` compares the
wall clock with the monotonic one every second and, after a step back, moves the turns back by as
much, so the work goes on at its pace; after a step forward, the turns it skipped run now, once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler

from monitor.logs import utc_text

log = logging.getLogger(__name__)

STEP = 2.0  # seconds the wall clock may part from the monotonic one between two looks
LOOK_EVERY = 1.0


class ClockWatch:
    """Looks at the clocks (``check``, or every second on a thread of its own with ``start``);
    ``stepped`` hears of each step back (seconds, negative), for what else keeps wall-clock times."""

    def __init__(
        self, scheduler: BaseScheduler, *, stepped: Callable[[float], object] | None = None,
        wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scheduler = scheduler
        self._stepped = stepped
        self._wall = wall
        self._monotonic = monotonic
        self._last = (wall(), monotonic())

    def start(self, stop: threading.Event) -> None:
        def watch() -> None:
            while not stop.wait(LOOK_EVERY):
                try:
                    self.check()
                except Exception:  # (a bug here must not end the watch)
                    log.exception("the clock watch failed")

        threading.Thread(target=watch, name="clock-watch", daemon=True).start()

    def check(self) -> float:
        """The step since the last look (seconds: negative back, positive forward), or 0.0 when
        the clocks went on together; the jobs' turns follow it."""
        wall, monotonic = self._wall(), self._monotonic()
        step = (wall - self._last[0]) - (monotonic - self._last[1])
        self._last = (wall, monotonic)
        if abs(step) < STEP:
            return 0.0
        now = datetime.fromtimestamp(wall, UTC)
        if step > 0:
            log.warning("the clock stepped forward %s (now %s): the work it skipped over runs now, once",
                        _span(step), utc_text(wall))
        else:
            log.warning("the clock stepped back %s (now %s): the scheduled polls, sends and checks are "
                        "moved back by as much, so they go on at their pace", _span(-step), utc_text(wall))
        for job in self._scheduler.get_jobs():
            turn = job.next_run_time
            if turn is None:
                continue
            if step > 0 and turn < now:  # (not a turn missed by the step: a warning, and none at all)
                self._move(job.id, now)
            elif step < 0 and turn > now:  # (a turn set since the step is due already: now, at the latest)
                self._move(job.id, max(now, turn + timedelta(seconds=step)))
        if self._stepped is not None and step < 0:
            self._stepped(step)
        return step

    def _move(self, job: str, turn: datetime) -> None:
        with contextlib.suppress(JobLookupError):  # (taken out meanwhile: a reload)
            self._scheduler.modify_job(job, next_run_time=turn)


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f}s"


__all__ = ["STEP", "ClockWatch"]
