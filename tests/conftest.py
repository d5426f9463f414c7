"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ReplayServer
from tests.pg_support import ENV_REQUIRE, PgServer, PgUnavailable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` (a real daemon waiting on real timers, 5-60 s each) run first, the
    others after them in their order: with ``-n 2`` and one test handed out at a time
    (``--maxschedchunk 1``), the two workers end together instead of one waiting out a long test
    left near the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    """A real HTTP server on 127.0.0.1 answering scripted replies (see ``ReplayServer``)."""
    with ReplayServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server on loopback for the whole session (see tests/pg_support.py);
    the tests that need it are skipped, with the reason, where none can be had."""
    server = PgServer()
    try:
        server.start()
    except PgUnavailable as exc:
        if os.environ.get(ENV_REQUIRE):
            pytest.fail(f"no PostgreSQL server ({ENV_REQUIRE} is set): {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database: a SQLite file in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db.sqlite"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()
