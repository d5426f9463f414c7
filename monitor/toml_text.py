"""The config's TOML files read: a file that is not UTF-8 text, or not TOML, is one line saying
where (``line 3, column 5``) and what; and the problems of a file put in the order it is written."""

from __future__ import annotations

import contextlib
import re
import threading
import tomllib as interruptible_toml
from collections.abc import Iterator
from typing import Any

# tomli is the standard library's tomllib, as compiled wheels (mypyc): 4x faster on a config of
# 100,000 rules (13 MB: 2.3 s against 9.4 s), with the same errors. Compiled, it holds the GIL for
# a whole file: no other thread runs meanwhile (/healthz/live answered in 6 s during a reload of
# 100,000 rules), so a config read beside the daemon's work (``beside_other_threads``) is read by
# the standard library's, which lets them run.
import tomli as tomllib

from monitor.errors import ConfigError

_beside = threading.local()


@contextlib.contextmanager
def beside_other_threads() -> Iterator[None]:
    """The TOML files this thread reads meanwhile are parsed without stopping the other threads
    (a reload: slower, the daemon serving on)."""
    before = getattr(_beside, "on", False)
    _beside.on = True
    try:
        yield
    finally:
        _beside.on = before

_AT = re.compile(r"(.*) \(at (line \d+, column \d+|end of document)\)", re.DOTALL)


def parse_toml(data: bytes) -> dict[str, Any]:
    """The tables of a TOML file's bytes; ``ConfigError`` with one ``<where>: <what>`` line."""
    # A byte order mark (Notepad writes one) is no TOML statement; columns count from after it, as
    # editors show them.
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"line {line}, column {column}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                          "save the file as UTF-8") from None
    try:
        parser = interruptible_toml if getattr(_beside, "on", False) else tomllib
        parsed: dict[str, Any] = parser.loads(text)
        return parsed
    except (tomllib.TOMLDecodeError, interruptible_toml.TOMLDecodeError) as exc:
        found = _AT.fullmatch(str(exc))
        where, what = (found.group(2), found.group(1)) if found else ("(file)", str(exc))
        raise ConfigError(f"{where}: TOML syntax error: {what}") from None
    except RecursionError:  # arrays in arrays in arrays ...
        raise ConfigError("(file): TOML syntax error: arrays or tables nested more than 400 levels "
                          "deep") from None


_PATH = re.compile(r"[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*")
_STEP = re.compile(r"\[(\d+)\]|\.?([A-Za-z_]\w*)")
_OTHER_FILE = re.compile(r"([^:]*\.toml): (?:rules\[(\d+)\])?")


def in_file_order(problems: list[str], raw: dict[str, Any]) -> list[str]:
    """``problems`` (``<where>: <what>``) in the order their places are written in the file whose
    tables are ``raw`` (a missing key at the end of its table); those of other files (rule files,
    ``rules.d/a.toml: ...``) after them, file by file, rule by rule. Ties keep their order."""

    def position(problem: str) -> tuple[Any, ...]:
        other = _OTHER_FILE.match(problem)
        if other is not None:
            return (1, other.group(1), int(other.group(2) or 0))
        where = problem.split(": ", 1)[0]
        if not _PATH.fullmatch(where):
            return (0,)
        key: list[int] = []
        node: Any = raw
        for index, name in _STEP.findall(where):
            if index:
                at = int(index)
                node = node[at] if isinstance(node, list) and at < len(node) else None
            else:
                names = list(node) if isinstance(node, dict) else []
                at = names.index(name) if name in names else len(names)
                node = node.get(name) if isinstance(node, dict) else None
            key.append(at)
        return (0, *key)

    return sorted(problems, key=position)
