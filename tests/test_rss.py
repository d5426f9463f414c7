"""The RSS/Atom channel: feeds built from the store, written atomically, read back by feedparser."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest

from monitor.channels import rss
from monitor.channels.base import Alert, Batch
from monitor.channels.rss import SUFFIX, RssChannel, render_feed, write_atomic
from monitor.config import RssConfig, RuleConfig
from monitor.match import compile_rules
from monitor.outbox import Dispatcher
from tests.outbox_support import open_test_store, paper, record, rows, states

ATOM = "{http://www.w3.org/2005/Atom}"
CFG = RssConfig(name="feed", type="rss", title="My papers", max_items=3)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    s = open_test_store(tmp_path / "monitor.db")
    yield s
    s.close()


def deliver(store: Any, feeds: Path, cfg: RssConfig = CFG) -> None:
    with Dispatcher(store, {cfg.name: RssChannel(cfg, store, feeds)}) as dispatcher:
        report = dispatcher.run_due()
    assert report.ok, report.summary()


def read(path: Path) -> Any:
    parsed = feedparser.parse(path.read_bytes())
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def test_an_empty_feed_is_valid(store: Any) -> None:
    for kind in ("rss", "atom"):
        parsed = feedparser.parse(render_feed(store, CFG, kind))
        assert parsed.bozo == 0 and parsed.entries == [] and parsed.feed.title == "My papers"


def test_feed_holds_the_newest_matches_first_up_to_max_items(store: Any, tmp_path: Path) -> None:
    t0 = time.time() - 3600
    record(store, "llm", [paper("Old one", arxiv_id="2606.00001")], ["feed"], at=t0)
    record(store, "llm", [paper("Second", arxiv_id="2606.00002")], ["feed"], at=t0 + 60,
           reasons=["keyword: kv cache"])
    deliver(store, tmp_path / "feeds")
    record(store, "vision", [paper("Third", arxiv_id="2606.00003"), paper("Fourth", arxiv_id="2606.00004")],
           ["feed"], at=t0 + 120)
    deliver(store, tmp_path / "feeds")
    rss = read(tmp_path / "feeds" / "feed.xml")
    atom = read(tmp_path / "feeds" / "feed.atom")
    assert rss.version == "rss20" and atom.version == "atom10"
    for parsed in (rss, atom):
        assert [e.title for e in parsed.entries] == ["Fourth", "Third", "Second"]
        assert [e.id for e in parsed.entries] == ["arxiv:2606.00004", "arxiv:2606.00003", "arxiv:2606.00002"]
        assert parsed.entries[2].link == "https://arxiv.org/abs/2606.00002"
        assert "keyword: kv cache" in parsed.entries[2].summary
        assert "Abstract of Second." in parsed.entries[2].summary
    assert rss.entries[0].guidislink is False
    written = (tmp_path / "feeds" / "feed.xml").read_bytes()
    assert b'<guid isPermaLink="false">arxiv:2606.00004</guid>' in written
    # RFC 822 dates: the time the match was recorded
    assert parsedate_to_datetime(rss.entries[2].published).timestamp() == int(t0 + 60)
    # what the daemon serves is what was written
    assert render_feed(store, CFG, "rss") == (tmp_path / "feeds" / "feed.xml").read_bytes()


def test_a_rules_feed_holds_that_rules_papers_of_the_channel(store: Any, tmp_path: Path) -> None:
    t0 = time.time() - 3600
    shared = paper("Shared", arxiv_id="2606.00003")
    record(store, "llm", [paper("Only llm", arxiv_id="2606.00001"), shared], ["feed"], at=t0,
           reasons=["keyword: llm"])
    record(store, "hot", [paper("Only hot", arxiv_id="2606.00002"), shared], ["feed"], at=t0 + 60,
           reasons=["upvotes 60 >= 50"])
    record(store, "llm", [paper("Elsewhere", arxiv_id="2606.00004")], ["other"], at=t0 + 120)
    deliver(store, tmp_path / "feeds")
    for kind in ("rss", "atom"):
        parsed = feedparser.parse(render_feed(store, CFG, kind, rule="llm"))
        assert parsed.bozo == 0 and parsed.feed.title == "My papers: llm"
        assert sorted(e.title for e in parsed.entries) == ["Only llm", "Shared"]
        assert all("upvotes" not in e.summary for e in parsed.entries)  # only llm's reasons
        whole = feedparser.parse(render_feed(store, CFG, kind))
        assert sorted(e.title for e in whole.entries) == ["Only hot", "Only llm", "Shared"]
        assert kind == "rss" or (parsed.feed.id.endswith(":rule:llm") and whole.feed.id.endswith(":feed"))
    assert feedparser.parse(render_feed(store, CFG, "rss", rule="nosuch")).entries == []


def test_hostile_titles_make_valid_xml(store: Any, tmp_path: Path) -> None:
    nasty = "<script>alert(1)</script> & \x00\x01\x0b\x1f\ufffe <![CDATA[ ]]> \"quotes\" 'n' é"
    # a rule's name and reasons, from the config, are not cleaned as a paper's text is
    record(store, "r\x85ul\u202ee", [paper(nasty, abstract="a < b && c > d\x08")], ["feed"],
           reasons=["why <b>&</b>\x9b\u2066"])
    deliver(store, tmp_path / "feeds")
    for name in ("feed.xml", "feed.atom"):
        (entry,) = read(tmp_path / "feeds" / name).entries
        assert [t.term for t in entry.tags] == ["rule"]  # "\x85" was read as Windows-1252 "…"
        assert "why <b>&</b>\n" in entry.summary
        assert "<script>alert(1)</script> &" in entry.title and entry.title.endswith("é")
        assert "\x00" not in entry.title and "\x01" not in entry.title
        assert "a < b && c > d" in entry.summary and "why <b>&</b>" in entry.summary


def test_one_item_per_paper_even_when_several_rules_matched(store: Any, tmp_path: Path) -> None:
    p = paper("Shared paper")
    record(store, "llm", [p], ["feed"], reasons=["keyword: llm"])
    record(store, "hot", [p], ["feed"], reasons=["upvotes >= 50"])
    deliver(store, tmp_path / "feeds")
    (entry,) = read(tmp_path / "feeds" / "feed.xml").entries
    assert "keyword: llm" in entry.summary and "upvotes >= 50" in entry.summary
    assert sorted(t.term for t in entry.tags) == ["hot", "llm"]


def test_the_served_feed_holds_max_items_papers_when_each_matched_several_rules(
    store_url: str, tmp_path: Path
) -> None:
    # 20 papers, each matched by 5 rules in one poll: 100 rows; 3 * 10 of them made 6 papers.
    store = open_test_store(store_url)
    try:
        cfg = RssConfig(name="feed", type="rss", max_items=10)
        t0 = time.time() - 3600
        found = [paper(f"Paper {i:02d}") for i in range(20)]
        for n in range(5):
            record(store, f"rule-{n}", found, ["feed"], at=t0, reasons=[f"reason {n}"])
        early = paper("Early, matched again later")
        record(store, "first", [early], ["feed"], at=t0 - 600)
        record(store, "later", [early], ["feed"], at=t0 + 60)  # its newest row makes it the newest
        deliver(store, tmp_path / "feeds", cfg)
        for kind in ("rss", "atom"):
            served = feedparser.parse(render_feed(store, cfg, kind))
            written = read(tmp_path / "feeds" / f"feed{SUFFIX[kind]}")
            for parsed in (served, written):
                assert [e.title for e in parsed.entries] == (
                    ["Early, matched again later"] + [f"Paper {i:02d}" for i in range(19, 10, -1)])
                assert sorted(t.term for t in parsed.entries[0].tags) == ["first", "later"]
                # every rule of each paper, though its rows lie among other papers' rows
                assert all(len(e.tags) == 5 for e in parsed.entries[1:])
                assert "reason 0" in parsed.entries[1].summary and "reason 4" in parsed.entries[1].summary
            one = feedparser.parse(render_feed(store, cfg, kind, rule="rule-3"))
            assert [e.title for e in one.entries] == [f"Paper {i:02d}" for i in range(19, 9, -1)]
    finally:
        store.close()


def test_a_test_alert_not_in_the_store_shows_as_the_newest_item(store: Any, tmp_path: Path) -> None:
    record(store, "llm", [paper("Stored")], ["feed"])
    deliver(store, tmp_path / "feeds")
    channel = RssChannel(CFG, store, tmp_path / "feeds")
    test = paper("paper-monitor test alert")
    channel.send(Batch(channel="feed", rule="test", alerts=[Alert(test, ["test"], 0, rule="test")], key="t"))
    assert [e.title for e in read(tmp_path / "feeds" / "feed.xml").entries] == [
        "paper-monitor test alert", "Stored",
    ]


def test_an_atom_entry_without_authors_has_the_feeds_author(store: Any, tmp_path: Path) -> None:
    record(store, "r", [paper("Nobody wrote this", authors=[])], ["feed"])
    deliver(store, tmp_path / "feeds")
    root = ET.fromstring((tmp_path / "feeds" / "feed.atom").read_bytes())
    (entry,) = root.findall(f"{ATOM}entry")
    assert entry.find(f"{ATOM}author") is None
    # RFC 4287 4.1.1: then the feed has an author with a name
    assert root.findtext(f"{ATOM}author/{ATOM}name") == "paper-monitor"
    assert read(tmp_path / "feeds" / "feed.atom").feed.author == "paper-monitor"


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "feeds" / "feed.xml"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["feed.xml"]
    assert target.stat().st_mode & 0o444 == 0o444


def test_an_unwritable_feeds_dir_is_a_transient_failure_and_later_delivered(
    store: Any, tmp_path: Path
) -> None:
    blocked = tmp_path / "feeds"
    blocked.write_text("a file where the directory should be")
    record(store, "llm", [paper("Waiting")], ["feed"])
    with Dispatcher(store, {"feed": RssChannel(CFG, store, blocked)}) as dispatcher:
        report = dispatcher.run_due()
        assert report.failed == 1 and "cannot write" in (report.channels["feed"].error or "")
        blocked.unlink()
        assert dispatcher.run_due(now=time.time() + 3600).sent == 1
    assert [e.title for e in read(blocked / "feed.xml").entries] == ["Waiting"]


def test_a_paper_from_a_text_page_without_any_link_is_a_valid_item(store: Any, tmp_path: Path) -> None:
    text_paper = paper("Known only by its title", arxiv_id=None, url=None)
    assert text_paper.key.startswith("title:")
    record(store, "r", [text_paper], ["feed"])
    deliver(store, tmp_path)
    for name in ("feed.xml", "feed.atom"):
        entries = read(tmp_path / name).entries
        assert [e.title for e in entries] == ["Known only by its title"]
        assert entries[0].id == text_paper.key


def test_an_item_lists_a_rule_that_matched_its_paper_days_before_newer_papers(
    store_url: str, tmp_path: Path
) -> None:
    """A paper alerted by a keyword rule on day 0; more papers every day; on day 4 its upvotes pass
    the hot rule's bar: its item, the newest, names both rules and both reasons."""
    store = open_test_store(store_url)
    try:
        cfg = RssConfig(name="feed", type="rss", max_items=10)
        rules = compile_rules([
            RuleConfig(name="spec", keywords=["speculative decoding"], notify=["feed"]),
            RuleConfig(name="hot", min_upvotes=50, notify=["feed"]),
        ])
        day0 = time.time() - 5 * 86_400
        early = paper("Speculative Decoding at Scale", upvotes=3)
        store.apply_poll([early], rules.match, now=day0)
        deliver(store, tmp_path / "feeds", cfg)
        for day in range(1, 4):
            store.apply_poll([paper(f"Speculative Decoding Study {day}.{i}", upvotes=1) for i in range(10)],
                             rules.match, now=day0 + day * 86_400)
            deliver(store, tmp_path / "feeds", cfg)
        store.apply_poll([early.model_copy(update={"upvotes": 80})], rules.match, now=day0 + 4 * 86_400)
        deliver(store, tmp_path / "feeds", cfg)
        for kind in ("rss", "atom"):
            for parsed in (read(tmp_path / "feeds" / f"feed{SUFFIX[kind]}"),
                           feedparser.parse(render_feed(store, cfg, kind))):
                assert len(parsed.entries) == 10
                first = parsed.entries[0]
                assert first.title == "Speculative Decoding at Scale"
                assert sorted(t.term for t in first.tags) == ["hot", "spec"]
                assert "upvotes" in first.summary and "speculative decoding" in first.summary
                assert first.summary.startswith("Rule: hot, spec\n")
    finally:
        store.close()


def test_the_batches_of_many_rules_are_written_to_the_feed_at_once(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many rules a poll makes a batch per rule: the feed, rendered whole (RSS and Atom, each
    fsynced) for each of them, took minutes to hold a poll's papers. The batches due are written in
    one go; each is confirmed (sent) once the files hold it."""
    cfg = RssConfig(name="feed", type="rss", max_items=500)
    for n in range(300):
        record(store, f"rule-{n}", [paper(f"Paper {n:03d}")], ["feed"])
    written: list[str] = []
    real = rss.write_atomic

    def counted(path: Path, data: bytes) -> None:
        written.append(path.name)
        real(path, data)

    monkeypatch.setattr(rss, "write_atomic", counted)
    deliver(store, tmp_path / "feeds", cfg)
    assert states(store, "feed") == {"sent": 300}
    assert sorted(written) == ["feed.atom", "feed.xml"], written  # 600 files before
    for kind in ("rss", "atom"):
        entries = read(tmp_path / "feeds" / f"feed{SUFFIX[kind]}").entries
        assert sorted(e.title for e in entries) == [f"Paper {n:03d}" for n in range(300)]


def test_batches_written_together_are_none_of_them_sent_when_the_feed_cannot_be_written(
    store: Any, tmp_path: Path
) -> None:
    """The feed's directory cannot be made: no batch is confirmed; the first waits for its retry as it
    would alone, the others behind it in the queue, and all go once the feed can be written."""
    for n in range(5):
        record(store, f"rule-{n}", [paper(f"Paper {n}")], ["feed"])
    blocked = tmp_path / "feeds"
    blocked.write_text("a file where the directory should be")
    clock = [time.time()]
    channel = RssChannel(CFG, store, blocked)
    with Dispatcher(store, {"feed": channel}, clock=lambda: clock[0]) as dispatcher:
        report = dispatcher.run_due()
        assert report.channels["feed"].sent == 0 and report.channels["feed"].failed == 1
        assert states(store, "feed") == {"failed": 1, "pending": 4}
        assert [r.state for r in rows(store, "feed")] == ["failed"] + ["pending"] * 4
        blocked.unlink()
        clock[0] += 3600
        report = dispatcher.run_due()
    assert report.channels["feed"].sent == 5 and states(store, "feed") == {"sent": 5}
    assert len(read(blocked / "feed.xml").entries) == CFG.max_items
