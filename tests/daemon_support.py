"""Helpers for the daemon tests: a real ``paper-monitor run`` subprocess, a config writer, an SMTP inbox."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from tests.helpers import free_port


def write_config(tmp: Path, *, port: int, sources: str, channels: str, rules: str) -> Path:
    path = tmp / "monitor.toml"
    path.write_text(
        f'[monitor]\ndatabase = "sqlite:///{tmp}/monitor.db"\nfeeds_dir = "{tmp}/feeds"\n\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\n\n{sources}\n{channels}\n{rules}\n',
        encoding="utf-8",
    )
    return path


def source(name: str, url: str, every: str = "1s", timeout: str = "2s", fmt: str = "auto") -> str:
    return (f'[[sources]]\nname = "{name}"\nurl = "{url}"\nevery = "{every}"\ntimeout = "{timeout}"\n'
            f'format = "{fmt}"\n')


class Daemon:
    """``paper-monitor --log-format json run`` as a child process, its log in a file; ``tune``
    sets constants in it (``{"monitor.daemon.PRUNE_RETRY": 1.0}``: seconds, not minutes)."""

    def __init__(self, config: Path, port: int, *options: str, log_name: str = "daemon.log",
                 tune: dict[str, float] | None = None) -> None:
        self.config = config
        self.port = port
        self.log_path = config.parent / log_name
        self.base = f"http://127.0.0.1:{port}"
        self._log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        program = ["-m", "monitor"] if not tune else [
            "-c", "import importlib, sys\nfrom monitor.cli import main\n"
                  f"for name, value in {tune!r}.items():\n"
                  "    module, _, constant = name.rpartition('.')\n"
                  "    setattr(importlib.import_module(module), constant, value)\n"
                  "sys.exit(main(sys.argv[1:]))"]
        self.proc = subprocess.Popen(
            [sys.executable, *program, "--log-format", "json", "run", "--config", str(config), *options],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=config.parent, env=env,
        )
        self.started = time.monotonic()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            return client.get(path, **kwargs)

    def wait_up(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}:\n{self.log_text()}"
            try:
                return self.get("/healthz/live").status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_for(up, timeout, "the daemon's HTTP server")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig``; the exit code and how long the exit took."""
        began = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return code, time.monotonic() - began

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def polls(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.log_records() if r.get("source") == name and "papers" in r]


def unsent(tmp: Path) -> int:
    """Deliveries not sent yet in the SQLite store ``write_config`` puts in ``tmp``."""
    db = sqlite3.connect(tmp / "monitor.db", timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM deliveries WHERE state != 'sent'").fetchone()[0])
    finally:
        db.close()


def cli(config: Path, *args: str, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``paper-monitor ARGS --config CONFIG`` run to its end in the config's directory (in ``env``,
    else this process's environment)."""
    return subprocess.run([sys.executable, "-m", "monitor", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=config.parent, env=env)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Inbox:
    """An aiosmtpd server on 127.0.0.1 keeping each message's bytes; ``delay`` slows every DATA."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[bytes] = []
        self.delay = delay
        self.sessions: list[tuple[float, float]] = []  # (DATA received, answered) monotonic times
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())
        self.controller.start()
        self.port: int = self.controller.port

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        began = time.monotonic()
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.messages.append(bytes(envelope.original_content or envelope.content))
            self.sessions.append((began, time.monotonic()))
        return "250 OK"

    def close(self) -> None:
        self.controller.stop()
