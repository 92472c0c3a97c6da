"""Worker threads that leave Ctrl-C to the main thread.

The kernel hands a process's SIGINT to any thread that does not block it. When another thread
takes it, CPython (before 3.12) only marks the signal pending: a main thread waiting on a worker
does not wake, and a worker thread can even clear the mark that tells the main thread to run its
handler, so the KeyboardInterrupt comes when the whole job is over, or never.

Two things keep Ctrl-C prompt:

- Workers made here are born with SIGINT blocked (their creator blocks it while it starts them;
  a thread inherits its creator's mask), so no worker ever takes it, not even as it starts.
- The main thread waits on workers in short slices (:func:`wait_first`, :func:`as_completed`)
  and, between slices, runs any handler whose signal another thread caught (a thread of a C
  library, which nothing here can make block SIGINT).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["as_completed", "wait_first", "worker_pool"]

T = TypeVar("T")

# How long the main thread waits on workers before it looks for a signal another thread caught.
_SLICE_SECONDS = 0.2


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread (and in threads it starts) for the block's duration."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: signals go to the main thread
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        # a SIGINT that came meanwhile stayed pending: it is delivered (and, on the main
        # thread, its handler run) as the mask is restored
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _run_caught_signals() -> None:
    """On the main thread, run the handlers of signals that another thread caught (changing
    the signal mask makes CPython check for them; the mask is left as it was)."""
    if hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, ())


class _Pool(ThreadPoolExecutor):
    """Starts its threads with SIGINT blocked."""

    def _adjust_thread_count(self) -> None:
        with _sigint_blocked():
            super()._adjust_thread_count()


def worker_pool(
    max_workers: int, name: str, initializer: Callable[[], object] | None = None
) -> ThreadPoolExecutor:
    """A thread pool whose threads never take the process's Ctrl-C; each runs ``initializer``
    (if given) when it starts."""
    return _Pool(max_workers=max_workers, thread_name_prefix=name, initializer=initializer)


def wait_first(futures: Iterable[Future[T]]) -> set[Future[T]]:
    """Wait until at least one of ``futures`` is done (at once if none is pending); return the
    done ones. Ctrl-C interrupts the wait promptly, whichever thread the signal reached."""
    pending = list(futures)
    while True:
        done, _ = wait(pending, timeout=_SLICE_SECONDS, return_when=FIRST_COMPLETED)
        if done or not pending:
            return done
        _run_caught_signals()


def as_completed(futures: Iterable[Future[T]]) -> Iterator[Future[T]]:
    """``concurrent.futures.as_completed``, interruptible as :func:`wait_first` is; futures
    done together come in the order given."""
    pending = list(dict.fromkeys(futures))
    while pending:
        done = wait_first(pending)
        ready = [f for f in pending if f in done]
        pending = [f for f in pending if f not in done]
        yield from ready
