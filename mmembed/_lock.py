"""A writer lock that dies with its process: ``flock`` on a separate lock file."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from mmembed.errors import IndexLockedError

try:
    import fcntl
except ImportError:  # Windows: no flock; a single writer is the user's job there
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock"]


class WriterLock:
    """Exclusive, non-blocking, per-index lock.

    ``flock`` is tied to the open file description, so the kernel drops it when the holder exits
    for any reason, kill -9 included: a dead run never blocks the next one. It lives in its own
    file because POSIX record locks on a file that is also opened elsewhere (SQLite's database)
    are silently released when any descriptor of that file closes.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        if self._depth:
            self._depth += 1
            return
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                who = f" (process {holder})" if holder else ""
                raise IndexLockedError(
                    f"another mmembed process{who} is writing to {self._path.parent}; wait for "
                    "it to finish and try again"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
