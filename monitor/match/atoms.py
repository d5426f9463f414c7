"""The atoms of a rule (word, phrase, prefix, author, organization, upvotes) and the boolean nodes
over them; ``parse_query`` builds these, ``compile_rules`` indexes them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from monitor.match.text import normalize_phrase, tokenize

Field = Literal["any", "title", "abstract"]

COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "=": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Term:
    """Whole words in order (one word, or a phrase); ``prefix``: the last word is a prefix."""

    words: tuple[str, ...]
    prefix: bool
    field: Field
    text: str  # as the user wrote it, for explanations

    @property
    def needle(self) -> str:
        """What a field's words joined by spaces (``PaperText.title_text``, ``abstract_text``)
        contain where the term occurs: `` kv cache `` for a phrase, `` quantiz`` for a prefix."""
        return " " + " ".join(self.words) + ("" if self.prefix else " ")


@dataclass(frozen=True, slots=True)
class Author:
    name: str  # as the user wrote it


@dataclass(frozen=True, slots=True)
class Org:
    name: str  # as the user wrote it

    @property
    def normalized(self) -> str:
        return normalize_phrase(self.name)


@dataclass(frozen=True, slots=True)
class Upvotes:
    op: str  # one of COMPARE
    value: int

    def holds(self, upvotes: int | None) -> bool:
        return upvotes is not None and COMPARE[self.op](upvotes, self.value)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Atom = Term | Author | Org | Upvotes
Node = Term | Author | Org | Upvotes | And | Or | Not


def make_term(text: str, field: Field = "any") -> Term:
    """A keyword as written (``kv cache``, ``KV-cache``, ``quantiz*``); ValueError if it has no words."""
    words = tuple(tokenize(text))
    if not words:
        raise ValueError(f'"{text}" has no letters or digits')
    return Term(words, text.rstrip().endswith("*"), field, text.strip())


def atoms_of(node: Node) -> list[Atom]:
    """Every atom under ``node``, in reading order."""
    if isinstance(node, And | Or):
        return [atom for child in node.children for atom in atoms_of(child)]
    if isinstance(node, Not):
        return atoms_of(node.child)
    return [node]
