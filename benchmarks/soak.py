"""A long run under trouble: the daemon on PostgreSQL while the database goes down now and then (3-15 s
every 30-50 s), Slack answers 500, 503 or 429 at random, and the pages change (upvotes grow past a rule's
threshold, the seed pages rotate). Then what an operator would check: every delivery sent (after the
backoff's waits are let pass), no Slack message twice, the papers in Slack = the Slack deliveries, no
traceback, a clean exit, the daemon's memory.

    .venv/bin/python benchmarks/soak.py [--seconds 300]

Needs PostgreSQL's server binaries (the tests install them: tests/pg_support.py).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.daemon_support import Daemon, source  # noqa: E402
from tests.helpers import HF_JSON, SEED_PAGES, ReplayServer, Reply, free_port  # noqa: E402
from tests.pg_support import PgServer  # noqa: E402
from tests.slack_standin import Answer, Posted, SlackStandIn  # noqa: E402

JSON = {"Content-Type": "application/json"}


def config_text(url: str, tmp: Path, port: int, replay: ReplayServer, slack: SlackStandIn) -> str:
    return (
        f'[monitor]\ndatabase = "{url}"\nfeeds_dir = "{tmp}/feeds"\n\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\n\n'
        + source("hf", replay.url("/hf"), every="2s") + "\n"
        + source("seeds", replay.url("/seeds"), every="3s")
        + f'\n[[channels]]\nname = "team"\ntype = "slack"\ntoken = "{slack.token}"\nchannel = "#papers"\n'
        f'base_url = "{slack.base_url}"\ntimeout = 5\n\n[[channels]]\nname = "feed"\ntype = "rss"\n\n'
        '[[rules]]\nname = "hot"\nmin_upvotes = 30\nnotify = ["team", "feed"]\n\n'
        '[[rules]]\nname = "agents"\nkeywords = ["agent", "agents", "agentic"]\nnotify = ["team"]\n\n'
        '[[rules]]\nname = "all"\nnotify = ["feed"]\n'
    )


def papers_in(message: Posted) -> int:
    blocks: Any = message.payload.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return sum(block.get("type") == "section" for block in blocks)


def rss_mb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    rng = random.Random(4)
    pg = PgServer()
    pg.start()
    stop = threading.Event()
    outages: list[float] = []
    hf = json.loads(HF_JSON.read_bytes())

    def pages() -> None:
        turn = 0
        while not stop.wait(5):
            for item in rng.sample(hf, 5):
                item["paper"]["upvotes"] = item["paper"].get("upvotes", 0) + rng.randint(1, 15)
            replay.route("/hf", Reply(json.dumps(hf).encode(), headers=JSON))
            turn += 1
            replay.route("/seeds", Reply(SEED_PAGES[turn % len(SEED_PAGES)].read_bytes()))

    def slack_trouble() -> None:
        while not stop.wait(2):
            if rng.random() < 0.35 and not slack.scripted:
                slack.script(rng.choice([Answer(500), Answer(503), Answer(429, retry_after=1)]))

    def database_outages() -> None:
        while not stop.wait(rng.uniform(30, 50)):
            down = rng.uniform(3, 15)
            pg.pause()
            outages.append(round(down, 1))
            time.sleep(down)
            pg.resume()

    try:
        url = pg.new_database()
        with tempfile.TemporaryDirectory() as name, ReplayServer() as replay, SlackStandIn() as slack:
            tmp = Path(name)
            replay.route("/hf", Reply(json.dumps(hf).encode(), headers=JSON))
            replay.route("/seeds", Reply(SEED_PAGES[0].read_bytes()))
            port = free_port()
            config = tmp / "monitor.toml"
            config.write_text(config_text(url, tmp, port, replay, slack))
            daemon = Daemon(config, port)
            daemon.wait_up()
            trouble = [threading.Thread(target=f) for f in (pages, slack_trouble, database_outages)]
            for thread in trouble:
                thread.start()
            began, memory = time.monotonic(), []
            while time.monotonic() - began < args.seconds and daemon.proc.poll() is None:
                time.sleep(10)
                memory.append(rss_mb(daemon.proc.pid))
            stop.set()
            for thread in trouble:
                thread.join()
            slack.unscript()
            time.sleep(25)  # everything healthy: let it catch up
            code, took = daemon.stop()
            engine = sa.create_engine(url)
            with engine.begin() as conn:  # the backoff's waits, let pass
                waiting = conn.execute(sa.text("UPDATE deliveries SET next_attempt_at = 0"
                                               " WHERE state IN ('failed', 'pending')")).rowcount
            once = subprocess.run([sys.executable, "-m", "monitor", "once", "--config", str(config)],
                                  capture_output=True, text=True, cwd=REPO, check=False)
            with engine.connect() as conn:
                by_state = sa.text("SELECT state, count(*) FROM deliveries GROUP BY state")
                states = dict(conn.execute(by_state).all())
                slack_sent = conn.execute(sa.text(
                    "SELECT count(*) FROM deliveries WHERE channel = 'team' AND state = 'sent'")).scalar()
            engine.dispose()
            copies = Counter(json.dumps(m.payload.get("blocks"), sort_keys=True) for m in slack.messages)
            log = daemon.log_text()
            polls = len(daemon.polls("hf")) + len(daemon.polls("seeds"))
    finally:
        stop.set()
        pg.stop()
    print(f"{args.seconds:.0f}s; database outages (s): {outages}")
    print(f"daemon: exit {code} in {took:.2f}s after SIGTERM; {polls} polls logged; RSS {memory[0]} -> "
          f"{max(memory)} MB (last {memory[-1]}); tracebacks in its log: {log.count('Traceback')}")
    print(f"lock taken again: {log.count('taken again')}; batches recorded once the store answered: "
          f"{log.count('recorded in the store, which answers again')}")
    print(f"then once (exit {once.returncode}), {waiting} deliveries let past their backoff: {states}")
    print(f"Slack: {len(slack.requests)} requests, {len(slack.messages)} accepted, the most copies of one "
          f"message {max(copies.values(), default=0)}; papers in them {sum(map(papers_in, slack.messages))}, "
          f"Slack deliveries sent {slack_sent}")
    ok = (code == 0 and once.returncode == 0 and set(states) == {"sent"}
          and max(copies.values(), default=1) == 1
          and sum(map(papers_in, slack.messages)) == slack_sent and "Traceback" not in log)
    print("ok" if ok else "PROBLEMS above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
