"""Coverage-guided fuzzing of what reads untrusted input, with atheris (libFuzzer): `make fuzz`.

    python tests/fuzz.py parse  [libFuzzer options]   # pages: a ParseError or valid papers
    python tests/fuzz.py config [libFuzzer options]   # config files: a ConfigError or settings

Not part of `make test`: it runs until stopped (or ``-max_total_time=N``). It starts from the recorded
pages and the shipped configs; a crash is written to ``var/fuzz/<target>-crash-*`` and belongs in a
test (tests/test_parser_properties.py, tests/test_config_properties.py) once fixed.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "fixtures"
ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x", "SLACK_BOT_TOKEN": "xoxb-1",
       "SMTP_USER": "u", "SMTP_PASSWORD": "p", "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
       "FEED_TOKEN": "t0ken", "DB_PASSWORD": "x"}

with atheris.instrument_imports(include=["monitor"]):
    from datetime import date

    import monitor.sources.arxiv
    import monitor.sources.hf_html
    import monitor.sources.hf_json
    import monitor.sources.hf_text  # noqa: F401  # (imported here to be instrumented)
    from monitor.config import parse_settings
    from monitor.errors import ConfigError, ParseError
    from monitor.match import compile_rules
    from monitor.sources import parse_page

FORMATS = ["auto", "hf-json", "hf-html", "hf-text", "arxiv-rss", "arxiv-atom"]


def fuzz_parse(data: bytes) -> None:
    """The first byte picks the format, the rest is the page."""
    if not data:
        return
    try:
        papers = parse_page(data[1:], FORMATS[data[0] % len(FORMATS)], today=date(2026, 6, 14))
    except ParseError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for paper in papers:
        paper.to_json()


def fuzz_config(data: bytes) -> None:
    try:
        compile_rules(parse_settings(data, ENV, base=ROOT / "config").rules)
    except ConfigError as exc:
        assert exc.problems and all(p and "\n" not in p for p in exc.problems), exc.problems


def seeds(target: str) -> list[Path]:
    if target == "parse":
        data = ROOT / "tests" / "data"
        return [*sorted(SHARED.glob("real/*.*")), *sorted(SHARED.glob("seeds/*.txt")),
                *sorted(data.glob("*.json")), *sorted(data.glob("*.xml"))]
    return [ROOT / "config" / "monitor.toml", *sorted((ROOT / "config" / "examples").glob("*.toml"))]


def main() -> None:
    targets: dict[str, Callable[[bytes], None]] = {"parse": fuzz_parse, "config": fuzz_config}
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(targets)}}} [libFuzzer options]")
    target = sys.argv[1]
    work = ROOT / "var" / "fuzz"
    corpus = work / f"{target}-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds(target):
        if not (corpus / seed.name).exists():
            shutil.copyfile(seed, corpus / seed.name)
    options = [f"-artifact_prefix={work}/{target}-", "-max_len=300000", "-rss_limit_mb=4096", "-timeout=20"]
    atheris.Setup([sys.argv[0], *options, *sys.argv[2:], str(corpus)], targets[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
