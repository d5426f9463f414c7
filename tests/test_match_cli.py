"""Trying rules from the command line: ``paper-monitor match`` on recorded pages, and
``paper-monitor backtest`` on a store filled by a poll; both as a user runs them, as subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.backtest import tried_rules
from monitor.config import RuleConfig, load_settings
from monitor.errors import ConfigError
from monitor.match import compile_rules
from monitor.models import Paper
from monitor.sources import parse_page
from monitor.store import open_store
from monitor.store.schema import deliveries, matches
from tests.helpers import HF_JSON, SEED_PAGES

RULES = """
[[rules]]
name = "spec"
keywords = ["speculative decoding"]

[[rules]]
name = "quant"
keywords = ["quantiz*"]
exclude = ["survey"]

[[rules]]
name = "people"
authors = ["Rafal Kocielnik", "Michael Alvarez", "Tri Dao"]

[[rules]]
name = "labs"
organizations = ["caltech", "MiniMaxAI"]

[[rules]]
name = "hot"
query = 'upvotes:>=100 AND NOT survey'
"""


def paper_monitor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120, check=False
    )


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "monitor.toml"
    database = f'[monitor]\ndatabase = "sqlite:///{tmp_path / "store.db"}"\n'
    config.write_text(database + extra + RULES, encoding="utf-8")
    return config


def test_match_prints_one_json_line_per_rule_and_paper(tmp_path: Path) -> None:
    pages = [str(HF_JSON), *map(str, SEED_PAGES)]
    done = paper_monitor("match", "--config", str(write_config(tmp_path)), *pages, "--today", "2025-06-01")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(set(line) == {"rule", "key", "title", "reasons"} for line in lines)
    by_rule: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        by_rule.setdefault(str(line["rule"]), []).append(line)
    assert {
        "rule": "spec", "key": "arxiv:2606.12243",
        "title": "VIA-SD: Verification via Intra-Model Routing for Speculative Decoding",
        "reasons": ['keyword "speculative decoding" in title'],
    } in by_rule["spec"]
    people = {(line["title"][:30], tuple(line["reasons"])) for line in by_rule["people"]}  # type: ignore[index]
    assert ("On the Limits of LLM Adaptabil",
            ('author "Rafal Kocielnik"', 'author "Michael Alvarez" (as "R. Michael Alvarez")')) in people
    assert len(by_rule["people"]) == 2  # the text pages list no names, so no author rule matches there
    assert [line["title"] for line in by_rule["hot"]] == [
        "MiniMax Sparse Attention",
        "EvoArena: Tracking Memory Evolution for Robust LLM Agents in Dynamic Environments",
    ]
    assert {line["reasons"][0] for line in by_rule["labs"]} == {  # type: ignore[index]
        'organization "caltech"', 'organization "MiniMaxAI"'
    }
    quant = by_rule["quant"]
    assert len(quant) > 10 and all(str(r["reasons"][0]).startswith('keyword "quantiz*" in ') for r in quant)  # type: ignore[index]
    assert not any("survey" in str(line["title"]).lower() for line in quant)


def test_match_with_a_bad_query_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    config.write_text(config.read_text() + '\n[[rules]]\nname = "bad"\nquery = "kv AND"\n', encoding="utf-8")
    done = paper_monitor("match", "--config", str(config), str(HF_JSON))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "rules[5].query: column 7: expected a term\n"


def stored_papers() -> list[Paper]:
    papers = parse_page(HF_JSON.read_bytes()) + parse_page(SEED_PAGES[0].read_bytes(), today=date(2025, 6, 1))
    return list({paper.key: paper for paper in papers}.values())


def fill_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.apply_poll(stored_papers(), lambda paper: [])
    finally:
        store.close()


def test_backtest_prints_a_table_and_sends_nothing(tmp_path: Path) -> None:
    fill_store(tmp_path)
    done = paper_monitor("backtest", "--config", str(write_config(tmp_path)), "--since", "30d")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["rule", "matches", "examples"]
    table = lines[1:lines.index("")]
    rows = {line.split()[0]: int(line.split()[1]) for line in table if not line[0].isspace()}
    settings = load_settings(tmp_path / "monitor.toml")
    index = compile_rules(settings.rules)
    expected = dict.fromkeys(index.rule_names(), 0)
    for item in stored_papers():
        for found in index.match(item):
            expected[found.rule] += 1
    assert rows == expected
    assert rows["hot"] == 2 and rows["people"] == 2 and rows["spec"] >= 1
    assert "MiniMax Sparse Attention" in done.stdout
    assert "papers seen in the last 30d; nothing was sent." in done.stdout
    assert "list no author names" in done.stdout
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(matches)).scalar_one() == 0
            assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one() == 0
    finally:
        store.close()


def test_backtest_one_rule_and_an_unknown_one(tmp_path: Path) -> None:
    fill_store(tmp_path)
    config = str(write_config(tmp_path))
    done = paper_monitor("backtest", "--config", config, "--rule", "hot")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[1:3]] == ["hot", "EvoArena:"]
    unknown = paper_monitor("backtest", "--config", config, "--rule", "hto")
    assert unknown.returncode == 2
    assert unknown.stderr == '--rule: no rule named "hto" (rules: spec, quant, people, labs, hot)\n'


# -- trying a rule before it is switched on: rules that are off, --rule, --query ------------------

DRAFT = '[[rules]]\nname = "draft"\nkeywords = ["quantiz*"]\nenabled = false\n\n'


def matched(done: subprocess.CompletedProcess[str]) -> dict[str, set[str]]:
    """rule -> the keys of the papers it matched, from ``match``'s JSON lines."""
    assert done.returncode == 0, done.stderr
    found: dict[str, set[str]] = {}
    for line in map(json.loads, done.stdout.splitlines()):
        found.setdefault(line["rule"], set()).add(line["key"])
    return found


def test_match_tries_a_rule_that_is_off_only_when_it_is_named(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, DRAFT))
    on = matched(paper_monitor("match", "--config", config, str(HF_JSON)))
    assert "draft" not in on and on["quant"]
    named = matched(paper_monitor("match", "--config", config, "--rule", "draft", "--rule", "spec",
                                  str(HF_JSON)))
    assert set(named) == {"draft", "spec"} and named["spec"] == on["spec"]
    assert named["draft"] >= on["quant"]  # the same keyword, without quant's exclude


def test_match_tries_a_query_written_on_the_command_line(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, DRAFT))
    query = '"speculative decoding" OR quantiz*'
    found = matched(paper_monitor("match", "--config", config, "--query", query, str(HF_JSON)))
    assert set(found) == {"--query"}
    both = matched(paper_monitor("match", "--config", config, "--rule", "spec", "--rule", "draft",
                                 str(HF_JSON)))
    assert found["--query"] == both["spec"] | both["draft"]


@pytest.mark.parametrize(("args", "message"), [
    (["--query", "kv AND"], "--query: column 7: expected a term"),
    (["--query", 'title:"--"'], '--query: column 7: "--" has no letters or digits'),
    (["--rule", "nope"], '--rule: no rule named "nope" (rules: draft, spec, quant, people, labs, hot)'),
])
def test_a_bad_query_or_rule_name_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    config = str(write_config(tmp_path, DRAFT))
    for command in (["match", "--config", config, *args, str(HF_JSON)],
                    ["backtest", "--config", config, *args]):
        done = paper_monitor(*command)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n"), command


def test_an_unknown_rule_name_lists_ten_rules_of_a_long_config() -> None:
    rules = [RuleConfig(name=f"r{i}") for i in range(100_000)]
    with pytest.raises(ConfigError) as caught:
        tried_rules(rules, ["nope"])
    assert caught.value.problems == [
        '--rule: no rule named "nope" (rules: r0, r1, r2, r3, r4, r5, r6, r7, r8, r9 and 99990 more)']


def test_a_problem_in_a_rule_that_is_off_is_still_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, DRAFT.replace('"quantiz*"', '"quantiz*", "--"'))
    for command in ("check-config", "once"):
        done = paper_monitor(command, "--config", str(config))
        assert (done.returncode, done.stderr) == (2, 'rules[0].keywords: "--" has no letters or digits\n')


def table(stdout: str) -> dict[str, int]:
    """rule (as printed) -> matches, from backtest's table (columns two spaces or more apart)."""
    lines = stdout.splitlines()
    rows = [re.split(r"\s{2,}", line) for line in lines[1:lines.index("")] if not line[0].isspace()]
    return {row[0]: int(row[1]) for row in rows}


def test_backtest_leaves_out_rules_that_are_off_and_tries_one_by_name(tmp_path: Path) -> None:
    fill_store(tmp_path)
    config = str(write_config(tmp_path, DRAFT))
    on = paper_monitor("backtest", "--config", config)
    assert on.returncode == 0, on.stderr
    assert set(table(on.stdout)) == {"spec", "quant", "people", "labs", "hot"}
    assert "note: not tried, being off: draft (try one with --rule NAME)" in on.stdout
    named = paper_monitor("backtest", "--config", config, "--rule", "draft", "--query", "upvotes:>=100")
    assert named.returncode == 0, named.stderr
    settings = load_settings(config)
    index = compile_rules(settings.rules, {"draft"})
    draft = sum(1 for item in stored_papers() if index.match(item))
    hot = table(on.stdout)["hot"]  # the same query with NOT survey: none of these is a survey
    assert table(named.stdout) == {"draft (off)": draft, "--query": hot}
    assert draft >= table(on.stdout)["quant"] > 0 and "not tried" not in named.stdout


def test_backtest_of_many_rules_prints_the_rules_that_matched_and_counts_the_others(tmp_path: Path) -> None:
    fill_store(tmp_path)
    idle = "".join(f'[[rules]]\nname = "idle-{i}"\nkeywords = ["zzqx{i}"]\n\n' for i in range(1995))
    config = str(write_config(tmp_path, idle + DRAFT))
    done = paper_monitor("backtest", "--config", config)
    assert done.returncode == 0, done.stderr
    index = compile_rules(load_settings(config).rules)
    expected = dict.fromkeys(index.rule_names(), 0)
    for item in stored_papers():
        for found in index.match(item):
            expected[found.rule] += 1
    hits = {name: count for name, count in expected.items() if count}
    assert len(expected) == 2000 and set(hits) <= {"spec", "quant", "people", "labs", "hot"}
    assert table(done.stdout) == hits  # in config order, each with its examples under it
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:lines.index("")] if not line[0].isspace()] == list(hits)
    after = lines[lines.index("") + 1:]
    assert after[0] == (f"{2000 - len(hits):,} of 2,000 rules matched nothing "
                        "(name one with --rule NAME to see it here)")
    assert after[1].endswith("papers seen in the last 30d; nothing was sent.")
    assert "note: not tried, being off: draft (try one with --rule NAME)" in after
    assert len(lines) < 40
    # Named, a rule is shown however many are tried, matches or none.
    named = [f"idle-{i}" for i in range(24)] + ["hot"]
    chosen = paper_monitor("backtest", "--config", config, *(arg for n in named for arg in ("--rule", n)))
    assert chosen.returncode == 0, chosen.stderr
    assert table(chosen.stdout) == {**dict.fromkeys(named[:-1], 0), "hot": hits["hot"]}
    assert "matched nothing" not in chosen.stdout


def test_backtest_lists_ten_rules_that_are_off_and_counts_the_others(tmp_path: Path) -> None:
    fill_store(tmp_path)
    drafts = "".join(f'[[rules]]\nname = "draft-{i}"\nkeywords = ["x{i}"]\nenabled = false\n\n'
                     for i in range(30))
    done = paper_monitor("backtest", "--config", str(write_config(tmp_path, drafts)))
    assert done.returncode == 0, done.stderr
    listed = ", ".join(f"draft-{i}" for i in range(10))
    assert f"note: not tried, being off: {listed} and 20 more (try one with --rule NAME)" in done.stdout


def test_check_config_finds_what_compiling_finds_without_building_the_index(tmp_path: Path) -> None:
    from monitor.match import check_rules

    config = write_config(tmp_path, DRAFT.replace('"quantiz*"', '"quantiz*", "--"')
                          + '[[rules]]\nname = "who"\nauthors = ["..."]\n\n')
    rules = load_settings(config).rules
    with pytest.raises(ConfigError) as compiled:
        compile_rules(rules)
    with pytest.raises(ConfigError) as checked:
        check_rules(rules)
    assert checked.value.problems == compiled.value.problems == [
        'rules[0].keywords: "--" has no letters or digits', 'rules[1].authors: "..." has no letters']
    done = paper_monitor("check-config", "--config", str(config))
    assert (done.returncode, done.stderr) == (2, "".join(f"{p}\n" for p in checked.value.problems))
    assert check_rules(load_settings(write_config(tmp_path)).rules) is None
