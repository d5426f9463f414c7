"""Rule semantics, atom by atom: normalization, words, phrases, prefixes, fields, authors,
organizations, upvotes, excludes, the reasons a match carries; then real recorded pages."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import date
from typing import Any

import pytest

from monitor.config import RuleConfig
from monitor.errors import ConfigError
from monitor.match import compile_rules, explain
from monitor.match.names import Name, parse_name
from monitor.models import Hit, Paper
from monitor.sources import parse_page
from tests.helpers import HF_JSON, SEED_PAGES


def paper(title: str = "A paper", abstract: str | None = None, **fields: Any) -> Paper:
    return Paper.build(title=title, abstract=abstract, source="test", **fields)


def run(rule: dict[str, Any], item: Paper) -> list[Hit]:
    return compile_rules([RuleConfig(name="r", **rule)]).match(item)


def matches(rule: dict[str, Any], item: Paper) -> bool:
    return bool(run(rule, item))


# (keyword, title, expected): normalization and word bounds, each case in both directions.
KEYWORDS = [
    ("kv cache", "Efficient KV-cache eviction", True),
    ("KV-cache", "shrinking the kv cache", True),
    ("kv cache", "KV_Cache/offload", True),
    ("kv cache", "kv/cache", True),
    ("kv cache", "Cache KV pairs", False),  # order matters
    ("kv cache", "KV and cache", False),  # adjacent words only
    ("café", "Cafe culture", True),
    ("cafe", "CAFÉ CULTURE", True),
    ("résumé", "resume parsing", True),
    ("strasse", "Die Straße", True),
    ("Straße", "STRASSE", True),
    ("Đào", "dao", True),
    ("fine-tuning", "\ufb01ne tuning", True),  # the ligature fi (NFKC)
    ("full", "\uff26\uff55\uff4c\uff4c width", True),  # fullwidth letters (NFKC)
    ("kv cache", "$\\mathrm{KV}$-Cache compression", True),  # LaTeX noise
    ("kv cache", "<i>KV</i> cache", True),  # markup noise
    ("speculative decoding", "Speculative \n  Decoding", True),
    ("llm", "An LLM's view", True),
    ("cache", "cached results", False),  # whole words only
    ("cache", "caches", False),
    ("cache", "precache", False),
    ("cache*", "cached results", True),
    ("quantiz*", "Quantization of LLMs", True),
    ("quantiz*", "quantized weights", True),
    ("quantiz*", "quantizing", True),
    ("quantiz*", "dequantization", False),  # a prefix starts a word
    ("quantiz*", "quant", False),
    ("large lang*", "large language models", True),
    ("large lang*", "large models", False),
    ("mixture of experts", "Mixture-of-Experts routing", True),
    ("gpt 4", "GPT-4 technical report", True),
]


@pytest.mark.parametrize(("keyword", "title", "expected"), KEYWORDS)
def test_keyword_in_title(keyword: str, title: str, expected: bool) -> None:
    assert matches({"keywords": [keyword]}, paper(title)) is expected


@pytest.mark.parametrize(("keyword", "title", "expected"), KEYWORDS)
def test_keyword_in_abstract(keyword: str, title: str, expected: bool) -> None:
    assert matches({"keywords": [keyword]}, paper("Untitled", abstract=title)) is expected


def test_a_phrase_does_not_run_from_title_into_abstract() -> None:
    assert not matches({"keywords": ["kv cache"]}, paper("Budgets for KV", abstract="Cache sizes grow."))


@pytest.mark.parametrize(("keyword", "title", "expected"), [
    ("alpha divergence", r"Rényi $\alpha$-divergence", True),
    ("alpha-divergence", r"R\'enyi $\alpha$-divergence bounds", True),
    ("gamma", r"A $\Gamma$-convergence view", True),
    ("kv cache", r"\mathrm{KV}-\textbf{cache}", True),
    ("textbf", r"\textbf{Bold} claims", False),  # formatting commands are no words
    ("alphabet", r"$\alpha$bet", False),
])
def test_latex_macros_in_titles(keyword: str, title: str, expected: bool) -> None:
    assert matches({"keywords": [keyword]}, paper(title)) is expected
    assert matches({"query": f'"{keyword}"'}, paper(title)) is expected


# (watch, author as the page prints it, expected)
AUTHORS = [
    ("Tri Dao", "Tri Dao", True),
    ("Tri Dao", "T. Dao", True),
    ("Tri Dao", "Dao, Tri", True),
    ("Tri Dao", "Dao, T.", True),
    ("Tri Dao", "TRI DAO", True),
    ("Tri Dao", "Trí Đào", True),
    ("Tri Dao", "Tri A. Dao", True),  # a middle name the watch leaves out
    ("Tri A. Dao", "Tri Dao", True),  # and one the page leaves out
    ("T. Dao", "Tri Dao", True),
    ("Tri Dao", "Tri Dang", False),
    ("Tri Dao", "Tran Dao", False),
    ("Tri Dao", "Dao", False),
    ("Tri A. Dao", "Tri B. Dao", False),
    ("Kaiming He", "Kaiming He", True),
    ("Kaiming He", "K. He", True),
    ("Kaiming He", "He, Kaiming", True),
    ("Kaiming He", "Kai He", False),
    ("Kaiming He", "Kaiming Hefner", False),
    ("Kaiming He", "Yang He", False),
    ("Song Han", "Han Song", False),  # given and family names are not interchangeable
    ("Michael Alvarez", "R. Michael Alvarez", True),
    ("Martin King", "Martin Luther King, Jr.", True),
    ("Dao", "Tri Dao", True),  # a watched surname alone
    ("Jurgen Schmidhuber", "Jürgen Schmidhuber", True),
    ("Niccolo Biondi", "Niccolò Biondi", True),
    # A hyphenated given name is one name: other people share a part of it.
    ("Jun-Yan Zhu", "Jun Zhu", False),
    ("Jun-Yan Zhu", "Yan Zhu", False),
    ("Jun Zhu", "Jun-Yan Zhu", False),
    ("Yu Wang", "Yu-Xiang Wang", False),
    ("Ming-Hsuan Yang", "Hsuan Yang", False),
    ("Jean-Pierre Dupont", "Pierre Dupont", False),
    ("Jun-Yan Zhu", "Jun-Yan Zhu", True),
    ("Jun-Yan Zhu", "Junyan Zhu", True),
    ("Junyan Zhu", "Jun-Yan Zhu", True),
    ("Jun-Yan Zhu", "J.-Y. Zhu", True),
    ("Jun-Yan Zhu", "JY Zhu", True),
    ("Jun-Yan Zhu", "J. Zhu", True),
    ("Jun-Yan Zhu", "Zhu, Jun-Yan", True),
    ("J.-Y. Zhu", "Jun-Yan Zhu", True),
    ("Jun-Yan Zhu", "Jun-Yang Zhu", False),
    # ... and the same name written with a space, its parts next to each other, in order.
    ("Jean-Pierre Dupont", "Jean Pierre Dupont", True),
    ("Jean Pierre Dupont", "Jean-Pierre Dupont", True),
    ("Jun-Yan Zhu", "Jun Yan Zhu", True),
    ("Jun Yan Zhu", "Jun-Yan Zhu", True),
    ("J.-Y. Zhu", "Jun Yan Zhu", True),
    ("Jun-Yan Zhu", "Yan Jun Zhu", False),
    # ... with a middle name on one side (found by fuzzing the index against tests/match_reference.py:
    # the index filed "Jun Yan" under the initials j, y and looked "Jun-Yan Bo" up under j, b).
    ("Jun Yan Zhu", "Jun-Yan Bo Zhu", True),
    ("Jean Pierre Dupont", "Jean-Pierre A. Dupont", True),
    ("Jun-Yan Bo Zhu", "Jun Yan Zhu", True),
    ("Jun-Yan Li Zhu", "J. Y. Zhu", True),
    ("J. Y. Zhu", "Bo Jun-Yan Zhu", True),
    ("Wei Zhang", "Wei-Wei Zhang", False),
    ("Ai Li", "Ai-Ling Li", False),
    ("Tri Dao", "Tri Dao Jr.", True),
    ("Henry Ford II", "Henry Ford", True),  # a suffix is dropped: pages leave it out as often
]


@pytest.mark.parametrize(("watch", "author", "expected"), AUTHORS)
def test_author_names(watch: str, author: str, expected: bool) -> None:
    assert matches({"authors": [watch]}, paper(authors=["Someone Else", author])) is expected


@pytest.mark.parametrize(("raw", "given", "surname"), [
    ("Dao Jr.", (), "dao"),
    ("Tri Dao Jr.", ("tri",), "dao"),
    ("Henry Ford II", ("henry",), "ford"),
    ("Dao, Tri, Jr.", ("tri",), "dao"),
    ("Jun-Yan Zhu", ("jun-yan",), "zhu"),
    ("J.-Y. Zhu", ("j-y",), "zhu"),
    ("J.Y. Zhu", ("j", "y"), "zhu"),  # initials without a hyphen may be two given names
    ("Zhu, Jun-Yan", ("jun-yan",), "zhu"),
    ("Jr.", (), "jr"),
])
def test_parse_name(raw: str, given: tuple[str, ...], surname: str) -> None:
    assert parse_name(raw) == Name(given, surname)


@pytest.mark.parametrize(("watch", "author", "expected"), AUTHORS)
def test_author_names_in_query(watch: str, author: str, expected: bool) -> None:
    assert matches({"query": f'author:"{watch}"'}, paper(authors=[author])) is expected


def test_a_paper_with_only_an_author_count_matches_no_author_rule() -> None:
    counted = paper(authors_count=6)
    assert not matches({"authors": ["Tri Dao"]}, counted)
    assert not matches({"query": 'author:"Tri Dao" OR author:Dao'}, counted)
    lines = explain(RuleConfig(name="r", authors=["Tri Dao"]), counted)
    assert lines == ['author "Tri Dao": no match: the page lists no author names, only a count (6 authors)']


ORGANIZATIONS = [
    ("caltech", {"organization_id": "caltech", "organization": "California institute of technology"}, True),
    ("CALTECH", {"organization_id": "caltech"}, True),
    ("California Institute of Technology", {"organization": "California institute of technology"}, True),
    ("cal tech", {"organization_id": "caltech"}, False),
    ("caltech", {"organization": "Caltech Alumni"}, False),
    ("caltech", {}, False),
]


@pytest.mark.parametrize(("org", "fields", "expected"), ORGANIZATIONS)
def test_organizations_by_id_or_name(org: str, fields: dict[str, str], expected: bool) -> None:
    assert matches({"organizations": [org]}, paper(**fields)) is expected
    assert matches({"query": f'org:"{org}"'}, paper(**fields)) is expected


UPVOTES = [
    ("upvotes:>=50", 50, True), ("upvotes:>=50", 49, False), ("upvotes:50", 50, True),
    ("upvotes:>50", 50, False), ("upvotes:>50", 51, True), ("upvotes:<10", 9, True),
    ("upvotes:<10", 10, False), ("upvotes:<=10", 10, True), ("upvotes:=7", 7, True),
    ("upvotes:=7", 8, False), ("upvotes:<10", None, False), ("NOT upvotes:>=10", 3, True),
]


@pytest.mark.parametrize(("query", "upvotes", "expected"), UPVOTES)
def test_upvote_comparisons(query: str, upvotes: int | None, expected: bool) -> None:
    assert matches({"query": query}, paper(upvotes=upvotes)) is expected


@pytest.mark.parametrize(("upvotes", "expected"), [(52, True), (50, True), (49, False), (None, False)])
def test_min_upvotes(upvotes: int | None, expected: bool) -> None:
    assert matches({"min_upvotes": 50}, paper(upvotes=upvotes)) is expected
    assert matches({"keywords": ["paper"], "min_upvotes": 50}, paper(upvotes=upvotes)) is expected


def test_min_upvotes_rules_each_apply_their_own_threshold() -> None:
    index = compile_rules([RuleConfig(name=f"over-{n}", min_upvotes=n) for n in (100, 5, 50, 0)])
    assert [m.rule for m in index.order(index.match(paper(upvotes=52)))] == ["over-5", "over-50", "over-0"]
    assert [m.rule for m in index.match(paper(upvotes=None))] == []


@pytest.mark.parametrize(
    ("rule", "title", "abstract", "expected"),
    [
        ({"keywords": ["kv cache"], "exclude": ["survey"]}, "A Survey of KV Cache", None, False),
        ({"keywords": ["kv cache"], "exclude": ["survey"]}, "KV cache", "We survey methods.", False),
        ({"keywords": ["kv cache"], "exclude": ["survey"]}, "KV cache", "We surveyed methods.", True),
        ({"keywords": ["kv cache"], "exclude": ["surv*"]}, "KV cache", "We surveyed methods.", False),
        ({"keywords": ["kv cache"], "exclude": ["a survey"]}, "KV cache: survey", None, True),
        # An excluded phrase holds within the title or the abstract, never across the two.
        ({"keywords": ["kv cache"], "exclude": ["cache survey"]}, "KV cache", "Survey of methods.", True),
        ({"keywords": ["kv cache"], "exclude": ["cache sur*"]}, "KV cache", "Survey of methods.", True),
        ({"keywords": ["kv cache"], "exclude": ["of methods"]}, "KV cache", "Survey of methods.", False),
        ({"keywords": ["kv"], "exclude": ["kv cache"]}, "KV", "Cache", True),
        ({"exclude": ["survey"]}, "Anything", None, True),
        ({"exclude": ["survey"]}, "A survey", None, False),
        ({"query": "NOT survey"}, "Anything", None, True),
        ({"query": "NOT survey", "exclude": ["anything"]}, "Anything", None, False),
    ],
)
def test_exclude(rule: dict[str, Any], title: str, abstract: str | None, expected: bool) -> None:
    assert matches(rule, paper(title, abstract=abstract)) is expected


QUERIES = [
    ('("speculative decoding" OR "kv cache") AND NOT survey AND upvotes:>=10', "Fast KV cache", 12, True),
    ('("speculative decoding" OR "kv cache") AND NOT survey AND upvotes:>=10', "Fast KV cache", 9, False),
    ('("speculative decoding" OR "kv cache") AND NOT survey AND upvotes:>=10', "KV cache survey", 12, False),
    ("kv cache", "cache for the KV store", None, True),  # unquoted words: kv AND cache
    ('"kv cache"', "cache for the KV store", None, False),
    ("title:cache", "cache", None, True),
    ("abstract:cache", "cache", None, False),
    ("title:(kv OR cache) AND NOT abstract:survey", "Cache", None, True),
    ("kv OR cache quantiz*", "cache quantized", None, True),  # AND binds tighter than OR
    ("kv OR cache quantiz*", "cache", None, False),
    ("NOT NOT cache", "cache", None, True),
    ('cache "and"', "cache", None, False),  # a quoted "and" is a word (a bare one is an error)
]


@pytest.mark.parametrize(("query", "title", "upvotes", "expected"), QUERIES)
def test_queries(query: str, title: str, upvotes: int | None, expected: bool) -> None:
    assert matches({"query": query}, paper(title, upvotes=upvotes)) is expected


def test_a_rule_without_conditions_matches_every_paper() -> None:
    assert run({}, paper()) and run({}, paper())[0].reasons == ("no conditions: every paper",)


def test_reasons_say_what_matched_where() -> None:
    rule = {"keywords": ["speculative decoding", "KV cache", "quantiz*"], "authors": ["Tri Dao"],
            "organizations": ["caltech"], "min_upvotes": 50, "notify": []}
    item = paper("Quantized KV-Cache", abstract="Speculative decoding, fast.", authors=["T. Dao"],
                 organization_id="caltech", upvotes=52)
    assert run(rule, item)[0].reasons == (
        'keyword "speculative decoding" in abstract',
        'keyword "KV cache" in title',
        'keyword "quantiz*" in title',
        'author "Tri Dao" (as "T. Dao")',
        'organization "caltech"',
        "upvotes 52 >= 50",
    )
    query = run({"query": 'title:decoding AND author:"Tri Dao" AND upvotes:>40'}, item)
    assert query == []
    found = run({"query": 'title:"kv cache" AND author:"Tri Dao" AND upvotes:>40'}, item)
    assert found[0].reasons == (
        'keyword "kv cache" in title', 'author "Tri Dao" (as "T. Dao")', "upvotes 52 > 40"
    )


KEYWORD_AND_QUERY = {"keywords": ["kv cache"], "query": "title:decoding AND upvotes:>=10",
                     "exclude": ["survey"], "min_upvotes": 5}


@pytest.mark.parametrize(("title", "upvotes", "reasons"), [
    ("KV cache tricks", 7, ('keyword "kv cache" in title', "upvotes 7 >= 5")),
    ("KV cache tricks", 3, None),  # under min_upvotes
    ("Decoding fast", 12, ('keyword "decoding" in title', "upvotes 12 >= 10", "upvotes 12 >= 5")),
    ("Decoding fast", 7, None),  # the query wants 10
    ("KV cache decoding", 12, ('keyword "kv cache" in title', 'keyword "decoding" in title',
                               "upvotes 12 >= 10", "upvotes 12 >= 5")),
    ("KV cache decoding", 7, ('keyword "kv cache" in title', "upvotes 7 >= 5")),
    ("KV cache decoding: a survey", 12, None),  # excluded, whichever clause holds
])
def test_a_rule_with_keywords_and_a_query_gives_the_reasons_of_whichever_hold(
        title: str, upvotes: int, reasons: tuple[str, ...] | None) -> None:
    found = run(KEYWORD_AND_QUERY, paper(title, upvotes=upvotes))
    assert [hit.reasons for hit in found] == ([] if reasons is None else [reasons])


def test_matches_carry_their_channels_and_order_in_config_order() -> None:
    rules = [RuleConfig(name=n, keywords=["cache"], notify=[n + "-ch"]) for n in ("b", "a", "c")]
    index = compile_rules(rules)
    found = index.order(index.match(paper("cache")))
    assert [(m.rule, m.notify) for m in found] == [("b", ("b-ch",)), ("a", ("a-ch",)), ("c", ("c-ch",))]


def test_duplicate_rule_names_are_a_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        compile_rules([RuleConfig(name="a", keywords=["x"]), RuleConfig(name="a", keywords=["y"])])
    assert raised.value.problems == ['rules[1].name: duplicate name "a"']


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"keywords": ["++"]}, 'rules[0].keywords: "++" has no letters or digits'),
        ({"exclude": ["--"]}, 'rules[0].exclude: "--" has no letters or digits'),
        ({"authors": ["..."]}, 'rules[0].authors: "..." has no letters'),
        ({"organizations": ["-"]}, 'rules[0].organizations: "-" has no letters or digits'),
    ],
)
def test_terms_without_words_are_config_errors(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_rules([RuleConfig(name="r", **rule)])
    assert caught.value.problems == [problem]


# On real recorded pages.

def hf_papers() -> list[Paper]:
    return parse_page(HF_JSON.read_bytes())


def seed_papers() -> list[Paper]:
    return [p for page in SEED_PAGES for p in parse_page(page.read_bytes(), today=date(2025, 6, 1))]


def titles(rule: dict[str, Any], papers: list[Paper]) -> list[str]:
    index = compile_rules([RuleConfig(name="r", **rule)])
    return [p.title for p in papers if index.match(p)]


def test_hf_json_keywords_authors_orgs() -> None:
    papers = hf_papers()
    assert titles({"keywords": ["speculative decoding"]}, papers) == [
        "VIA-SD: Verification via Intra-Model Routing for Speculative Decoding"
    ]
    assert titles({"organizations": ["caltech"]}, papers) == titles(
        {"organizations": ["California Institute of Technology"]}, papers
    )
    assert len(titles({"organizations": ["caltech"]}, papers)) == 1
    assert len(titles({"authors": ["Rafal Kocielnik"]}, papers)) == 2
    assert len(titles({"authors": ["Kaiming He"]}, papers)) == 0
    assert len(titles({"authors": ["Y. He"]}, papers)) == 2  # Yang He, twice; not Bo He
    found = run({"authors": ["Michael Alvarez"]}, papers[0])
    assert found[0].reasons == ('author "Michael Alvarez" (as "R. Michael Alvarez")',)
    assert titles({"min_upvotes": 100}, papers) == [
        "MiniMax Sparse Attention",
        "EvoArena: Tracking Memory Evolution for Robust LLM Agents in Dynamic Environments",
    ]


def test_seed_pages_keywords_and_author_counts() -> None:
    papers = seed_papers()
    quantized = titles({"keywords": ["quantiz*"]}, papers)
    spelled_out = ("quantization OR quantized OR quantizing OR quantize OR quantizers OR quantizer OR "
                   "quantizes OR quantizations")
    assert len(quantized) == len(titles({"query": spelled_out}, papers))
    assert quantized
    assert set(titles({"keywords": ["kv cache"]}, papers)) == set(titles({"keywords": ["KV-cache"]}, papers))
    counted = [p for p in papers if not p.authors and p.authors_count]
    assert counted  # the text pages show "N authors" without names
    assert titles({"authors": ["Tri Dao"]}, counted) == []


def test_threads_sharing_an_index_get_the_answers_one_thread_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon polls sources in threads that share the index and its memos; with the memos
    clearing all the time, every thread must still get exactly the sequential answers."""
    from concurrent.futures import ThreadPoolExecutor

    from monitor.match import index as index_module

    papers = hf_papers() + seed_papers()
    rules = [RuleConfig(name="lm", keywords=["language model*", "kv cache"]),
             RuleConfig(name="people", authors=["Tri Dao", "Song Han"], exclude=["survey"]),
             RuleConfig(name="hot", query='(agent* OR reasoning) AND NOT "benchmark"', min_upvotes=5)]
    expected = [sorted(compile_rules(rules).match(p)) for p in papers]
    monkeypatch.setattr(index_module, "_MEMO_LIMIT", 3)
    shared = compile_rules(rules)

    def run_all(_: int) -> list[list[Hit]]:
        return [sorted(shared.match(p)) for p in papers * 5]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run_all, range(4)))
    assert all(result == expected * 5 for result in results)
    assert sum(map(len, expected)) > 20  # the rules do match, so that there is something to get wrong


def test_a_memo_cleared_while_words_are_learned_changes_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worst timing of the test above, made certain: another thread clears the word memo right
    after each word is learned, so the second pass over the paper's words finds them gone."""
    from monitor.match.index import RuleIndex

    papers = hf_papers()
    rules = [RuleConfig(name="lm", keywords=["language model*", "kv cache", "reasoning"]),
             RuleConfig(name="not-surveys", keywords=["agent*"], exclude=["survey"])]
    expected = [sorted(compile_rules(rules).match(p)) for p in papers]
    learn = RuleIndex._learn

    def learn_then_forget(self: RuleIndex, word: str, memo: dict[str, tuple[int, ...]],
                          other: frozenset[int]) -> tuple[int, ...]:
        atoms = learn(self, word, memo, other)
        memo.clear()
        return atoms

    monkeypatch.setattr(RuleIndex, "_learn", learn_then_forget)
    forgetful = compile_rules(rules)
    assert [sorted(forgetful.match(p)) for p in papers] == expected
    assert sum(map(len, expected)) > 5


def test_an_index_let_go_gives_its_memory_back_a_slice_at_a_time() -> None:
    """After a reload the daemon empties the old index in slices (``let_go``), pausing between them
    so that other threads run: its memory comes back while the (now empty) object still exists."""
    rules = [RuleConfig(name=f"r{i}", keywords=[f"word{i} topic{i}", f"stem{i}*"], authors=[f"Ann Lee{i}"])
             for i in range(1_000)]
    papers = parse_page(SEED_PAGES[0].read_bytes(), today=date(2025, 6, 1))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = compile_rules(rules)
        for item in papers:
            index.match(item)  # (its memos filled too)
        built = tracemalloc.get_traced_memory()[0] - before
        pauses: list[int] = []
        index.let_go(lambda: pauses.append(1), chunk=200)
        gc.collect()  # (collects nothing: it empties the interpreter's free lists of small tuples)
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert built > 1_000_000 and left < built / 50, (built, left)
    assert len(pauses) >= 10  # in slices, not at once
