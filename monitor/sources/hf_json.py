"""Hugging Face papers JSON: ``/api/daily_papers`` (current and 2024 schemas), ``/api/papers/search``
and one ``/api/papers/{id}``. ``papers_from_items`` also reads the DailyPapers data of the HTML page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import quote

from monitor.errors import ParseError
from monitor.models import Paper, clean_arxiv_id, has_words
from monitor.sources import decode, one_line

log = logging.getLogger(__name__)

SOURCE = "hf-json"
PAPER_URL = "https://huggingface.co/papers/"


def parse(data: bytes, today: date) -> list[Paper]:
    """The papers of an HF API response; ``[]`` is an empty day. ParseError for anything else."""
    return papers_from_json(load_json(decode(data)), SOURCE)


def load_json(text: str) -> Any:
    """``json.loads`` with its errors made one-line ParseErrors (deep nesting included)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except RecursionError as exc:
        raise ParseError("not valid JSON (nested too deeply)") from exc


def papers_from_json(value: Any, source: str, page_day: date | None = None) -> list[Paper]:
    """The papers of a decoded HF response: a list of items, one item, or a DailyPapers props dict."""
    if isinstance(value, list):
        return papers_from_items(value, source, page_day)
    if isinstance(value, dict):
        if isinstance(value.get("dailyPapers"), list):
            return papers_from_items(value["dailyPapers"], source, page_day or _day(value.get("date")))
        if isinstance(value.get("paper"), dict) or "title" in value:
            return papers_from_items([value], source, page_day)
        if isinstance(value.get("error"), str):  # what the API answers a bad request with
            raise ParseError(f"Hugging Face API error: {one_line(value['error'])}")
        keys = one_line(", ".join(sorted(str(k) for k in value)[:5]))
        raise ParseError(f"JSON object that is not a Hugging Face paper (keys: {keys})")
    raise ParseError(f"JSON {type(value).__name__} where a list of Hugging Face papers belongs")


def papers_from_items(items: Sequence[Any], source: str, page_day: date | None = None) -> list[Paper]:
    """Papers from API items, ``{paper: {...}, ...}`` or flat paper objects, in page order.

    ``page_day`` is the listing's day, used when an item does not say when it was on Daily Papers.
    An item that is no paper (no title, say) is left out when most items are papers: one broken
    item must not hold back the page's other papers at every poll. Mostly broken items are no page.
    """
    papers: list[Paper] = []
    problems: list[ParseError] = []
    for index, item in enumerate(items):
        try:
            papers.append(_paper(item, index, source, page_day))
        except ParseError as exc:
            problems.append(exc)
    if problems and len(problems) * 2 >= len(items):
        raise problems[0]
    for problem in problems:
        log.warning("%s: left out %s", source, problem)
    return papers


def _paper(item: Any, index: int, source: str, page_day: date | None) -> Paper:
    if not isinstance(item, dict):
        raise ParseError(f"item {index}: a JSON {type(item).__name__}, not a paper object")
    wrapped = item.get("paper")
    paper: Mapping[str, Any] = wrapped if isinstance(wrapped, dict) else item
    title = _text(paper.get("title")) or _text(item.get("title"))
    if not has_words(title):  # none, or nothing but spaces, marks and control characters (cleaned away)
        raise ParseError(f"item {index}: a paper without a title")
    raw_id = _text(paper.get("id"))
    arxiv_id = clean_arxiv_id(raw_id)
    org = item.get("organization") or paper.get("organization")
    org = org if isinstance(org, dict) else {}
    return Paper.build(
        title=title,
        source=source,
        arxiv_id=arxiv_id,
        abstract=_text(paper.get("summary")) or _text(item.get("summary")),
        authors=_authors(paper.get("authors")),
        organization=_text(org.get("fullname")) or _text(org.get("name")),
        organization_id=_text(org.get("name")),
        # The Daily Papers day; older items only carry the time they were submitted to it.
        published=(
            _day(paper.get("submittedOnDailyAt"))
            or page_day
            or _day(item.get("publishedAt"))
            or _day(paper.get("publishedAt"))
        ),
        upvotes=_count(paper.get("upvotes")),
        url=_paper_url(arxiv_id, raw_id),
    )


def _paper_url(arxiv_id: str | None, raw_id: str | None) -> str | None:
    if arxiv_id:
        return PAPER_URL + arxiv_id
    return PAPER_URL + quote(raw_id, safe="") if raw_id and raw_id.strip() else None


def _authors(value: Any) -> list[str]:
    # ``hidden`` authors are hidden from the avatar row on the site, but they are still authors.
    if not isinstance(value, list):
        return []
    names = (a.get("name") if isinstance(a, dict) else a for a in value)
    return [name for name in names if isinstance(name, str)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    """A count as the page gives it; None for anything else, or a count no paper has (the store's
    integers, and the plain-text pages' nine digits, end below it)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9
    return value if ok else None


def _day(value: Any) -> date | None:
    """The date of an ISO timestamp (``2026-06-12T00:00:00.000Z``); None when absent or unreadable."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None
