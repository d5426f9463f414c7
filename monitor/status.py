"""``paper-monitor status``: the outbox of each channel, each source's last polls, the daemon at work
and the standbys; a table for people, or (``--json``) one JSON object for scripts."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

from monitor.admin import opened_store, when
from monitor.config import Settings
from monitor.pipeline import printable
from monitor.standby import FRESH
from monitor.store.lock import holder_fields


@dataclass(frozen=True)
class ChannelStatus:
    name: str
    type: str | None  # None: no longer in the config
    pending: int  # (being sent included)
    failed: int
    dead: int
    sent_today: int
    last_error: str | None  # of the last dead delivery


@dataclass(frozen=True)
class SourceStatus:
    name: str
    last_poll: float | None
    http_status: int | None
    failures: int  # in a row
    last_error: str | None
    last_success: float | None
    past_days_from: date | None  # the first past day still to read (catch-up), if any


@dataclass(frozen=True)
class StandbyLine:
    line: str
    seen: float


@dataclass(frozen=True)
class Status:
    channels: list[ChannelStatus]
    sources: list[SourceStatus]
    daemon: str | None  # the line of the process holding the store
    standbys: list[StandbyLine]


def read_status(settings: Settings) -> Status:
    """What ``status`` shows, read from the store (``StoreError``)."""
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    configured = [c.name for c in settings.channels]
    with opened_store(settings) as store:
        counts = store.delivery_counts(since=midnight, channels=configured)
        states = {state.name: state for state in store.list_source_states()}
        holder = store.holder()
        standbys = [StandbyLine(line, seen) for line, seen in store.standbys()]
    types = {c.name: c.type for c in settings.channels}
    channels = []
    for name in configured + sorted(set(counts) - set(configured)):
        c = counts.get(name)
        channels.append(ChannelStatus(name, types.get(name), (c.pending + c.sending) if c else 0,
                                      c.failed if c else 0, c.dead if c else 0, c.sent_today if c else 0,
                                      c.last_error if c and c.dead else None))
    sources = []
    for source in settings.sources:
        state = states.get(source.name)
        if state is None:
            sources.append(SourceStatus(source.name, None, None, 0, None, None, None))
            continue
        behind = state.caught_up is not None and state.caught_up < yesterday and source.catch_up is not None
        sources.append(SourceStatus(
            source.name, state.last_attempt, state.last_status, state.consecutive_failures,
            state.last_error if state.consecutive_failures else None, state.last_success,
            state.caught_up + timedelta(days=1) if behind and state.caught_up else None,
        ))
    return Status(channels, sources, holder, standbys)


def print_status(settings: Settings, as_json: bool = False) -> int:
    status = read_status(settings)
    print(status_json(status) if as_json else status_text(status, has_sources=bool(settings.sources)))
    return 0


def status_text(status: Status, has_sources: bool = True) -> str:
    lines = [f"{'channel':<20} {'type':<8} {'pending':>8} {'failed':>7} {'dead':>6} {'sent today':>11}"]
    for c in status.channels:
        lines.append(f"{c.name:<20} {c.type or '(gone)':<8} {c.pending:>8} {c.failed:>7} {c.dead:>6} "
                     f"{c.sent_today:>11}")
        if c.last_error:
            lines.append(f"{'':<20} last error: {c.last_error}")
        if c.type is None and (c.pending or c.failed or c.dead):
            lines.append(f'{"":<20} not in the config: "paper-monitor discard {c.name}" drops its '
                         "deliveries, or put it back to send them")
    if has_sources:
        lines.append(f"\n{'source':<20} {'last poll':<17} {'status':>6} {'failures':>8}  last success")
    for s in status.sources:
        if s.last_poll is None:
            lines.append(f"{s.name:<20} {'never':<17}")
            continue
        code = "-" if s.http_status is None else str(s.http_status)
        lines.append(f"{s.name:<20} {when(s.last_poll):<17} {code:>6} {s.failures:>8}  "
                     f"{when(s.last_success)}")
        if s.last_error:
            lines.append(f"{'':<20} last error: {printable(s.last_error)}")
        if s.past_days_from is not None:
            lines.append(f"{'':<20} past days to read: from {s.past_days_from} (at the next good poll)")
    daemon = f"running ({status.daemon})" if status.daemon else "not running (no run or once holds the store)"
    lines.append(f"\ndaemon: {daemon}")
    now = time.time()
    for standby in status.standbys:
        if now - standby.seen < FRESH:
            lines.append(f"standby: {standby.line} (heard from {max(0.0, now - standby.seen):.0f}s ago)")
        else:
            lines.append(f"standby: {standby.line}: not heard from since {when(standby.seen)} "
                         "(stopped, or cannot reach the store)")
    return "\n".join(lines)


def status_json(status: Status) -> str:
    """One JSON object: times in ISO 8601, UTC; a channel's ``type`` null when it is no longer in
    the config; a standby ``fresh`` when heard from in the last minute."""
    now = time.time()
    out = asdict(status)
    for source in out["sources"]:
        for key in ("last_poll", "last_success"):
            source[key] = _iso(source[key])
        if source["past_days_from"] is not None:
            source["past_days_from"] = source["past_days_from"].isoformat()
    out["daemon_process"] = holder_fields(status.daemon) if status.daemon else None
    for standby in out["standbys"]:
        standby["fresh"] = now - standby["seen"] < FRESH
        standby["seen"] = _iso(standby["seen"])
        standby["process"] = holder_fields(standby["line"])
    return json.dumps(out, indent=2)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
