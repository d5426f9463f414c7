"""Many webhook channels: what building them costs (at start-up and again at every reload), and what
a daemon holding them costs at rest.

    .venv/bin/python benchmarks/channels.py [--channels 200] [--idle-seconds 20]

Builds the channels three times (a start and two reloads: each build closes the one before), then
starts ``paper-monitor run`` with them on an empty SQLite store and reads its CPU time and threads
over an idle stretch. Times are CPU seconds (time.process_time), steadier than wall time on a shared
machine.
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
from monitor.config import load_settings  # noqa: E402
from monitor.store import open_store  # noqa: E402
from tests.helpers import free_port  # noqa: E402


def rss_mb(pid: str = "self") -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmRSS"))) / 1024


def write_config(root: Path, channels: int) -> Path:
    port, dead = free_port(), free_port()
    hooks = "".join(f'\n[[channels]]\nname = "w{i}"\ntype = "webhook"\nurl = "https://hooks{i}.example/in"\n'
                    for i in range(channels))
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
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
    with (root / "daemon.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        while "paper-monitor running" not in (root / "daemon.log").read_text():
            time.sleep(0.2)
        time.sleep(3)

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / 100

        start = cpu()
        time.sleep(args.idle_seconds)
        used = cpu() - start
        threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
        print(f"daemon at rest: {used / args.idle_seconds:.1%} of a core, {threads} threads, "
              f"resident memory {rss_mb(str(proc.pid)):.0f} MB")
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
