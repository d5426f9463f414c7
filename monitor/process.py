"""``paper-monitor run``, the process around the ``Daemon``: signals, the watch on the config and rule
files, and the exit code.

SIGTERM/SIGINT stop it (exit 0), SIGHUP or an edited config file (or rule file), once it is written
whole (``monitor.watch``), reloads it. Another process holding the store stops it with exit 1,
unless ``standby``: then it waits, serving the feeds and its health, and takes over when that
process ends.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Generic, TypeVar

from monitor import signals as early_signals
from monitor.config import Settings, load_settings
from monitor.daemon import Daemon, built_for_good
from monitor.match.index import RuleIndex
from monitor.watch import ConfigWatch, Fingerprint, fingerprint

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_daemon(config_path: Path | str, *, standby: bool = False) -> int:
    """Run until SIGTERM or SIGINT; 0 on a clean stop. ``ConfigError`` reaches the CLI (exit 2),
    and so does ``StoreBusy`` (exit 1), but for a ``standby``, which waits for the store."""
    path = Path(config_path)
    wake = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)
        wake.set()

    def stopping() -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT) for s in signals)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    early = early_signals.take()  # those that came while the code loaded
    if signal.SIGHUP in early:
        log.info("SIGHUP while starting: ignored (the config is about to be read)")
    signals.extend(s for s in early if s != signal.SIGHUP)
    # The pipeline's own per-poll line would double ours, which carries the fields for JSON logs.
    logging.getLogger("monitor.pipeline").setLevel(logging.ERROR)
    # Reading the config and compiling its rules take seconds with 100,000 rules (and again at each
    # reload): they run beside this loop, so that a stop asked for meanwhile is not kept waiting.
    log.info("starting: reading %s", path)
    beginning = _Beside(partial(_begin, path, standby), wake)
    while not beginning.done and not stopping():
        wake.wait(1.0)
        wake.clear()
    if not beginning.done:
        log.info("stopping (signal) before the start was done")
        logging.shutdown()
        os._exit(0)  # (the start, abandoned, holds nothing a new process needs)
    daemon, seen = beginning.result()
    try:
        daemon.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        daemon.stop()
        return 1
    watch = ConfigWatch(path, daemon.settings)
    watch.read(daemon.settings, seen)
    reloading: _Beside[tuple[Fingerprint, tuple[Settings, RuleIndex] | None]] | None = None
    again = False  # a SIGHUP while a reload was being prepared
    while True:
        wake.wait(1.0)
        wake.clear()
        stop, hup = stopping(), signal.SIGHUP in signals
        signals.clear()
        if stop:
            log.info("stopping (signal)")
            break
        if daemon.lost is not None:
            log.error("stopping: %s", daemon.lost)
            break
        if reloading is not None:
            if not reloading.done:
                again = again or hup
                continue
            (before, prepared), reloading = reloading.result(), None
            if watch.now(daemon.settings) != before:  # read as it changed: maybe half of it
                log.info("%s changed while it was read: it is read again once it settles", path)
            elif prepared is not None:
                daemon.apply_reload(*prepared)
                watch.read(daemon.settings)  # (its rule files may be others now)
            else:  # its problems told: read again when it changes
                watch.read(daemon.settings, before)
            hup, again = hup or again, False
        if hup or watch.due(daemon.settings):
            log.info("reading %s again (%s)", path, "SIGHUP" if hup else "a file changed")
            reloading = _Beside(partial(_read_again, daemon, watch), wake)
    watch.close()
    if not daemon.stop():
        # Threads stuck in a send or a fetch would hold the interpreter's exit; what they were
        # doing is recovered at the next start, exactly as after a crash.
        logging.shutdown()
        os._exit(0 if daemon.lost is None else 1)
    log.info("stopped")
    # Everything is written and closed (the store, its lock, the server's port): the heap goes with
    # the process, not object by object (6-9 s after this line with 100,000 rules, past the 10 s
    # a service manager waits). The log and the standard streams are flushed first.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if daemon.lost is None else 1)


def _begin(path: Path, standby: bool) -> tuple[Daemon, Fingerprint]:
    """The daemon of the config at ``path``, and the config's files as they were read."""
    def build() -> tuple[Daemon, tuple[object, ...]]:
        settings = load_settings(path)
        seen = fingerprint(path, settings)  # the files as read: a change from now on reloads them
        return Daemon(path, settings, standby=standby), seen

    return built_for_good(build)


def _read_again(daemon: Daemon, watch: ConfigWatch) -> tuple[Fingerprint, tuple[Settings, RuleIndex] | None]:
    """The config read again (``Daemon.prepare_reload``), and its files as they were before."""
    before = watch.now(daemon.settings)
    return before, daemon.prepare_reload()


class _Beside(Generic[T]):
    """``work`` run in a thread of its own, ``wake`` set when it is done; ``result()`` is what it
    returned, or raises what it raised."""

    def __init__(self, work: Callable[[], T], wake: threading.Event) -> None:
        self._outcome: list[T] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._outcome.append(work())
            except BaseException as exc:  # (handed to the caller by result())
                self._error.append(exc)
            finally:
                wake.set()

        self._thread = threading.Thread(target=run, name="config", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> T:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._outcome[0]


__all__ = ["run_daemon"]
