"""The rule index: matching a paper costs in proportion to its own words and the rules those words
can satisfy, not to the rule count.

A paper's words and adjacent pairs find the atoms that hold (a dictionary probe per word, memoized;
a set probe per pair); each atom that holds finds its record, made the first time it held that way
(in the title, only in the abstract, or for an author, spelled one way), since that is all its
reasons depend on: the hits of the rules it makes match outright, the hits still to check against excludes,
``min_upvotes`` or a query of their own, and the rules whose queries it may make hold. Rules with
no atom to wait for sit on a short list (or, for pure ``min_upvotes`` rules, a sorted one).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Collection, Sequence
from itertools import chain, islice, repeat
from operator import itemgetter

from monitor.config import RuleConfig
from monitor.match.build import Builder, Excludes, Predicate, Said, compile_all, frozen, reason, said
from monitor.match.explain import upvotes_reason
from monitor.match.text import PaperText, normalize_phrase
from monitor.models import Hit, Paper

_MEMO_LIMIT = 500_000
# The hits kept for rules of min_upvotes alone, over all upvote counts: each count keeps one hit per
# rule it reaches, so a few thousand such rules would otherwise keep millions.
_UPVOTE_HITS_LIMIT = 100_000
# What the word memo answers for a word it has not seen: a tuple holding an id no atom has.
_UNSEEN = -(2**62)
_NOT_SEEN = (_UNSEEN,)

# A hit still to be checked: (hit, excludes, min_upvotes, the rule's query).
Guarded = tuple[Hit, Excludes | None, int | None, Predicate | None]

# What one atom holding one way does: (its hits, its guarded hits, ids of the rules whose queries it
# may make hold).
Record = tuple[tuple[Hit, ...], tuple[Guarded, ...], tuple[int, ...]]
# A field's words, and the atoms each makes hold.
Memo = dict[str, tuple[int, ...]]

_HITS, _GUARDED, _QUERIES = (itemgetter(i) for i in range(3))
_RULE = itemgetter(0)


def compile_rules(rules: Sequence[RuleConfig], names: Collection[str] | None = None) -> RuleIndex:
    """Compile the rules that are on (``enabled``) into an index, or, given ``names``, the rules of
    those names, on or off; ``ConfigError`` names the rule and the term at fault."""
    return RuleIndex(rules, names)


def check_rules(rules: Sequence[RuleConfig]) -> None:
    """``ConfigError`` naming every problem of every rule (on or off), as ``compile_rules`` finds
    them, without building the index they would make (check-config: 2.4 s of 100,000 rules)."""
    compile_all(rules, Builder())


class RuleIndex:
    """The rules compiled; ``match(paper)`` returns the rules the paper satisfies."""

    def __init__(self, rules: Sequence[RuleConfig], names: Collection[str] | None = None) -> None:
        builder = Builder()
        plans, triggers_of = compile_all(rules, builder, names)
        # A rule's keywords, authors and organizations make it match when one holds (given its
        # excludes, min_upvotes, and query: if that holds too, the query's reasons join in); a
        # rule's query is checked when one of its triggers holds.
        entries: dict[int, list[tuple[int, Said]]] = {}
        queries: dict[int, list[int]] = {}
        always: list[int] = []
        by_threshold: list[tuple[int, int]] = []
        plain_thresholds: list[tuple[int, int]] = []
        for rule_id, (plan, rule_triggers) in enumerate(zip(plans, triggers_of, strict=True)):
            for atom_id, what in plan.entries:
                entries.setdefault(atom_id, []).append((rule_id, what))
            if plan.slow is None:
                continue
            if plan.slow.query is not None and rule_triggers is not None:
                for atom_id in rule_triggers:
                    queries.setdefault(atom_id, []).append(rule_id)
            elif plan.slow.query is None and plan.min_upvotes is not None:
                (by_threshold if plan.excludes else plain_thresholds).append((plan.min_upvotes, rule_id))
            else:
                always.append(rule_id)
        self._plans = tuple(plans)
        self._position = {plan.name: i for i, plan in enumerate(plans)}
        self._authors = builder.authors
        self._entries = frozen(entries)
        self._queries = frozen(queries)
        self._always = tuple(always)
        by_threshold.sort()
        self._thresholds = [threshold for threshold, _ in by_threshold]
        self._threshold_rules = tuple(rule_id for _, rule_id in by_threshold)
        # Rules of min_upvotes alone match every paper with that many upvotes, for the same reason.
        self._plain_thresholds = tuple(sorted(plain_thresholds))
        self._by_upvotes: dict[int, tuple[Hit, ...]] = {}
        self._words = frozen(builder.words)
        self._pairs = frozen(builder.pairs)
        # Most adjacent pairs of a paper are no rule's phrase: a set says so from one place in its
        # table (it probes neighbouring slots first), a dict from two (its index, then its entries).
        self._pair_keys = frozenset(self._pairs)
        self._prefixes = frozen(builder.prefixes)
        self._prefix_lengths = sorted({len(p) for p in self._prefixes})
        self._prefix_slices = [slice(0, length) for length in self._prefix_lengths]
        # A word no prefix can start (most) is told by its first letters, as long as the shortest.
        shortest = self._prefix_lengths[0] if self._prefix_lengths else 0
        self._prefix_heads = frozenset(prefix[:shortest] for prefix in self._prefixes)
        self._title_only = frozenset(builder.title_only)
        self._abstract_only = frozenset(builder.abstract_only)
        self._checks = tuple(builder.checks)
        self._orgs = frozen(builder.orgs)
        builder.release()
        # Paper words and author names recur across papers: remember the atoms each one makes hold
        # (a title word, an abstract word: those of the other field's terms left out), and each
        # atom's record, as it holds in the title, in the abstract, or by an author.
        self._title_memo: Memo = {}
        self._abstract_memo: Memo = {}
        self._author_memo: dict[str, tuple[int, ...]] = {}
        self._in_title: dict[int, Record] = {}
        self._in_abstract: dict[int, Record] = {}
        self._by_author: dict[tuple[int, str], Record] = {}
        self._reason_tuples: dict[str, tuple[str]] = {}

    def __len__(self) -> int:
        return len(self._plans)

    def let_go(self, pause: Callable[[], object], chunk: int = 2_000) -> None:
        """Empty the index ``chunk`` objects at a time, ``pause()`` between: freed at once, the
        millions of objects of 100,000 rules hold the GIL, and so every thread, for 1.5-2.5 s. For an
        index nothing matches with any more (it is unusable after)."""
        parts: list[object] = list(vars(self).values())
        vars(self).clear()
        while parts:
            part = parts.pop()
            if isinstance(part, dict):
                while part:
                    for _ in range(min(chunk, len(part))):
                        part.popitem()
                    pause()
            elif isinstance(part, tuple | list | set | frozenset) and len(part) > chunk:
                items = list(part)
                part = None  # (only its items are left, in ``items``)
                while items:
                    del items[-chunk:]
                    pause()
            elif type(part).__module__.startswith("monitor.match") and hasattr(part, "__dict__"):
                parts += vars(part).values()  # the author watches' tables
                vars(part).clear()
            del part

    def rule_names(self) -> list[str]:
        return [plan.name for plan in self._plans]

    def order(self, hits: list[Hit]) -> list[Hit]:
        """``hits`` in the order of the rules in the config, for people to read."""
        return sorted(hits, key=lambda hit: self._position[hit.rule])

    def match(self, paper: Paper) -> list[Hit]:
        """Every rule ``paper`` satisfies, each with its reasons and channels, in no particular
        order (``order`` gives the config's)."""
        text = PaperText.of(paper.title, paper.abstract)
        true, in_title = self._true_terms(text)
        records = self._records(list(in_title), self._in_title, True)
        aliases: dict[int, str] = {}
        if paper.authors and self._authors:
            self._true_authors(paper.authors, true, aliases)
            if len(self._by_author) > _MEMO_LIMIT:
                self._by_author.clear()
            memo = self._by_author
            for key in aliases.items():
                record = memo.get(key)
                if record is None:
                    record = memo[key] = self._record(*key)
                records.append(record)
        if self._orgs and (paper.organization or paper.organization_id):
            for org in {normalize_phrase(paper.organization), normalize_phrase(paper.organization_id)}:
                true.update(self._orgs.get(org, ()))
        records += self._records(list(true.difference(in_title, aliases)), self._in_abstract, False)

        hits = list(chain.from_iterable(map(_HITS, records)))
        upvotes = paper.upvotes
        for hit, excludes, minimum, query in chain.from_iterable(map(_GUARDED, records)):
            if excludes is not None and excludes.occur_in(text):
                continue
            if query is not None and query(true, upvotes):
                continue  # its query holds as well: checked below, with all the reasons
            if minimum is not None:
                if upvotes is None or upvotes < minimum:
                    continue
                hit = Hit(hit.rule, (*hit.reasons, upvotes_reason(upvotes, ">=", minimum)), hit.notify)
            hits.append(hit)
        candidates = set(chain.from_iterable(map(_QUERIES, records)))
        candidates.update(self._always)
        if upvotes is not None:
            if self._plain_thresholds:
                found = self._by_upvotes.get(upvotes)
                hits += self._upvote_hits(upvotes) if found is None else found
            if self._thresholds:
                candidates.update(self._threshold_rules[: bisect_right(self._thresholds, upvotes)])
        if candidates:
            self._check(candidates, upvotes, true, in_title, aliases, text, hits)
        if len(hits) > 1:
            names = list(map(_RULE, hits))
            if len(set(names)) < len(names):
                hits = self._merge(hits, names, upvotes, true, in_title, aliases)
        return hits

    def _merge(self, hits: list[Hit], names: list[str], upvotes: int | None, true: set[int],
               in_title: set[int], aliases: dict[int, str]) -> list[Hit]:
        """One hit for each rule two of whose atoms hold, with the reasons of both."""
        seen: set[str] = set()
        repeated = {name for name in names if name in seen or seen.add(name)}  # type: ignore[func-returns-value]
        merged = [hit for hit in hits if hit.rule not in repeated]
        for name in repeated:
            _, notify, _, minimum, entries, _ = self._plans[self._position[name]]
            reasons = said(entries, true, in_title, aliases)
            if minimum is not None:
                reasons.append(upvotes_reason(upvotes, ">=", minimum))
            merged.append(Hit(name, tuple(reasons), notify))
        return merged

    def _upvote_hits(self, upvotes: int) -> tuple[Hit, ...]:
        """The hits of the rules of min_upvotes alone that a paper with ``upvotes`` satisfies."""
        if (len(self._by_upvotes) + 1) * len(self._plain_thresholds) > _UPVOTE_HITS_LIMIT:
            self._by_upvotes.clear()
        hits: list[Hit] = []
        for minimum, rule_id in self._plain_thresholds:
            if minimum > upvotes:
                break
            plan = self._plans[rule_id]
            hits.append(Hit(plan.name, (upvotes_reason(upvotes, ">=", minimum),), plan.notify))
        found = self._by_upvotes[upvotes] = tuple(hits)
        return found

    def _true_terms(self, text: PaperText) -> tuple[set[int], set[int]]:
        """The term atoms that hold, and those that hold in the title. A title: term holds only
        by the title's words and an abstract: term only by the abstract's: each field's memo
        leaves out the other's."""
        in_title = self._atoms_of(text.title_words, self._title_memo, self._abstract_only)
        true = in_title | self._atoms_of(text.abstract_words, self._abstract_memo, self._title_only)
        if true and min(true) < 0:  # checks have the negative ids
            checks = [check_id for check_id in true if check_id < 0]
            in_title.difference_update(checks)
            true.difference_update(checks)
            for check_id in checks:
                atom_id, needle, scope = self._checks[-check_id - 1]
                where = text.where(needle, scope)
                if where is not None:
                    true.add(atom_id)
                    if where == "title":
                        in_title.add(atom_id)
        return true, in_title

    def _atoms_of(self, words: list[str], memo: Memo, other: frozenset[int]) -> set[int]:
        """The atoms (and checks) that ``words`` make hold, by word and by adjacent pair.

        Each step is one C-level pass (map, filter, chain), since a paper has hundreds of words:
        a word not seen before shows as the ``_UNSEEN`` id: the words not in the memo are learned,
        and the pass made again."""
        atoms = set(chain.from_iterable(filter(None, map(memo.get, words, repeat(_NOT_SEEN)))))
        if _UNSEEN in atoms:  # a new paper has a few new words
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
            for word in set(words).difference(memo):
                self._learn(word, memo, other)
            atoms = set(chain.from_iterable(filter(None, map(memo.get, words, repeat(_NOT_SEEN)))))
            if _UNSEEN in atoms:  # another thread cleared the memo meanwhile: one word at a time
                learn = self._learn
                atoms = set(chain.from_iterable(
                    learn(word, memo, other) if (known := memo.get(word)) is None else known for word in words
                ))
        if self._pairs:
            pairs = zip(words, islice(words, 1, None))  # noqa: B905  # one shorter, by design
            found = self._pair_keys.intersection(pairs)
            if found:
                atoms.update(chain.from_iterable(map(self._pairs.__getitem__, found)))
        return atoms

    def _learn(self, word: str, memo: Memo, other: frozenset[int]) -> tuple[int, ...]:
        """The single-word and prefix atoms (and checks) ``word`` makes hold, but for the other
        field's terms, memoized."""
        atoms = self._words.get(word, ())
        if self._prefixes and word[: self._prefix_lengths[0]] in self._prefix_heads:
            fitting = self._prefix_slices[: bisect_right(self._prefix_lengths, len(word))]
            starts = map(word.__getitem__, fitting)
            atoms += tuple(chain.from_iterable(filter(None, map(self._prefixes.get, starts))))
        if other and not other.isdisjoint(atoms):
            atoms = tuple(atom_id for atom_id in atoms if atom_id not in other)
        memo[word] = atoms
        return atoms

    def _true_authors(self, authors: list[str], true: set[int], aliases: dict[int, str]) -> None:
        memo = self._author_memo
        for raw in authors:
            found = memo.get(raw)
            if found is None:
                if len(memo) > _MEMO_LIMIT:
                    memo.clear()
                found = memo[raw] = self._authors.watches_of(raw)
            for atom_id in found:
                if atom_id not in true:
                    true.add(atom_id)
                    aliases[atom_id] = raw

    def _records(self, atoms: list[int], memo: dict[int, Record], in_title: bool) -> list[Record]:
        found = list(map(memo.get, atoms))
        if None in found:  # one pass over tens of records; rare to be true once the memo is warm
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
            for i, atom_id in enumerate(atoms):
                if found[i] is None:
                    found[i] = memo[atom_id] = self._record(atom_id, in_title)
        return found  # type: ignore[return-value]

    def _record(self, atom_id: int, how: bool | str) -> Record:
        """The record of ``atom_id`` holding in the title (``how`` True), only in the abstract
        (False), or, for an author, as that paper author wrote the name (``how`` the name)."""
        plans, strings = self._plans, self._reason_tuples
        hits: list[Hit] = []
        guarded: list[Guarded] = []
        for rule_id, what in self._entries.get(atom_id, ()):
            text = reason(what, how)
            plan = plans[rule_id]
            hit = Hit(plan.name, strings.setdefault(text, (text,)), plan.notify)
            query = plan.slow.holds if plan.slow is not None else None
            if plan.excludes is None and plan.min_upvotes is None and query is None:
                hits.append(hit)
            else:
                guarded.append((hit, plan.excludes, plan.min_upvotes, query))
        return tuple(hits), tuple(guarded), self._queries.get(atom_id, ())

    def _check(self, candidates: set[int], upvotes: int | None, true: set[int], in_title: set[int],
               aliases: dict[int, str], text: PaperText, hits: list[Hit]) -> None:
        """The rules among ``candidates`` whose queries hold (or that have no atoms) and match."""
        plans = self._plans
        for rule_id in candidates:
            plan = plans[rule_id]
            name, notify, excludes, minimum, _, slow = plan
            if excludes is not None and excludes.occur_in(text):
                continue
            if minimum is not None and (upvotes is None or upvotes < minimum):
                continue
            if slow is None or (slow.holds is not None and not slow.holds(true, upvotes)):
                continue  # a query that does not hold: the rule's own atoms, if any, matched it
            reasons = slow.reasons(plan, true, in_title, upvotes, aliases)
            if reasons is not None:
                hits.append(Hit(name, tuple(reasons), notify))
