"""The console channel, and ``test-channel`` through the real command line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.channels.base import Alert, Batch
from monitor.channels.console import ConsoleChannel
from monitor.config import ConsoleConfig
from tests.helpers import REPO
from tests.outbox_support import paper


def test_one_readable_line_per_paper() -> None:
    out = io.StringIO()
    channel = ConsoleChannel(ConsoleConfig(name="console", type="console"), stream=out)
    p1 = paper("Fast KV-cache quantization", arxiv_id="2606.00001")
    p2 = paper("Speculative decoding, again", arxiv_id="2606.00002", url=None)
    alerts = [Alert(p1, ["keyword: kv cache", "keyword: quantiz*"], 1), Alert(p2, ["author: Tri Dao"], 2)]
    channel.send(Batch(channel="console", rule="efficient-llm", alerts=alerts, key="k"))
    assert out.getvalue().splitlines() == [
        "[efficient-llm] Fast KV-cache quantization <https://arxiv.org/abs/2606.00001>"
        " - keyword: kv cache; keyword: quantiz*",
        "[efficient-llm] Speculative decoding, again - author: Tri Dao",
    ]


def test_scraped_text_cannot_reach_the_terminal_as_control_characters() -> None:
    out = io.StringIO()
    channel = ConsoleChannel(ConsoleConfig(name="console", type="console"), stream=out)
    evil = paper("Title\x1b[2J\x1b]0;pwned\x07 with\nnewline\r")
    channel.send(Batch(channel="console", rule="r", alerts=[Alert(evil, ["why\x1b[31m"], 1)], key="k"))
    (line,) = out.getvalue().splitlines()
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line
    assert line.startswith("[r] Title [2J ]0;pwned with newline <https://arxiv.org/abs/")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_test_channel_command(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[monitor]\ndatabase = "sqlite:///{tmp_path}/m.db"\nfeeds_dir = "{tmp_path}/feeds"\n\n'
        '[[channels]]\nname = "console"\ntype = "console"\n\n'
        '[[channels]]\nname = "feed"\ntype = "rss"\n\n'
        '[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:9/nothing-listens"\n'
        "timeout = 5\n"
    )
    ok = run_cli("test-channel", "--config", str(config), "console")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [
        "[test] paper-monitor test alert <https://huggingface.co/papers>"
        " - test message from paper-monitor test-channel",
        "channel console (console): test alert delivered",
    ]
    feed = run_cli("test-channel", "--config", str(config), "feed")
    assert feed.returncode == 0 and (tmp_path / "feeds" / "feed.xml").exists()
    down = run_cli("test-channel", "--config", str(config), "hook")
    assert down.returncode == 1
    assert down.stdout.startswith(
        "channel hook (webhook): FAILED (transient): webhook 127.0.0.1:9: ConnectError"
    )
    unknown = run_cli("test-channel", "--config", str(config), "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        'paper-monitor test-channel: unknown channel "nope" (channels: console, feed, hook)'
    )
