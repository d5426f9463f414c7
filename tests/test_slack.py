"""Slack channel against a stand-in Slack (tests/slack_standin.py) that slack-sdk really talks to."""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.channels.base import Alert, Batch
from monitor.channels.slack import SlackChannel
from monitor.config import Settings, SlackConfig
from monitor.errors import DeliveryError
from monitor.models import Paper
from monitor.outbox import open_dispatcher
from monitor.store import open_store
from tests.daemon_support import Daemon, unsent, wait_for, write_config
from tests.helpers import free_port
from tests.outbox_support import paper as outbox_paper
from tests.outbox_support import record
from tests.slack_standin import WEBHOOK_PATH, Answer, SlackStandIn

EVIL_TITLE = "<!channel> see <http://evil|this>"


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def paper(i: int, **overrides: Any) -> Paper:
    values: dict[str, Any] = {
        "title": f"Speculative Decoding Study {i}",
        "source": "hf-json",
        "arxiv_id": f"2401.{10000 + i}",
        "abstract": f"We study speculative decoding, number {i}. " * 3,
        "authors": ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Tri Dao", "Song Han"],
        "organization": "Example Lab",
        "upvotes": 40 + i,
        "published": date(2026, 6, 12),
        "url": f"https://huggingface.co/papers/2401.{10000 + i}",
    }
    values.update(overrides)
    return Paper.build(**values)


def batch(papers: list[Paper], rule: str = "efficient-llm", key: str = "b1") -> Batch:
    reason = 'keyword "speculative decoding" in title'
    alerts = [Alert(p, [f"{reason} ({p.key})"], n) for n, p in enumerate(papers)]
    return Batch(channel="team", rule=rule, alerts=alerts, key=key)


def bot(
    standin: SlackStandIn, *, token: str | None = None, channel: str = "#papers", **kw: Any
) -> SlackChannel:
    cfg = SlackConfig(
        name="team", type="slack", token=token or standin.token, channel=channel, base_url=standin.base_url
    )
    return SlackChannel(cfg, **kw)


def hook(standin: SlackStandIn, **kw: Any) -> SlackChannel:
    return SlackChannel(SlackConfig(name="team", type="slack", webhook_url=standin.webhook_url), **kw)


def sections(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]


def test_bot_message_arrives_once_with_the_paper_in_blocks(slack: SlackStandIn) -> None:
    channel = bot(slack)
    channel.send(batch([paper(1), paper(2, authors=["Solo Author"], organization=None, upvotes=None)]))
    channel.close()

    assert len(slack.requests) == 1 and len(slack.messages) == 1
    sent = slack.messages[0]
    assert sent.headers["Authorization"] == f"Bearer {slack.token}"
    assert sent.payload["channel"] == "#papers"
    assert sent.payload["blocks"][0] == {
        "type": "header", "text": {"type": "plain_text", "text": "efficient-llm: 2 new papers"}
    }
    first, second = sections(sent.payload)
    assert first.startswith("*<https://huggingface.co/papers/2401.10001|Speculative Decoding Study 1>*\n")
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al. (5 authors)" in first
    assert "Tri Dao" not in first
    assert "Example Lab" in first and "41 upvotes" in first
    assert '_Matched:_ keyword "speculative decoding" in title (arxiv:2401.10001)' in first
    assert "> We study speculative decoding, number 1." in first
    assert "Solo Author" in second and "upvote" not in second
    assert "efficient-llm: 2 new papers" in sent.payload["text"]
    assert "Speculative Decoding Study 1" in sent.payload["text"]
    assert sent.payload["unfurl_links"] is False


def test_webhook_message_arrives_once(slack: SlackStandIn) -> None:
    channel = hook(slack)
    channel.send(batch([paper(1)], rule="hot"))

    assert [r.path for r in slack.requests] == [WEBHOOK_PATH]
    (sent,) = slack.messages
    assert sent.payload["blocks"][0]["text"]["text"] == "hot: 1 new paper"
    assert "Speculative Decoding Study 1" in sections(sent.payload)[0]


def test_sixty_papers_split_into_messages_within_slack_limits(slack: SlackStandIn) -> None:
    channel = bot(slack)
    channel.send(batch([paper(i) for i in range(60)]))

    # The stand-in rejects what Slack rejects (blocks, section and text limits): all were accepted.
    assert len(slack.requests) == len(slack.messages) == 3
    titles: list[str] = []
    for sent in slack.messages:
        blocks = sent.payload["blocks"]
        assert len(blocks) <= 50
        assert all(len(text) <= 3000 for text in sections(sent.payload))
        assert len(sent.payload["text"]) + sum(map(len, sections(sent.payload))) <= 40_000
        titles += re.findall(r"\|(Speculative Decoding Study \d+)>", "".join(sections(sent.payload)))
    assert titles == [f"Speculative Decoding Study {i}" for i in range(60)]
    assert [m.payload["blocks"][0]["text"]["text"] for m in slack.messages] == [
        "efficient-llm: 60 new papers (1/3)", "efficient-llm: 60 new papers (2/3)",
        "efficient-llm: 60 new papers (3/3)",
    ]
    # At most one message a second to one Slack channel.
    arrivals = [m.at for m in slack.messages]
    assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(arrivals))


def test_huge_scraped_text_is_cut_to_section_and_message_limits(slack: SlackStandIn) -> None:
    big = "&<>" * 5000
    papers = [
        paper(i, title="T" * 2000 + big, abstract=big, authors=[big] * 40, organization=big,
              url="https://huggingface.co/papers/" + "x" * 5000)
        for i in range(30)
    ]
    channel = bot(slack, min_interval=0.0)
    channel.send(Batch("team", "r", [Alert(p, [big] * 10, i) for i, p in enumerate(papers)], "big"))

    assert len(slack.requests) == len(slack.messages) >= 2
    assert sum(len(sections(m.payload)) for m in slack.messages) == 30
    for sent in slack.messages:
        assert all(len(text) <= 3000 for text in sections(sent.payload))
        assert len(sent.payload["text"]) + sum(map(len, sections(sent.payload))) <= 40_000
        assert "<" not in json.dumps(sent.payload).replace("\\u003c", "<").replace("*<https", "")


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_an_ampersand_heavy_url_does_not_push_its_section_past_slacks_limit(slack: SlackStandIn) -> None:
    # 470 "&" are 2,350 characters once escaped: the section passed 3,000, Slack answered invalid_blocks
    # and the batch went dead, the good paper with it.
    heavy = paper(2, url="https://example.org/p?" + "&" * 470, title="T " * 300, abstract="A " * 1000)
    emoji = paper(3, title="😀" * 400, abstract="🧪 " * 1000, authors=["😀" * 80] * 5,
                  organization="😀" * 200, url="https://example.org/?" + "😀&" * 120)
    channel = bot(slack, min_interval=0.0)
    channel.send(Batch("team", "r", [Alert(p, ["😀 & <x>" * 100], i)
                                     for i, p in enumerate([paper(1), heavy, emoji])], "amp"))

    (sent,) = slack.messages
    texts = sections(sent.payload)
    assert len(texts) == 3 and "Speculative Decoding Study 1" in texts[0]
    assert all(utf16(text) <= 3000 for text in texts), [utf16(text) for text in texts]
    assert texts[1].startswith("*T T T")  # the title stays, unlinked: its link would not fit


@pytest.mark.parametrize("way", ["bot", "webhook"])
def test_scraped_text_is_escaped_and_pings_no_one(slack: SlackStandIn, way: str) -> None:
    nasty = paper(
        7, title=EVIL_TITLE, authors=["<@U0123> & <!here>"], organization="<!everyone>",
        abstract="@channel <!subteam^S1|team> <https://evil.example|click>",
        url="https://huggingface.co/papers/2401.10007?a=1&b=<x>|y",
    )
    channel = bot(slack) if way == "bot" else hook(slack)
    channel.send(Batch("team", "rule", [Alert(nasty, ["title has <!channel>"], 1)], "k"))

    (sent,) = slack.messages
    payload = json.loads(sent.raw)
    texts = [payload["text"], *sections(payload)]
    for text in texts:
        for mention in ("<!channel>", "<!here>", "<!everyone>", "<@U0123>", "<!subteam", "<http://evil"):
            assert mention not in text
        # The only link left is ours, to the paper, with its URL made harmless.
        assert re.findall(r"<([^>]*)>", text) in (
            [], ["https://huggingface.co/papers/2401.10007?a=1&amp;b=%3Cx%3E%7Cy|&lt;!channel&gt; see "
                 "&lt;http://evil∣this&gt;"]
        )
    section = sections(payload)[0]
    assert "&lt;@U0123&gt; &amp; &lt;!here&gt;" in section and "&lt;!everyone&gt;" in section
    assert payload["blocks"][1]["text"]["verbatim"] is True
    assert "&lt;!channel&gt; see &lt;http://evil|this&gt;" in payload["text"]


def test_a_short_429_is_waited_out_and_delivered_once(slack: SlackStandIn) -> None:
    slack.script(Answer(429, retry_after=1))
    channel = bot(slack)
    channel.send(batch([paper(1)]))

    assert len(slack.requests) == 2 and len(slack.messages) == 1
    assert slack.requests[1].at - slack.requests[0].at >= 1.0


def test_a_webhook_429_is_waited_out_and_delivered_once(slack: SlackStandIn) -> None:
    slack.script(Answer(429, retry_after=1))
    hook(slack).send(batch([paper(1)]))

    assert len(slack.requests) == 2 and len(slack.messages) == 1


@pytest.mark.parametrize(("asked", "wait"), [(1e12, 86400.0), (float("inf"), None), (float("nan"), None)])
def test_a_429_asking_forever_or_nonsense_cannot_stop_the_channel(
    slack: SlackStandIn, asked: float, wait: float | None
) -> None:
    slack.script(Answer(429, retry_after=asked))
    with pytest.raises(DeliveryError) as caught:
        bot(slack).send(batch([paper(1)]))

    assert not caught.value.permanent and caught.value.retry_after == wait


def test_a_long_429_goes_back_to_the_outbox_with_its_retry_after(slack: SlackStandIn) -> None:
    slack.script(Answer(429, retry_after=120))
    with pytest.raises(DeliveryError) as caught:
        bot(slack).send(batch([paper(1)]))

    assert not caught.value.permanent and caught.value.retry_after == 120
    assert len(slack.requests) == 1 and not slack.messages


def test_bad_token_is_a_permanent_error_that_does_not_show_the_token(slack: SlackStandIn) -> None:
    with pytest.raises(DeliveryError) as caught:
        bot(slack, token="xoxb-wrong-secret").send(batch([paper(1)]))

    assert caught.value.permanent and "invalid_auth" in str(caught.value)
    assert "xoxb-wrong-secret" not in str(caught.value)
    assert not slack.messages


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "account_inactive"])
def test_unusable_channel_or_account_is_permanent(slack: SlackStandIn, error: str) -> None:
    if error != "channel_not_found":
        slack.script(Answer(error=error))
    channel = bot(slack, channel="#nowhere" if error == "channel_not_found" else "#papers")
    with pytest.raises(DeliveryError) as caught:
        channel.send(batch([paper(1)]))

    assert caught.value.permanent and error in str(caught.value)


def test_server_error_is_transient(slack: SlackStandIn) -> None:
    slack.script(Answer(500))
    with pytest.raises(DeliveryError) as caught:
        bot(slack).send(batch([paper(1)]))

    assert not caught.value.permanent and "500" in str(caught.value)


@pytest.mark.parametrize(("answer", "permanent"), [
    (Answer(error="invalid_token"), True), (Answer(error="channel_not_found"), True), (Answer(500), False),
])
def test_webhook_errors_never_show_the_secret_url(
    slack: SlackStandIn, answer: Answer, permanent: bool
) -> None:
    slack.script(answer)
    with pytest.raises(DeliveryError) as caught:
        hook(slack).send(batch([paper(1)]))

    assert caught.value.permanent is permanent
    assert "not-a-real-secret" not in str(caught.value)


def test_unreachable_slack_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = SlackConfig(name="team", type="slack", token="xoxb-t", channel="#p", base_url=f"http://127.0.0.1:{port}/api/")
    with pytest.raises(DeliveryError) as caught:
        SlackChannel(cfg).send(batch([paper(1)]))

    assert not caught.value.permanent


def test_a_retry_after_a_failure_half_way_does_not_repeat_the_sent_messages(slack: SlackStandIn) -> None:
    channel = bot(slack, min_interval=0.0)
    big = batch([paper(i) for i in range(60)], key="half")
    slack.script(Answer(), Answer(500))
    with pytest.raises(DeliveryError):
        channel.send(big)
    assert len(slack.messages) == 1

    channel.send(big)

    heads = [m.payload["blocks"][0]["text"]["text"] for m in slack.messages]
    assert heads == [f"efficient-llm: 60 new papers ({i}/3)" for i in (1, 2, 3)]


def test_sends_to_one_channel_are_paced_a_second_apart(slack: SlackStandIn) -> None:
    channel = hook(slack)
    start = time.monotonic()
    channel.send(batch([paper(1)], key="a"))
    channel.send(batch([paper(2)], key="b"))

    first, second = slack.messages
    assert second.at - first.at >= 0.95 and first.at - start < 0.9


def test_two_channel_objects_posting_to_one_slack_channel_share_its_pace(slack: SlackStandIn) -> None:
    # As after a config reload, or with two config entries for one Slack channel.
    old, new, elsewhere = bot(slack), bot(slack), bot(slack, channel="C0PAPERS")
    old.send(batch([paper(1)], key="a"))
    new.send(batch([paper(2)], key="b"))
    elsewhere.send(batch([paper(3)], key="c"))

    first, second, third = slack.messages
    assert second.at - first.at >= 0.95  # the new object waited for the old one's message
    assert third.at - second.at < 0.9  # another channel has its own pace


def test_a_slack_digests_heading_counts_papers_not_the_rules_that_matched_them(
    slack: SlackStandIn, tmp_path: Path
) -> None:
    settings = Settings.model_validate({
        "monitor": {"database": f"sqlite:///{tmp_path}/db.sqlite"},
        "channels": [{"name": "team", "type": "slack", "webhook_url": slack.webhook_url, "digest": "08:00"}],
        "rules": [{"name": "llm", "notify": ["team"]}, {"name": "agents", "notify": ["team"]}],
    })
    eight = datetime(2026, 6, 12, 8, 0, tzinfo=UTC).timestamp()
    both, other = outbox_paper("LLM Agents"), outbox_paper("KV Cache Compression")
    store = open_store(settings.monitor.database)
    try:
        record(store, "llm", [both, other], ["team"], at=eight - 5000)
        record(store, "agents", [both], ["team"], at=eight - 4000)
        dispatcher = open_dispatcher(settings, store, clock=lambda: eight + 60)
        try:
            assert dispatcher.run_due().sent == 3  # (deliveries: one per rule and paper)
        finally:
            dispatcher.close()
    finally:
        store.close()
    (sent,) = slack.messages
    assert sent.payload["blocks"][0]["text"]["text"] == "daily digest: 2 new papers"
    assert len(sections(sent.payload)) == 3  # the paper listed under each of its rules


def test_a_slack_digest_is_one_message_a_day_rule_by_rule(slack: SlackStandIn, tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "monitor": {"database": f"sqlite:///{tmp_path}/db.sqlite"},
        "channels": [{"name": "team", "type": "slack", "webhook_url": slack.webhook_url,
                      "digest": "08:00", "timezone": "Europe/Berlin"}],
        "rules": [{"name": "llm", "notify": ["team"]}, {"name": "vision", "notify": ["team"]}],
    })
    eight = datetime(2026, 6, 12, 6, 0, tzinfo=UTC).timestamp()  # 08:00 in Berlin (summer time)
    store = open_store(settings.monitor.database)
    try:
        record(store, "llm", [outbox_paper("Speculative Decoding")], ["team"], at=eight - 5000,
               reasons=['keyword "speculative decoding" in title'])
        record(store, "vision", [outbox_paper("Diffusion Transformers")], ["team"], at=eight - 4000,
               reasons=['keyword "diffusion" in title'])
        record(store, "llm", [outbox_paper("KV Cache Compression")], ["team"], at=eight - 3000,
               reasons=['keyword "kv cache" in title'])
        clock = [eight - 60]
        dispatcher = open_dispatcher(settings, store, clock=lambda: clock[0])
        try:
            assert dispatcher.run_due().sent == 0 and slack.messages == []  # held until 08:00
            clock[0] = eight + 60
            assert dispatcher.run_due().sent == 3
        finally:
            dispatcher.close()
    finally:
        store.close()
    (sent,) = slack.messages
    assert sent.payload["blocks"][0]["text"]["text"] == "daily digest: 3 new papers"
    papers = sections(sent.payload)
    assert ["Speculative" in papers[0], "KV Cache" in papers[1], "Diffusion" in papers[2]] == [True] * 3
    assert '_Matched (llm):_ keyword "speculative decoding" in title' in papers[0]
    assert '_Matched (vision):_ keyword "diffusion" in title' in papers[2]


class _FirstPartOnly(SlackStandIn):
    """Confirms the first message, then holds the second until ``release`` and answers it with a 503
    (the daemon is killed meanwhile): of a batch in three parts, Slack has seen part 1 alone."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.arrived = 0
        super().__init__()

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        self.arrived += 1  # (one request at a time: the channel waits for each answer)
        if self.arrived == 2:
            self.held.set()
            self.release.wait(30)
            return 503, "text/html", b"gone", {}
        return super()._answer(path, headers, raw)


@pytest.mark.slow
def test_a_daemon_killed_after_part_one_of_a_batch_sends_the_other_parts_alone_after_restart(
    tmp_path: Path,
) -> None:
    """Slack confirmed part 1 of 3, then the daemon was killed before the batch was recorded sent:
    the next start sends parts 2 and 3, not part 1 again."""
    store = open_store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        record(store, "efficient-llm", [paper(i) for i in range(60)], ["team"])
    finally:
        store.close()
    with _FirstPartOnly() as slack:
        channels = (f'[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\n'
                    f'channel = "#papers"\nbase_url = "{slack.base_url}"\ntimeout = 60\n')
        port = free_port()
        config = write_config(tmp_path, port=port, sources="", channels=channels,
                              rules='[[rules]]\nname = "efficient-llm"\nnotify = ["team"]\n')
        first = Daemon(config, port)
        try:
            first.wait_up()
            wait_for(slack.held.is_set, 20, "part 2 to be on its way")
        finally:
            first.kill()  # SIGKILL: part 1 confirmed, the batch still "sending"
            slack.release.set()
        assert unsent(tmp_path) == 60

        again = Daemon(config, port, log_name="again.log")
        try:
            again.wait_up()
            wait_for(lambda: unsent(tmp_path) == 0, 30, "the batch to be sent")
        finally:
            code, _ = again.stop()
        assert code == 0, again.log_text()[-2000:]
        heads = [m.payload["blocks"][0]["text"]["text"] for m in slack.messages]
        titles = _titles(slack.messages)
    assert heads == [f"efficient-llm: 60 new papers ({i}/3)" for i in (1, 2, 3)]
    assert sorted(titles) == sorted(f"Speculative Decoding Study {i}" for i in range(60))


def _titles(messages: list[Any]) -> list[str]:
    return re.findall(r"\|(Speculative Decoding Study \d+)>",
                      "".join(text for m in messages for text in sections(m.payload)))


@pytest.mark.parametrize("failure", ["transient", "permanent"])
def test_the_parts_slack_confirmed_are_not_sent_again_by_the_next_dispatcher(
    slack: SlackStandIn, tmp_path: Path, failure: str
) -> None:
    """Part 2 of 3 fails. A dispatcher of its own (as after a restart) retries the batch from part 2;
    a batch that died there has part 1's alerts sent, and ``retry-dead`` sends the others alone."""
    settings = Settings.model_validate({
        "monitor": {"database": f"sqlite:///{tmp_path}/db.sqlite"},
        "channels": [{"name": "team", "type": "slack", "token": slack.token, "channel": "#papers",
                      "base_url": slack.base_url}],
        "rules": [{"name": "efficient-llm", "notify": ["team"]}],
    })
    store = open_store(settings.monitor.database)
    try:
        record(store, "efficient-llm", [paper(i) for i in range(60)], ["team"])
        slack.script(Answer(), Answer(500) if failure == "transient" else Answer(error="invalid_blocks"))
        with open_dispatcher(settings, store) as dispatcher:
            assert dispatcher.run_due().ok is False
        counts = store.delivery_counts(0.0, ["team"])["team"]
        if failure == "transient":
            assert (counts.failed, counts.sent_today) == (60, 0)
        else:
            assert (counts.dead, counts.sent_today) == (35, 25)
            assert store.requeue_dead(time.time(), "team") == 35
        with open_dispatcher(settings, store, clock=lambda: time.time() + 3600) as dispatcher:
            assert dispatcher.run_due().ok
        assert store.delivery_counts(0.0, ["team"])["team"].sent_today == 60
    finally:
        store.close()
    heads = [m.payload["blocks"][0]["text"]["text"] for m in slack.messages]
    if failure == "transient":
        assert heads == [f"efficient-llm: 60 new papers ({i}/3)" for i in (1, 2, 3)]
    else:
        assert heads == ["efficient-llm: 60 new papers (1/3)", "efficient-llm: 35 new papers (1/2)",
                         "efficient-llm: 35 new papers (2/2)"]
    assert sorted(_titles(slack.messages)) == sorted(f"Speculative Decoding Study {i}" for i in range(60))
