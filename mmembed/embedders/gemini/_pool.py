"""Several calls in flight: worker threads for ``embed``, event loop tasks for ``aembed``.

Each call is sent as its steps (see :mod:`._retry`); its reply is handed to ``store`` on the
calling thread (sync) or right after the call (async), so a worker's next call goes out while the
last reply is read. The first call that fails ends the others at their current attempt, and its
error (translated already) is the one raised, never a call skipped because of it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

from mmembed._threads import as_completed, worker_pool
from mmembed.embedders.gemini._retry import Cancelled, Steps, run_async, run_sync

__all__ = ["send_all", "send_all_async"]

B = TypeVar("B")  # one call's batch
R = TypeVar("R")  # one call's reply


def send_all(
    calls: Sequence[B],
    steps: Callable[[B], Steps[R]],
    store: Callable[[B, R], None],
    *,
    concurrency: int,
) -> None:
    """Send every call, at most ``concurrency`` at once on worker threads."""
    failed = threading.Event()  # set when one call fails: the others stop retrying

    def send(batch: B) -> R:
        if failed.is_set():
            raise Cancelled
        try:
            return run_sync(steps(batch), failed)
        except BaseException:
            failed.set()
            raise

    if len(calls) == 1 or concurrency == 1:
        for batch in calls:
            store(batch, send(batch))
        return
    pool = worker_pool(min(concurrency, len(calls)), "mmembed-gemini")
    try:
        futures = [pool.submit(send, b) for b in calls]
        batch_of = dict(zip(futures, calls, strict=True))
        stored: set[Future[R]] = set()
        for fut in as_completed(futures):
            if fut.exception() is None:
                store(batch_of[fut], fut.result())
                stored.add(fut)
                continue
            # the calls in flight end at their current attempt, and every reply that came
            # back is stored (paid for: never sent again); then the first real failure
            # (translated already) is raised, not a call skipped for it
            failed.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for f in futures:
                if f not in stored and f.done() and not f.cancelled() and f.exception() is None:
                    store(batch_of[f], f.result())
            for f in futures:
                if f.done() and not f.cancelled():
                    error = f.exception()
                    if error is not None and not isinstance(error, Cancelled):
                        f.result()
            fut.result()
    except BaseException:
        failed.set()
        raise
    finally:
        # on failure, calls not started yet are dropped; calls in flight end at their
        # current attempt because `failed` is set
        pool.shutdown(wait=True, cancel_futures=True)


async def send_all_async(
    calls: Sequence[B],
    steps: Callable[[B], Steps[R]],
    store: Callable[[B, R], None],
    *,
    concurrency: int,
) -> None:
    """Send every call, at most ``concurrency`` at once as tasks of the running loop."""
    gate = asyncio.Semaphore(concurrency)

    async def run(batch: B) -> None:
        async with gate:
            reply = await run_async(steps(batch))
        # the next call (let in by the gate) goes out before this reply is read
        await asyncio.sleep(0)
        store(batch, reply)

    tasks = [asyncio.ensure_future(run(b)) for b in calls]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
