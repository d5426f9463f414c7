"""Delivery speed: webhook messages per second to a local receiver, with connection reuse and without,
and the whole outbox (claim, send, mark in SQLite) on top; then the SMTP part (deliver_email.py).

Run: .venv/bin/python benchmarks/deliver.py [--messages N]
"Without reuse" (the naive baseline) builds a new client, hence a new TCP connection, per message;
"with reuse" is the channel as shipped: one keep-alive httpx.Client for the run.
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

from monitor.channels.base import Alert, Batch  # noqa: E402
from monitor.channels.webhook import WebhookChannel  # noqa: E402
from monitor.config import WebhookConfig  # noqa: E402
from monitor.models import Paper  # noqa: E402
from monitor.outbox import Dispatcher  # noqa: E402
from monitor.store import open_store  # noqa: E402
from tests.helpers import LoopbackServer, QuietHandler  # noqa: E402
from tests.outbox_support import record  # noqa: E402


class Receiver(LoopbackServer):
    """A keep-alive HTTP/1.1 receiver on 127.0.0.1 that answers 200 in one write, without Nagle
    (a split header/body write would measure delayed-ACK stalls, not our client)."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")

        super().__init__(Handler)
        self.url = self.root + "/hook"


def sample(i: int) -> Paper:
    return Paper.build(
        title=f"KV Cache Compression {i}", source="hf-json", arxiv_id=f"2401.{30000 + i}",
        abstract="We compress the KV cache of long-context models. " * 8,
        authors=["Tri Dao", "Song Han", "Ada Lovelace"], url=f"https://arxiv.org/abs/2401.{30000 + i}",
    )


def batches(n: int) -> list[Batch]:
    return [
        Batch(channel="hook", rule="llm", key=f"k{i}", alerts=[Alert(sample(i), ["keyword: kv cache"], i)])
        for i in range(n)
    ]


def webhook_rate(cfg: WebhookConfig, work: list[Batch], *, reuse: bool) -> float:
    start = time.perf_counter()
    if reuse:
        channel = WebhookChannel(cfg)
        try:
            for batch in work:
                channel.send(batch)
        finally:
            channel.close()
    else:
        for batch in work:
            channel = WebhookChannel(cfg)
            try:
                channel.send(batch)
            finally:
                channel.close()
    return len(work) / (time.perf_counter() - start)


def outbox_rate(cfg: WebhookConfig, n: int, batch_size: int) -> tuple[float, int]:
    """Alerts per second through the whole outbox (SQLite on disk), and the messages it took."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        try:
            for start in range(0, n, 500):
                record(store, "llm", [sample(i) for i in range(start, min(n, start + 500))], ["hook"])
            with Dispatcher(store, {"hook": WebhookChannel(cfg)}, batch_size=batch_size) as dispatcher:
                began = time.perf_counter()
                report = dispatcher.run_due()
                elapsed = time.perf_counter() - began
            assert report.sent == n, report.summary()
            return n / elapsed, report.channels["hook"].batches
        finally:
            store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    receiver = Receiver()
    try:
        cfg = WebhookConfig(name="hook", type="webhook", url=receiver.url)
        work = batches(args.messages)
        webhook_rate(cfg, work[:20], reuse=True)  # warm up imports and the server
        naive = webhook_rate(cfg, work[:100], reuse=False)  # slow: 100 are plenty
        closing = cfg.model_copy(update={"headers": {"Connection": "close"}})
        fresh_tcp = webhook_rate(closing, work, reuse=True)
        reused = webhook_rate(cfg, work, reuse=True)
        print(f"webhook, {args.messages} messages of one paper to a loopback receiver:")
        print(f"  new client per message (naive):     {naive:8.1f} msg/s")
        print(f"  one client, new TCP per message:    {fresh_tcp:8.1f} msg/s")
        print(f"  one client, one kept-alive conn:    {reused:8.1f} msg/s"
              f"   ratio {reused / naive:.1f}x naive, {reused / fresh_tcp:.2f}x new TCP")
        one, msgs_one = outbox_rate(cfg, args.messages, batch_size=1)
        many, msgs_many = outbox_rate(cfg, args.messages, batch_size=100)
        print(f"outbox -> webhook, {args.messages} alerts (claim, send, mark in SQLite):")
        print(f"  one alert per message:   {one:8.1f} alerts/s ({msgs_one} messages)")
        print(f"  batches of up to 100:    {many:8.1f} alerts/s ({msgs_many} messages)"
              f"   ratio {many / one:.2f}x")
    finally:
        receiver.close()
    email = REPO / "benchmarks" / "deliver_email.py"
    if email.exists():
        print(flush=True)
        return subprocess.call([sys.executable, str(email), "--messages", str(min(args.messages, 200))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
