"""Explanations: the reason strings a match carries (``keyword "kv cache" in title``,
``author "Tri Dao" (as "T. Dao")``, ``upvotes 52 >= 50``), and ``explain`` for a user asking why a
rule did or did not fire on a paper.
"""

from __future__ import annotations

from monitor.config import RuleConfig
from monitor.match.atoms import And, Atom, Author, Node, Not, Or, Org, Term, Upvotes, make_term
from monitor.match.names import names_match, parse_name
from monitor.match.query import parse_query
from monitor.match.text import PaperText, normalize_phrase
from monitor.models import Paper


def term_where(term: Term, text: PaperText) -> str | None:
    """``"title"`` or ``"abstract"``: the first field of the term's scope it occurs in, else None."""
    return text.where(term.needle, term.field)


def author_alias(author: Author, paper: Paper) -> str | None:
    """The paper's spelling of the watched author, if one of its authors is that person."""
    watch = parse_name(author.name)
    for raw in paper.authors:
        name = parse_name(raw)
        if watch is not None and name is not None and names_match(watch, name):
            return raw
    return None


def org_holds(org: Org, paper: Paper) -> bool:
    return org.normalized in {normalize_phrase(paper.organization), normalize_phrase(paper.organization_id)}


def describe(atom: Atom, text: PaperText, alias: str | None = None) -> str:
    """The reason string for an atom that holds."""
    if isinstance(atom, Term):
        return keyword_reason(atom.text, term_where(atom, text) or atom.field)
    if isinstance(atom, Author):
        return author_reason(atom.name, alias)
    if isinstance(atom, Org):
        return org_reason(atom.name)
    return f"upvotes {atom.op}{atom.value}"


def keyword_reason(written: str, where: str) -> str:
    return f'keyword "{written}" in {where}'


def author_reason(watched: str, alias: str | None) -> str:
    """``author "Tri Dao" (as "T. Dao")``: the name as the rule wrote it, and as the paper did."""
    return f'author "{watched}"' + (f' (as "{alias}")' if alias and alias != watched else "")


def org_reason(name: str) -> str:
    return f'organization "{name}"'


def upvotes_reason(upvotes: int | None, op: str, value: int) -> str:
    return f"upvotes {upvotes} {op} {value}"


def query_reason(query: str | None) -> str:
    return f"query {query} holds"


def every_paper_reason() -> str:
    return "no conditions: every paper"


def node_holds(node: Node, paper: Paper, text: PaperText) -> bool:
    """Evaluate a query tree directly on one paper (no index)."""
    if isinstance(node, And):
        return all(node_holds(child, paper, text) for child in node.children)
    if isinstance(node, Or):
        return any(node_holds(child, paper, text) for child in node.children)
    if isinstance(node, Not):
        return not node_holds(node.child, paper, text)
    if isinstance(node, Term):
        return term_where(node, text) is not None
    if isinstance(node, Author):
        return author_alias(node, paper) is not None
    if isinstance(node, Org):
        return org_holds(node, paper)
    return node.holds(paper.upvotes)


def _no_names(paper: Paper) -> str:
    if paper.authors_count:
        return f"the page lists no author names, only a count ({paper.authors_count} authors)"
    return "the page lists no author names"


def explain(rule: RuleConfig, paper: Paper) -> list[str]:
    """One line per clause of ``rule``: whether it holds for ``paper`` and why (not)."""
    text = PaperText.of(paper.title, paper.abstract)
    lines: list[str] = []
    for keyword in rule.keywords:
        where = term_where(make_term(keyword), text)
        lines.append(f'keyword "{keyword}": ' + (f"in {where}" if where else "not found"))
    for name in rule.authors:
        if not paper.authors:
            lines.append(f'author "{name}": no match: {_no_names(paper)}')
            continue
        alias = author_alias(Author(name), paper)
        lines.append(f'author "{name}": ' + (f'yes (as "{alias}")' if alias else "not among the authors"))
    for org in rule.organizations:
        lines.append(f'organization "{org}": ' + ("yes" if org_holds(Org(org), paper) else "no"))
    if rule.query is not None:
        holds = node_holds(parse_query(rule.query), paper, text)
        lines.append(f"query: {'holds' if holds else 'does not hold'}")
        if not paper.authors and any(isinstance(a, Author) for a in _atoms(parse_query(rule.query))):
            lines.append(f"query: author terms cannot hold: {_no_names(paper)}")
    for term in rule.exclude:
        where = term_where(make_term(term), text)
        if where:
            lines.append(f'exclude "{term}": in {where}, so the rule does not match')
    if rule.min_upvotes is not None:
        ok = paper.upvotes is not None and paper.upvotes >= rule.min_upvotes
        verdict = "ok" if ok else "too few"
        lines.append(f"min_upvotes {rule.min_upvotes}: upvotes {paper.upvotes}, {verdict}")
    return lines


def _atoms(node: Node) -> list[Atom]:
    if isinstance(node, And | Or):
        return [atom for child in node.children for atom in _atoms(child)]
    if isinstance(node, Not):
        return _atoms(node.child)
    return [node]


__all__ = ["Upvotes", "describe", "every_paper_reason", "explain", "upvotes_reason"]
