"""The demo's stand-ins on 127.0.0.1: a web server replaying recorded pages, a mail sink writing .eml.

Both are for ``paper-monitor demo`` only: no TLS, no auth, loopback only, closed after the run. The
tests' and benchmarks' scripted servers build on ``LoopbackServer`` too.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 that logs nothing (pytest would show every request)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up (kept-alive connections closed at its exit): no story
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 running ``handler`` until ``close()`` (or the ``with`` ends)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        # Poll for shutdown every 50 ms, not the default 0.5 s: every test closes one.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def root(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PageReplay(LoopbackServer):
    """Serves ``pages`` at ``/papers``, the next one at each GET; the last one repeats."""

    def __init__(self, pages: list[tuple[bytes, str]]) -> None:
        self.served = 0
        replay = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/papers":
                    self.send_error(404)
                    return
                body, content_type = pages[min(replay.served, len(pages) - 1)]
                replay.served += 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return f"{self.root}/papers"


class MailSink:
    """A minimal SMTP server on 127.0.0.1 that stores each message as ``<directory>/NNN.eml``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-mail", daemon=True)
        self._thread.start()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        try:
            await say("220 localhost paper-monitor demo mail sink")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    await say("250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8")
                elif verb == b"DATA":
                    await say("354 end with <CRLF>.<CRLF>")
                    self._save(await _read_data(reader))
                    await say("250 stored")
                elif verb == b"QUIT":
                    await say("221 bye")
                    break
                elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    await say("250 ok")
                else:
                    await say("502 not implemented")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _save(self, message: bytes) -> None:
        (self.directory / f"{next(self._numbers):03d}.eml").write_bytes(message)

    def close(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=3)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=3)
        self._loop.close()


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await reader.readline()
        if not line or line in (b".\r\n", b".\n"):
            break
        lines.append(line[1:] if line.startswith(b"..") else line)  # undo dot-stuffing
    return b"".join(lines)
