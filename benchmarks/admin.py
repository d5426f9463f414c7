"""The admin commands with many rules: how long ``status``, ``status --json``, ``retry-dead``,
``discard --dead``, ``why``, ``check-config`` and ``backtest`` take, each run as a user runs it (a new
``paper-monitor`` process), and how many lines ``backtest`` prints.

    .venv/bin/python benchmarks/admin.py [--rules 100000] [--papers 25000] [--dir DIR] [--only CMD ...]

Writes N realistic rules (``match.RuleMaker``, as benchmarks/reload.py writes them) into a rule file,
and a SQLite store of ``--papers`` papers: the recorded pages' papers again and again (each copy a
paper of its own, its title numbered), seen over the past 30 days. ``--dir`` keeps both there, to be
used again by the next run (writing 100,000 rules takes ~15 s). Prints, per command, its wall time
and its CPU time (user + system), its exit code and how many lines it wrote to stdout. CPU time is the
one to compare on a shared machine: others' work inflates the wall time.

Measured on 2 loaded cores (CPU seconds, 100,000 rules, 25,000 papers; before: 8a3fa65):
status 12.6 -> 1.1, status --json 13.6 -> 1.1, retry-dead 13.4 -> 1.1, discard --dead 9.6 -> 1.0,
why 11.4 -> 6.2, why --rule 15.4 -> 9.2, check-config 27.5 -> 15.4, backtest 51.3 -> 44.3 with
137,870 -> 56,804 lines (this store's papers are copies of the pages the rules are drawn from: 18,933
rules match one; "81,067 of 100,000 rules matched nothing" is one line).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from match import ARXIV_ATOM, ARXIV_ATOM_LEGACY, HF_HTML, HF_JSON, SEED_PAGES, load  # noqa: E402
from reload import write_rules  # noqa: E402

from monitor.models import Paper  # noqa: E402
from monitor.store import open_store  # noqa: E402

DAY = 86400.0


def fill_store(url: str, count: int) -> str:
    """``count`` papers, copies of the recorded ones, into the store at ``url``; the first one's key."""
    recorded = load([*SEED_PAGES, HF_JSON, HF_HTML, ARXIV_ATOM, ARXIV_ATOM_LEGACY])
    store = open_store(url)
    try:
        now = time.time()
        made: list[Paper] = []
        for i in range(count):
            paper = recorded[i % len(recorded)]
            copy = i // len(recorded)
            made.append(Paper.build(
                title=f"{paper.title} ({copy})" if copy else paper.title, source=paper.source,
                arxiv_id=f"29{copy:02d}.{i % 100_000:05d}", abstract=paper.abstract, authors=paper.authors,
                authors_count=paper.authors_count, organization=paper.organization,
                organization_id=paper.organization_id, published=paper.published, upvotes=paper.upvotes,
                url=paper.url,
            ))
        for start in range(0, count, 1000):
            seen = now - 29 * DAY * (1 - start / count)
            store.apply_poll(made[start : start + 1000], lambda paper: [], now=seen, deliver=False)
        return made[0].key
    finally:
        store.close()


def run(argv: list[str]) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, exit code, lines on stdout) of ``paper-monitor argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "monitor", *argv], cwd=REPO, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode:
        print(f"  stderr: {done.stderr.strip()[-500:]}")
    return wall, cpu, done.returncode, len(done.stdout.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=25_000)
    parser.add_argument("--dir", type=Path, help="keep the rules and the store here, and use them again")
    parser.add_argument("--only", nargs="*", help="only these commands (status, check-config, backtest...)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="admin-bench-"))
    (root / "rules.d").mkdir(parents=True, exist_ok=True)
    rules, db = root / "rules.d" / "rules.toml", root / "monitor.db"
    began = time.perf_counter()
    if not rules.exists() or rules.read_text().count("[[rules]]") != args.rules:
        write_rules(args.rules, rules, "feed")
    if not db.exists():
        fill_store(f"sqlite:///{db}", args.papers)
    config = root / "monitor.toml"
    config.write_text(f"""[monitor]
database = "sqlite:///{db}"
feeds_dir = "{root}/feeds"
rule_files = ["rules.d/*.toml"]

[[sources]]
name = "hf"
url = "http://127.0.0.1:9/daily.json"
every = "10m"

[[channels]]
name = "feed"
type = "rss"
""")
    ready = time.perf_counter() - began
    print(f"{args.rules:,} rules, {args.papers:,} papers ready in {ready:.1f}s ({root})")
    key = load([SEED_PAGES[0]])[0].key
    commands = {
        "status": ["status"],
        "status --json": ["status", "--json"],
        "retry-dead": ["retry-dead"],
        "discard --dead": ["discard", "--dead"],
        "why": ["why", key],
        "why --rule": ["why", key, "--rule", "rule-7"],
        "check-config": ["check-config"],
        "backtest": ["backtest", "--since", "30d"],
        "backtest --rule": ["backtest", "--since", "30d", "--rule", "rule-7"],
    }
    print(f"{'command':<16} {'wall':>7} {'cpu':>7} {'exit':>4} {'lines':>7}  (today {date.today()})")
    for name, argv in commands.items():
        if args.only and name not in args.only and name.split()[0] not in args.only:
            continue
        wall, cpu, code, lines = run(["--log-level", "warning", *argv, "--config", str(config)])
        print(f"{name:<16} {wall:>6.1f}s {cpu:>6.1f}s {code:>4} {lines:>7}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
