"""A throwaway PostgreSQL server for the tests: initdb in a temp dir, loopback only, fsync off.

``PgServer.start()`` finds the server binaries (PATH, /usr/local/bin, /usr/lib/postgresql/*/bin),
installs Debian's ``postgresql`` package when they are missing and we are root with apt, and
raises ``PgUnavailable`` with the reason when it cannot run a server. As root the server runs as
an unprivileged user (PostgreSQL refuses root). ``PAPER_MONITOR_TEST_PG_URL`` (a SQLAlchemy URL
of a server where the user may CREATE DATABASE) skips all that and uses that server instead;
``PAPER_MONITOR_REQUIRE_PG=1`` makes a missing server fail the tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import free_port

ENV_URL = "PAPER_MONITOR_TEST_PG_URL"
ENV_REQUIRE = "PAPER_MONITOR_REQUIRE_PG"
_BINARIES = ("initdb", "pg_ctl", "postgres")


class PgUnavailable(Exception):
    """No PostgreSQL server can be had here; the message says why."""


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, newest version first; ``None``."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates.append(Path("/usr/local/bin"))

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _BINARIES):
            return bindir
    return None


def _run(
    cmd: list[str], *, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PgUnavailable(f"`{' '.join(cmd)}` took over {timeout:.0f} s") from None


@contextlib.contextmanager
def _one_at_a_time(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block: other processes wait for it."""
    with open(path, "w") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def install_with_apt() -> None:
    """Debian's postgresql package, when we are root and have apt; ``PgUnavailable`` if not."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PgUnavailable("no initdb/pg_ctl/postgres found, and not root with apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + 240  # inside pytest-timeout's 300 s for the first test that asks
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]):
        done = _run(cmd, timeout=max(1.0, deadline - time.monotonic()), env=env)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise PgUnavailable(f"`{' '.join(cmd)}` failed ({done.returncode}): {tail[0]}")


def _server_user() -> str | None:
    """Who runs the server: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PgUnavailable("running as root and there is neither a postgres nor a nobody user")


class PgServer:
    """One PostgreSQL server for a test session; ``new_database()`` gives a fresh, empty database."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.bindir: Path | None = None
        self.admin_url = ""
        self._user: str | None = None
        self._serial = itertools.count(1)
        self._created: list[str] = []  # dropped at stop() on a server that is not ours
        self._options = ""  # the server's command-line options, for a restart
        self.startup_seconds = 0.0

    def start(self) -> None:
        began = time.monotonic()
        external = os.environ.get(ENV_URL)
        if external:
            self.admin_url = external
            self._check()
        else:
            self._start_local()
        self.startup_seconds = time.monotonic() - began

    def _as_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", self._user, "--", *cmd] if self._user else cmd

    def _start_local(self) -> None:
        with _one_at_a_time("/tmp/paper-monitor-pg-install.lock"):  # pytest's workers: one apt-get
            bindir = find_bindir()
            if bindir is None:
                install_with_apt()
                bindir = find_bindir()
                if bindir is None:
                    raise PgUnavailable("installed postgresql, but found no initdb/pg_ctl/postgres "
                                        "afterwards")
        self.bindir = bindir
        self._user = _server_user()
        # Not pytest's tmp_path: its parents are private to root, and the server user must get in.
        self.base = Path(tempfile.mkdtemp(prefix="paper-monitor-pg-", dir="/tmp"))
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        data, log = self.base / "data", self.base / "server.log"
        init = _run(self._as_user([
            str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        ]), timeout=120, cwd=self.base)
        if init.returncode != 0:
            raise PgUnavailable(f"initdb failed: {(init.stderr or init.stdout).strip()[-500:]}")
        for _ in range(3):  # another process may take the free port between our look and the start
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {self.base} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
            )
            started = _run(self._as_user([
                str(bindir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60", "-l", str(log),
                "-o", options,
            ]), timeout=90, cwd=self.base)
            if started.returncode == 0:
                self._options = options
                self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
                self._check()
                return
        text = log.read_text(errors="replace")[-800:] if log.exists() else started.stderr[-800:]
        self.stop()
        raise PgUnavailable(f"the PostgreSQL server did not start: {text.strip()}")

    def _check(self) -> None:
        try:
            engine = sa.create_engine(self.admin_url)
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            engine.dispose()
        except (ImportError, sa.exc.SQLAlchemyError) as exc:
            raise PgUnavailable(f"cannot connect to {self.admin_url}: {exc}") from exc

    def pause(self) -> bool:
        """Stop the server as an upgrade would (``pg_ctl stop -m fast``: every session ends); False
        on a server that is not ours. ``resume`` starts it again, on the same port."""
        return self._pg_ctl("stop", "-m", "fast", "-w")

    def resume(self) -> bool:
        log = str(self.base / "server.log") if self.base else ""
        return self._pg_ctl("start", "-w", "-t", "60", "-l", log, "-o", self._options)

    def _pg_ctl(self, command: str, *options: str) -> bool:
        if self.base is None or self.bindir is None:
            return False
        done = _run(self._as_user([str(self.bindir / "pg_ctl"), command, "-D", str(self.base / "data"),
                                   *options]), timeout=90, cwd=self.base)
        if done.returncode != 0:
            raise PgUnavailable(f"pg_ctl {command} failed: {(done.stderr or done.stdout).strip()[-500:]}")
        return True

    def new_database(self) -> str:
        """A new empty database on the server; its SQLAlchemy URL (psycopg driver)."""
        name = f"pm_test_{os.getpid()}_{next(self._serial)}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            engine.dispose()
        self._created.append(name)
        return sa.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        """Stop the server at once (its data is thrown away) and remove its directory; on a server
        given by ``PAPER_MONITOR_TEST_PG_URL``, drop the databases made for the tests instead."""
        if self.base is None:
            if self.admin_url and self._created:
                engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
                with contextlib.suppress(sa.exc.SQLAlchemyError), engine.connect() as conn:
                    for name in self._created:
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                engine.dispose()
                self._created.clear()
            return
        if self.bindir is not None and (self.base / "data" / "postmaster.pid").exists():
            _run(self._as_user([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.base / "data"),
                                "-m", "immediate", "-w"]), timeout=60, cwd=self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
