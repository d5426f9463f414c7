"""The pipeline end to end on loopback: ``once`` as a real subprocess and ``poll`` in process,
against ReplayServer pages and SQLite on disk in tmp_path."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import fetch
from monitor.config import Settings, SourceConfig, load_settings
from monitor.fetch import Fetcher, RetryPolicy
from monitor.match import compile_rules
from monitor.models import Match, Paper
from monitor.pipeline import PollReport, open_fetcher, poll, printable, run_once
from monitor.store import open_store, sql
from monitor.store.sql import SqlStore
from tests.helpers import ARXIV_ATOM, DATA, HF_JSON, REPO, SEED_PAGES, ReplayServer, Reply, free_port

FAST = RetryPolicy(attempts=3, max_total=5.0, base=0.01, cap=0.05)
ALL = compile_rules(Settings.model_validate({"rules": [{"name": "all"}]}).rules)  # matches every paper

GARBAGE = {
    "binary": bytes(range(256)) * 8,
    "truncated-json": HF_JSON.read_bytes()[:5000],
    "other-site-html": b"<!doctype html><html><head><title>Shop</title></head><body><h1>Sale</h1></body>",
    "empty": b"",
}


def write_config(tmp_path: Path, sources: dict[str, str], *, rules: str = "") -> Path:
    """A config with these sources (name -> URL), a SQLite file in tmp_path and a console channel."""
    lines = ["[monitor]", f'database = "sqlite:///{tmp_path}/db.sqlite"', ""]
    for name, url in sources.items():
        lines += ["[[sources]]", f'name = "{name}"', f'url = "{url}"', 'timeout = "5s"', ""]
    lines += ["[[channels]]", 'name = "console"', 'type = "console"', "", rules]
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def once(config: Path) -> subprocess.CompletedProcess[str]:
    """``python -m monitor once --config <config>``, the real CLI."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "once", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def summary(stdout: str, source: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(f"{source}: ")]
    assert len(lines) == 1, stdout
    return lines[0]


def new_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("new ")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    yield opened
    opened.close()


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(policy=FAST, sleep=lambda seconds: None) as client:
        yield client


def source(url: str, name: str = "src", **fields: object) -> SourceConfig:
    return SourceConfig(name=name, url=url, **fields)  # type: ignore[arg-type]


def bumped_json(index: int, by: int) -> bytes:
    items = json.loads(HF_JSON.read_bytes())
    items[index]["paper"]["upvotes"] += by
    return json.dumps(items).encode()


def text_page(items: list[dict[str, object]]) -> bytes:
    """A plain-text rendering (the seed layout) of HF API items: titles, abstracts, author counts."""
    parts = ["Daily Papers", "byAK and the research community"]
    for item in items:
        paper = item["paper"]
        assert isinstance(paper, dict)
        title, abstract = " ".join(paper["title"].split()), " ".join(paper["summary"].split())
        parts += [title, abstract, f"  • {len(paper['authors'])} authors\n·\nJun 12, 2026"]
    return ("\n\n".join(parts) + "\n").encode()


# -- the headline: the real CLI --------------------------------------------------------------


@pytest.mark.slow
def test_once_on_the_three_seed_pages_in_turn_reports_the_new_papers(
    replay: ReplayServer, tmp_path: Path
) -> None:
    assert len(SEED_PAGES) == 3
    replay.route("/papers", *(Reply(page.read_bytes(), headers={"Content-Type": "text/plain"})
                              for page in SEED_PAGES))
    config = write_config(tmp_path, {"hf-text": replay.url("/papers")})
    seen: list[str] = []
    # The third page shows "M^3ViT: ..." of the second page's "M$^3$ViT: ...": the same paper.
    for expected_new, expected_papers in ((62, 62), (131, 141), (50, 61)):
        run = once(config)
        assert run.returncode == 0, run.stderr
        line = summary(run.stdout, "hf-text")
        assert f"{expected_papers} papers, {expected_new} new," in line, line
        assert len(new_lines(run.stdout)) == expected_new
        seen += new_lines(run.stdout)
    assert replay.hits("/papers") == 3
    assert len(set(seen)) == 62 + 131 + 50  # no paper announced twice
    assert not any("M^3ViT" in line for line in seen[62 + 131:])
    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        assert store.count_papers() == 62 + 131 + 50
    finally:
        store.close()


def test_once_on_the_json_page_twice_then_with_upvotes_raised(replay: ReplayServer, tmp_path: Path) -> None:
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()), Reply(HF_JSON.read_bytes()),
                 Reply(bumped_json(3, 10)))
    rules = '[[rules]]\nname = "all"\nnotify = ["console"]\n'
    config = write_config(tmp_path, {"hf-daily": replay.url("/api/daily_papers")}, rules=rules)
    expected = [(30, 0, 30), (0, 0, 0), (0, 1, 0)]  # new, changed, matched (each rule/paper once)
    for new, changed, matched in expected:
        out = io.StringIO()
        assert run_once(load_settings(config), out=out) == 0
        line = summary(out.getvalue(), "hf-daily")
        assert f"30 papers, {new} new, {changed} changed, {matched} matched" in line, line
        assert len(new_lines(out.getvalue())) == new


def test_once_logs_each_poll_with_its_source_named_once(replay: ReplayServer, tmp_path: Path) -> None:
    """The log line of a poll names its source once (it read 'source hf-daily: hf-daily: status 200')."""
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()))
    config = write_config(tmp_path, {"hf-daily": replay.url("/api/daily_papers")})
    result = once(config)
    assert result.returncode == 0, result.stderr
    polls = [line for line in result.stderr.splitlines() if "status 200" in line]
    assert len(polls) == 1, result.stderr
    assert "monitor.pipeline: source hf-daily: status 200, 30 papers, 30 new, 0 changed" in polls[0], polls[0]


def test_a_rule_that_is_off_matches_nothing_until_it_is_switched_on(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()), Reply(bumped_json(3, 10)))
    rules = ('[[rules]]\nname = "spec"\nkeywords = ["speculative decoding"]\nnotify = ["console"]\n\n'
             '[[rules]]\nname = "all"\nnotify = ["console"]\nenabled = false\n')
    config = write_config(tmp_path, {"hf-daily": replay.url("/api/daily_papers")}, rules=rules)
    out = io.StringIO()
    assert run_once(load_settings(config), out=out) == 0
    assert "30 papers, 30 new, 0 changed, 1 matched" in summary(out.getvalue(), "hf-daily")
    config.write_text(config.read_text().replace("enabled = false", "enabled = true"), encoding="utf-8")
    out = io.StringIO()
    assert run_once(load_settings(config), out=out) == 0
    # Switched on, it is a new rule: papers already known fire it when they change.
    assert "30 papers, 0 new, 1 changed, 1 matched" in summary(out.getvalue(), "hf-daily")
    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT rule, COUNT(*) FROM matches GROUP BY rule ORDER BY 1").all()
        assert [tuple(row) for row in rows] == [("all", 1), ("spec", 1)]
    finally:
        store.close()


# -- poll, in process ------------------------------------------------------------------------


def test_a_paper_seen_as_text_then_with_its_arxiv_id_stays_one_paper(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    items = json.loads(HF_JSON.read_bytes())
    replay.route("/text", Reply(text_page(items[:2])))
    replay.route("/api", Reply(HF_JSON.read_bytes()))
    text = poll(source(replay.url("/text"), "text"), store, fetcher, ALL)
    assert (text.new, text.error) == (2, None)
    assert text.new_papers[0].key.startswith("title:") and text.new_papers[0].authors == []
    api = poll(source(replay.url("/api"), "api"), store, fetcher, ALL)
    assert (api.papers, api.new, api.changed) == (30, 28, 2)  # the two got their author names
    assert store.count_papers() == 30
    first = store.get_paper("arxiv:2606.00467")
    assert first is not None
    assert first.authors == ["Etienne Casanova", "Rafal Kocielnik", "R. Michael Alvarez"]
    assert store.get_paper(text.new_papers[0].key) is None  # the key moved


def test_a_broken_character_or_count_in_one_paper_does_not_sink_the_page(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    items = json.loads(HF_JSON.read_bytes())
    items[0]["paper"]["title"] = "Lone \ud800 surrogate,\x00 NUL and \u202egnp.exe override"
    items[1]["paper"]["upvotes"] = 10**20
    replay.route("/api", Reply(json.dumps(items).encode()))  # json.dumps writes "\ud800" as is

    report = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert (report.error, report.new) == (None, 30)
    first = store.get_paper(f"arxiv:{items[0]['paper']['id']}")
    second = store.get_paper(f"arxiv:{items[1]['paper']['id']}")
    assert first is not None and second is not None
    assert first.title == "Lone \ufffd surrogate, NUL and gnp.exe override"
    assert second.upvotes is None


def test_a_maintenance_notice_where_json_was_is_a_failure_not_a_new_paper(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    notice = (b"We'll be right back\n\nHugging Face is undergoing scheduled maintenance. The Hub and its "
              b"API will be available again shortly. Thank you for your patience.\n")
    replay.route("/api", Reply(HF_JSON.read_bytes()), Reply(notice, headers={"Content-Type": "text/plain"}),
                 Reply(HF_JSON.read_bytes()))
    assert poll(source(replay.url("/api")), store, fetcher, ALL).new == 30

    down = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert (down.new, down.matched) == (0, 0) and store.count_papers() == 30
    assert "reads as hf-text, not hf-json as before" in (down.error or "") and down.error_kind == "parse"
    back = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert (back.error, back.new) == (None, 0)


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_from_one_source_is_logged_and_the_next_source_still_runs(
    replay: ReplayServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    replay.route("/bad", Reply(GARBAGE[kind]))
    replay.route("/good", Reply(HF_JSON.read_bytes()))
    config = write_config(tmp_path, {"bad": replay.url("/bad"), "good": replay.url("/good")})
    out = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="monitor.pipeline"):
        assert run_once(load_settings(config), out=out) == 1  # a source failed
    assert "FAILED: ParseError" in summary(out.getvalue(), "bad")
    assert "30 new" in summary(out.getvalue(), "good")
    assert any("source bad: ParseError" in r.getMessage() for r in caplog.records)
    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        assert store.count_papers() == 30  # only the good source's papers
        state = store.get_source_state("bad")
        assert state is not None and state.consecutive_failures == 1 and state.last_status == 200
        assert (state.last_error or "").startswith("ParseError")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("case", "reply", "status", "reason", "kind"),
    [
        ("down", None, None, "cannot connect", "fetch"),
        ("slow", Reply(b"[]", delay=1.0), None, "timed out", "fetch"),
        ("429", Reply(b"", 429, headers={"Retry-After": "1"}), 429, "HTTP 429", "rate_limited"),
        ("500", Reply(b"oops", 500), 500, "HTTP 500", "http_5xx"),
    ],
)
def test_a_failing_source_is_retried_then_reported_and_the_store_untouched(
    replay: ReplayServer, store: SqlStore, case: str, reply: Reply | None, status: int | None, reason: str,
    kind: str,
) -> None:
    waits: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/api" if reply is None else replay.url("/api")
    if reply is not None:
        replay.route("/api", reply)
    with Fetcher(policy=FAST, sleep=waits.append) as fetcher:
        report = poll(source(url, timeout=0.2), store, fetcher, ALL)
    assert not report.ok and reason in (report.error or "") and report.error_kind == kind
    assert (report.status, report.new, report.papers) == (status, 0, 0)
    assert len(waits) == FAST.attempts - 1  # retried per policy
    if reply is not None:
        assert replay.hits("/api") == FAST.attempts
    if case == "429":
        assert min(waits) >= 1.0 and report.retry_after == 1.0  # Retry-After honoured, and passed on
    assert store.count_papers() == 0
    state = store.get_source_state("src")
    assert state is not None and state.consecutive_failures == 1 and state.last_success is None


@pytest.mark.parametrize("retries", [0, 2])
def test_a_sources_retries_are_how_many_more_tries_a_failing_page_gets(
    replay: ReplayServer, store: SqlStore, retries: int
) -> None:
    replay.route("/api", Reply(b"busy", 503))
    waits: list[float] = []
    with open_fetcher(source(replay.url("/api"), retries=retries), None, sleep=waits.append) as fetcher:
        report = poll(source(replay.url("/api"), retries=retries), store, fetcher, ALL)
    assert report.status == 503 and f"gave up after {retries + 1} attempt" in (report.error or "")
    assert replay.hits("/api") == retries + 1 and len(waits) == retries


def test_a_page_over_its_sources_max_size_fails_that_source_only(
    replay: ReplayServer, tmp_path: Path
) -> None:
    page = HF_JSON.read_bytes()
    replay.route("/big", Reply(page))
    replay.route("/small", Reply(page))
    config = write_config(tmp_path, {"big": replay.url("/big"), "small": replay.url("/small")})
    text = config.read_text(encoding="utf-8")
    text = text.replace('name = "big"', 'name = "big"\nmax_size = "64KiB"')
    config.write_text(text.replace('name = "small"', 'name = "small"\nmax_size = "5MB"'), encoding="utf-8")
    run = once(config)
    assert run.returncode == 1
    assert f"response of {len(page)} bytes exceeds the 65536 byte cap" in summary(run.stdout, "big")
    assert replay.hits("/big") == 1  # too big is not worth another try
    assert "30 papers, 30 new" in summary(run.stdout, "small")


def test_a_failing_poll_is_one_line_in_the_log(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replay.route("/api", Reply(b"busy", 503))
    report = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert replay.hits("/api") == 3 and "gave up after 3 attempts" in (report.error or "")
    ours = [r for r in caplog.records if r.name.startswith("monitor")]  # (httpx's own are silenced)
    told = [r.getMessage() for r in ours if r.levelno >= logging.INFO]
    assert len(told) == 1 and "HTTP 503" in told[0], told
    assert sum("retry" in r.getMessage() for r in ours if r.levelno == logging.DEBUG) == 2


def test_a_404_is_reported_without_retrying(replay: ReplayServer, store: SqlStore, fetcher: Fetcher) -> None:
    replay.route("/api", Reply(b"gone", 404))
    report = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert (report.status, replay.hits("/api")) == (404, 1) and "HTTP 404" in (report.error or "")
    assert report.error_kind == "http_4xx"


def test_conditional_get_304_means_nothing_changed(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    replay.route("/api", Reply(HF_JSON.read_bytes(), headers={"ETag": '"day-1"'}), Reply(status=304))
    first = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert (first.status, first.new) == (200, 30)
    second = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert replay.requests[1].headers.get("If-None-Match") == '"day-1"'
    assert (second.status, second.new, second.changed, second.error) == (304, 0, 0, None)
    state = store.get_source_state("src")
    assert state is not None and state.etag == '"day-1"' and state.last_status == 304


def test_validators_of_a_page_that_failed_to_parse_are_not_kept(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    replay.route("/api", Reply(b"\x00\x01garbage", headers={"ETag": '"bad"'}), Reply(HF_JSON.read_bytes()))
    assert poll(source(replay.url("/api")), store, fetcher, ALL).error_kind == "parse"
    again = poll(source(replay.url("/api")), store, fetcher, ALL)
    assert "If-None-Match" not in replay.requests[1].headers  # so the page is fetched whole again
    assert (again.new, again.error) == (30, None)


def test_a_bug_in_a_stage_is_reported_not_raised(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def match(self, paper: Paper) -> list[Match]:
            raise RuntimeError("matcher bug")

    replay.route("/api", Reply(HF_JSON.read_bytes()))
    report = poll(source(replay.url("/api")), store, fetcher, Broken())
    assert (report.error, report.error_kind) == ("RuntimeError: matcher bug", "internal")
    assert store.count_papers() == 0  # the poll's transaction was rolled back
    assert any(r.exc_info for r in caplog.records if "matcher bug" in r.getMessage())


def test_a_database_held_by_another_writer_fails_the_poll_as_a_store_error_and_the_page_comes_again(
    replay: ReplayServer, tmp_path: Path, fetcher: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "db.sqlite"
    store = open_store(f"sqlite:///{path}")
    replay.route("/api", Reply(HF_JSON.read_bytes(), headers={"ETag": '"day-1"'}))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # a backup, an sqlite3 shell: holding the write lock
        report = poll(source(replay.url("/api")), store, fetcher, ALL)
        other.execute("COMMIT")
        assert (report.status, report.error_kind) == (200, "store")
        assert "database is locked" in (report.error or "")
        again = poll(source(replay.url("/api")), store, fetcher, ALL)
        assert "If-None-Match" not in replay.requests[1].headers  # the page is fetched whole again
        assert (again.new, again.error) == (30, None)
    finally:
        other.close()
        store.close()


def test_a_failure_the_store_cannot_record_either_is_still_one_line(
    replay: ReplayServer, tmp_path: Path, fetcher: Fetcher, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A page that fails, and a full disk or a database held by another writer: recording that failure
    fails too; the poll's one line says both. (A poll that fails on the store itself is the store's
    failure, not recorded as the source's: one line too.)"""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(sql, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "db.sqlite"
    store = open_store(f"sqlite:///{path}")
    replay.route("/json", Reply(HF_JSON.read_bytes()))
    replay.route("/api", Reply(b"\x00\x01 not a page"))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        report = poll(source(replay.url("/api")), store, fetcher, ALL)
        stored = poll(source(replay.url("/json")), store, fetcher, ALL)
        other.execute("COMMIT")
    finally:
        other.close()
        store.close()
    assert report.error_kind == "parse" and (report.error or "").startswith("ParseError: ")
    assert (report.error or "").endswith("(not recorded in the store: recording the state of source src: "
                                         "OperationalError: database is locked)")
    assert stored.error_kind == "store" and "database is locked" in (stored.error or "")
    ours = [r for r in caplog.records if r.name.startswith("monitor")]
    assert [r.getMessage() for r in ours if r.levelno >= logging.INFO] == [
        f"source src: {report.error}", f"source src: {stored.error}"]


def test_arxiv_replacements_are_left_out_unless_the_source_asks_for_them(
    replay: ReplayServer, tmp_path: Path, store: SqlStore, fetcher: Fetcher
) -> None:
    # The listing of a day: one new paper, one cross-list, one new version of a paper from months ago.
    listing = (DATA / "arxiv_rss_cs_sample.xml").read_bytes()
    replay.route("/rss/cs.LG", Reply(listing, headers={"Content-Type": "application/rss+xml"}))
    (tmp_path / "cli").mkdir()
    run = once(write_config(tmp_path / "cli", {"arxiv": replay.url("/rss/cs.LG")}))
    assert run.returncode == 0, run.stderr
    assert "2 papers (and 1 left out by announce_types), 2 new," in summary(run.stdout, "arxiv")
    assert [line.split()[1] for line in new_lines(run.stdout)] == ["arxiv:2606.10001", "arxiv:2606.09876"]

    everything = source(replay.url("/rss/cs.LG"), announce_types=["new", "cross", "replace"])
    report = poll(everything, store, fetcher, ALL)
    assert (report.papers, report.left_out, report.new) == (3, 0, 3)
    only_new = poll(source(replay.url("/rss/cs.LG"), announce_types=["new"]), store, fetcher, ALL)
    assert (only_new.papers, only_new.left_out, only_new.new) == (1, 2, 0)


def test_sources_on_a_host_that_asks_for_pauses_are_polled_one_after_the_other(
    replay: ReplayServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the arXiv API asks (export.arxiv.org: one request every 3 s), here for the loopback host.
    monkeypatch.setitem(fetch.PACE.intervals, "127.0.0.1", 1.0)
    feed = ARXIV_ATOM.read_bytes()
    replay.route("/api/query", Reply(feed, headers={"Content-Type": "application/atom+xml"}))
    url = replay.url("/api/query")
    settings = load_settings(write_config(tmp_path, {"speculative": url + "?q=1", "kv-cache": url + "?q=2"}))
    assert run_once(settings, out=io.StringIO()) == 0
    first, second = sorted(seen.at for seen in replay.requests)
    assert second - first >= 1.0


@pytest.mark.parametrize(("query", "asked"), [
    # The API's default, 10 results by relevance, would hide most new papers for good.
    ("search_query=abs:%22kv+cache%22",
     "search_query=abs:%22kv+cache%22&sortBy=submittedDate&sortOrder=descending&max_results=100"),
    # What the user chose stays as written.
    ("search_query=all:llm&sortBy=lastUpdatedDate&max_results=20",
     "search_query=all:llm&sortBy=lastUpdatedDate&max_results=20"),
])
def test_an_arxiv_api_query_is_polled_newest_first_unless_it_says_otherwise(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher, query: str, asked: str
) -> None:
    replay.route("/api/query", Reply(ARXIV_ATOM.read_bytes()))
    report = poll(source(replay.url(f"/api/query?{query}")), store, fetcher, ALL)
    assert report.ok and report.new > 0
    (seen,) = replay.requests
    assert seen.path == f"/api/query?{asked}"


@pytest.mark.parametrize(("url", "asked"), [
    ("/api/daily_papers", "/api/daily_papers?limit=100"),  # the API's default, 50, is less than a busy day
    ("/api/daily_papers?limit=20", "/api/daily_papers?limit=20"),
    ("/papers", "/papers"),  # not the API
])
def test_the_hf_api_is_asked_for_its_most_papers_a_poll(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher, url: str, asked: str
) -> None:
    replay.route(url.split("?")[0], Reply(HF_JSON.read_bytes(), headers={"Content-Type": "application/json"}))
    assert poll(source(replay.url(url)), store, fetcher, ALL).new == 30
    assert [seen.path for seen in replay.requests] == [asked]


def test_report_line_and_printable_titles() -> None:
    report = PollReport("hf", 200, 30, 2, 1, 0, 0.25)
    assert report.line() == "hf: status 200, 30 papers, 2 new, 1 changed, 0 matched, 0.25s"
    assert printable("Evil\x1b[2J title\u202e") == "Evil[2J title"
