"""The console channel: one readable line per paper on stdout (for trying things out, and cron)."""

from __future__ import annotations

import sys
from typing import TextIO

from monitor.channels.base import Batch
from monitor.channels.render import one_line, reasons_line, shorten
from monitor.config import ConsoleConfig
from monitor.errors import DeliveryError


def format_line(rule: str, title: str, url: str | None, reasons: list[str]) -> str:
    """``[rule] title <url> - reasons``, on one line, without control characters (no terminal escapes)."""
    link = f" <{one_line(url)}>" if url else ""
    why = f" - {reasons_line(reasons)}" if reasons else ""
    return f"[{one_line(rule)}] {shorten(title, 300)}{link}{why}"


class ConsoleChannel:
    """Prints alerts; ``stream`` defaults to the ``sys.stdout`` of the moment of sending."""

    def __init__(self, cfg: ConsoleConfig, stream: TextIO | None = None) -> None:
        self.name = cfg.name
        self._stream = stream

    def send(self, batch: Batch) -> None:
        out = self._stream or sys.stdout
        lines = [
            format_line(alert.rule or batch.rule, alert.paper.title, alert.paper.url, alert.reasons)
            for alert in batch.alerts
        ]
        try:
            out.write("".join(line + "\n" for line in lines))
            out.flush()
        except (OSError, ValueError) as exc:  # a closed pipe or stream
            raise DeliveryError(f"console: cannot write: {exc}") from exc

    def close(self) -> None:
        pass
