"""The diff of a poll, as pure functions: which page papers are one paper, how a sighting merges
into what is stored, and which changes count. ``sql.py`` loads the rows and writes the plan."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from monitor.models import Paper, normalize_title

# A normalized title longer than this is stored cut, with a digest of the whole: PostgreSQL refuses
# unique-index entries over 2704 bytes, and 400 characters are at most 1600 bytes of UTF-8.
_TITLE_NORM_MAX = 400
# The words an old title needs to find its paper still (a title-only page may show a title from
# before an edit); fewer say too little ("Technical Report").
_OLD_TITLE_WORDS = 4


def stored_title_norm(title: str) -> str:
    """The normalized title as the ``title_norm`` column holds it (scraped titles can be any length);
    the ``~`` after ``#`` keeps it apart from the ``#key`` suffix of a shared title (see ``plan``)."""
    norm = normalize_title(title)
    if len(norm) <= _TITLE_NORM_MAX:
        return norm
    return f"{norm[:_TITLE_NORM_MAX]} #~{hashlib.sha256(norm.encode('utf-8')).hexdigest()[:32]}"


def title_form(title: str) -> str:
    """The form of a title in the ``titles`` table: its normalized words run together (cut as
    ``stored_title_norm`` cuts)."""
    form = normalize_title(title).replace(" ", "")
    if len(form) <= _TITLE_NORM_MAX:
        return form
    return f"{form[:_TITLE_NORM_MAX]}#~{hashlib.sha256(form.encode('utf-8')).hexdigest()[:32]}"


@dataclass(frozen=True)
class Known:
    """A stored paper as the planner needs it."""

    id: int
    paper: Paper
    title_norm: str


@dataclass
class Sighting:
    """A stored paper seen again: how it was, how it is now, its (maybe new) normalized title, and
    the forms of the titles it was seen with."""

    known: Known
    merged: Paper
    title_norm: str
    forms: set[str] = field(default_factory=set)


@dataclass
class Plan:
    """What to write: papers to insert (with their normalized titles) and stored papers seen again
    (by row id), both in page order."""

    fresh: list[tuple[Paper, str]]
    seen: dict[int, Sighting]


def merge(old: Paper, new: Paper) -> Paper:
    """``new`` over ``old``: the page's values where it gives them, the known ones where it does not
    (plain-text pages have no author names, say). The key moves to ``arxiv:`` once an id is known."""
    arxiv_id = new.arxiv_id or old.arxiv_id
    # Both are valid papers already, so their values need no second validation.
    return Paper.model_construct(
        key=f"arxiv:{arxiv_id}" if arxiv_id else old.key,
        arxiv_id=arxiv_id,
        title=new.title or old.title,
        abstract=new.abstract or old.abstract,
        authors=new.authors or old.authors,
        authors_count=new.authors_count if new.authors_count is not None else old.authors_count,
        organization=new.organization or old.organization,
        organization_id=new.organization_id or old.organization_id,
        published=new.published or old.published,
        upvotes=new.upvotes if new.upvotes is not None else old.upvotes,
        url=new.url or old.url,
        source=new.source,
    )


def changed_fields(old: Paper, new: Paper) -> list[str]:
    """The changes that count (``monitor.store.CHANGE_FIELDS``): upvotes, authors, organization, and an
    abstract that was missing. Edits of a known title or abstract are cosmetic and do not count."""
    counted = ("upvotes", "authors", "organization")
    changes = [name for name in counted if getattr(old, name) != getattr(new, name)]
    if old.abstract is None and new.abstract is not None:
        changes.append("abstract")
    return changes


def dedupe(papers: Iterable[Paper], norm: Callable[[str], str] = stored_title_norm) -> list[Paper]:
    """One entry per paper of a page, in page order: entries with the same arXiv id, or the same
    normalized title where at most one of them has an id, are merged."""
    slots: list[Paper] = []
    by_id: dict[str, int] = {}
    by_title: dict[str, int] = {}
    for paper in papers:
        title = norm(paper.title)
        slot = by_id.get(paper.arxiv_id) if paper.arxiv_id else None
        if slot is None:
            other = by_title.get(title)
            if other is not None and (paper.arxiv_id is None or slots[other].arxiv_id is None):
                slot = other
        if slot is None:
            slot = len(slots)
            slots.append(paper)
        else:
            slots[slot] = merge(slots[slot], paper)
        if slots[slot].arxiv_id:
            by_id[slots[slot].arxiv_id or ""] = slot
        by_title.setdefault(title, slot)
    return slots


def plan(
    incoming: list[Paper], known: Iterable[Known], norm: Callable[[str], str] = stored_title_norm,
    forms: Mapping[str, int] | None = None, form: Callable[[str], str] = title_form,
) -> Plan:
    """Decide, for each (deduplicated) page paper, which stored paper it is, if any.

    A paper is a stored one with the same key or arXiv id, else with the same normalized title, or
    a title of the same form (``forms``: form -> stored paper id) the stored paper was seen with,
    unless both have different arXiv ids (two papers may share a title: the second one stores its
    normalized title with a ``#key`` suffix, which no real normalized title can contain).
    """
    rows = list(known)
    by_key = {row.paper.key: row for row in rows}
    by_id = {row.paper.arxiv_id: row for row in rows if row.paper.arxiv_id}
    by_title = {row.title_norm: row for row in rows}
    by_row = {row.id: row for row in rows}
    by_form = {f: by_row[paper_id] for f, paper_id in (forms or {}).items() if paper_id in by_row}
    taken = set(by_title)
    result = Plan(fresh=[], seen={})
    for paper in incoming:
        title, paper_form = norm(paper.title), form(paper.title)
        row = by_key.get(paper.key) or (by_id.get(paper.arxiv_id) if paper.arxiv_id else None)
        candidate, recognised = None, False
        if row is None:
            candidate = by_title.get(title)
            if candidate is None and (found := by_form.get(paper_form)) is not None:
                stored = result.seen[found.id].merged if found.id in result.seen else found.paper
                # Its current title in other spacing, or an old title of its own that says enough:
                # "Technical Report", once a paper's title, may well be another paper's now.
                if form(stored.title) == paper_form or len(title.split()) >= _OLD_TITLE_WORDS:
                    candidate, recognised = found, True
        if candidate is not None:
            current = result.seen.get(candidate.id)
            stored_id = current.merged.arxiv_id if current else candidate.paper.arxiv_id
            if paper.arxiv_id is None or stored_id is None or stored_id == paper.arxiv_id:
                row = candidate
        if row is None:
            title_norm = title if title not in taken else f"{title} #{paper.key}"
            taken.add(title_norm)
            result.fresh.append((paper, title_norm))
            continue
        sighting = result.seen.get(row.id)
        if sighting is None:
            sighting = result.seen[row.id] = Sighting(row, row.paper, row.title_norm)
        sighting.forms.add(paper_form)
        if recognised:  # found by another rendering or an old title: it tells nothing newer of them
            kept = sighting.merged
            abstract = kept.abstract or paper.abstract
            paper = paper.model_copy(update={"title": kept.title, "abstract": abstract})
            title = sighting.title_norm
        sighting.merged = merge(sighting.merged, paper)
        if title != sighting.title_norm and title not in taken:
            # The title was edited: follow it, so a later title-only sighting still finds the paper.
            taken.add(title)
            sighting.title_norm = title
    return result
