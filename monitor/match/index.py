"""The rule index: every atom of every rule, interned once, keyed by what a paper must contain for it
to hold (a word, a pair of adjacent words, a prefix, a surname, an organization). Matching a paper
costs in proportion to its own words and the rules those words can satisfy, not to the rule count;
rules with no positive atom sit on a short list (or, for pure ``min_upvotes`` rules, a sorted one).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from monitor.config import RuleConfig
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.match.atoms import And, Atom, Author, Field, Node, Not, Or, Org, Term, Upvotes, make_term
from monitor.match.explain import describe, every_paper_reason, query_reason, upvotes_reason
from monitor.match.names import given_match, parse_name
from monitor.match.query import parse_query
from monitor.match.text import PaperText, normalize_phrase
from monitor.models import Match, Paper

# A compiled query: an atom id, an Upvotes comparison, or ("and"|"or", children) / ("not", child).
Compiled = int | Upvotes | tuple[str, tuple["Compiled", ...]]
_MEMO_LIMIT = 500_000
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    notify: tuple[str, ...]
    positives: tuple[tuple[int, Atom], ...]  # keywords, authors, organizations: (atom id, as written)
    positive_ids: frozenset[int]
    query: Compiled | None
    query_text: str | None
    query_atoms: tuple[tuple[int, Atom], ...]  # atoms the query asserts (not under NOT), for reasons
    query_upvotes: tuple[Upvotes, ...]
    excludes: frozenset[int]
    min_upvotes: int | None


class _Builder:
    """Interns atoms and files each under the key a paper must contain for the atom to hold."""

    def __init__(self) -> None:
        self.ids: dict[tuple[object, ...], int] = {}
        fields: tuple[Field, ...] = ("any", "title", "abstract")
        self.sure_words: dict[Field, dict[str, list[int]]] = {f: {} for f in fields}
        self.sure_pairs: dict[Field, dict[tuple[str, str], list[int]]] = {f: {} for f in fields}
        self.check_words: dict[str, list[tuple[int, str, Field]]] = {}
        self.check_pairs: dict[tuple[str, str], list[tuple[int, str, Field]]] = {}
        self.prefixes: dict[str, list[tuple[int, Field]]] = {}
        # surname -> initials of the given names -> watches: an author's given names can only agree
        # with a watch whose initials are a subset or a superset of the author's.
        self.surnames: dict[str, dict[frozenset[str], list[tuple[int, tuple[str, ...]]]]] = {}
        self.orgs: dict[str, list[int]] = {}

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
        words, field = term.words, term.field
        needle = " " + " ".join(words) + ("" if term.prefix else " ")
        if len(words) == 1 and term.prefix:
            self.prefixes.setdefault(words[0], []).append((atom_id, field))
        elif len(words) == 1:
            self.sure_words[field].setdefault(words[0], []).append(atom_id)
        elif len(words) == 2 and not term.prefix:
            self.sure_pairs[field].setdefault((words[0], words[1]), []).append(atom_id)
        elif len(words) == 2:
            self.check_words.setdefault(words[0], []).append((atom_id, needle, field))
        else:
            self.check_pairs.setdefault((words[0], words[1]), []).append((atom_id, needle, field))


def compile_rules(rules: Sequence[RuleConfig]) -> RuleIndex:
    """Compile the rules into an index; ``ConfigError`` names the rule and the term at fault."""
    return RuleIndex(rules)


class RuleIndex:
    """All rules compiled; ``match(paper)`` returns the rules the paper satisfies, in config order."""

    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        builder = _Builder()
        compiled: list[_Rule] = []
        triggers: dict[int, list[int]] = {}
        always: list[int] = []
        by_threshold: list[tuple[int, int]] = []
        problems: list[str] = []
        for number, config in enumerate(rules):
            try:
                rule, rule_triggers = _compile_rule(builder, config, number)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            rule_id = len(compiled)
            compiled.append(rule)
            if rule_triggers is not None:
                for atom_id in rule_triggers:
                    triggers.setdefault(atom_id, []).append(rule_id)
            elif rule.query is None and not rule.positives and rule.min_upvotes is not None:
                by_threshold.append((rule.min_upvotes, rule_id))
            else:
                always.append(rule_id)
        if problems:
            raise ConfigError(problems)
        self.rules = tuple(compiled)
        self._triggers = {atom: tuple(ids) for atom, ids in triggers.items()}
        self._always = tuple(always)
        by_threshold.sort()
        self._thresholds = [threshold for threshold, _ in by_threshold]
        self._threshold_rules = tuple(rule_id for _, rule_id in by_threshold)
        self._sure_words = {f: _frozen(d) for f, d in builder.sure_words.items() if d}
        self._sure_pairs = {f: _frozen(d) for f, d in builder.sure_pairs.items() if d}
        self._check_words = _frozen(builder.check_words)
        self._check_pairs = _frozen(builder.check_pairs)
        self._prefixes = _frozen(builder.prefixes)
        self._prefix_lengths = sorted({len(p) for p in self._prefixes})
        self._surnames = {surname: _frozen(buckets) for surname, buckets in builder.surnames.items()}
        self._orgs = _frozen(builder.orgs)
        # Paper words and author names recur across papers; remember what each one triggers.
        self._prefix_memo: dict[str, tuple[tuple[int, Field], ...]] = {}
        self._prefix_seen: set[str] = set()
        self._author_memo: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def rule_names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    def match(self, paper: Paper) -> list[Match]:
        """Every rule ``paper`` satisfies, each with its reasons and channels."""
        text = PaperText(paper.title, paper.abstract)
        aliases: dict[int, str] = {}
        true = self._true_atoms(paper, text, aliases)
        candidates: set[int] = set(self._always)
        triggers = self._triggers
        for atom_id in true:
            rules = triggers.get(atom_id)
            if rules:
                candidates.update(rules)
        upvotes = paper.upvotes
        if upvotes is not None and self._thresholds:
            candidates.update(self._threshold_rules[: bisect_right(self._thresholds, upvotes)])
        found: list[Match] = []
        for rule_id in sorted(candidates):
            rule = self.rules[rule_id]
            reasons = _evaluate(rule, true, upvotes)
            if reasons is None:
                continue
            reasons = _explain(rule, reasons, true, upvotes, text, aliases)
            found.append(Match(rule=rule.name, paper=paper, reasons=reasons, notify=list(rule.notify)))
        return found

    def _true_atoms(self, paper: Paper, text: PaperText, aliases: dict[int, str]) -> set[int]:
        true: set[int] = set()
        fields = {"any": (text.all_words, text.all_pairs), "title": (text.title_words_set, text.title_pairs),
                  "abstract": (text.abstract_words_set, text.abstract_pairs)}
        for field, index in self._sure_words.items():
            for word in index.keys() & fields[field][0]:
                true.update(index[word])
        for field, pairs in self._sure_pairs.items():
            for pair in pairs.keys() & fields[field][1]:
                true.update(pairs[pair])
        for word in self._check_words.keys() & text.all_words:
            true.update(_checked(self._check_words[word], text))
        for pair in self._check_pairs.keys() & text.all_pairs:
            true.update(_checked(self._check_pairs[pair], text))
        if self._prefixes:
            self._true_prefixes(text, fields, true)
        if self._surnames and paper.authors:
            self._true_authors(paper.authors, true, aliases)
        if self._orgs and (paper.organization or paper.organization_id):
            for org in {normalize_phrase(paper.organization), normalize_phrase(paper.organization_id)}:
                true.update(self._orgs.get(org, ()))
        return true

    def _true_prefixes(self, text: PaperText, fields: dict[str, tuple[set[str], set[tuple[str, str]]]],
                       true: set[int]) -> None:
        memo, seen = self._prefix_memo, self._prefix_seen
        unknown = text.all_words - seen
        if unknown:
            if len(seen) > _MEMO_LIMIT:
                memo.clear()
                seen.clear()
            for word in unknown:
                seen.add(word)
                hits = tuple(hit for length in self._prefix_lengths if length <= len(word)
                             for hit in self._prefixes.get(word[:length], ()))
                if hits:
                    memo[word] = hits
        for word in text.all_words & memo.keys():
            for atom_id, field in memo[word]:
                if field == "any" or word in fields[field][0]:
                    true.add(atom_id)

    def _true_authors(self, authors: list[str], true: set[int], aliases: dict[int, str]) -> None:
        memo = self._author_memo
        for raw in authors:
            found = memo.get(raw)
            if found is None:
                if len(memo) > _MEMO_LIMIT:
                    memo.clear()
                found = memo[raw] = self._watches_of(raw)
            for atom_id in found:
                if atom_id not in true:
                    true.add(atom_id)
                    aliases[atom_id] = raw

    def _watches_of(self, raw: str) -> tuple[int, ...]:
        """The watched-author atoms that the paper author ``raw`` satisfies."""
        name = parse_name(raw)
        buckets = self._surnames.get(name.surname) if name is not None else None
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


def _frozen(index: dict[K, list[V]]) -> dict[K, tuple[V, ...]]:
    """Tuples take less memory than lists, and the index never changes after compiling."""
    return {key: tuple(values) for key, values in index.items()}


def _checked(entries: tuple[tuple[int, str, Field], ...], text: PaperText) -> list[int]:
    """The phrase atoms among ``entries`` that occur, on word bounds, in their field."""
    hits = []
    for atom_id, needle, field in entries:
        if (field != "abstract" and needle in text.title_text) or (
            field != "title" and needle in text.abstract_text
        ):
            hits.append(atom_id)
    return hits


def _compile_rule(builder: _Builder, config: RuleConfig, number: int) -> tuple[_Rule, set[int] | None]:
    """The rule, and the atoms one of which must hold for it to match (None: no such set)."""
    where = f"rules[{number}]"
    problems: list[str] = []
    positives: list[tuple[int, Atom]] = []
    excludes: set[int] = set()

    def add(section: str, make: type[Author] | type[Org] | None, terms: list[str], into: str) -> None:
        for term in terms:
            try:
                atom: Term | Author | Org = make_term(term) if make is None else make(term.strip())
                atom_id = builder.intern(atom)
            except ValueError as exc:
                problems.append(f"{where}.{section}: {exc}")
                continue
            if into == "positive":
                positives.append((atom_id, atom))
            else:
                excludes.add(atom_id)

    add("keywords", None, config.keywords, "positive")
    add("authors", Author, config.authors, "positive")
    add("organizations", Org, config.organizations, "positive")
    add("exclude", None, config.exclude, "exclude")
    query: Compiled | None = None
    query_atoms: list[tuple[int, Atom]] = []
    query_upvotes: list[Upvotes] = []
    if config.query is not None:
        try:
            query = _compile_query(builder, parse_query(config.query), query_atoms, query_upvotes, True)
        except QuerySyntaxError as exc:
            problems.append(f"{where}.query: column {exc.column}: {exc.message}")
        except ValueError as exc:
            problems.append(f"{where}.query: {exc}")
    if problems:
        raise ConfigError(problems)
    rule = _Rule(config.name, tuple(config.notify), tuple(positives), frozenset(a for a, _ in positives),
                 query, config.query, tuple(query_atoms), tuple(query_upvotes), frozenset(excludes),
                 config.min_upvotes)
    triggers: set[int] | None = {atom_id for atom_id, _ in positives}
    if query is not None:
        query_triggers = _triggers(query)
        triggers = None if query_triggers is None else triggers | query_triggers  # type: ignore[operator]
    if query is None and not positives:
        triggers = None
    return rule, triggers


def _compile_query(builder: _Builder, node: Node, atoms: list[tuple[int, Atom]],
                   upvotes: list[Upvotes], asserted: bool) -> Compiled:
    if isinstance(node, And | Or):
        kind = "and" if isinstance(node, And) else "or"
        return kind, tuple(_compile_query(builder, c, atoms, upvotes, asserted) for c in node.children)
    if isinstance(node, Not):
        return "not", (_compile_query(builder, node.child, atoms, upvotes, not asserted),)
    if isinstance(node, Upvotes):
        if asserted:
            upvotes.append(node)
        return node
    atom_id = builder.intern(node)
    if asserted:
        atoms.append((atom_id, node))
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


def _holds(node: Compiled, true: set[int], upvotes: int | None) -> bool:
    if isinstance(node, int):
        return node in true
    if isinstance(node, Upvotes):
        return node.holds(upvotes)
    kind, children = node
    if kind == "and":
        return all(_holds(child, true, upvotes) for child in children)
    if kind == "or":
        return any(_holds(child, true, upvotes) for child in children)
    return not _holds(children[0], true, upvotes)


def _evaluate(rule: _Rule, true: set[int], upvotes: int | None) -> list[str] | None:
    """None if the rule does not match; else the reasons found so far (filled by ``_explain``)."""
    if rule.excludes and not rule.excludes.isdisjoint(true):
        return None
    if rule.min_upvotes is not None and (upvotes is None or upvotes < rule.min_upvotes):
        return None
    if not rule.positives and rule.query is None:
        return []
    if not rule.positive_ids.isdisjoint(true):
        return []
    if rule.query is not None and _holds(rule.query, true, upvotes):
        return []
    return None


def _explain(rule: _Rule, reasons: list[str], true: set[int], upvotes: int | None, text: PaperText,
             aliases: dict[int, str]) -> list[str]:
    for atom_id, atom in rule.positives:
        if atom_id in true:
            reasons.append(describe(atom, text, aliases.get(atom_id)))
    if rule.query is not None and _holds(rule.query, true, upvotes):
        for atom_id, atom in rule.query_atoms:
            if atom_id in true:
                reasons.append(describe(atom, text, aliases.get(atom_id)))
        reasons.extend(upvotes_reason(upvotes, c.op, c.value) for c in rule.query_upvotes if c.holds(upvotes))
        if not reasons:  # it holds by what is absent: NOT survey
            reasons.append(query_reason(rule.query_text))
    if rule.min_upvotes is not None:
        reasons.append(upvotes_reason(upvotes, ">=", rule.min_upvotes))
    elif not rule.positives and rule.query is None:
        reasons.append(every_paper_reason())
    return list(dict.fromkeys(reasons))
