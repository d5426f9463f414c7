"""Email: one message per batch over SMTP (STARTTLS, SMTPS, or plain to a local relay), one
connection kept open for a run of messages. SMTP 4xx is a transient failure, 5xx a permanent one.
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

from monitor.channels.base import Batch
from monitor.channels.email_body import addresses, compose
from monitor.config import EmailConfig
from monitor.errors import ConfigError, DeliveryError

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "smtp+plain": 25}


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect, from ``smtp_url``."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """``ConfigError`` when the URL names no host or port we can use (never echoing the URL)."""
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
        except ValueError as exc:
            raise ConfigError(f"smtp_url: {exc}") from None
        if scheme not in _DEFAULT_PORTS or not host:
            raise ConfigError(f'smtp_url: expected {scheme or "smtp"}://host[:port]')
        return cls(scheme, host, port or _DEFAULT_PORTS[scheme])

    @property
    def loopback(self) -> bool:
        """Mail that never leaves this machine may skip TLS."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class EmailChannel:
    """An email destination. The SMTP connection stays open ``idle_timeout`` seconds after a send,
    so a run of batches goes over one connection; a dropped connection is reopened once.
    """

    def __init__(self, cfg: EmailConfig, *, idle_timeout: float = 30.0) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.target = SmtpTarget.parse(cfg.smtp_url)
        self.idle_timeout = idle_timeout
        self.connections = 0  # opened so far; tests and the benchmark look at it
        self._sender = (addresses([cfg.from_]) or [""])[0]
        self._recipients = addresses(cfg.to)
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._generation = 0
        self._local_name: str | None = None
        self._context: ssl.SSLContext | None = None  # built once: loading the system CAs takes ~0.1 s

    def send(self, batch: Batch) -> None:
        """Send the batch as one message; returns once the server accepted it (250 after DATA)."""
        if not batch.alerts:
            return
        if not self._sender or not self._recipients:
            raise DeliveryError("email: no usable from/to address", permanent=True)
        msg = compose(self.cfg, batch)
        with self._lock:
            self._generation += 1
            if self._timer is not None:
                self._timer.cancel()
            try:
                self._deliver(msg)
            except BaseException:
                self._drop()
                raise
            if self.idle_timeout > 0:
                self._timer = threading.Timer(self.idle_timeout, self._close_idle, (self._generation,))
                self._timer.daemon = True
                self._timer.start()
            else:
                self._quit()

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        with self._lock:
            self._generation += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._quit()

    def _deliver(self, msg: EmailMessage) -> None:
        reused = self._conn is not None
        try:
            self._send_once(msg)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            if not reused:
                raise _delivery_error(exc) from exc
            # The server closed the idle connection (or it broke): open a new one, once.
            log.debug("email %s: connection dropped, reconnecting", self.name)
            self._drop()
            try:
                self._send_once(msg)
            except (smtplib.SMTPException, OSError) as again:
                raise _delivery_error(again) from again
        except smtplib.SMTPResponseException as exc:
            if reused and exc.smtp_code == 421:  # "closing the channel": a fresh connection may do
                self._drop()
                try:
                    self._send_once(msg)
                except (smtplib.SMTPException, OSError) as again:
                    raise _delivery_error(again) from again
            else:
                raise _delivery_error(exc) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise _delivery_error(exc) from exc

    def _send_once(self, msg: EmailMessage) -> None:
        if self._conn is None:
            self._conn = self._connect()
        refused = self._conn.send_message(msg, self._sender, self._recipients)
        if refused:
            # Some recipients took it: resending would duplicate it for them, so it counts as sent.
            log.warning("email %s: %d of %d recipients refused the message: %s", self.name,
                        len(refused), len(self._recipients), sorted(refused))

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        if self._local_name is None:
            self._local_name = socket.getfqdn()
        context = self._tls_context() if t.scheme in ("smtp", "smtps") else None
        conn: smtplib.SMTP
        if t.scheme == "smtps":
            conn = smtplib.SMTP_SSL(t.host, t.port, local_hostname=self._local_name,
                                    timeout=self.cfg.timeout, context=context)
        else:
            conn = smtplib.SMTP(t.host, t.port, local_hostname=self._local_name, timeout=self.cfg.timeout)
        self.connections += 1
        try:
            conn.ehlo()
            encrypted = t.scheme == "smtps"
            if t.scheme == "smtp":
                if conn.has_extn("starttls"):
                    conn.starttls(context=context)
                    conn.ehlo()
                    encrypted = True
                elif not t.loopback:
                    raise DeliveryError(
                        f"email: {t.host} does not offer STARTTLS; refusing to send in clear text "
                        "(use smtps://, or smtp+plain:// for a trusted local relay)", permanent=True)
            if self.cfg.username and self.cfg.password:
                if not encrypted and not t.loopback:
                    raise DeliveryError(f"email: refusing to send the password to {t.host} unencrypted",
                                        permanent=True)
                conn.login(self.cfg.username, self.cfg.password)
        except BaseException:
            conn.close()
            raise
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is not None:
            return self._context
        context = ssl.create_default_context()
        if self.cfg.ca_file:
            try:
                context.load_verify_locations(cafile=self.cfg.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DeliveryError(f"email: cannot read ca_file {self.cfg.ca_file}: {exc}",
                                    permanent=True) from exc
        self._context = context
        return context

    def _close_idle(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._quit()

    def _quit(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def _drop(self) -> None:
        """Forget a connection in an unknown state without talking to the server."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _delivery_error(exc: BaseException) -> DeliveryError:
    """SMTP 5xx and unusable TLS are permanent; 4xx, timeouts and dropped connections transient."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        reasons = "; ".join(f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in exc.recipients.items())
        return DeliveryError(f"email: every recipient refused: {reasons}",
                             permanent=all(500 <= c < 600 for c in codes))
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        what = f"email: server said {code} {_text(exc.smtp_error)}"
        return DeliveryError(what, permanent=500 <= code < 600)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"email: {exc}", permanent=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"email: the server's TLS certificate is not trusted ({exc.verify_message}); "
            "set ca_file to trust a private CA", permanent=True)
    if isinstance(exc, TimeoutError | socket.timeout):
        return DeliveryError("email: the SMTP server timed out")
    return DeliveryError(f"email: {type(exc).__name__}: {exc}")


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:300]
