"""The rule index: matching a paper costs in proportion to its own words and the rules those words
can satisfy, not to the rule count.

A paper's words find the atoms that hold (memoized per word),
the atoms find the rules they trigger, and each such rule is checked by its precompiled plan;
rules with no positive atom sit on a short list (or, for pure ``min_upvotes`` rules, a sorted one).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import chain, repeat

from monitor.config import RuleConfig
from monitor.match.atoms import Field
from monitor.match.build import Builder, compile_all, frozen, said
from monitor.match.text import PaperText, normalize_phrase
from monitor.models import Match, Paper

_MEMO_LIMIT = 500_000


def compile_rules(rules: Sequence[RuleConfig]) -> RuleIndex:
    """Compile the rules into an index; ``ConfigError`` names the rule and the term at fault."""
    return RuleIndex(rules)


class RuleIndex:
    """All rules compiled; ``match(paper)`` returns the rules the paper satisfies, in config order."""

    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        builder = Builder()
        plans, triggers_of = compile_all(rules, builder)
        triggers: dict[int, list[int]] = {}
        always: list[int] = []
        by_threshold: list[tuple[int, int]] = []
        for rule_id, (plan, rule_triggers) in enumerate(zip(plans, triggers_of, strict=True)):
            if rule_triggers is not None:
                for atom_id in rule_triggers:
                    triggers.setdefault(atom_id, []).append(rule_id)
            elif not plan.entries and plan.slow is not None and plan.slow.query is None \
                    and plan.min_upvotes is not None:
                by_threshold.append((plan.min_upvotes, rule_id))
            else:
                always.append(rule_id)
        self._plans = tuple(plans)
        self._builder = builder
        self._triggers = frozen(triggers)
        self._always = tuple(always)
        by_threshold.sort()
        self._thresholds = [threshold for threshold, _ in by_threshold]
        self._threshold_rules = tuple(rule_id for _, rule_id in by_threshold)
        self._words = frozen(builder.words)
        self._pairs = frozen(builder.pairs)
        self._pair_keys = frozenset(self._pairs)
        self._prefixes = frozen(builder.prefixes)
        self._prefix_lengths = sorted({len(p) for p in self._prefixes})
        self._scoped_words = {scope: frozen(words) for scope, words in builder.scoped_words.items()}
        self._scoped_pairs = {scope: frozen(pairs) for scope, pairs in builder.scoped_pairs.items()}
        self._scoped_prefixes = frozen(builder.scoped_prefixes)
        self._scoped_lengths = sorted({len(p) for p in self._scoped_prefixes})
        self._check_words = frozen(builder.check_words)
        self._check_pairs = frozen(builder.check_pairs)
        self._check_pair_keys = frozenset(self._check_pairs)
        self._orgs = frozen(builder.orgs)
        # Paper words and author names recur across papers; remember the atoms each one makes hold.
        self._word_memo: dict[str, tuple[int, ...]] = {}
        self._scoped_memo: dict[str, tuple[tuple[int, Field], ...]] = {}
        self._word_seen: set[str] = set()
        self._author_memo: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._plans)

    def rule_names(self) -> list[str]:
        return [plan.name for plan in self._plans]

    def match(self, paper: Paper) -> list[Match]:
        """Every rule ``paper`` satisfies, each with its reasons and channels."""
        text = PaperText(paper.title, paper.abstract)
        true, in_title = self._true_terms(text)
        aliases: dict[int, str] = {}
        if paper.authors and self._builder.surnames:
            self._true_authors(paper.authors, true, aliases)
        if self._orgs and (paper.organization or paper.organization_id):
            for org in {normalize_phrase(paper.organization), normalize_phrase(paper.organization_id)}:
                true.update(self._orgs.get(org, ()))
        candidates = set(chain.from_iterable(map(self._triggers.get, true, repeat(()))))
        candidates.update(self._always)
        upvotes = paper.upvotes
        if upvotes is not None and self._thresholds:
            candidates.update(self._threshold_rules[: bisect_right(self._thresholds, upvotes)])
        found: list[Match] = []
        plans = self._plans
        for rule_id in sorted(candidates):
            name, notify, excludes, minimum, entries, authors, slow = plans[rule_id]
            if excludes is not None and not excludes.isdisjoint(true):
                continue
            if minimum is not None and (upvotes is None or upvotes < minimum):
                continue
            if slow is not None:
                maybe = slow.reasons(plans[rule_id], true, in_title, upvotes, aliases)
                if maybe is None:
                    continue
                reasons = maybe
            else:
                # It was triggered, so one of its keywords, authors or organizations holds.
                if authors:
                    reasons = said(entries, true, in_title, aliases)
                else:
                    reasons = [what[atom_id not in in_title] for atom_id, what in entries
                               if atom_id in true]
                if minimum is not None:
                    reasons.append(f"upvotes {upvotes} >= {minimum}")
            found.append(Match(name, paper, reasons, list(notify)))
        return found

    def _true_terms(self, text: PaperText) -> tuple[set[int], set[int]]:
        """The term atoms that hold, and those of field "any" that hold in the title."""
        self._learn(text.all_words)
        memo = self._word_memo
        known = memo.keys()
        true = set(chain.from_iterable(map(memo.__getitem__, known & text.all_words)))
        in_title = set(chain.from_iterable(map(memo.__getitem__, known & text.title_words_set)))
        if self._pair_keys:
            # A frozenset intersects a set by the hashes both keep, without hashing the pairs again.
            pairs, pair_keys = self._pairs, self._pair_keys
            true.update(chain.from_iterable(map(pairs.__getitem__, pair_keys & text.all_pairs)))
            in_title.update(chain.from_iterable(map(pairs.__getitem__, pair_keys & text.title_pairs)))
        checks = [self._check_words[w] for w in self._check_words.keys() & text.all_words]
        if self._check_pair_keys:
            checks += map(self._check_pairs.__getitem__, self._check_pair_keys & text.all_pairs)
        for atom_id, needle, scope in chain.from_iterable(checks):
            if scope != "abstract" and needle in text.title_text:
                true.add(atom_id)
                in_title.add(atom_id)
            elif scope != "title" and needle in text.abstract_text:
                true.add(atom_id)
        if self._scoped_words or self._scoped_pairs or self._scoped_memo:
            self._true_scoped(text, true)
        return true, in_title

    def _true_scoped(self, text: PaperText, true: set[int]) -> None:
        """Terms of ``title:`` and ``abstract:`` query clauses."""
        for scope, words in self._scoped_words.items():
            present = text.title_words_set if scope == "title" else text.abstract_words_set
            true.update(chain.from_iterable(map(words.__getitem__, words.keys() & present)))
        for scope, pairs in self._scoped_pairs.items():
            adjacent = text.title_pairs if scope == "title" else text.abstract_pairs
            true.update(chain.from_iterable(map(pairs.__getitem__, pairs.keys() & adjacent)))
        memo = self._scoped_memo
        for word in memo.keys() & text.all_words:
            true.update(atom_id for atom_id, scope in memo[word]
                        if word in (text.title_words_set if scope == "title" else text.abstract_words_set))

    def _learn(self, words: set[str]) -> None:
        """Memoize, for each word not seen before, the single-word and prefix atoms it makes hold."""
        memo, seen = self._word_memo, self._word_seen
        if len(seen) > _MEMO_LIMIT:
            memo.clear()
            seen.clear()
            self._scoped_memo.clear()
        words = words.difference(seen)
        if not words:
            return
        seen.update(words)
        exact, prefixes, scoped = self._words, self._prefixes, self._scoped_prefixes
        for word in words:
            hits = exact.get(word, ())
            if prefixes:
                hits += tuple(hit for length in self._prefix_lengths if length <= len(word)
                              for hit in prefixes.get(word[:length], ()))
            if hits:
                memo[word] = hits
            if scoped:
                scoped_hits = tuple(hit for length in self._scoped_lengths if length <= len(word)
                                    for hit in scoped.get(word[:length], ()))
                if scoped_hits:
                    self._scoped_memo[word] = scoped_hits

    def _true_authors(self, authors: list[str], true: set[int], aliases: dict[int, str]) -> None:
        memo = self._author_memo
        for raw in authors:
            found = memo.get(raw)
            if found is None:
                if len(memo) > _MEMO_LIMIT:
                    memo.clear()
                found = memo[raw] = self._builder.watches_of(raw)
            for atom_id in found:
                if atom_id not in true:
                    true.add(atom_id)
                    aliases[atom_id] = raw
