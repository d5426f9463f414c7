"""Author names: a watched name matches a paper's author despite case, accents, punctuation,
middle names and initials (``Tri Dao`` = ``T. Dao`` = ``Dao, Tri``), never on a different
surname or a different full given name (``Kaiming He`` is not ``Kai He`` nor ``Kaiming Hefner``).

A hyphenated given name is one name, not two: ``Jun-Yan`` is kept as ``jun-yan`` and agrees with
``Junyan``, ``J.-Y.``, ``JY``, ``J.`` and ``Jun Yan``, never with ``Jun`` or ``Yan`` alone (other people).
Suffixes (Jr., Sr., II, III, IV) are dropped: ``Henry Ford II`` is written ``Henry Ford`` as often.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import NamedTuple

from monitor.match.text import tokenize

_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
# Hyphens and dashes that join the parts of one given name (`Jun-Yan`, `J.-Y.`, `Jean‐Pierre`).
_HYPHEN = re.compile("[-\u2010\u2011\u2012\u2013]")
_CHUNK_BREAK = re.compile(r"[\s,]+")


class Name(NamedTuple):
    given: tuple[str, ...]  # folded given names and initials, in order; a hyphenated one as `jun-yan`
    surname: str  # the folded last word of the family name


def _given_names(text: str) -> list[str]:
    """The given names written in ``text``: a hyphenated one joined by ``-`` into one name."""
    names: list[str] = []
    for chunk in _CHUNK_BREAK.split(text):
        words = tokenize(chunk)
        if len(words) > 1 and _HYPHEN.search(chunk):
            names.append("-".join(words))
        else:
            names.extend(words)
    return [name for name in names if name not in _SUFFIXES]


def parse_name(raw: str) -> Name | None:
    """``Dao, Tri`` and ``Tri Dao`` alike; None for a name without letters."""
    family, comma, rest = raw.partition(",")
    rest_words = tokenize(rest)
    if comma and rest_words and not set(rest_words) <= _SUFFIXES:
        given = _given_names(rest)
        family_words = tokenize(family)
    else:
        chunks = [chunk for chunk in _CHUNK_BREAK.split(raw) if tokenize(chunk)]
        # `Dao Jr.`, `Henry Ford II`: the suffix is no surname (a name of a suffix alone is kept).
        while len(chunks) > 1 and set(tokenize(chunks[-1])) <= _SUFFIXES:
            chunks.pop()
        if not chunks:
            return None
        given = _given_names(" ".join(chunks[:-1]))
        family_words = tokenize(chunks[-1])
    if not family_words:
        return None
    # Words of the family name before its last (`van der Berg`, `Smith-Jones`) count as given names.
    return Name((*given, *family_words[:-1]), family_words[-1])


def _parts(name: str) -> list[str]:
    return name.split("-")


def _compatible(a: str, b: str) -> bool:
    """Equal, or one is the other's initial; a hyphenated name agrees with itself written as one
    word (``junyan``), by its initials (``jy``, ``j-y``) or part by part."""
    if a == b or (len(a) == 1 and b.startswith(a)) or (len(b) == 1 and a.startswith(b)):
        return True
    a_parts, b_parts = _parts(a), _parts(b)
    if len(a_parts) == 1 and len(b_parts) == 1:
        return False
    if len(a_parts) == len(b_parts):
        return all(_compatible(x, y) for x, y in zip(a_parts, b_parts, strict=True))
    if len(b_parts) > 1:
        a_parts, b_parts = b_parts, a_parts
    # Now a_parts are of a hyphenated name; the other agrees only as one word.
    return len(b_parts) == 1 and b_parts[0] in ("".join(a_parts), "".join(part[0] for part in a_parts))


def spellings(name: str) -> tuple[str, ...]:
    """The one-word spellings that agree with the hyphenated ``name`` (``junyan``, ``jy``)."""
    parts = _parts(name)
    if len(parts) == 1:
        return ()
    return tuple(dict.fromkeys(("".join(parts), "".join(part[0] for part in parts))))


def _embeds(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    """``short`` is an ordered subsequence of ``long`` (greedy is exact for any pairwise test)."""
    it = iter(long)
    return all(any(_compatible(s, w) for w in it) for s in short)


def given_match(watch: tuple[str, ...], author: tuple[str, ...]) -> bool:
    """Given names agree: one list embeds in the other, so a missing middle name is no obstacle.

    A watch that names only a surname matches any given names; an author shown with a surname
    alone matches only such a watch. A hyphenated name also agrees with its parts written apart,
    next to each other (``Jean-Pierre`` = ``Jean Pierre``), but not with one part alone.
    """
    if _given_match(watch, author):
        return True
    if not any("-" in name for name in (*watch, *author)):
        return False
    watch_parts, author_parts = _split(watch), _split(author)
    return (all(_has_run(group, author_parts) for group in _groups(watch))
            and all(_has_run(group, watch_parts) for group in _groups(author))
            and _given_match(watch_parts, author_parts))


def _split(given: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part for name in given for part in _parts(name))


def _groups(given: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [tuple(_parts(name)) for name in given if "-" in name]


def _has_run(group: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """``group``'s parts agree, in order, with names next to each other in ``names``."""
    return any(all(_compatible(part, name) for part, name in zip(group, names[i:], strict=False))
               for i in range(len(names) - len(group) + 1))


def _given_match(watch: tuple[str, ...], author: tuple[str, ...]) -> bool:
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


# Watched authors of one surname and one set of initials: (atom id, given names).
Watches = list[tuple[int, tuple[str, ...]]]
# Past this many initials (a name of many given names), the watches of a surname are scanned rather
# than looked up by every subset of the author's initials.
_MANY_INITIALS = 4
_NO_INITIALS: frozenset[str] = frozenset()


def _initials(given: tuple[str, ...]) -> tuple[frozenset[str], ...]:
    """The initials under which given names are filed: of the names (``jun-yan bo``: j, b) and, for a
    hyphenated one, of its parts too (j, y, b). Names that agree have initials one within the other
    either way: ``jun-yan`` agrees with ``jy`` as one name, with ``jun yan`` part by part; filed only
    the first way, ``Jun Yan Zhu`` was never tried against the paper author ``Jun-Yan Bo Zhu``."""
    names = frozenset(g[0] for g in given)
    parts = frozenset(p[0] for g in given for p in _parts(g) if p)
    return (names,) if parts == names else (names, parts)


class AuthorWatches:
    """The watched authors of all rules, filed so that a paper author is tried against few."""

    def __init__(self) -> None:
        # surname -> initials of the given names -> watches: an author's given names can only agree
        # with a watch whose initials are a subset or a superset of the author's.
        self.surnames: dict[str, dict[frozenset[str], Watches]] = {}
        self.wide: dict[str, list[tuple[frozenset[str], Watches]]] = {}  # see _wide
        # The same watches again, for a paper author with one given name, written out (most are):
        # (surname, given name or initial) -> watches with that one given name; (surname, initial)
        # -> watches with two or more given names, one of which has that initial.
        self.one_given: dict[tuple[str, str], list[int]] = {}
        self.more_given: dict[tuple[str, str], Watches] = {}

    def __bool__(self) -> bool:
        return bool(self.surnames)

    def add(self, atom_id: int, name: Name) -> None:
        given, surname = name
        buckets = self.surnames.setdefault(surname, {})
        for initials in _initials(given):
            buckets.setdefault(initials, []).append((atom_id, given))
        self.wide.pop(surname, None)
        if len(given) == 1:
            # a hyphenated `jun-yan` is also filed as the one-word `junyan` and `jy` it agrees with
            for spelled in (given[0], *spellings(given[0])):
                self.one_given.setdefault((surname, spelled), []).append(atom_id)
        for initial in {g[0] for g in given} if len(given) > 1 else ():
            self.more_given.setdefault((surname, initial), []).append((atom_id, given))

    def _wide(self, surname: str) -> list[tuple[frozenset[str], Watches]]:
        """The watches of ``surname`` with two initials or more, most first."""
        found = self.wide.get(surname)
        if found is None:
            found = sorted(((watched, entries) for watched, entries in self.surnames[surname].items()
                            if len(watched) > 1), key=lambda item: -len(item[0]))
            self.wide[surname] = found
        return found

    def watches_of(self, raw: str) -> tuple[int, ...]:
        """The watched-author atoms that the paper author ``raw`` satisfies.

        Only watches whose initials are a subset of the author's (looked up, one set at a time)
        or a superset (few: names with more given names) are tried; a common surname may have
        hundreds of watches."""
        name = parse_name(raw)
        buckets = self.surnames.get(name.surname) if name is not None else None
        if name is None or not buckets:
            return ()
        given = name.given
        if len(given) == 1 and len(given[0]) > 1 and "-" not in given[0]:
            # "Wei Zhang" is "Zhang", "Wei Zhang", "W. Zhang", or a longer name with "Wei" or "W."
            first = given[0]
            found = [atom_id for atom_id, _ in buckets.get(_NO_INITIALS, ())]
            found += self.one_given.get((name.surname, first), ())
            found += self.one_given.get((name.surname, first[0]), ())
            found += [atom_id for atom_id, watched_given in self.more_given.get((name.surname, first[0]), ())
                      if given_match(watched_given, given)]
            return tuple(found)
        tried: list[Watches] = []
        for initials in _initials(given):
            tried += self._tried(name.surname, buckets, initials)
        matched = (atom_id for entries in tried for atom_id, watched_given in entries
                   if given_match(watched_given, given))
        return tuple(dict.fromkeys(matched))  # (a hyphenated name's watch is filed twice)

    def _tried(self, surname: str, buckets: dict[frozenset[str], Watches],
               initials: frozenset[str]) -> list[Watches]:
        """The watches whose initials are a subset or a superset of ``initials``."""
        if len(initials) > _MANY_INITIALS:
            return [entries for watched, entries in buckets.items()
                    if watched <= initials or initials <= watched]
        subsets = (frozenset(subset) for size in range(len(initials) + 1)
                   for subset in combinations(initials, size))
        tried = [entries for subset in subsets if (entries := buckets.get(subset))]
        if initials:  # (an author named by surname alone is only a watch named so)
            for watched, entries in self._wide(surname):
                if len(watched) <= len(initials):
                    break
                if initials < watched:
                    tried.append(entries)
        return tried
