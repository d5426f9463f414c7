"""The query language: what parses to what, and syntax errors with the column, in the library and
as a config error through ``paper-monitor check-config``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.errors import QuerySyntaxError
from monitor.match.atoms import And, Author, Not, Or, Org, Term, Upvotes
from monitor.match.query import parse_query

KV = Term(("kv", "cache"), False, "any", "kv cache")
A = Term(("a",), False, "any", "a")
B = Term(("b",), False, "any", "b")

PARSES = [
    ('"kv cache"', KV),
    ("\u201ckv cache\u201d", KV),  # typographic quotes, as pasted from a document or a chat
    ("kv cache", And((Term(("kv",), False, "any", "kv"), Term(("cache",), False, "any", "cache")))),
    ("KV-cache", Term(("kv", "cache"), False, "any", "KV-cache")),
    ("quantiz*", Term(("quantiz",), True, "any", "quantiz*")),
    ('"large lang*"', Term(("large", "lang"), True, "any", "large lang*")),
    ('title:"kv cache"', Term(("kv", "cache"), False, "title", "kv cache")),
    ("abstract:survey", Term(("survey",), False, "abstract", "survey")),
    ('author:"Tri Dao"', Author("Tri Dao")),
    ("org:caltech", Org("caltech")),
    ("upvotes:>=10", Upvotes(">=", 10)),
    ("upvotes:10", Upvotes(">=", 10)),
    ("upvotes:<3", Upvotes("<", 3)),
    ("NOT survey", Not(Term(("survey",), False, "any", "survey"))),
    ('"and" OR "not"', Or((Term(("and",), False, "any", "and"), Term(("not",), False, "any", "not")))),
    ("x-ray", Term(("x", "ray"), False, "any", "x-ray")),
    ('"kv cache" OR a AND b', Or((KV, And((A, B))))),
    ("title:(a OR b)", Or((Term(("a",), False, "title", "a"), Term(("b",), False, "title", "b")))),
    (
        '("speculative decoding" OR "kv cache") AND NOT survey AND upvotes:>=10',
        And((
            Or((Term(("speculative", "decoding"), False, "any", "speculative decoding"), KV)),
            Not(Term(("survey",), False, "any", "survey")),
            Upvotes(">=", 10),
        )),
    ),
]


@pytest.mark.parametrize(("text", "tree"), PARSES)
def test_parses(text: str, tree: object) -> None:
    assert parse_query(text) == tree


ERRORS = [
    ("", 1, "empty query"),
    ("   ", 1, "empty query"),
    ("(gpu OR tpu", 12, 'expected ")"'),
    ("kv OR", 6, "expected a term"),
    ("kv AND AND cache", 8, 'expected a term, got "AND"'),
    (")", 1, 'expected a term, got ")"'),
    ("a )", 3, 'unexpected ")"'),
    ("()", 2, 'expected a term, got ")"'),
    ('title:"kv cache', 7, "unterminated quote"),
    ("upvotes:lots", 9, "expected a number after upvotes:, e.g. upvotes:>=10"),
    ("upvotes:", 9, "expected a number after upvotes:, e.g. upvotes:>=10"),
    # (past Python's 4,300 digits int() raised a ValueError: a config line without the column)
    ("kv upvotes:>=" + "9" * 5000, 12, "a number of upvotes up to 999999999, e.g. upvotes:>=10"),
    ("kv AND ++", 8, '"++" has no letters or digits'),
    ('author:"."', 8, 'expected a name, got "."'),
    ("NOT", 4, "expected a term"),
    # Look-alikes that read as words would quietly change what the rule means.
    ("agents and not survey", 8, '"and": write AND, or quote "and" to mean the word'),
    ("agents Or tools", 8, '"Or": write OR, or quote "Or" to mean the word'),
    ("not survey", 1, '"not": write NOT, or quote "not" to mean the word'),
    ("agents -survey", 8, "-survey: write NOT survey"),
    ('authors:"Tri Dao"', 1, 'unknown field "authors:" (title:, abstract:, author:, org:, upvotes:)'),
    ("kv AND titel:kv", 8, 'unknown field "titel:" (title:, abstract:, author:, org:, upvotes:)'),
    ("upvote:>=10", 1, 'unknown field "upvote:" (title:, abstract:, author:, org:, upvotes:)'),
    ("upvotes>=10", 1, "upvotes>=10: write upvotes:>=10"),
]


@pytest.mark.parametrize(("text", "column", "message"), ERRORS)
def test_syntax_errors_carry_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(text)
    assert (caught.value.column, caught.value.message) == (column, message)


def test_a_bad_query_is_a_config_error_naming_rule_and_column(tmp_path: Path) -> None:
    rules = "".join(f'[[rules]]\nname = "r{i}"\nkeywords = ["x{i}"]\n\n' for i in range(3))
    config = tmp_path / "monitor.toml"
    config.write_text(rules + '[[rules]]\nname = "broken"\nquery = "(gpu OR tpu"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert done.stderr == 'rules[3].query: column 12: expected ")"\n'
    assert done.stdout == ""


@pytest.mark.parametrize("depth", [1, 25, 49])
def test_deeply_nested_queries_match_like_shallow_ones(depth: int) -> None:
    """Queries run as generated functions, and as a walk of the tree when nested beyond what the
    generator takes on; both answer alike."""
    from monitor.config import RuleConfig
    from monitor.match import compile_rules
    from monitor.models import Paper

    query = "(" * depth + "gpu AND NOT tpu" + ") OR upvotes:>=100" * depth
    index = compile_rules([RuleConfig(name="deep", query=query)])

    def fires(title: str, upvotes: int | None) -> bool:
        return bool(index.match(Paper.build(title=title, source="t", upvotes=upvotes)))

    assert fires("GPU kernels", None)
    assert not fires("GPU and TPU kernels", 5)
    assert fires("GPU and TPU kernels", 100)
    assert not fires("CPU kernels", None)


def test_a_query_nested_past_the_limit_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(QuerySyntaxError) as raised:
        parse_query("(" * 51 + "gpu" + ")" * 51)
    assert (raised.value.column, raised.value.message) == (
        51, "nested too deeply (at most 50 levels of parentheses, NOT and fields)")
    with pytest.raises(QuerySyntaxError):
        parse_query("NOT " * 5000 + "gpu")


@pytest.mark.parametrize("field", ["org:", "title:", "author:", "abstract:"])
def test_fields_stacked_past_the_limit_are_one_line_not_a_traceback(tmp_path: Path, field: str) -> None:
    """Found while writing the query fuzzer (tests/fuzz.py query): each field before a term was a level
    of recursion with no limit, and a query of 2,000 ``org:`` ended check-config in a RecursionError."""
    config = tmp_path / "monitor.toml"
    config.write_text(f'[[rules]]\nname = "stacked"\nquery = "{field * 2000}x"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"rules[0].query: column {50 * len(field) + 1}: nested too deeply "
                           "(at most 50 levels of parentheses, NOT and fields)\n")
