"""The exception tree: every error paper-monitor raises on purpose descends from MonitorError.

    MonitorError
    ├── ConfigError          bad configuration; carries one line per problem
    │   └── QuerySyntaxError a rule query that does not parse (with the column)
    ├── FetchError           a source could not be fetched (after retries)
    │   └── FetchInterrupted the daemon's stop cut a fetch short: no failure of the source
    ├── ParseError           content is not a page we can read, or yields no papers where it must
    ├── StoreError           the database failed or holds something we cannot read
    └── DeliveryError        a channel did not confirm a delivery (permanent or transient)

Third-party errors are wrapped where a stage ends: ``raise FetchError(...) from exc``.
"""

from __future__ import annotations

import math
import re

# The longest wait a peer's Retry-After may set on a delivery.
MAX_RETRY_AFTER = 86400.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _escaped(found: re.Match[str]) -> str:
    return found.group().encode("unicode_escape").decode("ascii")


class MonitorError(Exception):
    """Root of every error paper-monitor raises on purpose."""


class ConfigError(MonitorError):
    """Invalid configuration. ``problems`` holds one ``"<where>: <what>"`` line each."""

    def __init__(self, problems: list[str] | str) -> None:
        found = [problems] if isinstance(problems, str) else problems
        # A value quoted in a problem may hold a line break or a control character: shown escaped,
        # each problem stays one line.
        self.problems = [_CONTROL.sub(_escaped, problem) for problem in found]
        super().__init__("; ".join(self.problems))


class QuerySyntaxError(ConfigError):
    """A rule ``query`` that does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        self.message = message
        self.column = column
        super().__init__(f"column {column}: {message}")


class FetchError(MonitorError):
    """A source could not be fetched. ``status`` is the last HTTP status, if any."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class FetchInterrupted(FetchError):
    """The daemon's stop cut a fetch short (in a wait between tries): the source did not fail."""


class ParseError(MonitorError):
    """Content that is not a page we can read, or a page that yields no papers where it must."""


class StoreError(MonitorError):
    """The store failed, or holds data it cannot read."""


class DeliveryError(MonitorError):
    """A channel did not confirm a delivery.

    ``permanent`` errors (bad credentials, unknown channel, SMTP 5xx, webhook 4xx) go straight to
    dead; transient ones are retried, not before ``retry_after`` seconds when the peer said so
    (at most a day; a wait that is no number, ``nan`` or ``inf``, is no wait asked for).
    """

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        self.permanent = permanent
        if retry_after is not None:
            retry_after = min(max(retry_after, 0.0), MAX_RETRY_AFTER) if math.isfinite(retry_after) else None
        self.retry_after = retry_after
        super().__init__(message)
