"""``paper-monitor backfill``: fill the store with the papers of past days, so that ``backtest`` has
a history to try rules on from the first day, and a later poll knows what is old.

Two kinds of source keep their past (``monitor.history``): the Hugging Face Daily Papers API and
the arXiv API. Other pages show only the current listing and are skipped.

Backfilled papers are stored as seen on their day and matched, and each match is recorded, but
no alert is queued unless ``--alert`` asks: they are history, not news. Today is left to the
polls, so that today's papers still alert.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.history import (
    RATE_LIMIT_PATIENCE,
    RateLimitStop,
    Run,
    arxiv_pages,
    hf_days,
    history_kind,
    listing_keep,
    listing_query,
    past_source,
)
from monitor.match import compile_rules
from monitor.pipeline import open_fetcher, printable
from monitor.store import open_store


def backfill(settings: Settings, *, since_seconds: float, source: str | None = None, alert: bool = False,
             today: date | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Backfill the days from ``since_seconds`` ago up to yesterday (UTC); 0 if every request
    worked, 1 if some failed (what worked is kept)."""
    chosen = [s for s in settings.sources if source is None or s.name == source]
    if source is not None and not chosen:
        known = ", ".join(s.name for s in settings.sources) or "none configured"
        raise ConfigError(f'--source: no source named "{source}" (sources: {known})')
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=max(1, round(since_seconds / 86_400)))
    last = today - timedelta(days=1)
    index = compile_rules(settings.rules)
    store = open_store(settings.monitor.database)
    ok = True
    try:
        for config in map(past_source, chosen):
            kind = history_kind(config.url)
            if kind is None:
                print(f"{config.name}: skipped: only HF Daily Papers (the API, or the page through it), "
                      "the arXiv API and arXiv listings (through the API) serve past days")
                continue
            with open_fetcher(config, settings.monitor.user_agent) as fetcher:
                run = Run(config, fetcher, store, index.match, alert, today, sleep,
                          patience=RATE_LIMIT_PATIENCE)
                with contextlib.suppress(RateLimitStop):  # the tally says where and why it stopped
                    if kind == "hf-api":
                        hf_days(config, first, last, run.fetch)
                    elif kind == "arxiv-api":
                        arxiv_pages(config.url, config.name, first, last, run.fetch, sleep)
                    else:
                        start = datetime.combine(first, datetime.min.time(), UTC)
                        end = datetime.combine(last, datetime.max.time(), UTC)
                        arxiv_pages(listing_query(config.url, start, end), config.name, first, last,
                                    run.fetch, sleep, keep=listing_keep(config))
            print(printable(run.tally.line(alert)))
            for failure in run.tally.failures:
                print(f"  failed: {printable(failure)}")
            ok = ok and not run.tally.failures
    finally:
        store.close()
    return 0 if ok else 1
