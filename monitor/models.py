"""The nouns: Paper (the JSON of INTERFACE.md), Hit and Match, and the helpers that make a paper's key."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import date
from typing import NamedTuple, TypeGuard

from pydantic import BaseModel, ConfigDict, Field

# re's \W and str.isalnum() agree on every code point; "_" is a word character for \W, not alnum.
_NON_ALNUM = re.compile(r"[\W_]+")
_ARXIV_ID = re.compile(r"^(?:arxiv:)?(\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$", re.I)


# What no field of a paper may hold: control characters (a space instead), the bidirectional
# overrides and isolates that make text read backwards (U+202E), and lone surrogates, which no
# encoding can write (a store, a feed and a message would each fail on the paper).
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def collapse(text: str | None) -> str | None:
    """Collapse every run of whitespace to one space and strip; ``None`` and ``""`` stay empty.
    Control characters count as spaces; bidirectional overrides go; a lone surrogate is U+FFFD."""
    if text is None:
        return None
    if _CONTROLS.search(text):
        text = _CONTROLS.sub(" ", text)
    if not text.isascii():
        text = _SURROGATES.sub("\ufffd", _BIDI.sub("", text))
    # str.split() splits on exactly re's \s, in C, without rebuilding the string at every space.
    return " ".join(text.split())


def normalize_title(title: str) -> str:
    """NFKC, casefold, every run of non-alphanumeric characters one space, stripped."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _NON_ALNUM.sub(" ", folded).strip()


def has_words(title: str | None) -> TypeGuard[str]:
    """Whether a title a page shows is one: a letter or digit in it. A title of dots, dashes or
    invisible characters normalizes to nothing, and every such paper would share one key (that of
    the empty title) and alert with nothing to read."""
    return title is not None and bool(normalize_title(title))


def title_key(title: str) -> str:
    """The key of a paper known only by its title."""
    digest = hashlib.sha256(normalize_title(title).encode("utf-8")).hexdigest()
    return f"title:{digest[:16]}"


def clean_arxiv_id(raw: str | None) -> str | None:
    """An arXiv id without prefix or version suffix (``2401.12345v2`` -> ``2401.12345``)."""
    if not raw:
        return None
    match = _ARXIV_ID.match(raw.strip())
    return match.group(1) if match else None


class Paper(BaseModel):
    """One paper as a page shows it. ``model_dump(mode="json")`` is the INTERFACE.md paper JSON."""

    model_config = ConfigDict(frozen=True)

    key: str
    arxiv_id: str | None
    title: str
    abstract: str | None
    authors: list[str]
    authors_count: int | None
    organization: str | None
    published: date | None
    upvotes: int | None
    url: str | None
    source: str
    # The HF organization id (``caltech``), for ``organizations`` rules; not part of the JSON.
    organization_id: str | None = Field(default=None, exclude=True)
    # How an arXiv RSS listing announces the paper (new, cross, replace, replace-cross), for the
    # source's ``announce_types``; not part of the JSON, not stored.
    announce: str | None = Field(default=None, exclude=True)
    # The arXiv API's primary category (cs.CL), which tells a listing's own papers from cross-lists
    # when a catch-up reads the API for a listing; not part of the JSON, not stored.
    primary_category: str | None = Field(default=None, exclude=True)

    @classmethod
    def build(
        cls,
        *,
        title: str,
        source: str,
        arxiv_id: str | None = None,
        abstract: str | None = None,
        authors: list[str] | None = None,
        authors_count: int | None = None,
        organization: str | None = None,
        organization_id: str | None = None,
        announce: str | None = None,
        primary_category: str | None = None,
        published: date | None = None,
        upvotes: int | None = None,
        url: str | None = None,
    ) -> Paper:
        """Make a paper from raw page values: collapse whitespace, strip versions, derive the key."""
        clean_title = collapse(title) or ""
        clean_id = clean_arxiv_id(arxiv_id)
        names = [n for n in (collapse(a) for a in authors or []) if n]
        return cls(
            key=f"arxiv:{clean_id}" if clean_id else title_key(clean_title),
            arxiv_id=clean_id,
            title=clean_title,
            abstract=collapse(abstract) or None,
            authors=names,
            authors_count=authors_count if authors_count is not None else (len(names) or None),
            organization=collapse(organization) or None,
            organization_id=collapse(organization_id) or None,
            announce=announce,
            primary_category=primary_category,
            published=published,
            upvotes=upvotes,
            url=url,
            source=source,
        )

    def to_json(self) -> dict[str, object]:
        """The INTERFACE.md paper JSON, as a dict ready for ``json.dumps``."""
        return self.model_dump(mode="json")


class Hit(NamedTuple):
    """A rule that a paper satisfies, why, and the channels the rule notifies: what
    ``RuleIndex.match(paper)`` answers (the paper is the one asked about).

    Immutable, so that the index can make one ``Hit`` per way a rule holds and hand the same one
    to every paper that satisfies the rule that way: with 100,000 rules a paper satisfies tens of
    them, and building a fresh object for each would cost more than finding them.
    """

    rule: str
    reasons: tuple[str, ...]
    notify: tuple[str, ...]


class Match(NamedTuple):
    """A (rule, paper) match as the store records it: the ``Hit`` and the paper it is about."""

    rule: str
    paper: Paper
    reasons: tuple[str, ...]
    notify: tuple[str, ...]
