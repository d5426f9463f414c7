"""A stand-in for Slack on 127.0.0.1: the Web API's chat.postMessage and an incoming webhook.

slack-sdk really talks to it (point ``base_url`` / the webhook URL here). It checks the token,
the channel and Slack's message limits like Slack does, records every request, and can be
scripted to answer 429 with Retry-After, 500, or ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.helpers import LoopbackServer, QuietHandler

API_PATH = "/api/chat.postMessage"
WEBHOOK_PATH = "/services/T0000/B0000/not-a-real-secret"
# Incoming webhooks answer errors as text with these statuses.
_WEBHOOK_STATUS = {
    "invalid_token": 403, "channel_not_found": 404, "no_service": 404, "channel_is_archived": 410,
}


@dataclass(frozen=True)
class Answer:
    """A scripted answer: an HTTP status, a Slack error code, a Retry-After."""

    status: int = 200
    error: str | None = None
    retry_after: float | None = None


@dataclass
class Posted:
    """One request as the stand-in saw it; ``accepted`` when it answered ok (a message was posted)."""

    path: str
    headers: dict[str, str]
    raw: bytes
    payload: dict[str, Any]
    accepted: bool = False
    at: float = field(default_factory=time.monotonic)


class SlackStandIn(LoopbackServer):
    """Use as a context manager. ``messages`` are the accepted posts, in arrival order."""

    def __init__(self, token: str = "xoxb-test-token", channels: tuple[str, ...] = ("#papers", "C0PAPERS")):
        self.token = token
        self.channels = set(channels)
        self.requests: list[Posted] = []
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        standin = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, content_type, body, headers = standin._answer(self.path, dict(self.headers), raw)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client is gone (tests kill daemons mid-request): nothing to answer

        super().__init__(Handler)

    @property
    def base_url(self) -> str:
        return self.root + "/api/"

    @property
    def webhook_url(self) -> str:
        return self.root + WEBHOOK_PATH

    @property
    def messages(self) -> list[Posted]:
        with self._lock:
            return [r for r in self.requests if r.accepted]

    def script(self, *answers: Answer) -> None:
        """Answer the next requests (any endpoint) with these, in turn; then behave normally again."""
        with self._lock:
            self._script.extend(answers)

    @property
    def scripted(self) -> int:
        """Scripted answers not given yet."""
        with self._lock:
            return len(self._script)

    def unscript(self) -> None:
        """Drop the scripted answers not given yet: behave normally from now on."""
        with self._lock:
            self._script.clear()

    # -- the emulation -----------------------------------------------------------------------

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        webhook = path == WEBHOOK_PATH
        payload = _payload(headers, raw)
        posted = Posted(path, headers, raw, payload)
        with self._lock:
            self.requests.append(posted)
            scripted = self._script.popleft() if self._script else None
        if path not in (API_PATH, WEBHOOK_PATH):
            return 404, "text/plain", b"no_service", {}
        answer = scripted or self._judge(webhook, headers, payload)
        extra = {"Retry-After": f"{answer.retry_after:g}"} if answer.retry_after is not None else {}
        if answer.status == 200 and answer.error is None:
            posted.accepted = True
            if webhook:
                return 200, "text/html", b"ok", {}
            reply = {"ok": True, "channel": "C0PAPERS", "ts": f"{time.time():.6f}", "message": payload}
            return 200, "application/json", json.dumps(reply).encode(), {}
        if answer.status >= 500:
            return answer.status, "text/html", b"<html><body>Internal Server Error</body></html>", extra
        error = answer.error or ("ratelimited" if answer.status == 429 else "invalid_request")
        if webhook:
            status = answer.status if answer.status != 200 else _WEBHOOK_STATUS.get(error, 400)
            return status, "text/html", error.encode(), extra
        return answer.status, "application/json", json.dumps({"ok": False, "error": error}).encode(), extra

    def _judge(self, webhook: bool, headers: dict[str, str], payload: dict[str, Any]) -> Answer:
        """What Slack would say: credentials and channel (Web API), then the message limits."""
        if not webhook:
            auth = headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else payload.get("token")
            if token != self.token:
                return Answer(error="not_authed" if not token else "invalid_auth")
            if payload.get("channel") not in self.channels:
                return Answer(error="channel_not_found")
        return Answer(error=message_problem(payload))


def message_problem(payload: dict[str, Any]) -> str | None:
    """Slack's error code for a message over its limits, or ``None`` when it is fine."""
    blocks = payload.get("blocks") or []
    text = payload.get("text") or ""
    if not text and not blocks:
        return "no_text"
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    total = len(text)
    for block in blocks:
        inner = block.get("text") if isinstance(block, dict) else None
        if block.get("type") == "header" and len(inner["text"]) > 150:
            return "invalid_blocks"
        if isinstance(inner, dict):
            if len(inner.get("text", "")) > 3000:
                return "invalid_blocks"
            total += len(inner.get("text", ""))
    return "msg_too_long" if total > 40_000 else None


def _payload(headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    kind = headers.get("Content-Type", "")
    try:
        if kind.startswith("application/json"):
            data = json.loads(raw or b"{}")
            return data if isinstance(data, dict) else {"_": data}
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8")).items()}
        if isinstance(form.get("blocks"), str):
            form["blocks"] = json.loads(form["blocks"])
        return dict(form)
    except (ValueError, UnicodeDecodeError):
        return {"_unreadable": raw.decode("utf-8", "replace")}
