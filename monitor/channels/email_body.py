"""The email of a batch: headers that nothing scraped can break, a plain-text part and an HTML part.

Both parts come from the templates below; every scraped string is HTML-escaped in the HTML part,
and header values are made one line (no CR, LF or other control characters) before they are set.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from string import Template

from monitor.channels import render
from monitor.channels.base import DIGEST_RULE, Alert, Batch, by_rule, paper_count
from monitor.config import EmailConfig

SUBJECT_LIMIT = 200
ABSTRACT_LIMIT = 1200

TEXT_PAPER = Template("$title\n$url$facts$reasons$abstract\n")
TEXT_MESSAGE = Template("$heading\n\n$papers\n-- \nSent by paper-monitor (channel $channel).\n")
HTML_PAPER = Template(
    '<div style="margin:0 0 1.4em 0">\n'
    '<div style="font-size:1.1em;font-weight:bold">$title</div>\n'
    "$facts$reasons$abstract</div>\n"
)
HTML_SECTION = Template('<h3 style="margin:1.2em 0 .6em 0">$heading</h3>\n$papers')
HTML_MESSAGE = Template(
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>$heading</title></head>\n'
    '<body style="font-family:sans-serif;line-height:1.4;max-width:46em">\n'
    '<h2 style="margin:0 0 .8em 0">$heading</h2>\n$sections'
    '<p style="color:#888;font-size:.85em">Sent by paper-monitor (channel $channel).</p>\n'
    "</body></html>\n"
)


def header_value(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """A header value on one line: control characters (CR, LF...) become spaces; shortened."""
    return render.shorten(text, limit)


def scraped_header_value(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """``header_value`` of text that holds scraped words: an RFC 2047 encoded word in it
    (``=?us-ascii?q?=0D=0ABcc:...?=``) stays text, since the email package would decode one when
    the header is set, CR and LF included, and write them out as they are. (The config's own
    addresses may hold encoded words of their own.)"""
    return header_value(text, limit).replace("=?", "=\u200b?")


def subject(batch: Batch) -> str:
    """``[paper-monitor] <rule>: <n> new papers``, or ``[paper-monitor] <rule>: <title>`` for one."""
    if batch.rule == DIGEST_RULE:
        text = f"[paper-monitor] {render.digest_line(paper_count(batch))}"
    elif len(batch.alerts) == 1:
        text = f"[paper-monitor] {batch.rule}: {batch.alerts[0].paper.title}"
    else:
        text = f"[paper-monitor] {render.count_line(batch.rule, len(batch.alerts))}"
    return scraped_header_value(text)


def text_part(batch: Batch) -> str:
    """The plain-text body."""
    heading = subject(batch).removeprefix("[paper-monitor] ")
    chunks = []
    for rule, alerts in by_rule(batch):
        if batch.rule == DIGEST_RULE:
            line = render.one_line(render.count_line(rule, len(alerts)))
            chunks.append(f"{line}\n{'=' * len(line)}\n")
        chunks += [_text_paper(alert) for alert in alerts]
    return TEXT_MESSAGE.substitute(
        heading=heading, papers="\n".join(chunks), channel=render.one_line(batch.channel)
    )


def _text_paper(alert: Alert) -> str:
    paper = alert.paper
    url = render.http_url(paper.url)
    facts = " · ".join(render.facts(paper))
    abstract = render.snippet(paper.abstract, ABSTRACT_LIMIT)
    return TEXT_PAPER.substitute(
        title=render.shorten(paper.title or "(untitled)", 500),
        url=f"{url}\n" if url else "",
        facts=f"{facts}\n" if facts else "",
        reasons=f"Matched: {render.reasons_line(alert.reasons, 600)}\n" if alert.reasons else "",
        abstract=f"\n{abstract}\n" if abstract else "",
    )


def html_part(batch: Batch) -> str:
    """The HTML body: every value escaped, links only to plain http(s) URLs."""
    e = _esc
    heading = subject(batch).removeprefix("[paper-monitor] ")
    sections = []
    for rule, alerts in by_rule(batch):
        papers = "".join(_html_paper(alert) for alert in alerts)
        if batch.rule == DIGEST_RULE:
            heading_html = e(render.count_line(rule, len(alerts)))
            sections.append(HTML_SECTION.substitute(heading=heading_html, papers=papers))
        else:
            sections.append(papers)
    return HTML_MESSAGE.substitute(heading=e(heading), sections="".join(sections), channel=e(batch.channel))


def _html_paper(alert: Alert) -> str:
    e = _esc
    paper = alert.paper
    title = e(render.shorten(paper.title or "(untitled)", 500))
    url = render.http_url(paper.url)
    facts = " · ".join(render.facts(paper))
    abstract = render.snippet(paper.abstract, ABSTRACT_LIMIT)
    reasons = render.reasons_line(alert.reasons, 600)
    return HTML_PAPER.substitute(
        title=f'<a href="{e(url)}">{title}</a>' if url else title,
        facts=f'<div style="color:#555">{e(facts)}</div>\n' if facts else "",
        reasons=f"<div><i>Matched:</i> {e(reasons)}</div>\n" if alert.reasons else "",
        abstract=f'<p style="margin:.4em 0">{e(abstract)}</p>\n' if abstract else "",
    )


def _esc(text: str) -> str:
    return html.escape(render.one_line(text), quote=True)


def message_id(batch: Batch, sender: str) -> str:
    """The same Message-ID on every retry of a batch, so a mail client can drop a duplicate."""
    domain = sender.rpartition("@")[2]
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,200}", domain):
        domain = "paper-monitor.invalid"
    digest = hashlib.sha256(f"{batch.channel}\0{batch.key}".encode()).hexdigest()[:32]
    return f"<{digest}.paper-monitor@{domain}>"


def addresses(values: Sequence[str]) -> list[str]:
    """The bare addresses (for the SMTP envelope) of header values like ``Name <a@b>``."""
    return [addr for _, addr in getaddresses([header_value(v, 998) for v in values]) if addr]


def compose(cfg: EmailConfig, batch: Batch) -> EmailMessage:
    """The message: multipart/alternative, plain text first and HTML second."""
    msg = EmailMessage()
    msg["Subject"] = subject(batch)
    msg["From"] = header_value(cfg.from_, 998)
    msg["To"] = ", ".join(header_value(address, 998) for address in cfg.to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    sender = (addresses([cfg.from_]) or ["paper-monitor@paper-monitor.invalid"])[0]
    msg["Message-ID"] = message_id(batch, sender)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Paper-Monitor-Rule"] = header_value(batch.rule, 200)
    msg.set_content(text_part(batch), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html_part(batch), subtype="html", charset="utf-8", cte="quoted-printable")
    return msg
