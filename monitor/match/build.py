"""Compiling rules for the index: atoms interned once and filed under the key a paper must contain
for each to hold (a word, a pair of adjacent words, a prefix, a surname, an organization), and each
rule reduced to a plan: the checks and the reason strings it needs, ready before any paper comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from monitor.config import RuleConfig
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.match.atoms import And, Author, Field, Node, Not, Or, Org, Term, Upvotes, make_term
from monitor.match.explain import every_paper_reason, query_reason, upvotes_reason
from monitor.match.names import given_match, parse_name
from monitor.match.query import parse_query

# A compiled query: an atom id, an Upvotes comparison, or ("and"|"or", children) / ("not", child).
Compiled = int | Upvotes | tuple[str, tuple["Compiled", ...]]
# A reason for an atom that holds: (title, abstract) strings for a term, chosen by where the term is
# (one string twice for an organization or a scoped term), or the watched name of an author.
Said = tuple[str, str] | str
Entry = tuple[int, Said]
K = TypeVar("K")
V = TypeVar("V")


class Plan(NamedTuple):
    """One rule, ready to check (a tuple, so that the matching loop unpacks it in one step).
    ``slow`` is None when a positive atom holding makes the rule match, as it does for a rule of
    keywords, authors and organizations; ``authors``: some of them are authors."""

    name: str
    notify: tuple[str, ...]
    excludes: frozenset[int] | None
    min_upvotes: int | None
    entries: tuple[Entry, ...]  # keywords, authors, organizations, deduplicated, in config order
    authors: bool
    slow: SlowPlan | None


@dataclass(frozen=True, slots=True)
class SlowPlan:
    """What a rule with a query, an author, or no positive atom needs beyond ``Plan``."""

    positive_ids: frozenset[int]
    query: Compiled | None
    query_text: str | None
    query_entries: tuple[Entry, ...]  # atoms the query asserts (not under NOT), for reasons
    query_upvotes: tuple[Upvotes, ...]

    def reasons(self, plan: Plan, true: set[int], in_title: set[int], upvotes: int | None,
                aliases: dict[int, str]) -> list[str] | None:
        """The reasons if the rule matches (excludes and min_upvotes already passed), else None."""
        holds = self.query is not None and holds_query(self.query, true, upvotes)
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
    reasons = []
    for atom_id, what in entries:
        if atom_id in true:
            if isinstance(what, tuple):
                reasons.append(what[atom_id not in in_title])
            else:
                alias = aliases.get(atom_id)
                reasons.append(f'author "{what}"' + (f' (as "{alias}")' if alias and alias != what else ""))
    return reasons


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
    words: dict[str, list[int]] = field(default_factory=dict)  # field "any"
    pairs: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # field "any"
    prefixes: dict[str, list[int]] = field(default_factory=dict)  # field "any"
    # title: and abstract: terms (queries only), by field.
    scoped_words: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    scoped_pairs: dict[str, dict[tuple[str, str], list[int]]] = field(default_factory=dict)
    scoped_prefixes: dict[str, list[tuple[int, Field]]] = field(default_factory=dict)
    # Longer phrases (and two words ending in a prefix): filed under their first pair (first word),
    # then checked on the joined text: (atom id, " kv cach", field).
    check_words: dict[str, list[tuple[int, str, Field]]] = field(default_factory=dict)
    check_pairs: dict[tuple[str, str], list[tuple[int, str, Field]]] = field(default_factory=dict)
    # surname -> initials of the given names -> watches: an author's given names can only agree
    # with a watch whose initials are a subset or a superset of the author's.
    surnames: dict[str, dict[frozenset[str], list[tuple[int, tuple[str, ...]]]]] = field(default_factory=dict)
    orgs: dict[str, list[int]] = field(default_factory=dict)
    strings: dict[tuple[str, Field], tuple[str, str]] = field(default_factory=dict)

    def intern(self, atom: Term | Author | Org) -> int:
        if isinstance(atom, Term):
            key: tuple[object, ...] = ("term", atom.words, atom.prefix, atom.field)
        elif isinstance(atom, Author):
            name = parse_name(atom.name)
            if name is None:
                raise ValueError(f'"{atom.name}" has no letters')
            key = ("author", *name)
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
        elif isinstance(atom, Author):
            given: tuple[str, ...] = key[1]  # type: ignore[assignment]
            buckets = self.surnames.setdefault(key[2], {})  # type: ignore[arg-type]
            buckets.setdefault(frozenset(g[0] for g in given), []).append((atom_id, given))
        else:
            self.orgs.setdefault(atom.normalized, []).append(atom_id)
        return atom_id

    def _file_term(self, atom_id: int, term: Term) -> None:
        words, scope = term.words, term.field
        if len(words) > 2 or (len(words) == 2 and term.prefix):
            needle = " " + " ".join(words) + ("" if term.prefix else " ")
            if len(words) == 2:
                self.check_words.setdefault(words[0], []).append((atom_id, needle, scope))
            else:
                self.check_pairs.setdefault((words[0], words[1]), []).append((atom_id, needle, scope))
        elif len(words) == 2:
            pairs = self.pairs if scope == "any" else self.scoped_pairs.setdefault(scope, {})
            pairs.setdefault((words[0], words[1]), []).append(atom_id)
        elif term.prefix and scope == "any":
            self.prefixes.setdefault(words[0], []).append(atom_id)
        elif term.prefix:
            self.scoped_prefixes.setdefault(words[0], []).append((atom_id, scope))
        else:
            exact = self.words if scope == "any" else self.scoped_words.setdefault(scope, {})
            exact.setdefault(words[0], []).append(atom_id)

    def said(self, atom: Term | Author | Org) -> Said:
        """The reason an atom gives when it holds, as in ``explain.describe``."""
        if isinstance(atom, Author):
            return atom.name
        if isinstance(atom, Org):
            text = f'organization "{atom.name}"'
            return text, text
        key = (atom.text, atom.field)
        found = self.strings.get(key)
        if found is None:
            title, abstract = f'keyword "{atom.text}" in title', f'keyword "{atom.text}" in abstract'
            found = self.strings[key] = (
                (title, abstract) if atom.field == "any" else (title, title) if atom.field == "title"
                else (abstract, abstract)
            )
        return found

    def watches_of(self, raw: str) -> tuple[int, ...]:
        """The watched-author atoms that the paper author ``raw`` satisfies."""
        name = parse_name(raw)
        buckets = self.surnames.get(name.surname) if name is not None else None
        if name is None or not buckets:
            return ()
        initials = frozenset(g[0] for g in name.given)
        return tuple(
            atom_id
            for watched, entries in buckets.items()
            if watched <= initials or initials <= watched
            for atom_id, given in entries
            if given_match(given, name.given)
        )


def frozen(index: dict[K, list[V]]) -> dict[K, tuple[V, ...]]:
    """Tuples take less memory than lists, and the index never changes after compiling."""
    return {key: tuple(values) for key, values in index.items()}


def compile_rule(builder: Builder, config: RuleConfig, number: int) -> tuple[Plan, set[int] | None]:
    """The rule's plan, and the atoms one of which must hold for it to match (None: no such set)."""
    where = f"rules[{number}]"
    problems: list[str] = []
    entries: list[Entry] = []
    positive_ids: set[int] = set()
    excludes: set[int] = set()
    has_author = False
    sections = (("keywords", None, config.keywords), ("authors", Author, config.authors),
                ("organizations", Org, config.organizations), ("exclude", None, config.exclude))
    for section, make, terms in sections:
        for term in terms:
            try:
                atom: Term | Author | Org = make_term(term) if make is None else make(term.strip())
                atom_id = builder.intern(atom)
            except ValueError as exc:
                problems.append(f"{where}.{section}: {exc}")
                continue
            if section == "exclude":
                excludes.add(atom_id)
            else:
                entries.append((atom_id, builder.said(atom)))
                positive_ids.add(atom_id)
                has_author = has_author or make is Author
    query: Compiled | None = None
    query_entries: list[Entry] = []
    query_upvotes: list[Upvotes] = []
    if config.query is not None:
        try:
            query = _compile_query(builder, parse_query(config.query), query_entries, query_upvotes, True)
        except QuerySyntaxError as exc:
            problems.append(f"{where}.query: column {exc.column}: {exc.message}")
        except ValueError as exc:
            problems.append(f"{where}.query: {exc}")
    if problems:
        raise ConfigError(problems)
    slow = None
    if query is not None or not entries:
        slow = SlowPlan(frozenset(positive_ids), query, config.query, tuple(query_entries),
                        tuple(query_upvotes))
    # One atom's reason twice is one reason (the same words written twice, or a name repeated).
    plan = Plan(config.name, tuple(config.notify), frozenset(excludes) or None, config.min_upvotes,
                tuple(dict.fromkeys(entries)), has_author, slow)
    triggers: set[int] | None = positive_ids
    if query is not None:
        query_triggers = _triggers(query)
        triggers = None if query_triggers is None else positive_ids | query_triggers
    if query is None and not entries:
        triggers = None
    return plan, triggers


def compile_all(rules: Sequence[RuleConfig], builder: Builder) -> tuple[list[Plan], list[set[int] | None]]:
    """Every rule's plan and triggers; ``ConfigError`` lists every problem of every rule."""
    plans: list[Plan] = []
    triggers: list[set[int] | None] = []
    problems: list[str] = []
    for number, config in enumerate(rules):
        try:
            plan, rule_triggers = compile_rule(builder, config, number)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
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
