"""Sources: one pure parser per page format, ``parse(bytes, today) -> list[Paper]``, chosen by content.

``parse_page`` is the one entry point; ``detect_format`` names the format of unknown bytes, and
``decode`` turns page bytes into text (BOM, UTF-8, declared charset) or says why it cannot.
"""

from __future__ import annotations

import codecs
import importlib
import re
from collections.abc import Callable
from datetime import date
from typing import cast

from monitor.errors import ParseError
from monitor.models import Paper

Parser = Callable[[bytes, date], list[Paper]]

# format name -> module in this package with ``parse(data, today)``; imported on first use so a
# command that reads one format does not load the HTML parser, say.
_MODULES = {
    "hf-json": "hf_json",
    "hf-html": "hf_html",
    "hf-text": "hf_text",
    "arxiv-rss": "arxiv",
    "arxiv-atom": "arxiv",
}
_PARSE_NAMES = {"arxiv-rss": "parse_rss", "arxiv-atom": "parse_atom"}
FORMATS: tuple[str, ...] = ("auto", *_MODULES)

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_DECLARED = re.compile(rb"""(?:encoding|charset)\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
_NON_ASCII = re.compile(r"[^\x00-\x7f\ufffd]")
_JSON_START = re.compile(r'\s*(?:\[\s*(?:[\[{\]"]|$)|\{\s*(?:["}]|$))')
# Skips the XML declaration, comments, processing instructions and a doctype to the first tag.
_FIRST_TAG = re.compile(
    r"\s*(?:(?:<\?.*?\?>|<!--.*?-->|<![A-Za-z][^\[>]*(?:\[.*?\]\s*)?>)\s*)*<([A-Za-z][\w:.-]*)", re.S
)


def decode(data: bytes) -> str:
    """Page bytes as text: by BOM, else UTF-8 (with a few stray bytes replaced), else the declared
    charset, else Windows-1252.

    Raises ParseError for an empty input or for binary data (control bytes where text would be).
    """
    if not data.strip():
        raise ParseError("empty input")
    text = _decode(data)
    sample = text[:4096]
    if "\x00" in sample or len(_CONTROL.findall(sample)) > max(2, len(sample) // 50):
        raise ParseError("binary data, not a page")
    return text


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    # UTF-8 before any declaration: bytes that are valid UTF-8 are UTF-8 in practice, and a
    # "charset=" inside an abstract must not turn a UTF-8 page into mojibake.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # A UTF-8 page with a stray byte of another encoding: read as Windows-1252, its every "•" and
    # "é" would turn to mojibake; the stray byte alone is lost instead.
    text = data.decode("utf-8", errors="replace")
    if len(_NON_ASCII.findall(text)) > text.count("\ufffd"):
        return text
    declared = _DECLARED.search(data[:1024])
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError, ValueError):
            pass  # a false or wrong declaration: fall back to the usual Windows-1252
    return data.decode("cp1252", errors="replace")


def detect_format(data: bytes) -> str:
    """The format of a page, from its content: hf-json, hf-html, arxiv-rss, arxiv-atom or hf-text.

    Raises ParseError (one line) for empty or binary input, HTML without Hugging Face papers and
    XML that is neither RSS nor Atom.
    """
    return _detect(decode(data))


def _detect(text: str) -> str:
    head = text[:4096].lstrip("\ufeff \t\r\n")
    if _JSON_START.match(head):
        return "hf-json"
    tag = _FIRST_TAG.match(head)
    if not head.startswith("<") or tag is None:
        return "hf-text"
    root = tag.group(1).lower()
    local = root.rpartition(":")[2]
    if local == "rss" or root == "rdf:rdf":
        return "arxiv-rss"
    if local == "feed":
        return "arxiv-atom"
    if 'data-target="DailyPapers"' in text or _has_paper_cards(text):
        return "hf-html"
    if root in ("html", "head", "body", "div", "meta", "title") or head[:15].lower() == "<!doctype html":
        raise ParseError("an HTML page without Hugging Face papers (no DailyPapers data, no paper cards)")
    raise ParseError(f"an XML or markup document <{tag.group(1)}> that is neither RSS nor Atom")


def one_line(text: object, limit: int = 200) -> str:
    """Untrusted page text made fit for a one-line error: printable, single-spaced, bounded."""
    printable = "".join(ch if ch.isprintable() else " " for ch in str(text)[: limit * 4])
    short = " ".join(printable.split())
    return short if len(short) <= limit else short[: limit - 1] + "…"


def _has_paper_cards(text: str) -> bool:
    """Cards of HF papers: ``<article>``s and links to ``/papers/<id>`` (hf_html checks closer)."""
    return "<article" in text and ('href="/papers/' in text or "href='/papers/" in text)


def get_parser(fmt: str) -> Parser:
    """The ``parse(data, today)`` function of a format; ParseError names the known ones."""
    module_name = _MODULES.get(fmt)
    if module_name is None:
        raise ParseError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return cast(Parser, getattr(module, _PARSE_NAMES.get(fmt, "parse")))


def parse_page(data: bytes, fmt: str = "auto", *, today: date | None = None) -> list[Paper]:
    """The papers of a page, in page order. ``fmt="auto"`` detects the format from the content.

    ``today`` dates the page (for dates shown without a year); default: today. ``[]`` is a page
    with no papers (an empty Daily Papers day, an arXiv holiday). Raises ParseError, one line,
    for anything that is not a page of the format.
    """
    if fmt == "auto":
        fmt = detect_format(data)
    return get_parser(fmt)(data, today or date.today())
