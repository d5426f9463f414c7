"""The watch on the config file (monitor.watch): an edit is read once it is written whole."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from monitor.config import load_settings
from monitor.watch import SETTLE, ConfigWatch
from tests.daemon_support import source, write_config

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_edit_is_due_once_the_file_looked_the_same_for_a_while(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=8080, sources=source("a", "http://127.0.0.1:1/a"),
                          channels="", rules="")
    clock = Clock()
    watch = ConfigWatch(config, load_settings(config), clock=clock)
    settings = load_settings(config)
    try:
        assert not watch.due(settings)
        config.write_text(config.read_text() + "# edited\n")
        assert not watch.due(settings)  # just changed: it may go on changing
        clock.now += SETTLE / 2
        config.write_text(config.read_text() + "# and again\n")
        clock.now += SETTLE / 2 + 0.1
        assert not watch.due(settings)  # (the settling began again with the second write)
        clock.now += SETTLE
        assert watch.due(settings)
        watch.read(settings)
        assert not watch.due(settings)
    finally:
        watch.close()


@linux
def test_a_file_a_writer_still_holds_is_not_due_however_long_it_pauses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, port=8080, sources=source("a", "http://127.0.0.1:1/a"),
                          channels="", rules='[[rules]]\nname = "r"\nkeywords = ["agent"]\n')
    whole = config.read_text()
    caplog.set_level(logging.INFO, logger="monitor.watch")
    clock = Clock()
    settings = load_settings(config)
    watch = ConfigWatch(config, settings, clock=clock)
    try:
        with config.open("w") as writer:  # saved again in place, by a writer that takes its time
            writer.write(whole[:whole.index("[[rules]]")])
            writer.flush()
            for _ in range(5):
                clock.now += 10 * SETTLE
                assert not watch.due(settings)
            writer.write(whole[whole.index("[[rules]]"):])
        assert not watch.due(settings)  # (written just now)
        clock.now += SETTLE
        assert watch.due(settings)
    finally:
        watch.close()
    told = [r.getMessage() for r in caplog.records if "still open for writing" in r.getMessage()]
    assert told == [f"{config} changed and is still open for writing: it is read once the writer closes "
                    "it (or at a SIGHUP)"]  # once, not at every look
