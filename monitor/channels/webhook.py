"""The webhook channel: one JSON POST per batch (INTERFACE.md), with a stable ``Idempotency-Key``,
signed as Standard Webhooks (https://www.standardwebhooks.com/) asks when a ``signing_secret`` is set.

2xx is delivered; 408, 429, 5xx and transport errors are transient (``Retry-After`` honoured);
any other status is permanent. Error messages name the host only: webhook paths hold secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from urllib.parse import urlsplit

import httpx

from monitor.channels.base import Batch
from monitor.channels.render import shorten
from monitor.config import WebhookConfig
from monitor.errors import DeliveryError
from monitor.retry_after import parse_retry_after

_TRANSIENT = {408, 425, 429}

_tls_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def shared_tls_context() -> ssl.SSLContext:
    """The one TLS context of every webhook channel, built at the first use (as httpx builds its own:
    certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR). A context per client cost ~0.1 s of CPU and
    0.9 MB: 200 channels took 20 s to start, and as long again at every reload. An SSLContext is safe
    to share between threads; each connection has its own TLS state."""
    global _tls
    with _tls_lock:
        if _tls is None:
            _tls = httpx.create_ssl_context()
        return _tls


def payload(batch: Batch) -> dict[str, object]:
    """``{"channel", "rule", "papers": [paper JSON...]}``, plus ``"reasons"``: paper key -> reasons."""
    return {
        "channel": batch.channel,
        "rule": batch.rule,
        "papers": [alert.paper.to_json() for alert in batch.alerts],
        "reasons": {alert.paper.key: alert.reasons for alert in batch.alerts},
    }


def signature_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers: the id (the batch's, the same on every retry), the time of
    this try, and ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{digest}"}


class WebhookChannel:
    """POSTs batches to ``cfg.url`` over one reused ``httpx.Client`` (keep-alive)."""

    def __init__(self, cfg: WebhookConfig) -> None:
        self.name = cfg.name
        self._url = cfg.url
        self._where = f"webhook {urlsplit(cfg.url).netloc or cfg.url[:40]}"
        headers = {"User-Agent": "paper-monitor", **cfg.headers}
        self._client = httpx.Client(timeout=cfg.timeout, headers=headers, follow_redirects=False,
                                    verify=shared_tls_context())
        secret = cfg.signing_secret
        self._key = base64.b64decode(secret.removeprefix("whsec_")) if secret else None

    def send(self, batch: Batch) -> None:
        body = json.dumps(payload(batch), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Idempotency-Key": batch.key}
        if self._key is not None:
            headers.update(signature_headers(self._key, batch.key, int(time.time()), body))
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise DeliveryError(f"{self._where}: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self._where}: {exc}", permanent=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        said = shorten(response.text, 200) if response.content else response.reason_phrase
        message = f"{self._where}: HTTP {status}: {said}"
        if status in _TRANSIENT or status >= 500:
            raise DeliveryError(message, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise DeliveryError(message, permanent=True)

    def close(self) -> None:
        self._client.close()
