"""``paper-monitor copy-store --to URL``: a store outgrown on SQLite moves to PostgreSQL (and back)
with its history, so the daemon on the copy alerts nothing again and loses nothing. Real ``once``
runs against the recorded HF API page, real webhooks on loopback, a throwaway PostgreSQL.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import feedparser
import pytest

from monitor.store import open_store
from monitor.store.copy import row_counts
from tests.daemon_support import cli, source, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port
from tests.pg_support import PgServer

LATE = "2606.13289"  # 25 upvotes: on the page only after the move
RULES = '[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["hook", "down", "feed"]\n'


def _config(tmp: Path, replay: ReplayServer, database: str, name: str = "monitor.toml") -> Path:
    channels = (f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{replay.url("/hook")}"\n\n'
                f'[[channels]]\nname = "down"\ntype = "webhook"\nurl = "{replay.url("/down")}"\n\n'
                '[[channels]]\nname = "feed"\ntype = "rss"\n')
    hf = source("hf", replay.url("/papers"), every="1h") + 'catch_up = "off"\n'
    path = write_config(tmp, port=free_port(), sources=hf, channels=channels, rules=RULES)
    text = re.sub(r'database = "[^"]*"', f'database = "{database}"', path.read_text(encoding="utf-8"))
    target = tmp / name
    path.unlink()
    target.write_text(text, encoding="utf-8")
    return target


def _channel_table(config: Path) -> list[str]:
    """status's table of channels: pending, failed, dead, sent today each."""
    done = cli(config, "status")
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n\n")[0].splitlines()


def _posted(replay: ReplayServer) -> list[str]:
    """The arXiv ids of the papers POSTed to the hook, a batch after the other."""
    return [paper["arxiv_id"] for seen in replay.requests if seen.path == "/hook"
            for paper in json.loads(seen.body)["papers"]]


def _feed(tmp: Path) -> set[str]:
    return {entry.link for entry in feedparser.parse((tmp / "feeds" / "feed.xml").read_bytes()).entries}


@pytest.fixture
def page(replay: ReplayServer) -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(HF_JSON.read_bytes())
    replay.route("/papers", Reply(json.dumps([i for i in items if i["paper"]["id"] != LATE]).encode()))  # type: ignore[index]
    replay.route("/hook", Reply(b"ok"))
    # Down for an hour: its retry is not due again within the test, however slow the machine.
    replay.route("/down", Reply(b"down for maintenance", 503, {"Retry-After": "3600"}))
    return items


@pytest.mark.slow
def test_a_sqlite_store_moves_to_postgresql_and_the_daemon_goes_on_there_as_if_nothing_happened(
    tmp_path: Path, replay: ReplayServer, page: list[dict[str, object]], pg_server: PgServer
) -> None:
    lite = _config(tmp_path, replay, f"sqlite:///{tmp_path}/monitor.db")
    first = cli(lite, "once")
    assert first.returncode == 1 and "channel down: 8 alert(s) to retry" in first.stderr, first.stderr
    hot = _posted(replay)
    assert hot and len(hot) == len(set(hot))
    before, feed = _channel_table(lite), _feed(tmp_path)
    assert any(line.split()[:1] == ["down"] and line.split()[3] != "0" for line in before), before  # failed

    pg_url = pg_server.new_database().replace("//postgres@", "//postgres:s3cret@")  # (trust: any password)
    assert "s3cret" in pg_url
    moved = cli(lite, "copy-store", "--to", pg_url)
    assert moved.returncode == 0, moved.stderr
    counts = row_counts(open_store(f"sqlite:///{tmp_path}/monitor.db"))
    shown_pg = pg_url.replace(":s3cret@", ":***@")
    assert moved.stdout.strip() == (
        f"copied {counts['papers']} papers, {counts['matches']} matches, {counts['deliveries']} deliveries "
        f"and the state of 1 source(s) from sqlite:///{tmp_path}/monitor.db to {shown_pg}")
    assert counts["papers"] > 10 and counts["deliveries"] == 3 * len(hot)
    assert "s3cret" not in moved.stdout + moved.stderr

    pg = _config(tmp_path, replay, pg_url, "pg.toml")
    assert _channel_table(pg) == before  # the same outbox: sent, and failed waiting for its retry
    replay.route("/papers", Reply(HF_JSON.read_bytes()))  # one paper more: the rest are known
    second = cli(pg, "once")
    assert second.returncode == 0, second.stderr
    assert "1 new" in second.stderr, second.stderr
    assert _posted(replay) == [*hot, LATE]  # the new paper once; none of the others again
    assert _feed(tmp_path) == feed | {f"https://huggingface.co/papers/{LATE}"}

    back = tmp_path / "back.db"  # and back again, from PostgreSQL, with the row the move added
    again = cli(pg, "copy-store", "--to", f"sqlite:///{back}")
    assert again.returncode == 0, again.stderr
    pg_store = open_store(pg_url)
    try:
        assert row_counts(open_store(f"sqlite:///{back}")) == row_counts(pg_store) != counts
    finally:
        pg_store.close()


@pytest.mark.slow
def test_copy_store_refuses_a_target_that_is_not_empty_or_the_store_itself_and_warns_of_a_running_daemon(
    tmp_path: Path, replay: ReplayServer, page: list[dict[str, object]]
) -> None:
    lite = _config(tmp_path, replay, f"sqlite:///{tmp_path}/monitor.db")
    assert cli(lite, "once").returncode == 1  # (the "down" channel failed)
    backup = f"sqlite:///{tmp_path}/backup.db"

    store = open_store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        store.hold("run")  # a daemon at work: the copy is a snapshot, and says so
        done = cli(lite, "copy-store", "--to", backup)
    finally:
        store.close()
    assert done.returncode == 0 and done.stdout.startswith("copied "), done.stderr
    assert "a daemon is at work on" in done.stderr and "stop the daemon first" in done.stderr
    counts = row_counts(open_store(backup))

    again = cli(lite, "copy-store", "--to", backup)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.strip() == (f"paper-monitor copy-store: the target holds rows already "
                                    f"({counts['papers']} in papers, {counts['titles']} in titles, "
                                    f"{counts['matches']} in matches, "
                                    f"{counts['deliveries']} in deliveries, 1 in sources): copy-store fills "
                                    "empty stores only")
    assert row_counts(open_store(backup)) == counts  # untouched

    itself = cli(lite, "copy-store", "--to", f"sqlite:///{tmp_path}/./monitor.db")
    assert itself.returncode == 2 and "is the store itself" in itself.stderr
    bad = cli(lite, "copy-store", "--to", "not a url")
    assert bad.returncode == 2 and bad.stderr.startswith("paper-monitor copy-store: --to: not a database URL")

    held = open_store(f"sqlite:///{tmp_path}/other.db")
    try:
        held.hold("run")  # a daemon works with the target: no copy into it
        busy = cli(lite, "copy-store", "--to", f"sqlite:///{tmp_path}/other.db")
    finally:
        held.close()
    assert busy.returncode == 1 and "another paper-monitor (run, pid" in busy.stderr


def test_a_copy_that_fails_halfway_leaves_the_target_empty(
    tmp_path: Path, replay: ReplayServer, page: list[dict[str, object]]
) -> None:
    lite = _config(tmp_path, replay, f"sqlite:///{tmp_path}/monitor.db")
    assert cli(lite, "once").returncode == 1  # (the "down" channel failed)
    target = tmp_path / "target.db"
    open_store(f"sqlite:///{target}").close()
    db = sqlite3.connect(target)
    with db:  # the disk fills up as the deliveries are written, after the papers and matches
        db.execute("CREATE TRIGGER full BEFORE INSERT ON deliveries "
                   "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.close()
    failed = cli(lite, "copy-store", "--to", f"sqlite:///{target}")
    assert failed.returncode == 1
    assert failed.stderr.strip() == "paper-monitor copy-store: copying the rows: IntegrityError: disk full"
    assert set(row_counts(open_store(f"sqlite:///{target}")).values()) == {0}
