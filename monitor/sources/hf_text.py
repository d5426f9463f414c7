"""Parser for plain-text renderings of Hugging Face papers listings (format ``hf-text``).

An entry is a title paragraph, an abstract paragraph and, when the page shows it, a block:
``  • N authors`` or an organization line (``<id> <name>``), a ``·`` line, a date, upvotes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from typing import NamedTuple

from monitor.errors import ParseError
from monitor.models import Paper, has_words
from monitor.sources import decode

SOURCE = "hf-text"

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
# "Oct 8, 2024", "Oct 7", either followed by the upvote count: "Oct 7 3", "Sep 5, 2025 12".
# A year always follows a comma on these pages, so "Oct 7 2024" reads as 2024 upvotes.
_DATE = re.compile(
    r"(Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?\s+(\d{1,2})"
    r"(?:,\s*(\d{4}))?(?:\s+(\d{1,9}))?",
    re.I,
)
_AUTHORS = re.compile(r"(?:[•∙·]\s*)?(\d{1,6})\s+authors?", re.I)
_DOTS = frozenset("·•⋅∙")
_COUNT = re.compile(r"\d{1,9}")
# An arXiv id inside a paper URL (not a bare "arXiv:..." in prose, which may cite another paper).
_PAPER_URL = re.compile(
    r"(?:https?://)?(?:www\.)?(?:huggingface\.co/papers|arxiv\.org/(?:abs|pdf))/(\d{4}\.\d{4,5})(?:v\d+)?",
    re.I,
)
_MARKUP = re.compile(r"\s*<[A-Za-z!?/]")
# Page chrome of huggingface.co/papers: header, navigation, footer. Compared casefolded.
_STRONG_CHROME = frozenset({
    "get trending papers in your email inbox!", "byak and the research community",
    "by ak and the research community", "daily papers",
})
_CHROME = _STRONG_CHROME | frozenset({
    "new", "subscribe", "trending papers", "papers", "search", "submit", "submit a paper", "daily",
    "weekly", "monthly", "trending", "top", "previous", "prev", "next", "load more", "show more",
    "more papers", "hugging face", "models", "datasets", "spaces", "posts", "docs", "enterprise",
    "pricing", "log in", "login", "sign up", "system theme", "company", "tos", "privacy", "about",
    "jobs", "website", "learn", "social", "github", "twitter", "linkedin", "discord", "upvote",
    "view paper", "paper page",
})
_PAGINATION = re.compile(
    r"(?:[«‹<←]\s*)?(?:page\s+\d+(?:\s+of\s+\d+)?|previous|prev|next|load more)(?:\s*[»›>→])?"
    r"|[\d\s.…«»‹›<>←→|]+|©.*|\(c\)\s*\d{4}.*|submitted by\s.*|published on\s.*",
    re.I,
)

# An entry with no block under it (no authors, date, organization or upvotes) is a paper only with
# an abstract of at least this many words: abstracts run to 100-300 words, while the notices a site
# serves with a 200 in a listing's place (rate limits, maintenance, "something went wrong") are short.
_BARE_ABSTRACT_WORDS = 30
# A page with no block at all must show at least this many such papers.
_BARE_PAGE_PAPERS = 2

# Token kinds.
_TEXT, _AUTH, _DOT, _DATE_K, _URL, _NUM, _CHROME_K = range(7)


class _Tok(NamedTuple):
    kind: int
    text: str
    # _TEXT: no blank line between it and the next token (the org line sits right on its "·");
    # _CHROME_K: a line of the page header proper, which tells a listing from other text.
    tight: bool = False
    date: tuple[int, int, int | None, int | None] | None = None  # month, day, year, upvotes


def parse(data: bytes, today: date) -> list[Paper]:
    """The papers of a plain-text listing, in page order; ``today`` dates year-less dates.

    Raises ParseError (one line) for binary, markup or JSON input and for text without entries.
    """
    text = _decode(data)
    tokens = list(_tokenize(text))
    papers, evidence, blocks = _entries(tokens, today)
    if not papers:
        raise ParseError("no papers found in the plain-text listing (no title/abstract entries)")
    if not blocks and len(papers) < _BARE_PAGE_PAPERS:
        # One title over one paragraph, the listing's header above it or not: a notice as likely
        # as a paper ("down for maintenance"); a listing shows many, or each with its block.
        raise ParseError("not a papers listing: one title and paragraph, without authors, date or upvotes")
    if not evidence and not _prose_like(papers):
        raise ParseError("not a papers listing: no page header, no date blocks, no abstracts under titles")
    return papers


def _decode(data: bytes) -> str:
    """The page as text (``monitor.sources.decode``: a BOM, UTF-8, Windows-1252 and the like), if it
    is plain text: not markup, not JSON, no NUL anywhere (the shared check reads only the head)."""
    text = decode(data)
    if "\x00" in text:
        raise ParseError("binary data (NUL bytes), not a plain-text listing")
    head = text.lstrip()[:1]
    if head == "<" and _MARKUP.match(text):
        raise ParseError("HTML/XML markup, not a plain-text listing")
    if head in ("[", "{"):
        try:
            json.loads(text)
        except ValueError:
            pass  # a title that starts with a bracket ("[Re] ..."): plain text after all
        else:
            raise ParseError("JSON, not a plain-text listing")
    return text


def _tokenize(text: str) -> Iterator[_Tok]:
    """Blank-line separated paragraphs become _TEXT tokens; block lines are tokens of their own."""
    para: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if para:
                yield _text_token(para, tight=False)
                para = []
            continue
        if len(line) == 1 and line in _DOTS:
            if para:
                # The line right on the "·" is the organization line, even without a blank above it.
                if len(para) > 1:
                    yield _text_token(para[:-1], tight=True)
                yield _Tok(_TEXT, para[-1], tight=True)  # whatever it looks like, it is on the "·"
                para = []
            yield _Tok(_DOT, line)
            continue
        token = _block_token(line)
        if token is None:
            para.append(line)
            continue
        if para:
            yield _text_token(para, tight=True)
            para = []
        yield token
    if para:
        yield _text_token(para, tight=False)


def _block_token(line: str) -> _Tok | None:
    """An authors, date or paper-URL line as its token; None for ordinary text."""
    first = line[0]
    if first in "•∙·" or (first.isdigit() and line.endswith(("authors", "author"))):
        m = _AUTHORS.fullmatch(line)
        return _Tok(_AUTH, m.group(1)) if m else None
    if len(line) <= 40 and first.isalpha():
        m = _DATE.fullmatch(line)
        if m:
            month = _MONTHS[m.group(1)[:3].lower()]
            year = int(m.group(3)) if m.group(3) else None
            votes = int(m.group(4)) if m.group(4) else None
            return _Tok(_DATE_K, line, date=(month, int(m.group(2)), year, votes))
    if "/" in line and " " not in line:
        m = _PAPER_URL.search(line)
        if m:
            return _Tok(_URL, line)
    return None


def _text_token(lines: list[str], *, tight: bool) -> _Tok:
    text = lines[0] if len(lines) == 1 else " ".join(lines)
    if len(text) >= 80:  # titles and abstracts: chrome and pagination are short
        return _Tok(_TEXT, text, tight=tight)
    folded = text.casefold()
    if folded in _CHROME:
        return _Tok(_CHROME_K, text, tight=folded in _STRONG_CHROME)
    if _COUNT.fullmatch(text):
        return _Tok(_NUM, text)
    if _PAGINATION.fullmatch(text):
        return _Tok(_CHROME_K, text)
    return _Tok(_TEXT, text, tight=tight)


class _Entry(NamedTuple):
    title: str
    abstract: str | None
    authors_count: int | None
    org: str | None
    when: tuple[date | None, int | None] | None
    url: str | None
    had_block: bool


def _entries(tokens: list[_Tok], today: date) -> tuple[list[Paper], bool, bool]:
    """Walk the tokens once: title, abstract, optional block. Returns papers, listing evidence, and
    whether any paper had its block."""
    entries: list[_Entry] = []
    evidence = False  # the page header, or at least one date block: this is a listing for sure
    pending_url: str | None = None
    n = len(tokens)
    i = 0
    while i < n:
        tok = tokens[i]
        if tok.kind == _URL:
            # A link line above a title, or one more after an entry that has its link already.
            pending_url = pending_url or tok.text
            i += 1
            continue
        if tok.kind != _TEXT:
            # Chrome, a listing date above the entries, pagination, a stray block line: skip.
            evidence = evidence or (tok.kind == _CHROME_K and tok.tight)
            i += 1
            continue
        votes: int | None = None
        if _is_prose(tok.text):
            # An abstract where a title should be: the entry before took this one's title for its
            # abstract (it had none, or was a heading we do not know). Re-pair instead of cascading.
            prev = entries[-1] if entries else None
            i += 1
            if prev is None or prev.had_block or prev.abstract is None or _is_prose(prev.abstract):
                continue
            entries.pop()
            title, abstract, url = prev.abstract, tok.text, prev.url
        else:
            title = tok.text
            url, pending_url = pending_url, None
            i, url = _urls(tokens, i + 1, url)
            # Chrome or a bare count between title and abstract ("Submitted by ...", "12").
            while i < n and tokens[i].kind in (_CHROME_K, _NUM):
                if tokens[i].kind == _NUM and votes is None:
                    votes = int(tokens[i].text)
                i += 1
            abstract = None
            if i < n and tokens[i].kind == _TEXT and not _is_org(tokens, i, in_block=False):
                abstract = tokens[i].text
                i += 1
        i, url = _urls(tokens, i, url)
        count, org, when, i, had_block = _block(tokens, i, today)
        i, url = _urls(tokens, i, url)
        if abstract is None and not had_block:
            continue  # a lone line (footer, a heading we do not know): not a paper
        if votes is not None and (when is None or when[1] is None):
            when = (when[0] if when else None, votes)
        evidence = evidence or had_block
        entries.append(_Entry(title, abstract, count, org, when, url, had_block))
    # A short notice under a heading ("Too Many Requests" / "You have sent too many requests ..."),
    # kept above only so that the entries after it pair up right, is no paper.
    entries = [e for e in entries if e.had_block or len((e.abstract or "").split()) >= _BARE_ABSTRACT_WORDS]
    # A title of nothing but control characters, dots or dashes is no title (models.has_words).
    papers = [paper for paper in (_paper(*e[:6]) for e in entries) if has_words(paper.title)]
    return papers, evidence, any(e.had_block for e in entries)


def _is_prose(text: str) -> bool:
    """Too long for a title: paper titles stay well under 300 characters."""
    return len(text) >= 300 and text.count(" ") >= 30


def _urls(tokens: list[_Tok], i: int, url: str | None) -> tuple[int, str | None]:
    """Take a link line into the entry at hand; a second one is left for the next entry."""
    if url is None and i < len(tokens) and tokens[i].kind == _URL:
        return i + 1, tokens[i].text
    return i, url


def _is_org(tokens: list[_Tok], i: int, *, in_block: bool) -> bool:
    """Whether the text token at ``i`` is an organization line: it leads (maybe via authors) to "·".

    Where an abstract is expected, only a line sitting right on the "·" counts (no blank line).
    """
    tok = tokens[i]
    if len(tok.text) > 120 or not (in_block or tok.tight):
        return False
    j = i + 1
    if in_block and j < len(tokens) and tokens[j].kind == _AUTH:
        j += 1
    return j < len(tokens) and tokens[j].kind == _DOT


def _block(
    tokens: list[_Tok], i: int, today: date
) -> tuple[int | None, str | None, tuple[date | None, int | None] | None, int, bool]:
    """Read an optional block at ``i``: authors and/or org line, "·", date with upvotes."""
    n = len(tokens)
    count: int | None = None
    org: str | None = None
    start = i
    for _ in range(2):
        if i >= n:
            break
        tok = tokens[i]
        if tok.kind == _AUTH and count is None:
            count = int(tok.text)
        elif tok.kind == _TEXT and org is None and _is_org(tokens, i, in_block=True):
            org = tok.text
        else:
            break
        i += 1
    when: tuple[date | None, int | None] | None = None
    dot = i < n and tokens[i].kind == _DOT
    if dot:
        i += 1
    # The date needs the "·" or an authors/org line before it; a bare date is a section heading.
    if (dot or i > start) and i < n and tokens[i].kind == _DATE_K:
        month, day, year, votes = tokens[i].date or (0, 0, None, None)
        i += 1
        if votes is None and i < n and tokens[i].kind == _NUM:
            votes = int(tokens[i].text)  # the count on a line of its own
            i += 1
        when = (_resolve(month, day, year, today), votes)
    return count, org, when, i, i > start


def _resolve(month: int, day: int, year: int | None, today: date) -> date | None:
    """The date shown; without a year, the latest such day on or before ``today``."""
    if year is not None:
        try:
            return date(year, month, day)
        except ValueError:
            return None
    # Today's year, else the year before; Feb 29 may need to go back to the last leap year.
    for y in range(today.year, today.year - 8, -1):
        try:
            candidate = date(y, month, day)
        except ValueError:
            continue
        if candidate <= today:
            return candidate
    return None


def _paper(
    title: str,
    abstract: str | None,
    count: int | None,
    org: str | None,
    when: tuple[date | None, int | None] | None,
    url: str | None,
) -> Paper:
    org_id = org_name = None
    if org is not None:
        org_id, _, rest = org.partition(" ")
        org_name = rest.strip() or org_id
    link = _paper_link(url, title)
    return Paper.build(
        title=title,
        source=SOURCE,
        arxiv_id=link[1] if link else None,
        abstract=abstract,
        authors=[],
        authors_count=count,
        organization=org_name,
        organization_id=org_id,
        published=when[0] if when else None,
        upvotes=when[1] if when else None,
        url=link[0] if link else None,
    )


def _paper_link(url: str | None, title: str) -> tuple[str, str] | None:
    """(url, arXiv id) from a link line, else a paper URL in the title. Never one in the abstract:
    prose links to the papers it builds on ("see arxiv.org/abs/..."), and taking such an id would
    give this paper a stored paper's key (no alert, and the stored title overwritten)."""
    for text in (url, title):
        # Substring tests first: the regex is for the few lines that may hold a paper URL.
        if not text or "/" not in text:
            continue
        low = text.lower()
        if "arxiv.org/" not in low and "huggingface.co/papers/" not in low:
            continue
        m = _PAPER_URL.search(text)
        if m:
            link = m.group(0)
            return (link if link.lower().startswith("http") else f"https://{link}"), m.group(1)
    return None


def _prose_like(papers: list[Paper]) -> bool:
    """Without header or blocks, accept only if most abstracts read as prose and titles as titles."""
    if any(len(p.title) > 400 for p in papers):
        return False
    prose = sum(1 for p in papers if p.abstract and p.abstract.count(" ") >= 5)
    return prose * 2 >= len(papers)
