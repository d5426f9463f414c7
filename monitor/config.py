"""The configuration: TOML validated by pydantic models, ``${VAR}`` filled from the environment.

``load_settings(path)`` returns a ``Settings`` or raises ``ConfigError`` listing every problem,
one ``"<where>: <what>"`` line each (``rules[2].notify: unknown channel "tem"``).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.config_check import cross_check, describe, interpolate, unset_in_channels, without_echoes
from monitor.config_values import (
    Count,
    Interval,
    Name,
    Size,
    Timeout,
    database_url,
    duration_or_number,
    email_address,
    http_url,
)
from monitor.errors import ConfigError
from monitor.redact import redact_url, redact_urls
from monitor.rule_files import read_rule_files, relocate
from monitor.toml_text import in_file_order, parse_toml

DEFAULT_CONFIG = Path("config/monitor.toml")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _forever_or_duration(value: Any) -> Any:
    return None if value == "forever" else duration_or_number(value)


def _off_or_duration(value: Any) -> Any:
    return None if value == "off" else duration_or_number(value)


class MonitorSection(_Model):
    database: str = "sqlite:///var/paper-monitor.db"
    feeds_dir: str = "var/feeds"
    user_agent: str | None = None
    # Sent deliveries older than this are deleted (each feed keeps its newest items; the matches
    # stay, so nothing is alerted again); "forever" keeps them all.
    keep_sent: Annotated[float | None, Field(gt=0), BeforeValidator(_forever_or_duration)] = 365 * 86400.0
    # More [[rules]], from these files (glob patterns, relative to the config file's directory):
    # one file a person or a team, say; the daemon reloads when one changes, comes or goes.
    rule_files: list[str] = Field(default_factory=list)

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return database_url(value)


class ServerSection(_Model):
    listen: str = "127.0.0.1:8080"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f'expected "host:port", got "{value}"')
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


Format = Literal["auto", "hf-json", "hf-html", "hf-text", "arxiv-rss", "arxiv-atom"]
# How arXiv's listings (RSS, Atom) announce a paper: submitted today, cross-listed from another category
# today, or a new version of an older paper (in this category, or cross-listed).
AnnounceType = Literal["new", "cross", "replace", "replace-cross"]
ANNOUNCE_TYPES: tuple[str, ...] = get_args(AnnounceType)


class SourceConfig(_Model):
    name: Name
    url: str
    every: Interval = 900.0
    format: Format = "auto"
    timeout: Timeout = 30.0
    # More tries after a failed one (5xx, 429, network).
    retries: Count = Field(default=3, ge=0, le=10)
    max_size: Size = Field(default=ByteSize(20 * 1024 * 1024), gt=0)
    # The arXiv listing items to take: a new version of a paper from months ago is not a new paper.
    announce_types: frozenset[AnnounceType] = frozenset({"new", "cross"})
    # After a good poll, read what the daemon missed (HF: the past days not read whole since, from
    # the API; arXiv: ``monitor.history``), at most this far back; "off": never.
    catch_up: Annotated[float | None, Field(gt=0), BeforeValidator(_off_or_duration)] = 7 * 86400.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("announce_types")
    @classmethod
    def _some_announce_type(cls, value: frozenset[str]) -> frozenset[str]:
        if not value:
            raise ValueError(f"give at least one of {', '.join(map(repr, ANNOUNCE_TYPES))}")
        return value


class _ChannelBase(_Model):
    name: Name


class _Digestible(_ChannelBase):
    """A channel that can send one message a day instead of one per batch."""

    digest: str | None = None  # "HH:MM" in ``timezone``: one message a day
    timezone: str = "UTC"

    @field_validator("digest")
    @classmethod
    def _hh_mm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f'expected "HH:MM", got "{value}"')
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown time zone "{value}"') from None
        return value


class SlackConfig(_Digestible):
    type: Literal["slack"]
    webhook_url: str | None = None
    token: str | None = None
    channel: str | None = None
    base_url: str = "https://slack.com/api/"  # the Web API; tests point it at a stand-in
    timeout: Timeout = 30.0

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value, secret=True)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackConfig:
        if bool(self.webhook_url) == bool(self.token):
            raise ValueError('give either webhook_url, or token with channel = "#name"')
        if self.token and not self.channel:
            raise ValueError('token needs channel = "#name"')
        return self


class EmailConfig(_Digestible):
    type: Literal["email"]
    smtp_url: str
    username: str | None = None
    password: str | None = None
    from_: str = Field(alias="from")
    to: list[Annotated[str, AfterValidator(email_address)]] = Field(min_length=1)
    ca_file: str | None = None  # trust this CA (a self-signed relay) besides the system's
    timeout: Timeout = 30.0

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: str) -> str:
        if not value.startswith(("smtp://", "smtps://", "smtp+plain://")):
            raise ValueError(f'expected smtp://, smtps:// or smtp+plain://, got "{redact_url(value)}"')
        if problem := _smtp_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("from_")
    @classmethod
    def _from_address(cls, value: str) -> str:
        return email_address(value)



def _smtp_problem(url: str) -> str | None:
    """What stops ``url`` from naming an SMTP server (no host, a port that is no number), if anything."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (it raises ValueError for a port that is not a number)
    except ValueError as exc:
        return f'not a valid URL: "{redact_url(url)}": {redact_urls(str(exc))}'
    return None if parts.hostname else f'no host in the URL "{redact_url(url)}"'


class RssConfig(_ChannelBase):
    type: Literal["rss"]
    title: str | None = None
    max_items: Count = Field(default=100, ge=1, le=10_000)
    token: str | None = None  # private feed: /feeds/<name>.xml?token=... or /feeds/<token>/<name>.xml


class WebhookConfig(_ChannelBase):
    type: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout = 30.0
    # Standard Webhooks signing (webhook-id, webhook-timestamp, webhook-signature): "whsec_<base64>".
    signing_secret: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value, secret=True)  # its path may be its key (Discord, Teams)

    @field_validator("signing_secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not value.startswith("whsec_") or len(key) < 24:
            # Never echo the value: it is a secret.
            raise ValueError('expected "whsec_" and then at least 24 bytes in base64 (make one with:'
                             ' echo "whsec_$(openssl rand -base64 32)")')
        return value


class ConsoleConfig(_ChannelBase):
    type: Literal["console"]


ChannelConfig = Annotated[
    SlackConfig | EmailConfig | RssConfig | WebhookConfig | ConsoleConfig,
    Field(discriminator="type"),
]


class RuleConfig(_Model):
    name: Name
    keywords: list[str] = Field(default_factory=list)
    authors: list[str] = Field(default_factory=list)
    organizations: list[str] = Field(default_factory=list)
    query: str | None = None
    exclude: list[str] = Field(default_factory=list)
    min_upvotes: Count | None = Field(default=None, ge=0)
    notify: list[str] = Field(default_factory=list)
    # A rule that is off is checked like any other but matches nothing in polls: a draft, tried
    # with `backtest --rule NAME` or `match --rule NAME` before it is switched on.
    enabled: bool = True
    # Where the rule is written, for problems found when it is compiled: "rules.d/a.toml: rules[0]"
    # for a rule of a rule file; None for the config's own (``rules[N]``).
    _where: str | None = PrivateAttr(default=None)

    def location(self, number: int) -> str:
        """Where the rule is written, ``number`` being its place in the config's list of rules."""
        return self._written() or f"rules[{number}]"

    @property
    def file(self) -> str | None:
        """The rule file the rule is written in; None for the config's own rules."""
        where = self._written()
        return where.rpartition(": rules[")[0] if where else None

    def _written(self) -> str | None:
        """``_where``, read from pydantic's dict of private attributes: as ``self._where`` it went
        through pydantic's ``__getattr__``, 8 us a read (1.7 s for check-config's count of the rules
        of each rule file, with 100,000 rules)."""
        private = self.__pydantic_private__
        return private.get("_where") if private else None

    @field_validator("query")
    @classmethod
    def _query_parses(cls, value: str | None) -> str | None:
        if value is not None:
            from monitor.errors import QuerySyntaxError
            from monitor.match.query import parse_query

            try:
                parse_query(value)
            except QuerySyntaxError as exc:
                raise ValueError(f"column {exc.column}: {exc.message}") from None
        return value

    @field_validator("keywords", "authors", "organizations", "exclude")
    @classmethod
    def _no_blank_terms(cls, value: list[str]) -> list[str]:
        if not all(map(str.strip, value)):  # (a generator's frames: 0.4 s of 100,000 rules)
            raise ValueError("empty term")
        return value


class Settings(_Model):
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    server: ServerSection = Field(default_factory=ServerSection)
    sources: list[SourceConfig] = Field(default_factory=list)
    channels: list[ChannelConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    # Per channel, its variables not set, when read without the channels' secrets (``load_settings``).
    _unset: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    @property
    def active_rules(self) -> list[RuleConfig]:
        """The rules that are on: those polls match papers against."""
        return [rule for rule in self.rules if rule.enabled]

    @cached_property
    def rules_by_channel(self) -> dict[str, frozenset[str]]:
        """Per channel, the rules that notify it, on or off (each is a feed of an rss channel)."""
        found: dict[str, set[str]] = {}
        for rule in self.rules:
            for channel in rule.notify:
                found.setdefault(channel, set()).add(rule.name)
        return {channel: frozenset(names) for channel, names in found.items()}

    def channel(self, name: str) -> ChannelConfig:
        """The channel called ``name``; ``KeyError`` if there is none."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)

    def unset_variables(self, channel: str) -> list[str]:
        """The problems of ``channel``'s variables not set (a config read without the channels'
        secrets): the channel cannot send; [] when it can."""
        return list(self._unset.get(channel, []))


def default_config_path() -> Path:
    """``$PAPER_MONITOR_CONFIG``, else ``./config/monitor.toml``."""
    return Path(os.environ.get("PAPER_MONITOR_CONFIG") or DEFAULT_CONFIG)


def load_settings(
    path: Path | str, env: Mapping[str, str] | None = None, *, channel_secrets: bool = True,
    rules: bool = True,
) -> Settings:
    """Read, interpolate and validate a config file; ``ConfigError`` lists every problem.
    ``channel_secrets=False`` (see ``parse_settings``) is for the commands that send nothing;
    ``rules=False`` for those that read no rule (status, retry-dead, discard, copy-store)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_settings(data, env=os.environ if env is None else env, base=path.parent,
                          channel_secrets=channel_secrets, rules=rules)


def parse_settings(
    text: str | bytes, env: Mapping[str, str], base: Path | None = None, *, channel_secrets: bool = True,
    rules: bool = True,
) -> Settings:
    """Validate the text (or bytes) of a config file (and of its ``rule_files``, relative to
    ``base``, the file's directory); ``ConfigError`` lists every problem, each saying where it is.

    ``channel_secrets=False``: a ``${NAME}`` not set within a ``[[channels]]`` table (a token, a
    password, a webhook URL) is no problem, nor are the checks it fails there: ``status``, ``why``...
    run by an operator without the service's environment. Such a channel keeps its name and type,
    its other values as written, unchecked (``Settings.unset_variables``); it can send nothing.

    ``rules=False``: the [[rules]] tables are left unread (``Settings.rules`` is empty), and so are
    the rule files: 100,000 rules took ``status`` 12 s to read and check, for nothing it shows. A
    rule's mistake is then no problem here (check-config, the daemon and the commands that match
    tell it)."""
    raw = parse_toml(text.encode() if isinstance(text, str) else text)
    if not rules:
        raw = {key: value for key, value in raw.items() if key != "rules"}
        if isinstance(raw.get("monitor"), dict):
            raw["monitor"] = {key: value for key, value in raw["monitor"].items() if key != "rule_files"}
    problems: list[str] = []
    data = interpolate(raw, env, (), problems)
    unset: dict[int, list[str]] = {} if channel_secrets else unset_in_channels(problems)
    let_go = {problem for told in unset.values() for problem in told}
    own = data.get("rules") if isinstance(data.get("rules"), list) else []
    where = [f"rules[{i}]" for i in range(len(own))]
    more = read_rule_files(data, base or Path.cwd(), partial(interpolate, env=env), problems)
    if more and isinstance(data.get("rules", []), list):  # else the schema says what is wrong
        data["rules"] = [*own, *(rule for _, rule in more)]
        where += [place for place, _ in more]
    problems += [relocate(problem, where) for problem in cross_check(data)]
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        schema = [relocate(describe(error), where) for error in exc.errors()]
        told = without_echoes(schema + problems)
        if (left := [problem for problem in told if problem not in let_go]) or not unset:
            raise ConfigError(in_file_order(left, raw)) from None
        settings = _unchecked_channels(data, unset, told)  # their unset values failed the checks
    if left := [problem for problem in without_echoes(problems) if problem not in let_go]:
        raise ConfigError(in_file_order(left, raw))
    settings._unset = {_channel_name(data, i): told for i, told in unset.items()}
    for rule, place in zip(settings.rules, where, strict=True):
        if not place.startswith("rules[") and rule.__pydantic_private__ is not None:
            rule.__pydantic_private__["_where"] = place  # (as rule._where = place, 10 us a rule)
    return settings


_CHANNEL_MODELS: dict[str, type[_ChannelBase]] = {
    "slack": SlackConfig, "email": EmailConfig, "rss": RssConfig, "webhook": WebhookConfig,
    "console": ConsoleConfig,
}


def _channel_name(data: Mapping[str, Any], index: int) -> str:
    return str(data["channels"][index].get("name"))


def _unchecked_channels(data: dict[str, Any], unset: Mapping[int, list[str]], told: list[str]) -> Settings:
    """The settings of ``data`` with the channels at ``unset`` taken as written (values not set
    included), unchecked; ``ConfigError`` (``told``) when one has no type to take it as."""
    channels = list(data["channels"])
    for index in unset:
        model = _CHANNEL_MODELS.get(str(channels[index].get("type")))
        if model is None:
            raise ConfigError(told)
        channels[index] = model.model_construct(**channels[index])
    try:
        return Settings.model_validate({**data, "channels": channels})
    except ValidationError:
        raise ConfigError(told) from None
