"""The outbox's SQL: claiming due deliveries as batches, marking them, and the operator's counts.

``DeliveryQueries`` is a base of the SQL store (``Transactions`` on its ``engine``); every method is one or
two short transactions, so it is safe with several dispatcher threads, or processes, at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from monitor.models import Paper
from monitor.store.base import Transactions, paper_from_row
from monitor.store.schema import deliveries, matches, papers

_OPEN = ("pending", "failed")  # states a dispatcher may claim
_UNSENT = ("pending", "sending", "failed", "dead")  # few rows, found by ix_deliveries_state


@dataclass(frozen=True)
class Head:
    """The oldest open row of a channel's queue: it decides what is sent next, and when."""

    id: int
    rule: str
    batch_key: str | None
    state: str
    next_attempt_at: float
    created_at: float


@dataclass(frozen=True)
class Claimed:
    """One claimed delivery with what a channel needs to render it."""

    id: int
    rule: str
    paper: Paper
    reasons: list[str]
    attempts: int
    created_at: float
    failing_since: float | None = None  # when its tries began to fail, if they have
    posted: bool = False  # its message reached the channel at an earlier try (``mark_posted``)


@dataclass(frozen=True)
class ChannelCounts:
    """What ``paper-monitor status`` shows for one channel."""

    channel: str
    pending: int = 0
    sending: int = 0
    failed: int = 0
    dead: int = 0
    sent_today: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class OutboxStats:
    """Rows not (yet) sent by (channel, state, count), and the oldest open row's creation time per
    channel."""

    counts: list[tuple[str, str, int]]
    oldest: dict[str, float]


_PAPER_COLS = [
    papers.c.key, papers.c.arxiv_id, papers.c.title, papers.c.abstract, papers.c.authors,
    papers.c.authors_count, papers.c.organization, papers.c.organization_id, papers.c.published,
    papers.c.upvotes, papers.c.url, papers.c.source,
]


class DeliveryQueries(Transactions):
    """Outbox queries over ``deliveries`` (see monitor/store/schema.py for the states)."""

    def queue_head(self, channel: str) -> Head | None:
        """The oldest pending or failed row of ``channel``, due or not."""
        d = deliveries.c
        # The oldest row of each open state (one seek of ix_deliveries_queue each), then the older of
        # the two: "state IN (...) ORDER BY id" sorted every open row of the channel.
        found: list[Any] = []
        with self.read("reading a queue head") as conn:
            for state in _OPEN:
                query = (
                    sa.select(d.id, d.rule, d.batch_key, d.state, d.next_attempt_at, d.created_at)
                    .where(d.channel == channel, d.state == state)
                    .order_by(d.id)
                    .limit(1)
                )
                found += conn.execute(query).all()
        return Head(*min(found, key=lambda row: row.id)) if found else None

    def queue_heads(self) -> dict[str, Head]:
        """Every channel's queue head (``queue_head``) at once, by channel, for the channels with
        an open row: one statement, whatever the number of channels, and one seek per channel with
        open rows, whatever the backlog (the dispatcher's turn asks this, not each channel's head)."""
        out: dict[str, Head] = {}
        with self.read("reading the queue heads") as conn:
            for row in conn.execute(_HEADS):
                if row.channel not in out or row.id < out[row.channel].id:
                    out[row.channel] = Head(row.id, row.rule, row.batch_key, row.state, row.next_attempt_at,
                                            row.created_at)
        return out

    def claim_batch(
        self, channel: str, now: float, *, head: Head, limit: int, created_before: float | None = None,
        key: str | None = None,
    ) -> tuple[str, list[Claimed]]:
        """Claim the batch ``head`` starts: its earlier batch if it has one, else up to ``limit``
        due rows without a batch of its rule (of every rule when ``created_before`` is given: a
        digest), under ``key`` (default: a new one). Returns the batch key and the rows this call
        moved to "sending" ([] if another dispatcher was first), in one transaction. The key is
        persisted, so a retry carries the same key.
        """
        d, m = deliveries.c, matches.c
        due = sa.and_(d.channel == channel, d.state.in_(_OPEN), d.next_attempt_at <= now)
        claim = {"state": "sending", "claimed_at": now, "attempts": d.attempts + 1}
        if head.batch_key is not None:
            key = head.batch_key
            # Its rows by ix_deliveries_batch; the update keeps those still due (with the state
            # here too, SQLite chose to read every open row of the channel instead).
            pick = sa.select(d.id).where(d.batch_key == key)
            values: dict[str, Any] = claim
        else:
            key = key or uuid.uuid4().hex
            pick = sa.select(d.id).where(due, d.batch_key.is_(None))
            if created_before is None:
                # The rule's oldest rows, in the order of ix_deliveries_rule: those of one rule only,
                # however many other rules' rows wait (a row without a batch key is pending: a
                # claim gives every row it moves one). In id order, with state IN (...), the
                # database read and sorted every due row of the channel.
                pick = (pick.where(d.rule == head.rule, d.state == "pending")
                        .order_by(d.created_at, d.id))
            else:
                pick = pick.where(d.created_at < created_before).order_by(d.id)
            pick = pick.limit(limit)
            values = {"batch_key": key, **claim}
        # PostgreSQL: rows another dispatcher is claiming right now are passed over, not waited
        # for (SQLite renders no FOR UPDATE: its writers are serialized by BEGIN IMMEDIATE).
        pick = pick.with_for_update(skip_locked=True)
        query = (
            sa.select(d.id, d.rule, d.attempts, d.created_at, d.failing_since, d.posted_at, m.reasons,
                      *_PAPER_COLS)
            .select_from(deliveries.join(matches, d.match_id == m.id).join(papers, d.paper_id == papers.c.id))
            .where(d.batch_key == key, d.state == "sending")
            .order_by(d.id)
        )
        with self._write("claiming a batch") as conn:
            # The ids first, then the update of those still due, in one transaction: two
            # dispatchers cannot both claim a row (the loser updates none; on PostgreSQL the rows
            # picked are locked). A subquery in the update let SQLite read the whole queue for it.
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return key, []
            stmt = sa.update(deliveries).where(due, d.id.in_(ids)).values(**values)
            if conn.execute(stmt).rowcount == 0:
                return key, []
            rows = conn.execute(query).all()  # read before the claim commits: both happen, or neither
        return key, [
            Claimed(r.id, r.rule, paper_from_row(r), list(r.reasons or []), r.attempts, r.created_at,
                    r.failing_since, r.posted_at is not None)
            for r in rows
        ]

    def mark_sent(self, key: str, now: float) -> int:
        """The channel confirmed batch ``key``."""
        return self._finish(key, state="sent", sent_at=now, last_error=None)

    def mark_posted(self, key: str, ids: Sequence[int], now: float) -> int:
        """The channel confirmed the message carrying the rows ``ids`` of batch ``key``, and the
        batch goes on (a Slack batch sent as several messages): every later try of the batch skips
        them, in this process or the next. Whatever the rows' state: a process that lost the lock
        mid-batch still tells the new holder what reached the channel."""
        d = deliveries.c
        stmt = (sa.update(deliveries).where(d.batch_key == key, d.id.in_(list(ids)), d.posted_at.is_(None))
                .values(posted_at=now))
        with self._write("recording a message sent") as conn:
            return int(conn.execute(stmt).rowcount)

    def mark_failed(self, key: str, error: str, retry_at: float, now: float, not_failing: float = 0.0) -> int:
        """Batch ``key`` failed transiently at ``now``: retry it, as one batch again, from ``retry_at``.
        ``not_failing``: seconds since its last try that do not count as failing (its failing_since
        moves on by as much)."""
        since = sa.func.coalesce(deliveries.c.failing_since + not_failing, now)
        return self._finish(key, state="failed", last_error=error[:2000], next_attempt_at=retry_at,
                            failing_since=since)

    def mark_dead(self, key: str, error: str) -> int:
        """Batch ``key`` will never be delivered (until an operator's ``retry-dead``); its rows whose
        message did reach the channel (``mark_posted``) are sent, not dead."""
        return self._finish(key, state="dead", last_error=error[:2000])

    def _finish(self, key: str, **values: Any) -> int:
        d = deliveries.c
        sending = sa.and_(d.batch_key == key, d.state == "sending")
        with self._write("marking a batch") as conn:
            if values["state"] == "dead":
                conn.execute(sa.update(deliveries).where(sending, d.posted_at.is_not(None))
                             .values(state="sent", sent_at=d.posted_at, last_error=None))
            return int(conn.execute(sa.update(deliveries).where(sending).values(**values)).rowcount)

    def recover_sending(
        self, now: float, channels: Iterable[str] | None = None, key: str | None = None,
        claimed_at: float | None = None, claimed_before: float | None = None,
    ) -> int:
        """Rows a crash left in "sending" (of ``channels``; claimed before ``claimed_before``; or of
        batch ``key`` as one claim at ``claimed_at`` left them, its answer lost) go back to pending,
        keeping their batch key."""
        d = deliveries.c
        stmt = sa.update(deliveries).where(d.state == "sending")
        if claimed_before is not None:
            stmt = stmt.where(d.claimed_at < claimed_before)
        if channels is not None:
            stmt = stmt.where(d.channel.in_(list(channels)))
        if key is not None:
            stmt = stmt.where(d.batch_key == key)
        if claimed_at is not None:
            stmt = stmt.where(d.claimed_at == claimed_at)
        with self._write("recovering interrupted sends") as conn:
            return int(conn.execute(stmt.values(state="pending", next_attempt_at=now)).rowcount)

    def prune_sent(self, before: float, keep: Mapping[str, int] | None = None, chunk: int = 5_000) -> int:
        """Delete the deliveries sent before ``before``, but each channel in ``keep`` keeps the rows
        of its newest ``keep[channel]`` papers (a feed's items, as ``feed_rows`` finds them). Rows
        not sent and the matches stay, so nothing is alerted again. A transaction per ``chunk``
        rows, so that a long history does not hold the database for long. Returns how many went."""
        d = deliveries.c
        keep = keep or {}
        deleted = 0
        for channel in self._channels():
            old = sa.and_(d.channel == channel, d.sent_at < before, d.state == "sent")  # ix_deliveries_sent
            if keep.get(channel):
                items = self.feed_rows(channel, keep[channel])
                placed: dict[str, tuple[float, int]] = {}  # each paper's newest row (items come newest first)
                for id_, _, paper, _, at in items:
                    placed.setdefault(paper.key, (at, id_))
                if len(placed) < keep[channel]:
                    continue  # no more papers sent than the feed shows
                created_at, last_id = min(placed.values())
                old = sa.and_(old, sa.or_(d.created_at < created_at,
                                          sa.and_(d.created_at == created_at, d.id < last_id)))
                # and the rows of the feed's papers older than that (a rule that matched one before)
                behind = [id_ for id_, _, _, _, at in items if (at, id_) < (created_at, last_id)]
                if behind:
                    old = sa.and_(old, d.id.not_in(behind))
            while True:
                with self._write("deleting old sent deliveries") as conn:
                    gone = int(conn.execute(
                        sa.delete(deliveries).where(d.id.in_(sa.select(d.id).where(old).limit(chunk)))
                    ).rowcount)
                deleted += gone
                if gone < chunk:
                    break
        return deleted

    def _channels(self) -> list[str]:
        """Every channel with deliveries: one index seek each, however many rows."""
        d = deliveries.c
        found: list[str] = []
        with self.read("listing channels") as conn:
            channel = conn.execute(sa.select(sa.func.min(d.channel))).scalar()
            while channel is not None:
                found.append(channel)
                channel = conn.execute(sa.select(sa.func.min(d.channel)).where(d.channel > channel)).scalar()
        return found

    def requeue_dead(self, now: float, channel: str | None = None) -> int:
        """Dead rows (of ``channel``, or all) become pending again, as fresh batches."""
        d = deliveries.c
        stmt = sa.update(deliveries).where(d.state == "dead")
        if channel is not None:
            stmt = stmt.where(d.channel == channel)
        values = {"state": "pending", "attempts": 0, "next_attempt_at": now, "batch_key": None,
                  "failing_since": None}
        with self._write("requeueing dead deliveries") as conn:
            return int(conn.execute(stmt.values(**values)).rowcount)

    def has_sent(self, channel: str, rule: str) -> bool:
        """Whether ``rule`` has a delivery sent to ``channel`` (one range of ix_deliveries_rule)."""
        d = deliveries.c
        found = sa.select(d.id).where(d.channel == channel, d.rule == rule, d.state == "sent").limit(1)
        with self.read("looking for a rule's deliveries") as conn:
            return conn.execute(found).first() is not None

    def discard(self, channel: str | None, states: Iterable[str] = _UNSENT) -> int:
        """Delete the rows in ``states`` (of ``channel``, or of every channel); how many went."""
        d = deliveries.c
        stmt = sa.delete(deliveries).where(d.state.in_(tuple(states)))
        if channel is not None:
            stmt = stmt.where(d.channel == channel)
        with self._write("discarding deliveries") as conn:
            return int(conn.execute(stmt).rowcount)

    def delivery_counts(self, since: float, channels: Iterable[str] = ()) -> dict[str, ChannelCounts]:
        """Per channel (those of ``channels``, and any with rows not sent): rows in each state but
        sent, rows sent since ``since``, the last dead row's error. Reads the open rows and those
        sent since ``since``, never the whole history."""
        d = deliveries.c
        by_state = (sa.select(d.channel, d.state, sa.func.count())
                    .where(d.state.in_(_UNSENT)).group_by(d.channel, d.state))
        last_dead = sa.select(d.channel, d.last_error).where(d.state == "dead").order_by(d.id)
        out: dict[str, dict[str, Any]] = {name: {} for name in channels}
        with self.read("counting deliveries") as conn:
            for channel, state, count in conn.execute(by_state):
                out.setdefault(channel, {})[state] = int(count)
            for channel in out:  # one range of ix_deliveries_sent each
                sent = sa.select(sa.func.count()).where(d.channel == channel, d.sent_at >= since)
                out[channel]["sent_today"] = int(conn.execute(sent).scalar() or 0)
            for channel, error in conn.execute(last_dead):
                out.setdefault(channel, {})["last_error"] = error
        fields = {"pending", "sending", "failed", "dead", "sent_today", "last_error"}
        return {
            name: ChannelCounts(name, **{k: v for k, v in values.items() if k in fields})
            for name, values in out.items()
        }

    def feed_rows(
        self, channel: str, limit: int, include: Sequence[int] = (), rule: str | None = None
    ) -> list[tuple[int, str, Paper, list[str], float]]:
        """The deliveries of the newest ``limit`` papers of ``channel`` (of ``rule`` alone, if given)
        that were sent, or are in ``include``: ``(delivery id, rule, paper, reasons, matched at)``,
        newest first. A paper sent for several rules has a row per rule, every one however old, and
        its newest row places it.
        """
        d, m = deliveries.c, matches.c
        rows_of = (
            sa.select(d.id, d.rule, d.paper_id, m.reasons, d.created_at, *_PAPER_COLS)
            .select_from(deliveries.join(matches, d.match_id == m.id).join(papers, d.paper_id == papers.c.id))
            .where(d.channel == channel)
        )
        if rule is not None:
            rows_of = rows_of.where(d.rule == rule)
        newest = (rows_of.where(d.state == "sent")  # the newest end of ix_deliveries_state (or _rule)
                  .order_by(d.created_at.desc(), d.id.desc()))
        # Sent rows are read newest first, a page at a time, until ``limit`` papers are found and
        # every row as new as the last of them (one poll records a paper's rules at one time): a
        # limit on rows alone came short of ``limit`` papers when papers matched several rules.
        page = max(3 * limit, 30)
        with self.read("reading feed rows") as conn:
            unsent = rows_of.where(d.state != "sent", d.id.in_(list(include)))
            rows = list(conn.execute(unsent)) if include else []
            sent: list[Any] = []
            read_all = False
            while limit > 0:
                older = newest
                if sent:
                    last = sent[-1]
                    older = newest.where(sa.or_(d.created_at < last.created_at,
                                                sa.and_(d.created_at == last.created_at, d.id < last.id)))
                found = list(conn.execute(older.limit(page)))
                sent += found
                read_all = len(found) < page
                edge = _newest_papers([*rows, *sent], limit, sent[-1])[1] if found else None
                if read_all or (edge is not None and sent[-1].created_at < edge):
                    break
                page *= 2
            rows += sent
            kept = _newest_papers(rows, limit)[0]
            if kept and not read_all and rule is None:
                # The papers' rows of other rules older than those read (a rule that matched a
                # paper days before, newer papers between): their ids from ix_deliveries_paper
                # alone, then the few not read yet. (No state in the first look: an index led by
                # state would read the channel's whole history.)
                seen = {row.id for row in rows}
                ids = sa.select(d.id).where(d.channel == channel, d.paper_id.in_(sorted(kept)))
                missing = [id_ for id_ in conn.execute(ids).scalars() if id_ not in seen]
                for start in range(0, len(missing), 500):
                    part = missing[start : start + 500]
                    rows += conn.execute(rows_of.where(d.id.in_(part), d.state == "sent")).all()
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [(r.id, r.rule, paper_from_row(r), list(r.reasons or []), r.created_at)
                for r in rows if r.paper_id in kept]

    def feed_versions(self, channels: Sequence[str]) -> dict[str, tuple[float, int]]:
        """Per channel with sent rows, (the last time rows were sent, how many were sent then): a
        feed changes exactly when this does, since sent rows stay sent. Two index lookups each."""
        d = deliveries.c
        out: dict[str, tuple[float, int]] = {}
        with self.read("reading feed versions") as conn:
            for channel in channels:
                last = conn.execute(sa.select(sa.func.max(d.sent_at)).where(d.channel == channel)).scalar()
                if last is not None:
                    then = sa.select(sa.func.count()).where(d.channel == channel, d.sent_at == last)
                    out[channel] = (float(last), int(conn.execute(then).scalar() or 0))
        return out

    def outbox_stats(self) -> OutboxStats:
        """The metrics' view of the outbox: rows not sent by (channel, state), the oldest open row
        per channel. Reads those rows only (ix_deliveries_state), however long the history."""
        d = deliveries.c
        with self.read("reading outbox statistics") as conn:
            counts = [(r[0], r[1], int(r[2])) for r in conn.execute(
                sa.select(d.channel, d.state, sa.func.count())
                .where(d.state.in_(_UNSENT)).group_by(d.channel, d.state))]
            oldest = {r[0]: r[1] for r in conn.execute(
                sa.select(d.channel, sa.func.min(d.created_at))
                .where(d.state.in_(("pending", "failed", "sending"))).group_by(d.channel))}
        return OutboxStats(counts, oldest)

    def matches_by_rule(self) -> dict[str, int]:
        """Matches recorded, by rule: the whole table, so read once (the daemon counts on from there)."""
        m = matches.c
        with self.read("counting matches") as conn:
            counted = conn.execute(sa.select(m.rule, sa.func.count()).group_by(m.rule))
            return {rule: int(n) for rule, n in counted}


def _heads_query() -> sa.Select[Any]:
    """``queue_heads``' statement, built once (its aliases cost more to build than it takes to run)."""
    d = deliveries.c
    heads: list[sa.Select[Any]] = []
    for state in _OPEN:
        # The channels with a row in this state, one seek of ix_deliveries_state each (a loose index
        # scan: GROUP BY channel reads every such row), then each one's oldest such row, one seek of
        # ix_deliveries_queue each.
        x, y, z = deliveries.alias("x"), deliveries.alias("y"), deliveries.alias("z")
        first = sa.select(sa.select(sa.func.min(x.c.channel)).where(x.c.state == state)
                          .scalar_subquery().label("channel"))
        found = first.cte(f"open_{state}", recursive=True)
        following = (sa.select(sa.func.min(y.c.channel))
                     .where(y.c.state == state, y.c.channel > found.c.channel).scalar_subquery())
        found = found.union_all(sa.select(following).where(found.c.channel.is_not(None)))
        oldest = (sa.select(sa.func.min(z.c.id)).where(z.c.channel == found.c.channel, z.c.state == state)
                  .scalar_subquery())
        heads.append(sa.select(oldest).where(found.c.channel.is_not(None)))
    return (sa.select(d.channel, d.id, d.rule, d.batch_key, d.state, d.next_attempt_at, d.created_at)
            .where(d.id.in_(sa.union_all(*heads))))


_HEADS = _heads_query()


def _newest_papers(rows: Sequence[Any], limit: int, oldest: Any = None) -> tuple[set[int], float | None]:
    """The ids of the newest ``limit`` papers among feed ``rows`` (of those no older than the row
    ``oldest``, if given: rows past it are not all read yet), and when the last of them was
    recorded (``None`` while there are fewer)."""
    bound = (oldest.created_at, oldest.id) if oldest is not None else None
    found: set[int] = set()
    for row in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True):
        if bound is not None and (row.created_at, row.id) < bound:
            break
        found.add(row.paper_id)
        if len(found) >= limit:
            return found, float(row.created_at)
    return found, None
