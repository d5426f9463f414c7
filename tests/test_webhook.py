"""The webhook channel against a real receiver on loopback: payload, headers, and every status class."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from monitor.channels import webhook
from monitor.channels.base import Alert, Batch
from monitor.channels.webhook import WebhookChannel
from monitor.config import WebhookConfig
from monitor.errors import DeliveryError
from monitor.retry_after import parse_retry_after
from tests.helpers import ReplayServer, Reply
from tests.outbox_support import paper
from tests.smtp_support import make_certs

SECRET_PATH = "/hooks/T000/s3cr3t-token"


def batch(*titles: str, key: str = "batch-key-1") -> Batch:
    alerts = [Alert(paper(t), [f"keyword: {t.lower()}"], i, rule="llm") for i, t in enumerate(titles, 1)]
    return Batch(channel="hook", rule="llm", alerts=alerts, key=key)


def channel(replay: ReplayServer, timeout: float = 10.0, signing_secret: str | None = None,
            **headers: str) -> WebhookChannel:
    cfg = WebhookConfig(name="hook", type="webhook", url=replay.url(SECRET_PATH), timeout=timeout,
                        headers=headers, signing_secret=signing_secret)
    return WebhookChannel(cfg)


def test_posts_the_interface_payload_with_an_idempotency_key(replay: ReplayServer) -> None:
    replay.route(SECRET_PATH, Reply(b"", 204))
    hook = channel(replay, Authorization="Bearer abc")
    sent = batch("Alpha", "Beta")
    try:
        hook.send(sent)
    finally:
        hook.close()
    (seen,) = replay.requests
    assert seen.method == "POST"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Idempotency-Key"] == "batch-key-1"
    assert seen.headers["Authorization"] == "Bearer abc"
    body = json.loads(seen.body)
    assert body["channel"] == "hook" and body["rule"] == "llm"
    assert body["papers"] == [a.paper.to_json() for a in sent.alerts]
    assert set(body["papers"][0]) == {"key", "arxiv_id", "title", "abstract", "authors", "authors_count",
                                      "organization", "published", "upvotes", "url", "source"}
    assert body["reasons"] == {a.paper.key: a.reasons for a in sent.alerts}


@pytest.mark.parametrize(
    ("reply", "permanent", "wait"),
    [
        (Reply(b"busy", 429, {"Retry-After": "7"}), False, 7.0),
        (Reply(b"", 408), False, None),
        (Reply(b"oops", 500), False, None),
        (Reply(b"", 503, {"Retry-After": "120"}), False, 120.0),
        (Reply(b"", 503, {"Retry-After": "nan"}), False, None),  # no number: the usual backoff
        (Reply(b"", 503, {"Retry-After": "inf"}), False, None),
        (Reply(b'{"error": "schema"}', 400), True, None),
        (Reply(b"", 401), True, None),
        (Reply(b"", 404), True, None),
        (Reply(b"", 410), True, None),
        (Reply(b"", 301, {"Location": "https://elsewhere.example/"}), True, None),
    ],
)
def test_status_decides_transient_or_permanent(
    replay: ReplayServer, reply: Reply, permanent: bool, wait: float | None
) -> None:
    replay.route(SECRET_PATH, reply)
    hook = channel(replay)
    try:
        with pytest.raises(DeliveryError) as caught:
            hook.send(batch("Alpha"))
    finally:
        hook.close()
    error = caught.value
    assert (error.permanent, error.retry_after) == (permanent, wait)
    assert f"HTTP {reply.status}" in str(error)
    assert "s3cr3t" not in str(error)  # the URL's path may hold a secret: only the host is named


def test_a_receiver_that_is_down_or_too_slow_is_transient(replay: ReplayServer) -> None:
    replay.route(SECRET_PATH, Reply(b"", 200, delay=2))
    slow = channel(replay, timeout=0.5)
    down = WebhookChannel(WebhookConfig(name="down", type="webhook", url="http://127.0.0.1:9/x", timeout=5))
    try:
        for hook in (slow, down):
            with pytest.raises(DeliveryError) as caught:
                hook.send(batch("Alpha"))
            assert not caught.value.permanent
    finally:
        slow.close()
        down.close()


def test_successive_batches_reuse_one_connection(replay: ReplayServer) -> None:
    replay.route(SECRET_PATH, Reply(b"ok"))
    hook = channel(replay)
    try:
        for n in range(5):
            hook.send(batch(f"P{n}", key=f"k{n}"))
    finally:
        hook.close()
    assert [r.headers["Idempotency-Key"] for r in replay.requests] == ["k0", "k1", "k2", "k3", "k4"]
    assert replay.requests[-1].headers.get("Connection", "keep-alive").lower() == "keep-alive"


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    at = datetime.fromtimestamp(now, UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), at) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), at) == 0.0
    assert DeliveryError("busy", retry_after=parse_retry_after("999999999")).retry_after == 86400.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example


def test_a_signed_batch_verifies_with_the_standard_webhooks_library(replay: ReplayServer) -> None:
    replay.route(SECRET_PATH, Reply(b"", 503), Reply(b"", 204))
    hook = channel(replay, signing_secret=SIGNING_SECRET)
    sent = batch("Alpha", "Beta")
    try:
        with pytest.raises(DeliveryError):
            hook.send(sent)
        hook.send(sent)  # the retry
    finally:
        hook.close()
    first, retry = replay.requests
    receiver = Webhook(SIGNING_SECRET)
    for seen in (first, retry):
        assert receiver.verify(seen.body, seen.headers) == json.loads(seen.body)
        assert seen.headers["webhook-id"] == seen.headers["Idempotency-Key"] == "batch-key-1"
    # Anything changed on the way is refused: the body, or the secret the receiver holds.
    with pytest.raises(WebhookVerificationError):
        receiver.verify(first.body.replace(b"Alpha", b"Omega"), first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(first.body, first.headers)


def test_an_unsigned_channel_sends_no_signature(replay: ReplayServer) -> None:
    replay.route(SECRET_PATH, Reply(b"", 204))
    hook = channel(replay)
    try:
        hook.send(batch("Alpha"))
    finally:
        hook.close()
    assert not {"webhook-id", "webhook-signature"} & {name.lower() for name in replay.requests[0].headers}


def test_two_hundred_channels_build_in_a_moment() -> None:
    """Start-up and each reload build every channel: a TLS context of its own per webhook channel
    cost ~0.1 s of CPU each (200 channels: 20 s, then as long again at every reload)."""
    configs = [WebhookConfig(name=f"hook{i}", type="webhook", url=f"https://hooks{i}.example/in")
               for i in range(200)]
    began = time.process_time()
    hooks = [WebhookChannel(cfg) for cfg in configs]
    took = time.process_time() - began
    for hook in hooks:
        hook.close()
    assert took < 2.0, f"200 webhook channels took {took:.1f}s of CPU to build"


def test_https_is_verified_against_the_cas_httpx_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared TLS context still verifies: a receiver whose CA is not trusted is refused; trusted
    through SSL_CERT_FILE (as httpx reads it), it receives the batch."""
    certs = make_certs(tmp_path)
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = certs.server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_port}/in"
    cfg = WebhookConfig(name="hook", type="webhook", url=url, timeout=5)
    try:
        monkeypatch.setattr(webhook, "_tls", None)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        untrusting = WebhookChannel(cfg)
        with pytest.raises(DeliveryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusting.send(batch("Alpha"))
        untrusting.close()
        assert received == []
        monkeypatch.setattr(webhook, "_tls", None)
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
        trusting = WebhookChannel(cfg)
        trusting.send(batch("Alpha"))
        trusting.close()
        assert json.loads(received[0])["papers"][0]["title"] == "Alpha"
    finally:
        server.shutdown()
        server.server_close()
