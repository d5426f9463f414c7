"""Email channel against aiosmtpd, a real SMTP server on 127.0.0.1 started by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from monitor.channels.base import Alert, Batch
from monitor.channels.email import EmailChannel, SmtpTarget
from monitor.config import EmailConfig
from monitor.errors import ConfigError, DeliveryError
from monitor.models import Paper
from tests.helpers import free_port
from tests.smtp_support import Certs, Inbox, make_certs

Start = Callable[..., tuple[Inbox, int]]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A private CA and a certificate it signed for localhost / 127.0.0.1, made on the spot."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def smtp_server() -> Iterator[Start]:
    """Start aiosmtpd servers on 127.0.0.1 with the given SMTP options; all stopped afterwards."""
    controllers: list[Controller] = []

    def start(**options: Any) -> tuple[Inbox, int]:
        inbox = Inbox()
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return inbox, port

    yield start
    for controller in controllers:
        controller.stop()


def config(port: int, scheme: str = "smtp", **overrides: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "name": "me", "type": "email", "smtp_url": f"{scheme}://127.0.0.1:{port}",
        "from": "Paper Monitor <monitor@example.org>", "to": ["Me <me@example.org>", "you@example.org"],
        "timeout": 5.0,
    }
    values.update(overrides)
    return EmailConfig.model_validate(values)


def paper(i: int, **overrides: Any) -> Paper:
    values: dict[str, Any] = {
        "title": f"KV Cache Compression {i}", "source": "hf-json", "arxiv_id": f"2401.{20000 + i}",
        "abstract": "We compress the KV cache.", "authors": ["Ada Lovelace", "Alan Turing"],
        "organization": "Example Lab", "upvotes": 12,
        "url": f"https://huggingface.co/papers/2401.{20000 + i}",
    }
    values.update(overrides)
    return Paper.build(**values)


def batch(papers: list[Paper], rule: str = "efficient-llm", key: str = "k1") -> Batch:
    alerts = [Alert(p, ['keyword "kv cache" in abstract'], n, rule) for n, p in enumerate(papers)]
    return Batch("me", rule, alerts, key)


def send(cfg: EmailConfig, *batches: Batch, **kw: Any) -> EmailChannel:
    channel = EmailChannel(cfg, **kw)
    try:
        for b in batches:
            channel.send(b)
    finally:
        channel.close()
    return channel


def test_a_batch_arrives_as_plain_text_then_html_to_every_recipient(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    send(config(port), batch([paper(1), paper(2, authors=[f"Author {n}" for n in range(9)])]))

    (got,) = inbox.received
    assert got.mail_from == "monitor@example.org"
    assert got.rcpt_tos == ["me@example.org", "you@example.org"]
    msg = got.message
    assert msg["Subject"] == "[paper-monitor] efficient-llm: 2 new papers"
    assert msg["From"] == "Paper Monitor <monitor@example.org>"
    assert msg["To"] == "Me <me@example.org>, you@example.org"
    assert msg["Message-ID"].endswith("@example.org>") and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and rich.get_content_type() == "text/html"
    text = plain.get_content().replace("\r\n", "\n")
    assert "KV Cache Compression 1\nhttps://huggingface.co/papers/2401.20001\n" in text
    assert "Ada Lovelace, Alan Turing · Example Lab · 12 upvotes" in text
    assert "Author 0, Author 1, Author 2 et al. (9 authors)" in text
    assert 'Matched: keyword "kv cache" in abstract' in text
    page = rich.get_content()
    assert '<a href="https://huggingface.co/papers/2401.20002">KV Cache Compression 2</a>' in page
    assert "Matched:</i> keyword &quot;kv cache&quot; in abstract" in page


def test_one_paper_is_titled_by_the_paper(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    send(config(port), batch([paper(1)], rule="hot"))

    assert inbox.received[0].message["Subject"] == "[paper-monitor] hot: KV Cache Compression 1"


def test_a_title_cannot_inject_headers_or_recipients(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    nasty = paper(1, title="x\r\nBcc: evil@x", authors=["Eve\r\nTo: evil@x"], organization="Org\nCc: evil@x")
    send(config(port), batch([nasty], rule="rule\r\nBcc: evil@x"))

    (got,) = inbox.received
    assert got.rcpt_tos == ["me@example.org", "you@example.org"]
    msg = got.message
    assert msg["Subject"] == "[paper-monitor] rule Bcc: evil@x: x Bcc: evil@x"
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert msg.get_all("To") == ["Me <me@example.org>, you@example.org"]
    assert b"\nBcc:" not in got.content and b"\nCc:" not in got.content


def test_an_encoded_word_in_a_title_stays_text_and_adds_no_header(smtp_server: Start) -> None:
    # The email package decodes RFC 2047 words in a value it is given, CR and LF included.
    title = ("Attention =?us-ascii?q?=0D=0AFrom:_IT_Desk_<it@corp.example>=0D=0AContent-Type:_text/plain"
             "=0D=0A=0D=0AYour_password_expired.?= =?utf-8?b?AA==?=")
    inbox, port = smtp_server()
    send(config(port), batch([paper(1, title=title)], rule="hot"))

    (got,) = inbox.received
    msg = got.message
    assert msg.get_all("From") == ["Paper Monitor <monitor@example.org>"]
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"].replace("\u200b", "") == f"[paper-monitor] hot: {title}"
    assert b"\x00" not in got.content and b"\nContent-Type: text/plain\r\n\r\nYour" not in got.content
    assert "Your_password_expired" in msg.get_body(("plain",)).get_content()


def test_an_encoded_name_in_the_configs_from_is_the_operators_own(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    send(config(port, **{"from": "=?utf-8?q?J=C3=BCrgen?= <monitor@example.org>"}), batch([paper(1)]))
    assert inbox.received[0].message["From"] == "Jürgen <monitor@example.org>"


def test_scraped_text_is_html_escaped_and_only_http_links_are_made(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    nasty = paper(1, title="<script>alert(1)</script> & \"co\"", url="javascript:alert(1)",
                  abstract="<img src=x onerror=alert(1)>", authors=["<b>Bold</b>"])
    send(config(port), batch([nasty, paper(2, url='https://e.org/"><script>')]))

    plain, rich = inbox.received[0].message.iter_parts()
    page = rich.get_content()
    assert "<script>" not in page and "<img" not in page and "<b>Bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot;" in page
    assert "javascript:" not in page
    assert 'href="https://e.org/&quot;&gt;&lt;script&gt;"' in page
    # The plain-text part stays literal.
    assert "<script>alert(1)</script> & \"co\"" in plain.get_content().replace("\r\n", "\n")


@pytest.mark.parametrize(("reply", "permanent"), [
    ("451 4.3.0 Mailbox temporarily unavailable", False), ("550 5.7.1 Message rejected", True),
])
def test_smtp_4xx_is_transient_and_5xx_permanent(
    smtp_server: Start, reply: str, permanent: bool
) -> None:
    inbox, port = smtp_server()
    inbox.replies.append(reply)
    with pytest.raises(DeliveryError) as caught:
        send(config(port), batch([paper(1)]))

    assert caught.value.permanent is permanent
    assert reply.split()[0] in str(caught.value)
    assert not inbox.received


def test_after_a_refusal_the_next_send_goes_through(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    inbox.replies.append("451 4.3.0 try again later")
    channel = EmailChannel(config(port))
    with pytest.raises(DeliveryError):
        channel.send(batch([paper(1)]))
    channel.send(batch([paper(1)]))
    channel.close()

    assert len(inbox.received) == 1


def test_one_connection_serves_a_run_of_messages(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    channel = send(config(port), *[batch([paper(i)], key=f"k{i}") for i in range(5)])

    assert len(inbox.received) == 5
    assert len(inbox.peers) == 1 and channel.connections == 1
    assert inbox.quits == 1  # close() said goodbye


def test_without_reuse_every_message_opens_a_connection(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    send(config(port), *[batch([paper(i)], key=f"k{i}") for i in range(5)], idle_timeout=0)

    assert len(inbox.received) == 5 and len(inbox.peers) == 5 and inbox.quits == 5


def test_a_connection_the_server_dropped_is_reopened(smtp_server: Start) -> None:
    inbox, port = smtp_server(timeout=0.3)  # aiosmtpd hangs up on a client idle this long
    channel = EmailChannel(config(port))
    channel.send(batch([paper(1)], key="a"))
    time.sleep(0.6)
    channel.send(batch([paper(2)], key="b"))
    channel.close()

    assert len(inbox.received) == 2 and len(inbox.peers) == 2


def test_an_idle_connection_is_closed_after_the_idle_time(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    channel = EmailChannel(config(port), idle_timeout=0.2)
    channel.send(batch([paper(1)]))
    deadline = time.monotonic() + 5
    while inbox.quits == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert inbox.quits == 1
    channel.send(batch([paper(2)], key="k2"))
    channel.close()
    assert len(inbox.received) == 2 and len(inbox.peers) == 2


def test_starttls_with_an_untrusted_certificate_is_refused(
    smtp_server: Start, certs: Certs
) -> None:
    inbox, port = smtp_server(tls_context=certs.server_context(), require_starttls=True)
    with pytest.raises(DeliveryError) as caught:
        send(config(port), batch([paper(1)]))

    assert caught.value.permanent and "not trusted" in str(caught.value)
    assert not inbox.received


def test_starttls_with_a_trusted_ca_file_delivers_encrypted_and_logs_in(
    smtp_server: Start, certs: Certs
) -> None:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"monitor", b"s3cret")
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    inbox, port = smtp_server(tls_context=certs.server_context(), require_starttls=True,
                              authenticator=authenticate, auth_required=True)
    send(config(port, ca_file=str(certs.ca_file), username="monitor", password="s3cret"), batch([paper(1)]))
    with pytest.raises(DeliveryError) as caught:
        send(config(port, ca_file=str(certs.ca_file), username="monitor", password="wrong"),
             batch([paper(2)]))

    assert len(inbox.received) == 1 and inbox.received[0].tls
    assert caught.value.permanent and "535" in str(caught.value) and "wrong" not in str(caught.value)


def test_smtps_with_a_trusted_ca_file_delivers(smtp_server: Start, certs: Certs) -> None:
    inbox, port = smtp_server(ssl_context=certs.server_context())
    send(config(port, "smtps", ca_file=str(certs.ca_file)), batch([paper(1)]))
    with pytest.raises(DeliveryError) as caught:
        send(config(port, "smtps"), batch([paper(1)]))

    assert len(inbox.received) == 1 and caught.value.permanent


def test_plain_relay_and_loopback_without_starttls_deliver(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    send(config(port, "smtp+plain"), batch([paper(1)]))
    send(config(port, "smtp"), batch([paper(2)]))  # no STARTTLS offered: allowed on loopback only

    assert [r.tls for r in inbox.received] == [False, False]
    assert not SmtpTarget.parse("smtp://smtp.example.org:587").loopback
    assert SmtpTarget.parse("smtp://localhost").loopback and SmtpTarget.parse("smtp://[::1]:25").loopback
    with pytest.raises(ConfigError):
        SmtpTarget.parse("smtp://:25")


def test_an_unreachable_server_is_transient() -> None:
    with pytest.raises(DeliveryError) as caught:
        send(config(free_port()), batch([paper(1)]))

    assert not caught.value.permanent


def test_a_digest_groups_the_papers_by_rule(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    alerts = [
        Alert(paper(1), ["r1"], 1, "efficient-llm"), Alert(paper(2), ["r2"], 2, "hot"),
        Alert(paper(3), ["r3"], 3, "efficient-llm"),
    ]
    send(config(port, digest="08:00"), Batch("me", "digest", alerts, "digest-1"))

    msg = inbox.received[0].message
    assert msg["Subject"] == "[paper-monitor] daily digest: 3 new papers"
    plain, rich = msg.iter_parts()
    text = plain.get_content().replace("\r\n", "\n")
    first, second = text.index("efficient-llm: 2 new papers"), text.index("hot: 1 new paper")
    assert first < text.index("KV Cache Compression 1") < text.index("KV Cache Compression 3") < second
    assert second < text.index("KV Cache Compression 2")
    assert "<h3" in rich.get_content() and "hot: 1 new paper</h3>" in rich.get_content()


def test_a_digests_subject_counts_papers_not_the_rules_that_matched_them(smtp_server: Start) -> None:
    inbox, port = smtp_server()
    one, two = paper(1), paper(2)
    alerts = [Alert(one, ["r1"], 1, "llm"), Alert(one, ["r2"], 2, "agents"), Alert(two, ["r3"], 3, "llm")]
    send(config(port, digest="08:00"), Batch("me", "digest", alerts, "digest-1"))

    msg = inbox.received[0].message
    assert msg["Subject"] == "[paper-monitor] daily digest: 2 new papers"
    text = next(msg.iter_parts()).get_content()
    assert "llm: 2 new papers" in text and "agents: 1 new paper" in text  # each rule's own count
