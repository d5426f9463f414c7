"""One process polls and delivers for a store at a time.

A process that delivers starts by taking back the deliveries an earlier run left "sending" (it
crashed mid-send); were another process sending them right now, they would go out twice. So ``run``
and ``once`` hold a lock the operating system or the database server lets go of when the process
ends, however it ends: ``flock`` on ``<database>.lock`` beside a SQLite file (the file itself, by
whatever link or URI the URL names it), a session advisory lock on PostgreSQL. A second one stops
with a line naming the holder. Commands that only look (``status``, ``backtest``) or only store
(``backfill``) take no lock.

A lock can be lost under a live process: the PostgreSQL session ends with a server restart, an
operator deletes a "stale" lock file. ``confirm`` finds out, and takes the lock again (or says who
has it now), so the daemon confirms before it claims what to send. It finds out too when the SQLite
file itself was removed or replaced (``StoreGone``): the process works on a file no other can open
(and the next start would not see), so it should stop.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import StoreError
from monitor.logs import utc_text
from monitor.store.base import reason, sqlite_file

log = logging.getLogger(__name__)

_PG_KEY = 0x7061706572_6D6F6E  # "papermon": the session advisory lock of the process that delivers
_APP = "paper-monitor "  # application_name of the connection holding it: this and the holder's line
CONFIRM_EVERY = 1.0  # seconds a confirmed lock is taken on trust before ``confirm`` looks again


class StoreBusy(StoreError):
    """Another process holds the store's lock; ``holder`` is its line (``run, pid 1234 on host, since
    ...``)."""

    def __init__(self, message: str, holder: str = "a process") -> None:
        super().__init__(message)
        self.holder = holder


class StoreGone(StoreError):
    """The SQLite file of a process holding its lock was removed, or replaced by another file."""


class Held:
    """A lock this process holds."""

    # Whether the lock is let go only when its holder's process ends (or a person deletes its
    # file): then taking it proves the holder before is gone. A PostgreSQL session can end in an
    # outage while its process lives on, inside a send it may yet finish and record.
    ends_with_process = True

    def __init__(self) -> None:
        self._guard = threading.Lock()  # the channels' threads confirm at once
        self._confirmed = time.monotonic()

    def confirm(self) -> None:
        """Still held (taken again if it was lost and is free); ``StoreBusy`` if another process
        has taken it since, ``StoreError`` if that cannot be told now. An answer is trusted for
        ``CONFIRM_EVERY`` seconds."""
        with self._guard:
            if time.monotonic() - self._confirmed >= CONFIRM_EVERY:
                self._check()
                self._confirmed = time.monotonic()

    def _check(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


def take(engine: Engine, command: str, patience: float = 2.0) -> Held:
    """The lock of the store on ``engine``; ``StoreBusy`` naming the holder if another process has
    it (on SQLite, once it has for ``patience`` seconds). A SQLite store in memory is refused: the
    process that polls and delivers must leave its store to the next (a new one alerts every paper
    of its first polls again)."""
    shown = engine.url.render_as_string(hide_password=True)
    if engine.url.get_backend_name() == "postgresql":
        return AdvisoryLock(engine, command, shown)
    path, database = _lock_file(engine.url), sqlite_file(engine.url)
    if path is None or database is None:
        raise StoreError(f"{shown} is a store in memory, gone when this process ends (the next start "
                         "would alert the papers it finds again): give monitor.database a file")
    return FileLock(path, command, shown, patience, store=Path(os.path.abspath(database)))


def _lock_file(url: URL) -> Path | None:
    """``<database>.lock`` beside the file SQLite opens, symbolic links followed: the store's own
    lock however the URL names it (a link to it, a ``file:`` URI)."""
    database = sqlite_file(url)
    if database is None:
        return None
    real = Path(os.path.realpath(database))
    return real.with_name(real.name + ".lock")


def holder_line(command: str) -> str:
    """Who holds the lock: ``run, pid 1234 on host, since 2026-11-30 22:57:03 UTC``."""
    return f"{command}, pid {os.getpid()} on {socket.gethostname()}, since {utc_text()}"


_HOLDER = re.compile(r"(?P<command>.+), pid (?P<pid>\d+) on (?P<host>.+), since "
                     r"(?P<day>\d{4}-\d\d-\d\d) (?P<time>\d\d:\d\d(?::\d\d)?) UTC")


def holder_fields(line: str) -> dict[str, object] | None:
    """``holder_line``'s parts, for scripts: command, pid, host, since (ISO 8601, UTC; a line of an
    older version, to the minute, has seconds 00)."""
    found = _HOLDER.fullmatch(line)
    if found is None:
        return None
    return {"command": found["command"], "pid": int(found["pid"]), "host": found["host"],
            "since": f"{found['day']}T{found['time']}{'' if found['time'].count(':') == 2 else ':00'}Z"}


def _busy(holder: str, database: str) -> StoreBusy:
    return StoreBusy(f"another paper-monitor ({holder}) is polling and delivering with {database}; "
                     "stop it first (status works meanwhile)", holder)


class FileLock(Held):
    """``flock`` on a file beside the SQLite database; the holder's line is the file's content.
    ``store``, the database file, is the one it was when the lock was taken as long as it is held."""

    def __init__(
        self, path: Path, command: str, database: str, patience: float = 2.0, *, store: Path | None = None
    ) -> None:
        self._path, self._command, self._database, self._patience = path, command, database, patience
        self._store, self._store_stat = store, _stat(store) if store is not None else None
        self._fd = self._take()
        super().__init__()

    def _take(self) -> int:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self._path}: {exc.strerror}") from exc
        try:
            _flock_soon(fd, fcntl.LOCK_EX, self._patience)
        except BlockingIOError:
            holder = _written(fd) or "a process"
            os.close(fd)
            raise _busy(holder, self._database) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self._path}: {exc.strerror}") from exc
        line = holder_line(self._command).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
        return fd

    def _check(self) -> None:
        """The lock is on the file the path names now: removed or replaced, it guards nothing (and
        the store file is still the one the lock was taken for: ``StoreGone`` if not)."""
        self._check_store()
        try:
            if self._fd >= 0 and os.path.samestat(os.fstat(self._fd), os.stat(self._path)):
                return
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot check the lock file {self._path}: {exc.strerror}") from exc
        self.release()
        self._fd = self._take()
        log.warning("the lock file %s was removed while this process held it; taken again", self._path)

    def _check_store(self) -> None:
        if self._store is None or self._store_stat is None:
            return
        now = _stat(self._store)
        if now is not None and os.path.samestat(now, self._store_stat):
            return
        if now is None:
            raise StoreGone(f"the store file {self._store} was removed while this process used it: what it "
                            "records goes into a file nothing else can open (the next start makes a new, "
                            "empty store there, unless it is put back first)")
        raise StoreGone(f"the store file {self._store} was replaced by another file while this process "
                        "used it: what it records goes into the file replaced (the next start opens the "
                        "new one)")

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing lets go of the flock
            self._fd = -1


def _stat(path: Path) -> os.stat_result | None:
    """The file ``path`` names now (a link followed), None if there is none."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot look at {path}: {exc.strerror}") from exc


def _flock_soon(fd: int, operation: int, patience: float = 2.0) -> None:
    """``flock`` without blocking, tried again for ``patience`` seconds: ``status`` looks at the
    lock by holding it shared for a moment, which must not turn a starting daemon away."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _written(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()


def file_holder(url: URL) -> str | None:
    """The holder's line of the lock beside the SQLite file of ``url``, or None when no process
    holds it."""
    path = _lock_file(url)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free if this works; let go of it at once
        return None
    except BlockingIOError:
        return _written(fd) or "a process"
    finally:
        os.close(fd)  # (and with it the shared lock, if taken)


def pg_holder(conn: Connection) -> str | None:
    """The holder's line of the advisory lock in this database, or None; takes no lock itself."""
    holder = conn.execute(sa.text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ), {"hi": _PG_KEY >> 32, "lo": _PG_KEY & 0xFFFFFFFF}).first()
    if holder is None:
        return None
    return str(holder[0] or "").removeprefix(_APP) or "a process"


class AdvisoryLock(Held):
    """A PostgreSQL session advisory lock on a connection kept for the purpose; the holder's line is
    that connection's ``application_name``, which other sessions can read."""

    ends_with_process = False

    def __init__(self, engine: Engine, command: str, database: str) -> None:
        self._engine, self._command, self._database = engine, command, database
        self._conn: Connection | None = self._take()
        super().__init__()

    def _take(self) -> Connection:
        try:
            conn = self._engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take the store's lock: {reason(exc)}") from exc
        try:
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(_PG_KEY))).scalar()
            if not got:
                raise _busy(pg_holder(conn) or "a process", self._database)
            name = (_APP + holder_line(self._command))[:63]  # what PostgreSQL keeps of it
            conn.execute(sa.select(sa.func.set_config("application_name", name, False)))
            conn.commit()
            return conn
        except SQLAlchemyError as exc:
            _end(conn)
            raise StoreError(f"cannot take the store's lock: {reason(exc)}") from exc
        except StoreBusy:
            _end(conn)
            raise

    def _check(self) -> None:
        """The session holding the lock is alive (it holds the lock until it ends)."""
        if self._conn is not None:
            try:
                self._conn.execute(sa.select(1))
                self._conn.rollback()
                return
            except SQLAlchemyError:
                self.release()
        self._conn = self._take()
        log.warning("the database session holding the store's lock ended (a server restart?); taken again")

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            _end(conn)


def _end(conn: Connection) -> None:
    """End the session, and its advisory lock with it (not back to the pool)."""
    try:
        conn.invalidate()
        conn.close()
    except SQLAlchemyError:
        pass  # the server is gone: so is the lock
