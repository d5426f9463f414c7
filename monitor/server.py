"""The HTTP server: the RSS/Atom feeds (a channel's, a rule's), the pages that list them
(``monitor.feed_pages``), /healthz and /metrics, on a small asyncio HTTP/1.1 server.

Feeds are rendered once and served from memory (with gzip, ETag, Last-Modified and 304s) until
the daemon says a feed changed. The server runs its event loop on a thread of its own; a
threaded http.server managed ~2,900 feed requests/s here against ~35,000 for this loop.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import parse_qs, unquote, urlsplit

from monitor.config import RssConfig
from monitor.errors import StoreError
from monitor.feed_pages import index_page, opml, public_feeds

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
IDLE_TIMEOUT = 30.0
# The end of a request head: lines end in CRLF, or in a bare LF, which RFC 9112 2.2 lets a server
# take as one (curl, nginx and most servers do; waiting for a CRLF that never comes hung the client).
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_KINDS = {".xml": "rss", ".atom": "atom"}
_TYPES = {"rss": b"application/rss+xml; charset=utf-8", "atom": b"application/atom+xml; charset=utf-8"}
_REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 410: "Gone", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}

# (channel, "rss" or "atom", a rule or None for the whole channel) -> the feed's bytes
Renderer = Callable[[RssConfig, str, str | None], bytes]
HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True)
class CachedFeed:
    body: bytes
    gzipped: bytes
    etag: str  # the quoted strong validator of ``body``; the gzip variant appends -gz
    modified: float  # when this content was first rendered

    @property
    def last_modified(self) -> bytes:
        return formatdate(self.modified, usegmt=True).encode()


class FeedCache:
    """Rendered feeds by (channel, kind, rule). ``refresh`` re-renders a channel's own feeds (unchanged
    bytes keep their validators) and forgets its per-rule ones, rendered again when next asked for.
    Of the per-rule feeds, the ``rule_feeds`` last asked for are kept: a config of 100,000 rules
    has as many feeds, which a crawler could otherwise make the daemon hold all at once."""

    def __init__(self, render: Renderer, rule_feeds: int = 256) -> None:
        self._render = render
        self._lock = threading.Lock()
        self._feeds: dict[tuple[str, str, str | None], CachedFeed] = {}
        self._rule_feeds = rule_feeds
        self._by_rule: OrderedDict[tuple[str, str, str | None], CachedFeed] = OrderedDict()

    def get(self, cfg: RssConfig, kind: str, rule: str | None = None) -> CachedFeed:
        key = (cfg.name, kind, rule)
        with self._lock:
            cached = self._feeds.get(key) if rule is None else self._by_rule.get(key)
            if cached is not None and rule is not None:
                self._by_rule.move_to_end(key)
        return cached if cached is not None else self._store(cfg, kind, rule)

    def refresh(self, cfg: RssConfig) -> None:
        for kind in _TYPES:
            self._store(cfg, kind, None)
        with self._lock:
            for key in [k for k in self._by_rule if k[0] == cfg.name]:
                del self._by_rule[key]

    def forget_others(self, names: set[str]) -> None:
        with self._lock:
            self._feeds = {k: v for k, v in self._feeds.items() if k[0] in names}
            self._by_rule = OrderedDict((k, v) for k, v in self._by_rule.items() if k[0] in names)

    def _store(self, cfg: RssConfig, kind: str, rule: str | None) -> CachedFeed:
        body = self._render(cfg, kind, rule)
        etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
        key = (cfg.name, kind, rule)
        with self._lock:
            table = self._feeds if rule is None else self._by_rule
            old = table.get(key)
            if old is not None and old.etag == etag:
                return old
            feed = table[key] = CachedFeed(body, gzip.compress(body, 6, mtime=0), etag, time.time())
            if len(self._by_rule) > self._rule_feeds:
                self._by_rule.popitem(last=False)
            return feed


class App:
    """Routes a request to the feeds, /healthz, /healthz/live or /metrics."""

    def __init__(
        self,
        feeds: FeedCache,
        channels: Callable[[], Mapping[str, RssConfig]],
        health: HealthCheck,
        live: HealthCheck,
        metrics: Callable[[], tuple[bytes, str]],
        feed_rules: Callable[[str], Collection[str]] = lambda channel: (),
        rule_gone: Callable[[str, str], bool] = lambda channel, rule: False,
    ) -> None:
        self.feeds = feeds
        self.channels = channels
        self.health = health
        self.live = live
        self.metrics = metrics
        self.feed_rules = feed_rules  # the rules that notify a channel: each has a feed of its own
        self.rule_gone = rule_gone  # a rule that no longer notifies the channel had items in it

    def handle(self, method: str, target: str, headers: Mapping[bytes, bytes]) -> Response:
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", ((b"Allow", b"GET, HEAD"),))
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path.startswith("/feeds/"):
            return self._feed(path[len("/feeds/"):], parse_qs(parts.query), headers)
        if path in ("/healthz", "/healthz/live"):
            ok, body = (self.health if path == "/healthz" else self.live)()
            data = json.dumps(body, sort_keys=True).encode() + b"\n"
            return Response(200 if ok else 503, data, ((b"Content-Type", b"application/json"),
                                                        (b"Cache-Control", b"no-store")))
        if path == "/metrics":
            data, content_type = self.metrics()
            return Response(200, data, ((b"Content-Type", content_type.encode()),))
        if path in ("/", "/feeds.opml"):
            channels = self.channels()
            listed = public_feeds(channels, self.feed_rules)
            if path == "/":
                private = sum(1 for cfg in channels.values() if cfg.token)
                page, kind = index_page(listed, private), b"text/html; charset=utf-8"
            else:
                page, kind = opml(listed, headers), b"text/x-opml; charset=utf-8"
            return Response(200, page, ((b"Content-Type", kind), (b"Cache-Control", b"no-store")))
        return _not_found()

    def _feed(self, rest: str, query: Mapping[str, list[str]], headers: Mapping[bytes, bytes]) -> Response:
        token, _, filename = rest.rpartition("/")
        name, dot, ext = filename.rpartition(".")
        kind = _KINDS.get(dot + ext)
        cfg = self.channels().get(name) if kind else None
        if kind is None or cfg is None or "/" in token:
            return _not_found()
        given = token or (query.get("token") or [""])[0]
        if cfg.token and not hmac.compare_digest(given.encode(), cfg.token.encode()):
            return _not_found()  # a private feed does not admit it exists
        if not cfg.token and token:
            return _not_found()
        rules = query.get("rule", [])
        if len(rules) > 1:
            return Response(400, b"one rule= a feed\n", ((b"Content-Type", b"text/plain; charset=utf-8"),))
        rule = rules[0] if rules else None
        if rule is not None and rule not in self.feed_rules(cfg.name):
            if self.rule_gone(cfg.name, rule):  # 410: a feed reader may unsubscribe for good
                return Response(410, b"this rule no longer notifies this channel\n",
                                ((b"Content-Type", b"text/plain; charset=utf-8"),))
            return _not_found()
        feed = self.feeds.get(cfg, kind, rule)
        zipped = _accepts_gzip(headers.get(b"accept-encoding", b""))
        etag = feed.etag[:-1] + '-gz"' if zipped else feed.etag
        common = [
            (b"ETag", etag.encode()),
            (b"Last-Modified", feed.last_modified),
            (b"Cache-Control", b"private, max-age=300" if cfg.token else b"public, max-age=300"),
            (b"Vary", b"Accept-Encoding"),
        ]
        if _not_modified(headers, feed):
            return Response(304, b"", tuple(common))
        common.append((b"Content-Type", _TYPES[kind]))
        if zipped:
            common.append((b"Content-Encoding", b"gzip"))
        return Response(200, feed.gzipped if zipped else feed.body, tuple(common))


def _accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether an ``Accept-Encoding`` value admits gzip (RFC 9110 12.5.3): listed, or ``*`` when
    gzip is not, with a weight above 0; ``gzip;q=0`` refuses it. A weight we cannot read admits
    nothing: the plain feed is always acceptable."""
    star = False
    for item in accept_encoding.lower().split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip()
        if coding not in (b"gzip", b"x-gzip", b"*"):
            continue
        weight = _weight(params)
        if coding != b"*":
            return weight > 0
        star = weight > 0
    return star


def _weight(params: bytes) -> float:
    """The ``q`` of an ``Accept-Encoding`` item's parameters: 1 when absent, 0 when unreadable."""
    for param in params.split(b";"):
        name, _, value = param.partition(b"=")
        if name.strip() == b"q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _not_modified(headers: Mapping[bytes, bytes], feed: CachedFeed) -> bool:
    match = headers.get(b"if-none-match")
    if match is not None:
        # Weak comparison (RFC 9110 13.1.2); both encodings of the same bytes are one version.
        tags = {t.strip().removeprefix(b"W/").replace(b'-gz"', b'"') for t in match.split(b",")}
        return b"*" in tags or feed.etag.encode() in tags
    since = headers.get(b"if-modified-since")
    if since is None:
        return False
    try:
        return parsedate_to_datetime(since.decode("latin-1")).timestamp() >= int(feed.modified)
    except (TypeError, ValueError, IndexError):
        return False


def _not_found() -> Response:
    return Response(404, b"not found\n", ((b"Content-Type", b"text/plain; charset=utf-8"),))


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive and pipelining; GET and HEAD without bodies."""

    def __init__(self, app: App, clock: _DateClock, open_set: set[asyncio.Transport]) -> None:
        self.app = app
        self.clock = clock
        self.open_set = open_set
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open_set.add(transport)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            self.open_set.discard(self.transport)
        self.transport = None

    def pause_writing(self) -> None:  # a slow reader: stop reading its next requests
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None:
            self.transport.resume_reading()
            self._process()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arm_idle()
        self._process()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.transport.close)

    def _process(self) -> None:
        while self.transport is not None and not self.transport.is_closing() and not self.paused:
            # Only a head's worth is searched: a longer one is refused whether its end has come in
            # the same read or not yet.
            end = _HEAD_END.search(self.buffer, 0, MAX_HEAD + 4)
            if end is None:
                if len(self.buffer) >= MAX_HEAD + 4:
                    self._reply(Response(431, b"request head too large\n"), "GET", close=True)
                return
            head = bytes(self.buffer[: end.start()])
            del self.buffer[: end.end()]
            self._one(head)

    def _one(self, head: bytes) -> None:
        lines = _LINE_END.split(head)
        request = lines[0].split(b" ")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            # A bare CR is no line end (RFC 9112 2.2): refused, never taken for one.
            if not colon or not name or name != name.strip() or b"\r" in line:
                self._reply(Response(400, b"bad header\n"), "GET", close=True)
                return
            headers[name.lower()] = value.strip()
        if len(request) != 3 or not request[2].startswith(b"HTTP/1.") or b"\r" in lines[0]:
            self._reply(Response(400, b"bad request line\n"), "GET", close=True)
            return
        if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
            self._reply(Response(400, b"requests with a body are not accepted\n"), "GET", close=True)
            return
        method = request[0].decode("ascii", "replace")
        connection = headers.get(b"connection", b"").lower()
        keep = connection != b"close" if request[2] == b"HTTP/1.1" else connection == b"keep-alive"
        try:
            response = self.app.handle(method, request[1].decode("latin-1"), headers)
        except StoreError as exc:  # a database outage: for a while, and no bug (one line, no traceback)
            log.warning("%s %r: the store does not answer: %s", method, _loggable(request[1]), exc)
            response = Response(503, b"the store does not answer; try again later\n",
                                ((b"Retry-After", b"30"),))
        except Exception:
            log.exception("%s %r failed", method, _loggable(request[1]))
            response = Response(500, b"internal error\n")
        self._reply(response, method, close=not keep)

    def _reply(self, response: Response, method: str, *, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        out = [b"HTTP/1.1 %d %s\r\n" % (response.status, _REASONS.get(response.status, "").encode()),
               b"Date: " + self.clock.now() + b"\r\nServer: paper-monitor\r\n"]
        out.extend(name + b": " + value + b"\r\n" for name, value in response.headers)
        if response.status != 304:
            out.append(b"Content-Length: %d\r\n" % len(response.body))
        if close:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        body = response.body if method != "HEAD" and response.status != 304 else b""
        if len(body) > 16384:
            # A big feed goes out as its own write: joining would copy it for every request.
            self.transport.write(b"".join(out))
            self.transport.write(body)
        else:
            out.append(body)
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


class _DateClock:
    """The Date header, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True).encode()
        return self._value


class HttpServer:
    """Serves ``app`` on host:port from a thread of its own. ``start()`` binds (port 0: any free port)."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Transport] = set()

    def start(self) -> None:
        clock = _DateClock()
        factory = lambda: _Connection(self.app, clock, self._connections)  # noqa: E731
        self._server = self._loop.run_until_complete(
            self._loop.create_server(factory, self.host, self.port, reuse_address=True, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-server", daemon=True)
        self._thread.start()
        log.info("serving feeds, /healthz and /metrics on http://%s:%d", self.host, self.port)

    def stop(self) -> None:
        if self._thread is None:
            self._loop.close()
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout=3)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("HTTP server did not stop in time")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=3)
        self._thread = None
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            # Server.close_clients() is 3.13+: end the idle keep-alive connections by hand.
            for transport in list(self._connections):
                transport.abort()
            await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            await asyncio.sleep(0)  # let connection_lost callbacks run


def _loggable(target: bytes) -> str:
    """The request target as a log may show it: no query string and no private feed token (both may
    carry a feed's ``token``)."""
    path = target.split(b"?", 1)[0].decode("latin-1")[:200]
    if path.startswith("/feeds/") and path.count("/") > 2:
        path = "/feeds/.../" + path.rpartition("/")[2]
    return path
