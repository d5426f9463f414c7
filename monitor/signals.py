"""SIGHUP, SIGTERM and SIGINT from the process's first moment: held while its code loads (a second
or more; SIGHUP's default would kill it), then taken over by ``run_daemon``, or, for the other
commands, let through as if they had never been held."""

from __future__ import annotations

import signal
from types import FrameType

HELD = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

# Process-wide, as signal handlers are: what arrived before anyone listened.
_arrived: list[int] = []
_holding: list[bool] = []


def hold() -> None:
    """Keep these signals until ``take`` or ``release`` (from the main thread, first thing)."""
    for sig in HELD:
        signal.signal(sig, _keep)
    _holding.append(True)


def _keep(signum: int, frame: FrameType | None) -> None:
    _arrived.append(signum)


def take() -> list[int]:
    """The signals held so far, in order; the caller has put its own handlers in place."""
    taken = list(_arrived)
    del _arrived[:len(taken)]
    _holding.clear()
    return taken


def release() -> None:
    """The default handlers back, and what was held delivered now (a SIGTERM ends the process, a
    SIGINT is a KeyboardInterrupt). Nothing, if nothing was held."""
    if not _holding:
        return
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in take():
        signal.raise_signal(sig)


__all__ = ["HELD", "hold", "release", "take"]
