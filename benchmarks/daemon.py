"""The daemon at rest and under feed readers: idle memory, idle CPU, feed requests per second.

    .venv/bin/python benchmarks/daemon.py [--idle-seconds 60] [--duration 10]

Starts ``paper-monitor run`` on a store holding 120 matched papers (a 100-item feed), then prints
its resident memory, its CPU use over an idle minute, and feed requests/s on loopback (wrk if
installed, else a Python load generator), plain and conditional, against a naive baseline: a
threaded http.server that renders the feed for every request.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from monitor.channels.rss import render_feed  # noqa: E402
from monitor.config import RssConfig, RuleConfig  # noqa: E402
from monitor.match import compile_rules  # noqa: E402
from monitor.models import Paper  # noqa: E402
from monitor.store import open_store  # noqa: E402
from tests.helpers import free_port  # noqa: E402

ABSTRACT = ("We study how large language models can be made faster at inference time without losing "
            "accuracy, combining speculative decoding with a compressed KV cache. ") * 6


def seed_store(root: Path) -> str:
    """A store with 120 papers matched by one rule that notifies the feed (pending deliveries)."""
    url = f"sqlite:///{root}/bench.db"
    store = open_store(url)
    papers = [
        Paper.build(title=f"Efficient inference, part {i}: a study", source="hf-json",
                    arxiv_id=f"2406.{10000 + i}", abstract=ABSTRACT,
                    authors=["Ada Lovelace", "Alan Turing", "Grace Hopper"], upvotes=i,
                    url=f"https://huggingface.co/papers/2406.{10000 + i}")
        for i in range(120)
    ]
    index = compile_rules([RuleConfig(name="all", notify=["feed"])])
    store.apply_poll(papers, index.match)
    store.close()
    return url


def write_config(root: Path, database: str, port: int, source_url: str) -> Path:
    config = root / "bench.toml"
    config.write_text(
        f'[monitor]\ndatabase = "{database}"\nfeeds_dir = "{root}/feeds"\n\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\n\n'
        f'[[sources]]\nname = "hf"\nurl = "{source_url}"\nevery = "15m"\n\n'
        '[[channels]]\nname = "feed"\ntype = "rss"\nmax_items = 100\n\n'
        '[[rules]]\nname = "all"\nnotify = ["feed"]\n'
    )
    return config


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, seconds: float, headers: dict[str, str]) -> float:
    """Requests per second: wrk when installed (2 threads, 50 connections), else Python threads."""
    if shutil.which("wrk"):
        args = ["wrk", "-t2", "-c50", f"-d{seconds:g}s"]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            print(f"    (wrk: {errors.group(1)} non-2xx/3xx responses)")
        return float(match.group(1)) if match else 0.0
    return python_load(url, seconds, headers)


def python_load(url: str, seconds: float, headers: dict[str, str], workers: int = 8) -> float:
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    done = [0] * workers
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = HTTPConnection(name, int(port), timeout=10)
        while time.monotonic() < stop:
            conn.request("GET", "/" + rest, headers=headers)
            conn.getresponse().read()
            done[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def naive_server(database: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """The baseline: a threaded http.server rendering the feed from the store on every request."""
    store = open_store(database)
    cfg = RssConfig(name="feed", type="rss", max_items=100)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = render_feed(store, cfg, "rss")
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except ConnectionError:
                self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="paper-monitor-bench-"))
    database = seed_store(root)
    page = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyDay)
    page.daemon_threads = True
    threading.Thread(target=page.serve_forever, daemon=True).start()
    port = free_port()
    config = write_config(root, database, port, f"http://127.0.0.1:{page.server_address[1]}/api/daily_papers")
    log = (root / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        etag = _wait_for_feed(base, proc)
        time.sleep(3)
        tool = "wrk -t2 -c50" if shutil.which("wrk") else "Python threads"
        print(f"paper-monitor daemon benchmark ({os.cpu_count()} CPUs, load generator: {tool})")
        print(f"  idle resident memory after start: {rss_kb(proc.pid) / 1024:.1f} MB   (target < 80 MB)")
        before, began = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        share = (cpu_seconds(proc.pid) - before) / (time.monotonic() - began)
        print(f"  CPU over {args.idle_seconds:.0f} idle seconds: {share * 100:.2f}%   (target < 1%)")
        feed = httpx.get(f"{base}/feeds/feed.xml")
        print(f"  feed: {feed.content.count(b'<item>')} items, {len(feed.content) / 1024:.0f} KiB")
        url = f"{base}/feeds/feed.xml"
        plain = load(url, args.duration, {})
        conditional = load(url, args.duration, {"If-None-Match": etag})
        zipped = load(url, args.duration, {"Accept-Encoding": "gzip"})
        print(f"  feed requests/s, plain:        {plain:9.0f}   (target >= 2,000)")
        print(f"  feed requests/s, conditional:  {conditional:9.0f}   (304 Not Modified)")
        print(f"  feed requests/s, gzip:         {zipped:9.0f}")
        print(f"  memory after the load: {rss_kb(proc.pid) / 1024:.1f} MB")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        log.close()
        page.shutdown()
        page.server_close()
    httpd, _ = naive_server(database)
    naive = load(f"http://127.0.0.1:{httpd.server_address[1]}/feeds/feed.xml", min(5.0, args.duration), {})
    httpd.shutdown()
    httpd.server_close()
    print(f"  naive baseline (http.server, render per request): {naive:.0f} requests/s;"
          f" plain feed is {plain / max(naive, 1e-9):.0f}x that")
    print(f"  daemon exit code after SIGTERM: {code}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


class _EmptyDay(BaseHTTPRequestHandler):
    """The source: HF's API on a day with no papers (`[]` is a legitimate empty day)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _wait_for_feed(base: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}")
        try:
            reply = httpx.get(f"{base}/feeds/feed.xml", timeout=2)
            if reply.status_code == 200 and reply.content.count(b"<item>") >= 100:
                return reply.headers["etag"]
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the feed did not fill up within 30 s")


if __name__ == "__main__":
    raise SystemExit(main())
