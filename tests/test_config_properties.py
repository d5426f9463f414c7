"""``check-config`` on configs damaged at random: exit 0 with its summary, or exit 2 with one line per
problem, never a traceback. The damage is done to the tables, not the bytes, so that it reaches the
checks behind the TOML syntax: a value of another type or shape, a key taken away or added, a table
repeated (duplicate names), in the shipped configs and their rules.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [ROOT / "config" / "monitor.toml", *sorted((ROOT / "config" / "examples").glob("*.toml"))]
ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x", "SLACK_BOT_TOKEN": "xoxb-1",
       "SMTP_USER": "u", "SMTP_PASSWORD": "p", "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
       "FEED_TOKEN": "t0ken", "DB_PASSWORD": "x"}
KEYS = ["name", "url", "every", "type", "notify", "keywords", "authors", "organizations", "query",
        "exclude", "min_upvotes", "enabled", "token", "channel", "to", "from", "smtp_url", "digest",
        "timezone", "listen", "database", "rule_files", "catch_up", "announce_types", "max_size", "retries",
        "max_items", "sources", "channels", "rules", "monitor", "server"]
SCALARS = (st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False)
           | st.text(max_size=12) | st.sampled_from(["", "team", "feed", "15m", "0s", "${NOPE}", "*", "(",
                                                     '"kv cache"', "rules.d/*.toml", "hook", "10:61"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_leaves=8)
# One change: where (a walk of choices down the tables), and what: set a value, delete, or repeat.
STEPS = st.lists(st.tuples(st.lists(st.integers(0, 50), max_size=4),
                           st.sampled_from(["set", "del", "repeat"]), VALUES), min_size=1, max_size=3)


def _damage(data: dict[str, Any], steps: list[tuple[list[int], str, Any]]) -> dict[str, Any]:
    for walk, kind, value in steps:
        parent: Any = data
        key: Any = None
        for choice in walk:  # down the tables and arrays of tables
            here = parent if key is None else parent[key]
            if isinstance(here, dict) and here:
                parent, key = here, list(here)[choice % len(here)]
            elif isinstance(here, list) and here:
                parent, key = here, choice % len(here)
            else:
                break
        if key is None:  # the top level: add or replace a section
            data[KEYS[len(walk) % len(KEYS)]] = value
        elif kind == "del":
            del parent[key]
        elif kind == "repeat" and isinstance(parent, list):
            parent.append(parent[key])
        else:
            parent[key] = value
    return data


def _check_config(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "monitor.toml"
        path.write_text(text, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as env, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            for name, value in ENV.items():
                env.setenv(name, value)
            code = main(["check-config", "--config", str(path)])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_a_damaged_config_is_summarized_or_told_line_by_line(
    config: Path, steps: list[tuple[list[int], str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _damage(tomllib.loads(config.read_text(encoding="utf-8")), steps)
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):
        return  # not writable as TOML (a table inside an array of values, say): no file has it
    code, out, err = _check_config(text, monkeypatch)
    if code == 0:
        assert out.splitlines()[0].endswith(": ok"), out
        assert not err
    else:
        assert code == 2, (code, err)
        lines = err.splitlines()
        assert lines and all(line.strip() and ": " in line for line in lines), err
        assert "Traceback" not in err


def test_a_channel_named_by_a_list_is_a_config_error(tmp_path: Path) -> None:
    """Found by fuzzing: a channel whose name is a list broke the check of the rules' channels."""
    path = tmp_path / "monitor.toml"
    path.write_text('[[channels]]\nname = ["a", "b"]\ntype = "console"\n\n'
                    '[[rules]]\nname = "r"\nkeywords = ["x"]\nnotify = ["a"]\n', encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["check-config", "--config", str(path)])
    assert code == 2
    assert err.getvalue().splitlines() == [
        "channels[0].name: Input should be a valid string",
        'rules[0].notify: unknown channel "a"',
    ]


def test_a_value_with_a_line_break_is_quoted_on_one_line() -> None:
    """Found by fuzzing: a URL holding a line break made its problem two lines."""
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(err):
        path = Path(tmp) / "monitor.toml"
        path.write_text('[[sources]]\nname = "hf"\nurl = "https://huggingface.co:x\\ny/api"\n',
                        encoding="utf-8")
        code = main(["check-config", "--config", str(path)])
    assert code == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith('sources[0].url: not a valid URL: "https://huggingface.co:x\\ny/api"')
