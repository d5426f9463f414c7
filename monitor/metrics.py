"""Prometheus metrics for /metrics, on a registry of their own (never the process-global one).

The daemon fills them from the reports the stages return (a poll's report, the dispatcher's
report, outbox counts), so the stages themselves know nothing of metrics.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
_PREFIX = "paper_monitor"
# The first this many rules of the config have a matches series each; the others' matches are
# summed under OTHER_RULES, so that 100,000 rules do not make 100,000 series.
RULE_SERIES = 1_000
OTHER_RULES = "(other rules)"


class PollOutcome(Protocol):
    """The parts of a poll's report the metrics read."""

    @property
    def source(self) -> str: ...
    @property
    def papers(self) -> int: ...
    @property
    def new(self) -> int: ...
    @property
    def changed(self) -> int: ...
    @property
    def matched_rules(self) -> Mapping[str, int]: ...
    @property
    def duration(self) -> float: ...


class MatchesByRule(Collector):
    """``paper_monitor_matches{rule}``, made at each scrape from the counts and the config's rules
    of that moment: a series for each of the first ``RULE_SERIES`` rules, the rest summed under
    ``OTHER_RULES``; rules no longer in the config drop out."""

    def __init__(self, rules: Callable[[], Sequence[str]]) -> None:
        self._rules = rules
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def seed(self, by_rule: Mapping[str, int]) -> None:
        with self._lock:
            self._counts = dict(by_rule)

    def add(self, by_rule: Mapping[str, int]) -> None:
        with self._lock:
            for rule, n in by_rule.items():
                self._counts[rule] = self._counts.get(rule, 0) + n

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rules = self._rules()
        with self._lock:
            counts = [self._counts.get(rule, 0) for rule in rules]
        family = GaugeMetricFamily(f"{_PREFIX}_matches", "Matches recorded in the store, by rule",
                                   labels=["rule"])
        for rule, n in zip(rules[:RULE_SERIES], counts, strict=False):
            family.add_metric([rule], n)
        if len(rules) > RULE_SERIES:
            family.add_metric([OTHER_RULES], sum(counts[RULE_SERIES:]))
        yield family


class Metrics:
    """Every metric the daemon exports; ``render()`` is the /metrics body. ``rules`` gives the
    config's rule names (in order) when /metrics is asked for."""

    def __init__(self, rules: Callable[[], Sequence[str]] = tuple) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter(f"{_PREFIX}_polls", "Polls, by source and outcome (ok, not_modified, error)",
                             ["source", "outcome"], registry=r)
        self.poll_errors = Counter(f"{_PREFIX}_poll_errors", "Failed polls, by source and kind of error",
                                   ["source", "kind"], registry=r)
        self.poll_seconds = Histogram(f"{_PREFIX}_poll_duration_seconds", "Time a poll took, by source",
                                      ["source"], registry=r,
                                      buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.papers_seen = Counter(f"{_PREFIX}_papers_seen", "Papers read from fetched pages, by source",
                                   ["source"], registry=r)
        self.papers_new = Counter(f"{_PREFIX}_papers_new", "Papers stored for the first time, by source",
                                  ["source"], registry=r)
        self.papers_changed = Counter(f"{_PREFIX}_papers_changed", "Known papers that changed, by source",
                                      ["source"], registry=r)
        self.matches = MatchesByRule(rules)
        r.register(self.matches)
        self.deliveries = Counter(f"{_PREFIX}_deliveries", "Delivery outcomes, by channel and state",
                                  ["channel", "state"], registry=r)
        self.outbox = Gauge(f"{_PREFIX}_outbox_deliveries", "Deliveries in the outbox, by channel and state",
                            ["channel", "state"], registry=r)
        self.outbox_age = Gauge(f"{_PREFIX}_outbox_oldest_age_seconds",
                                "Age of the oldest undelivered (pending or failed) delivery, by channel",
                                ["channel"], registry=r)
        self.last_success = Gauge(f"{_PREFIX}_source_last_success_timestamp_seconds",
                                  "Unix time of the last successful poll, by source", ["source"], registry=r)
        self.source_up = Gauge(f"{_PREFIX}_source_healthy", "1 when the source is fresh, 0 when stale",
                               ["source"], registry=r)
        self.dispatcher_up = Gauge(f"{_PREFIX}_dispatcher_alive", "1 while the dispatcher keeps running",
                                   registry=r)
        self.active = Gauge(f"{_PREFIX}_active",
                            "1 while this process polls and delivers for the store, 0 while it stands by",
                            registry=r)
        self.active.set(1)
        self.standbys = Gauge(f"{_PREFIX}_standbys",
                              "Daemons standing by (run --standby) heard from in the last minute; "
                              "set by the daemon at work", registry=r)
        self.store_up = Gauge(f"{_PREFIX}_store_reachable",
                              "1 while the store answers the daemon's periodic reads (every 10 s)",
                              registry=r)

    def observe_poll(
        self, report: PollOutcome, *, ok: bool, not_modified: bool, error_kind: str | None, now: float
    ) -> None:
        """Count one poll from its report."""
        outcome = "error" if not ok else ("not_modified" if not_modified else "ok")
        self.polls.labels(report.source, outcome).inc()
        self.poll_seconds.labels(report.source).observe(report.duration)
        if not ok:
            self.poll_errors.labels(report.source, error_kind or "error").inc()
            return
        self.last_success.labels(report.source).set(now)
        self.papers_seen.labels(report.source).inc(report.papers)
        self.papers_new.labels(report.source).inc(report.new)
        self.papers_changed.labels(report.source).inc(report.changed)
        self.matches.add(report.matched_rules)

    def observe_deliveries(self, outcomes: Mapping[tuple[str, str], int]) -> None:
        """Count delivery outcomes: ``{(channel, state): n}`` with state sent, failed, dead."""
        for (channel, state), n in outcomes.items():
            if n:
                self.deliveries.labels(channel, state).inc(n)

    def set_outbox(
        self,
        counts: Iterable[tuple[str, str, int]],
        oldest: Mapping[str, float],
        channels: Iterable[str],
        now: float,
    ) -> None:
        """Replace the outbox gauges: ``(channel, state, count)`` rows, oldest open row per channel."""
        self.outbox.clear()
        self.outbox_age.clear()
        for channel, state, n in counts:
            self.outbox.labels(channel, state).set(n)
        for channel in channels:
            created = oldest.get(channel)
            self.outbox_age.labels(channel).set(max(0.0, now - created) if created else 0.0)

    def set_health(self, sources: Mapping[str, bool], dispatcher_alive: bool, store_ok: bool = True,
                   active: bool = True) -> None:
        """The health gauges; a standby (not ``active``) has no sources' and its dispatcher is its
        tries of the store's lock."""
        self.source_up.clear()
        for name, fresh in sources.items():
            self.source_up.labels(name).set(1 if fresh else 0)
        self.dispatcher_up.set(1 if dispatcher_alive else 0)
        self.store_up.set(1 if store_ok else 0)
        self.active.set(1 if active else 0)

    def seed_last_success(self, source: str, when: float | None) -> None:
        if when is not None:
            self.last_success.labels(source).set(when)

    def forget_source(self, source: str) -> None:
        """A source taken out of the config has no last success to export any more."""
        with contextlib.suppress(KeyError):
            self.last_success.remove(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)
