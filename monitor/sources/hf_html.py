"""The Hugging Face papers listing page (``huggingface.co/papers``), server-rendered HTML.

The page carries the API items in the ``data-props`` JSON of its DailyPapers element; where that
is missing or unreadable (a redesign), the ``<article>`` cards give title, id, upvotes and the
author count, so a changed page degrades instead of breaking.
"""

from __future__ import annotations

import json
import re
from datetime import date

from selectolax.lexbor import LexborHTMLParser, LexborNode

from monitor.errors import ParseError
from monitor.models import Paper, clean_arxiv_id, has_words
from monitor.sources import decode
from monitor.sources.hf_json import PAPER_URL, papers_from_json

SOURCE = "hf-html"
_PAPER_HREF = re.compile(r"^(?:https://huggingface\.co)?/papers/([^/?#]+)/?(?:[?#].*)?$")
_AUTHORS = re.compile(r"\b(\d+)\s+authors?\b")
_COUNT = re.compile(r"^\d{1,9}$")


def parse(data: bytes, today: date) -> list[Paper]:
    """The papers of a listing page, in page order; ParseError for a page without papers data."""
    tree = LexborHTMLParser(decode(data))
    page_day = _page_day(tree)
    props = tree.css_first('[data-target="DailyPapers"]')
    raw = props.attributes.get("data-props") if props is not None else None
    if raw:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            value = None  # unreadable data: the cards below still show the papers
        if isinstance(value, dict) and isinstance(value.get("dailyPapers"), list):
            return papers_from_json(value, SOURCE, page_day)
    papers = _from_cards(tree, page_day)
    if papers is None:
        raise ParseError("an HTML page without Hugging Face papers (no DailyPapers data, no paper cards)")
    return papers


def _page_day(tree: LexborHTMLParser) -> date | None:
    """The listing's day, from its ``<time datetime>`` (the date picker of a daily page)."""
    node = tree.css_first("time[datetime]")
    stamp = node.attributes.get("datetime") if node is not None else None
    try:
        return date.fromisoformat(stamp[:10]) if stamp else None
    except ValueError:
        return None


def _from_cards(tree: LexborHTMLParser, page_day: date | None) -> list[Paper] | None:
    """Papers from the ``<article>`` cards; None when the page has no paper card at all."""
    papers: list[Paper] = []
    found = False
    for card in tree.css("article"):
        paper_id, title = _card_link(card)
        if paper_id is None:
            continue
        found = True
        if not has_words(title):
            continue  # a card without a readable title: skip it, keep the others
        authors = _AUTHORS.search(card.text(separator=" "))
        arxiv_id = clean_arxiv_id(paper_id)
        papers.append(
            Paper.build(
                title=title,
                source=SOURCE,
                arxiv_id=arxiv_id,
                authors_count=int(authors.group(1)) if authors else None,
                published=page_day,
                upvotes=_upvotes(card),
                url=PAPER_URL + arxiv_id if arxiv_id else None,
            )
        )
    return papers if found else None


def _card_link(card: LexborNode) -> tuple[str | None, str | None]:
    """The paper id of a card and its title: the heading's link, else any link to a paper."""
    paper_id: str | None = None
    for link in card.css("h3 a[href], h2 a[href], a[href]"):
        match = _PAPER_HREF.match(link.attributes.get("href") or "")
        if match is None:
            continue
        paper_id = paper_id or match.group(1)
        title = link.text(strip=True)
        if title and match.group(1) == paper_id:
            return paper_id, title
    return paper_id, None


def _upvotes(card: LexborNode) -> int | None:
    """The vote count: the bare number in the upvote box (the block with the vote checkbox)."""
    for box in card.css("div:has(> input[type=checkbox]), label:has(> input[type=checkbox])"):
        for node in box.css("div"):
            text = node.text(strip=True)
            if _COUNT.match(text):
                return int(text)
    return None
