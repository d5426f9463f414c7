"""How the config's problems are found and told: ``${NAME}`` filled in from the environment, pydantic's
errors worded as ``<where>: <what>``, and the checks across sections (names, the rules' channels)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# An rss channel's name is a file name in feeds_dir and a path segment of /feeds/<name>.xml.


_MISSING = ": environment variable "


def interpolate(value: Any, env: Mapping[str, str], where: tuple[Any, ...], problems: list[str]) -> Any:
    """``value`` (the tables, down from ``where``) with each ``${NAME}`` replaced from ``env``; a
    variable not set is a problem, and its reference is kept."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def fill(ref: re.Match[str]) -> str:
            name = ref.group(1)
            if name not in env:
                problems.append(f"{_where(where)}{_MISSING}{name} is not set")
                return ref.group(0)  # keep the reference, so no second error follows from it
            return env[name]

        return _ENV_REF.sub(fill, value)
    # A string with no reference is taken as it is, without a call and a place made for it: most
    # values of a config (100,000 rules' names and terms: 1.5 s of reading it, now 0.8 s).
    if isinstance(value, dict):
        return {k: v if v.__class__ is str and "${" not in v else interpolate(v, env, (*where, k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [v if v.__class__ is str and "${" not in v else interpolate(v, env, (*where, i), problems)
                for i, v in enumerate(value)]
    return value


def without_echoes(problems: list[str]) -> list[str]:
    """``problems`` less those at (or within) a place whose ``${NAME}`` is not set: the reference
    left in the value fails that place's checks too (`expected an http(s) URL, got "${NOPE_URL}"`),
    and the missing variable is the one thing to fix there."""
    places = [problem.partition(_MISSING)[0] for problem in problems if _MISSING in problem]
    shadowed = tuple(place + after for place in places for after in (": ", ".", "["))
    return [problem for problem in problems if _MISSING in problem or not problem.startswith(shadowed)]


def unset_in_channels(problems: list[str]) -> dict[int, list[str]]:
    """Of ``problems``, the variables not set within a ``[[channels]]`` table, by the table's index:
    a channel's credentials, which only the commands that send need."""
    found: dict[int, list[str]] = {}
    for problem in problems:
        if _MISSING in problem and (table := _CHANNEL_TABLE.match(problem)):
            found.setdefault(int(table.group(1)), []).append(problem)
    return found


_CHANNEL_TABLE = re.compile(r"channels\[(\d+)\][.\[:]")


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    # Drop the discriminator tag pydantic inserts for tagged unions: channels[0].slack.token.
    if len(loc) >= 3 and loc[0] == "channels" and loc[2] in ("slack", "email", "rss", "webhook", "console"):
        loc = loc[:2] + loc[3:]
    loc = tuple("from" if part == "from_" else part for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{_where(loc)}: unknown key"
    if kind == "missing":
        return f"{_where(loc)}: required key is missing"
    if kind == "union_tag_invalid":
        return f"{_where(loc)}.type: must be one of slack, email, rss, webhook, console"
    if kind == "union_tag_not_found":
        return f"{_where(loc)}.type: required key is missing"
    if kind.startswith(("int_", "bool_")):  # int_type, int_parsing, int_from_float, bool_parsing...
        expected = "an integer" if kind.startswith("int_") else "true or false"
        return f"{_where(loc)}: expected {expected}, got {_toml(error['input'])}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{_where(loc)}: {message}"


def _toml(value: Any) -> str:
    """``value`` as the TOML that wrote it: ``true``, ``"10"``, ``1.5``."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def cross_check(data: dict[str, Any]) -> list[str]:
    """Problems across sections (duplicate names, unknown channels), read from the raw tables so
    they are reported together with the schema's problems."""

    def tables(section: str) -> list[Any]:
        items = data.get(section)
        return items if isinstance(items, list) else []

    problems: list[str] = []
    for section in ("sources", "channels", "rules"):
        seen: set[str] = set()
        for i, item in enumerate(tables(section)):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(f'{section}[{i}].name: duplicate name "{name}"')
            seen.add(name)
    for i, channel in enumerate(tables("channels")):
        if not isinstance(channel, dict) or channel.get("type") != "rss":
            continue
        name = channel.get("name")
        if isinstance(name, str) and (name.startswith(".") or "/" in name or "\\" in name):
            problems.append(f'channels[{i}].name: "{name}" cannot name a feed file: no "/" or "\\" in it, '
                            'nor a "." first')
    names = [c.get("name") for c in tables("channels") if isinstance(c, dict)]
    channels = {name for name in names if isinstance(name, str)}  # the schema tells of the others
    for i, rule in enumerate(tables("rules")):
        notify = rule.get("notify") if isinstance(rule, dict) else None
        for target in notify if isinstance(notify, list) else []:
            # (a reference kept in place of a missing variable is told as that)
            if isinstance(target, str) and target not in channels and not _ENV_REF.search(target):
                problems.append(f'rules[{i}].notify: unknown channel "{target}"')
    return problems
