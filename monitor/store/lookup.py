"""One paper's story in the store, for ``paper-monitor why``: found by key, arXiv id or a piece of
its title; when it was seen; the rules it matched and what became of each delivery."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from monitor.models import Paper, clean_arxiv_id, normalize_title, title_key
from monitor.store.base import Transactions, paper_from_row
from monitor.store.schema import deliveries, matches
from monitor.store.schema import papers as paper_table


@dataclass(frozen=True)
class Delivery:
    """One (rule, paper, channel) row of the outbox, as ``why`` tells it."""

    rule: str
    channel: str
    state: str  # pending, sending, failed, sent, dead
    attempts: int
    last_error: str | None
    created_at: float
    next_attempt_at: float
    sent_at: float | None


@dataclass(frozen=True)
class PaperStory:
    paper: Paper
    first_seen: float
    last_seen: float
    matched: dict[str, tuple[list[str], float]]  # rule -> (reasons, matched at), in the order matched
    deliveries: list[Delivery]


_TITLE_KEY = re.compile(r"title:[0-9a-f]{16}")


class PaperLookup(Transactions):
    """Finding papers and their story on ``self.engine``; part of ``SqlStore``."""

    def find_papers(self, wanted: str, limit: int = 10) -> list[Paper]:
        """The papers ``wanted`` names: its key (``arxiv:2401.12345``, ``title:...``, also the
        ``title:`` key it had before its arXiv id was known), an arXiv id (a version suffix allowed),
        else every paper whose title holds those words in that order, most recently seen first, at
        most ``limit``."""
        p = paper_table.c
        arxiv_id = clean_arxiv_id(wanted)
        exact = p.key == wanted.strip()
        if arxiv_id is not None:
            exact = sa.or_(exact, p.arxiv_id == arxiv_id)
        with self.read("finding a paper") as conn:
            rows = conn.execute(sa.select(paper_table).where(exact).limit(limit)).all()
            if not rows and _TITLE_KEY.fullmatch(wanted.strip()):
                # The key a paper was first stored (and alerted) under, before an arXiv id was
                # known for it: the hash of its title, read from every title (no index holds it).
                every = conn.execute(sa.select(p.id, p.title).execution_options(yield_per=2000))
                ids = [row.id for row in every if title_key(row.title) == wanted.strip()][:limit]
                rows = conn.execute(sa.select(paper_table).where(p.id.in_(ids))).all() if ids else []
            words = normalize_title(wanted)
            if not rows and words:
                # A normalized title has letters, digits and single spaces only: nothing LIKE reads.
                query = (sa.select(paper_table).where(p.title_norm.like(f"%{words}%"))
                         .order_by(p.last_seen.desc(), p.id.desc()).limit(limit))
                rows = conn.execute(query).all()
        return [paper_from_row(row) for row in rows]

    def paper_story(self, key: str) -> PaperStory | None:
        """What the store knows of the paper ``key``: when seen, its matches, its deliveries."""
        p, m, d = paper_table.c, matches.c, deliveries.c
        with self.read("reading a paper's matches and deliveries") as conn:
            row = conn.execute(sa.select(paper_table).where(p.key == key)).first()
            if row is None:
                return None
            matched = conn.execute(sa.select(m.rule, m.reasons, m.matched_at).where(m.paper_id == row.id)
                                   .order_by(m.matched_at, m.id)).all()
            # By its matches' rules: seeks of the (rule, paper_id, channel) key, where paper_id alone
            # read every delivery (1.1 s at 1.6 million); every delivery has its match.
            sent: list[Any] = []
            rules = sorted({r.rule for r in matched})
            for start in range(0, len(rules), 500):
                sent += conn.execute(
                    sa.select(d.id, d.rule, d.channel, d.state, d.attempts, d.last_error, d.created_at,
                              d.next_attempt_at, d.sent_at)
                    .where(d.rule.in_(rules[start : start + 500]), d.paper_id == row.id)
                ).all()
            sent.sort(key=lambda r: (r.created_at, r.id))
        return PaperStory(
            paper=paper_from_row(row), first_seen=row.first_seen, last_seen=row.last_seen,
            matched={r.rule: (list(r.reasons or []), r.matched_at) for r in matched},
            deliveries=[Delivery(r.rule, r.channel, r.state, r.attempts, r.last_error, r.created_at,
                                 r.next_attempt_at, r.sent_at) for r in sent],
        )
