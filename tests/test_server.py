"""The HTTP server on loopback: feeds with validators and tokens, /healthz, /metrics, HTTP details."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.utils import formatdate

import feedparser
import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser

from monitor.config import RssConfig
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.server import App, FeedCache, HttpServer


class Feeds:
    """What the feed channels hold: titles per channel, rendered as a minimal RSS or Atom doc."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {"public": ["First paper"], "private": ["Secret paper"],
                                            "public hot": ["Hot paper"], "public cold": [],
                                            "private mine": ["My secret"]}
        self.renders = 0

    def render(self, cfg: RssConfig, kind: str, rule: str | None) -> bytes:
        self.renders += 1
        titles = self.items[cfg.name if rule is None else f"{cfg.name} {rule}"]
        if kind == "atom":
            entries = "".join(
                f"<entry><title>{t}</title><id>urn:x:{i}</id><updated>2024-10-08T00:00:00Z</updated></entry>"
                for i, t in enumerate(titles)
            )
            return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
                    f"<title>{cfg.name}</title><id>urn:feed</id><updated>2024-10-08T00:00:00Z</updated>"
                    f"{entries}</feed>").encode()
        items = "".join(f"<item><title>{t}</title><guid>urn:x:{i}</guid></item>"
                        for i, t in enumerate(titles))
        return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{cfg.name}</title>'
                f"<link>http://x/</link><description>d</description>{items}</channel></rss>").encode()


CHANNELS = {
    "public": RssConfig(name="public", type="rss"),
    "private": RssConfig(name="private", type="rss", token="s3cret-token"),
}

RULES = {"public": ("hot", "cold"), "private": ("mine",)}


class Running:
    def __init__(self) -> None:
        self.feeds = Feeds()
        self.cache = FeedCache(self.feeds.render)
        self.healthy = True
        self.metrics = Metrics()
        app = App(
            self.cache,
            lambda: CHANNELS,
            lambda: (self.healthy, {"status": "ok" if self.healthy else "unhealthy"}),
            lambda: (True, {"status": "alive"}),
            lambda: (self.metrics.render(), CONTENT_TYPE),
            lambda channel: RULES.get(channel, ()),
        )
        self.server = HttpServer(app, "127.0.0.1", 0)
        self.server.start()
        self.base = f"http://127.0.0.1:{self.server.port}"
        self.client = httpx.Client(base_url=self.base, timeout=5)


@pytest.fixture
def srv() -> Iterator[Running]:
    running = Running()
    try:
        yield running
    finally:
        running.client.close()
        running.server.stop()


def test_feed_is_served_with_validators_and_read_by_feedparser(srv: Running) -> None:
    reply = srv.client.get("/feeds/public.xml")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/rss+xml")
    assert reply.headers["etag"] and reply.headers["last-modified"]
    parsed = feedparser.parse(reply.content)
    assert not parsed.bozo
    assert [e.title for e in parsed.entries] == ["First paper"]
    atom = srv.client.get("/feeds/public.atom")
    assert atom.headers["content-type"].startswith("application/atom+xml")
    assert [e.title for e in feedparser.parse(atom.content).entries] == ["First paper"]


def test_conditional_get_answers_304_until_the_feed_changes(srv: Running) -> None:
    first = srv.client.get("/feeds/public.xml")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    again = srv.client.get("/feeds/public.xml", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    by_date = srv.client.get("/feeds/public.xml", headers={"If-Modified-Since": modified})
    assert by_date.status_code == 304
    old = formatdate(0, usegmt=True)
    assert srv.client.get("/feeds/public.xml", headers={"If-Modified-Since": old}).status_code == 200

    srv.cache.refresh(CHANNELS["public"])  # re-rendered, same content: same validators
    assert srv.client.get("/feeds/public.xml", headers={"If-None-Match": etag}).status_code == 304

    srv.feeds.items["public"].append("Second paper")
    srv.cache.refresh(CHANNELS["public"])
    changed = srv.client.get("/feeds/public.xml", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert [e.title for e in feedparser.parse(changed.content).entries] == ["First paper", "Second paper"]


def test_feeds_are_rendered_once_not_per_request(srv: Running) -> None:
    for _ in range(20):
        assert srv.client.get("/feeds/public.xml").status_code == 200
    assert srv.feeds.renders == 1


def test_gzip_for_clients_that_ask(srv: Running) -> None:
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=5) as sock:
        sock.sendall(b"GET /feeds/public.xml HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
                     b"Connection: close\r\n\r\n")
        raw = _read_all(sock)
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert b"content-encoding: gzip" in head and b"vary: accept-encoding" in head
    reply = srv.client.get("/feeds/public.xml", headers={"Accept-Encoding": "gzip"})
    assert b"First paper" in reply.content  # httpx inflates it
    # The gzip variant's validator also matches the plain one.
    again = srv.client.get("/feeds/public.xml", headers={"If-None-Match": reply.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("accept", "zipped"),
    [("gzip;q=0, identity", False), ("gzip; q=0.0", False), ("identity, gzip;q=0", False),
     ("*;q=0", False), ("gzip;q=nonsense", False), ("gzip_not", False), ("br", False), ("", False),
     ("GZIP", True), ("identity;q=0.5, gzip;q=0.8", True), ("x-gzip", True), ("*", True),
     ("br, *;q=0.1", True), ("gzip;q=0, *", False)],
)
def test_gzip_only_when_the_client_accepts_it(srv: Running, accept: str, zipped: bool) -> None:
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=5) as sock:
        sock.sendall(b"GET /feeds/public.xml HTTP/1.1\r\nHost: x\r\nAccept-Encoding: " + accept.encode()
                     + b"\r\nConnection: close\r\n\r\n")
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert (b"content-encoding: gzip" in head.lower()) is zipped
    assert (b"First paper" in body) is not zipped


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/feeds/private.xml", 404),
        ("/feeds/private.xml?token=wrong", 404),
        ("/feeds/wrong/private.xml", 404),
        ("/feeds/private.xml?token=s3cret-token", 200),
        ("/feeds/s3cret-token/private.xml", 200),
        ("/feeds/s3cret-token/private.atom", 200),
        ("/feeds/s3cret-token/public.xml", 404),
        ("/feeds/nosuch.xml", 404),
        ("/feeds/public.json", 404),
        ("/feeds/a/b/public.xml", 404),
        ("/elsewhere", 404),
    ],
)
def test_tokens_and_unknown_paths(srv: Running, path: str, status: int) -> None:
    reply = srv.client.get(path, follow_redirects=False)
    assert reply.status_code == status
    if status == 404:
        assert b"Secret paper" not in reply.content


@pytest.mark.parametrize(
    ("path", "status", "titles"),
    [
        ("/feeds/public.xml?rule=hot", 200, ["Hot paper"]),
        ("/feeds/public.atom?rule=hot", 200, ["Hot paper"]),
        ("/feeds/public.xml?rule=mine", 404, None),  # a rule of another channel
        ("/feeds/public.xml?rule=nosuch", 404, None),
        ("/feeds/public.xml?rule=hot&rule=cold", 400, None),
        ("/feeds/private.xml?rule=mine", 404, None),
        ("/feeds/s3cret-token/private.xml?rule=mine", 200, ["My secret"]),
        ("/feeds/private.xml?token=s3cret-token&rule=mine", 200, ["My secret"]),
    ],
)
def test_a_rule_of_a_channel_has_a_feed_of_its_own(
    srv: Running, path: str, status: int, titles: list[str] | None
) -> None:
    reply = srv.client.get(path)
    assert reply.status_code == status
    if titles is not None:
        assert [e.title for e in feedparser.parse(reply.content).entries] == titles
    else:
        assert b"paper" not in reply.content


def test_a_rules_feed_is_rendered_again_after_its_channel_changed(srv: Running) -> None:
    first = srv.client.get("/feeds/public.xml?rule=hot")
    assert srv.client.get("/feeds/public.xml?rule=hot", headers={"If-None-Match": first.headers["etag"]}
                          ).status_code == 304
    renders = srv.feeds.renders
    srv.feeds.items["public hot"].append("Hotter paper")
    srv.cache.refresh(CHANNELS["public"])  # as the daemon does when the channel's feed changed
    changed = srv.client.get("/feeds/public.xml?rule=hot", headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200
    assert [e.title for e in feedparser.parse(changed.content).entries] == ["Hot paper", "Hotter paper"]
    assert srv.client.get("/feeds/public.xml?rule=hot").content == changed.content
    assert srv.feeds.renders == renders + 2 + 1  # the channel's two feeds, then the rule's once


def test_only_the_per_rule_feeds_last_asked_for_are_kept() -> None:
    asked: list[str | None] = []

    def render(cfg: RssConfig, kind: str, rule: str | None) -> bytes:
        asked.append(rule)
        return f"{cfg.name} {kind} {rule}".encode()

    cache = FeedCache(render, rule_feeds=2)
    public = CHANNELS["public"]
    for rule in ("a", "b", "a", "c", "a", "b", None, None):
        assert cache.get(public, "rss", rule).body == f"public rss {rule}".encode()
    # a, b rendered; a kept (asked for again); c pushes b out; a kept; b rendered again; the channel once
    assert asked == ["a", "b", "c", "b", None]


def test_the_front_page_lists_the_public_feeds_for_people_and_feed_readers(srv: Running) -> None:
    page = srv.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    tree = LexborHTMLParser(page.text)
    found = [(n.attributes["title"], n.attributes["href"]) for n in tree.css('link[rel="alternate"]')]
    assert found == [("public", "/feeds/public.xml"), ("public: cold", "/feeds/public.xml?rule=cold"),
                     ("public: hot", "/feeds/public.xml?rule=hot")]
    hrefs = [str(a.attributes["href"]) for a in tree.css("a")]
    assert "/feeds/public.atom?rule=hot" in hrefs and "/healthz" in hrefs
    for href in hrefs:
        assert srv.client.get(href).status_code == 200, href
    assert "1 private feed not listed." in page.text
    assert "private" not in " ".join(hrefs) and "s3cret" not in page.text and "mine" not in page.text


def test_an_opml_list_subscribes_a_feed_reader_to_every_public_feed(srv: Running) -> None:
    reply = srv.client.get("/feeds.opml")
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/x-opml; charset=utf-8"
    outlines = ET.fromstring(reply.content).findall("./body/outline")
    base = srv.base
    assert [(o.get("text"), o.get("type"), o.get("xmlUrl")) for o in outlines] == [
        ("public", "rss", f"{base}/feeds/public.xml"),
        ("public: cold", "rss", f"{base}/feeds/public.xml?rule=cold"),
        ("public: hot", "rss", f"{base}/feeds/public.xml?rule=hot"),
    ]
    for outline in outlines:
        assert httpx.get(str(outline.get("xmlUrl")), timeout=5).status_code == 200
    assert b"private" not in reply.content and b"s3cret" not in reply.content
    proxied = srv.client.get("/feeds.opml", headers={"Host": "papers.example.org",
                                                      "X-Forwarded-Proto": "https"})
    urls = [o.get("xmlUrl") for o in ET.fromstring(proxied.content).findall("./body/outline")]
    assert urls[0] == "https://papers.example.org/feeds/public.xml"
    assert 'href="/feeds.opml"' in srv.client.get("/").text


def test_the_front_page_names_at_most_500_rules_feeds_a_channel() -> None:
    many = [f"rule-{i:05d}" for i in range(100_000)]
    public = CHANNELS["public"]
    app = App(FeedCache(Feeds().render), lambda: {"public": public}, lambda: (True, {}), lambda: (True, {}),
              lambda: (b"", "text/plain"), lambda channel: many)
    page = app.handle("GET", "/", {}).body.decode()
    assert "rule=rule-00499" in page and "rule=rule-00500" not in page
    assert "and 99500 more rules' feeds, not listed" in page and len(page) < 200_000
    opml = ET.fromstring(app.handle("GET", "/feeds.opml", {b"host": b"h"}).body)
    assert len(opml.findall("./body/outline")) == 1 + 500


def test_names_on_the_front_page_are_escaped() -> None:
    odd = RssConfig(name='a<b>&"c', type="rss")
    app = App(FeedCache(Feeds().render), lambda: {odd.name: odd}, lambda: (True, {}), lambda: (True, {}),
              lambda: (b"", "text/plain"), lambda channel: ["<i>x</i>"])
    body = app.handle("GET", "/", {}).body.decode()
    assert "<b>" not in body and "<i>" not in body
    assert "a&lt;b&gt;&amp;&quot;c: &lt;i&gt;x&lt;/i&gt;" in body
    assert 'href="/feeds/a%3Cb%3E%26%22c.xml?rule=%3Ci%3Ex%3C%2Fi%3E"' in body
    opml = app.handle("GET", "/feeds.opml", {b"host": b"h"}).body
    titles = [o.get("text") for o in ET.fromstring(opml).findall("./body/outline")]
    assert titles == ['a<b>&"c', 'a<b>&"c: <i>x</i>']  # escaped in the XML, read back as written


def test_healthz_and_metrics(srv: Running) -> None:
    ok = srv.client.get("/healthz")
    assert ok.status_code == 200 and ok.json() == {"status": "ok"}
    srv.healthy = False
    assert srv.client.get("/healthz").status_code == 503
    assert srv.client.get("/healthz/live").status_code == 200
    srv.metrics.deliveries.labels("public", "sent").inc(3)
    metrics = srv.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'paper_monitor_deliveries_total{channel="public",state="sent"} 3.0' in metrics.text


def test_http_details_keepalive_pipelining_head_and_bad_requests(srv: Running) -> None:
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"HEAD /feeds/public.xml HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = _read_all(sock)
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert b"First paper" not in raw  # HEAD has no body

    assert srv.client.post("/healthz").status_code == 405
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=5) as sock:
        sock.sendall(b"GET /" + b"a" * 20000)
        assert _read_all(sock).startswith(b"HTTP/1.1 431")


def test_bare_lf_line_ends_are_answered_at_once(srv: Running) -> None:
    # It waited for a CRLF CRLF that never came: the client hung until the 30 s idle timeout.
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=3) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\nHost: x\n\n"
                     b"GET /feeds/public.xml HTTP/1.1\r\nHost: x\n\r\n"
                     b"HEAD /healthz HTTP/1.1\nHost: x\nConnection: close\n\n")
        raw = _read_all(sock)
    assert raw.count(b"HTTP/1.1 200 OK") == 3 and b"First paper" in raw
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=3) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\rX-Smuggled: 1\r\n\r\n")  # a bare CR
        assert _read_all(sock).startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("ending", [b"\r\n\r\n", b""])
def test_a_head_over_16_kb_is_refused_though_it_came_whole(srv: Running, ending: bytes) -> None:
    # It was refused only while its end had not come: in one read, 100 KB were taken.
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=3) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + ending)
        assert _read_all(sock).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", srv.server.port), timeout=3) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 16_000
                     + b"\r\nConnection: close\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200")


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_failing_request_is_logged_without_the_feed_token(
    srv: Running, caplog: pytest.LogCaptureFixture
) -> None:
    del srv.feeds.items["private"]  # rendering the private feed now fails inside the server
    with caplog.at_level("ERROR", logger="monitor.server"):
        assert srv.client.get("/feeds/s3cret-token/private.xml").status_code == 500
        assert srv.client.get("/feeds/private.atom", params={"token": "s3cret-token"}).status_code == 500
    assert "private.xml" in caplog.text and "private.atom" in caplog.text
    assert "s3cret-token" not in caplog.text
