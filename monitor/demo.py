"""``paper-monitor demo``: the real pipeline, offline, over recorded pages bundled in the package.

A local web server replays the pages as a day of polls; alerts go to the console, an RSS/Atom
feed and a local mail sink that writes .eml files; at the end it says where they all are.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import TextIO

from monitor.config import SourceConfig, parse_settings
from monitor.demo_servers import MailSink, PageReplay
from monitor.fetch import Fetcher, RetryPolicy
from monitor.match import compile_rules
from monitor.outbox import open_dispatcher
from monitor.pipeline import poll
from monitor.store import open_store

_CONFIG = """
[monitor]
database = {database}
feeds_dir = {feeds}

[[sources]]
name = "hf-papers"
url = {url}
every = "15m"

[[channels]]
name = "console"
type = "console"

[[channels]]
name = "feed"
type = "rss"
title = "paper-monitor demo"

[[channels]]
name = "mail"
type = "email"
smtp_url = "smtp+plain://127.0.0.1:{smtp_port}"
from = "Paper Monitor <monitor@localhost>"
to = ["you@localhost"]

[[rules]]
name = "efficient-llm"
keywords = ["speculative decoding", "kv cache", "quantiz*", "sparse attention", "distillation"]
exclude = ["survey"]
notify = ["console", "feed", "mail"]

[[rules]]
name = "agents"
keywords = ["agent", "agents", "agentic"]
notify = ["console", "feed"]

[[rules]]
name = "hot"
min_upvotes = 50
notify = ["console", "feed", "mail"]
"""

_LABELS = {"txt": "text/plain; charset=utf-8", "json": "application/json"}


def _pages() -> list[tuple[str, bytes, str]]:
    """The bundled pages in polling order: (file name, bytes, content type)."""
    data = files("monitor.demo_data")
    names = sorted(p.name for p in data.iterdir() if p.name.endswith((".txt", ".json")))
    return [(n, data.joinpath(n).read_bytes(), _LABELS[n.rsplit(".", 1)[1]]) for n in names]


def run_demo(workdir: Path | None = None, out: TextIO | None = None) -> int:
    """Run the demo in ``workdir`` (default: a new temporary directory, kept for you to look at)."""
    out = out or sys.stdout
    started = time.monotonic()
    root = workdir or Path(tempfile.mkdtemp(prefix="paper-monitor-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    pages = _pages()
    # The alerts are the show; the stages' INFO lines would drown them (warnings still show).
    quiet = logging.getLogger("monitor")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    replay = PageReplay([(body, kind) for _, body, kind in pages])
    sink = MailSink(root / "mail")
    try:
        text = _CONFIG.format(database=json.dumps(f"sqlite:///{root / 'demo.db'}"),
                              feeds=json.dumps(str(root / "feeds")), url=json.dumps(replay.url),
                              smtp_port=sink.port)
        (root / "demo.toml").write_text(text, encoding="utf-8")
        settings = parse_settings(text, env={})
        source: SourceConfig = settings.sources[0]
        index = compile_rules(settings.rules)
        store = open_store(settings.monitor.database)
        try:
            with Fetcher(policy=RetryPolicy(attempts=1, max_total=5.0)) as fetcher, \
                    open_dispatcher(settings, store) as dispatcher:
                for step, (name, _, _) in enumerate(pages, start=1):
                    print(f"\n== poll {step}/{len(pages)}: {name}", file=out, flush=True)
                    report = poll(source, store, fetcher, index)
                    if report.error:
                        print(f"   poll failed: {report.error}", file=out, flush=True)
                        continue
                    print(f"   {report.papers} papers, {report.new} new, {report.changed} changed, "
                          f"{report.matched} matched; alerts:", file=out, flush=True)
                    dispatcher.run_due()
                dispatcher.run_due()  # anything a slow channel left
        finally:
            store.close()
    finally:
        replay.close()
        sink.close()
        quiet.setLevel(level)
    mails = sorted((root / "mail").glob("*.eml"))
    print(f"\ndone in {time.monotonic() - started:.1f}s", file=out)
    print(f"  feed (RSS):  {root / 'feeds' / 'feed.xml'}", file=out)
    print(f"  feed (Atom): {root / 'feeds' / 'feed.atom'}", file=out)
    print(f"  mail:        {len(mails)} message(s) in {root / 'mail'}", file=out)
    print(f"  database:    {root / 'demo.db'}   config: {root / 'demo.toml'}", file=out)
    return 0
