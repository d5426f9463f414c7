"""The configuration: defaults, examples, env interpolation, and one clear line per problem."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from monitor.config import (
    ConsoleConfig,
    EmailConfig,
    RssConfig,
    Settings,
    SlackConfig,
    WebhookConfig,
    load_settings,
    parse_settings,
)
from monitor.config_values import parse_duration
from monitor.errors import ConfigError
from monitor.toml_text import beside_other_threads, parse_toml
from tests.helpers import REPO

EXAMPLE_ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
    "SMTP_USER": "u",
    "SMTP_PASSWORD": "p",
    "WEBHOOK_TOKEN": "t",
    "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "FEED_TOKEN": "f",
}

MINIMAL = """
[[sources]]
name = "hf"
url = "http://127.0.0.1:9/api/daily_papers"

[[channels]]
name = "team"
type = "console"

[[rules]]
name = "r"
keywords = ["kv cache"]
notify = ["team"]
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env=env or {})
    return caught.value.problems


def test_default_config_loads_with_no_environment() -> None:
    settings = load_settings(REPO / "config" / "monitor.toml", env={})
    assert [s.name for s in settings.sources] == ["hf-daily"]
    assert settings.sources[0].url == "https://huggingface.co/api/daily_papers"
    assert settings.sources[0].every == 900
    assert {c.type for c in settings.channels} == {"console", "rss"}
    assert settings.monitor.database.startswith("sqlite:///")
    assert settings.rules, "the default config shows example rules"


@pytest.mark.parametrize("path", sorted((REPO / "config" / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    settings = load_settings(path, env=EXAMPLE_ENV)
    assert settings.rules and settings.channels and settings.sources


def test_minimal_config_fills_defaults() -> None:
    settings = parse_settings(MINIMAL, env={})
    assert settings.server.listen == "127.0.0.1:8080"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.sources[0].every == 900
    assert settings.sources[0].format == "auto"
    assert settings.rules[0].notify == ["team"]


def test_environment_variables_are_interpolated() -> None:
    text = MINIMAL + '\n[[channels]]\nname = "s"\ntype = "slack"\nwebhook_url = "${HOOK}"\n'
    settings = parse_settings(text, env={"HOOK": "https://hooks.example/abc"})
    slack = settings.channel("s")
    assert isinstance(slack, SlackConfig) and slack.webhook_url == "https://hooks.example/abc"


def test_missing_environment_variable_names_it_and_where() -> None:
    text = MINIMAL + '\n[[channels]]\nname = "s"\ntype = "slack"\nwebhook_url = "${SLACK_HOOK}"\n'
    assert problems_of(text) == ["channels[1].webhook_url: environment variable SLACK_HOOK is not set"]


@pytest.mark.parametrize(("text", "expected"), [
    (MINIMAL.replace('"http://127.0.0.1:9/api/daily_papers"', '"${NOPE_URL}"'),
     ["sources[0].url: environment variable NOPE_URL is not set"]),
    (MINIMAL + '\n[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "https://example.org/h"\n'
     'signing_secret = "${NOPE_SECRET}"\n',
     ["channels[1].signing_secret: environment variable NOPE_SECRET is not set"]),
    (MINIMAL.replace('notify = ["team"]', 'notify = ["${NOPE_CHANNEL}"]'),
     ["rules[0].notify[0]: environment variable NOPE_CHANNEL is not set"]),
])
def test_a_missing_variable_is_told_once_not_again_as_a_bad_value(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_the_webhook_example_without_its_environment_tells_only_the_missing_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(REPO / "config" / "examples" / "webhook.toml", env={})
    assert caught.value.problems == [
        "channels[0].headers.Authorization: environment variable WEBHOOK_TOKEN is not set",
        "channels[0].signing_secret: environment variable WEBHOOK_SECRET is not set",
        "channels[1].token: environment variable FEED_TOKEN is not set",
    ]


SECRET_CHANNELS = MINIMAL + """
[[channels]]
name = "hook"
type = "webhook"
url = "${HOOK_URL}"
signing_secret = "${HOOK_SECRET}"

[[channels]]
name = "me"
type = "email"
smtp_url = "smtp://smtp.example.org:587"
username = "monitor"
password = "${SMTP_PASSWORD}"
from = "monitor@example.org"
to = ["me@example.org"]
"""
SECRETS_UNSET = [
    "channels[1].url: environment variable HOOK_URL is not set",
    "channels[1].signing_secret: environment variable HOOK_SECRET is not set",
    "channels[2].password: environment variable SMTP_PASSWORD is not set",
]


def test_without_the_channels_secrets_their_unset_variables_are_let_go_and_such_a_channel_cannot_send(
    tmp_path: Path,
) -> None:
    from monitor.channels import build_channel
    from monitor.store import open_store

    assert problems_of(SECRET_CHANNELS) == SECRETS_UNSET  # (as run, once, test-channel read it)
    settings = parse_settings(SECRET_CHANNELS, env={}, channel_secrets=False)  # (as status reads it)
    assert [(c.name, c.type) for c in settings.channels] == [("team", "console"), ("hook", "webhook"),
                                                             ("me", "email")]
    assert settings.rules[0].notify == ["team"] and settings.sources[0].name == "hf"
    store = open_store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        for name, told in (("hook", SECRETS_UNSET[:2]), ("me", SECRETS_UNSET[2:])):
            assert settings.unset_variables(name) == told
            with pytest.raises(ConfigError) as caught:
                build_channel(settings.channel(name), settings, store)
            assert caught.value.problems == told
        build_channel(settings.channel("team"), settings, store).close()
    finally:
        store.close()


@pytest.mark.parametrize(("text", "expected"), [
    (SECRET_CHANNELS.replace("[[sources]]", '[monitor]\ndatabase = "${DATABASE_URL}"\n\n[[sources]]'),
     ["monitor.database: environment variable DATABASE_URL is not set"]),
    (SECRET_CHANNELS.replace('"http://127.0.0.1:9/api/daily_papers"', '"${NOPE_URL}"'),
     ["sources[0].url: environment variable NOPE_URL is not set"]),
    (SECRET_CHANNELS.replace('"kv cache"', '"${TOPIC}"'),
     ["rules[0].keywords[0]: environment variable TOPIC is not set"]),
    (SECRET_CHANNELS.replace('password = "${SMTP_PASSWORD}"', 'password = "${SMTP_PASSWORD}"\npasword = ""'),
     ["channels[2].pasword: unknown key"]),
    (SECRET_CHANNELS.replace('url = "${HOOK_URL}"', 'url = "${HOOK_URL}"\ntimeout = "soon"'),
     ['channels[1].timeout: not a duration: "soon" (use e.g. 30s, 15m, 1h, 1d)']),
])
def test_without_the_channels_secrets_other_unset_variables_and_problems_are_still_told(
    text: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env={}, channel_secrets=False)
    assert caught.value.problems == expected


def test_unknown_channel_in_notify() -> None:
    text = MINIMAL.replace('notify = ["team"]', 'notify = ["tem"]')
    assert problems_of(text) == ['rules[0].notify: unknown channel "tem"']


def test_every_problem_is_reported_at_once() -> None:
    text = """
[monitor]
databse = "sqlite:///x.db"

[[sources]]
name = "hf"
url = "ftp://example.org"
every = "soon"

[[channels]]
name = "a"
type = "pager"

[[channels]]
name = "b"
type = "email"
smtp_url = "smtp://x:25"
from = "m@x"

[[rules]]
name = "r"
keywords = ["x"]
min_upvotes = -1
notify = ["b"]
"""
    found = problems_of(text)
    assert "monitor.databse: unknown key" in found
    assert 'sources[0].url: expected an http(s) URL, got "ftp://example.org"' in found
    assert any(p.startswith('sources[0].every: not a duration: "soon"') for p in found)
    assert "channels[0].type: must be one of slack, email, rss, webhook, console" in found
    assert "channels[1].to: required key is missing" in found
    assert any(p.startswith("rules[0].min_upvotes:") for p in found)
    assert len(found) == 6, found


def test_slack_needs_exactly_one_way_in() -> None:
    both = MINIMAL + '\n[[channels]]\nname = "s"\ntype = "slack"\nwebhook_url = "https://x"\ntoken = "y"\n'
    neither = MINIMAL + '\n[[channels]]\nname = "s"\ntype = "slack"\n'
    no_channel = MINIMAL + '\n[[channels]]\nname = "s"\ntype = "slack"\ntoken = "y"\n'
    assert problems_of(both) == ['channels[1]: give either webhook_url, or token with channel = "#name"']
    assert problems_of(neither) == ['channels[1]: give either webhook_url, or token with channel = "#name"']
    assert problems_of(no_channel) == ['channels[1]: token needs channel = "#name"']


def test_duplicate_names_are_errors() -> None:
    text = MINIMAL + '\n[[rules]]\nname = "r"\nmin_upvotes = 3\n'
    assert problems_of(text) == ['rules[1].name: duplicate name "r"']


def test_names_that_read_alike_or_as_nothing_are_errors() -> None:
    text = MINIMAL + '\n[[rules]]\nname = " r"\nmin_upvotes = 3\n\n[[rules]]\nname = "  "\nmin_upvotes = 3\n'
    assert [problem.split(":")[0] for problem in problems_of(text)] == ["rules[1].name", "rules[2].name"]
    assert "a name with spaces around it" in problems_of(text)[0]
    tab = MINIMAL + '\n[[sources]]\nname = "hf\\tx"\nurl = "https://huggingface.co/api/daily_papers"\n'
    assert [problem.split(":")[0] for problem in problems_of(tab)] == ["sources[1].name"]


def test_email_checks_scheme_digest_and_zone() -> None:
    text = MINIMAL + (
        '\n[[channels]]\nname = "m"\ntype = "email"\nsmtp_url = "http://x"\nfrom = "a@x"\nto = ["b@x"]\n'
        'digest = "25:00"\ntimezone = "Mars/Olympus"\n'
    )
    assert sorted(problems_of(text)) == [
        'channels[1].digest: expected "HH:MM", got "25:00"',
        'channels[1].smtp_url: expected smtp://, smtps:// or smtp+plain://, got "http://x"',
        'channels[1].timezone: unknown time zone "Mars/Olympus"',
    ]


def test_slack_takes_a_digest_time_too() -> None:
    text = MINIMAL + (
        '\n[[channels]]\nname = "s"\ntype = "slack"\nwebhook_url = "https://hooks.slack.com/services/T/B/x"\n'
        'digest = "09:30"\ntimezone = "Europe/Berlin"\n'
    )
    slack = parse_settings(text, env={}).channels[1]
    assert (getattr(slack, "digest", None), getattr(slack, "timezone", None)) == ("09:30", "Europe/Berlin")
    assert problems_of(text.replace('"09:30"', '"9h"')) == ['channels[1].digest: expected "HH:MM", got "9h"']


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    config = tmp_path / "bom.toml"
    config.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_settings(config, env={}).rules[0].name == "r"
    assert problems_of("\ufeff[monitor\n") == [
        "line 1, column 9: TOML syntax error: Expected ']' at the end of a table declaration"]


def test_toml_syntax_error_is_one_line() -> None:
    assert problems_of("[monitor\ndatabase = 1\n") == [
        "line 1, column 9: TOML syntax error: Expected ']' at the end of a table declaration"]
    unterminated = problems_of('[monitor]\ndatabase = "x')
    assert unterminated == ["end of document: TOML syntax error: Unterminated string"]
    # It was a traceback (RecursionError), with either TOML library.
    assert problems_of("a = " + "[" * 100_000) == [
        "(file): TOML syntax error: arrays or tables nested more than 400 levels deep"]


def test_a_file_that_is_not_utf8_is_one_line_saying_where(tmp_path: Path) -> None:
    """It was a traceback: a config saved as Latin-1 by an editor."""
    config = tmp_path / "monitor.toml"
    config.write_bytes(MINIMAL.replace('name = "r"', 'name = "caf\u00e9"').encode("latin-1"))
    done = _run("check-config", "--config", str(config))
    assert (done.returncode, done.stderr) == (
        2, "line 11, column 12: not UTF-8 text (byte 0xe9); save the file as UTF-8\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), ("500ms", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1w", "-5m", "0s", "5 minutes"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
    )


def test_check_config_cli_summarizes_a_good_file() -> None:
    result = _run("check-config", "--config", "config/monitor.toml")
    assert result.returncode == 0, result.stderr
    assert "config/monitor.toml: ok" in result.stdout
    assert "hf-daily" in result.stdout and "efficient-llm" in result.stdout
    assert len(result.stdout.splitlines()) < 40


def test_check_config_summary_stays_one_screen_with_many_rules(tmp_path: Path) -> None:
    rules = "".join(f'[[rules]]\nname = "r{i}"\nkeywords = ["w{i}"]\nenabled = {str(i % 2 == 0).lower()}\n\n'
                    for i in range(5_000))
    config = tmp_path / "many.toml"
    config.write_text(f'[monitor]\ndatabase = "sqlite:///{tmp_path}/x.db"\n\n{rules}')
    done = _run("check-config", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) < 40 and "  rules (5000, 2500 off):" in lines and lines[-1] == "    ... and 4980 more"


def test_check_config_cli_one_line_per_problem_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = MINIMAL.replace('notify = ["team"]', 'notify = ["tem"]').replace("[[sources]]", "[[source]]")
    bad.write_text(text)
    result = _run("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["source: unknown key", 'rules[0].notify: unknown channel "tem"']
    assert "Traceback" not in result.stderr


def test_check_config_cli_missing_file(tmp_path: Path) -> None:
    result = _run("check-config", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"


def _keys(model: type[object], prefix: str) -> set[str]:
    fields = getattr(model, "model_fields", {})
    out: set[str] = set()
    for name, info in fields.items():
        key = info.alias or name
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            out |= _keys(annotation, f"{key}.")
        else:
            out.add(prefix + key)
    return out


def test_every_config_key_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_.]+)`", readme))
    keys = _keys(Settings, "")
    for model in (SlackConfig, EmailConfig, RssConfig, WebhookConfig, ConsoleConfig):
        keys |= _keys(model, "")
    from monitor.config import RuleConfig, SourceConfig

    keys |= _keys(SourceConfig, "") | _keys(RuleConfig, "")
    keys -= {"sources", "channels", "rules"}
    missing = sorted(k.rsplit(".", 1)[-1] for k in keys if k.rsplit(".", 1)[-1] not in documented)
    assert not missing, f"config keys not documented in README.md: {missing}"


def test_timeouts_take_durations_like_intervals() -> None:
    text = MINIMAL.replace('url = "http://127.0.0.1:9/api/daily_papers"',
                           'url = "http://127.0.0.1:9/api/daily_papers"\ntimeout = "10s"\nevery = 45')
    text += '\n[[channels]]\nname = "h"\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\ntimeout = "1m"\n'
    settings = parse_settings(text, env={})
    assert (settings.sources[0].timeout, settings.sources[0].every) == (10, 45)
    hook = settings.channel("h")
    assert isinstance(hook, WebhookConfig) and hook.timeout == 60
    assert problems_of(text.replace('timeout = "1m"', "timeout = 0")) == [
        "channels[1].timeout: Input should be greater than 0"
    ]


@pytest.mark.parametrize(("written", "problem"), [
    ('"99999999d"', 'duration too long: "99999999d" (at most 100 years)'),
    ("1e300", "duration too long: 1e+300 (at most 100 years)"),
    ("inf", "duration too long: inf (at most 100 years)"),
    ("true", "not a duration: true (use e.g. 30s, 15m, 1h, 1d)"),
])
def test_a_duration_past_the_calendar_or_a_boolean_is_a_config_error(written: str, problem: str) -> None:
    """Each once went through: a traceback later (a date out of range), or true taken for 1 s."""
    for key in ("every", "timeout", "catch_up"):
        text = MINIMAL.replace('url = "http://127.0.0.1:9/api/daily_papers"',
                               f'url = "http://127.0.0.1:9/api/daily_papers"\n{key} = {written}')
        assert problems_of(text) == [f"sources[0].{key}: {problem}"]
    keep = MINIMAL.replace("[[sources]]", f"[monitor]\nkeep_sent = {written}\n\n[[sources]]")
    assert problems_of(keep) == [f"monitor.keep_sent: {problem}"]


def test_backfill_since_past_the_calendar_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(MINIMAL, encoding="utf-8")
    found = _run("backfill", "--config", str(config), "--since", "99999999d")
    assert (found.returncode, found.stderr) == (
        2, 'paper-monitor backfill: --since: duration too long: "99999999d" (at most 100 years)\n')


@pytest.mark.parametrize(("written", "seconds"), [
    (None, 365 * 86_400.0),  # a year, unless told
    ('"90d"', 90 * 86_400.0),
    ('"forever"', None),
])
def test_keep_sent_is_a_duration_or_forever(written: str | None, seconds: float | None) -> None:
    text = MINIMAL if written is None else f"[monitor]\nkeep_sent = {written}\n" + MINIMAL
    assert parse_settings(text, env={}).monitor.keep_sent == seconds


def test_a_bad_keep_sent_is_one_line() -> None:
    assert problems_of('[monitor]\nkeep_sent = "always"\n' + MINIMAL) == [
        'monitor.keep_sent: not a duration: "always" (use e.g. 30s, 15m, 1h, 1d)'
    ]


def test_announce_types_default_to_new_papers_and_cross_lists() -> None:
    (source,) = parse_settings(MINIMAL, env={}).sources
    assert source.announce_types == {"new", "cross"}
    text = MINIMAL.replace("[[sources]]\n", '[[sources]]\nannounce_types = ["new", "replace"]\n', 1)
    assert parse_settings(text, env={}).sources[0].announce_types == {"new", "replace"}


@pytest.mark.parametrize(("written", "expected"), [
    ('["new", "updated"]', "sources[0].announce_types[1]: Input should be 'new', 'cross', 'replace' or"),
    ("[]", "sources[0].announce_types: give at least one of 'new', 'cross'"),
])
def test_a_bad_announce_types_is_one_line(written: str, expected: str) -> None:
    text = MINIMAL.replace("[[sources]]\n", f"[[sources]]\nannounce_types = {written}\n", 1)
    (problem,) = problems_of(text)
    assert problem.startswith(expected), problem


def with_source_line(line: str) -> str:
    return MINIMAL.replace("[[sources]]\n", f"[[sources]]\n{line}\n", 1)


@pytest.mark.parametrize(("written", "seconds"), [
    (None, 7 * 86_400.0), ('"2d"', 2 * 86_400.0), ('"off"', None),
])
def test_catch_up_is_a_duration_or_off(written: str | None, seconds: float | None) -> None:
    text = MINIMAL if written is None else with_source_line(f"catch_up = {written}")
    assert parse_settings(text, env={}).sources[0].catch_up == seconds


def test_a_bad_catch_up_is_one_line() -> None:
    assert problems_of(with_source_line('catch_up = "never"')) == [
        'sources[0].catch_up: not a duration: "never" (use e.g. 30s, 15m, 1h, 1d)'
    ]


WEBHOOK = MINIMAL + '\n[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "https://example.org/h"\n' \
    'signing_secret = "${WEBHOOK_SECRET}"\n'


def test_a_webhook_signing_secret_comes_from_the_environment() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook = parse_settings(WEBHOOK, env={"WEBHOOK_SECRET": secret}).channels[1]
    assert getattr(hook, "signing_secret", None) == secret


@pytest.mark.parametrize("secret", [
    "hunter2-not-base64!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ=",
])
def test_a_bad_signing_secret_is_one_line_that_does_not_show_it(secret: str) -> None:
    (problem,) = problems_of(WEBHOOK, env={"WEBHOOK_SECRET": secret})
    expected = 'channels[1].signing_secret: expected "whsec_" and then at least 24 bytes'
    assert problem.startswith(expected), problem
    assert secret not in problem


# -- rules in files of their own (monitor.rule_files) ------------------------------------------------

TEAM = """
[monitor]
database = "sqlite:///x.db"
rule_files = ["rules.d/*.toml", "extra.toml"]

[[channels]]
name = "feed"
type = "rss"

[[rules]]
name = "own"
keywords = ["kv cache"]
notify = ["feed"]
"""


def write_team(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    config = tmp_path / "monitor.toml"
    config.write_text(TEAM, encoding="utf-8")
    return config


def test_rules_come_from_the_files_rule_files_names_after_the_configs_own(tmp_path: Path) -> None:
    config = write_team(tmp_path, {
        "rules.d/bob.toml": '[[rules]]\nname = "bob"\nauthors = ["Tri Dao"]\nnotify = ["feed"]\n',
        "rules.d/alice.toml": ('[[rules]]\nname = "alice-1"\nkeywords = ["${TOPIC}"]\nnotify = ["feed"]\n\n'
                               '[[rules]]\nname = "alice-2"\nmin_upvotes = 50\n'),
        "rules.d/notes.txt": "not a rule file",
        "extra.toml": '[[rules]]\nname = "extra"\nquery = "agents AND upvotes:>=5"\nenabled = false\n',
    })
    settings = load_settings(config, env={"TOPIC": "speculative decoding"})
    assert [(r.name, r.file) for r in settings.rules] == [
        ("own", None), ("alice-1", "rules.d/alice.toml"), ("alice-2", "rules.d/alice.toml"),
        ("bob", "rules.d/bob.toml"), ("extra", "extra.toml")]
    assert settings.rules[1].keywords == ["speculative decoding"]
    summary = _run("check-config", "--config", str(config), env={"TOPIC": "x"})
    assert summary.returncode == 0, summary.stderr
    assert "rule files: rules.d/alice.toml (2), rules.d/bob.toml (1), extra.toml (1)" in summary.stdout
    assert "alice-1          -> feed  [rules.d/alice.toml]" in summary.stdout


def test_a_problem_in_a_rule_file_names_the_file_and_the_rule(tmp_path: Path) -> None:
    config = write_team(tmp_path, {
        "rules.d/alice.toml": ('[[rules]]\nname = "a"\nnotify = ["feed"]\n\n'
                               '[[rules]]\nname = "b"\nkeywords = ["--"]\nnotify = ["fed"]\n\n'
                               '[[rules]]\nname = "c"\nmin_upvotes = -1\n'),
        "rules.d/bob.toml": '[[rules]]\nname = "own"\nquery = "kv AND"\nkeywords = ["${NOPE}"]\n',
        "rules.d/carol.toml": '[[rules]\nname = "x"\n',
        "rules.d/dave.toml": '[[channels]]\nname = "mine"\ntype = "console"\n',
        "extra.toml": "",
    })
    done = _run("check-config", "--config", str(config))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    carol = "rules.d/carol.toml: line 1, column 8: TOML syntax error: "
    assert [line for line in lines if line.startswith(carol)]
    assert sorted(line for line in lines if "carol" not in line) == sorted([
        "rules.d/alice.toml: rules[2].min_upvotes: Input should be greater than or equal to 0",
        "rules.d/bob.toml: rules[0].query: column 7: expected a term",
        "rules.d/bob.toml: rules[0].keywords[0]: environment variable NOPE is not set",
        'rules.d/alice.toml: rules[1].notify: unknown channel "fed"',
        'rules.d/bob.toml: rules[0].name: duplicate name "own"',
        "rules.d/dave.toml: channels: a rule file holds [[rules]] tables only",
    ])
    # What only compiling the rules finds is told as where the rule is written, too.
    fixed = (tmp_path / "rules.d/alice.toml").read_text().replace('"fed"', '"feed"').replace("-1", "1")
    (tmp_path / "rules.d/alice.toml").write_text(fixed)
    for name in ("bob", "carol", "dave"):
        (tmp_path / f"rules.d/{name}.toml").unlink()
    done = _run("check-config", "--config", str(config))
    assert (done.returncode, done.stderr) == (
        2, 'rules.d/alice.toml: rules[1].keywords: "--" has no letters or digits\n')


def test_a_rule_file_that_is_not_there_is_a_config_error_a_pattern_that_finds_none_is_not(
    tmp_path: Path,
) -> None:
    config = write_team(tmp_path, {})
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert caught.value.problems == ["monitor.rule_files[1]: no such file: extra.toml"]
    (tmp_path / "extra.toml").write_text("")
    assert [r.name for r in load_settings(config).rules] == ["own"]


def test_problems_are_told_in_the_order_they_are_written(tmp_path: Path) -> None:
    """Fixing a config top to bottom: the problems come in the file's order (a missing key at the
    end of its table), not in the order of the checks."""
    config = tmp_path / "monitor.toml"
    config.write_text(
        '[monitor]\ndatabase = 5\nkeep_sent = "x"\n\n'
        '[[sources]]\nname = "hf"\nevery = "soon"\nurl = "ftp://x"\n\n'
        '[[sources]]\nurl = "https://huggingface.co/papers"\n\n'
        '[[channels]]\nname = "team"\ntype = "slackk"\n\n'
        '[[rules]]\nname = "r"\nnotify = ["nope"]\nbogus = 1\n', encoding="utf-8")
    done = _run("check-config", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "monitor.database: Input should be a valid string",
        'monitor.keep_sent: not a duration: "x" (use e.g. 30s, 15m, 1h, 1d)',
        'sources[0].every: not a duration: "soon" (use e.g. 30s, 15m, 1h, 1d)',
        'sources[0].url: expected an http(s) URL, got "ftp://x"',
        "sources[1].name: required key is missing",
        "channels[0].type: must be one of slack, email, rss, webhook, console",
        'rules[0].notify: unknown channel "nope"',
        "rules[0].bogus: unknown key",
    ]


# -- secrets never shown: check-config's summary and its problems --------------------------------------

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize(("line", "expected"), [
    ('smtp_url = "smtp//user:${SECRET}@smtp.example.org"',
     'channels[1].smtp_url: expected smtp://, smtps:// or smtp+plain://, got "smtp//***@smtp.example.org"'),
    ('smtp_url = "http://user:${SECRET}@smtp.example.org/?password=${SECRET}"',
     'channels[1].smtp_url: expected smtp://, smtps:// or smtp+plain://, got '
     '"http://user:***@smtp.example.org/?password=***"'),
])
def test_a_bad_smtp_url_is_told_without_its_secrets(line: str, expected: str) -> None:
    text = MINIMAL + f'\n[[channels]]\nname = "m"\ntype = "email"\n{line}\nfrom = "a@x"\nto = ["b@x"]\n'
    assert problems_of(text, env={"SECRET": SECRET}) == [expected]


def test_a_bad_source_url_is_told_without_its_secrets() -> None:
    text = MINIMAL.replace('url = "http://127.0.0.1:9/api/daily_papers"',
                           'url = "htps://bob:${SECRET}@example.org/feed?api_key=${SECRET}"')
    assert problems_of(text, env={"SECRET": SECRET}) == [
        'sources[0].url: expected an http(s) URL, got "htps://bob:***@example.org/feed?api_key=***"'
    ]


def test_check_config_summary_shows_no_secret_of_a_url(tmp_path: Path) -> None:
    config = tmp_path / "secret.toml"
    config.write_text(
        '[monitor]\ndatabase = "postgresql+psycopg://monitor:${SECRET}@db/papers?password=${SECRET}"\n'
        + MINIMAL.replace("http://127.0.0.1:9/api/daily_papers",
                          "https://bob:${SECRET}@example.org/feed?api_key=${SECRET}&limit=5"),
        encoding="utf-8",
    )
    done = _run("check-config", "--config", str(config), env={**os.environ, "SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert "database: postgresql+psycopg://monitor:***@db/papers?password=***" in done.stdout
    assert "https://bob:***@example.org/feed?api_key=***&limit=5" in done.stdout


# -- settings that cannot work are config errors, not failures at run time ----------------------------

def channel(lines: str) -> str:
    return MINIMAL + f'\n[[channels]]\nname = "c"\n{lines}\n'


EMAIL = 'type = "email"\nsmtp_url = "smtp://mail.example.org"\nfrom = "Paper Monitor <m@example.org>"\n' \
    'to = ["me@example.org"]'


@pytest.mark.parametrize(("text", "expected"), [
    (channel('type = "webhook"\nurl = "not a url"'),
     "channels[1].url: expected an http(s) URL, got a value without http(s)://"),
    (channel('type = "webhook"\nurl = "ftp://example.org/hook"'),
     'channels[1].url: expected an http(s) URL, got "ftp://..." (the rest not shown: it may be secret)'),
    (channel('type = "slack"\nwebhook_url = "hooks.slack.com/services/T/B/s3cret"'),
     "channels[1].webhook_url: expected an http(s) URL, got a value without http(s)://"),
    (channel('type = "slack"\ntoken = "t"\nchannel = "#p"\nbase_url = "slack.com/api"'),
     'channels[1].base_url: expected an http(s) URL, got "slack.com/api"'),
    (channel(EMAIL.replace("smtp://mail.example.org", "smtp://")), 'channels[1].smtp_url: no host in the URL "smtp://"'),
    (channel(EMAIL.replace("smtp://mail.example.org", "smtp://u:s3cret@mail:x")),
     'channels[1].smtp_url: not a valid URL: "smtp://u:***@mail:x": Port could not be cast to integer'
     " value as 'x'"),
    (channel(EMAIL.replace("Paper Monitor <m@example.org>", "not an address")),
     'channels[1].from: not an email address: "not an address" (e.g. "Paper Monitor <monitor@example.org>")'),
    (channel(EMAIL.replace('["me@example.org"]', '["me@example.org", "you and me"]')),
     'channels[1].to[1]: not an email address: "you and me" (e.g. "Paper Monitor <monitor@example.org>")'),
    ('[monitor]\ndatabase = "nonsense"\n' + MINIMAL,
     'monitor.database: not a database URL: "nonsense" (e.g. sqlite:///var/paper-monitor.db or '
     "postgresql+psycopg://user@host/db)"),
    ('[monitor]\ndatabase = "mysql://u:s3cret@x/db"\n' + MINIMAL,
     'monitor.database: unsupported database "mysql" in "mysql://u:***@x/db" (sqlite or postgresql)'),
    (channel('type = "rss"').replace('name = "c"', 'name = "../escape"'),
     'channels[1].name: "../escape" cannot name a feed file: no "/" or "\\" in it, nor a "." first'),
    (channel('type = "rss"').replace('name = "c"', 'name = "team/papers"'),
     'channels[1].name: "team/papers" cannot name a feed file: no "/" or "\\" in it, nor a "." first'),
    (channel('type = "rss"').replace('name = "c"', 'name = ".hidden"'),
     'channels[1].name: ".hidden" cannot name a feed file: no "/" or "\\" in it, nor a "." first'),
])
def test_settings_that_cannot_work_are_config_errors(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]
    assert "s3cret" not in expected


@pytest.mark.parametrize("text", [
    channel(EMAIL),
    channel(EMAIL.replace('["me@example.org"]', '["Me <me@example.org>", "you@example.org"]')),
    channel('type = "webhook"\nurl = "http://127.0.0.1:8000/hook"'),
    channel('type = "rss"').replace('name = "c"', 'name = "team.papers_2-x"'),
    channel('type = "rss"').replace('name = "c"', 'name = "Équipe Papers"'),  # served as %C3%89quipe%20...
    channel(EMAIL.replace('["me@example.org"]', '["alice", "Bob <bob>"]')),  # a local relay's mailboxes
    channel('type = "console"').replace('name = "c"', 'name = "team/papers"'),  # no feed: any name
    '[monitor]\ndatabase = "postgresql+psycopg://monitor@db/papers"\n' + MINIMAL,
    '[monitor]\ndatabase = "sqlite:///var/x.db"\n' + MINIMAL,
])
def test_settings_that_work_still_load(text: str) -> None:
    parse_settings(text, env={})


@pytest.mark.parametrize(("text", "expected"), [
    (with_source_line("retries = true"), "sources[0].retries: expected an integer, got true"),
    (with_source_line('retries = "three"'), 'sources[0].retries: expected an integer, got "three"'),
    (with_source_line("max_size = true"),
     "sources[0].max_size: not a size: true (use e.g. 20MiB, 500kB, or a number of bytes)"),
    (MINIMAL.replace('keywords = ["kv cache"]', "min_upvotes = true"),
     "rules[0].min_upvotes: expected an integer, got true"),
    (MINIMAL.replace('keywords = ["kv cache"]', 'enabled = "maybe"'),
     'rules[0].enabled: expected true or false, got "maybe"'),
    (MINIMAL + '\n[[channels]]\nname = "f"\ntype = "rss"\nmax_items = 2.5\n',
     "channels[1].max_items: expected an integer, got 2.5"),
])
def test_integers_and_booleans_are_not_coerced(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_integers_and_booleans_may_come_from_the_environment() -> None:
    text = MINIMAL.replace('keywords = ["kv cache"]', 'min_upvotes = "${MINUP}"\nenabled = "${ON}"')
    rule = parse_settings(text, env={"MINUP": "10", "ON": "false"}).rules[0]
    assert (rule.min_upvotes, rule.enabled) == (10, False)


def test_sizes_and_durations_are_still_written_as_strings_from_the_environment() -> None:
    text = with_source_line('max_size = "${SIZE}"\nevery = "${EVERY}"\nretries = 0')
    source = parse_settings(text, env={"SIZE": "1MiB", "EVERY": "1h"}).sources[0]
    assert (source.max_size, source.every, source.retries) == (1024 * 1024, 3600.0, 0)


@pytest.mark.parametrize(("line", "expected"), [
    ('every = "1ms"', "sources[0].every: at least 1s, got 1ms"),
    ("every = 0.5", "sources[0].every: at least 1s, got 500ms"),
    ('timeout = "0.001ms"', "sources[0].timeout: at least 100ms, got 0.001ms"),
    ('timeout = "50ms"', "sources[0].timeout: at least 100ms, got 50ms"),
])
def test_an_interval_under_1s_or_a_timeout_under_100ms_is_an_error(line: str, expected: str) -> None:
    assert problems_of(with_source_line(line)) == [expected]


def test_the_shortest_interval_and_timeout_are_taken() -> None:
    source = parse_settings(with_source_line('every = "1s"\ntimeout = "100ms"'), env={}).sources[0]
    assert (source.every, source.timeout) == (1.0, 0.1)


@pytest.mark.slow
def test_a_config_read_beside_the_daemon_lets_other_threads_run() -> None:
    """A reload reads the config beside the daemon's work: the compiled TOML parser held the GIL for a
    whole file (/healthz/live answered in 6 s with 100,000 rules); read beside, it lets them run, and
    says the same of a file with problems."""
    text = "".join(f'[[rules]]\nname = "r{i}"\nkeywords = ["w{i} x{i}", "q{i}*"]\nnotify = ["feed"]\n'
                   for i in range(60_000)).encode()
    late: list[float] = []
    done = threading.Event()

    def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.005)
            now = time.perf_counter()
            late.append(now - last)
            last = now

    thread = threading.Thread(target=ticker)
    thread.start()
    gc.disable()  # as the daemon reads it (its collections' pauses are another matter)
    try:
        with beside_other_threads():
            assert len(parse_toml(text)["rules"]) == 60_000
    finally:
        gc.enable()
        done.set()
        thread.join()
    assert max(late) < 0.3, f"another thread was held {max(late):.2f}s"
    for bad in ("[monitor\ndatabase = 1\n", '[monitor]\ndatabase = "x', "a = " + "[" * 100_000):
        with pytest.raises(ConfigError) as fast:
            parse_toml(bad.encode())
        with beside_other_threads(), pytest.raises(ConfigError) as beside:
            parse_toml(bad.encode())
        assert beside.value.problems == fast.value.problems
