"""Email channel against aiosmtpd, a real SMTP server on 127.0.0.1 started by the tests."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from monitor.channels.base import Alert, Batch
from monitor.channels.email import EmailChannel, SmtpTarget
from monitor.config import EmailConfig
from monitor.errors import DeliveryError
from monitor.models import Paper

cryptography = pytest.importorskip("cryptography")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps what it accepts; ``replies`` scripts the answers to DATA."""

    received: list[Received] = field(default_factory=list)
    replies: deque[str] = field(default_factory=deque)
    peers: set[Any] = field(default_factory=set)  # one (address, port) per TCP connection that said EHLO
    quits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.peers.add(session.peer)
        return responses

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.quits += 1
        return "221 Bye"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            reply = self.replies.popleft() if self.replies else "250 Message accepted for delivery"
            if reply.startswith("250"):
                self.received.append(Received(
                    envelope.mail_from, list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                    session.ssl is not None,
                ))
        return reply


Start = Callable[..., tuple[Inbox, int]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@dataclass(frozen=True)
class Certs:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A private CA and a certificate it signed for localhost / 127.0.0.1, made on the spot."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    where = tmp_path_factory.mktemp("certs")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paper-monitor test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (where / "ca.pem").write_bytes(ca.public_bytes(pem))
    (where / "cert.pem").write_bytes(cert.public_bytes(pem))
    (where / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return Certs(where / "ca.pem", where / "cert.pem", where / "key.pem")


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
