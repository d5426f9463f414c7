"""The catch-up of HF API sources: after a good poll, the past days not yet read whole (yesterday's
late papers; every day a stopped daemon or a failing source missed) are read from the API's
``?date=`` listings, and their new papers alert. Real daemons and real HTTP on loopback."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import feedparser
import pytest

from monitor.config import Settings, SourceConfig
from monitor.errors import FetchError
from monitor.fetch import Fetcher, RetryPolicy
from monitor.history import history_kind, past_source
from monitor.match import compile_rules
from monitor.pipeline import poll
from monitor.sources import parse_page
from monitor.store import open_store
from monitor.store.sql import SqlStore
from tests.daemon_support import Daemon, source, wait_for, write_config
from tests.helpers import ARXIV_ATOM, DATA, HF_HTML, HF_JSON, ReplayServer, Reply, free_port
from tests.test_backfill import arxiv_page

DAY = timedelta(days=1)
ALL = compile_rules(Settings.model_validate({"rules": [{"name": "all"}]}).rules)
FAST = RetryPolicy(attempts=2, max_total=2.0, base=0.01, cap=0.05)


def items() -> list[dict[str, object]]:
    loaded: list[dict[str, object]] = json.loads(HF_JSON.read_bytes())
    return loaded


def listing(chosen: list[dict[str, object]]) -> Reply:
    return Reply(json.dumps(chosen).encode(), headers={"Content-Type": "application/json"})


def day_path(day: date, page: int = 0) -> str:
    return f"/api/daily_papers?date={day.isoformat()}&limit=100&p={page}"


def dated_requests(replay: ReplayServer) -> list[str]:
    return [seen.path for seen in replay.requests if "date=" in seen.path]


@pytest.mark.slow
def test_a_daemon_restarted_after_three_days_alerts_the_papers_it_missed(
    tmp_path: Path, replay: ReplayServer
) -> None:
    papers = items()
    today = datetime.now(UTC).date()
    replay.route("/api/daily_papers", listing(papers[:10]))  # today's listing, as the API's default
    port = free_port()
    config = write_config(
        tmp_path, port=port, sources=source("hf", replay.url("/api/daily_papers"), every="2s"),
        channels='[[channels]]\nname = "feed"\ntype = "rss"\nmax_items = 100\n',
        rules='[[rules]]\nname = "all"\nnotify = ["feed"]\n',
    )

    def feed_titles(daemon: Daemon) -> set[str]:
        return {entry.title for entry in feedparser.parse(daemon.get("/feeds/feed.xml").content).entries}

    first = Daemon(config, port)
    try:
        first.wait_up()
        wait_for(lambda: len(feed_titles(first)) == 10, 20, "today's ten papers in the feed")
    finally:
        assert first.stop(signal.SIGTERM)[0] == 0
    assert dated_requests(replay) == []  # a source's first poll starts it: no past days read

    # The machine was off from three days ago to now: the last good poll was then, and the days
    # before it had been read whole. Meanwhile the API listed 20 more papers on those days.
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        db.execute("UPDATE sources SET last_success = ?, caught_up = ?",
                   (time.time() - 3 * 86_400, (today - 4 * DAY).isoformat()))
    missed = {today - 3 * DAY: papers[10:20], today - 2 * DAY: papers[20:25], today - DAY: papers[25:30]}
    for day, listed in missed.items():
        replay.route(day_path(day), listing(listed))

    before = len(first.polls("hf"))  # the log file goes on
    again = Daemon(config, port)
    try:
        again.wait_up()
        wait_for(lambda: len(feed_titles(again)) == 30, 20, "the missed papers in the feed")
        wait_for(lambda: len(again.polls("hf")) >= before + 2, 10, "a second poll")
        caught, later = again.polls("hf")[before:before + 2]
        assert (caught["new"], caught["caught_up_days"]) == (20, 3), caught
        assert "caught up on 3 past days: 3 requests, 20 papers, 20 new, 20 matched" in caught["message"]
        assert later["caught_up_days"] == 0  # the past is read once
        assert feed_titles(again) == {" ".join(str(p["paper"]["title"]).split())  # type: ignore[index]
                                      for p in papers}
    finally:
        assert again.stop(signal.SIGTERM)[0] == 0
    assert dated_requests(replay) == [day_path(day) for day in missed]  # oldest first, each once


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    yield opened
    opened.close()


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(policy=FAST, sleep=lambda seconds: None) as client:
        yield client


TODAY = date(2026, 6, 15)


def last_good_poll(store: SqlStore, url: str, days_ago: int, caught_up: date | None) -> None:
    noon = datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC) - days_ago * DAY
    store.record_success("hf", url, status=200, etag=None, last_modified=None, now=noon.timestamp())
    if caught_up is not None:
        store.record_caught_up("hf", caught_up)


def test_each_day_is_read_once_after_it_ended_and_a_failed_day_is_tried_again(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    papers = items()
    url = replay.url("/api/daily_papers")
    hf = SourceConfig(name="hf", url=url)
    replay.route("/api/daily_papers", listing(papers[:5]))
    last_good_poll(store, url, days_ago=2, caught_up=TODAY - 3 * DAY)
    replay.route(day_path(TODAY - 2 * DAY), listing(papers[5:10]))
    replay.route(day_path(TODAY - DAY), Reply(b"busy", status=503))

    report = poll(hf, store, fetcher, ALL, today=TODAY)
    assert report.ok and report.new == 5 + 5  # today's five, and the five of the day read whole
    assert report.caught_up is not None and report.caught_up.days == 1
    assert "then failed: " in report.line() and "HTTP 503" in report.line()
    state = store.get_source_state("hf")
    assert state is not None and state.caught_up == TODAY - 2 * DAY  # the next poll goes on from there

    replay.route(day_path(TODAY - DAY), listing(papers[10:12]))
    again = poll(hf, store, fetcher, ALL, today=TODAY)
    assert again.new == 2 and again.caught_up is not None and again.caught_up.days == 1
    assert poll(hf, store, fetcher, ALL, today=TODAY).caught_up is None  # nothing left to read
    assert dated_requests(replay).count(day_path(TODAY - 2 * DAY)) == 1
    assert store.count_papers() == 12


def test_catch_up_reaches_back_at_most_its_window_and_can_be_turned_off(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    url = replay.url("/api/daily_papers")
    replay.route("/api/daily_papers", listing([]))
    for n in range(1, 40):
        replay.route(day_path(TODAY - n * DAY), listing([]))
    last_good_poll(store, url, days_ago=30, caught_up=None)  # a store from before the catch-up

    report = poll(SourceConfig(name="hf", url=url, catch_up="3d"), store, fetcher, ALL, today=TODAY)
    assert report.caught_up is not None and report.caught_up.days == 3
    assert dated_requests(replay) == [day_path(TODAY - n * DAY) for n in (3, 2, 1)]

    last_good_poll(store, url, days_ago=30, caught_up=TODAY - 31 * DAY)
    off = poll(SourceConfig(name="hf", url=url, catch_up="off"), store, fetcher, ALL, today=TODAY)
    assert off.ok and off.caught_up is None and len(dated_requests(replay)) == 3


def test_sources_without_a_past_are_not_caught_up(replay: ReplayServer, store: SqlStore,
                                                  fetcher: Fetcher) -> None:
    replay.route("/papers", Reply(b"[]", headers={"Content-Type": "application/json"}))
    url = replay.url("/papers")
    store.record_success("hf", url, status=200, etag=None, last_modified=None, now=time.time() - 5 * 86_400)
    report = poll(SourceConfig(name="hf", url=url), store, fetcher, ALL)
    assert report.ok and report.caught_up is None and len(replay.requests) == 1


def test_hfs_daily_papers_page_catches_up_through_the_api(replay: ReplayServer, store: SqlStore,
                                                         fetcher: Fetcher) -> None:
    """The HTML page shows only the current day; the days it missed are read from the API on the
    same host (HF allows five times the API requests of page requests)."""
    papers = items()
    replay.route("/papers", Reply(HF_HTML.read_bytes(), headers={"Content-Type": "text/html"}))
    replay.route(day_path(TODAY - 2 * DAY), listing(papers[:5]))
    replay.route(day_path(TODAY - DAY), listing(papers[5:8]))
    page = SourceConfig(name="hf", url=replay.url("/papers"), format="hf-html")
    last_good_poll(store, page.url, days_ago=2, caught_up=TODAY - 3 * DAY)

    report = poll(page, store, fetcher, ALL, today=TODAY)
    assert report.ok and report.papers == 13  # the page's own cards
    assert report.caught_up is not None and report.caught_up.days == 2 and report.caught_up.new == 8
    assert dated_requests(replay) == [day_path(TODAY - 2 * DAY), day_path(TODAY - DAY)]
    assert store.count_papers() == 13 + 8
    assert poll(page, store, fetcher, ALL, today=TODAY).caught_up is None  # read once

    # A page of another site, read as auto, has no past to read.
    assert history_kind(replay.url("/papers")) is None
    assert history_kind("https://huggingface.co/papers") == "hf-html"
    assert past_source(SourceConfig(name="x", url="https://huggingface.co/papers?q=1")).url == (
        "https://huggingface.co/api/daily_papers")


# -- arXiv listings: what a day down missed, read from the arXiv API by category -------------------

LISTING = (DATA / "arxiv_rss_cs_sample.xml").read_bytes()  # 2 new or cross, 1 replacement


def api_page(day: date) -> Reply:
    """The recorded arXiv API answer (5 papers; primary categories cs.RO, cs.AI, cs.LG, cs.CV,
    cs.DC), submitted on ``day``."""
    dated = f"<published>{day.isoformat()}".encode()
    body = re.sub(rb"<published>\d{4}-\d\d-\d\d", dated, ARXIV_ATOM.read_bytes())
    return Reply(body, headers={"Content-Type": "application/atom+xml"})


def api_queries(replay: ReplayServer) -> list[dict[str, str]]:
    return [dict(parse_qsl(urlsplit(seen.path).query)) for seen in replay.requests
            if seen.path.startswith("/api/query")]


def serve(replay: ReplayServer, *api: Reply) -> None:
    """The cs.LG listing, and these answers of the arXiv API in turn."""
    replay.route("/rss/cs.LG", Reply(LISTING))
    replay.route("/api/query", *api)


def arxiv(replay: ReplayServer, **fields: object) -> SourceConfig:
    return SourceConfig(name="arxiv", url=replay.url("/rss/cs.LG"), **fields)  # type: ignore[arg-type]


def down_for(store: SqlStore, config: SourceConfig, hours: float) -> None:
    store.record_success(config.name, config.url, status=200, etag=None, last_modified=None,
                         now=time.time() - hours * 3600)


def test_an_arxiv_listing_down_for_days_reads_what_it_missed_from_the_api(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    today = datetime.now(UTC).date()
    serve(replay, api_page(today - DAY))
    config = arxiv(replay)
    first = poll(config, store, fetcher, ALL)
    assert first.ok and first.caught_up is None and api_queries(replay) == []  # a new source starts now

    down_for(store, config, hours=3 * 24)
    report = poll(config, store, fetcher, ALL)
    assert report.ok and report.caught_up is not None, report.line()
    assert (report.caught_up.days, report.caught_up.requests, report.caught_up.new) == (3, 1, 5)
    assert "; caught up on 3 past days: 1 requests, 5 papers, 5 new, 5 matched" in report.line()
    (query,) = api_queries(replay)
    # The listing's category, from before the last good poll (less the lag of a weekend and a day,
    # within the 7 days of catch_up) to now; newest first, 100 at a time.
    start = (today - 7 * DAY).strftime("%Y%m%d")
    assert re.fullmatch(rf"cat:cs\.LG AND submittedDate:\[{start}\d{{4}} TO {today:%Y%m%d}\d{{4}}\]",
                        query["search_query"]), query
    assert (query["sortBy"], query["sortOrder"], query["start"], query["max_results"]) == (
        "submittedDate", "descending", "0", "100")
    assert {p.key for p in report.new_papers} == {p.key for p in parse_page(ARXIV_ATOM.read_bytes())}
    assert poll(config, store, fetcher, ALL).caught_up is None  # read once
    assert len(api_queries(replay)) == 1


def test_a_listing_configured_as_arxiv_rss_catches_up_from_the_apis_atom(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    today = datetime.now(UTC).date()
    serve(replay, api_page(today - DAY))
    config = arxiv(replay, format="arxiv-rss")  # the listing is RSS; the API's answers are Atom
    assert past_source(config).format == "arxiv-atom"
    down_for(store, config, hours=3 * 24)
    report = poll(config, store, fetcher, ALL)
    caught = report.caught_up
    assert caught is not None and (caught.failures, caught.new) == ([], 5), report.line()
    assert "; caught up on 3 past days: 1 requests, 5 papers, 5 new, 5 matched" in report.line()


def test_a_listing_takes_from_the_api_the_announce_types_it_takes_from_the_listing(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    today = datetime.now(UTC).date()
    serve(replay, api_page(today - DAY))
    config = arxiv(replay, announce_types=["new"])  # cs.LG's own papers, no cross-lists
    down_for(store, config, hours=30)
    report = poll(config, store, fetcher, ALL)
    assert report.caught_up is not None and report.caught_up.new == 1
    assert [p.primary_category for p in report.new_papers if p.primary_category] == ["cs.LG"]


def test_a_short_gap_a_failed_catch_up_and_off(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    today = datetime.now(UTC).date()
    serve(replay, Reply(b"busy", status=503))
    config = arxiv(replay)
    down_for(store, config, hours=18)  # no announcement can have come and gone unseen
    assert poll(config, store, fetcher, ALL).caught_up is None and api_queries(replay) == []

    down_for(store, config, hours=50)
    failed = poll(config, store, fetcher, ALL)
    assert failed.ok and failed.caught_up is not None and "then failed: " in failed.line()
    assert failed.caught_up.days == 0 and "; catching up: " in failed.line()  # no day was read
    assert "caught up" not in failed.line()
    state = store.get_source_state("arxiv")
    missed_from = datetime.fromtimestamp(time.time() - 50 * 3600, UTC).date()
    assert state is not None and state.caught_up == missed_from - DAY  # what the next poll starts from

    replay.route("/api/query", api_page(today))
    again = poll(config, store, fetcher, ALL)  # its own last good poll was just now: the record says
    assert again.caught_up is not None and again.caught_up.new == 5 and not again.caught_up.failures
    state = store.get_source_state("arxiv")
    assert state is not None and state.caught_up is None

    down_for(store, config, hours=72)
    assert poll(arxiv(replay, catch_up="off"), store, fetcher, ALL).caught_up is None


def test_a_listings_catch_up_cut_short_by_a_stop_starts_again_at_the_next_poll(
    replay: ReplayServer, store: SqlStore
) -> None:
    today = datetime.now(UTC).date()
    pages = (Reply(arxiv_page(30000, [today.isoformat()] * 100)),  # full: a second page is asked for
             Reply(arxiv_page(40000, [today.isoformat()] * 3)))
    serve(replay, *pages)
    config = arxiv(replay)
    down_for(store, config, hours=30)

    def stopping(seconds: float) -> None:
        raise FetchError("stopped while waiting to retry")

    with Fetcher(policy=FAST, sleep=stopping) as stopped:
        cut = poll(config, store, stopped, ALL)  # the daemon stops during the pause between pages
    assert not cut.ok and len(api_queries(replay)) == 1
    state = store.get_source_state("arxiv")
    assert state is not None and state.caught_up is not None  # the next poll knows where to start

    replay.route("/api/query", *pages)
    with Fetcher(policy=FAST, sleep=lambda seconds: None) as fetcher:
        again = poll(config, store, fetcher, ALL)
    assert again.caught_up is not None and again.caught_up.requests == 2, again.line()
    assert store.count_papers() == 2 + 100 + 3
    state = store.get_source_state("arxiv")
    assert state is not None and state.caught_up is None


# -- arXiv API queries: more new papers than a page between two polls ------------------------------


def query_source(replay: ReplayServer) -> SourceConfig:
    return SourceConfig(name="query", url=replay.url("/api/query?search_query=cat:cs.LG"))


def starts(replay: ReplayServer) -> list[str]:
    return [q.get("start", "0") for q in api_queries(replay)]


def results(*runs: tuple[int, int], day: date | None = None) -> Reply:
    """An arXiv API answer of runs of (first id, how many) papers, submitted on ``day`` (today)."""
    dated = (day or datetime.now(UTC).date()).isoformat()
    pages = [arxiv_page(first, [dated] * count) for first, count in runs]
    entries = b"".join(b"<entry>" + page.split(b"<entry>", 1)[1].rsplit(b"</feed>", 1)[0] for page in pages)
    return Reply(pages[0].split(b"<entry>", 1)[0] + entries + b"</feed>\n")


def test_a_query_whose_page_was_all_new_reads_on_until_it_meets_a_known_paper(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    config = query_source(replay)
    replay.route("/api/query", results((10000, 100)))
    assert poll(config, store, fetcher, ALL).caught_up is None  # the first poll starts the source
    # Later, 240 more: the first page (100, all new) does not reach back to what is known.
    replay.route("/api/query", results((20000, 100)), results((20100, 100)),
                 results((20200, 40), (10000, 60)), results((10060, 40)))
    report = poll(config, store, fetcher, ALL)
    assert report.caught_up is not None, report.line()
    assert (report.new, report.caught_up.requests, report.caught_up.new) == (240, 2, 140), report.line()
    assert "; caught up: 2 requests, 200 papers, 140 new, 140 matched" in report.line()
    assert starts(replay) == ["0", "0", "100", "200"]  # not the fourth page: the third met known papers
    assert store.count_papers() == 340


def test_a_query_page_that_reached_known_papers_or_was_short_reads_no_further(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    config = query_source(replay)
    replay.route("/api/query", results((10000, 100)))
    poll(config, store, fetcher, ALL)
    replay.route("/api/query", results((10050, 100)))  # 50 new, 50 known
    assert poll(config, store, fetcher, ALL).caught_up is None
    replay.route("/api/query", results((30000, 99)))  # all new, but not a full page
    assert poll(config, store, fetcher, ALL).caught_up is None
    assert starts(replay) == ["0", "0", "0"]


def test_a_query_catch_up_that_fails_pages_back_at_the_next_poll(
    replay: ReplayServer, store: SqlStore, fetcher: Fetcher
) -> None:
    today = datetime.now(UTC).date()
    config = query_source(replay)
    replay.route("/api/query", results((10000, 3)))
    poll(config, store, fetcher, ALL)
    replay.route("/api/query", results((20000, 100)), Reply(b"busy", 503))
    failed = poll(config, store, fetcher, ALL)
    assert failed.ok and failed.caught_up is not None and "then failed: " in failed.line()
    assert failed.caught_up.days == 0 and "; catching up: " in failed.line()  # no day was read
    assert "caught up" not in failed.line()
    state = store.get_source_state("query")
    assert state is not None and state.caught_up == today - DAY  # the day before the last good poll
    # The next poll's page is known now; the record says to page back all the same.
    replay.route("/api/query", results((20000, 100)), results((20100, 50), (30100, 50), day=today - DAY),
                 results((30200, 40), day=today - 2 * DAY))
    again = poll(config, store, fetcher, ALL)
    # Back to the day before the last good poll: the second page's, then the third reaches past it.
    assert again.caught_up is not None and (again.caught_up.requests, again.caught_up.new) == (2, 100)
    state = store.get_source_state("query")
    assert state is not None and state.caught_up is None
