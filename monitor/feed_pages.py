"""The server's pages about its feeds: ``/``, the public feeds for people and the links feed readers
discover them by, and ``/feeds.opml``, the same as a list a feed reader imports at once."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from html import escape
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from monitor.config import RssConfig

# The rules' feeds named per channel (100,000 rules would make pages of megabytes no one reads).
LISTED_RULES = 500

# Per public channel, its feeds as (title, path, query): the path takes ``.xml`` or ``.atom``.
Listed = list[list[tuple[str, str, str]]]


def public_feeds(channels: Mapping[str, RssConfig],
                 feed_rules: Callable[[str], Collection[str]]) -> tuple[Listed, int]:
    """The feeds of the channels without a ``token``: each channel's, then its rules', the first
    ``LISTED_RULES`` by name; and how many rules' feeds that leaves out."""
    found: Listed = []
    left_out = 0
    for name, cfg in channels.items():
        if cfg.token:
            continue
        path = f"/feeds/{quote(name, safe='')}"
        rules = sorted(feed_rules(name))
        left_out += max(0, len(rules) - LISTED_RULES)
        found.append([(name, path, "")] + [(f"{name}: {rule}", path, f"?rule={quote(rule, safe='')}")
                                           for rule in rules[:LISTED_RULES]])
    return found, left_out


def index_page(listed: tuple[Listed, int], private: int) -> bytes:
    """The front page: the public feeds, and how many private ones are not shown."""
    channels, left_out = listed
    links: list[str] = []
    items: list[str] = []
    for feeds in channels:
        parts = []
        for title, path, query in feeds:
            rss, atom = escape(f"{path}.xml{query}"), escape(f"{path}.atom{query}")
            links.append(f'<link rel="alternate" type="application/rss+xml" title="{escape(title)}" '
                         f'href="{rss}">')
            parts.append(f'{escape(title)}: <a href="{rss}">RSS</a> · <a href="{atom}">Atom</a>')
        items.append("<li>" + "<br>\n".join(parts) + "</li>")
    if left_out:
        items.append(f"<li>and {left_out} more rules' feeds, not listed: "
                     "<code>/feeds/&lt;channel&gt;.xml?rule=&lt;rule&gt;</code></li>")
    if items:
        items.append('<li>all of them for a feed reader to import: <a href="/feeds.opml">OPML</a></li>')
    note = f"<p>{private} private feed{'s' if private != 1 else ''} not listed.</p>" if private else ""
    body = "\n".join(items) or "<li>no public feeds (add a channel of type rss)</li>"
    page = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>paper-monitor</title>\n'
            + "\n".join(links) + "\n</head><body>\n<h1>paper-monitor</h1>\n<h2>Feeds</h2>\n<ul>\n"
            + body + f"\n</ul>\n{note}\n"
            '<p><a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></p>\n</body></html>\n')
    return page.encode()


def opml(listed: tuple[Listed, int], headers: Mapping[bytes, bytes]) -> bytes:
    """The public feeds (RSS) as an OPML subscription list, with absolute URLs on the host (and
    scheme, behind a proxy that says it) the request came by."""
    host = headers.get(b"host", b"127.0.0.1").decode("latin-1")
    scheme = headers.get(b"x-forwarded-proto", b"http").decode("latin-1").split(",")[0].strip()
    root = f"{'https' if scheme == 'https' else 'http'}://{host}"
    outlines = []
    for feeds in listed[0]:
        for title, path, query in feeds:
            url = f"{root}{path}.xml{query}"
            outlines.append(f'<outline type="rss" text={quoteattr(title)} title={quoteattr(title)} '
                            f"xmlUrl={quoteattr(url)}/>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">\n'
            "<head><title>paper-monitor feeds</title></head>\n<body>\n"
            + "".join(f"{line}\n" for line in outlines) + "</body>\n</opml>\n").encode()
