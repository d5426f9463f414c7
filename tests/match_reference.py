"""A naive reference matcher: each rule compiled to regular expressions over the normalized text and
author lines, and every rule tried on every paper. Slow on purpose and simple enough to trust; the
property tests check that ``RuleIndex`` agrees with it, and benchmarks/match.py measures both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.config import RuleConfig
from monitor.match.atoms import And, Author, Node, Not, Or, Org, Term, Upvotes, make_term
from monitor.match.names import parse_name
from monitor.match.query import parse_query
from monitor.match.text import normalize_phrase, tokenize
from monitor.models import Paper


def term_regex(words: tuple[str, ...], prefix: bool) -> str:
    """Whole words in order on the space-joined folded words: ``\\bkv cache\\b``, ``\\bquantiz``."""
    return r"\b" + " ".join(map(re.escape, words)) + ("" if prefix else r"\b")


def _part(word: str) -> str:
    """A word that agrees with the watched one: itself, its initial, or, for a watched initial, any
    word that starts with it."""
    first = re.escape(word[0])
    return first + r"\w*" if len(word) == 1 else f"(?:{re.escape(word)}|{first})"


def _given(word: str) -> str:
    """A paper's given name that agrees with the watched one. A hyphenated ``jun-yan`` agrees with
    ``jun-yan``, ``j-y`` (part by part), ``junyan``, ``jy`` and ``j``; a one-word name with itself,
    its initial, or a hyphenated name that is the word split up (``jun-yan`` for ``junyan``) or
    whose initials spell it (``j-y`` for ``jy``)."""
    parts = word.split("-")
    if len(parts) > 1:
        joined, initials = "".join(parts), "".join(part[0] for part in parts)
        return (f"(?:{'-'.join(map(_part, parts))}|{' '.join(map(_part, parts))}|{re.escape(joined)}"
                f"|{re.escape(initials)}|{re.escape(word[0])})")
    if len(word) == 1:
        return re.escape(word) + r"[\w-]*"
    split_up = "-?".join(map(re.escape, word))  # the word itself among them
    by_initials = "-".join(re.escape(letter) + r"\w*" for letter in word)
    return f"(?:{split_up}|{re.escape(word[0])}|{by_initials})"


def author_regex(name: str) -> str:
    """One line per paper author, ``given... surname``: the watched given names embed in the
    author's (extra middle names allowed), or the author's in the watched ones."""
    parsed = parse_name(name)
    assert parsed is not None
    surname = re.escape(parsed.surname)
    # Watched given names next to each other may be the parts of the author's hyphenated one.
    givens = r"(?: (?:[\w-]+ )*?|-)".join(map(_given, parsed.given))
    watch_in_author = r"^(?:[\w-]+ )*?" + (givens + r" (?:[\w-]+ )*?" if givens else "")
    pattern = watch_in_author + surname + "$"
    if parsed.given:
        author_in_watch = r"^(?=[\w-]+ \w)" + "".join(
            # (or joined by a hyphen to the next watched name: the parts of the author's one)
            f"(?:{_given(w)} |{_given(w)}-(?={_given(after)}[ -]))?" if after else f"(?:{_given(w)} )?"
            for w, after in zip(parsed.given, (*parsed.given[1:], None), strict=True))
        pattern = f"(?:{pattern})|(?:{author_in_watch}{surname}$)"
    return pattern


@dataclass
class _Texts:
    title: str
    abstract: str
    authors: str
    orgs: set[str]
    upvotes: int | None


def _texts(paper: Paper) -> _Texts:
    lines = []
    for raw in paper.authors:
        parsed = parse_name(raw)
        if parsed is not None:
            lines.append(" ".join((*parsed.given, parsed.surname)))
    return _Texts(
        " ".join(tokenize(paper.title)), " ".join(tokenize(paper.abstract)), "\n".join(lines),
        {normalize_phrase(paper.organization), normalize_phrase(paper.organization_id)} - {""},
        paper.upvotes,
    )


def _any_text(pattern: re.Pattern[str] | None, texts: _Texts) -> bool:
    return pattern is not None and bool(pattern.search(texts.title) or pattern.search(texts.abstract))


class _ReferenceRule:
    def __init__(self, rule: RuleConfig) -> None:
        self.name = rule.name
        self.keywords = self._terms(rule.keywords)
        self.excludes = self._terms(rule.exclude)
        authors = [author_regex(a) for a in rule.authors]
        self.authors = re.compile("|".join(f"(?:{a})" for a in authors), re.M) if authors else None
        self.orgs = {normalize_phrase(o) for o in rule.organizations}
        self.query = parse_query(rule.query) if rule.query is not None else None
        self.patterns: dict[Node, re.Pattern[str]] = {}
        if self.query is not None:
            self._compile_query(self.query)
        self.match_all = not (rule.keywords or rule.authors or rule.organizations or rule.query)
        self.min_upvotes = rule.min_upvotes

    @classmethod
    def _terms(cls, terms: list[str]) -> re.Pattern[str] | None:
        return cls._alternation([term_regex(t.words, t.prefix) for t in map(make_term, terms)])

    @staticmethod
    def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    def _compile_query(self, node: Node) -> None:
        if isinstance(node, And | Or):
            for child in node.children:
                self._compile_query(child)
        elif isinstance(node, Not):
            self._compile_query(node.child)
        elif isinstance(node, Term):
            self.patterns[node] = re.compile(term_regex(node.words, node.prefix))
        elif isinstance(node, Author):
            self.patterns[node] = re.compile(author_regex(node.name), re.M)

    def _holds(self, node: Node, texts: _Texts) -> bool:
        if isinstance(node, And):
            return all(self._holds(child, texts) for child in node.children)
        if isinstance(node, Or):
            return any(self._holds(child, texts) for child in node.children)
        if isinstance(node, Not):
            return not self._holds(node.child, texts)
        if isinstance(node, Upvotes):
            return node.holds(texts.upvotes)
        if isinstance(node, Org):
            return normalize_phrase(node.name) in texts.orgs
        if isinstance(node, Author):
            return bool(self.patterns[node].search(texts.authors))
        pattern = self.patterns[node]
        return (node.field != "abstract" and bool(pattern.search(texts.title))) or (
            node.field != "title" and bool(pattern.search(texts.abstract))
        )

    def matches(self, texts: _Texts) -> bool:
        if _any_text(self.excludes, texts):
            return False
        if self.min_upvotes is not None and (texts.upvotes is None or texts.upvotes < self.min_upvotes):
            return False
        return (
            self.match_all
            or _any_text(self.keywords, texts)
            or (self.authors is not None and bool(self.authors.search(texts.authors)))
            or bool(self.orgs & texts.orgs)
            or (self.query is not None and self._holds(self.query, texts))
        )


class ReferenceMatcher:
    """``match(paper)``: the names of the rules the paper satisfies, in rule order."""

    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        self.rules = [_ReferenceRule(rule) for rule in rules]

    def match(self, paper: Paper) -> list[str]:
        texts = _texts(paper)
        return [rule.name for rule in self.rules if rule.matches(texts)]
