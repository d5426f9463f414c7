"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import ReplayServer


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    """A real HTTP server on 127.0.0.1 answering scripted replies (see ``ReplayServer``)."""
    with ReplayServer() as server:
        yield server
