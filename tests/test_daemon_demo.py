"""``paper-monitor demo``: offline, on the bundled pages; prints alerts, writes a feed and .eml mail."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import feedparser


def test_demo_data_is_in_the_package() -> None:
    names = sorted(p.name for p in files("monitor.demo_data").iterdir())
    assert [n.rsplit(".", 1)[1] for n in names] == ["txt", "txt", "txt", "json"]


def test_demo_runs_offline_and_says_where_the_feed_and_mail_are(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"}
    result = subprocess.run([sys.executable, "-m", "monitor", "demo"], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("== poll ") == 4
    alerts = [line for line in out.splitlines() if line.startswith("[")]
    assert any(line.startswith("[hot] MiniMax Sparse Attention") for line in alerts)
    assert len(alerts) >= 20

    where = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.startswith("  ") and ":" in line}
    feed = feedparser.parse(Path(where["feed (RSS)"]).read_bytes())
    assert not feed.bozo and len(feed.entries) >= 3
    mail_dir = Path(where["mail"].split(" in ", 1)[1])
    messages = [email.message_from_bytes(p.read_bytes()) for p in sorted(mail_dir.glob("*.eml"))]
    assert messages and all(m["To"] == "you@localhost" for m in messages)
    assert any("hot" in (m["Subject"] or "") for m in messages)
