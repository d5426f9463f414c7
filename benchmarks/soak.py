"""A long run under trouble: the daemon on PostgreSQL while the database goes down now and then (3-15 s
every 30-50 s), Slack answers 500, 503 or 429 at random, and the pages change (upvotes grow past a rule's
threshold, the seed pages rotate). Then what an operator would check: every delivery sent (after the
backoff's waits are let pass), no Slack message twice, the papers in Slack = the Slack deliveries, no
traceback, a clean exit, the daemon's memory.

    .venv/bin/python benchmarks/soak.py [--seconds 300] [--failover]

``--failover``: two daemons, the second ``run --standby``; every 40-70 s the one at work is killed
(SIGKILL) and started again as the standby, so the other takes over. Only a batch in flight at a
kill may reach Slack twice; the figures say how many did, and how long each takeover took.

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

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import monitor.standby as standby_module  # noqa: E402
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
    parser.add_argument("--failover", action="store_true", help="kill the daemon at work now and then")
    args = parser.parse_args()
    rng = random.Random(4)
    pg = PgServer()
    pg.start()
    stop = threading.Event()
    outages: list[float] = []
    kills: list[str] = []  # for each kill of the daemon at work, the seconds until another was at work
    last_outage: list[float] = []  # when (monotonic) the last database outage began and ended
    hf = json.loads(HF_JSON.read_bytes())
    daemons: list[Daemon] = []
    restarts: list[str] = []  # why a daemon exited at start
    exits: list[str] = []  # why a daemon at work exited (its lock taken in a database outage)
    handled: set[int] = set()  # the daemons (by pid) whose end is accounted for

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
            last_outage[:] = [time.monotonic(), time.monotonic() + down]
            time.sleep(down)
            pg.resume()
            last_outage[1] = time.monotonic()

    def start(tmp: Path, *options: str) -> Daemon:
        """A daemon, started again 5 s after it exits at start (the database is down), as systemd's
        Restart=on-failure would."""
        while True:
            port = free_port()
            config = tmp / f"monitor-{len(daemons)}.toml"
            config.write_text(config_text(url, tmp, port, replay, slack))
            daemon = Daemon(config, port, *options, log_name=f"daemon-{len(daemons)}.log")
            daemons.append(daemon)
            try:
                daemon.wait_up()
                return daemon
            except AssertionError:  # it exited: "upgrading the schema: ... Connection refused"
                handled.add(daemon.proc.pid)
                restarts.append(daemon.log_text().strip().splitlines()[-1][:120])
                time.sleep(5)

    def failovers(tmp: Path) -> None:
        """Kill the daemon at work every 40-70 s; start a standby for each daemon that ends (as a
        supervisor would)."""
        next_kill = time.monotonic() + rng.uniform(40, 70)
        while not stop.wait(1):
            for ended in [d for d in daemons if d.proc.poll() is not None and d.proc.pid not in handled]:
                handled.add(ended.proc.pid)
                lines = ended.log_text().strip().splitlines() or ["(no log)"]
                why = next((line for line in lines if "lost the store's lock" in line), lines[-1])
                exits.append(why[:200])
                start(tmp, "--standby")
            if time.monotonic() < next_kill:
                continue
            next_kill = time.monotonic() + rng.uniform(40, 70)
            victim = at_work()
            if victim is None:  # between two daemons (the database is away): try at the next turn
                continue
            killed = time.monotonic()
            handled.add(victim.proc.pid)
            victim.kill()
            while (successor := at_work()) is None and time.monotonic() - killed < 120 and not stop.is_set():
                time.sleep(0.2)
            took = round(time.monotonic() - killed, 1) if successor else float("nan")
            # A kill during an outage, or within the standby's quiet after it, waits for both.
            near = last_outage and last_outage[0] - 1 <= killed <= last_outage[1] + standby_module.QUIET
            kills.append(f"{took}{' (near an outage)' if near else ''}")
            start(tmp, "--standby")

    def at_work() -> Daemon | None:
        """The daemon that says (in /metrics) it polls and delivers."""
        for daemon in daemons:
            if daemon.proc.poll() is None:
                try:
                    if "paper_monitor_active 1.0" in daemon.get("/metrics").text:
                        return daemon
                except httpx.HTTPError:
                    continue
        return None

    try:
        url = pg.new_database()
        with tempfile.TemporaryDirectory() as name, ReplayServer() as replay, SlackStandIn() as slack:
            tmp = Path(name)
            replay.route("/hf", Reply(json.dumps(hf).encode(), headers=JSON))
            replay.route("/seeds", Reply(SEED_PAGES[0].read_bytes()))
            daemon = start(tmp)
            config = daemon.config
            jobs = [pages, slack_trouble, database_outages]
            if args.failover:
                start(tmp, "--standby")
            trouble = [threading.Thread(target=f) for f in jobs]
            if args.failover:
                trouble.append(threading.Thread(target=failovers, args=(tmp,)))
            for thread in trouble:
                thread.start()
            began, memory = time.monotonic(), []
            while time.monotonic() - began < args.seconds and (args.failover or daemon.proc.poll() is None):
                time.sleep(10)
                memory.append(rss_mb(daemon.proc.pid) if daemon.proc.poll() is None else memory[-1])
            stop.set()
            for thread in trouble:
                thread.join()
            slack.unscript()
            time.sleep(25)  # everything healthy: let it catch up
            running = [d for d in daemons if d.proc.poll() is None]
            stops = [d.stop() for d in running]
            code = max(c for c, _ in stops)
            took = max(t for _, t in stops)
            engine = sa.create_engine(url)
            with engine.begin() as conn:  # the backoff's waits, let pass
                waiting = conn.execute(sa.text("UPDATE deliveries SET next_attempt_at = 0"
                                               " WHERE state IN ('failed', 'pending')")).rowcount
                # And the minute a fresh start leaves to a daemon that may still be sending (on
                # PostgreSQL the lock cannot tell): every daemon has stopped.
                conn.execute(sa.text("UPDATE deliveries SET claimed_at = claimed_at - 3600"
                                     " WHERE state = 'sending'"))
            once = subprocess.run([sys.executable, "-m", "monitor", "once", "--config", str(config)],
                                  capture_output=True, text=True, cwd=REPO, check=False)
            with engine.connect() as conn:
                by_state = sa.text("SELECT state, count(*) FROM deliveries GROUP BY state")
                states = dict(conn.execute(by_state).all())
                slack_sent = conn.execute(sa.text(
                    "SELECT count(*) FROM deliveries WHERE channel = 'team' AND state = 'sent'")).scalar()
            engine.dispose()
            copies = Counter(json.dumps(m.payload.get("blocks"), sort_keys=True) for m in slack.messages)
            unique = {json.dumps(m.payload.get("blocks"), sort_keys=True): m for m in slack.messages}
            log = "".join(d.log_text() for d in daemons)
            polls = sum(len(d.polls("hf")) + len(d.polls("seeds")) for d in daemons)
            takeovers = log.count("taking over")
    finally:
        stop.set()
        pg.stop()
    print(f"{args.seconds:.0f}s; database outages (s): {outages}")
    if args.failover:
        print(f"failover: {len(kills)} kills of the daemon at work, {takeovers} takeovers; seconds from "
              f"kill to another at work (its /metrics): {kills}; {len(daemons)} daemons started in all, "
              f"{len(restarts)} of "
              f"them exited at start ({sorted(set(restarts))}) and were started again 5 s later; "
              f"{len(exits)} daemons at work stopped by themselves and were started again as standbys: "
              f"{exits}")
    print(f"daemon: exit {code} in {took:.2f}s after SIGTERM; {polls} polls logged; RSS {memory[0]} -> "
          f"{max(memory)} MB (last {memory[-1]}); tracebacks in its log: {log.count('Traceback')}")
    print(f"lock taken again: {log.count('taken again')}; batches recorded once the store answered: "
          f"{log.count('recorded in the store, which answers again')}")
    print(f"then once (exit {once.returncode}), {waiting} deliveries let past their backoff: {states}")
    papers = sum(map(papers_in, unique.values()))
    print(f"Slack: {len(slack.requests)} requests, {len(slack.messages)} accepted, the most copies of one "
          f"message {max(copies.values(), default=0)}; papers in them {papers}, Slack deliveries sent "
          f"{slack_sent}")
    twice = sum(n - 1 for n in copies.values())
    if args.failover:
        print(f"messages that reached Slack twice: {twice} (at most one in flight per kill: {len(kills)})")
    in_flight = len(kills) if args.failover else 0  # a batch being sent when its daemon was killed
    ok = (code == 0 and once.returncode == 0 and set(states) == {"sent"}
          and twice <= in_flight and (args.failover or max(copies.values(), default=1) == 1)
          and papers == slack_sent and "Traceback" not in log)
    print("ok" if ok else "PROBLEMS above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
