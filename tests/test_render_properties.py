"""Whatever a scraped page puts in a paper (markup, mrkdwn, mentions, control characters, line
breaks, odd links), every channel's rendering stays what it says: Slack text with no angle bracket
but our own links, one-line email headers and an HTML part with only http(s) links and no markup of
the page's, and feeds that parse (feedparser, ElementTree) with the title as written.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date
from typing import Any

import feedparser
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from monitor.channels.base import Alert, Batch
from monitor.channels.email_body import compose
from monitor.channels.rss import render_feed, xml_text
from monitor.channels.slack import MAX_SECTION, build_messages, paper_section
from monitor.config import EmailConfig, RssConfig
from monitor.models import Paper

HOSTILE = st.sampled_from(["<b>", "</p>", "<script>alert(1)</script>", "&amp;", "&", "<!channel>", "<@U123>",
                           "*bold*", "_it_", "`x`", "|", "\r\n", "\n", "\x00", "\x07", "\x1b[31m", "\u2028",
                           "\ufeff", "é", "日本", "]]>", '"', "'", "javascript:x", "@here", "\ud7ff",
                           "\x85", "\x9b", "\x7f", "\u202e", "\u2066"])
TEXT = st.lists(HOSTILE | st.text(max_size=8), min_size=1, max_size=8).map("".join)
URLS = st.sampled_from([None, "https://huggingface.co/papers/2401.00001", "javascript:alert(1)",
                        "https://x.org/?a=<b>&c=|d>", "http://x.org/a b", "data:text/html,<b>", "//x.org/p"])
IDS = st.none() | st.sampled_from(["2401.00001", "2401.00002"])
# C1 controls (feedparser reads them as Windows-1252) and bidirectional overrides: never shown.
INVISIBLE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
SLACK_LINK = re.compile(r"<https?://[^|<>\s]*\|[^<>]*>")


@st.composite
def papers(draw: st.DrawFn) -> Paper:
    title = draw(TEXT)
    if not title.strip():
        title = "untitled " + title
    return Paper.build(title=title, source="hf-json", abstract=draw(st.none() | TEXT),
                       authors=draw(st.lists(TEXT, max_size=3)), organization=draw(st.none() | TEXT),
                       upvotes=draw(st.none() | st.integers(0, 10**6)), published=date(2026, 6, 12),
                       url=draw(URLS), arxiv_id=draw(IDS))


def _batch(found: list[Paper], rule: str, reasons: list[str]) -> Batch:
    return Batch("team", rule, [Alert(p, reasons, n, rule) for n, p in enumerate(found)], "k")


BATCHES = st.builds(_batch, st.lists(papers(), min_size=1, max_size=3), TEXT, st.lists(TEXT, max_size=2))
SETTINGS = settings(max_examples=100, deadline=None)


@SETTINGS
@given(batch=BATCHES)
def test_slack_text_has_no_markup_but_its_own_links(batch: Batch) -> None:
    for message in build_messages(batch):
        texts = [message.text] + [b["text"]["text"] for b in message.blocks if b.get("type") == "section"]
        for text in texts:
            bare = re.sub(r"(?m)^> ", "", SLACK_LINK.sub("", text))  # (our quote of the abstract)
            assert "<" not in bare and ">" not in bare, text  # no mention, no link of the page's
            assert not re.search(r"&(?!amp;|lt;|gt;)", bare), text  # & only as Slack's entities
            assert not INVISIBLE.search(text), text
        assert not INVISIBLE.search(message.blocks[0]["text"]["text"])  # the header: the rule's name
        for link in SLACK_LINK.findall("".join(texts)):
            assert link.startswith(("<https://", "<http://")), link


BIG = st.text(st.sampled_from("&|<>a 😀é\u200d"), min_size=200, max_size=3000)
# Up to 500 characters, Slack's escaping of "&" makes up to 2,500.
QUERY = st.text(st.sampled_from("&&&|<>a😀"), min_size=300, max_size=480)


@settings(max_examples=40, deadline=None)
@given(title=BIG, abstract=BIG, url=QUERY, authors=st.lists(BIG, max_size=5), org=BIG, rule=BIG,
       reasons=st.lists(BIG, max_size=5))
def test_a_slack_section_is_within_slacks_limit_whatever_the_paper(
        title: str, abstract: str, url: str, authors: list[str], org: str, rule: str,
        reasons: list[str]) -> None:
    found = Paper.build(title=title or "t", source="hf-json", abstract=abstract, authors=authors,
                        organization=org, url="https://x.org/?" + url.replace(" ", ""), upvotes=10**6)
    text = paper_section(Alert(found, reasons, 1, rule), rule)["text"]["text"]
    assert len(text.encode("utf-16-le")) // 2 <= MAX_SECTION  # in UTF-16 units: an emoji is two


@SETTINGS
@given(batch=BATCHES)
def test_email_headers_are_one_line_and_the_html_links_only_http(batch: Batch) -> None:
    cfg = EmailConfig(name="me", type="email", smtp_url="smtp+plain://127.0.0.1:25",
                      **{"from": "Paper Monitor <m@example.org>"}, to=["me@example.org"])
    msg = compose(cfg, batch)
    raw = msg.as_bytes()  # serializes: no header the policy refuses
    for name in ("Subject", "X-Paper-Monitor-Rule"):
        value = str(msg[name])
        assert "\r" not in value and "\n" not in value, (name, value)
    html_part = msg.get_body(("html",))
    assert html_part is not None and raw
    tree = LexborHTMLParser(html_part.get_content())
    assert not tree.css("script, b, p > p, iframe")  # none of the page's own markup became markup
    for anchor in tree.css("a"):
        assert (anchor.attributes.get("href") or "").startswith(("https://", "http://"))


def _atom(root: ET.Element, path: str) -> list[ET.Element]:
    return root.findall(path, {"a": "http://www.w3.org/2005/Atom"})


class Rows:
    """The sent deliveries the feed is made of: what the store's ``feed_rows`` would return."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def feed_rows(self, channel: str, limit: int, include: list[int] | None = None,
                  rule: str | None = None) -> list[tuple[int, str, Paper, list[str], float]]:
        return [(a.delivery_id, a.rule, a.paper, a.reasons, 1_780_000_000.0 - a.delivery_id)
                for a in self.batch.alerts]


@SETTINGS
@given(batch=BATCHES, kind=st.sampled_from(["rss", "atom"]))
def test_feeds_parse_and_show_the_titles_as_written(batch: Batch, kind: Any) -> None:
    body = render_feed(Rows(batch), RssConfig(name="feed", type="rss"), kind)
    root = ET.fromstring(body)  # well-formed XML, whatever the titles held
    assert not INVISIBLE.search(body.decode())  # (rule names and reasons are not cleaned by Paper.build)
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.bozo_exception
    by_key: dict[str, Paper] = {}
    for alert in batch.alerts:  # one item a paper: the newest row's
        by_key.setdefault(alert.paper.key, alert.paper)
    if kind == "rss":
        written = [(i.findtext("guid"), i.findtext("title")) for i in root.iter("item")]
    else:
        atom = "{http://www.w3.org/2005/Atom}"
        written = [(e.findtext(atom + "id"), e.findtext(atom + "title")) for e in _atom(root, "a:entry")]
    assert {key for key, _ in written} == set(by_key)
    for key, title in written:
        assert title == (xml_text(by_key[str(key)].title) or xml_text(str(key))), (key, title)
