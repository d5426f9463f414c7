"""Test helpers: paths of the shared fixtures and a real HTTP replay server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from monitor.demo_servers import LoopbackServer, QuietHandler  # the tests' servers build on them

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "fixtures"
REAL = SHARED / "real"
SEEDS = SHARED / "seeds"
DATA = Path(__file__).resolve().parent / "data"

HF_JSON = REAL / "hf_api_daily_papers_2026-06-12.json"
HF_HTML = REAL / "hf_papers_listing_2024-08-01.html"
ARXIV_ATOM = REAL / "arxiv_api_query_2026-06-14.atom.xml"
ARXIV_ATOM_LEGACY = REAL / "arxiv_api_query_legacy_2025-10-17.atom.xml"
ARXIV_RSS_EMPTY = REAL / "arxiv_rss_physics_empty_2025-12-31.reconstructed.xml"
SEED_PAGES = sorted(SEEDS.glob("*.txt"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers the test starts itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    """One scripted answer: status, body, headers, and an optional delay before answering."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when the request arrived


class ReplayServer(LoopbackServer):
    """A real HTTP server on 127.0.0.1 that answers each path from a queue of ``Reply``s.

    The last reply of a path's queue repeats once the others are used up. Every request is kept
    in ``requests``. Use as a context manager, or call ``close()``.
    """

    def __init__(self) -> None:
        self.routes: dict[str, deque[Reply]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                with server._lock:
                    server.requests.append(Seen(self.command, path, dict(self.headers), body))
                    # A route with the query string is the more specific one.
                    queue = server.routes.get(path) or server.routes.get(path.split("?", 1)[0])
                    reply = (queue.popleft() if len(queue) > 1 else queue[0]) if queue else Reply(
                        b"not found", 404
                    )
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    # A client that gave up (a timeout test) is nothing to report.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.wfile.write(reply.body)

            do_GET = do_POST = do_HEAD = _answer

        super().__init__(Handler)

    @property
    def base_url(self) -> str:
        return self.root

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, *replies: Reply) -> None:
        """Answer ``path`` with these replies, in turn (the last one repeats)."""
        with self._lock:
            self.routes[path] = deque(replies)

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path.split("?", 1)[0] == path)
