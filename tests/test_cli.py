"""The command line: a user's mistake is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def run(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )


def test_help_lists_every_interface_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("run", "once", "check-config", "parse", "match", "demo"):
        assert command in result.stdout


def test_help_names_a_default_config_only_where_there_is_one() -> None:
    """``match`` needs --config (INTERFACE.md): its help must not promise the default the others have."""
    match = run("match", "--help")
    assert match.returncode == 0
    assert "config file (required)" in match.stdout
    assert "PAPER_MONITOR_CONFIG" not in match.stdout
    assert "PAPER_MONITOR_CONFIG" in run("status", "--help").stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_with_an_older_python_says_so_and_makes_no_venv(tmp_path: Path) -> None:
    """README's first command where python3 is 3.10: one line naming the way out, and no .venv
    left behind for the second try (PYTHON=python3.11) to reuse."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    old = tmp_path / "python3.10"  # answers as a 3.10 would: too old for the version check
    old.write_text('#!/bin/sh\ncase "$*" in *version_info*) exit 1;; --version) echo "Python 3.10.12"; '
                   'exit 0;; esac\nexec python3 "$@"\n')
    old.chmod(0o755)
    made = subprocess.run(["make", "--no-print-directory", "run", f"PYTHON={old}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert made.returncode != 0
    assert (f"paper-monitor needs Python 3.11+; {old} is Python 3.10.12: name another, e.g. "
            "make run PYTHON=python3.11") in made.stderr.splitlines(), made.stderr
    assert not (tmp_path / ".venv").exists()


def test_every_command_and_option_has_its_row_in_the_readme() -> None:
    """As datasette checks its settings: a command or an option added without a word in the README's
    table of commands fails here (``--config`` is told once, below the table)."""
    from monitor.cli import build_parser

    rows = [line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `paper-monitor ")]
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = []
    for name, command in commands.items():
        row = next((r for r in rows if r.startswith(f"| `paper-monitor {name}")), None)
        if row is None:
            missing.append(name)
            continue
        options = {o for a in command._actions for o in a.option_strings if o.startswith("--")}
        missing += [f"{name} {o}" for o in sorted(options - {"--help", "--config"}) if o not in row]
    assert missing == []
    assert len(rows) == len(commands)


def test_console_script_is_the_same_program() -> None:
    script = shutil.which("paper-monitor", path=str(Path(sys.executable).parent))
    assert script, "the paper-monitor console script is installed beside the interpreter"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "check-config" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("parse",), "the following arguments are required: source"),
        (("parse", "x.json", "--format", "pdf"), "invalid choice: 'pdf'"),
        (("parse", "README.md", "--today", "yesterday"), '--today: expected YYYY-MM-DD, got "yesterday"'),
        (("parse", "no/such/file.json"), "no/such/file.json: cannot read: No such file or directory"),
        (("match", "x.json"), "the following arguments are required: --config"),
        (("--log-level", "FOO", "check-config"), "argument --log-level: invalid choice: 'FOO'"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("level", ["debug", "warn", "Fatal"])
def test_log_level_is_any_case_and_logging_s_own_names(level: str) -> None:
    result = run("--log-level", level, "check-config", "--config", str(REPO / "config" / "monitor.toml"))
    assert result.returncode == 0, result.stderr


def test_default_config_comes_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "PAPER_MONITOR_CONFIG": str(tmp_path / "elsewhere.toml")}
    result = run("check-config", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'elsewhere.toml'}: cannot read: No such file or directory"


def test_default_config_is_config_monitor_toml_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "monitor.toml").write_text('[server]\nlisten = "nonsense"\n')
    env = {k: v for k, v in os.environ.items() if k != "PAPER_MONITOR_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    result = run("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ['server.listen: expected "host:port", got "nonsense"']


@pytest.mark.slow
def test_parse_of_a_url_with_secrets_logs_and_tells_it_without_them() -> None:
    """Each retry is logged and the failure told with the URL, never its password or key."""
    import socket

    with socket.socket() as closed:  # a port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run("--log-level", "debug", "parse", f"http://bob:hunter2@127.0.0.1:{port}/feed?api_key=hunter2&limit=5")
    assert result.returncode == 1
    assert "hunter2" not in result.stdout + result.stderr
    assert f"GET http://bob:***@127.0.0.1:{port}/feed?api_key=***&limit=5" in result.stderr
    assert "retry 1" in result.stderr, result.stderr


COUNT_FULL_COLLECTIONS = """
import gc, sys
full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
from monitor.cli import main
code = main(sys.argv[1:])
print(f"exit {code}, {len(full)} full collections", file=sys.stderr)
"""


def test_a_command_reading_many_rules_leaves_the_collector_alone(tmp_path: Path) -> None:
    """check-config and the admin commands read a config of many rules (objects without reference
    cycles, millions of them with 100,000 rules) and exit: each full collection of the cyclic garbage
    collector walked them all, a third of the time of check-config and status (benchmarks/admin.py)."""
    config = tmp_path / "monitor.toml"
    config.write_text('[[channels]]\nname = "feed"\ntype = "rss"\n\n' + "".join(
        f'[[rules]]\nname = "r{i}"\nkeywords = ["word{i} other{i}", "stem{i}*"]\n'
        f'authors = ["Ada Lovelace{i}"]\nnotify = ["feed"]\n\n' for i in range(20_000)), encoding="utf-8")
    command = [sys.executable, "-c", COUNT_FULL_COLLECTIONS, "check-config", "--config", str(config)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert done.stdout.startswith(f"{config}: ok\n") and "rules (20000):" in done.stdout
    assert done.stderr == "exit 0, 0 full collections\n"
