"""Many webhook channels: what building them costs (at start-up and again at every reload), and what
a daemon holding them costs at rest, and while every channel fails.

    .venv/bin/python benchmarks/channels.py [--channels 200] [--idle-seconds 30]

Builds the channels three times (a start and two reloads: each build closes the one before), then
starts ``paper-monitor run`` with them on an empty SQLite store and reads its CPU time and threads
over an idle stretch; then again on a store holding an alert for every channel, each webhook
answered HTTP 503 by a loopback server (every channel retrying on its backoff), from its first tries
on. Times are CPU seconds (time.process_time, /proc/<pid>/stat), steadier than wall time on a
shared machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from monitor.channels import build_channels  # noqa: E402
from monitor.config import RuleConfig, load_settings  # noqa: E402
from monitor.match import compile_rules  # noqa: E402
from monitor.models import Paper  # noqa: E402
from monitor.store import open_store  # noqa: E402
from tests.helpers import ReplayServer, Reply, free_port  # noqa: E402


def rss_mb(pid: str = "self") -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmRSS"))) / 1024


def write_config(root: Path, channels: int, peer: str | None = None) -> Path:
    """200 webhooks at https://hooks<i>.example (never reached: nothing is sent), or at ``peer``."""
    port, dead = free_port(), free_port()
    hooks = "".join(f'\n[[channels]]\nname = "w{i}"\ntype = "webhook"\n'
                    f'url = "{peer or f"https://hooks{i}.example"}/in{i}"\n' for i in range(channels))
    notify = ", ".join(f'"w{i}"' for i in range(channels))
    config = root / "monitor.toml"
    config.write_text(f"""[monitor]
database = "sqlite:///{root}/monitor.db"

[server]
listen = "127.0.0.1:{port}"

[[sources]]
name = "hf"
url = "http://127.0.0.1:{dead}/daily.json"
every = "10m"
{hooks}
[[rules]]
name = "all"
notify = [{notify}]
""")
    return config


def daemon_cpu(root: Path, config: Path, seconds: float, what: str, tries: ReplayServer | None = None
               ) -> None:
    """Start ``paper-monitor run`` on ``config``, 3 s after its start read its CPU time over ``seconds``."""
    log = root / "daemon.log"
    log.write_bytes(b"")
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        while "paper-monitor running" not in log.read_text():
            if proc.poll() is not None:
                raise SystemExit(f"the daemon stopped: {log.read_text()}")
            time.sleep(0.2)
        time.sleep(3)

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / 100

        start, tried = cpu(), len(tries.requests) if tries else 0
        time.sleep(seconds)
        used = cpu() - start
        if tries:
            what += f" ({len(tries.requests) - tried} tries meanwhile)"
        threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
        print(f"daemon {what}: {used / seconds:.1%} of a core over {seconds:.0f}s, {threads} threads, "
              f"resident memory {rss_mb(str(proc.pid)):.0f} MB")
    finally:
        proc.terminate()
        proc.wait(30)


def seed_alerts(database: str, channels: int) -> None:
    """One paper matched by a rule that notifies every channel: an alert pending on each."""
    store = open_store(database)
    paper = Paper.build(title="Efficient inference: a study", source="hf-json", arxiv_id="2406.10001",
                        url="https://huggingface.co/papers/2406.10001")
    store.apply_poll([paper], compile_rules([RuleConfig(name="all", notify=[f"w{i}" for i in
                                                                           range(channels)])]).match)
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="channels-bench-"))
    config = write_config(root, args.channels)
    settings = load_settings(config)
    store = open_store(settings.monitor.database)
    before = rss_mb()
    built: dict[str, object] = {}
    for what in ("start", "reload 1", "reload 2"):
        began = time.process_time()
        fresh = build_channels(settings, store)
        took = time.process_time() - began
        for channel in built.values():
            channel.close()  # type: ignore[attr-defined]
        built = dict(fresh)
        print(f"{what}: {args.channels} webhook channels built in {took:.2f}s CPU; "
              f"resident memory +{rss_mb() - before:.0f} MB")
    store.close()
    daemon_cpu(root, config, args.idle_seconds, "at rest")
    with ReplayServer() as peer:
        for i in range(args.channels):
            peer.route(f"/in{i}", Reply(b"down", 503))
        failing = root / "failing"
        failing.mkdir()
        config = write_config(failing, args.channels, peer=peer.base_url)
        seed_alerts(load_settings(config).monitor.database, args.channels)
        daemon_cpu(failing, config, args.idle_seconds, f"while all {args.channels} channels fail", peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
