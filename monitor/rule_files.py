"""Rules in files of their own (``[monitor] rule_files = ["rules.d/*.toml"]``): finding the files,
reading their [[rules]] tables, and telling a problem of one as the file and the rule it is in."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any, Protocol

from monitor.errors import ConfigError
from monitor.toml_text import parse_toml

_RULE_AT = re.compile(r"^rules\[(\d+)\]")


class Interpolate(Protocol):
    """``${NAME}`` filled in from the environment, a missing one added to ``problems``."""

    def __call__(self, value: Any, *, where: tuple[Any, ...], problems: list[str]) -> Any: ...


def rule_file_paths(patterns: list[str], base: Path) -> list[Path]:
    """The files ``rule_files`` names, pattern by pattern, each pattern's in name order."""
    found: dict[Path, None] = {}  # in order, each once
    for pattern in patterns:
        full = Path(pattern).expanduser()
        full = full if full.is_absolute() else base / full
        for name in sorted(glob.glob(str(full))):
            if Path(name) not in found and Path(name).is_file():
                found[Path(name)] = None
    return list(found)


def read_rule_files(data: dict[str, Any], base: Path, interpolate: Interpolate,
                    problems: list[str]) -> list[tuple[str, Any]]:
    """The [[rules]] tables of the ``rule_files`` of the config ``data`` (its variables filled in by
    ``interpolate``), each with where it is written; what is wrong is added to ``problems``."""
    monitor = data.get("monitor")
    patterns = monitor.get("rule_files") if isinstance(monitor, dict) else None
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        return []  # the schema says what is wrong with it
    for i, pattern in enumerate(patterns):
        if not glob.has_magic(pattern) and not rule_file_paths([pattern], base):
            problems.append(f"monitor.rule_files[{i}]: no such file: {pattern}")
    rules: list[tuple[str, Any]] = []
    for path in rule_file_paths(patterns, base):
        label = os.path.relpath(path, base) if path.is_relative_to(base) else str(path)
        try:
            raw = parse_toml(path.read_bytes())
        except OSError as exc:
            problems.append(f"{label}: cannot read: {exc.strerror or exc}")
            continue
        except ConfigError as exc:
            problems += [f"{label}: {problem}" for problem in exc.problems]
            continue
        for key in raw.keys() - {"rules"}:
            problems.append(f"{label}: {key}: a rule file holds [[rules]] tables only")
        tables = raw.get("rules", [])
        if not isinstance(tables, list):
            problems.append(f"{label}: rules: expected [[rules]] tables")
            continue
        found: list[str] = []
        tables = interpolate(tables, where=("rules",), problems=found)
        problems += [f"{label}: {problem}" for problem in found]
        rules += [(f"{label}: rules[{k}]", table) for k, table in enumerate(tables)]
    return rules


def relocate(problem: str, where: list[str]) -> str:
    """A problem of ``rules[N]`` (N counting the rules of the rule files after the config's own)
    as where that rule is written."""
    found = _RULE_AT.match(problem)
    if found is None or int(found.group(1)) >= len(where):
        return problem
    return where[int(found.group(1))] + problem[found.end():]
