"""Source health: backoff after failures, Retry-After, recovery, staleness after 3 intervals."""

from __future__ import annotations

from monitor.config import SourceConfig
from monitor.health import SourceHealth

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
