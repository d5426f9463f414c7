"""The operator's commands: ``test-channel``, ``status`` (deliveries and sources), ``retry-dead``,
``discard`` and ``copy-store``."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import URL

from monitor.channels.base import Alert, Batch
from monitor.config import Settings
from monitor.errors import DeliveryError
from monitor.models import Paper
from monitor.pipeline import printable
from monitor.standby import FRESH
from monitor.store.sql import SqlStore


@contextmanager
def opened_store(settings: Settings) -> Iterator[SqlStore]:
    from monitor.store import open_store

    store = open_store(settings.monitor.database)
    try:
        yield store
    finally:
        store.close()


def test_channel(settings: Settings, name: str) -> int:
    """Send one test alert through channel ``name``: 0 delivered, 1 failed, 2 no such channel."""
    try:
        config = settings.channel(name)
    except KeyError:
        known = ", ".join(c.name for c in settings.channels) or "none configured"
        print(f'paper-monitor test-channel: unknown channel "{name}" (channels: {known})', file=sys.stderr)
        return 2
    from monitor.channels import build_channel

    paper = Paper.build(
        title="paper-monitor test alert", source="test", url="https://huggingface.co/papers",
        abstract="If you can read this, the channel works.", authors=["Paper Monitor"],
    )
    batch = Batch(
        channel=name, rule="test", key=f"test-{uuid.uuid4().hex}",
        alerts=[Alert(paper=paper, reasons=["test message from paper-monitor test-channel"], delivery_id=0,
                      rule="test")],
    )
    with opened_store(settings) as store:
        channel = build_channel(config, settings, store)
        try:
            channel.send(batch)
        except DeliveryError as exc:
            kind = "permanent" if exc.permanent else "transient"
            print(f"channel {name} ({config.type}): FAILED ({kind}): {exc}")
            return 1
        finally:
            channel.close()
    print(f"channel {name} ({config.type}): test alert delivered")
    return 0


def print_status(settings: Settings) -> int:
    """Per channel: pending, failed, dead (with the last error), sent today; per source: the last
    poll, its HTTP status, failures in a row (with the last error), the last success; then whether
    a daemon (or a once) is at work on the store, and the daemons standing by."""
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with opened_store(settings) as store:
        counts = store.delivery_counts(since=midnight, channels=[c.name for c in settings.channels])
        states = {state.name: state for state in store.list_source_states()}
        holder = store.holder()
        standbys = store.standbys()
    names = [c.name for c in settings.channels] + sorted(set(counts) - {c.name for c in settings.channels})
    types = {c.name: c.type for c in settings.channels}
    print(f"{'channel':<20} {'type':<8} {'pending':>8} {'failed':>7} {'dead':>6} {'sent today':>11}")
    for name in names:
        c = counts.get(name)
        pending = (c.pending + c.sending) if c else 0
        failed, dead, sent = (c.failed, c.dead, c.sent_today) if c else (0, 0, 0)
        kind = types.get(name, "(gone)")
        print(f"{name:<20} {kind:<8} {pending:>8} {failed:>7} {dead:>6} {sent:>11}")
        if c and c.dead and c.last_error:
            print(f"{'':<20} last error: {c.last_error}")
        if name not in types and (pending or failed or dead):
            print(f'{"":<20} not in the config: "paper-monitor discard {name}" drops its deliveries, '
                  "or put it back to send them")
    if settings.sources:
        print(f"\n{'source':<20} {'last poll':<17} {'status':>6} {'failures':>8}  last success")
    for source in settings.sources:
        state = states.get(source.name)
        if state is None or state.last_attempt is None:
            print(f"{source.name:<20} {'never':<17}")
            continue
        status = "-" if state.last_status is None else str(state.last_status)
        failures = state.consecutive_failures
        print(f"{source.name:<20} {when(state.last_attempt):<17} {status:>6} {failures:>8}  "
              f"{when(state.last_success)}")
        if state.consecutive_failures and state.last_error:
            print(f"{'':<20} last error: {printable(state.last_error)}")
        if state.caught_up is not None and state.caught_up < yesterday and source.catch_up is not None:
            first = state.caught_up + timedelta(days=1)
            print(f"{'':<20} past days to read: from {first} (at the next good poll)")
    daemon = f"running ({holder})" if holder else "not running (no run or once holds the store)"
    print(f"\ndaemon: {daemon}")
    now = time.time()
    for line, seen in standbys:
        if now - seen < FRESH:
            print(f"standby: {line} (heard from {max(0.0, now - seen):.0f}s ago)")
        else:
            print(f"standby: {line}: not heard from since {when(seen)} (stopped, or cannot reach the store)")
    return 0


def when(timestamp: float | None) -> str:
    """A time as the operator's clock reads it, to the minute."""
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def retry_dead(settings: Settings, channel: str | None) -> int:
    """Requeue the dead deliveries of ``channel`` (every channel when None)."""
    if channel is not None and channel not in {c.name for c in settings.channels}:
        print(f'paper-monitor retry-dead: unknown channel "{channel}"', file=sys.stderr)
        return 2
    with opened_store(settings) as store:
        count = store.requeue_dead(time.time(), channel)
    where = f"channel {channel}" if channel else "all channels"
    print(f"requeued {count} dead deliver{'y' if count == 1 else 'ies'} ({where})")
    return 0



def discard(settings: Settings, channel: str | None, dead: bool) -> int:
    """Delete the dead deliveries (``dead``: of ``channel``, or of every channel), or every delivery
    not yet sent of ``channel``, a channel no longer in the config (which nothing will send)."""
    if not dead and channel is None:
        print("paper-monitor discard: name a channel that is no longer in the config, or give --dead",
              file=sys.stderr)
        return 2
    if not dead and channel in {c.name for c in settings.channels}:
        print(f'paper-monitor discard: channel "{channel}" is in the config: "discard --dead {channel}" '
              "discards its dead deliveries", file=sys.stderr)
        return 2
    with opened_store(settings) as store:
        count = store.discard(channel, ("dead",)) if dead else store.discard(channel)
    noun = "delivery" if count == 1 else "deliveries"
    if dead:
        print(f"discarded {count} dead {noun} ({f'channel {channel}' if channel else 'all channels'})")
    else:
        print(f"discarded {count} {noun} of channel {channel}, which is not in the config")
    return 0


def copy_store(settings: Settings, target_url: str) -> int:
    """Copy the store into the empty database at ``target_url``: to move to PostgreSQL (or back),
    or to take a backup while the daemon runs."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    from monitor.store import open_store
    from monitor.store.copy import copy_rows

    with opened_store(settings) as source:
        shown = source.engine.url.render_as_string(hide_password=True)
        target = open_store(target_url)
        try:
            there = target.engine.url.render_as_string(hide_password=True)
            if same_database(source.engine.url, target.engine.url):
                print(f"paper-monitor copy-store: {there} is the store itself", file=sys.stderr)
                return 2
            target.hold("copy-store")  # no daemon may work with the target meanwhile
            holder = source.holder()
            if holder:
                print(f"paper-monitor copy-store: a daemon is at work on {shown} ({holder}): the copy is "
                      "the store as it is now, without what the daemon does next; to move to the copy, "
                      "stop the daemon first", file=sys.stderr)
            bar = tqdm(unit=" rows", file=sys.stderr, disable=not sys.stderr.isatty(), delay=1.0)
            try:
                def counted(counts: dict[str, int]) -> None:
                    bar.total = sum(counts.values())
                counts = copy_rows(source, target, progress=bar.update, counted=counted)
            finally:
                bar.close()
        finally:
            target.close()
    print(f"copied {counts['papers']:,} papers, {counts['matches']:,} matches, {counts['deliveries']:,} "
          f"deliveries and the state of {counts['sources']:,} source(s) from {shown} to {there}")
    return 0


def same_database(a: URL, b: URL) -> bool:
    """Whether two database URLs name one database (SQLite: the same file)."""
    from monitor.store.base import sqlite_file

    file_a, file_b = sqlite_file(a), sqlite_file(b)
    if file_a is not None and file_b is not None:
        return file_a.resolve() == file_b.resolve()
    keep = ("drivername", "host", "port", "database")
    return {k: getattr(a, k) for k in keep} == {k: getattr(b, k) for k in keep} and a.host is not None
