"""Coverage-guided fuzzing of what reads untrusted input, with atheris (libFuzzer): `make fuzz`.

    python tests/fuzz.py parse  [libFuzzer options]   # pages: a ParseError or valid papers
    python tests/fuzz.py config [libFuzzer options]   # config files: a ConfigError or settings
    python tests/fuzz.py query  [libFuzzer options]   # rule queries: a ConfigError with a column, or rules
    python tests/fuzz.py match  [libFuzzer options]   # the index and tests/match_reference.py agree

Not part of `make test`: it runs until stopped (or ``-max_total_time=N``). It starts from the recorded
pages, the shipped configs and a few queries; a crash is written to ``var/fuzz/<target>-crash-*``
(``python tests/fuzz.py <target> <that file>`` replays it) and belongs in a test
(tests/test_parser_properties.py, test_config_properties.py, test_match_query.py,
test_match_properties.py) once fixed. A page's papers must be fit to alert: a title with a word in
it, the documented key. The corpora in var/fuzz/ are not committed.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.match_reference
SHARED = ROOT.parent / "shared" / "fixtures"
ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x", "SLACK_BOT_TOKEN": "xoxb-1",
       "SMTP_USER": "u", "SMTP_PASSWORD": "p", "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
       "FEED_TOKEN": "t0ken", "DB_PASSWORD": "x"}

with atheris.instrument_imports(include=["monitor"]):
    from datetime import date

    from pydantic import ValidationError

    import monitor.sources.arxiv
    import monitor.sources.hf_html
    import monitor.sources.hf_json
    import monitor.sources.hf_text  # noqa: F401  # (imported here to be instrumented)
    from monitor.config import RuleConfig, parse_settings
    from monitor.errors import ConfigError, ParseError
    from monitor.match import compile_rules
    from monitor.models import Paper, clean_arxiv_id, collapse, normalize_title, title_key
    from monitor.sources import parse_page
    from tests.match_reference import ReferenceMatcher

QUERY_SEEDS = ['"kv cache" OR title:quantiz*', 'author:"Tri Dao" AND NOT org:caltech',
               'upvotes:>=10 (a OR b)', 'abstract:("speculative decoding" -x)',
               "NOT (title:x AND NOT y)", 'org:"Kolors Team"']
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
        check_paper(paper)


def check_paper(paper: Paper) -> None:
    """What would alert: a key of the documented shape, a title with a word in it, text as collapsed."""
    assert paper.title and collapse(paper.title) == paper.title, paper
    assert normalize_title(paper.title), paper  # a title of punctuation alone is no paper
    assert paper.arxiv_id is None or clean_arxiv_id(paper.arxiv_id) == paper.arxiv_id, paper
    assert paper.key == (f"arxiv:{paper.arxiv_id}" if paper.arxiv_id else title_key(paper.title)), paper
    for text in (paper.abstract, paper.organization, *paper.authors):
        assert text is None or (text and collapse(text) == text), paper
    paper.to_json()


def fuzz_config(data: bytes) -> None:
    try:
        compile_rules(parse_settings(data, ENV, base=ROOT / "config").rules)
    except ConfigError as exc:
        # one line each, "<where in the file>: <what is wrong>"
        assert exc.problems and all(p.split(": ", 1)[0] and ": " in p and "\n" not in p
                                    for p in exc.problems), exc.problems


def fuzz_query(data: bytes) -> None:
    """The bytes are the query of a rule, as a config would hold it."""
    text = data.decode("utf-8", errors="replace")
    try:
        rule = RuleConfig(name="r", query=text)
    except ValidationError as exc:
        assert all(error["loc"] == ("query",) for error in exc.errors()), exc
        return
    try:
        index = compile_rules([rule])
    except ConfigError as exc:
        assert exc.problems and all(p.startswith("rules[0]") and "\n" not in p for p in exc.problems), exc
        return
    paper = Paper.build(title=text[:200] or "t", abstract=text, authors=[text[:40]], organization=text[:20],
                        organization_id=text[:20], upvotes=len(text), source="fuzz")
    assert [h.rule for h in index.match(paper)] == ReferenceMatcher([rule]).match(paper), text


_WORDS = ["kv", "cache", "quantiz*", "café", "straße", "ﬁ", "İ", "ǅ", "x²", "Ⅻ", "Tri Dao", "J.-Y. Zhu",
          "Đào", "MIT", "a-b", "a/b", "'s", "\\alpha", "$x$", "kv-cache", "①", "ß", "ı", "µ", "Å", "ᾳ", "ﬀ"]


def _text(fdp: atheris.FuzzedDataProvider) -> str:
    """A few words from a small vocabulary (so that rules and papers meet) or odd unicode."""
    parts = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        if fdp.ConsumeBool():
            parts.append(_WORDS[fdp.ConsumeIntInRange(0, len(_WORDS) - 1)])
        else:
            parts.append(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(1, 8)))
        parts.append([" ", "-", "", " ", "\t"][fdp.ConsumeIntInRange(0, 4)])
    return "".join(parts)


def fuzz_match(data: bytes) -> None:
    """A few rules and papers from a vocabulary and odd unicode: the index and the reference agree."""
    fdp = atheris.FuzzedDataProvider(data)
    rules: list[RuleConfig] = []
    for number in range(fdp.ConsumeIntInRange(1, 3)):
        try:
            rules.append(RuleConfig(
                name=f"r{number}",
                keywords=[_text(fdp) for _ in range(fdp.ConsumeIntInRange(0, 2))],
                authors=[_text(fdp) for _ in range(fdp.ConsumeIntInRange(0, 1))],
                organizations=[_text(fdp) for _ in range(fdp.ConsumeIntInRange(0, 1))],
                query=_text(fdp) if fdp.ConsumeBool() else None,
                exclude=[_text(fdp) for _ in range(fdp.ConsumeIntInRange(0, 1))],
            ))
        except ValidationError:
            continue
    try:
        index = compile_rules(rules)
    except ConfigError:
        return
    reference = ReferenceMatcher(rules)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        org = _text(fdp) or None
        paper = Paper.build(title=_text(fdp) or "t", abstract=_text(fdp) or None,
                            authors=[_text(fdp) for _ in range(fdp.ConsumeIntInRange(0, 2))],
                            organization_id=org, organization=org, upvotes=fdp.ConsumeIntInRange(0, 9),
                            source="fuzz")
        found = [h.rule for h in index.order(index.match(paper))]
        assert found == reference.match(paper), (rules, paper)


def seeds(target: str) -> list[Path]:
    if target == "parse":
        data = ROOT / "tests" / "data"
        return [*sorted(SHARED.glob("real/*.*")), *sorted(SHARED.glob("seeds/*.txt")),
                *sorted(data.glob("*.json")), *sorted(data.glob("*.xml"))]
    if target == "query":
        return []  # written by main() from the test suite's queries
    return [ROOT / "config" / "monitor.toml", *sorted((ROOT / "config" / "examples").glob("*.toml"))]


def main() -> None:
    targets: dict[str, Callable[[bytes], None]] = {"parse": fuzz_parse, "config": fuzz_config,
                                                    "query": fuzz_query, "match": fuzz_match}
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(targets)}}} [libFuzzer options]")
    target = sys.argv[1]
    work = ROOT / "var" / "fuzz"
    corpus = work / f"{target}-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds(target):
        if not (corpus / seed.name).exists():
            shutil.copyfile(seed, corpus / seed.name)
    if target == "query":
        for number, query in enumerate(QUERY_SEEDS):
            (corpus / f"seed-{number}").write_text(query)
    options = [f"-artifact_prefix={work}/{target}-", "-max_len=300000", "-rss_limit_mb=4096", "-timeout=20"]
    # Given files (a crash to replay), libFuzzer runs just them; else it fuzzes from the corpus.
    replay = any(Path(arg).is_file() for arg in sys.argv[2:])
    atheris.Setup([sys.argv[0], *options, *sys.argv[2:], *([] if replay else [str(corpus)])], targets[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
