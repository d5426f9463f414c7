"""The values a config holds, each as a validated type: durations (``30s``, ``1h30m``), sizes, http(s)
URLs, database URLs, email addresses, names, whole numbers. Each says what is wrong in one line,
without showing a secret."""

from __future__ import annotations

import re
from email.utils import getaddresses
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, BeforeValidator, ByteSize, Field

from monitor.redact import redact_url, redact_urls

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
# user@host, or a local mailbox ("alice") that a relay on the same machine delivers.
_ADDRESS = re.compile(r"[^@\s<>,]+(?:@[^@\s<>,]+)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# The longest duration taken: longer ones are typos, and past the calendar's range as dates.
MAX_DURATION = 100 * 365 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``15m``, ``1h``, ``1d`` or ``1h30m``."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact.replace(" ", ""):
        raise ValueError(f'not a duration: "{text}" (use e.g. 30s, 15m, 1h, 1d)')
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f'duration must be positive: "{text}"')
    return _not_too_long(seconds, f'"{text}"')


def _not_too_long(seconds: float, shown: str) -> float:
    if seconds > MAX_DURATION:
        raise ValueError(f"duration too long: {shown} (at most 100 years)")
    return seconds


def http_url(value: str, secret: bool = False) -> str:
    """``value`` if it is an http(s) URL with a host; ValueError saying what is wrong if not. The
    URL is shown without its password or secret parameters; a ``secret`` one (a Slack webhook's
    URL is its key) by its scheme alone."""
    if secret:
        scheme, sep, _ = value.partition("://")
        shown = f'"{scheme}://..." (the rest not shown: it may be secret)' if sep else "a value without http(s)://"
    else:
        shown = f'"{redact_url(value)}"'
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {shown}")
    try:
        host = httpx.URL(value).host
    except httpx.InvalidURL as exc:
        why = "" if secret else f": {redact_urls(str(exc))}"
        raise ValueError(f"not a valid URL: {shown}{why}") from None
    if not host:
        raise ValueError(f"no host in the URL {shown}")
    return value


def database_url(value: str) -> str:
    """``value`` if SQLAlchemy reads it as a SQLite or PostgreSQL URL; ValueError if not."""
    import sqlalchemy as sa

    shown = redact_url(value)
    try:
        backend = sa.make_url(value).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValueError(f'not a database URL: "{shown}" (e.g. sqlite:///var/paper-monitor.db or '
                         "postgresql+psycopg://user@host/db)") from None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f'unsupported database "{backend}" in "{shown}" (sqlite or postgresql)')
    return value


def email_address(value: str) -> str:
    """``value`` if it is one address, bare or with a name (``Paper Monitor <monitor@example.org>``)."""
    found = getaddresses([value])
    bare = value.strip()
    if len(found) != 1 or not _ADDRESS.fullmatch(found[0][1]) or ("<" not in bare and bare != found[0][1]):
        raise ValueError(f'not an email address: "{value}" (e.g. "Paper Monitor <monitor@example.org>")')
    return value


def plain_name(value: str) -> str:
    """``value`` if it is a name a person can tell apart: something, without spaces around it or
    control characters in it (" a" and "a" would be two rules that read the same)."""
    if not value.strip() or value != value.strip() or not value.isprintable():
        raise ValueError(f"a name with spaces around it, or nothing but spaces, or a control character: "
                         f"{value!r}")
    return value


Name = Annotated[str, AfterValidator(plain_name)]


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {str(value).lower()}")
    return value


# A whole number, as TOML writes it or as "${NAME}" gives it ("10"); TOML's true is no 1.
Count = Annotated[int, BeforeValidator(_not_a_bool)]


def duration_or_number(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):  # TOML's true would pass for 1 second
        raise ValueError(f"not a duration: {str(value).lower()} (use e.g. 30s, 15m, 1h, 1d)")
    if isinstance(value, int | float):
        return _not_too_long(value, str(value))
    return value


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # TOML's true would pass for 1 byte
        raise ValueError(f"not a size: {str(value).lower()} (use e.g. 20MiB, 500kB, or a number of bytes)")
    return value


# Bytes, written as a number or a size string ("20MiB", "500kB").
Size = Annotated[ByteSize, BeforeValidator(_not_bool)]
# Seconds, written as a number or a duration string ("30s", "15m").
Duration = Annotated[float, Field(gt=0), BeforeValidator(duration_or_number)]


def _at_least(minimum: float, shown: str) -> AfterValidator:
    def check(seconds: float) -> float:
        if seconds < minimum:
            raise ValueError(f"at least {shown}, got {seconds * 1000:g}ms")
        return seconds

    return AfterValidator(check)


# A poll at most once a second: a shorter interval is a typo ("1ms"), and no site takes it kindly.
Interval = Annotated[Duration, _at_least(1.0, "1s")]
# A network timeout under 100 ms fails every request (a typo: "0.001ms").
Timeout = Annotated[Duration, _at_least(0.1, "100ms")]
