"""``paper-monitor why``: one stored paper's story, as an operator asks for it after a real ``once``
against loopback servers (a recorded HF page, webhooks that take or refuse the alerts)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from monitor.models import normalize_title, title_key
from monitor.sources import parse_page
from tests.helpers import HF_JSON, REPO, ReplayServer, Reply

RULES = """
[[rules]]
name = "spec"
keywords = ["speculative decoding"]
notify = ["feed", "ok", "refused"]

[[rules]]
name = "hot"
min_upvotes = 50
notify = ["feed"]

[[rules]]
name = "people"
authors = ["Tri Dao"]
notify = ["feed"]

[[rules]]
name = "draft"
keywords = ["routing"]
notify = ["feed"]
enabled = false
"""


def paper_monitor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def config(tmp_path: Path, replay: ReplayServer) -> Path:
    """A store filled by one real ``once``: the HF page polled, the alerts delivered or refused."""
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()))
    replay.route("/ok", Reply(b"", 204))
    replay.route("/refused", Reply(b"no such hook", 410))
    path = tmp_path / "monitor.toml"
    path.write_text(
        f'[monitor]\ndatabase = "sqlite:///{tmp_path}/db.sqlite"\nfeeds_dir = "{tmp_path}/feeds"\n\n'
        f'[[sources]]\nname = "hf"\nurl = "{replay.url("/api/daily_papers")}"\n\n'
        '[[channels]]\nname = "feed"\ntype = "rss"\n\n'
        f'[[channels]]\nname = "ok"\ntype = "webhook"\nurl = "{replay.url("/ok")}"\n\n'
        f'[[channels]]\nname = "refused"\ntype = "webhook"\nurl = "{replay.url("/refused")}"\n' + RULES,
        encoding="utf-8",
    )
    done = paper_monitor("once", "--config", str(path))
    assert done.returncode == 1, done.stdout + done.stderr  # the refused webhook: a delivery failed
    return path


def why(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return paper_monitor("why", "--config", str(config), *args)


@pytest.mark.slow
def test_why_tells_when_a_paper_was_seen_what_it_matched_and_what_became_of_each_alert(config: Path) -> None:
    done = why(config, "2606.12243")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("arxiv:2606.12243  VIA-SD: Verification via Intra-Model Routing for "
                        "Speculative Decoding")
    assert lines[1] == "  https://huggingface.co/papers/2606.12243"
    assert lines[2].startswith("  seen first ")
    assert lines[2].endswith("(hf-json); 14 upvotes; 4 authors named")
    assert lines[3] == "matched:"
    assert lines[4].startswith("  spec, ") and lines[4].endswith(': keyword "speculative decoding" in title')
    assert lines[5].startswith("    feed (rss): sent ")
    assert lines[6].startswith("    ok (webhook): sent ")
    assert lines[7].startswith("    refused (webhook): dead after 1 attempt: ")
    assert lines[7].endswith("(paper-monitor retry-dead refused sends it again)")
    assert lines[8:] == [
        "not matched:",
        "  hot: min_upvotes 50: upvotes 14, too few",
        '  people: author "Tri Dao": not among the authors',
        '  draft (off): holds now (keyword "routing" in title), but it is off: '
        "rules that are off match nothing",
    ]
    for other in ("arxiv:2606.12243", "https://huggingface.co/papers/2606.12243",
                  "https://arxiv.org/pdf/2606.12243v2.pdf", "Intra-Model routing"):
        assert why(config, other).stdout == done.stdout, other


def test_why_says_a_rule_switched_on_later_does_not_fire_on_a_paper_it_already_knew(config: Path) -> None:
    config.write_text(config.read_text().replace("enabled = false", ""), encoding="utf-8")
    assert paper_monitor("once", "--config", str(config)).returncode in (0, 1)  # the same page again
    done = why(config, "2606.12243", "--rule", "draft")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        "not matched:",
        '  draft: holds now (keyword "routing" in title), but the paper was known before the rule held '
        "for it (a rule fires on a paper when the paper is new, or changes so as to satisfy it)",
    ]


def test_a_paper_matched_by_no_rule_and_one_rule_asked_about(config: Path) -> None:
    done = why(config, "2606.13392", "--rule", "spec")  # MiniMax Sparse Attention: hot only
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[3:] == [
        "matched:",
        *done.stdout.splitlines()[4:6],
        "not matched:",
        '  spec: keyword "speculative decoding": not found',
    ]
    assert done.stdout.splitlines()[4].endswith(": upvotes 103 >= 50")


def test_words_of_several_titles_list_them_and_unknown_papers_are_one_line(config: Path) -> None:
    titles = [p.title for p in parse_page(HF_JSON.read_bytes())]
    counts = Counter(w for t in titles for w in set(normalize_title(t).split()) if len(w) > 3)
    word = next(w for w, n in counts.most_common() if 2 <= n <= 10)
    done = why(config, word)
    assert done.returncode == 2 and done.stdout == ""
    listed = done.stderr.splitlines()
    assert listed[0] == (f'paper-monitor why: {counts[word]} stored papers have "{word}" in their titles; '
                         "name one by its key:")
    assert sorted(line.split("  ")[2] for line in listed[1:]) == sorted(
        t for t in titles if word in normalize_title(t))
    missing = why(config, "2601.00001")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == ('paper-monitor why: no stored paper is "2601.00001" (give its key, '
                              "its arXiv id, or words of its title)\n")


def test_an_unknown_rule_is_one_line_before_any_story(config: Path) -> None:
    key = parse_page(HF_JSON.read_bytes())[0].key
    done = why(config, key, "--rule", "nope")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith('--rule: no rule named "nope" (rules: ')
    assert len(done.stderr.splitlines()) == 1


def test_a_paper_is_found_by_the_title_key_it_had_before_its_arxiv_id_was_known(config: Path) -> None:
    """A text page alerts ``title:<hash>``; the paper then comes with its arXiv id and is stored under
    ``arxiv:...``: the key in the user's alert still finds it."""
    paper = next(p for p in parse_page(HF_JSON.read_bytes()) if "speculative decoding" in p.title.lower())
    done = why(config, title_key(paper.title))
    assert done.returncode == 0, done.stderr
    assert paper.key in done.stdout and "spec" in done.stdout
    assert why(config, "title:0123456789abcdef").returncode == 2
