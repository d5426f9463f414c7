"""``paper-monitor backfill`` against a real HTTP server on loopback serving the recorded HF API
and arXiv API pages: past days stored as seen on their day, matched and recorded without alerts
(unless ``--alert``), failures reported per page, and a later poll that knows the history."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from monitor.backfill import backfill, history_kind
from monitor.config import load_settings
from monitor.store import open_store
from monitor.store.schema import deliveries, matches
from tests.helpers import ARXIV_ATOM, HF_JSON, REPO, ReplayServer, Reply

TODAY = date(2026, 6, 15)
DAYS = ["2026-06-12", "2026-06-13", "2026-06-14"]  # --since 3d before TODAY


def hf_items() -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(HF_JSON.read_bytes())
    return items


def day_url(day: str, page: int = 0) -> str:
    return f"/api/daily_papers?date={day}&limit=100&p={page}"


def write_config(tmp_path: Path, url: str, *, retries: int = 3) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text(f"""
[monitor]
database = "sqlite:///{tmp_path}/db.sqlite"

[[sources]]
name = "hf-daily"
url = "{url}"
retries = {retries}

[[channels]]
name = "console"
type = "console"

[[rules]]
name = "all"
notify = ["console"]

[[rules]]
name = "agents"
keywords = ["agents"]
notify = ["console"]
""", encoding="utf-8")
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def counts(tmp_path: Path) -> tuple[int, int, int]:
    """(papers, matches, deliveries) in the store."""
    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        with store.engine.connect() as conn:
            found = [conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0
                     for t in (matches, deliveries)]
        return store.count_papers(), found[0], found[1]
    finally:
        store.close()


def serve_three_days(replay: ReplayServer) -> list[dict[str, object]]:
    items = hf_items()
    for n, day in enumerate(DAYS):
        replay.route(day_url(day), Reply(json.dumps(items[n * 10 : n * 10 + 10]).encode()))
    return items


@pytest.mark.slow
def test_backfill_stores_the_past_days_matched_without_alerts_and_a_poll_then_knows_them(
    replay: ReplayServer, tmp_path: Path
) -> None:
    serve_three_days(replay)
    config = write_config(tmp_path, replay.url("/api/daily_papers"))
    run = cli("backfill", "--config", str(config), "--since", "3d", "--today", TODAY.isoformat())
    assert run.returncode == 0, run.stderr
    line = re.search(r"hf-daily: 3 requests, 30 papers, 30 new, (\d+) matched \(recorded, no alerts\)",
                     run.stdout)
    assert line, run.stdout
    assert [r.path for r in replay.requests] == [day_url(day) for day in DAYS]  # oldest first, not today
    # Matched ("all" on every paper, "agents" on some) and recorded, but nothing queued.
    assert counts(tmp_path) == (30, int(line[1]), 0) and int(line[1]) > 30
    # Each paper was seen on the day it was listed.
    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        noon = datetime(2026, 6, 14, 12, tzinfo=UTC).timestamp()
        assert len(list(store.iter_papers(since=noon))) == 10
    finally:
        store.close()
    # Today's listing shows the same papers: nothing is new, nothing alerts.
    replay.route("/api/daily_papers", Reply(HF_JSON.read_bytes()))
    poll = cli("once", "--config", str(config))
    assert poll.returncode == 0, poll.stderr
    assert "30 papers, 0 new, 0 changed, 0 matched" in poll.stdout
    assert counts(tmp_path)[2] == 0
    # And the rules can be tried on the history.
    tried = cli("backtest", "--config", str(config), "--since", "10000d")
    assert tried.returncode == 0 and "30 papers seen" in tried.stdout


def test_hfs_daily_papers_page_is_backfilled_through_the_api(replay: ReplayServer, tmp_path: Path) -> None:
    serve_three_days(replay)
    config = write_config(tmp_path, replay.url("/papers"))
    text = config.read_text(encoding="utf-8").replace("retries = 3", 'retries = 3\nformat = "hf-html"')
    config.write_text(text, encoding="utf-8")
    run = cli("backfill", "--config", str(config), "--since", "3d", "--today", TODAY.isoformat())
    assert run.returncode == 0, run.stderr
    assert "hf-daily: 3 requests, 30 papers, 30 new" in run.stdout
    assert [r.path for r in replay.requests] == [day_url(day) for day in DAYS]
    assert counts(tmp_path)[0] == 30


def test_backfill_with_alert_queues_the_history_matches(replay: ReplayServer, tmp_path: Path) -> None:
    serve_three_days(replay)
    config = write_config(tmp_path, replay.url("/api/daily_papers"))
    run = cli("backfill", "--config", str(config), "--since", "3d", "--today", TODAY.isoformat(), "--alert")
    assert run.returncode == 0, run.stderr
    papers, matched, queued = counts(tmp_path)
    assert (papers, queued) == (30, matched) and "alerts queued" in run.stdout


def test_a_day_that_fails_is_reported_and_the_other_days_are_kept(
    replay: ReplayServer, tmp_path: Path
) -> None:
    serve_three_days(replay)
    replay.route(day_url(DAYS[1]), Reply(b"oops", 500))
    config = write_config(tmp_path, replay.url("/api/daily_papers"), retries=0)
    run = cli("backfill", "--config", str(config), "--since", "3d", "--today", TODAY.isoformat())
    assert run.returncode == 1
    assert "hf-daily: 3 requests, 20 papers, 20 new" in run.stdout and ", 1 failed" in run.stdout
    assert re.search(r"failed: 2026-06-13 page 0: GET \S+: HTTP 500", run.stdout), run.stdout
    assert counts(tmp_path)[0] == 20


def test_a_full_day_is_read_page_after_page(replay: ReplayServer, tmp_path: Path) -> None:
    template = hf_items()[0]
    busy = []
    for n in range(130):
        item = json.loads(json.dumps(template))
        item["paper"]["id"] = f"2606.{20000 + n}"
        item["paper"]["title"] = item["title"] = f"Paper number {n}"
        busy.append(item)
    replay.route(day_url("2026-06-14", 0), Reply(json.dumps(busy[:100]).encode()))
    replay.route(day_url("2026-06-14", 1), Reply(json.dumps(busy[100:]).encode()))
    config = write_config(tmp_path, replay.url("/api/daily_papers"))
    run = cli("backfill", "--config", str(config), "--since", "1d", "--today", TODAY.isoformat())
    assert run.returncode == 0, run.stderr
    assert "hf-daily: 2 requests, 130 papers, 130 new" in run.stdout
    assert counts(tmp_path)[0] == 130


def test_sources_without_a_past_are_skipped_and_an_unknown_source_is_one_line(tmp_path: Path) -> None:
    assert history_kind("https://huggingface.co/api/daily_papers") == "hf-api"
    assert history_kind("http://export.arxiv.org/api/query?search_query=cat:cs.CL") == "arxiv-api"
    assert history_kind("https://huggingface.co/papers") == "hf-html"  # read through the API
    assert history_kind("https://rss.arxiv.org/rss/cs.CL+cs.LG") == "arxiv-listing"
    assert history_kind("https://rss.arxiv.org/atom/cond-mat.str-el") == "arxiv-listing"
    assert history_kind("https://example.org/rss/feed.xml") is None
    config = write_config(tmp_path, "https://example.org/papers-rendered.txt")
    run = cli("backfill", "--config", str(config))
    assert run.returncode == 0 and "hf-daily: skipped: only HF Daily Papers (the API, or" in run.stdout
    wrong = cli("backfill", "--config", str(config), "--source", "nope")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == '--source: no source named "nope" (sources: hf-daily)'


def arxiv_page(first_id: int, days: list[str]) -> bytes:
    """An arXiv API answer of one entry per day in ``days``, made from the recorded one."""
    text = ARXIV_ATOM.read_text(encoding="utf-8")
    head, rest = text.split("<entry>", 1)
    entry = "<entry>" + rest.split("</entry>", 1)[0] + "</entry>"
    entries = []
    for n, day in enumerate(days):
        made = entry.replace("2606.13677", f"2606.{first_id + n}")
        made = re.sub(r"<published>[^<]*</published>", f"<published>{day}T12:00:00Z</published>", made)
        made = made.replace("Mana: Dexterous", f"Entry {first_id + n}: Dexterous")
        entries.append(made)
    return (head + "\n".join(entries) + "\n</feed>\n").encode()


def test_an_arxiv_query_is_paged_newest_first_three_seconds_apart_until_before_the_window(
    replay: ReplayServer, tmp_path: Path
) -> None:
    newest = ["2026-06-15"] * 10 + ["2026-06-14"] * 60 + ["2026-06-13"] * 30  # today's are left to polls
    older = ["2026-06-13"] * 20 + ["2026-06-12"] * 50 + ["2026-06-11"] * 30  # the 11th is outside 3d
    replay.route("/api/query", Reply(arxiv_page(10000, newest)), Reply(arxiv_page(20000, older)),
                 Reply(arxiv_page(30000, ["2026-06-10"] * 100)))
    config = write_config(tmp_path, replay.url("/api/query?search_query=cat:cs.RO&max_results=20"))
    waits: list[float] = []
    code = backfill(load_settings(config), since_seconds=3 * 86_400, today=TODAY, sleep=waits.append)
    assert code == 0
    assert counts(tmp_path)[0] == 60 + 30 + 20 + 50
    asked = [r.path for r in replay.requests]
    assert len(asked) == 2 and waits == [3.0]  # the second page reached the 11th: no third
    assert all("search_query=cat%3Acs.RO" in path and "max_results=100" in path
               and "sortBy=submittedDate" in path and "sortOrder=descending" in path for path in asked)
    assert "start=0" in asked[0] and "start=100" in asked[1]


def test_an_arxiv_listing_is_backfilled_from_the_api_by_its_categories(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.route("/api/query", Reply(arxiv_page(10000, ["2026-06-14"] * 5 + ["2026-06-12"] * 5)))
    config = write_config(tmp_path, replay.url("/rss/cs.CL+cs.LG"))
    assert backfill(load_settings(config), since_seconds=3 * 86_400, today=TODAY, sleep=lambda s: None) == 0
    assert counts(tmp_path) == (10, 10, 0)  # matched, not alerted
    (asked,) = [parse_qs(urlsplit(r.path).query) for r in replay.requests]
    assert asked["search_query"] == [
        "(cat:cs.CL OR cat:cs.LG) AND submittedDate:[202606120000 TO 202606142359]"]
    assert (asked["sortBy"], asked["start"], asked["max_results"]) == (["submittedDate"], ["0"], ["100"])
    # The recorded entry is a cs.RO paper: a cross-list of cs.CL+cs.LG, which a "new"-only source leaves.
    (tmp_path / "new").mkdir()
    only_new = write_config(tmp_path / "new", replay.url("/rss/cs.CL+cs.LG"))
    only_new.write_text(only_new.read_text().replace("retries = 3", 'retries = 3\nannounce_types = ["new"]'))
    assert backfill(load_settings(only_new), since_seconds=3 * 86_400, today=TODAY, sleep=lambda s: None) == 0
    assert counts(tmp_path / "new")[0] == 0


def test_an_arxiv_listing_configured_as_arxiv_rss_is_backfilled_from_the_apis_atom(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.route("/api/query", Reply(arxiv_page(10000, ["2026-06-14"] * 5)))
    config = write_config(tmp_path, replay.url("/rss/cs.CL"))
    config.write_text(config.read_text().replace("retries = 3", 'retries = 3\nformat = "arxiv-rss"'))
    run = cli("backfill", "--config", str(config), "--since", "3d", "--today", TODAY.isoformat())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hf-daily: 1 requests, 5 papers, 5 new, 5 matched (recorded, no alerts)" in run.stdout
    assert counts(tmp_path)[0] == 5


def test_a_backfill_that_lasts_shows_a_progress_bar_on_a_terminal(
    replay: ReplayServer, tmp_path: Path
) -> None:
    items = hf_items()
    for n, day in enumerate(DAYS):
        replay.route(day_url(day), Reply(json.dumps(items[n * 10 : n * 10 + 10]).encode(), delay=0.6))
    config = write_config(tmp_path, replay.url("/api/daily_papers"))
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal's size
    try:
        run = subprocess.run(
            [sys.executable, "-m", "monitor", "backfill", "--config", str(config), "--since", "3d",
             "--today", TODAY.isoformat()],
            cwd=REPO, stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=120, check=False,
        )
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once everything written is read
            while chunk := os.read(main, 4096):
                shown += chunk
    finally:
        os.close(main)
    assert run.returncode == 0
    assert re.search(rb"hf-daily: +100%\|[^|]*\| 3/3 \[", shown), shown


def test_a_used_up_rate_limit_window_is_waited_out_before_the_next_day(
    replay: ReplayServer, tmp_path: Path
) -> None:
    items = serve_three_days(replay)
    replay.route(day_url(DAYS[0]), Reply(json.dumps(items[:10]).encode(),
                                         headers={"RateLimit": '"api";r=0;t=42'}))
    config = write_config(tmp_path, replay.url("/api/daily_papers"))
    waits: list[float] = []
    assert backfill(load_settings(config), since_seconds=3 * 86_400, today=TODAY, sleep=waits.append) == 0
    assert waits == [42.0] and counts(tmp_path)[0] == 30


def test_a_429_asking_a_wait_is_waited_out_and_the_page_asked_again(
    replay: ReplayServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    items = serve_three_days(replay)
    limited = Reply(b"Too Many Requests", status=429, headers={"RateLimit": '"api";r=0;t=200'})
    replay.route(day_url(DAYS[1]), limited, Reply(json.dumps(items[10:20]).encode()))
    config = write_config(tmp_path, replay.url("/api/daily_papers"), retries=0)
    waits: list[float] = []
    assert backfill(load_settings(config), since_seconds=3 * 86_400, today=TODAY, sleep=waits.append) == 0
    assert waits == [200.0] and counts(tmp_path)[0] == 30
    asked = [r.path for r in replay.requests]
    assert asked == [day_url(DAYS[0]), day_url(DAYS[1]), day_url(DAYS[1]), day_url(DAYS[2])]
    assert "hf-daily: 2026-06-13 page 0: HTTP 429: waiting 200s as the server asks" in caplog.text


def test_a_429_asking_an_absurd_wait_stops_the_source_with_a_clear_line(
    replay: ReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_three_days(replay)
    replay.route(day_url(DAYS[1]), Reply(b"", status=429, headers={"Retry-After": "86400"}))
    config = write_config(tmp_path, replay.url("/api/daily_papers"), retries=0)
    waits: list[float] = []
    assert backfill(load_settings(config), since_seconds=3 * 86_400, today=TODAY, sleep=waits.append) == 1
    assert waits == [] and counts(tmp_path)[0] == 10  # the first day is kept, the third not asked
    assert [r.path for r in replay.requests] == [day_url(DAYS[0]), day_url(DAYS[1])]
    out = capsys.readouterr().out
    assert ("failed: 2026-06-13 page 0: HTTP 429: the server asks to wait 86400s, more than the 3600s a "
            "backfill waits: stopped here, run it again later") in out


def test_a_429_that_keeps_coming_fails_the_page_after_a_few_waits(
    replay: ReplayServer, tmp_path: Path
) -> None:
    serve_three_days(replay)
    replay.route(day_url(DAYS[1]), Reply(b"", status=429, headers={"Retry-After": "1"}))
    config = write_config(tmp_path, replay.url("/api/daily_papers"), retries=0)
    waits: list[float] = []
    assert backfill(load_settings(config), since_seconds=3 * 86_400, today=TODAY, sleep=waits.append) == 1
    assert waits == [1.0] * 5 and counts(tmp_path)[0] == 20  # the other two days are kept
