"""A daemon with many rules: how long /healthz/live stalls while a reload compiles them again, and how
long a stop takes (and how much of it comes after the ``stopped`` line).

    .venv/bin/python benchmarks/reload.py [--rules 100000] [--reloads 2]

Writes N realistic rules (``match.RuleMaker``, as benchmarks/match.py) into a rule file, starts
``paper-monitor run`` on a fresh SQLite store (its one source answers nothing: no polls' work), probes
/healthz/live every 0.1 s from a thread, sends SIGHUP and waits for each ``reloaded`` line, then SIGTERM.
Prints the longest probe during each reload, the time to exit and what came after ``stopped``, the exit
code and the last log line. Wall times: a loaded machine inflates them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from match import ARXIV_ATOM, ARXIV_ATOM_LEGACY, HF_HTML, HF_JSON, SEED_PAGES, RuleMaker, load  # noqa: E402

from tests.helpers import free_port  # noqa: E402


def write_rules(n: int, out: Path, notify: str) -> None:
    source = load(SEED_PAGES[:2])
    papers = load([SEED_PAGES[2], HF_JSON, HF_HTML, ARXIV_ATOM, ARXIV_ATOM_LEGACY])
    names = sorted({name for p in load([HF_JSON, HF_HTML]) for name in p.authors})
    orgs = sorted({o for p in load([HF_JSON, HF_HTML]) for o in (p.organization_id, p.organization) if o})
    maker = RuleMaker(source, source + papers, names, orgs)
    lines = []
    for i in range(n):
        r = maker.rule(i)
        lines += ["[[rules]]", f"name = {json.dumps(r.name)}"]
        for k in ("keywords", "authors", "organizations", "exclude"):
            if v := getattr(r, k):
                lines.append(f"{k} = [{', '.join(json.dumps(x) for x in v)}]")
        if r.query:
            lines.append(f"query = {json.dumps(r.query)}")
        if r.min_upvotes:
            lines.append(f"min_upvotes = {r.min_upvotes}")
        lines += [f'notify = ["{notify}"]', ""]
    out.write_text("\n".join(lines))


class Prober(threading.Thread):
    """GET /healthz/live every 0.1 s; (time sent, seconds taken) of each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.done = url, list[tuple[float, float]](), threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                began = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    client.get(self.url)
                self.samples.append((began, time.monotonic() - began))
                time.sleep(0.1)

    def worst(self, since: float, until: float) -> float:
        return max((d for t, d in self.samples if since <= t <= until), default=0.0)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmRSS"))) / 1024


def wait_line(log: Path, text: str, count: int, timeout: float) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.read_text(errors="replace").count(text) >= count:
            return time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"no {count} x {text!r} in {log} after {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--reloads", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reload-bench-"))
    (root / "rules.d").mkdir()
    began = time.perf_counter()
    write_rules(args.rules, root / "rules.d" / "rules.toml", "feed")
    print(f"{args.rules} rules written in {time.perf_counter() - began:.1f}s ({root})")
    port, dead = free_port(), free_port()
    config = root / "monitor.toml"
    config.write_text(f"""[monitor]
database = "sqlite:///{root}/monitor.db"
feeds_dir = "{root}/feeds"
rule_files = ["rules.d/*.toml"]

[server]
listen = "127.0.0.1:{port}"

[[sources]]
name = "hf"
url = "http://127.0.0.1:{dead}/daily.json"
every = "10m"

[[channels]]
name = "feed"
type = "rss"
""")
    log = root / "daemon.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    started = time.monotonic()
    wait_line(log, "paper-monitor running", 1, 600)
    print(f"running after {time.monotonic() - started:.1f}s, resident memory {rss_mb(proc.pid):.0f} MB")
    prober = Prober(f"http://127.0.0.1:{port}/healthz/live")
    prober.start()
    time.sleep(3)
    print(f"at rest: longest /healthz/live {prober.worst(0, time.monotonic()):.3f}s")
    for i in range(1, args.reloads + 1):
        sent = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        done = wait_line(log, "reloaded ", i, 600)
        time.sleep(6)  # the old rules are let go after the line, a slice at a time
        worst = prober.worst(sent, time.monotonic())
        print(f"reload {i}: {done - sent:.1f}s, longest /healthz/live {worst:.3f}s, "
              f"resident memory {rss_mb(proc.pid):.0f} MB")
    prober.done.set()
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stopped = wait_line(log, "stopped\n", 1, 60)
    code = proc.wait(60)
    gone = time.monotonic()
    last = log.read_text(errors="replace").rstrip("\n").splitlines()[-1]
    print(f"stop: exit {code} after {gone - sent:.2f}s, {gone - stopped:.2f}s of it after the 'stopped' line;"
          f" last line: {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
