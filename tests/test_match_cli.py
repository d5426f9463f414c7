"""Trying rules from the command line: ``paper-monitor match`` on recorded pages, and
``paper-monitor backtest`` on a store filled by a poll; both as a user runs them, as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from monitor.config import load_settings
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
