"""Worker threads that leave Ctrl-C to the main thread.

The kernel hands a process's SIGINT to any thread that does not block it. When a worker thread
takes it, CPython (before 3.12) can clear the flag that tells the main thread to run its
handler, so a main thread waiting on a worker only sees the KeyboardInterrupt when the whole
job is over. Workers made here block SIGINT, so it always reaches the main thread, which is
woken from its wait at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["worker_pool"]


def _start_worker(then: Callable[[], object] | None) -> None:
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    if then is not None:
        then()


def worker_pool(
    max_workers: int, name: str, initializer: Callable[[], object] | None = None
) -> ThreadPoolExecutor:
    """A thread pool whose threads never take the process's Ctrl-C; each runs ``initializer``
    (if given) when it starts."""
    return ThreadPoolExecutor(
        max_workers=max_workers,
        thread_name_prefix=name,
        initializer=_start_worker,
        initargs=(initializer,),
    )
