"""The RSS/Atom channel: a feed of the matches of its rules, rebuilt from the store on each send (of
the batches due together).

"Sending" rewrites ``<feeds_dir>/<name>.xml`` (RSS 2.0) and ``.atom`` atomically; the daemon's
server answers with ``render_feed`` directly, and serves each of the channel's rules as a feed of
its own (``?rule=``). Newest first, the last ``max_items``, guid = paper key.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from feedgen.feed import FeedGenerator

from monitor.channels.base import Batch, FeedRows
from monitor.channels.render import http_url
from monitor.config import RssConfig
from monitor.errors import DeliveryError, StoreError
from monitor.models import Paper

FeedKind = Literal["rss", "atom"]
SUFFIX: dict[FeedKind, str] = {"rss": ".xml", "atom": ".atom"}
SITE = "https://huggingface.co/papers"
# Characters XML 1.0 cannot carry at all (lxml refuses them): C0 controls but tab, LF, CR; surrogates.
# And those it can but should not: DEL and the C1 controls (feedparser reads them as Windows-1252,
# so "\x85" shows as "…"), and bidirectional overrides (see render.BIDI).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
                      "\u202a-\u202e\u2066-\u2069]")


def xml_text(text: str) -> str:
    """``text`` with the characters XML cannot (or should not) hold removed (escaping itself is feedgen's)."""
    return _NOT_XML.sub("", text)


@dataclass(frozen=True)
class FeedItem:
    paper: Paper
    rules: list[str]
    reasons: list[str]
    at: float  # when the match was recorded


def feed_items(store: FeedRows, cfg: RssConfig, batch: Batch | None = None,
               now: float | None = None, rule: str | None = None,
               batches: Sequence[Batch] = ()) -> list[FeedItem]:
    """The feed's items, newest first: sent deliveries of the channel (of ``rule`` alone, if given)
    plus ``batch`` and ``batches``; one per paper."""
    sending = [*([batch] if batch else []), *batches]
    ids = [a.delivery_id for b in sending for a in b.alerts]
    rows = store.feed_rows(cfg.name, cfg.max_items, include=ids, rule=rule)
    found = {row[0] for row in rows}
    at = time.time() if now is None else now
    # A batch alert without a stored row (``test-channel``: delivery id 0) shows as the newest item;
    # one with a row is where its row puts it (in the feed, or past its ``max_items``: with several
    # batches at once, one of them may be older than the others' ``max_items`` papers).
    extra = [(a.delivery_id, a.rule or b.rule, a.paper, a.reasons, at)
             for b in sending for a in b.alerts if a.delivery_id not in found and a.delivery_id <= 0]
    items: dict[str, FeedItem] = {}
    for _id, rule, paper, reasons, when in [*extra, *rows]:
        seen = items.get(paper.key)
        if seen is None:
            items[paper.key] = FeedItem(paper, [rule], list(reasons), when)
        elif rule not in seen.rules:  # one paper, several rules: one item (one guid) naming them all
            seen.rules.append(rule)
            seen.reasons.extend(r for r in reasons if r not in seen.reasons)
    return list(items.values())[: cfg.max_items]


def render_feed(store: FeedRows, cfg: RssConfig, kind: FeedKind, *, batch: Batch | None = None,
                now: float | None = None, rule: str | None = None, batches: Sequence[Batch] = ()) -> bytes:
    """The feed of channel ``cfg`` as RSS 2.0 (``kind="rss"``) or Atom bytes (UTF-8), with the
    alerts of ``batch`` and ``batches`` (being sent); given ``rule``, the feed of that rule's papers
    in the channel (served, never written)."""
    items = feed_items(store, cfg, batch, now, rule, batches)
    fg = FeedGenerator()
    title = cfg.title or f"paper-monitor: {cfg.name}"
    if rule is None:
        fg.id(f"urn:paper-monitor:feed:{xml_text(cfg.name)}")
        fg.title(xml_text(title))
        fg.description(f"Papers matching the rules that notify {xml_text(cfg.name)}")
    else:
        fg.id(f"urn:paper-monitor:feed:{xml_text(cfg.name)}:rule:{xml_text(rule)}")
        fg.title(xml_text(f"{title}: {rule}"))
        fg.description(f"Papers matching the rule {xml_text(rule)}")
    fg.link(href=SITE, rel="alternate")
    fg.language("en")
    fg.generator("paper-monitor")
    # RFC 4287 4.1.1: an Atom entry without an author of its own (a paper listed without names)
    # takes the feed's; RSS shows it nowhere (it would need an email address).
    fg.author(name="paper-monitor")
    newest = _stamp(items[0].at) if items else _stamp(time.time() if now is None else now)
    fg.updated(newest)
    fg.lastBuildDate(newest)
    for item in items:
        _add_entry(fg, item)
    data: bytes = fg.rss_str(pretty=True) if kind == "rss" else fg.atom_str(pretty=True)
    return data


def _add_entry(fg: FeedGenerator, item: FeedItem) -> None:
    paper = item.paper
    entry = fg.add_entry(order="append")
    entry.id(xml_text(paper.key))
    entry.guid(xml_text(paper.key), permalink=False)
    entry.title(xml_text(paper.title) or xml_text(paper.key))
    link = http_url(paper.url) or (f"https://arxiv.org/abs/{paper.arxiv_id}" if paper.arxiv_id else None)
    if link:
        entry.link(href=xml_text(link))
    for name in paper.authors[:10]:
        entry.author(name=xml_text(name))
    for rule in item.rules:
        entry.category(term=xml_text(rule))
    description = xml_text(_description(item))
    entry.description(description, isSummary=True)
    if not link:  # Atom wants a link or a content element: papers from text pages have no link
        entry.content(description, type="text")
    stamp = _stamp(item.at)
    entry.pubDate(stamp)
    entry.updated(stamp)


def _description(item: FeedItem) -> str:
    lines = [f"Rule: {', '.join(item.rules)}"]
    if item.reasons:
        lines.append("Why: " + "; ".join(item.reasons))
    if item.paper.authors:
        lines.append("Authors: " + ", ".join(item.paper.authors[:10])
                     + (" et al." if len(item.paper.authors) > 10 else ""))
    if item.paper.abstract:
        lines.append("")
        lines.append(item.paper.abstract)
    return "\n".join(lines)


def _stamp(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a static web server must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


class RssChannel:
    """Keeps ``<feeds_dir>/<name>.xml`` and ``<name>.atom`` up to date; a batch is confirmed once
    both files are in place."""

    def __init__(self, cfg: RssConfig, store: FeedRows, feeds_dir: Path | str) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._store = store
        self._dir = Path(feeds_dir)

    def path(self, kind: FeedKind) -> Path:
        return self._dir / f"{self.name}{SUFFIX[kind]}"

    def send(self, batch: Batch) -> None:
        self.send_all([batch])

    def send_all(self, batches: Sequence[Batch]) -> None:
        """The feed rendered once with every batch of ``batches`` in it: the dispatcher hands the
        channel the batches due together (``GroupChannel``), each confirmed once both files hold it."""
        now = time.time()
        try:
            for kind in ("rss", "atom"):
                data = render_feed(self._store, self._cfg, kind, batches=batches, now=now)
                write_atomic(self.path(kind), data)
        except OSError as exc:
            raise DeliveryError(f"rss {self.name}: cannot write {self._dir}: {exc.strerror or exc}") from exc
        except StoreError as exc:
            raise DeliveryError(f"rss {self.name}: {exc}") from exc

    def close(self) -> None:
        pass
