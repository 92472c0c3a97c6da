"""Worker threads never take Ctrl-C, and the main thread's waits on them end at Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future

import pytest

from mmembed._threads import as_completed, wait_first, worker_pool

posix_only = pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask"), reason="signal masks are POSIX"
)


@posix_only
def test_workers_are_born_with_sigint_blocked_and_the_caller_keeps_its_mask() -> None:
    at_birth: dict[int, set[int | signal.Signals]] = {}

    def first_call(*_: object) -> None:  # runs in each new thread before anything else
        at_birth.setdefault(threading.get_ident(), signal.pthread_sigmask(signal.SIG_BLOCK, ()))

    threading.settrace(first_call)
    pool = worker_pool(2, "t")
    try:
        masks = [
            f.result()
            for f in [pool.submit(signal.pthread_sigmask, signal.SIG_BLOCK, ()) for _ in range(4)]
        ]
    finally:
        threading.settrace(None)
        pool.shutdown()
    # blocked from the start: no moment at which a new worker could take a Ctrl-C
    assert at_birth
    assert all(signal.SIGINT in m for m in at_birth.values())
    assert all(signal.SIGINT in m for m in masks)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, ())


def test_as_completed_gives_each_future_once_in_the_order_they_end() -> None:
    first, second, third = Future[int](), Future[int](), Future[int]()
    third.set_result(3)
    seen = as_completed([first, second, third, first])
    assert next(seen) is third

    def end_both() -> None:
        second.set_result(2)
        first.set_result(1)

    threading.Timer(0.3, end_both).start()
    assert list(seen) == [first, second]  # done together: in the order given
    assert wait_first([]) == set()


# A thread the pool did not make (as a C library's thread would be) catches SIGINT while busy
# workers keep the interpreter switching threads; the main thread is waiting on the workers.
_SCRIPT = """
import os, signal, sys, threading, time
from mmembed._threads import as_completed, wait_first, worker_pool

ready = threading.Event()
def catcher():
    ready.set()
    time.sleep(30)
other = threading.Thread(target=catcher, daemon=True)
other.start()
ready.wait()

def busy(_):
    end = time.monotonic() + 8
    while time.monotonic() < end:
        sum(range(1000))

pool = worker_pool(2, "busy")
futures = [pool.submit(busy, i) for i in range(2)]
threading.Timer(0.5, signal.pthread_kill, (other.ident, signal.SIGINT)).start()
start = time.monotonic()
try:
    if sys.argv[1] == "as_completed":
        for _ in as_completed(futures):
            pass
    else:
        while futures:
            done = wait_first(futures)
            futures = [f for f in futures if f not in done]
    for i in range(10**6):  # plain bytecode: a late handler would run here
        pass
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - start:.2f}")
    os._exit(0)
print(f"finished {time.monotonic() - start:.2f}")
os._exit(0)
"""


@posix_only
@pytest.mark.parametrize("waiter", ["as_completed", "wait_first"])
def test_ctrl_c_caught_by_another_thread_ends_the_main_threads_wait(waiter: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), waiter],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    # the workers run 8 s; a plain concurrent.futures wait ends only then (if at all)
    assert out[0] == "interrupted", out
    assert float(out[1]) < 4.0, out
