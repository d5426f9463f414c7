"""The watch on the config file and its rule files: an edit is read once the files have settled, so
that a file saved in place in several writes (``cat new > monitor.toml``, an editor writing in
place, a slow copy) is never read, and applied, half written.

Settled is: the files looked the same (size and modification time) for ``SETTLE`` seconds, and
none of them is still open by a writer that changed it. The second part is known on Linux
(inotify: a file modified and not closed since); elsewhere the first part alone decides.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from monitor.config import Settings
from monitor.rule_files import rule_file_paths

log = logging.getLogger(__name__)

SETTLE = 2.0  # seconds the files must look the same before they are read

Fingerprint = tuple[object, ...]


def fingerprint(path: Path, settings: Settings) -> Fingerprint:
    """What changes when the config file or one of its rule files does: edited, added, removed."""
    files = rule_file_paths(settings.monitor.rule_files, path.parent)
    return (_stamp(path), *((file, _stamp(file)) for file in files))


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's modification time (ns) and size; None if it is not there."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


class ConfigWatch:
    """Whether the config at ``path`` (and its rule files) changed since it was last read, and has
    settled. ``due()`` at each look (about every second); ``read()`` with what was read."""

    def __init__(
        self, path: Path, settings: Settings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._clock = clock
        self._writers = Writers.open()
        self.seen = self._look(settings)  # the files as last read
        self._last = self.seen  # as at the last look, and since when
        self._since = clock()
        self._told: Fingerprint | None = None  # the change whose open writer was told of

    def read(self, settings: Settings, seen: Fingerprint | None = None) -> None:
        """The files were read (``seen``: as they were then; default: as they are now)."""
        self.seen = self._look(settings) if seen is None else seen

    def now(self, settings: Settings) -> Fingerprint:
        """The files as they are."""
        return self._look(settings)

    def due(self, settings: Settings) -> bool:
        """The files differ from those last read, look the same for ``SETTLE`` seconds, and no
        writer holds one it changed."""
        current = self._look(settings)
        if current != self._last:
            self._last, self._since = current, self._clock()
        if current == self.seen or self._clock() - self._since < SETTLE:
            return False
        busy = [str(file) for file in self._files(settings) if self._writers.writing(file)]
        if busy:
            if self._told != current:
                self._told = current
                log.info("%s changed and is still open for writing: it is read once the writer closes "
                         "it (or at a SIGHUP)", ", ".join(busy))
            return False
        return True

    def close(self) -> None:
        self._writers.close()

    def _look(self, settings: Settings) -> Fingerprint:
        for file in self._files(settings):  # (new files watched from now on; cheap for those watched)
            self._writers.watch(file)
        return fingerprint(self.path, settings)

    def _files(self, settings: Settings) -> list[Path]:
        return [self.path, *rule_file_paths(settings.monitor.rule_files, self.path.parent)]


# inotify(7): the events of a watched file, and the layout of one event.
_IN_MODIFY = 0x2
_IN_CLOSE_WRITE = 0x8
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name: none for a file)


class Writers:
    """Which watched files a writer has open: modified, and not closed since (Linux inotify). Where
    inotify is missing (or out of watches), it knows of no writer."""

    def __init__(self, fd: int | None, add: Callable[[int, bytes, int], int] | None) -> None:
        self._fd = fd
        self._add = add
        self._wd: dict[Path, int] = {}  # a file's watch (its inode's, as last looked at)
        self._writing: set[int] = set()  # watches modified since their last close

    @classmethod
    def open(cls) -> Writers:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return cls(None, None)
        add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            log.debug("no inotify (%s): an edit is read once it settles", os.strerror(ctypes.get_errno()))
            return cls(None, None)
        return cls(fd, add)

    def watch(self, path: Path) -> None:
        if self._fd is None or self._add is None:
            return
        wd = self._add(self._fd, os.fsencode(path), _IN_MODIFY | _IN_CLOSE_WRITE)
        if wd >= 0:
            self._wd[path] = wd
        else:
            self._wd.pop(path, None)  # not there (removed meanwhile), or no watches left
            if ctypes.get_errno() == errno.ENOSPC:
                log.debug("inotify: no watches left for %s", path)

    def writing(self, path: Path) -> bool:
        """Whether a writer modified ``path`` and has not closed it yet, as far as is known."""
        self._drain()
        wd = self._wd.get(path)
        return wd is not None and wd in self._writing

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _drain(self) -> None:
        while self._fd is not None:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            for offset in _offsets(data):
                wd, mask, _, _ = _EVENT.unpack_from(data, offset)
                if mask & _IN_Q_OVERFLOW:
                    self._writing.clear()  # events were lost: no writer known any more
                elif mask & (_IN_CLOSE_WRITE | _IN_IGNORED):
                    self._writing.discard(wd)
                elif mask & _IN_MODIFY:
                    self._writing.add(wd)


def _offsets(data: bytes) -> list[int]:
    """Where each event starts in what one read returned."""
    found, offset = [], 0
    while offset + _EVENT.size <= len(data):
        found.append(offset)
        offset += _EVENT.size + _EVENT.unpack_from(data, offset)[3]
    return found


__all__ = ["SETTLE", "ConfigWatch", "Fingerprint", "Writers", "fingerprint"]
