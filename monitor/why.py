"""``paper-monitor why PAPER``: what the monitor did with one paper, and why. When it was seen, the
rules it matched (with their reasons) and what became of each alert; for the rules it did not
match, clause by clause, why not. The answer to "why did I (not) get this paper?".
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from monitor.admin import opened_store, when
from monitor.backtest import tried_rules
from monitor.config import RuleConfig, Settings
from monitor.match.explain import explain
from monitor.models import clean_arxiv_id
from monitor.pipeline import printable
from monitor.store.lookup import Delivery, PaperStory

# Without --rule, the rules that did not match are explained one by one up to this many.
_EXPLAINED = 20
_CANDIDATES = 10


def why(settings: Settings, wanted: str, names: Sequence[str] = ()) -> int:
    """Print the story of the stored paper ``wanted`` names; 2 (a mistake of the asker) if none or
    several do. ``ConfigError`` for a rule of ``names`` that is not in the config."""
    if names:  # told before the story, not after it
        tried_rules(settings.rules, names)
    with opened_store(settings) as store:
        found = store.find_papers(_from_url(wanted), limit=_CANDIDATES + 1)
        story = store.paper_story(found[0].key) if len(found) == 1 else None
    if not found:
        print(f'paper-monitor why: no stored paper is "{printable(wanted)}" (give its key, its arXiv id, '
              "or words of its title)", file=sys.stderr)
        return 2
    if story is None:
        more = " (and more)" if len(found) > _CANDIDATES else ""
        print(f'paper-monitor why: {len(found[:_CANDIDATES])} stored papers{more} have "{printable(wanted)}" '
              "in their titles; name one by its key:", file=sys.stderr)
        for paper in found[:_CANDIDATES]:
            print(f"  {paper.key}  {printable(paper.title)}", file=sys.stderr)
        return 2
    _print_paper(story)
    rules = {rule.name: rule for rule in settings.rules}
    _print_matched(story, rules, settings)
    _print_not_matched(story, settings.rules, names)
    return 0


def _from_url(wanted: str) -> str:
    """The arXiv id of an arXiv or Hugging Face paper URL (abs, pdf, papers pages); else ``wanted``."""
    if not wanted.startswith(("http://", "https://")):
        return wanted
    last = urlsplit(wanted).path.rstrip("/").rpartition("/")[2].removesuffix(".pdf")
    return last if clean_arxiv_id(last) else wanted


def _print_paper(story: PaperStory) -> None:
    paper = story.paper
    print(f"{paper.key}  {printable(paper.title)}")
    if paper.url:
        print(f"  {printable(paper.url)}")
    names = f"{len(paper.authors)} authors named" if paper.authors else (
        f"{paper.authors_count} authors, not named" if paper.authors_count else "no authors listed")
    upvotes = "no upvotes shown" if paper.upvotes is None else f"{paper.upvotes} upvotes"
    print(f"  seen first {when(story.first_seen)}, last {when(story.last_seen)} ({paper.source}); "
          f"{upvotes}; {names}")


def _print_matched(story: PaperStory, rules: dict[str, RuleConfig], settings: Settings) -> None:
    if not story.matched:
        print("matched no rule")
        return
    print("matched:")
    channels = {c.name: c.type for c in settings.channels}
    for rule, (reasons, at) in story.matched.items():
        config = rules.get(rule)
        state = "" if config is None else "" if config.enabled else " (off now)"
        gone = " (no longer in the config)" if config is None else state
        print(f"  {rule}{gone}, {when(at)}: {printable('; '.join(reasons))}")
        sent = [d for d in story.deliveries if d.rule == rule]
        for delivery in sent:
            kind = channels.get(delivery.channel, "gone")
            print(f"    {delivery.channel} ({kind}): {_delivery(delivery)}")
        if not sent:
            notify = config.notify if config is not None else []
            print("    no alert: " + ("the rule notifies no channel" if not notify else
                                      "recorded by a backfill, which does not alert, or its alerts "
                                      "were discarded"))


def _delivery(delivery: Delivery) -> str:
    error = f": {printable(delivery.last_error)}" if delivery.last_error else ""
    tries = f"{delivery.attempts} attempt{'' if delivery.attempts == 1 else 's'}"
    if delivery.state == "sent":
        return f"sent {when(delivery.sent_at)}"
    if delivery.state == "dead":
        return f"dead after {tries}{error} (paper-monitor retry-dead {delivery.channel} sends it again)"
    if delivery.state == "failed":
        return f"failed ({tries}), next try {when(delivery.next_attempt_at)}{error}"
    if delivery.state == "sending":
        return "being sent"
    return f"waiting to be sent (queued {when(delivery.created_at)})"


def _print_not_matched(story: PaperStory, rules: list[RuleConfig], names: Sequence[str]) -> None:
    asked = list(names) or [rule.name for rule in rules if rule.name not in story.matched]
    if not asked:
        return
    if not names and len(asked) > _EXPLAINED:
        print(f"not matched: {len(asked)} rules (ask about some with --rule NAME)")
        return
    index = tried_rules(rules, asked)
    now = {hit.rule: hit.reasons for hit in index.match(story.paper)}
    by_name = {rule.name: rule for rule in rules}
    lines: list[str] = []
    for name in asked:
        if name in story.matched:
            continue  # told above
        rule = by_name[name]
        label = name if rule.enabled else f"{name} (off)"
        if name in now:
            why_not = ("it is off: rules that are off match nothing" if not rule.enabled else
                       "the paper was known before the rule held for it (a rule fires on a paper when the "
                       "paper is new, or changes so as to satisfy it)")
            lines.append(f"  {label}: holds now ({'; '.join(now[name])}), but {why_not}")
        else:
            lines.append(f"  {label}: " + ("; ".join(explain(rule, story.paper)) or "does not hold"))
    if lines:
        print("not matched:")
        for line in lines:
            print(printable(line))
