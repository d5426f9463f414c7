"""Plain-text pieces shared by the message channels: shortening, the author line, a paper's facts.

Everything here returns unescaped text; each channel escapes for its own markup (mrkdwn, HTML).
"""

from __future__ import annotations

import re

from monitor.models import Paper

_WS = re.compile(r"\s+")
# Unicode categories Cc (C0, DEL, C1), Zl and Zp: nothing a one-line field may hold.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Bidirectional embeddings, overrides and isolates: invisible, they make a line read other than
# it is written (a rule name or reason from the config may hold them); removed, not spaced.
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_NAME_LIMIT = 80
_ORG_LIMIT = 120


def one_line(text: str) -> str:
    """Control characters (CR, LF, NUL, line and paragraph separators...) made spaces, runs collapsed;
    bidirectional overrides removed."""
    return _WS.sub(" ", _CONTROL.sub(" ", BIDI.sub("", text))).strip()


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to at most ``limit`` characters at a word boundary, ending in "…"."""
    flat = one_line(text)
    if len(flat) <= limit:
        return flat
    if limit <= 1:
        return "…"[:limit]
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def authors_line(paper: Paper) -> str | None:
    """The first three names, then "et al." and the count: ``A, B, C et al. (12 authors)``."""
    names = [shorten(name, _NAME_LIMIT) for name in paper.authors[:4]]
    count = max(paper.authors_count or 0, len(paper.authors))
    if not names:
        return f"{count} authors" if count > 1 else None
    if count <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:3])} et al. ({count} authors)"


def upvotes_line(paper: Paper) -> str | None:
    if paper.upvotes is None:
        return None
    return f"{paper.upvotes} upvote" + ("" if paper.upvotes == 1 else "s")


def facts(paper: Paper) -> list[str]:
    """The short facts shown under a title: authors, organization, upvotes, date (those known)."""
    out = [authors_line(paper)]
    out.append(shorten(paper.organization, _ORG_LIMIT) if paper.organization else None)
    out.append(upvotes_line(paper))
    out.append(paper.published.isoformat() if paper.published else None)
    return [item for item in out if item]


def reasons_line(reasons: list[str], limit: int = 300) -> str:
    """The match reasons on one line, shortened."""
    return shorten("; ".join(reasons), limit)


def snippet(abstract: str | None, limit: int = 300) -> str | None:
    """The start of the abstract, shortened at a word boundary."""
    return shorten(abstract, limit) if abstract else None


def http_url(url: str | None) -> str | None:
    """The paper's URL if it is a plain http(s) URL on one line, else ``None`` (never link anything else)."""
    if not url:
        return None
    url = url.strip()
    if not url.lower().startswith(("https://", "http://")) or any(ch.isspace() for ch in url):
        return None
    if _CONTROL.search(url) or BIDI.search(url):
        return None
    return url


def count_line(rule: str, n: int) -> str:
    """``efficient-llm: 3 new papers``."""
    return f"{rule}: {n} new paper" + ("" if n == 1 else "s")


def digest_line(n: int) -> str:
    """``daily digest: 12 new papers``."""
    return count_line("daily digest", n)
