"""Fetching pages: one httpx client with timeouts, a size cap, conditional GET and a retry policy.

The only polling network code. Transport errors, 5xx and 429 are retried with exponential backoff
and jitter (at least as long as ``Retry-After`` or HF's ``RateLimit: ...;t=<s>`` asks), bounded in
total time; any other 4xx fails at once. Every failure leaves as ``FetchError``. Hosts that ask for
it get one request at a time, spaced out, from all of the process's clients (``PACE``).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import TracebackType

import httpx
import tenacity

from monitor import __version__
from monitor.errors import FetchError
from monitor.redact import redact_url
from monitor.retry_after import parse_retry_after

log = logging.getLogger(__name__)

# No project address to point at: operators add their own contact with `monitor.user_agent`.
DEFAULT_USER_AGENT = f"paper-monitor/{__version__} (self-hosted paper alerts; httpx/{httpx.__version__})"
MAX_BYTES = 20 * 1024 * 1024
_RATELIMIT_T = re.compile(r"(?:^|;)\s*t\s*=\s*(\d+(?:\.\d+)?)")
_RATELIMIT_R = re.compile(r"(?:^|;)\s*r\s*=\s*(\d+)")
# Transport failures worth another try; a bad URL or an unsupported scheme is not one of them.
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class HostPace:
    """One request at a time to each host that asks for it, each starting ``intervals[host]``
    seconds after the one before ended, whichever source's client sends it. Other hosts are not
    held back."""

    def __init__(self, intervals: Mapping[str, float]) -> None:
        self.intervals = dict(intervals)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._free_at: dict[str, float] = {}

    @contextmanager
    def turn(self, host: str, sleep: Callable[[float], None]) -> Iterator[None]:
        """Wait for ``host``'s turn, and hold it while the request runs. ``sleep`` does the
        waiting (a daemon's raises when it stops, which ends the wait)."""
        interval = self.intervals.get(host)
        if not interval:
            yield
            return
        with self._guard:
            lock = self._locks.setdefault(host, threading.Lock())
        while not lock.acquire(timeout=0.25):
            sleep(0.0)  # another request to the host runs: a stop must not wait for it
        try:
            wait = self._free_at.get(host, 0.0) - time.monotonic()
            if wait > 0:
                sleep(wait)
            yield
        finally:
            self._free_at[host] = time.monotonic() + interval
            lock.release()


# The arXiv API allows one request every 3 seconds, on one connection (its terms of use): polls
# of several arXiv API sources, their retries and a backfill queue up behind each other.
PACE = HostPace({"export.arxiv.org": 3.0})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most ``attempts`` tries within ``max_total`` seconds.

    The n-th wait is ``min(cap, base * 2**(n-1))`` plus up to ``base`` of jitter, and never less
    than what the server asked for; a wait that would end past ``max_total`` is not taken.
    """

    attempts: int = 4
    max_total: float = 120.0
    base: float = 1.0
    cap: float = 30.0


@dataclass(frozen=True)
class FetchResult:
    """One answer. ``content`` is ``None`` on 304 Not Modified.

    ``retry_after_hint`` is the server's wish to be left alone for that many seconds (HF's
    ``RateLimit`` header with nothing remaining), for the scheduler to respect.
    """

    url: str
    status: int
    content: bytes | None
    etag: str | None
    last_modified: str | None
    retry_after_hint: float | None = None
    attempts: int = 1


class _RetryableStatus(FetchError):
    """A 5xx or 429 inside the retry loop."""


def parse_ratelimit(value: str | None) -> tuple[int | None, float | None]:
    """``(remaining, seconds to reset)`` from HF's ``RateLimit: "api";r=<n>;t=<s>`` header."""
    if not value:
        return None, None
    remaining = _RATELIMIT_R.search(value)
    reset = _RATELIMIT_T.search(value)
    return (
        int(remaining.group(1)) if remaining else None,
        float(reset.group(1)) if reset else None,
    )


def _server_wait(response: httpx.Response) -> float | None:
    """How long the server asked us to wait, from ``Retry-After`` or ``RateLimit``."""
    asked = parse_retry_after(response.headers.get("Retry-After"))
    if asked is None and response.status_code == 429:
        asked = parse_ratelimit(response.headers.get("RateLimit"))[1]
    return asked


class Fetcher:
    """An HTTP client for polling sources; use as a context manager, or call ``close()``."""

    def __init__(
        self,
        user_agent: str | None = None,
        *,
        policy: RetryPolicy | None = None,
        max_bytes: int = MAX_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        pace: HostPace = PACE,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.pace = pace
        self.max_bytes = max_bytes
        self.sleep = sleep  # how every wait is spent (a daemon's ends at a stop)
        self._client = httpx.Client(
            headers={"User-Agent": user_agent or DEFAULT_USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            timeout=httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=10.0),
            follow_redirects=True,
            max_redirects=5,
            transport=transport,
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        timeout: float = 30.0,
    ) -> FetchResult:
        """GET ``url`` under the retry policy; ``FetchError`` (with the last status) when it gives up."""
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        short = min(10.0, timeout)
        limits = httpx.Timeout(connect=short, read=timeout, write=timeout, pool=short)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, (_RetryableStatus, *_RETRYABLE_TRANSPORT))
            ),
            wait=self._wait,
            stop=self._stop,
            sleep=self.sleep,
            before_sleep=lambda state: log.debug(  # the poll line tells the attempts: one line a poll
                "GET %s: %s; retry %d in %.2fs", redact_url(url), _describe(state), state.attempt_number,
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        started = time.monotonic()
        try:
            result = retrying(self._attempt, url, headers, limits, timeout)
        except _RetryableStatus as exc:
            raise FetchError(
                f"GET {redact_url(url)}: {exc} ({_gave_up(retrying, started)})", status=exc.status,
                retry_after=exc.retry_after,
            ) from exc
        except httpx.HTTPError as exc:
            raise FetchError(
                f"GET {redact_url(url)}: {_transport_reason(exc)} ({_gave_up(retrying, started)})"
            ) from exc
        except httpx.InvalidURL as exc:
            raise FetchError(f"GET {redact_url(url)}: invalid URL: {exc}") from exc
        return replace(result, attempts=_attempts(retrying))

    def _attempt(
        self, url: str, headers: dict[str, str], limits: httpx.Timeout, timeout: float
    ) -> FetchResult:
        with self.pace.turn(httpx.URL(url).host, self.sleep):
            return self._send(url, headers, limits, timeout)

    def _send(self, url: str, headers: dict[str, str], limits: httpx.Timeout, timeout: float) -> FetchResult:
        # A read timeout bounds each read, not the whole body: a server dribbling bytes is cut
        # off by this deadline instead.
        deadline = time.monotonic() + timeout * 2
        with self._client.stream("GET", url, headers=headers, timeout=limits) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                wait = _server_wait(response)
                raise _RetryableStatus(f"HTTP {status}", status=status, retry_after=wait)
            if status >= 400:
                raise FetchError(f"GET {redact_url(url)}: HTTP {status} (not retried)", status=status)
            if 300 <= status < 400 and status != 304:  # a redirect with nowhere to go: no page
                raise FetchError(f"GET {redact_url(url)}: HTTP {status} without a Location to follow "
                                 "(not retried)", status=status)
            remaining, reset = parse_ratelimit(response.headers.get("RateLimit"))
            hint = reset if remaining == 0 else None
            content = None if status == 304 else self._read_capped(url, response, deadline)
            return FetchResult(
                url=str(response.url),
                status=status,
                content=content,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                retry_after_hint=hint,
            )

    def _read_capped(self, url: str, response: httpx.Response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(
                f"GET {redact_url(url)}: response of {declared} bytes exceeds the {self.max_bytes} byte cap"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(f"GET {redact_url(url)}: response exceeds the {self.max_bytes} byte cap")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("body took too long", request=response.request)
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            raise FetchError(f"GET {redact_url(url)}: undecodable body: {exc}") from exc
        return b"".join(chunks)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        policy = self.policy
        backoff = min(policy.cap, policy.base * 2.0 ** (state.attempt_number - 1))
        backoff += random.uniform(0, policy.base)  # jitter: pollers started together drift apart
        asked = _asked_wait(state)
        return max(backoff, asked) if asked is not None else backoff

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        # tenacity computes the upcoming wait before asking whether to stop.
        if state.attempt_number >= self.policy.attempts:
            return True
        elapsed = state.seconds_since_start or 0.0
        return elapsed + state.upcoming_sleep > self.policy.max_total


def _attempts(retrying: tenacity.Retrying) -> int:
    return int(retrying.statistics.get("attempt_number", 1))


def _gave_up(retrying: tenacity.Retrying, started: float) -> str:
    tries = _attempts(retrying)
    return f"gave up after {tries} attempt{'s' if tries != 1 else ''} in {time.monotonic() - started:.1f}s"


def _asked_wait(state: tenacity.RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _RetryableStatus):
        return exc.retry_after
    return None


def _describe(state: tenacity.RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, httpx.HTTPError):
        return _transport_reason(exc)
    return str(exc)


def _transport_reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    return f"{type(exc).__name__}: {exc}"


def fetch_once(url: str, *, user_agent: str | None = None, timeout: float = 30.0) -> bytes:
    """The body at ``url`` (``parse URL``); ``FetchError`` if it cannot be had."""
    with Fetcher(user_agent) as fetcher:
        result = fetcher.get(url, timeout=timeout)
    return result.content or b""
