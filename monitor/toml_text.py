"""The config's TOML files read: a file that is not UTF-8 text, or not TOML, is one line saying
where (``line 3, column 5``) and what."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from monitor.errors import ConfigError

_AT = re.compile(r"(.*) \(at (line \d+, column \d+|end of document)\)", re.DOTALL)


def parse_toml(data: bytes) -> dict[str, Any]:
    """The tables of a TOML file's bytes; ``ConfigError`` with one ``<where>: <what>`` line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"line {line}, column {column}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                          "save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _AT.fullmatch(str(exc))
        where, what = (found.group(2), found.group(1)) if found else ("(file)", str(exc))
        raise ConfigError(f"{where}: TOML syntax error: {what}") from None
