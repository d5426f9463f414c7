"""The reasons a match carries, against ``explain`` (which reads the paper directly, with no index):
for random rules without a query, the index gives exactly the lines ``explain`` says hold, in
order."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import RuleConfig
from monitor.match import compile_rules, explain
from monitor.models import Paper
from tests.test_match_properties import paper, rules

_HOLDS = [
    (re.compile(r'^(keyword "[^"]*"): in (title|abstract)$'), r"\1 in \2"),
    (re.compile(r'^(author "([^"]*)"): yes \(as "\2"\)$'), r"\1"),
    (re.compile(r'^(author "[^"]*"): yes (\(as "[^"]*"\))$'), r"\1 \2"),
    (re.compile(r'^(organization "[^"]*"): yes$'), r"\1"),
    (re.compile(r"^min_upvotes (\d+): upvotes (\d+), ok$"), r"upvotes \2 >= \1"),
]


def expected_reasons(rule: RuleConfig, item: Paper) -> tuple[str, ...]:
    reasons = []
    for line in explain(rule, item):
        for pattern, reason in _HOLDS:
            if pattern.match(line):
                reasons.append(pattern.sub(reason, line))
                break
    if not (rule.keywords or rule.authors or rule.organizations or rule.min_upvotes is not None):
        reasons.append("no conditions: every paper")
    return tuple(dict.fromkeys(reasons))


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), st.lists(paper(), min_size=1, max_size=4))
def test_reasons_are_what_explain_says_holds(rule_list: list[RuleConfig], papers: list[Paper]) -> None:
    plain = [rule.model_copy(update={"query": None}) for rule in rule_list]
    index = compile_rules(plain)
    for item in papers:
        for found in index.match(item):
            rule = next(r for r in plain if r.name == found.rule)
            assert found.reasons == expected_reasons(rule, item), (rule, item)
