"""Property: the index and the naive regex reference (tests/match_reference.py) agree on which rules
match, for random rules and papers drawn from a small vocabulary so that they collide often."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import RuleConfig
from monitor.match import compile_rules
from monitor.models import Paper
from tests.match_reference import ReferenceMatcher

WORDS = ["kv", "cache", "cached", "caches", "quantization", "quantized", "quant", "model", "models",
         "speculative", "decoding", "survey", "large", "language", "café", "straße", "x", "4"]
SEPARATORS = [" ", " ", " ", "-", "/", "_", ", ", "  \n"]
PEOPLE = [("Tri", "Dao"), ("Kaiming", "He"), ("Kai", "He"), ("Song", "Han"), ("Han", "Song"),
          ("Tri", "Dang"), ("Yang", "He"), ("Trí", "Đào"), ("Kaiming", "Hefner"), ("Jun-Yan", "Zhu"),
          ("Jun", "Zhu"), ("Junyan", "Zhu"), ("Yan", "Zhu"), ("J.-Y.", "Zhu"), ("JY", "Zhu"),
          ("Jun Yan", "Zhu"), ("J. Y.", "Zhu")]
ORGS = ["caltech", "MIT", "ibm-research", "Kolors Team"]

word = st.sampled_from(WORDS)
cased = st.tuples(word, st.sampled_from([str.lower, str.upper, str.title])).map(lambda t: t[1](t[0]))
texts = st.lists(st.tuples(cased, st.sampled_from(SEPARATORS)), max_size=12).map(
    lambda parts: "".join(w + sep for w, sep in parts).strip()
)


def _write_name(parts: tuple[tuple[str, str], str, int]) -> str:
    """A name as a page or a user might write it: initials, comma form, middle names, case, or the
    surname alone."""
    (first, last), middle, style = parts
    if style == 4:
        return last
    given = f"{first[0]}." if style == 1 else first
    if style == 2:
        return f"{last}, {given} {middle}".strip()
    name = " ".join(p for p in (given, middle, last) if p)
    return name.upper() if style == 3 else name


person = st.tuples(st.sampled_from(PEOPLE), st.sampled_from(["", "A.", "Bo"]), st.integers(0, 4)).map(
    _write_name
)


def _write_keyword(parts: tuple[list[str], int, str]) -> str:
    words, cut, joiner = parts
    if cut and len(words[-1]) > 2:
        words = [*words[:-1], words[-1][: max(1, min(cut, len(words[-1]) - 1))] + "*"]
    return joiner.join(words)


keyword = st.tuples(
    st.lists(cased, min_size=1, max_size=3), st.integers(0, 6), st.sampled_from([" ", "-"])
).map(_write_keyword)
atom_query = st.one_of(
    person.map(lambda name: f'author:"{name}"'),
    st.sampled_from(ORGS).map(lambda org: f'org:"{org}"'),
    st.tuples(st.sampled_from([">=", ">", "<", "<=", "="]), st.integers(0, 20)).map(
        lambda t: f"upvotes:{t[0]}{t[1]}"
    ),
    st.tuples(st.sampled_from(["", "", "title:", "abstract:"]), keyword).map(lambda t: f'{t[0]}"{t[1]}"'),
    st.tuples(st.sampled_from(["", "", "title:", "abstract:"]), keyword).map(lambda t: f'{t[0]}"{t[1]}"'),
)
query = st.recursive(
    atom_query,
    lambda inner: st.one_of(
        inner.map(lambda q: f"NOT {q}"),
        st.tuples(st.sampled_from([" AND ", " ", " OR "]), st.lists(inner, min_size=2, max_size=3)).map(
            lambda t: "(" + t[0].join(t[1]) + ")"
        ),
    ),
    max_leaves=6,
)


@st.composite
def rule(draw: st.DrawFn, name: str) -> RuleConfig:
    return RuleConfig(
        name=name,
        keywords=draw(st.lists(keyword, max_size=3)),
        authors=draw(st.lists(person, max_size=2)),
        organizations=draw(st.lists(st.sampled_from(ORGS), max_size=1)),
        query=draw(st.one_of(st.none(), query)),
        exclude=draw(st.lists(keyword, max_size=2)),
        min_upvotes=draw(st.one_of(st.none(), st.integers(0, 20))),
    )


@st.composite
def rules(draw: st.DrawFn) -> list[RuleConfig]:
    count = draw(st.integers(1, 8))
    return [draw(rule(f"rule-{i}")) for i in range(count)]


@st.composite
def paper(draw: st.DrawFn) -> Paper:
    org = draw(st.one_of(st.none(), st.sampled_from(ORGS)))
    return Paper.build(
        title=draw(texts) or "untitled",
        abstract=draw(st.one_of(st.none(), texts)),
        authors=draw(st.lists(person, max_size=4)),
        authors_count=draw(st.one_of(st.none(), st.integers(1, 9))),
        organization_id=org,
        organization=draw(st.sampled_from([None, org])),
        upvotes=draw(st.one_of(st.none(), st.integers(0, 25))),
        source="test",
    )


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), st.lists(paper(), min_size=1, max_size=4))
def test_index_agrees_with_the_reference(rule_list: list[RuleConfig], papers: list[Paper]) -> None:
    index = compile_rules(rule_list)
    reference = ReferenceMatcher(rule_list)
    for item in papers:
        found = index.order(index.match(item))
        assert [m.rule for m in found] == reference.match(item), (item.title, item.abstract, item.authors)
        assert all(m.reasons for m in found)


@settings(max_examples=200, deadline=None)
@given(person, person)
def test_author_matching_agrees_with_the_reference(watch: str, author: str) -> None:
    rule_list = [RuleConfig(name="r", authors=[watch])]
    item = Paper.build(title="t", authors=[author], source="test")
    assert bool(compile_rules(rule_list).match(item)) == bool(ReferenceMatcher(rule_list).match(item))


# A hyphenated given name and its parts written apart, with and without another given name: the
# pairs that random draws from PEOPLE seldom make (found by tests/fuzz.py match).
HYPHENATED = ["Jun-Yan Zhu", "Jun Yan Zhu", "J.-Y. Zhu", "J. Y. Zhu", "Jun Zhu", "Yan Zhu", "JY Zhu",
              "Junyan Zhu", "Jun-Yan Bo Zhu", "Bo Jun-Yan Zhu", "Jun Yan Bo Zhu", "Jun Y Zhu", "J Yan Zhu",
              "Jun Bo Yan Zhu", "Yan Jun Zhu", "Zhu, Jun Yan", "Jun-Yan Li Zhu", "Zhu"]


@pytest.mark.parametrize("watch", HYPHENATED)
def test_hyphenated_names_agree_with_the_reference(watch: str) -> None:
    rule_list = [RuleConfig(name="r", authors=[watch])]
    index, reference = compile_rules(rule_list), ReferenceMatcher(rule_list)
    for author in HYPHENATED:
        item = Paper.build(title="t", authors=[author], source="test")
        assert bool(index.match(item)) == bool(reference.match(item)), (watch, author)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), st.lists(paper(), min_size=2, max_size=5))
def test_memos_never_change_answers(rule_list: list[RuleConfig], papers: list[Paper]) -> None:
    """The index remembers words, authors and hits across papers, and forgets them past a limit:
    neither may change an answer. Here the limit is tiny, so that memos clear all the time."""
    from monitor.match import index as index_module

    cold = [sorted(compile_rules(rule_list).match(item)) for item in papers]  # a fresh index each
    warm = compile_rules(rule_list)
    assert [sorted(warm.match(item)) for item in papers + papers] == cold + cold
    limits = index_module._MEMO_LIMIT, index_module._UPVOTE_HITS_LIMIT
    index_module._MEMO_LIMIT = index_module._UPVOTE_HITS_LIMIT = 1
    try:
        forgetful = compile_rules(rule_list)
        assert [sorted(forgetful.match(item)) for item in papers + papers] == cold + cold
    finally:
        index_module._MEMO_LIMIT, index_module._UPVOTE_HITS_LIMIT = limits
