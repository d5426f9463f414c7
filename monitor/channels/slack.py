"""Slack: a batch as Block Kit messages, through an incoming webhook or the Web API (bot token + channel).

Messages are split to Slack's limits, paced to one a second, and every scraped string is escaped
for mrkdwn so a title can never mention ``@channel`` or smuggle a link.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

from monitor.channels import render
from monitor.channels.base import DIGEST_RULE, Alert, Batch, by_rule, paper_count
from monitor.config import SlackConfig
from monitor.errors import DeliveryError
from monitor.retry_after import parse_retry_after

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_TEXT = 40_000
HEADER_LIMIT = 150
FALLBACK_LIMIT = 900
# Per-piece budgets, in UTF-16 units of escaped text (Slack's own count may be in UTF-16, where an
# emoji is two; counting so is never less than characters). With the markup they add up to about
# 2,530, under MAX_SECTION; _fit_section makes sure of it whatever the pieces.
_TITLE, _URL, _FACTS, _REASONS, _ABSTRACT, _RULE = 600, 500, 500, 400, 400, 100
# A section stops this far under Slack's limit: room for a count of Slack's that differs from ours.
_SECTION_BUDGET = MAX_SECTION - 100

# Web API errors that no retry can fix: credentials, the channel, or the message itself.
PERMANENT_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "not_allowed_token_type", "ekm_access_denied",
    "team_access_not_granted", "org_login_required", "channel_not_found", "not_in_channel",
    "is_archived", "restricted_action", "invalid_blocks", "invalid_blocks_format", "msg_too_long",
    "no_text", "too_many_attachments", "invalid_arguments", "invalid_arg_name", "invalid_charset",
})
# Sent pieces of batches that failed half-way, so a retry skips them (should the store not have
# recorded them); bounded, oldest dropped.
_PROGRESS_LIMIT = 1000


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: ``&``, ``<`` and ``>`` become entities; nothing else is special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def units(text: str) -> int:
    """The length of ``text`` in UTF-16 code units, as JavaScript counts it: an emoji is two."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def fit(text: str, budget: int) -> str:
    """``text`` escaped, cut so the escaped form is at most ``budget`` UTF-16 units (never mid-entity)."""
    out = escape(text)
    if units(out) <= budget:
        return out
    used, kept = 0, []
    for ch in text:
        cost = units(escape(ch))
        if used + cost > budget - 1:
            break
        kept.append(ch)
        used += cost
    return escape("".join(kept)) + "…"


def link_url(url: str) -> str:
    """``url`` as it stands in a link: no ``|`` or angle bracket left to end it early, ``&`` escaped
    (so it may be up to five times as long as ``url``)."""
    return escape(url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E"))


def link(url: str, label: str) -> str:
    """``<url|label>`` with the label escaped (``label`` already is) and the URL made safe."""
    return f"<{link_url(url)}|{label.replace('|', '∣')}>"


@dataclass(frozen=True)
class SlackMessage:
    """One chat message: the mrkdwn ``text`` fallback (notifications) and its Block Kit blocks, and
    the delivery ids of the papers in it."""

    text: str
    blocks: list[dict[str, Any]]
    ids: tuple[int, ...] = ()

    def size(self) -> int:
        """Characters of text in the message, fallback and blocks together."""
        return len(self.text) + sum(_block_text_len(block) for block in self.blocks)


def _block_text_len(block: Mapping[str, Any]) -> int:
    text = block.get("text")
    return units(text["text"]) if isinstance(text, Mapping) else 0


def paper_section(alert: Alert, rule: str | None = None) -> dict[str, Any]:
    """One paper: linked title, facts, why it matched (and, in a digest, which ``rule``), and the
    start of the abstract."""
    paper = alert.paper
    title = fit(render.shorten(paper.title or "(untitled)", 250), _TITLE)
    url = render.http_url(paper.url)
    # The budget is on the URL as sent: "&" grows five-fold into "&amp;".
    linked = url is not None and units(link_url(url)) <= _URL
    lines = [f"*{link(url, title) if url and linked else title}*"]
    facts = render.facts(paper)
    if facts:
        lines.append(fit(" · ".join(facts), _FACTS))
    if alert.reasons:
        by = f" ({fit(render.one_line(rule), _RULE)})" if rule else ""
        lines.append(f"_Matched{by}:_ " + fit(render.reasons_line(alert.reasons), _REASONS))
    abstract = render.snippet(paper.abstract)
    if abstract:
        lines.append("> " + fit(abstract, _ABSTRACT))
    text = _fit_section(lines, f"*{title}*")
    # verbatim: Slack must not turn scraped "@here" or "#channel" words into mentions or links.
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}


def _fit_section(lines: list[str], unlinked: str) -> str:
    """The lines as one section text within ``_SECTION_BUDGET``: the budgets above already see to it,
    but should they ever not, the last lines (abstract, then reasons, then facts) go, then the link;
    a text Slack refuses would fail the whole batch for good."""
    while len(lines) > 1 and units("\n".join(lines)) > _SECTION_BUDGET:
        lines = lines[:-1]
    text = "\n".join(lines)
    return text if units(text) <= _SECTION_BUDGET else unlinked


def build_messages(batch: Batch) -> list[SlackMessage]:
    """The batch as messages, each within 50 blocks and 40,000 characters of text. A digest
    lists the papers rule by rule, each naming its rule."""
    n = len(batch.alerts)
    digest = batch.rule == DIGEST_RULE
    groups: list[list[tuple[Alert, dict[str, Any]]]] = [[]]
    used = HEADER_LIMIT + FALLBACK_LIMIT
    for rule, alerts in by_rule(batch):
        for alert in alerts:
            used = _place(groups, alert, paper_section(alert, rule if digest else None), used)
    messages = []
    for i, group in enumerate(groups, 1):
        first = render.digest_line(paper_count(batch)) if digest else render.count_line(batch.rule, n)
        heading = first + (f" ({i}/{len(groups)})" if len(groups) > 1 else "")
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": render.shorten(heading, HEADER_LIMIT)}}
        ]
        for _, section in group:
            blocks += [section, {"type": "divider"}]
        blocks.pop()
        titles = "; ".join(render.shorten(alert.paper.title, 120) for alert, _ in group[:3])
        fallback = fit(render.one_line(f"{heading}: {titles}"), FALLBACK_LIMIT)
        ids = tuple(alert.delivery_id for alert, _ in group)
        messages.append(SlackMessage(text=fallback, blocks=blocks, ids=ids))
    return messages


def _place(groups: list[list[tuple[Alert, dict[str, Any]]]], alert: Alert, section: dict[str, Any],
           used: int) -> int:
    """Add a paper's section to the last message, or to a new one when it would pass Slack's
    limits (one header, then section + divider per paper, the last divider dropped); the text
    used in that message so far."""
    cost = _block_text_len(section)
    if groups[-1] and (2 * (len(groups[-1]) + 1) > MAX_BLOCKS or used + cost > MAX_TEXT):
        groups.append([])
        used = HEADER_LIMIT + FALLBACK_LIMIT
    groups[-1].append((alert, section))
    return used + cost


class _ShortRateLimitHandler(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, waiting in place only for short pauses; long ones go to the outbox."""

    def __init__(self, max_wait: float, max_retry_count: int = 2) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        if response is None or _header(response.headers, "retry-after") is None:
            return True  # slack-sdk waits a moment of its own
        # slack-sdk reads the header as a whole number of seconds: anything else goes to the outbox.
        wait = retry_after(response.headers)
        return wait is not None and wait.is_integer() and wait <= self.max_wait


def retry_after(headers: Mapping[str, Any]) -> float | None:
    """Seconds from a ``Retry-After`` header (any case; a value or a list of values), if readable."""
    return parse_retry_after(_header(headers, "retry-after"))


def _header(headers: Mapping[str, Any], wanted: str) -> str | None:
    """The first value of the header ``wanted`` (lower case), in any case, from slack-sdk's headers."""
    for name, value in headers.items():
        if name.lower() == wanted:
            raw = value[0] if isinstance(value, list | tuple) and value else value
            return str(raw)
    return None


class _Pace:
    """When the next message to one Slack channel may go (``time.monotonic``): shared by every
    channel object posting there (two config entries naming it, or the old and new object across a
    reload)."""

    _all: ClassVar[dict[tuple[str, ...], _Pace]] = {}
    _all_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_at = 0.0

    @classmethod
    def of(cls, cfg: SlackConfig) -> _Pace:
        key = (cfg.webhook_url,) if cfg.webhook_url else (cfg.base_url, cfg.token or "", cfg.channel or "")
        with cls._all_lock:
            return cls._all.setdefault(key, cls())


class SlackChannel:
    """A Slack destination: ``webhook_url``, or ``token`` + ``channel`` over ``base_url``."""

    def __init__(
        self,
        cfg: SlackConfig,
        *,
        min_interval: float = 1.0,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.min_interval = min_interval
        self._sleep = sleep
        self._pace = _Pace.of(cfg)
        self._lock = threading.Lock()
        self._progress: OrderedDict[str, set[int]] = OrderedDict()  # batch key -> delivery ids posted
        handlers: list[RetryHandler] = [
            ConnectionErrorRetryHandler(max_retry_count=1),
            _ShortRateLimitHandler(max_wait=max_wait),
        ]
        timeout = max(1, math.ceil(cfg.timeout))
        self._webhook: WebhookClient | None = None
        self._web: WebClient | None = None
        if cfg.webhook_url:
            self._webhook = WebhookClient(cfg.webhook_url, timeout=timeout, retry_handlers=handlers)
        else:
            self._web = WebClient(
                token=cfg.token, base_url=cfg.base_url, timeout=timeout, retry_handlers=handlers
            )

    def send(self, batch: Batch) -> None:
        """Post every message of the batch. A message Slack confirmed at an earlier try is not sent
        again: this object remembers it, and the store, told through ``batch.on_posted``, across
        restarts (its papers come ``posted``)."""
        if not batch.alerts:
            return
        messages = build_messages(batch)
        # By the papers in them, not by their place: should a paper's text have changed since
        # (a poll), the split may differ, and a message only partly posted goes again whole.
        posted = {alert.delivery_id for alert in batch.alerts if alert.posted}
        with self._lock:
            posted |= self._progress.get(batch.key, set())
            for index, message in enumerate(messages):
                if posted.issuperset(message.ids):
                    continue
                with self._pace.lock:
                    wait = self._pace.next_at - time.monotonic()
                    if wait > 0:
                        self._sleep(wait)
                    try:
                        self._post(message)
                    finally:
                        self._pace.next_at = time.monotonic() + self.min_interval
                self._remember(batch.key, message.ids)
                if batch.on_posted is not None and index < len(messages) - 1:  # the last: the batch is done
                    batch.on_posted(message.ids)
            self._progress.pop(batch.key, None)

    def close(self) -> None:
        """Nothing to release: slack-sdk opens one HTTP connection per request."""

    def _remember(self, key: str, ids: tuple[int, ...]) -> None:
        self._progress.setdefault(key, set()).update(ids)
        self._progress.move_to_end(key)
        while len(self._progress) > _PROGRESS_LIMIT:
            self._progress.popitem(last=False)

    def _post(self, message: SlackMessage) -> None:
        try:
            if self._webhook is not None:
                self._post_webhook(self._webhook, message)
            elif self._web is not None:
                self._web.chat_postMessage(
                    channel=self.cfg.channel or "",
                    text=message.text,
                    blocks=message.blocks,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except SlackApiError as exc:
            raise _api_error(exc) from exc
        except (SlackClientError, OSError) as exc:
            # Never the webhook URL: it is a secret.
            raise DeliveryError(f"slack: cannot reach Slack: {type(exc).__name__}: {exc}") from exc

    def _post_webhook(self, client: WebhookClient, message: SlackMessage) -> None:
        resp = client.send(text=message.text, blocks=message.blocks, unfurl_links=False, unfurl_media=False)
        if resp.status_code == 200:
            return
        reason = render.shorten(resp.body or "", 200) or "no reason given"
        what = f"slack webhook: HTTP {resp.status_code}: {reason}"
        if resp.status_code == 429:
            raise DeliveryError(what, retry_after=retry_after(resp.headers))
        if 400 <= resp.status_code < 500 and resp.status_code != 408:
            raise DeliveryError(what, permanent=True)
        raise DeliveryError(what)


def _api_error(exc: SlackApiError) -> DeliveryError:
    resp = exc.response
    data = resp.data if isinstance(resp.data, dict) else {}
    error = str(data.get("error") or "no error code")
    what = f"slack: HTTP {resp.status_code}: {render.shorten(error, 200)}"
    if resp.status_code == 429 or error == "ratelimited":
        return DeliveryError(what, retry_after=retry_after(resp.headers))
    if error in PERMANENT_ERRORS:
        return DeliveryError(what, permanent=True)
    return DeliveryError(what)
