"""``paper-monitor run``, the process around the ``Daemon``: signals, the watch on the config and rule
files, and the exit code.

SIGTERM/SIGINT stop it (exit 0), SIGHUP or an edited config file (or rule file) reloads it. Another
process holding the store stops it with exit 1, unless ``standby``: then it waits, serving the
feeds and its health, and takes over when that process ends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from monitor.config import Settings, load_settings
from monitor.daemon import Daemon
from monitor.rule_files import rule_file_paths

log = logging.getLogger(__name__)


def run_daemon(config_path: Path | str, *, standby: bool = False) -> int:
    """Run until SIGTERM or SIGINT; 0 on a clean stop. ``ConfigError`` reaches the CLI (exit 2),
    and so does ``StoreBusy`` (exit 1), but for a ``standby``, which waits for the store."""
    path = Path(config_path)
    settings = load_settings(path)
    seen = _fingerprint(path, settings)  # the files as read: a change from now on reloads them
    wake = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    # The pipeline's own per-poll line would double ours, which carries the fields for JSON logs.
    logging.getLogger("monitor.pipeline").setLevel(logging.ERROR)
    daemon = Daemon(path, settings, standby=standby)
    try:
        daemon.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        daemon.stop()
        return 1
    while True:
        wake.wait(1.0)
        wake.clear()
        stop = any(s in (signal.SIGTERM, signal.SIGINT) for s in signals)
        hup = signal.SIGHUP in signals
        signals.clear()
        if stop:
            log.info("stopping (signal)")
            break
        if daemon.lost is not None:
            log.error("stopping: this daemon lost the store's lock: %s", daemon.lost)
            break
        current = _fingerprint(path, daemon.settings)
        if hup or current != seen:
            seen, patterns = current, daemon.settings.monitor.rule_files
            daemon.reload()
            if daemon.settings.monitor.rule_files != patterns:  # other rule files to watch
                seen = _fingerprint(path, daemon.settings)
    if not daemon.stop():
        # Threads stuck in a send or a fetch would hold the interpreter's exit; what they were
        # doing is recovered at the next start, exactly as after a crash.
        logging.shutdown()
        os._exit(0 if daemon.lost is None else 1)
    log.info("stopped")
    return 0 if daemon.lost is None else 1


def _fingerprint(path: Path, settings: Settings) -> tuple[object, ...]:
    """What changes when the config file or one of its rule files does: edited, added, removed."""
    files = rule_file_paths(settings.monitor.rule_files, path.parent)
    return (_stamp(path), *((file, _stamp(file)) for file in files))


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's modification time (ns) and size; None if it is not there."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size

__all__ = ["run_daemon"]
