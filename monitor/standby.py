"""A standby's side of the store's lock (``run --standby``): whose it is, and when to try it.

A database outage ends the session that holds the lock on PostgreSQL, so when the database answers
again the lock is free for whoever asks first. The standby then waits ``QUIET`` seconds before it
tries, so that the daemon that held it takes it back (within a few seconds: it confirms the lock
before each batch it claims), rather than the work moving to the other machine at every outage.

While it waits, a standby writes its line into the store every ``NOTE_EVERY`` seconds, so that
``status`` can name it (it holds no lock to be seen by).
"""

from __future__ import annotations

import contextlib
import logging
import time

from monitor.errors import MonitorError
from monitor.store.lock import StoreBusy, holder_line
from monitor.store.sql import SqlStore

log = logging.getLogger(__name__)

QUIET = 6.0  # seconds a standby leaves the lock to its holder after the store answers again
NOTE_EVERY = 10.0  # seconds between a standby's notes in the store
FRESH = 60.0  # a standby heard from this recently is waiting; one heard from longer ago, maybe not


class Standby:
    """Tries the store's lock for a daemon that waits; ``holder`` is the line of the one at work,
    ``line`` this one's (``run --standby, pid 1234 on host, since ...``)."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self.line = holder_line("run --standby")
        self._away = False  # the store did not answer at the last try
        self._quiet_until = 0.0
        self._noted = -NOTE_EVERY  # (monotonic)

    def try_take(self, store: SqlStore) -> bool:
        """True once the lock of ``store`` is this process's; False while another process holds it,
        the store does not answer, or it answers again since less than ``QUIET`` seconds."""
        if time.monotonic() < self._quiet_until:
            return False
        try:
            if self._away:
                store.holder()  # does it answer? (this takes no lock)
                self._away = False
                self._quiet_until = time.monotonic() + QUIET
                log.info("standing by: the store answers again; its lock is left %.0fs to the daemon "
                         "that held it", QUIET)
                return False
            try:
                # No waiting: it tries again at its next turn (a wait as long as the turn made
                # the scheduler skip every other turn, with a warning each time).
                store.hold("run", patience=0.0)
            except StoreBusy as exc:
                if exc.holder != self.holder:
                    log.info("standing by: the store is now held by another paper-monitor (%s)", exc.holder)
                    self.holder = exc.holder
            else:
                self._noted = -NOTE_EVERY  # (noted again at once if the takeover fails)
                with contextlib.suppress(MonitorError):  # (left, its line shows as not heard from)
                    store.drop_standby(self.line)
                return True
            if time.monotonic() - self._noted >= NOTE_EVERY:
                self.note(store)
            return False
        except MonitorError as exc:
            if not self._away:
                log.warning("standing by: the store does not answer: %s; trying again", exc)
            self._away = True
            return False

    def note(self, store: SqlStore) -> None:
        """Write this standby's line into ``store``, for ``status`` (``MonitorError``)."""
        store.note_standby(self.line)
        self._noted = time.monotonic()
