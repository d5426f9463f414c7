"""Fetching against a real HTTP server on loopback: retries, waits, validators, caps, errors."""

from __future__ import annotations

import gzip
import itertools
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from monitor.errors import FetchError
from monitor.fetch import (
    DEFAULT_USER_AGENT,
    PACE,
    Fetcher,
    HostPace,
    RetryPolicy,
    fetch_once,
    parse_ratelimit,
    parse_retry_after,
)
from tests.helpers import ReplayServer, Reply, free_port

FAST = RetryPolicy(attempts=3, max_total=5.0, base=0.01, cap=0.05)


class Waits:
    """Records the waits the policy asks for, without spending them."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def fetcher(waits: Waits | None = None, policy: RetryPolicy = FAST, **kw: object) -> Fetcher:
    return Fetcher(policy=policy, sleep=waits or Waits(), **kw)  # type: ignore[arg-type]


def test_ok_returns_body_validators_and_names_the_project(replay: ReplayServer) -> None:
    stamp = "Tue, 09 Jun 2026 10:00:00 GMT"
    replay.route("/p", Reply(b"hello", headers={"ETag": '"v1"', "Last-Modified": stamp}))
    with fetcher() as f:
        result = f.get(replay.url("/p"))
    assert (result.status, result.content, result.etag) == (200, b"hello", '"v1"')
    assert result.last_modified == "Tue, 09 Jun 2026 10:00:00 GMT"
    agent = replay.requests[0].headers["User-Agent"]
    assert agent == DEFAULT_USER_AGENT and agent.startswith("paper-monitor/")


def test_custom_user_agent(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"x"))
    with Fetcher("my-lab-bot/1.0 (ops@example.org)") as f:
        f.get(replay.url("/p"))
    assert replay.requests[0].headers["User-Agent"] == "my-lab-bot/1.0 (ops@example.org)"


def test_conditional_get_sends_validators_and_304_has_no_content(replay: ReplayServer) -> None:
    replay.route("/p", Reply(status=304, headers={"ETag": '"v1"'}))
    with fetcher() as f:
        result = f.get(replay.url("/p"), etag='"v1"', last_modified="Tue, 09 Jun 2026 10:00:00 GMT")
    assert (result.status, result.content) == (304, None)
    sent = replay.requests[0].headers
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Tue, 09 Jun 2026 10:00:00 GMT"


def test_5xx_is_retried_then_succeeds(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"", 500), Reply(b"", 503), Reply(b"ok"))
    waits = Waits()
    with fetcher(waits) as f:
        result = f.get(replay.url("/p"))
    assert (result.content, result.attempts) == (b"ok", 3)
    assert replay.hits("/p") == 3
    assert len(waits.seconds) == 2 and waits.seconds[1] >= 0.02  # exponential: base*2 on the second wait


def test_5xx_forever_gives_up_with_the_status(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"down", 500))
    with fetcher() as f, pytest.raises(FetchError) as err:
        f.get(replay.url("/p"))
    assert err.value.status == 500
    assert replay.hits("/p") == FAST.attempts
    assert "HTTP 500" in str(err.value) and "gave up after 3 attempts" in str(err.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_other_4xx_is_never_retried(replay: ReplayServer, status: int) -> None:
    replay.route("/p", Reply(b"no", status))
    with fetcher() as f, pytest.raises(FetchError) as err:
        f.get(replay.url("/p"))
    assert err.value.status == status
    assert replay.hits("/p") == 1


def test_a_redirect_without_a_location_is_no_page(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"moved", 301))
    with fetcher() as f, pytest.raises(FetchError) as err:
        f.get(replay.url("/p"))
    assert err.value.status == 301 and "HTTP 301 without a Location" in str(err.value)
    assert replay.hits("/p") == 1


def test_429_waits_as_long_as_retry_after_says(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"slow down", 429, headers={"Retry-After": "2"}), Reply(b"ok"))
    waits = Waits()
    with fetcher(waits) as f:
        result = f.get(replay.url("/p"))
    assert result.content == b"ok" and replay.hits("/p") == 2
    assert waits.seconds and waits.seconds[0] >= 2.0


def test_429_with_hf_ratelimit_header_waits_until_reset(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"", 429, headers={"RateLimit": '"api";r=0;t=3'}), Reply(b"ok"))
    waits = Waits()
    with fetcher(waits) as f:
        assert f.get(replay.url("/p")).content == b"ok"
    assert waits.seconds[0] >= 3.0


def test_429_asking_longer_than_the_budget_gives_up_at_once(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"", 429, headers={"Retry-After": "600"}))
    waits = Waits()
    with fetcher(waits) as f, pytest.raises(FetchError) as err:
        f.get(replay.url("/p"))
    assert (err.value.status, err.value.retry_after) == (429, 600.0)
    assert replay.hits("/p") == 1 and waits.seconds == []


def test_total_time_is_bounded(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"", 502))
    policy = RetryPolicy(attempts=1000, max_total=0.3, base=0.05, cap=0.1)
    started = time.monotonic()
    with Fetcher(policy=policy) as f, pytest.raises(FetchError) as err:
        f.get(replay.url("/p"))
    assert time.monotonic() - started < 5.0  # a bound on the policy, with slack for slow machines
    assert err.value.status == 502
    assert 2 <= replay.hits("/p") < 20


def test_connection_refused_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}/p"
    waits = Waits()
    with fetcher(waits) as f, pytest.raises(FetchError) as err:
        f.get(url)
    assert "cannot connect" in str(err.value) and err.value.status is None
    assert len(waits.seconds) == FAST.attempts - 1
    assert isinstance(err.value.__cause__, Exception)  # the httpx error is kept as the cause


def test_slow_server_times_out_and_is_retried(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"late", delay=1.0))
    with fetcher() as f, pytest.raises(FetchError) as err:
        f.get(replay.url("/p"), timeout=0.2)
    assert "timed out" in str(err.value)
    assert replay.hits("/p") == FAST.attempts


def test_body_over_the_cap_is_refused(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"x" * 5000))
    with fetcher(max_bytes=1000) as f, pytest.raises(FetchError, match="cap"):
        f.get(replay.url("/p"))
    assert replay.hits("/p") == 1


def test_compressed_body_over_the_cap_is_cut_off_while_streaming(replay: ReplayServer) -> None:
    bomb = gzip.compress(b"\0" * 2_000_000)  # a few KB on the wire, 2 MB decoded
    replay.route("/p", Reply(bomb, headers={"Content-Encoding": "gzip"}))
    with fetcher(max_bytes=100_000) as f, pytest.raises(FetchError, match="cap"):
        f.get(replay.url("/p"))


def test_gzip_body_is_decoded(replay: ReplayServer) -> None:
    replay.route("/p", Reply(gzip.compress(b'[{"a": 1}]'), headers={"Content-Encoding": "gzip"}))
    with fetcher() as f:
        assert f.get(replay.url("/p")).content == b'[{"a": 1}]'


def test_ratelimit_exhausted_on_success_is_a_hint(replay: ReplayServer) -> None:
    replay.route("/p", Reply(b"[]", headers={"RateLimit": '"api";r=0;t=42'}))
    with fetcher() as f:
        assert f.get(replay.url("/p")).retry_after_hint == 42.0


def test_fetch_once(replay: ReplayServer) -> None:
    replay.route("/page", Reply(b"body"))
    assert fetch_once(replay.url("/page")) == b"body"
    with pytest.raises(FetchError):
        fetch_once("not a url")


def test_parse_retry_after() -> None:
    now = datetime(2026, 6, 12, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    later = format_datetime(datetime(2026, 6, 12, 10, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now) == 30.0
    assert parse_retry_after("Fri, 12 Jun 2026 09:00:00 GMT", now) == 0.0  # in the past: no wait
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None and parse_retry_after("inf", now) is None
    assert parse_retry_after(None, now) is None


def test_parse_ratelimit() -> None:
    assert parse_ratelimit('"api";r=0;t=120') == (0, 120.0)
    assert parse_ratelimit('"pages";r=57;t=13') == (57, 13.0)
    assert parse_ratelimit("garbage") == (None, None)


# -- hosts that ask for one request at a time (the arXiv API) --------------------------------------


def fetch_together(urls: list[str], pace: HostPace, sleep: object = time.sleep) -> list[object]:
    """GET each URL from its own client and thread, all at once; each result or FetchError."""
    results: list[object] = [None] * len(urls)

    def get(i: int, url: str) -> None:
        with Fetcher(policy=FAST, sleep=sleep, pace=pace) as client:  # type: ignore[arg-type]
            try:
                results[i] = client.get(url)
            except FetchError as exc:
                results[i] = exc

    threads = [threading.Thread(target=get, args=(i, url)) for i, url in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def arrivals(replay: ReplayServer) -> list[float]:
    return sorted(seen.at for seen in replay.requests)


def test_a_paced_host_gets_one_request_at_a_time_from_all_clients_spaced_out(replay: ReplayServer) -> None:
    assert PACE.intervals == {"export.arxiv.org": 3.0}  # every client's default: the arXiv API's terms
    replay.route("/api/query", Reply(b"<feed/>", delay=0.2))
    pace = HostPace({"127.0.0.1": 0.4})
    results = fetch_together([replay.url("/api/query")] * 3, pace)
    assert all(getattr(r, "status", None) == 200 for r in results), results
    # Each request starts 0.4 s after the one before ended (which took 0.2 s): none overlap.
    gaps = [b - a for a, b in itertools.pairwise(arrivals(replay))]
    assert len(gaps) == 2 and min(gaps) >= 0.59, gaps


def test_a_retry_to_a_paced_host_waits_its_turn_too(replay: ReplayServer) -> None:
    replay.route("/api/query", Reply(status=503), Reply(b"<feed/>"))
    with Fetcher(policy=FAST, pace=HostPace({"127.0.0.1": 0.5})) as client:
        assert client.get(replay.url("/api/query")).status == 200
    first, second = arrivals(replay)
    assert second - first >= 0.5


def test_other_hosts_are_not_held_back(replay: ReplayServer) -> None:
    replay.route("/api/daily_papers", Reply(b"[]", delay=0.5))
    other_host = replay.url("/api/daily_papers").replace("127.0.0.1", "localhost")
    fetch_together([other_host] * 3, HostPace({"127.0.0.1": 5.0}))
    times = arrivals(replay)
    assert len(times) == 3 and times[-1] - times[0] < 2.0  # all three at once (paced: 5 s apart)


def test_a_stop_ends_the_wait_for_a_paced_host(replay: ReplayServer) -> None:
    replay.route("/slow", Reply(b"<feed/>", delay=1.5))
    stopping = threading.Event()

    def sleep(seconds: float) -> None:  # as the daemon's: a stop ends any wait with FetchError
        if stopping.wait(seconds):
            raise FetchError("stopped while waiting")

    pace = HostPace({"127.0.0.1": 10.0})
    results: list[object] = []
    first = threading.Thread(
        target=lambda: results.extend(fetch_together([replay.url("/slow")], pace, sleep))
    )
    first.start()
    time.sleep(0.3)  # the first request holds the host's turn
    threading.Timer(0.3, stopping.set).start()
    started = time.monotonic()
    (waiting,) = fetch_together([replay.url("/slow")], pace, sleep)
    assert isinstance(waiting, FetchError) and time.monotonic() - started < 1.0
    first.join(timeout=10)
    assert len(replay.requests) == 1
