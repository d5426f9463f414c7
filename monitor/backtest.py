"""``paper-monitor backtest``: run the rules over the stored papers and print what each would have
matched (a count and a few titles), so a rule can be tried before it is switched on. Sends nothing.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm  # type: ignore[import-untyped]

from monitor.config import RuleConfig, Settings
from monitor.errors import ConfigError
from monitor.match import compile_rules
from monitor.match.atoms import Author, atoms_of
from monitor.match.query import parse_query
from monitor.store import open_store

_EXAMPLES = 3
_TITLE_WIDTH = 80


def backtest(settings: Settings, rule: str | None, since_seconds: float) -> int:
    """Print a table of rule, matches and example titles over papers seen in the last ``since_seconds``."""
    rules = _chosen(settings.rules, rule)
    index = compile_rules(rules)
    names = [r.name for r in rules]
    counts = dict.fromkeys(names, 0)
    examples: dict[str, list[str]] = {name: [] for name in names}
    seen = nameless = 0
    store = open_store(settings.monitor.database)
    try:
        papers = store.iter_papers(time.time() - since_seconds)
        # The bar goes to stderr, only for a person watching, and only once a run lasts a second.
        progress = tqdm(papers, unit=" papers", file=sys.stderr, disable=not sys.stderr.isatty(), delay=1.0)
        for paper in progress:
            seen += 1
            nameless += not paper.authors
            for found in index.match(paper):
                counts[found.rule] += 1
                if len(examples[found.rule]) < _EXAMPLES:
                    examples[found.rule].append(_shorten(paper.title))
        progress.close()
    finally:
        store.close()
    _print_table(names, counts, examples)
    print(f"\n{seen} papers seen in the last {_duration(since_seconds)}; nothing was sent.")
    if nameless and any(_has_author_terms(r) for r in rules):
        print(f"note: {nameless} of them list no author names (only a count, or none), "
              "so author terms could not match them.")
    return 0


def _chosen(rules: list[RuleConfig], name: str | None) -> list[RuleConfig]:
    if name is None:
        if not rules:
            raise ConfigError("rules: the config has no rules to try")
        return rules
    chosen = [r for r in rules if r.name == name]
    if not chosen:
        known = ", ".join(r.name for r in rules) or "none"
        raise ConfigError(f'--rule: no rule named "{name}" (rules: {known})')
    return chosen


def _has_author_terms(rule: RuleConfig) -> bool:
    if rule.authors:
        return True
    return rule.query is not None and any(isinstance(a, Author) for a in atoms_of(parse_query(rule.query)))


def _shorten(title: str) -> str:
    return title if len(title) <= _TITLE_WIDTH else title[: _TITLE_WIDTH - 1] + "…"


def _print_table(names: list[str], counts: dict[str, int], examples: dict[str, list[str]]) -> None:
    width = max(len("rule"), *(len(n) for n in names))
    print(f"{'rule':<{width}}  {'matches':>7}  examples")
    for name in names:
        titles = examples[name] or ["-"]
        print(f"{name:<{width}}  {counts[name]:>7}  {titles[0]}")
        for title in titles[1:]:
            print(f"{'':<{width}}  {'':>7}  {title}")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
