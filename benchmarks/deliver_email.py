"""Email delivery speed: messages per second to a local aiosmtpd, with connection reuse and without.

Run: .venv/bin/python benchmarks/deliver_email.py [--messages N]
"Without reuse" (the naive baseline) connects, greets, upgrades to TLS and says QUIT for every
message; "with reuse" keeps one connection for the run. Both plain (smtp+plain://) and STARTTLS
(smtp:// with a private CA in ca_file) are measured; the ratio is reuse / no reuse. aiosmtpd runs
in its own process (so it does not share our GIL); "compose" is the floor of building the message.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from monitor.channels.base import Alert, Batch  # noqa: E402
from monitor.channels.email import EmailChannel  # noqa: E402
from monitor.channels.email_body import compose  # noqa: E402
from monitor.config import EmailConfig  # noqa: E402
from monitor.models import Paper  # noqa: E402
from tests.smtp_support import Certs, make_certs, running_smtp  # noqa: E402


def serve(pipe: Connection, certs: Certs | None) -> None:
    """Child process: run aiosmtpd, send back its port, and at the end how many messages it took."""
    options: dict[str, Any] = {}
    if certs is not None:
        options = {"tls_context": certs.server_context(), "require_starttls": True}
    with running_smtp(**options) as (inbox, port):
        pipe.send(port)
        pipe.recv()  # wait until the parent is done
        pipe.send(len(inbox.received))


def batches(n: int) -> list[Batch]:
    papers = [
        Paper.build(title=f"KV Cache Compression {i}", source="hf-json", arxiv_id=f"2401.{30000 + i}",
                    abstract="We compress the KV cache of long-context models. " * 8,
                    authors=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Tri Dao"],
                    organization="Example Lab", upvotes=42,
                    url=f"https://huggingface.co/papers/2401.{30000 + i}")
        for i in range(3)
    ]
    alerts = [Alert(p, ['keyword "kv cache" in abstract'], i, "efficient-llm") for i, p in enumerate(papers)]
    return [Batch("me", "efficient-llm", alerts, f"bench-{i}") for i in range(n)]


def rate(cfg: EmailConfig, work: list[Batch], *, reuse: bool) -> tuple[float, int]:
    """Messages per second over ``work``, and how many connections it took."""
    channel = EmailChannel(cfg, idle_timeout=60.0 if reuse else 0.0)
    start = time.perf_counter()
    try:
        for batch in work:
            channel.send(batch)
    finally:
        channel.close()
    return len(work) / (time.perf_counter() - start), channel.connections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    work = batches(args.messages)
    print(f"{args.messages} messages of 3 papers each to aiosmtpd on 127.0.0.1")
    print(f"{'transport':<12} {'reuse msg/s':>12} {'conns':>6} {'no-reuse msg/s':>15} {'conns':>6} "
          f"{'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        setups: list[tuple[str, Certs | None, str, dict[str, str]]] = [
            ("plain", None, "smtp+plain", {}),
            ("STARTTLS", certs, "smtp", {"ca_file": str(certs.ca_file)}),
        ]
        spawn = multiprocessing.get_context("spawn")
        for label, server_certs, scheme, extra in setups:
            parent, child = spawn.Pipe()
            server = spawn.Process(target=serve, args=(child, server_certs), daemon=True)
            server.start()
            port = parent.recv()
            cfg = EmailConfig.model_validate({
                "name": "me", "type": "email", "smtp_url": f"{scheme}://127.0.0.1:{port}",
                "from": "monitor@example.org", "to": ["me@example.org"], **extra,
            })
            rate(cfg, work[:5], reuse=True)  # warm-up
            # Best of three runs each: the figures are noisy on a shared machine.
            with_reuse, conns_reuse = max(rate(cfg, work, reuse=True) for _ in range(3))
            without, conns_plain = max(rate(cfg, work, reuse=False) for _ in range(3))
            parent.send("done")
            assert parent.recv() == 5 + 6 * len(work)
            server.join(10)
            parent.close()
            child.close()
            print(f"{label:<12} {with_reuse:>12.0f} {conns_reuse:>6} {without:>15.0f} {conns_plain:>6} "
                  f"{with_reuse / without:>5.1f}x")
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for batch in work:
            compose(cfg, batch).as_bytes()
        best = min(best, time.perf_counter() - start)
    print(f"compose (floor): {len(work) / best:.0f} msg/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
