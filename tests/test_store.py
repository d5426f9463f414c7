"""The SQL store on SQLite in tmp_path and on PostgreSQL (the ``store_url`` fixture): schema, the poll
diff, key moves, matches, source state."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import RuleConfig
from monitor.errors import StoreError
from monitor.match import compile_rules
from monitor.models import Hit, Paper, title_key
from monitor.sources import parse_page
from monitor.store import lock, open_store
from monitor.store.base import sqlite_file
from monitor.store.lock import StoreBusy
from monitor.store.schema import SCHEMA_VERSION, deliveries, matches, meta
from monitor.store.sql import SqlStore
from tests.helpers import HF_JSON

TODAY = date(2026, 6, 12)


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def nothing(paper: Paper) -> list[Hit]:
    return []


def everything(paper: Paper) -> list[Hit]:
    return [Hit(rule="all", reasons=("every paper",), notify=("console", "feed"))]


def paper(title: str, **fields: object) -> Paper:
    return Paper.build(title=title, source=str(fields.pop("source", "hf-json")), **fields)  # type: ignore[arg-type]


def hf_papers() -> list[Paper]:
    return parse_page(HF_JSON.read_bytes(), "hf-json", today=TODAY)


# -- schema --------------------------------------------------------------------------------


def test_open_creates_directories_wal_and_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "db.sqlite"
    store = open_store(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert store.schema_version() == SCHEMA_VERSION
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        store.apply_poll([paper("A paper")], nothing)
    finally:
        store.close()
    again = open_store(f"sqlite:///{path}")
    try:
        assert again.schema_version() == SCHEMA_VERSION
        assert again.count_papers() == 1  # reopening keeps the data
    finally:
        again.close()
    with sqlite3.connect(path) as raw:  # and the version row is the only one
        rows = raw.execute("SELECT name, value FROM meta").fetchall()
    assert rows == [("schema_version", str(SCHEMA_VERSION))]
    raw.close()


def test_a_database_from_a_newer_version_is_refused(store_url: str) -> None:
    store = open_store(store_url)
    with store.engine.begin() as conn:
        conn.execute(meta.update().where(meta.c.name == "schema_version").values(value="99"))
    store.close()
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(store_url)


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as err:
        open_store(f"sqlite:///{tmp_path}/db.sqlite")
    assert isinstance(err.value.__cause__, sa.exc.SQLAlchemyError)
    with pytest.raises(StoreError, match="bad database URL"):
        open_store("not a url")
    with pytest.raises(StoreError, match="bad database URL") as err:
        open_store("postgresql://monitor:hunter2@db.example:notaport/papers")
    assert "hunter2" not in str(err.value)


def test_one_store_holder_at_a_time_named_to_the_next_and_let_go_on_close(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        assert second.holder() is None
        first.hold("run")
        assert (second.holder() or "").startswith(f"run, pid {os.getpid()} on ")
        with pytest.raises(StoreBusy) as err:
            second.hold("once")
        line = str(err.value)
        assert line.startswith(f"another paper-monitor (run, pid {os.getpid()} on "), line
        password = sa.make_url(store_url).password
        assert password is None or password not in line
        assert second.count_papers() == 0  # looking needs no lock
        first.close()
        assert second.holder() is None
        second.hold("once")
        third = open_store(store_url)
        try:
            with pytest.raises(StoreBusy, match=r"\(once, pid "):
                third.hold("run")
        finally:
            third.close()
    finally:
        first.close()
        second.close()


def _lose_lock(store_url: str, looker: SqlStore) -> None:
    """What a server restart or an operator's clean-up does to a held lock, while its holder lives:
    the PostgreSQL session holding it ends; the SQLite lock file is deleted."""
    url = sa.make_url(store_url)
    if url.get_backend_name() == "sqlite":
        Path(f"{url.database}.lock").unlink()
    else:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                ended = conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name LIKE 'paper-monitor %'"
                )).scalars().all()
        finally:
            engine.dispose()
        assert ended == [True]
    deadline = time.monotonic() + 10
    while looker.holder() is not None:  # the session takes a moment to end
        assert time.monotonic() < deadline, "the lock was never let go"
        time.sleep(0.02)


def _claim(store: SqlStore, channel: str = "console") -> list[str]:
    head = store.queue_head(channel)
    assert head is not None
    _, rows = store.claim_batch(channel, time.time(), head=head, limit=100)
    return [row.paper.key for row in rows]


def test_a_lock_lost_while_held_is_taken_again_before_the_next_claim(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "CONFIRM_EVERY", 0.0)  # look at every claim, not once a second
    first, other = open_store(store_url), open_store(store_url)
    try:
        first.hold("run")
        first.apply_poll(hf_papers(), everything)
        _lose_lock(store_url, other)

        assert len(_claim(first)) == 30  # it claims, holding the lock again:
        assert (other.holder() or "").startswith(f"run, pid {os.getpid()} on ")
        with pytest.raises(StoreBusy, match=r"another paper-monitor \(run, pid "):
            other.hold("once")
    finally:
        first.close()
        other.close()


def test_a_lock_another_process_took_meanwhile_stops_the_claims(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "CONFIRM_EVERY", 0.0)
    first, other = open_store(store_url), open_store(store_url)
    try:
        first.hold("run")
        first.apply_poll(hf_papers(), everything)
        _lose_lock(store_url, other)
        other.hold("once")

        with pytest.raises(StoreBusy, match=r"another paper-monitor \(once, pid "):
            _claim(first)
        assert ("console", "pending", 30) in other.outbox_stats().counts  # nothing claimed
        assert len(_claim(other)) == 30  # the holder's to send
    finally:
        first.close()
        other.close()


def test_a_store_in_memory_is_refused_to_a_process_that_polls_and_delivers() -> None:
    # Gone when the process ends: the next start would find every paper new and alert it again.
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true"):
        store = open_store(url)
        try:
            assert store.count_papers() == 0  # looking is fine
            with pytest.raises(StoreError, match=r"is a store in memory, gone when this process ends"):
                store.hold("once")
        finally:
            store.close()


def test_the_lock_is_the_files_by_whatever_link_or_uri_names_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "real.db"
    (tmp_path / "link.db").symlink_to(real)  # a link to a file not there yet: SQLite makes it
    (tmp_path / "dir").symlink_to(tmp_path / "data")
    first = open_store(f"sqlite:///{tmp_path}/link.db")
    try:
        first.hold("run")
        assert real.exists() and (tmp_path / "data" / "real.db.lock").exists()
        assert not (tmp_path / "link.db.lock").exists()
        for url in (f"sqlite:///{real}", f"sqlite:///{tmp_path}/dir/real.db",
                    f"sqlite:///{tmp_path}/data/../data/real.db", f"sqlite:///file:{real}?uri=true",
                    f"sqlite:///file://{real}?mode=rw&uri=true", f"sqlite:///file://localhost{real}?uri=true",
                    f"sqlite:///file:{tmp_path}/data/re%61l.db?uri=true"):
            other = open_store(url)
            try:
                assert (other.holder() or "").startswith(f"run, pid {os.getpid()} on "), url
                with pytest.raises(StoreBusy, match=r"another paper-monitor \(run, pid "):
                    other.hold("once", patience=0.0)
            finally:
                other.close()
    finally:
        first.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "dir", "link.db"]  # no store beside


def test_the_file_of_a_sqlite_url_is_the_one_sqlite_opens() -> None:
    def file(url: str) -> str | None:
        found = sqlite_file(sa.make_url(url))
        return None if found is None else str(found)

    assert file("sqlite:///var/m.db") == "var/m.db"  # relative to the working directory, as SQLite has it
    assert file("sqlite:////srv/m.db") == "/srv/m.db"
    assert file("sqlite:///~/m.db") == "~/m.db"  # (SQLite knows no home directory)
    assert file("sqlite:///file:/srv/m.db?uri=true&mode=rwc&cache=private") == "/srv/m.db"
    assert file("sqlite:///file:m.db?uri=true") == "m.db"
    assert file("sqlite:///file:/srv/a%20b.db?uri=1") == "/srv/a b.db"
    assert file("sqlite:///file:/srv/m.db") == "file:/srv/m.db"  # no uri=true: a directory "file:"
    assert file("sqlite:///m.db?uri=true") == "m.db"  # a URI that is no file: one is a plain name
    assert file("postgresql://h/db") is None
    for memory in ("sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                   "sqlite:///file:x.db?mode=memory&uri=true", "sqlite:///file:x.db?vfs=memdb&uri=true"):
        assert file(memory) is None, memory
    with pytest.raises(StoreError, match="names no host"):
        file("sqlite:///file://example.org/srv/m.db?uri=true")
    with pytest.raises(StoreError, match="bad database URL"):
        file("sqlite:///m.db?uri=maybe")


def test_a_store_path_beginning_with_a_tilde_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"starts with a directory named ~, not a home directory"):
        open_store("sqlite:///~/m.db")
    assert not list(tmp_path.iterdir())


# -- the diff ------------------------------------------------------------------------------


def test_json_page_twice_then_upvotes_raised(store: SqlStore) -> None:
    page = hf_papers()
    first = store.apply_poll(page, nothing)
    assert (len(first.new), len(first.changed)) == (30, 0)
    assert [p.key for p in first.new] == [p.key for p in page]  # page order
    second = store.apply_poll(page, nothing)
    assert (len(second.new), len(second.changed)) == (0, 0)
    bumped = list(page)
    bumped[4] = page[4].model_copy(update={"upvotes": (page[4].upvotes or 0) + 7})
    third = store.apply_poll(bumped, nothing)
    assert (len(third.new), [p.key for p in third.changed]) == (0, [page[4].key])
    stored = store.get_paper(page[4].key)
    assert stored is not None and stored.upvotes == (page[4].upvotes or 0) + 7
    assert store.count_papers() == 30


def test_text_then_json_is_one_paper_whose_key_moves(store: SqlStore) -> None:
    text = paper("Scaling  Laws for\nTiny Models", source="hf-text", authors_count=3, organization="Acme AI",
                 abstract="We scale.", upvotes=5)
    assert text.key == title_key("Scaling Laws for Tiny Models")
    assert [p.key for p in store.apply_poll([text], nothing).new] == [text.key]

    names = ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    listed = paper("Scaling Laws for Tiny Models", arxiv_id="2606.01234v2", authors=names, upvotes=5,
                   abstract="We scale.")
    diff = store.apply_poll([listed], nothing)
    assert diff.new == []
    assert [p.key for p in diff.changed] == ["arxiv:2606.01234"]  # the authors became known
    assert store.count_papers() == 1
    assert store.get_paper(text.key) is None
    moved = store.get_paper("arxiv:2606.01234")
    assert moved is not None
    assert moved.authors == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert moved.organization == "Acme AI"  # kept: the JSON page did not say

    # The text page again: still the same paper, names kept, nothing changed.
    again = store.apply_poll([text], nothing)
    assert (again.new, again.changed) == ([], [])
    kept = store.get_paper("arxiv:2606.01234")
    assert kept is not None and kept.authors == moved.authors and kept.source == "hf-text"


def test_a_page_repeating_a_paper_counts_it_once(store: SqlStore) -> None:
    a = paper("Same Paper", arxiv_id="2606.00001", upvotes=1)
    titled = paper("Same  paper", source="hf-text", upvotes=2)
    diff = store.apply_poll([a, paper("Other"), a, titled], nothing)
    assert [p.key for p in diff.new] == ["arxiv:2606.00001", title_key("Other")]
    assert diff.new[0].upvotes == 2  # the later sighting's fields merged in
    assert store.count_papers() == 2


def test_two_papers_may_share_a_title(store: SqlStore) -> None:
    first = store.apply_poll([paper("Technical Report", arxiv_id="2606.00001")], nothing)
    second = store.apply_poll([paper("Technical Report", arxiv_id="2606.00002")], nothing)
    assert len(first.new) == len(second.new) == 1
    third = store.apply_poll([paper("technical report", source="hf-text")], nothing)
    assert third.new == [] and store.count_papers() == 2


def test_a_title_known_only_by_text_claimed_by_two_ids_in_one_page(store: SqlStore) -> None:
    store.apply_poll([paper("Technical Report", source="hf-text")], nothing)
    diff = store.apply_poll([paper("Technical Report", arxiv_id="2606.00001"),
                             paper("Technical Report", arxiv_id="2606.00002")], nothing)
    assert [p.key for p in diff.new] == ["arxiv:2606.00002"]
    assert {p.key for p in store.iter_papers()} == {"arxiv:2606.00001", "arxiv:2606.00002"}


def test_a_title_only_sighting_finds_a_paper_by_a_title_it_had_before(store: SqlStore) -> None:
    # HF shows the v1 title, the arXiv listing already the v2 one, a plain-text page still v1.
    assert len(store.apply_poll([paper("Scaling Laws for Cats", arxiv_id="2401.00001")], everything).new) == 1
    renamed = store.apply_poll([paper("Scaling Laws for Cats and Dogs", arxiv_id="2401.00001")], everything)
    assert (renamed.new, renamed.matches) == ([], [])
    again = store.apply_poll([paper("Scaling Laws for Cats", source="hf-text")], everything)
    assert (again.new, again.matches) == ([], [])
    assert store.count_papers() == 1
    stored = store.get_paper("arxiv:2401.00001")
    assert stored is not None and stored.title == "Scaling Laws for Cats and Dogs"  # not back and forth


def test_a_short_old_title_may_be_another_papers_now(store: SqlStore) -> None:
    store.apply_poll([paper("Technical Report", arxiv_id="2601.00001", abstract="Kimi's.")], everything)
    store.apply_poll([paper("Kimi K2: Open Agentic Intelligence", arxiv_id="2601.00001")], everything)
    other = store.apply_poll([paper("Technical Report", abstract="Another lab's.", source="hf-text")],
                             everything)
    assert [p.title for p in other.new] == ["Technical Report"] and len(other.matches) == 1
    kimi = store.get_paper("arxiv:2601.00001")
    assert kimi is not None
    assert (kimi.title, kimi.abstract) == ("Kimi K2: Open Agentic Intelligence", "Kimi's.")


def test_a_title_rendered_with_other_spacing_is_the_same_paper(store: SqlStore) -> None:
    # The seed pages show one paper as "M$^3$ViT: ..." (TeX) and as "M^3ViT: ..." (rendered).
    first = store.apply_poll([paper("M$^3$ViT: Mixture-of-Experts Vision Transformer", source="hf-text")],
                             everything)
    assert len(first.new) == 1
    again = store.apply_poll([paper("M^3ViT: Mixture-of-Experts Vision Transformer", source="hf-text")],
                             everything)
    assert (again.new, again.matches) == ([], [])
    known = store.apply_poll([paper("M3ViT: Mixture of Experts Vision Transformer", arxiv_id="2210.14793")],
                             everything)
    assert known.new == [] and [p.key for p in store.iter_papers()] == ["arxiv:2210.14793"]


def test_what_counts_as_changed(store: SqlStore) -> None:
    base = paper("P", arxiv_id="2606.00003", authors=["A B"], organization="Org", upvotes=1)
    store.apply_poll([base], nothing)
    cosmetic = base.model_copy(
        update={"title": "P!", "abstract": None, "url": "https://x", "source": "hf-html"}
    )
    assert store.apply_poll([cosmetic], nothing).changed == []
    assert store.apply_poll([base.model_copy(update={"abstract": "Now known."})], nothing).changed != []
    assert store.apply_poll([base.model_copy(update={"abstract": "Edited."})], nothing).changed == []
    for update in ({"upvotes": 2}, {"authors": ["A B", "C D"]}, {"organization": "Other Org"}):
        assert len(store.apply_poll([base.model_copy(update=update)], nothing).changed) == 1, update


def test_matches_are_recorded_once_with_a_delivery_per_channel(store: SqlStore) -> None:
    page = hf_papers()
    first = store.apply_poll(page, everything)
    assert len(first.matches) == 30
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(matches)).scalar() == 30
        states = conn.execute(sa.select(deliveries.c.channel, deliveries.c.state)).all()
    assert sorted(set(states)) == [("console", "pending"), ("feed", "pending")] and len(states) == 60
    bumped = [p.model_copy(update={"upvotes": (p.upvotes or 0) + 1}) for p in page]
    second = store.apply_poll(bumped, everything)
    assert (len(second.changed), second.matches) == (30, [])  # matched again, but already recorded


def test_history_is_stored_as_seen_on_its_day_with_its_matches_but_no_deliveries(store: SqlStore) -> None:
    day, later = 1_780_000_000.0, 1_780_500_000.0
    page = hf_papers()
    store.apply_poll(page[:10], nothing, now=later)  # today's poll already saw ten of them
    history = store.apply_poll(page, everything, now=later + 60, seen_at=day, deliver=False)
    assert (len(history.new), len(history.matches)) == (20, 20)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(matches)).scalar() == 20
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar() == 0
    # The backfilled papers were seen on their day; those seen later stay seen later.
    assert [p.key for p in store.iter_papers(since=day)] == [p.key for p in page[:10] + page[10:]]
    assert [p.key for p in store.iter_papers(since=later)] == [p.key for p in page[:10]]
    # A matched paper of the history does not match that rule again, and is not delivered later.
    bumped = [p.model_copy(update={"upvotes": (p.upvotes or 0) + 1}) for p in page[10:]]
    assert store.apply_poll(bumped, everything, now=later + 120).matches == []


def test_a_known_paper_fires_a_rule_when_it_comes_to_satisfy_it(store: SqlStore) -> None:
    index = compile_rules([RuleConfig(name="hot", min_upvotes=50, notify=["feed"])])
    cold = paper("Rising Star", arxiv_id="2606.00009", upvotes=10)
    assert store.apply_poll([cold], index.match).matches == []
    hot = store.apply_poll([cold.model_copy(update={"upvotes": 60})], index.match)
    assert [(m.rule, m.paper.key) for m in hot.matches] == [("hot", "arxiv:2606.00009")]
    assert store.apply_poll([cold.model_copy(update={"upvotes": 70})], index.match).matches == []


def test_a_failing_poll_writes_nothing(store: SqlStore) -> None:
    def broken(paper: Paper) -> list[Hit]:
        raise RuntimeError("matcher bug")

    with pytest.raises(RuntimeError):
        store.apply_poll(hf_papers(), broken)
    assert store.count_papers() == 0


def test_iter_papers_since(store: SqlStore) -> None:
    store.apply_poll([paper("Old")], nothing, now=1000.0)
    store.apply_poll([paper(f"New {i}") for i in range(1200)], nothing, now=2000.0)
    assert [p.title for p in store.iter_papers(1500.0)][:2] == ["New 0", "New 1"]
    assert len(list(store.iter_papers(1500.0))) == 1200
    assert len(list(store.iter_papers())) == 1201


def test_two_processes_writing_at_once_wait_for_each_other(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    errors: list[BaseException] = []

    def work(store: SqlStore, tag: str) -> None:
        try:
            for i in range(15):
                store.apply_poll([paper(f"{tag} {i}"), paper("Shared", upvotes=i)], everything)
                store.record_success("src", "http://x", status=200, etag=None, last_modified=None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, t)) for s, t in zip(stores, "ab", strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert stores[0].count_papers() == 31
    finally:
        for s in stores:
            s.close()


# -- source state --------------------------------------------------------------------------


def test_source_state(store: SqlStore) -> None:
    assert store.get_source_state("hf") is None
    ok = store.record_success("hf", "http://h/api", status=200, etag='"e1"', last_modified="Mon", now=10.0)
    assert (ok.etag, ok.last_success, ok.consecutive_failures) == ('"e1"', 10.0, 0)
    store.record_failure("hf", "http://h/api", error="HTTP 500", status=500, now=20.0)
    failed = store.record_failure("hf", "http://h/api", error="timed out", now=30.0)
    assert (failed.consecutive_failures, failed.last_error, failed.last_status) == (2, "timed out", None)
    assert (failed.etag, failed.last_success, failed.last_attempt) == ('"e1"', 10.0, 30.0)  # validators kept
    back = store.record_success("hf", "http://h/api", status=304, etag='"e1"', last_modified=None, now=40.0)
    assert (back.consecutive_failures, back.last_error, back.last_status) == (0, None, 304)
    assert [s.name for s in store.list_source_states()] == ["hf"]


# -- the diff under random pages -------------------------------------------------------------

TITLES = ["Attention Again", "attention  again!", "Tiny Models", "Technical Report", "Scaling Up"]
IDS = [None, None, "2606.00001", "2606.00002", "2606.00003"]
sightings = st.builds(
    lambda title, arxiv_id, votes, authors: paper(title, arxiv_id=arxiv_id, upvotes=votes, authors=authors),
    st.sampled_from(TITLES), st.sampled_from(IDS), st.none() | st.integers(0, 3),
    st.sampled_from([[], ["A B"], ["A B", "C D"]]),
)


@settings(max_examples=40, deadline=None)
@given(pages=st.lists(st.lists(sightings, max_size=6), min_size=1, max_size=5))
def test_random_pages_never_break_the_store_and_each_paper_is_new_once(pages: list[list[Paper]]) -> None:
    store = open_store("sqlite://")  # in memory: a fresh store per example
    try:
        announced: list[str] = []
        matched: list[str] = []
        for page in pages:
            diff = store.apply_poll(page, everything)
            announced += [p.key for p in diff.new]
            for seen in page:  # every paper of the page can be found again by what identifies it
                if seen.arxiv_id:
                    assert store.get_paper(seen.key) is not None
            # every new paper is matched (the rule takes all); a known one never twice
            assert {p.key for p in diff.new} <= {m.paper.key for m in diff.matches}
            matched += [m.paper.key for m in diff.matches]
        stored = list(store.iter_papers())
        assert len(announced) == len(set(announced)) == len(stored) == store.count_papers()
        assert sorted(matched) == sorted(announced)
        ids = [p.arxiv_id for p in stored if p.arxiv_id]
        assert len(ids) == len(set(ids))
    finally:
        store.close()


# -- one paper's story (paper-monitor why) ---------------------------------------------------


def test_a_paper_is_found_by_key_arxiv_id_or_words_of_its_title_with_its_matches_and_deliveries(
    store: SqlStore,
) -> None:
    store.apply_poll(hf_papers(), everything, now=1_000.0)
    store.apply_poll([paper("An Attention Paper, Known By Title", upvotes=3)], everything, now=2_000.0)
    for wanted in ("arxiv:2606.12243", "2606.12243", "2606.12243v3", "verification VIA intra-model"):
        assert [p.key for p in store.find_papers(wanted)] == ["arxiv:2606.12243"], wanted
    by_title = [p.title for p in store.find_papers("ATTENTION")]
    assert by_title == ["An Attention Paper, Known By Title", "MiniMax Sparse Attention"]  # latest seen first
    assert [p.title for p in store.find_papers("attention", limit=1)] == by_title[:1]
    assert [store.find_papers(absent) for absent in ("2601.00001", "%", "")] == [[], [], []]

    story = store.paper_story("arxiv:2606.12243")
    assert story is not None and story.paper.title.startswith("VIA-SD")
    assert (story.first_seen, story.last_seen) == (1_000.0, 1_000.0)
    assert story.matched == {"all": (["every paper"], 1_000.0)}
    assert sorted((d.rule, d.channel, d.state, d.attempts) for d in story.deliveries) == [
        ("all", "console", "pending", 0), ("all", "feed", "pending", 0)]
    assert store.paper_story("arxiv:2601.00001") is None


def _numbered(n: int) -> list[Paper]:
    return [Paper.build(title=f"Numbered paper {i}", arxiv_id=f"2609.{i:05d}", source="hf-json")
            for i in range(n)]


@pytest.mark.slow
def test_a_big_poll_commits_its_papers_with_their_matches_a_part_at_a_time(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll that stops part-way (the matcher raised, the process died) has stored whole parts of
    the page, each paper with its matches and their deliveries, and nothing of the rest; the next
    poll stores the rest, and records no match twice."""
    monkeypatch.setattr("monitor.store.sql._WRITE_BUDGET", 0.0, raising=False)  # a transaction per part
    page = _numbered(130)

    def failing(paper: Paper) -> list[Hit]:
        if paper.title == "Numbered paper 120":
            raise RuntimeError("the matcher broke")
        return [Hit("r", ("k",), ("team",))]

    with pytest.raises(RuntimeError):
        store.apply_poll(page, failing)
    stored = [p.title for p in store.iter_papers()]
    with store.engine.connect() as conn:
        counted = conn.execute(sa.select(sa.func.count()).select_from(matches)).scalar_one()
        queued = conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()
    assert 50 <= len(stored) < 121 and stored == [p.title for p in page[: len(stored)]]
    assert counted == queued == len(stored)  # every stored paper with its match and its delivery
    assert "Numbered paper 120" not in stored
    diff = store.apply_poll(page, lambda paper: [Hit("r", ("k",), ("team",))])
    assert [p.title for p in diff.new] == [p.title for p in page[len(stored) :]]
    assert len(diff.matches) == 130 - len(stored)
    assert store.delivery_counts(0.0, ["team"])["team"].pending == 130


@pytest.mark.slow
def test_a_big_poll_lets_other_writers_in_between_its_parts(tmp_path: Path) -> None:
    """A poll of many papers, each matching slowly, does not hold SQLite's write lock throughout:
    another writer waiting at most 3 s gets in while it goes on (the store's busy timeout is 10 s)."""
    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    waits: list[float] = []
    polling = threading.Event()

    def slow(paper: Paper) -> list[Hit]:
        polling.set()
        time.sleep(0.01)
        return [Hit("r", ("k",), ("team",))]

    def writer() -> None:
        polling.wait(30)
        db = sqlite3.connect(tmp_path / "db.sqlite", timeout=3, isolation_level=None)
        try:
            started = time.monotonic()
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
            waits.append(time.monotonic() - started)
        except sqlite3.OperationalError:
            pass
        finally:
            db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        started = time.monotonic()
        diff = store.apply_poll(_numbered(600), slow)
        took = time.monotonic() - started
    finally:
        thread.join()
        store.close()
    assert len(diff.new) == len(diff.matches) == 600
    assert took > 5  # the poll took longer than the writer would wait
    assert waits, "the other writer waited 3 s for the write lock and gave up"
