"""arXiv: the API's Atom responses (``export.arxiv.org/api/query``) and the RSS listings
(``rss.arxiv.org/rss/<cats>``, and the older RSS 1.0 ones). An empty listing is not an error.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, datetime
from email.utils import parsedate_to_datetime

from monitor.errors import ParseError
from monitor.models import Paper, clean_arxiv_id, has_words
from monitor.sources import decode, one_line

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
ARXIV = "{http://arxiv.org/schemas/atom}"
ABS_URL = "https://arxiv.org/abs/"
# Entity declarations are how XML bombs and external-entity reads get in; no arXiv feed has one.
_UNSAFE = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.I)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_ID_IN_TEXT = re.compile(r"(?:arXiv:|/abs/|oai:arXiv\.org:)([\w.-]+/\d{7}|\d{4}\.\d{4,5})(?:v\d+)?", re.I)
_ANNOUNCE = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*(\S+)\s*(?:Abstract:\s*)?", re.I)
# The item's own id where the description states it: its head, ``arXiv:<id>v1 Announce Type: new``.
_ANNOUNCE_ID = re.compile(r"^\s*arXiv:(\S+?)\s+Announce Type:", re.I)
_OLD_TITLE_SUFFIX = re.compile(r"\s*\(arXiv:[^)]*\)\s*$")
RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"
# Only real HTML tags (older feeds): abstracts are full of bare ``<`` and ``>`` (``$n<m$``).
_TAG = re.compile(r"</?(?:a|p|i|b|em|strong|br|sub|sup|span|div|font)\b[^<>]*>", re.I)
_AUTHOR_SPLIT = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


def parse_xml(data: bytes) -> ET.Element:
    """The root element of an XML document; ParseError for unreadable XML or entity declarations."""
    text = decode(data)
    if _UNSAFE.search(text[:65536]):
        raise ParseError("XML with a DOCTYPE or ENTITY declaration (refused: entity expansion)")
    try:
        # The declaration is dropped: the text is already decoded, its encoding no longer applies.
        return ET.fromstring(_XML_DECL.sub("", text, count=1))
    except ET.ParseError as exc:
        raise ParseError(f"not well-formed XML ({exc})") from exc


def parse_atom(data: bytes, today: date) -> list[Paper]:
    """The papers of an arXiv API Atom response, or of an Atom listing; ``[]`` for a query without
    results or a day without announcements."""
    root = parse_xml(data)
    if root.tag != f"{ATOM}feed":
        raise ParseError(f"not an Atom feed (root element <{one_line(_local(root.tag), 40)}>)")
    papers = []
    for index, entry in enumerate(root.iter(f"{ATOM}entry")):
        entry_id = _child_text(entry, f"{ATOM}id") or ""
        title = _child_text(entry, f"{ATOM}title")
        if "/api/errors" in entry_id:  # the API answers a bad query with one "Error" entry
            reason = _child_text(entry, f"{ATOM}summary") or title or "unknown"
            raise ParseError(f"arXiv API error: {one_line(reason)}")
        if not has_words(title):
            raise ParseError(f"entry {index}: a paper without a title")
        arxiv_id = _find_id(entry_id)
        summary = _child_text(entry, f"{ATOM}summary")
        # The Atom listings (rss.arxiv.org/atom/<cats>) say how each paper is announced, as the
        # RSS ones do, and may give the authors in one string; the API does neither.
        announce = _child_text(entry, f"{ARXIV}announce_type") or _announce_type(summary)
        authors = [n for a in entry.iter(f"{ATOM}author") if (n := _child_text(a, f"{ATOM}name"))]
        if announce is not None and len(authors) <= 1:
            authors = _split_authors(authors[0] if authors else _child_text(entry, f"{DC}creator"))
        papers.append(
            Paper.build(
                title=title,
                source="arxiv-atom",
                arxiv_id=arxiv_id,
                abstract=_ANNOUNCE.sub("", summary, count=1) if summary else None,
                authors=authors,
                announce=announce.strip().lower() if announce else None,
                primary_category=_primary_category(entry),
                published=_iso_day(_child_text(entry, f"{ATOM}published")),
                url=ABS_URL + arxiv_id if arxiv_id else _alternate(entry),
            )
        )
    return papers


def parse_rss(data: bytes, today: date) -> list[Paper]:
    """The papers of an arXiv RSS listing; ``[]`` on days without announcements."""
    root = parse_xml(data)
    if _local(root.tag) not in ("rss", "RDF"):
        raise ParseError(f"not an RSS feed (root element <{one_line(_local(root.tag), 40)}>)")
    channel_day = _rfc822_day(_first_text(root, "pubDate")) or _iso_day(_first_text(root, f"{DC}date"))
    papers = []
    for index, item in enumerate(_items(root)):
        ns = _ns(item)  # "" in RSS 2.0, the RSS 1.0 namespace in the older feeds
        title = _child_text(item, f"{ns}title")
        # (an older listing's title ends in "(arXiv:2401.12345v1 [cs.CL])", which is not the title)
        if not title or not has_words(_OLD_TITLE_SUFFIX.sub("", title)):
            raise ParseError(f"item {index}: a paper without a title")
        link = _child_text(item, f"{ns}link")
        guid = _child_text(item, "guid")
        description = _child_text(item, f"{ns}description")
        arxiv_id = _item_id(item, guid, link, title, description)
        day = _rfc822_day(_child_text(item, "pubDate")) or _iso_day(_child_text(item, f"{DC}date"))
        announce = _child_text(item, f"{ARXIV}announce_type") or _announce_type(description)
        papers.append(
            Paper.build(
                title=_OLD_TITLE_SUFFIX.sub("", title),
                source="arxiv-rss",
                arxiv_id=arxiv_id,
                abstract=_abstract(description),
                authors=_split_authors(_child_text(item, f"{DC}creator")),
                announce=announce.strip().lower() if announce else None,
                published=day or channel_day,
                url=ABS_URL + arxiv_id if arxiv_id else link,
            )
        )
    return papers


def _item_id(item: ET.Element, guid: str | None, link: str | None, title: str,
             description: str | None) -> str | None:
    """The item's own arXiv id: from its guid, its link (or RSS 1.0 ``rdf:about``), the older titles'
    ``(arXiv:<id>v1 [cs.CL])`` suffix, or the description's ``arXiv:<id> Announce Type:`` head. Not
    from anywhere else in the description: an abstract cites other papers by their ids."""
    suffix = _OLD_TITLE_SUFFIX.search(title)
    head = _ANNOUNCE_ID.match(description) if description else None
    for text in (guid, link, item.get(RDF_ABOUT), suffix and suffix.group(0), head and head.group(0)):
        if found := _find_id(text):
            return found
    return None


def _items(root: ET.Element) -> Iterator[ET.Element]:
    """RSS 2.0 ``channel/item`` or RSS 1.0 ``item`` (in the RSS 1.0 namespace), in order."""
    for element in root.iter():
        if _local(element.tag) == "item":
            yield element


def _abstract(description: str | None) -> str | None:
    """The abstract of an item description: HTML stripped, the ``arXiv:… Announce Type:`` head cut."""
    if not description:
        return None
    text = _TAG.sub(" ", description)
    return _ANNOUNCE.sub("", text, count=1) or None


def _primary_category(entry: ET.Element) -> str | None:
    found = entry.find(f"{ARXIV}primary_category")
    term = found.get("term") if found is not None else None
    return term.strip() if term and term.strip() else None


def _announce_type(description: str | None) -> str | None:
    """``new``, ``cross``, ``replace`` or ``replace-cross``, from the description's head (feeds
    without the ``arxiv:announce_type`` element); None for older feeds, which have neither."""
    match = _ANNOUNCE.match(description) if description else None
    return match.group(1) if match else None


def _split_authors(creator: str | None) -> list[str]:
    """One ``dc:creator`` string (``A, B and C``, or HTML links in old feeds) as a list of names."""
    if not creator:
        return []
    text = _TAG.sub("", creator)
    return [name for name in _AUTHOR_SPLIT.split(text.strip()) if name]


def _find_id(text: str | None) -> str | None:
    match = _ID_IN_TEXT.search(text) if text else None
    return clean_arxiv_id(match.group(1)) if match else None


def _alternate(entry: ET.Element) -> str | None:
    for link in entry.iter(f"{ATOM}link"):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link.get("href")
    return None


def _child_text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    return "".join(child.itertext()) if child is not None else None


def _first_text(root: ET.Element, tag: str) -> str | None:
    found = next(root.iter(tag), None)
    return found.text if found is not None else None


def _ns(element: ET.Element) -> str:
    return element.tag[: element.tag.index("}") + 1] if element.tag.startswith("{") else ""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _iso_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def _rfc822_day(value: str | None) -> date | None:
    """The calendar day of an RSS date (``Mon, 15 Jan 2024 00:00:00 -0500``), as the feed states it."""
    if not value:
        return None
    try:
        stamp: datetime = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return stamp.date()
