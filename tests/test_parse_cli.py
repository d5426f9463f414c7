"""``paper-monitor parse`` as a user runs it: a real process on files and on a loopback URL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from monitor.sources import parse_page
from tests.helpers import (
    ARXIV_ATOM,
    ARXIV_ATOM_LEGACY,
    ARXIV_RSS_EMPTY,
    DATA,
    HF_HTML,
    HF_JSON,
    REPO,
    SEED_PAGES,
    ReplayServer,
    Reply,
)

PAPER_KEYS = [
    "key", "arxiv_id", "title", "abstract", "authors", "authors_count", "organization", "published",
    "upvotes", "url", "source",
]
TODAY = "2026-06-14"


def run_parse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "parse", *args],
        cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=60, check=False,
    )


def json_lines(stdout: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    for line in lines:
        assert list(line) == PAPER_KEYS  # the INTERFACE.md fields, in that order
    return lines


def expected(path: Path, fmt: str = "auto") -> list[dict[str, object]]:
    return [p.to_json() for p in parse_page(path.read_bytes(), fmt, today=date.fromisoformat(TODAY))]


@pytest.mark.parametrize(
    ("path", "count", "source"),
    [
        (HF_JSON, 30, "hf-json"),
        (HF_HTML, 13, "hf-html"),
        (ARXIV_ATOM, 5, "arxiv-atom"),
        (ARXIV_ATOM_LEGACY, 2, "arxiv-atom"),
        (ARXIV_RSS_EMPTY, 0, "arxiv-rss"),
        (DATA / "arxiv_rss_cs_sample.xml", 3, "arxiv-rss"),
        (DATA / "hf_api_daily_papers_2024-08-01.json", 3, "hf-json"),
    ],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_parse_prints_one_json_line_per_paper(path: Path, count: int, source: str) -> None:
    result = run_parse(str(path), "--today", TODAY)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = json_lines(result.stdout)
    assert len(lines) == count
    assert all(line["source"] == source for line in lines)
    assert lines == expected(path)


def test_parse_hf_json_line_exactly() -> None:
    result = run_parse(str(HF_JSON))
    line = json_lines(result.stdout)[27]
    assert line["abstract"].startswith("Large language model (LLM) agents have achieved")  # type: ignore[union-attr]
    assert line | {"abstract": None, "authors": None} == {
        "key": "arxiv:2606.13681",
        "arxiv_id": "2606.13681",
        "title": "EvoArena: Tracking Memory Evolution for Robust LLM Agents in Dynamic Environments",
        "abstract": None,
        "authors": None,
        "authors_count": 14,
        "organization": "Massachusetts Institute of Technology",
        "published": "2026-06-12",
        "upvotes": 118,
        "url": "https://huggingface.co/papers/2606.13681",
        "source": "hf-json",
    }
    # Non-ASCII names come out as themselves, not \u escapes.
    assert '"Raphaël Baena"' in result.stdout


def test_parse_with_an_explicit_format() -> None:
    result = run_parse(str(ARXIV_ATOM), "--format", "arxiv-atom")
    assert result.returncode == 0
    assert [line["arxiv_id"] for line in json_lines(result.stdout)][:2] == ["2606.13677", "2606.13591"]


def test_parse_plain_text_pages() -> None:
    for seed in SEED_PAGES:
        result = run_parse(str(seed), "--today", TODAY)
        assert result.returncode == 0, result.stderr
        lines = json_lines(result.stdout)
        assert lines and all(line["source"] == "hf-text" for line in lines)


def garbage_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "binary": bytes(range(256)) * 8,
        "truncated-json": HF_JSON.read_bytes()[: len(HF_JSON.read_bytes()) // 2],
        "other-site.html": b"<!doctype html><html><head><title>News</title></head><body><p>Hi</p></body>",
        "empty": b"",
        "other-json": b'{"error": "Invalid date"}',
        "doctype-bomb.xml": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "a">]><rss>&a;</rss>',
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def test_garbage_in_gives_exit_2_and_one_line(tmp_path: Path) -> None:
    for name, path in garbage_files(tmp_path).items():
        result = run_parse(str(path))
        assert result.returncode == 2, (name, result.stderr)
        assert result.stdout == "", name
        assert "Traceback" not in result.stderr, name
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith("paper-monitor parse: "), name


def test_wrong_explicit_format_and_missing_file_give_exit_2(tmp_path: Path) -> None:
    wrong = run_parse(str(ARXIV_ATOM), "--format", "hf-json")
    assert wrong.returncode == 2 and len(wrong.stderr.splitlines()) == 1
    assert "not valid JSON" in wrong.stderr
    missing = run_parse(str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1


def test_parse_a_url_from_a_loopback_server(replay: ReplayServer) -> None:
    replay.route(
        "/api/daily_papers",
        Reply(HF_JSON.read_bytes(), headers={"Content-Type": "application/json; charset=utf-8"}),
    )
    replay.route("/papers", Reply(HF_HTML.read_bytes(), headers={"Content-Type": "text/html"}))
    result = run_parse(replay.url("/api/daily_papers?date=2026-06-12"))
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == expected(HF_JSON)
    html = run_parse(replay.url("/papers"), "--format", "hf-html")
    assert html.returncode == 0, html.stderr
    assert [line["arxiv_id"] for line in json_lines(html.stdout)][:2] == ["2407.21783", "2407.21705"]
    assert replay.hits("/api/daily_papers") == 1


@pytest.mark.slow
def test_parse_a_url_that_is_not_there(replay: ReplayServer) -> None:
    """A wrong URL is the user's input, as a missing file is (exit 2); a site failing is not (exit 1)."""
    replay.route("/busy", Reply(b"try later", 503))
    missing = run_parse(replay.url("/missing"))
    failing = run_parse(replay.url("/busy"), "--format", "hf-json")
    assert (missing.returncode, failing.returncode) == (2, 1)
    told = f"paper-monitor parse: GET {replay.url('/missing')}: HTTP 404 (not retried)"
    assert missing.stderr.splitlines() == [told]
    assert len(failing.stderr.splitlines()) == 1 and "Traceback" not in failing.stderr


@pytest.mark.parametrize(("url", "problem"), [
    ("http://[::1", 'not a valid URL: "http://[::1": Invalid port: \':1\''),
    ("http://", 'no host in the URL "http://"'),
])
def test_a_url_that_cannot_be_asked_is_bad_usage(url: str, problem: str) -> None:
    """Exit 2, as for a file that cannot be read: the mistake is in the command, not at the site."""
    result = run_parse(url)
    assert (result.returncode, result.stderr) == (2, f"paper-monitor parse: {problem}\n")
