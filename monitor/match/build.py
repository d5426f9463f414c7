"""Compiling rules for the index: atoms interned once and filed under the key a paper must contain
for each to hold (a word, a pair of adjacent words, a prefix, a surname, an organization), and each
rule reduced to a plan: the checks and the reason strings it needs, ready before any paper comes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple, TypeVar

from monitor.config import RuleConfig
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.match.atoms import And, Author, Field, Node, Not, Or, Org, Term, Upvotes, make_term
from monitor.match.explain import (
    author_reason,
    every_paper_reason,
    keyword_reason,
    org_reason,
    query_reason,
    upvotes_reason,
)
from monitor.match.names import AuthorWatches, Name, parse_name
from monitor.match.query import parse_query
from monitor.match.text import PaperText

# A compiled query: an atom id, an Upvotes comparison, or ("and"|"or", children) / ("not", child).
Compiled = int | Upvotes | tuple[str, tuple["Compiled", ...]]
# What an atom says when it holds: (the term as written, its field) for a term, (the name, "org") for
# an organization, the watched name for an author; ``reason`` makes the string when it is needed.
Said = tuple[str, str] | str
Entry = tuple[int, Said]
Predicate = Callable[[set[int], int | None], bool]
K = TypeVar("K")
V = TypeVar("V")


class Excludes(NamedTuple):
    """A rule's excludes: single words, and the needles (``Term.needle``) of phrases and prefixes.
    They are checked on the words of the few papers that one of the rule's atoms holds for, rather
    than indexed: a word that many rules exclude would hold for most papers."""

    words: frozenset[str]
    needles: tuple[str, ...]

    def occur_in(self, paper: PaperText) -> bool:
        if self.words and not self.words.isdisjoint(paper.words):
            return True
        return any(map(paper.contains, self.needles))


class Plan(NamedTuple):
    """One rule, ready to check. ``slow`` is None when a positive atom holding makes the rule
    match (given excludes and min_upvotes), as it does for a rule of keywords, authors and
    organizations."""

    name: str
    notify: tuple[str, ...]
    excludes: Excludes | None
    min_upvotes: int | None
    entries: tuple[Entry, ...]  # keywords, authors, organizations, deduplicated, in config order
    slow: SlowPlan | None


@dataclass(frozen=True, slots=True)
class SlowPlan:
    """What a rule with a query, an author, or no positive atom needs beyond ``Plan``."""

    positive_ids: frozenset[int]
    query: Compiled | None
    holds: Predicate | None  # the query as one function
    query_text: str | None
    query_entries: tuple[Entry, ...]  # atoms the query asserts (not under NOT), for reasons
    query_upvotes: tuple[Upvotes, ...]

    def reasons(self, plan: Plan, true: set[int], in_title: set[int], upvotes: int | None,
                aliases: dict[int, str]) -> list[str] | None:
        """The reasons if the rule matches (excludes and min_upvotes already passed), else None."""
        holds = self.holds is not None and self.holds(true, upvotes)
        if not (holds or not self.positive_ids.isdisjoint(true) or (not plan.entries and self.query is None)):
            return None
        reasons = said(plan.entries, true, in_title, aliases)
        if holds:
            reasons += said(self.query_entries, true, in_title, aliases)
            reasons += [upvotes_reason(upvotes, c.op, c.value) for c in self.query_upvotes
                        if c.holds(upvotes)]
            if not reasons:  # it holds by what is absent: NOT survey
                reasons.append(query_reason(self.query_text))
        if plan.min_upvotes is not None:
            reasons.append(upvotes_reason(upvotes, ">=", plan.min_upvotes))
        elif not plan.entries and self.query is None:
            reasons.append(every_paper_reason())
        return list(dict.fromkeys(reasons))


def said(entries: tuple[Entry, ...], true: set[int], in_title: set[int],
         aliases: dict[int, str]) -> list[str]:
    """The reason strings of the entries whose atoms hold."""
    return [reason(what, aliases.get(atom_id) or atom_id in in_title) for atom_id, what in entries
            if atom_id in true]


def reason(what: Said, how: bool | str) -> str:
    """The reason string of an atom that holds: in the title (``how`` True) or only in the abstract
    (False), or for an author, as the paper spells the name (``how`` that spelling)."""
    if isinstance(what, str):
        return author_reason(what, how if isinstance(how, str) else None)
    text, scope = what
    if scope == "org":
        return org_reason(text)
    return keyword_reason(text, scope if scope != "any" else "title" if how is True else "abstract")


def predicate(node: Compiled) -> Predicate:
    """The query as one Python function, so that checking it is one call rather than a walk of its
    tree: ``lambda t, u: (4 in t) and not (7 in t) and (u is not None and u >= 10)``. The code is
    made of atom ids and comparison operators only, never of the user's text; a query nested too
    deep for Python's parser keeps the walk."""
    if _depth(node) > _GENERATED_DEPTH:
        return partial(holds_query, node)
    holds: Predicate = eval(f"lambda t, u: {_source(node)}", {"__builtins__": {}})
    return holds


_GENERATED_DEPTH = 40
_OPERATORS = {">=": ">=", ">": ">", "<=": "<=", "<": "<", "=": "=="}


def _source(node: Compiled) -> str:
    if isinstance(node, int):
        return f"({node} in t)"
    if isinstance(node, Upvotes):
        return f"(u is not None and u {_OPERATORS[node.op]} {int(node.value)})"
    kind, children = node
    if kind == "not":
        return f"(not {_source(children[0])})"
    return "(" + f" {kind} ".join(map(_source, children)) + ")"


def _depth(node: Compiled) -> int:
    if isinstance(node, int | Upvotes):
        return 1
    return 1 + max(map(_depth, node[1]))


def holds_query(node: Compiled, true: set[int], upvotes: int | None) -> bool:
    if isinstance(node, int):
        return node in true
    if isinstance(node, Upvotes):
        return node.holds(upvotes)
    kind, children = node
    if kind == "and":
        return all(holds_query(child, true, upvotes) for child in children)
    if kind == "or":
        return any(holds_query(child, true, upvotes) for child in children)
    return not holds_query(children[0], true, upvotes)


@dataclass
class Builder:
    """Interns atoms and files each under the key a paper must contain for the atom to hold."""

    ids: dict[tuple[object, ...], int] = field(default_factory=dict)
    # Term atoms of every field, by the word, adjacent pair or prefix that makes them hold; those
    # of field "title" or "abstract" are also in ``title_only`` or ``abstract_only``.
    words: dict[str, list[int]] = field(default_factory=dict)
    pairs: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    prefixes: dict[str, list[int]] = field(default_factory=dict)
    title_only: set[int] = field(default_factory=set)
    abstract_only: set[int] = field(default_factory=set)
    # Longer phrases, two words ending in a prefix, and two words of one field are checked on the
    # joined words (" kv cach" in " ... kv cache ..."): each such check has a negative id, filed like
    # an atom under its first pair (first word); ``checks[-id - 1]`` is (atom id, needle, field).
    checks: list[tuple[int, str, Field]] = field(default_factory=list)
    authors: AuthorWatches = field(default_factory=AuthorWatches)
    orgs: dict[str, list[int]] = field(default_factory=dict)
    said_as: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def intern(self, atom: Term | Author | Org) -> int:
        name: Name | None = None
        if isinstance(atom, Term):
            key: tuple[object, ...] = ("term", atom.words, atom.prefix, atom.field)
        elif isinstance(atom, Author):
            name = parse_name(atom.name)
            if name is None:
                raise ValueError(f'"{atom.name}" has no letters')
            key = ("author", name)
        else:
            if not atom.normalized:
                raise ValueError(f'"{atom.name}" has no letters or digits')
            key = ("org", atom.normalized)
        found = self.ids.get(key)
        if found is not None:
            return found
        atom_id = self.ids[key] = len(self.ids)
        if isinstance(atom, Term):
            self._file_term(atom_id, atom)
        elif isinstance(atom, Org):
            self.orgs.setdefault(atom.normalized, []).append(atom_id)
        elif name is not None:  # (an author, named)
            self.authors.add(atom_id, name)
        return atom_id

    def _file_term(self, atom_id: int, term: Term) -> None:
        words = term.words
        if term.field == "title":
            self.title_only.add(atom_id)
        elif term.field == "abstract":
            self.abstract_only.add(atom_id)
        # Two words of one field are checked too: the pair table answers for both fields at once.
        if len(words) > 2 or (len(words) == 2 and (term.prefix or term.field != "any")):
            self.checks.append((atom_id, term.needle, term.field))
            check_id = -len(self.checks)
            if len(words) == 2 and term.prefix:
                self.words.setdefault(words[0], []).append(check_id)
            else:
                self.pairs.setdefault((words[0], words[1]), []).append(check_id)
        elif len(words) == 2:
            self.pairs.setdefault((words[0], words[1]), []).append(atom_id)
        elif term.prefix:
            self.prefixes.setdefault(words[0], []).append(atom_id)
        else:
            self.words.setdefault(words[0], []).append(atom_id)

    def said(self, atom: Term | Author | Org) -> Said:
        """What an atom says when it holds (see ``reason``); one tuple for each term as written."""
        if isinstance(atom, Author):
            return atom.name
        key = (atom.name, "org") if isinstance(atom, Org) else (atom.text, atom.field)
        return self.said_as.setdefault(key, key)

    def release(self) -> None:
        """Drop what only compiling needs (the index keeps frozen copies and ``authors``)."""
        for table in (self.ids, self.words, self.pairs, self.prefixes, self.orgs, self.said_as):
            table.clear()
        self.checks.clear()
        self.title_only.clear()
        self.abstract_only.clear()


def frozen(index: dict[K, list[V]]) -> dict[K, tuple[V, ...]]:
    """Tuples take less memory than lists, and the index never changes after compiling."""
    return {key: tuple(values) for key, values in index.items()}


def compile_rule(builder: Builder, config: RuleConfig, number: int) -> tuple[Plan, set[int] | None]:
    """The rule's plan, and its triggers: for a rule with a query, the atoms one of which must hold
    for the query to (None: no such set); for any other rule, its keywords, authors and
    organizations (None: it has none)."""
    where = partial(config.location, number)  # (a private attribute of pydantic's: slow to read)
    problems: list[str] = []
    entries: list[Entry] = []
    positive_ids: set[int] = set()
    exclude_words: list[str] = []
    exclude_needles: list[str] = []
    sections = (("keywords", None, config.keywords), ("authors", Author, config.authors),
                ("organizations", Org, config.organizations), ("exclude", None, config.exclude))
    for section, make, terms in sections:
        for term in terms:
            try:
                atom: Term | Author | Org = make_term(term) if make is None else make(term.strip())
                if isinstance(atom, Term) and section == "exclude":  # not an atom: see Excludes
                    if len(atom.words) == 1 and not atom.prefix:
                        exclude_words.append(atom.words[0])
                    else:
                        exclude_needles.append(atom.needle)
                    continue
                atom_id = builder.intern(atom)
            except ValueError as exc:
                problems.append(f"{where()}.{section}: {exc}")
                continue
            entries.append((atom_id, builder.said(atom)))
            positive_ids.add(atom_id)
    query: Compiled | None = None
    query_entries: list[Entry] = []
    query_upvotes: list[Upvotes] = []
    if config.query is not None:
        try:
            query = _compile_query(builder, parse_query(config.query), query_entries, query_upvotes, True)
        except QuerySyntaxError as exc:
            problems.append(f"{where()}.query: column {exc.column}: {exc.message}")
        except ValueError as exc:
            problems.append(f"{where()}.query: {exc}")
    if problems:
        raise ConfigError(problems)
    slow = None
    if query is not None or not entries:
        holds = None if query is None else predicate(query)
        slow = SlowPlan(frozenset(positive_ids), query, holds, config.query, tuple(query_entries),
                        tuple(query_upvotes))
    # One atom's reason twice is one reason (the same words written twice, or a name repeated).
    excludes = None
    if exclude_words or exclude_needles:
        excludes = Excludes(frozenset(exclude_words), tuple(dict.fromkeys(exclude_needles)))
    plan = Plan(config.name, tuple(config.notify), excludes, config.min_upvotes,
                tuple(dict.fromkeys(entries)), slow)
    if query is not None:
        return plan, _triggers(query)
    return plan, positive_ids or None


def compile_all(rules: Sequence[RuleConfig], builder: Builder,
                chosen: Collection[str] | None = None) -> tuple[list[Plan], list[set[int] | None]]:
    """The plans and triggers of the rules that are on, or of the ``chosen`` ones (by name);
    ``ConfigError`` lists every problem of every rule, those that are off included, unless rules
    are chosen (the others are not compiled at all then)."""
    plans: list[Plan] = []
    triggers: list[set[int] | None] = []
    problems: list[str] = []
    names: set[str] = set()
    for number, config in enumerate(rules):
        if config.name in names:
            problems.append(f'{config.location(number)}.name: duplicate name "{config.name}"')
        names.add(config.name)
        wanted = config.enabled if chosen is None else config.name in chosen
        if not wanted and chosen is not None:
            continue  # not asked for
        try:
            # A rule that is off is checked all the same, with nothing of it kept.
            plan, rule_triggers = compile_rule(builder if wanted else Builder(), config, number)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if wanted:
            plans.append(plan)
            triggers.append(rule_triggers)
    if problems:
        raise ConfigError(problems)
    return plans, triggers


def _compile_query(builder: Builder, node: Node, entries: list[Entry], upvotes: list[Upvotes],
                   asserted: bool) -> Compiled:
    if isinstance(node, And | Or):
        kind = "and" if isinstance(node, And) else "or"
        return kind, tuple(_compile_query(builder, c, entries, upvotes, asserted) for c in node.children)
    if isinstance(node, Not):
        return "not", (_compile_query(builder, node.child, entries, upvotes, not asserted),)
    if isinstance(node, Upvotes):
        if asserted:
            upvotes.append(node)
        return node
    atom_id = builder.intern(node)
    if asserted:
        entries.append((atom_id, builder.said(node)))
    return atom_id


def _triggers(node: Compiled) -> set[int] | None:
    """Atoms one of which must hold whenever ``node`` holds; None when no such set exists."""
    if isinstance(node, int):
        return {node}
    if isinstance(node, Upvotes) or node[0] == "not":
        return None
    sets = [_triggers(child) for child in node[1]]
    if node[0] == "or":
        return None if any(s is None for s in sets) else set().union(*sets)  # type: ignore[arg-type]
    known = [s for s in sets if s is not None]
    return min(known, key=len) if known else None
