"""Source health: backoff after failures, Retry-After, recovery, staleness after 3 intervals."""

from __future__ import annotations

from monitor.config import SourceConfig
from monitor.health import SourceHealth, StoreHealth

HF = SourceConfig(name="hf", url="https://huggingface.co/api/daily_papers", every=60.0)


def test_failures_back_off_exponentially_capped_at_four_intervals_and_a_success_resets() -> None:
    health = SourceHealth([HF], now=0.0)
    times = (0.0, 60.0, 180.0, 420.0, 660.0)
    waits = [health.record("hf", ok=False, status=500, error="HTTP 500", now=t) for t in times]
    assert waits == [60.0, 120.0, 240.0, 240.0, 240.0]
    assert not health.due("hf", now=660.0 + 120.0)
    assert health.due("hf", now=660.0 + 240.0)
    assert health.record("hf", ok=True, status=200, now=900.0) == 0.0
    assert health.due("hf", now=900.0)
    assert health.snapshot(now=900.0)["hf"]["failures"] == 0


def test_retry_after_longer_than_the_backoff_is_obeyed() -> None:
    health = SourceHealth([HF], now=0.0)
    assert health.record("hf", ok=False, status=429, error="HTTP 429", retry_after=600.0, now=0.0) == 600.0
    assert not health.due("hf", now=590.0)
    assert health.due("hf", now=600.0)
    # HF's RateLimit on a good answer ("nothing left for 300 s") holds the next poll too.
    health.record("hf", ok=True, status=200, retry_after=300.0, now=1000.0)
    assert not health.due("hf", now=1200.0)


def test_stale_after_three_intervals_without_success_counted_from_the_start() -> None:
    health = SourceHealth([HF], now=0.0)
    assert not health.stale("hf", now=170.0)
    assert health.stale("hf", now=181.0)
    health.record("hf", ok=True, status=200, now=200.0)
    assert not health.stale("hf", now=370.0)
    health.record("hf", ok=False, status=500, error="HTTP 500", now=300.0)
    assert not health.stale("hf", now=370.0)  # one failure is not stale yet
    assert health.stale("hf", now=381.0)
    assert health.snapshot(now=381.0)["hf"] == {"ok": False, "last_success": 200.0, "failures": 1,
                                                "last_status": 500, "last_error": "HTTP 500"}


def test_reconfigure_keeps_the_history_of_sources_that_stay() -> None:
    health = SourceHealth([HF], now=0.0)
    health.record("hf", ok=False, status=500, error="HTTP 500", now=10.0)
    arxiv = SourceConfig(name="arxiv", url="https://rss.arxiv.org/rss/cs.LG", every=3600.0)
    health.reconfigure([HF, arxiv], now=20.0)
    snapshot = health.snapshot(now=20.0)
    assert snapshot["hf"]["failures"] == 1 and snapshot["arxiv"]["failures"] == 0
    health.reconfigure([arxiv], now=30.0)
    assert set(health.snapshot(now=30.0)) == {"arxiv"}


def test_a_poll_that_failed_on_the_store_is_no_failure_of_the_source_nor_a_step_to_staleness() -> None:
    health = SourceHealth([HF], now=0.0)
    health.record("hf", ok=True, status=200, now=0.0)
    waits = [health.record_store_failure("hf", status=200, now=t) for t in (60.0, 120.0, 180.0, 240.0)]
    assert waits == [60.0] * 4  # the regular interval, no backoff
    assert health.due("hf", now=300.0) and not health.stale("hf", now=400.0)
    assert health.snapshot(now=400.0)["hf"] == {"ok": True, "last_success": 0.0, "failures": 0,
                                                "last_status": 200, "last_error": None}
    assert health.stale("hf", now=421.0)  # three intervals after the store's last failure: no news


def test_store_health_tells_reads_and_writes_apart() -> None:
    store = StoreHealth()
    assert store.ok and store.problem() is None
    assert store.record_write("writing: OperationalError: database is locked", 100.0)  # a change
    assert not store.record_write("writing: OperationalError: database is locked", 130.0)  # no change
    assert not store.ok and not store.writes_ok
    assert store.problem() == ("store: writes failing since 1970-01-01 00:01:40 UTC "
                               "(writing: OperationalError: database is locked)")
    store.record("reading outbox statistics: connection refused", 140.0)
    assert store.problem() == ("store: failing since 1970-01-01 00:02:20 UTC "
                               "(reading outbox statistics: connection refused)")
    store.record(None, 150.0)
    assert store.record_write(None, 160.0) and store.ok and store.problem() is None
