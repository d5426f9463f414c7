"""The ``paper-monitor`` command line: argument parsing, and one clear line for a user's mistake.

Each sub-command hands over to the module that owns the work; exit codes: 0 ok, 1 a runtime
failure, 2 bad usage, bad config or unreadable input.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import NoReturn

from monitor import signals
from monitor.config import Settings, default_config_path, load_settings
from monitor.errors import ConfigError, FetchError, MonitorError, ParseError
from monitor.redact import redact_url, redact_urls

FORMATS = ("auto", "hf-json", "hf-html", "hf-text", "arxiv-rss", "arxiv-atom")
_LISTED_RULES = 20  # check-config's summary stays one screen, whatever the number of rules
# Commands that read the config (and compile its rules), do their work and exit: they run with the
# cyclic garbage collector off. A config of 100,000 rules is millions of objects and no reference
# cycles (the daemon reads it so too: ``daemon.built_for_good``); each full collection walked all of
# them, a third of check-config's time and a third of status's. run, once and backfill (polls,
# deliveries, the daemon's threads) and copy-store (rows streamed for as long as it takes) keep it.
_COLLECTOR_OFF = frozenset({"check-config", "match", "backtest", "why", "status", "retry-dead", "discard",
                            "test-channel"})


class _Usage(Exception):
    """A usage error found after argparse (a bad date, say): exit 2 with one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (then exit 2), not a usage screen."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _config_arg(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--config", type=Path, required=required, default=None,
        help="config file (required)" if required
        else "config file (default: $PAPER_MONITOR_CONFIG, else ./config/monitor.toml)",
    )


def _try_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rule", action="append", default=[], metavar="NAME",
                        help="only this rule, even if it is off (repeatable; default: the rules that are on)")
    parser.add_argument("--query", metavar="EXPR",
                        help='a rule written here, tried as the rule "--query", as in: '
                             '\'"kv cache" AND upvotes:>=10\'')


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="paper-monitor", description="Watch paper listings and alert on matching papers.")
    # Upper-cased first, so that `--log-level debug` is a choice too; logging itself would raise.
    parser.add_argument("--log-level", default="INFO", type=str.upper, metavar="LEVEL",
                        choices=("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"),
                        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="the long-running daemon")
    _config_arg(run)
    run.add_argument("--standby", action="store_true",
                     help="when another daemon polls and delivers with the store, wait (serving the feeds) "
                          "and take over when it stops, instead of exiting")
    once = sub.add_parser("once", help="poll every source once, deliver what is due, exit")
    _config_arg(once)
    check = sub.add_parser("check-config", help="validate the config and summarize it")
    _config_arg(check)

    parse = sub.add_parser("parse", help="print the papers of a page as JSON lines")
    parse.add_argument("source", help="a file path or an http(s) URL")
    parse.add_argument("--format", choices=FORMATS, default="auto")
    parse.add_argument("--today", help="YYYY-MM-DD: the page's date, for dates shown without a year")

    match = sub.add_parser("match", help="print the (rule, paper) matches of pages as JSON lines")
    _config_arg(match, required=True)
    match.add_argument("files", nargs="+", type=Path)
    match.add_argument("--today", help="YYYY-MM-DD: the pages' date")
    _try_args(match)

    backtest = sub.add_parser("backtest", help="run the rules over the stored papers; sends nothing")
    _config_arg(backtest)
    backtest.add_argument("--since", default="30d", help="how far back, as a duration (default 30d)")
    _try_args(backtest)

    why = sub.add_parser("why", help="what became of one stored paper: its matches and alerts, and why "
                                     "rules did not match it")
    _config_arg(why)
    why.add_argument("paper", help="its key (arxiv:2401.12345), arXiv id, URL, or words of its title")
    why.add_argument("--rule", action="append", default=[], metavar="NAME",
                     help="explain this rule (repeatable; default: every rule, when there are few)")

    backfill = sub.add_parser("backfill", help="store the papers of past days (HF API, arXiv API); no alerts")
    _config_arg(backfill)
    backfill.add_argument("--since", default="7d", help="how many days back, as a duration (default 7d)")
    backfill.add_argument("--source", help="only this source")
    backfill.add_argument("--alert", action="store_true", help="queue alerts for what the history matches")
    backfill.add_argument("--today", help="YYYY-MM-DD: count back from this day (default: today, UTC)")

    test_channel = sub.add_parser("test-channel", help="send a test message through a channel")
    _config_arg(test_channel)
    test_channel.add_argument("name")
    status = sub.add_parser("status", help="deliveries per channel: pending, failed, dead, sent today")
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    retry = sub.add_parser("retry-dead", help="requeue dead deliveries")
    _config_arg(retry)
    retry.add_argument("channel", nargs="?")

    discard = sub.add_parser("discard", help="delete dead deliveries (--dead), or those of a channel no "
                                             "longer in the config")
    _config_arg(discard)
    discard.add_argument("channel", nargs="?")
    discard.add_argument("--dead", action="store_true",
                         help="the dead deliveries (of the channel, or of all channels)")
    copy = sub.add_parser("copy-store", help="copy the store into another, empty database (to move to "
                                             "PostgreSQL, or a backup)")
    _config_arg(copy)
    copy.add_argument("--to", required=True, metavar="URL",
                      help="the database to fill: postgresql+psycopg://user:pass@host/db, sqlite:///path.db")

    sub.add_parser("demo", help="offline end-to-end run on bundled recorded pages")
    return parser


def _settings(args: argparse.Namespace, *, sends: bool = True, rules: bool = True) -> Settings:
    """The config. A command that sends nothing (``sends=False``: status, why, backtest...) takes
    it without the channels' secrets: a ``${NAME}`` not set in a [[channels]] table is no problem
    for an operator's shell that lacks the service's environment file. One that reads no rule
    (``rules=False``: status, retry-dead, discard, copy-store) takes it without its rules."""
    return load_settings(args.config or default_config_path(), channel_secrets=sends, rules=rules)


def _today(text: str | None) -> date:
    if text is None:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Usage(f'--today: expected YYYY-MM-DD, got "{text}"') from None


def cmd_parse(args: argparse.Namespace) -> int:
    today = _today(args.today)
    if args.source.startswith(("http://", "https://")):
        from monitor.config_values import http_url
        from monitor.fetch import fetch_once

        try:
            http_url(args.source)
        except ValueError as exc:  # a mistake in the command, not a failure of the site
            raise _Usage(str(exc)) from None
        try:
            data = fetch_once(args.source)
        except FetchError as exc:
            # The site said the page is not there or not ours to read (404, 403, 410): unreadable
            # input, like a missing file. Refused connections, 5xx and 429 stay runtime failures.
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
                raise _Usage(str(exc)) from None
            raise
    else:
        try:
            data = Path(args.source).read_bytes()
        except OSError as exc:
            raise _Usage(f"{args.source}: cannot read: {exc.strerror or exc}") from None
    from monitor.sources import parse_page

    for paper in parse_page(data, args.format, today=today):
        print(json.dumps(paper.to_json(), ensure_ascii=False))
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from monitor.backtest import tried_rules
    from monitor.sources import parse_page

    settings = _settings(args, sends=False)
    index = tried_rules(settings.rules, args.rule, args.query)
    today = _today(args.today)
    for file in args.files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise _Usage(f"{file}: cannot read: {exc.strerror or exc}") from None
        try:
            papers = parse_page(data, "auto", today=today)
        except ParseError as exc:
            raise ParseError(f"{file}: {exc}") from exc
        for paper in papers:
            for found in index.order(index.match(paper)):
                line = {"rule": found.rule, "key": paper.key, "title": paper.title, "reasons": found.reasons}
                print(json.dumps(line, ensure_ascii=False))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    settings = load_settings(path)
    from monitor.match import check_rules

    check_rules(settings.rules)
    print(f"{path}: ok")
    print(f"  database: {redact_url(settings.monitor.database)}")
    print(f"  server:   {settings.server.listen}")
    print(f"  sources ({len(settings.sources)}):")
    for source in settings.sources:
        print(f"    {source.name:<16} every {_seconds(source.every):<6} {redact_url(source.url)}")
    print(f"  channels ({len(settings.channels)}):")
    for channel in settings.channels:
        print(f"    {channel.name:<16} {channel.type}")
    off = len(settings.rules) - len(settings.active_rules)
    print(f"  rules ({len(settings.rules)}{f', {off} off' if off else ''}):")
    for rule in settings.rules[:_LISTED_RULES]:
        state = "" if rule.enabled else "  (off)"
        written = f"  [{rule.file}]" if rule.file else ""
        print(f"    {rule.name:<16} -> {', '.join(rule.notify) or '(no channel)'}{state}{written}")
    if len(settings.rules) > _LISTED_RULES:
        print(f"    ... and {len(settings.rules) - _LISTED_RULES} more")
    if settings.monitor.rule_files:
        files = Counter(file for rule in settings.rules if (file := rule.file))
        listed = ", ".join(f"{name} ({count})" for name, count in files.items()) or "none found"
        print(f"  rule files: {listed}")
    return 0


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


def cmd_once(args: argparse.Namespace) -> int:
    from monitor.pipeline import run_once

    return run_once(_settings(args))


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.process import run_daemon

    return run_daemon(args.config or default_config_path(), standby=args.standby)


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo

    return run_demo()


def cmd_backtest(args: argparse.Namespace) -> int:
    from monitor.backtest import backtest
    from monitor.config_values import parse_duration

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise _Usage(f"--since: {exc}") from None
    return backtest(_settings(args, sends=False), since, args.rule, args.query)


def cmd_why(args: argparse.Namespace) -> int:
    from monitor.why import why

    return why(_settings(args, sends=False), args.paper, args.rule)


def cmd_backfill(args: argparse.Namespace) -> int:
    from monitor.backfill import backfill
    from monitor.config_values import parse_duration

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise _Usage(f"--since: {exc}") from None
    today = _today(args.today) if args.today else None
    return backfill(_settings(args, sends=False), since_seconds=since, source=args.source, alert=args.alert,
                    today=today)


def cmd_test_channel(args: argparse.Namespace) -> int:
    from monitor.admin import test_channel

    return test_channel(_settings(args), args.name)


def cmd_status(args: argparse.Namespace) -> int:
    from monitor.status import print_status

    return print_status(_settings(args, sends=False, rules=False), as_json=args.json)


def cmd_retry_dead(args: argparse.Namespace) -> int:
    from monitor.admin import retry_dead

    return retry_dead(_settings(args, sends=False, rules=False), args.channel)


def cmd_discard(args: argparse.Namespace) -> int:
    from monitor.admin import discard

    return discard(_settings(args, sends=False, rules=False), args.channel, args.dead)


def cmd_copy_store(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from monitor.admin import copy_store

    try:
        sa.make_url(args.to)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise _Usage(f"--to: not a database URL: {redact_urls(str(exc))}") from None
    return copy_store(_settings(args, sends=False, rules=False), args.to)


COMMANDS = {
    "run": cmd_run,
    "once": cmd_once,
    "check-config": cmd_check_config,
    "parse": cmd_parse,
    "match": cmd_match,
    "backtest": cmd_backtest,
    "why": cmd_why,
    "backfill": cmd_backfill,
    "test-channel": cmd_test_channel,
    "status": cmd_status,
    "retry-dead": cmd_retry_dead,
    "discard": cmd_discard,
    "copy-store": cmd_copy_store,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paused = args.command in _COLLECTOR_OFF and gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _main(args)
    finally:
        if paused:  # (main called in a process that goes on: a test's)
            gc.enable()


def _main(args: argparse.Namespace) -> int:
    from monitor.logs import setup_logging

    setup_logging(args.log_level, args.log_format)
    try:
        if args.command != "run":  # (run takes them over once it listens)
            signals.release()
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (ParseError, _Usage) as exc:
        print(f"paper-monitor {args.command}: {exc}", file=sys.stderr)
        return 2
    except FetchError as exc:
        print(f"paper-monitor {args.command}: {exc}", file=sys.stderr)
        return 1
    except MonitorError as exc:
        print(f"paper-monitor {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
