"""Locks: a writer lock that dies with its process, and a readers-writer lock for threads.

:class:`WriterLock` is the one cross-process lock of mmembed (an index's ``lock``, a store's
``LOCK``): an exclusive, non-blocking ``flock`` on a lock file of its own that holds the
holder's pid. ``flock`` is tied to the open file description, so the kernel drops it when the
holder exits for any reason, kill -9 included: a dead writer never blocks the next one. It lives
in its own file because POSIX record locks on a file that is also opened elsewhere (SQLite's
database) are silently released when any descriptor of that file closes. The lock file is never
followed as a symlink, so a planted link cannot make mmembed write outside its directory.

Where the platform has no ``fcntl`` (Windows), nothing excludes a second *process*: the lock
file still records the pid, threads of one process still take turns when asked to, and the first
lock taken warns once (:class:`RuntimeWarning`) that other processes are not kept out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmembed.errors import IndexLockedError, StoreError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

__all__ = ["RWLock", "WriterLock"]

Busy = Callable[[Path, str], StoreError]
"""Builds the error raised when another process holds the lock: (lock file, holder's pid)."""


def _index_busy(path: Path, holder: str) -> StoreError:
    who = f" (process {holder})" if holder else ""
    return IndexLockedError(
        f"another mmembed process{who} is writing to {path.parent}; wait for it to finish and "
        "try again"
    )


# one mutex per lock file inside this process, for the locks whose threads take turns
_mutexes: dict[str, threading.Lock] = {}
_mutexes_guard = threading.Lock()
_warned_no_fcntl = False


def _mutex(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _mutexes_guard:
        lock = _mutexes.get(key)
        if lock is None:
            lock = _mutexes[key] = threading.Lock()
        return lock


def _warn_no_fcntl(path: Path) -> None:
    global _warned_no_fcntl
    if not _warned_no_fcntl:
        _warned_no_fcntl = True
        warnings.warn(
            f"this platform has no fcntl, so mmembed cannot keep other processes from writing to "
            f"{path.parent} at the same time; make sure only one process writes to an index or "
            "store at a time",
            RuntimeWarning,
            stacklevel=4,
        )


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file, never through a symlink, and check it is a plain file."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not hasattr(os, "O_NOFOLLOW") and path.is_symlink():
            raise OSError(errno.ELOOP, "is a symbolic link")
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(
                f"the lock file {path} is a symbolic link; mmembed never writes through one. "
                "Remove the link (nothing else needs to change) and try again"
            ) from None
        raise StoreError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"the lock file {path} is not a regular file; remove it and try again")
    return fd


class WriterLock:
    """Exclusive, non-blocking, cross-process lock on the file ``path`` (re-entrant per object).

    Args:
        path: the lock file; created if missing, never followed as a symlink.
        busy: builds the error when another process holds the lock, from the lock file and the
            pid it holds (default: :class:`~mmembed.errors.IndexLockedError`).
        threads_wait: make threads of this process that lock the same file wait their turn
            instead of failing (the flock alone would refuse a second thread as it refuses a
            second process).

    Raises:
        StoreError: from :meth:`acquire`: another process holds the lock (the error ``busy``
            builds), or the lock file is a symlink or cannot be opened.
    """

    def __init__(self, path: Path, *, busy: Busy = _index_busy, threads_wait: bool = False) -> None:
        self._path = Path(path)
        self._busy = busy
        self._threads_wait = threads_wait
        self._fd: int | None = None
        self._depth = 0

    @property
    def path(self) -> Path:
        """The lock file."""
        return self._path

    def acquire(self) -> None:
        """Take the lock, or raise at once if another process holds it."""
        if self._depth:
            self._depth += 1
            return
        mutex = _mutex(self._path) if self._threads_wait else None
        if mutex is not None:
            mutex.acquire()
        try:
            self._fd = self._lock()
        except BaseException:
            if mutex is not None:
                mutex.release()
            raise
        self._depth = 1

    def _lock(self) -> int:
        fd = _open_lock_file(self._path)
        locks: Any = fcntl  # None on platforms without it (hidden from the type checker)
        try:
            if locks is None:
                _warn_no_fcntl(self._path)
            else:
                try:
                    locks.flock(fd, locks.LOCK_EX | locks.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise StoreError(f"cannot lock {self._path}: {exc}") from exc
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    raise self._busy(self._path, holder) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def release(self) -> None:
        """Give the lock back (the last of nested acquisitions does)."""
        if not self._depth:
            return
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
            if self._threads_wait:
                _mutex(self._path).release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RWLock:
    """Many readers or one writer, among the threads of one process; writers go first, so a
    stream of readers cannot starve them.

    FAISS indexes crash when one thread adds while another searches, numpy buffers are
    reallocated on growth, and Qdrant's local mode has no locking of its own: every mutation
    takes the write side.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Hold the read side (shared)."""
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Hold the write side (exclusive)."""
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
