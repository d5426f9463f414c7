"""``paper-monitor backtest``: run the rules over the stored papers and print what each would have
matched (a count and a few titles), so a rule can be tried before it is switched on. Sends nothing.
With more than a screen of rules, the table has the rules that matched (in config order) and those
named by ``--rule`` or ``--query``; the others are one line, their count.

Which rules are tried (here and in ``paper-monitor match``): the rules that are on; or those named
by ``--rule``, on or off (``enabled = false``: a draft); and ``--query``, a rule of its own written
on the command line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from tqdm import tqdm  # type: ignore[import-untyped]

from monitor.admin import existing_store
from monitor.config import RuleConfig, Settings
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.match import RuleIndex, compile_rules
from monitor.match.atoms import Author, atoms_of
from monitor.match.query import parse_query
from monitor.store import open_store

_EXAMPLES = 3
_LISTED = 10  # rule names an error lists
_TITLE_WIDTH = 80
# Up to this many rules tried, the table has a row for each; beyond, the rules that matched nothing
# (and are not named by --rule) are one line: 100,000 rules made a table of 100,000 rows.
_EVERY_ROW = 20
# The name the --query rule goes by in what is printed.
QUERY_RULE = "--query"


def tried_rules(rules: list[RuleConfig], names: Sequence[str] = (), query: str | None = None) -> RuleIndex:
    """The index of the rules to try: those ``names`` (on or off) and ``query`` as a rule of its own;
    neither given, the rules that are on. ``ConfigError`` for an unknown name or a bad query."""
    known = {rule.name: None for rule in rules}
    for name in names:
        if name not in known:
            listed = ", ".join(list(known)[:_LISTED]) or "none"
            more = f" and {len(known) - _LISTED} more" if len(known) > _LISTED else ""
            raise ConfigError(f'--rule: no rule named "{name}" (rules: {listed}{more})')
    if query is not None:
        rules = [*rules, _query_rule(query)]
    if not names and query is None:
        if not any(rule.enabled for rule in rules):
            raise ConfigError("rules: the config has no rule that is on (name one with --rule, "
                              "or write one with --query)")
        return compile_rules(rules)
    return compile_rules(rules, {*names, *([QUERY_RULE] if query is not None else [])})


def _query_rule(query: str) -> RuleConfig:
    try:
        parse_query(query)
    except QuerySyntaxError as exc:
        raise ConfigError(f"--query: column {exc.column}: {exc.message}") from None
    rule = RuleConfig(name=QUERY_RULE, query=query)
    try:  # what parses may still not compile (a term with no words): say so as --query's
        compile_rules([rule], {QUERY_RULE})
    except ConfigError as exc:
        problems = [problem.replace("rules[0].query", QUERY_RULE, 1) for problem in exc.problems]
        raise ConfigError(problems) from None
    return rule


def backtest(settings: Settings, since_seconds: float, names: Sequence[str] = (),
             query: str | None = None) -> int:
    """Print a table of rule, matches and example titles over papers seen in the last ``since_seconds``."""
    index = tried_rules(settings.rules, names, query)
    tried = index.rule_names()
    by_name = {rule.name: rule for rule in settings.rules}
    if query is not None:
        by_name[QUERY_RULE] = RuleConfig(name=QUERY_RULE, query=query)
    counts = dict.fromkeys(tried, 0)
    examples: dict[str, list[str]] = {name: [] for name in tried}
    seen = nameless = 0
    store = open_store(existing_store(settings.monitor.database))
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
    shown = tried
    if len(tried) > _EVERY_ROW:
        named = {*names, *([QUERY_RULE] if query is not None else [])}
        shown = [name for name in tried if counts[name] or name in named]
    labels = {name: name if by_name[name].enabled else f"{name} (off)" for name in shown}
    _print_table(labels, counts, examples)
    print()
    if len(shown) < len(tried):
        print(f"{len(tried) - len(shown):,} of {len(tried):,} rules matched nothing "
              "(name one with --rule NAME to see it here)")
    print(f"{seen} papers seen in the last {_duration(since_seconds)}; nothing was sent.")
    if nameless and any(_has_author_terms(by_name[name]) for name in tried):
        print(f"note: {nameless} of them list no author names (only a count, or none), "
              "so author terms could not match them.")
    off = [rule.name for rule in settings.rules if not rule.enabled and rule.name not in counts]
    if off:
        more = f" and {len(off) - _LISTED:,} more" if len(off) > _LISTED else ""
        print(f"note: not tried, being off: {', '.join(off[:_LISTED])}{more} (try one with --rule NAME)")
    return 0


def _has_author_terms(rule: RuleConfig) -> bool:
    if rule.authors:
        return True
    return rule.query is not None and any(isinstance(a, Author) for a in atoms_of(parse_query(rule.query)))


def _shorten(title: str) -> str:
    return title if len(title) <= _TITLE_WIDTH else title[: _TITLE_WIDTH - 1] + "…"


def _print_table(labels: dict[str, str], counts: dict[str, int], examples: dict[str, list[str]]) -> None:
    width = max([len("rule"), *map(len, labels.values())])
    print(f"{'rule':<{width}}  {'matches':>7}  examples")
    for name, label in labels.items():
        titles = examples[name] or ["-"]
        print(f"{label:<{width}}  {counts[name]:>7}  {titles[0]}")
        for title in titles[1:]:
            print(f"{'':<{width}}  {'':>7}  {title}")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
