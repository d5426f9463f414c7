"""Author names: a watched name matches a paper's author despite case, accents, punctuation,
middle names and initials (``Tri Dao`` = ``T. Dao`` = ``Dao, Tri``), never on a different
surname or a different full given name (``Kaiming He`` is not ``Kai He`` nor ``Kaiming Hefner``).
"""

from __future__ import annotations

from typing import NamedTuple

from monitor.match.text import tokenize

_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})


class Name(NamedTuple):
    given: tuple[str, ...]  # folded given names and initials, in order
    surname: str  # the folded last word of the family name


def parse_name(raw: str) -> Name | None:
    """``Dao, Tri`` and ``Tri Dao`` alike; None for a name without letters."""
    family, comma, rest = raw.partition(",")
    rest_words = tokenize(rest)
    if comma and rest_words and not set(rest_words) <= _SUFFIXES:
        words = rest_words + tokenize(family)
    else:
        words = tokenize(raw)
    while len(words) > 2 and words[-1] in _SUFFIXES:
        words.pop()
    if not words:
        return None
    return Name(tuple(words[:-1]), words[-1])


def _compatible(a: str, b: str) -> bool:
    """Equal, or one is the other's initial."""
    return a == b or (len(a) == 1 and b.startswith(a)) or (len(b) == 1 and a.startswith(b))


def _embeds(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    """``short`` is an ordered subsequence of ``long`` (greedy is exact for any pairwise test)."""
    it = iter(long)
    return all(any(_compatible(s, w) for w in it) for s in short)


def given_match(watch: tuple[str, ...], author: tuple[str, ...]) -> bool:
    """Given names agree: one list embeds in the other, so a missing middle name is no obstacle.

    A watch that names only a surname matches any given names; an author shown with a surname
    alone matches only such a watch.
    """
    if not watch:
        return True
    if not author:
        return False
    # Most names have one given name: then one list embeds in the other when that name agrees
    # with one of the other's (two or more names never embed in one).
    if len(watch) == 1:
        if len(author) == 1:
            return _compatible(watch[0], author[0])
        return any(_compatible(watch[0], name) for name in author)
    if len(author) == 1:
        return any(_compatible(name, author[0]) for name in watch)
    return _embeds(watch, author) or _embeds(author, watch)


def names_match(watch: Name, author: Name) -> bool:
    return watch.surname == author.surname and given_match(watch.given, author.given)
