"""The one seam every channel implements: ``Channel.send(batch)`` returns only once delivered."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from monitor.models import Paper


@dataclass(frozen=True)
class Alert:
    """One paper in a batch, with why its rule matched and the outbox row it came from."""

    paper: Paper
    reasons: list[str]
    delivery_id: int
    rule: str = ""  # the rule that matched; in a digest batch (rule "digest") it differs per alert
    posted: bool = False  # in a message the channel confirmed at an earlier try of the batch


DIGEST_RULE = "digest"  # the ``Batch.rule`` of a daily digest: its alerts each carry their own rule


@dataclass(frozen=True)
class Batch:
    """The alerts of one rule for one channel, sent as one message (or, too big for one, as several).

    ``key`` is stable across every retry of the same batch (the webhook's Idempotency-Key). A channel
    that sends a batch as several messages calls ``on_posted`` with the delivery ids of each message
    the peer confirmed (before the last), so that a retry, after a restart too, skips it; those
    already confirmed come ``posted``.
    """

    channel: str
    rule: str
    alerts: list[Alert]
    key: str
    on_posted: Callable[[Sequence[int]], None] | None = field(default=None, compare=False, repr=False)


def paper_count(batch: Batch) -> int:
    """How many papers ``batch`` holds: a digest lists a paper under each rule that matched it."""
    return len({alert.paper.key for alert in batch.alerts})


def by_rule(batch: Batch) -> list[tuple[str, list[Alert]]]:
    """The alerts grouped by rule, in order of first appearance (a digest has several rules)."""
    groups: dict[str, list[Alert]] = {}
    for alert in batch.alerts:
        rule = alert.rule if batch.rule == DIGEST_RULE and alert.rule else batch.rule
        groups.setdefault(rule, []).append(alert)
    return list(groups.items())


class Channel(Protocol):
    """A destination for alerts.

    ``send`` returns only after the peer confirmed the batch. It raises ``DeliveryError``:
    ``permanent=True`` when retrying cannot help (bad credentials, unknown recipient), otherwise
    a transient failure to retry later (``retry_after`` seconds, when the peer said so).
    """

    name: str

    def send(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class GroupChannel(Protocol):
    """A channel whose every send does the same whole work (the feed channel renders its whole feed):
    the dispatcher hands it the batches due together. ``send_all`` returns once every one of them is
    delivered, and raises ``DeliveryError`` as ``send`` does when none is."""

    name: str

    def send(self, batch: Batch) -> None: ...

    def send_all(self, batches: Sequence[Batch]) -> None: ...

    def close(self) -> None: ...


class FeedRows(Protocol):
    """What the feed channel reads from the store (``DeliveryQueries.feed_rows``), so channels do
    not import the store stage: ``(delivery id, rule, paper, reasons, matched at)``, newest first."""

    def feed_rows(
        self, channel: str, limit: int, include: Sequence[int] = (), rule: str | None = None
    ) -> list[tuple[int, str, Paper, list[str], float]]: ...
