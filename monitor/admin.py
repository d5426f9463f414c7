"""The operator's commands: ``test-channel``, ``retry-dead``, ``discard`` and ``copy-store`` (``status``
is ``monitor.status``)."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.engine import URL

from monitor.channels.base import Alert, Batch
from monitor.config import Settings
from monitor.errors import ConfigError, DeliveryError
from monitor.models import Paper
from monitor.store.sql import SqlStore


@contextmanager
def opened_store(settings: Settings) -> Iterator[SqlStore]:
    """The store of the commands that read it (status, why, backtest...): ``existing_store``."""
    from monitor.store import open_store

    store = open_store(existing_store(settings.monitor.database))
    try:
        yield store
    finally:
        store.close()


def existing_store(url: str) -> str:
    """``url``, unless it is a SQLite file that is not there: a ``ConfigError`` that says where it
    was looked for, rather than an empty store made and reported on (beside the daemon's, by a
    command run in another directory; or in place of one removed)."""
    import sqlalchemy as sa

    from monitor.store.base import sqlite_file

    path = sqlite_file(sa.make_url(url))
    if path is None or path.exists():
        return url
    if not path.is_absolute():
        raise ConfigError(f"monitor.database: no store at {path.absolute()} (the path of {url} is taken "
                          "from the working directory): run this where the daemon runs, or give the "
                          "database an absolute path")
    raise ConfigError(f"monitor.database: no store at {path} (the daemon makes it when it first starts)")


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
    from monitor.store import open_store

    with contextlib.closing(open_store(settings.monitor.database)) as store:  # (before any run, too)
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
