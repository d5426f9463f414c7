"""A standby's side of the store's lock (``run --standby``): whose it is, and when to try it.

A database outage ends the session that holds the lock on PostgreSQL, so when the database answers
again the lock is free for whoever asks first. The standby then waits ``QUIET`` seconds before it
tries, so that the daemon that held it takes it back (within a few seconds: it confirms the lock
before each batch it claims), rather than the work moving to the other machine at every outage.
"""

from __future__ import annotations

import logging
import time

from monitor.errors import MonitorError
from monitor.store.lock import StoreBusy
from monitor.store.sql import SqlStore

log = logging.getLogger(__name__)

QUIET = 6.0  # seconds a standby leaves the lock to its holder after the store answers again


class Standby:
    """Tries the store's lock for a daemon that waits; ``holder`` is the line of the one at work."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self._away = False  # the store did not answer at the last try
        self._quiet_until = 0.0

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
            store.hold("run")
            return True
        except StoreBusy as exc:
            if exc.holder != self.holder:
                log.info("standing by: the store is now held by another paper-monitor (%s)", exc.holder)
                self.holder = exc.holder
            return False
        except MonitorError as exc:
            if not self._away:
                log.warning("standing by: the store does not answer: %s; trying again", exc)
            self._away = True
            return False
