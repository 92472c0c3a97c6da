"""The retry policy, and the two drivers every exchange with the service runs on.

An exchange (one embedding call, one upload and its polls) is written once, as a generator of
steps: :class:`Call` (a request, answered or raised into the generator), :class:`Sleep` and
:class:`Work` (blocking local work: reading files, hashing, base64). :func:`run_sync` performs
the steps on the calling thread, :func:`run_async` on the event loop (work in a worker thread),
so the retry loop below and the upload in ``_files`` exist once for :meth:`embed` and
:meth:`aembed` alike.

Retries: exponential backoff with jitter from ``initial_delay`` (doubled each retry, capped at
``max_delay``), never sooner than the server's ``RetryInfo`` asks, at most ``max_retries``
retries and ``max_seconds`` in all; a wait that would pass the budget ends the call at once.

>>> def hello():
...     name = yield Work(lambda: "world")
...     return f"hello {name}"
>>> run_sync(hello())
'hello world'
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from mmembed.embedders.gemini._errors import Failure
from mmembed.errors import RateLimitError

__all__ = ["Call", "Cancelled", "RetryPolicy", "Sleep", "Work", "retrying", "run_async", "run_sync"]

logger = logging.getLogger("mmembed.gemini")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the service: ``run`` for the sync driver, ``arun`` for the async one."""

    run: Callable[[], Any]
    arun: Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (cut short with :class:`Cancelled` when the sync driver is stopped)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Work:
    """Blocking local work: run inline by the sync driver, in a worker thread by the async one."""

    fn: Callable[[], Any]


Step: TypeAlias = Call | Sleep | Work
Steps: TypeAlias = Generator[Step, Any, T]


class Cancelled(Exception):
    """A call not sent, or a wait cut short, because another call of the same embed failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long one call is retried."""

    max_retries: int = 6
    max_seconds: float = 300.0
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def next_delay(self, failure: Failure, cause: Exception, attempt: int, elapsed: float) -> float:
        """Seconds to wait before attempt ``attempt + 1``, or raise the error to give up with.

        Raises:
            EmbeddingError: ``failure.error`` when it is not retryable; a copy saying why the
                retries ended when they are used up or the next wait would pass the budget.
        """
        if not failure.retryable:
            raise failure.error from cause
        backoff = min(self.max_delay, self.initial_delay * 2.0 ** (attempt - 1))
        delay = backoff / 2 + random.uniform(0, backoff / 2)
        if failure.server_delay is not None:
            # never earlier than the server asked, and spread out so workers do not stampede
            delay = max(delay, failure.server_delay * (1 + random.uniform(0, 0.1)))
        left = self.max_seconds - elapsed
        if attempt > self.max_retries or delay > left:
            why = (
                f"after {attempt} attempts in {elapsed:.1f} s"
                if attempt > self.max_retries
                else f"the next retry (in {delay:.1f} s) would pass max_retry_seconds="
                f"{self.max_seconds:g}"
            )
            err = failure.error
            final = type(err)(f"{err} — gave up {why}", status_code=err.status_code, retryable=True)
            if isinstance(err, RateLimitError) and isinstance(final, RateLimitError):
                final.retry_after = err.retry_after
            raise final from cause
        return delay


def retrying(
    call: Call,
    policy: RetryPolicy,
    translate: Callable[[Exception], Failure],
    n_items: int,
) -> Steps[Any]:
    """``call`` until it answers, as ``policy`` allows; failures are ``translate``-d once."""
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            return (yield call)
        except Exception as exc:
            attempt += 1
            cause = exc
            failure = translate(exc)
            delay = policy.next_delay(failure, exc, attempt, time.monotonic() - start)
            _forget_frames(exc)
        logger.warning(
            "%s on a call of %d items; retry %d of %d in %.2f s",
            failure.error,
            n_items,
            attempt,
            policy.max_retries,
            delay,
        )
        try:
            yield Sleep(delay)
        except Cancelled:
            # another call of this embed failed: its error is the one reported
            raise failure.error from cause


def _forget_frames(exc: BaseException) -> None:
    """Drop the tracebacks of a failed attempt that will be retried (its chain included).

    A traceback holds the frames the error passed through, and they hold the attempt's request
    body and its batch's media; a frame that also holds the error (``cause`` here, the SDK's own
    handlers) closes a reference cycle that only the cyclic garbage collector frees, which runs
    seldom while a run allocates bytes rather than objects. Measured on the course benchmark,
    every 429 kept its call's media and request body alive (hundreds of MB in all) until then.
    The error itself, its message and status, stay: only where it was raised is forgotten.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        err.__traceback__ = None
        stack += (err.__cause__, err.__context__)


def run_sync(steps: Steps[T], stop: threading.Event | None = None) -> T:
    """Perform ``steps`` on this thread; a set ``stop`` cuts the next wait short."""
    stepper = _Stepper(steps)
    while (step := stepper.next()) is not None:
        try:
            if isinstance(step, Sleep):
                if stop is None:
                    time.sleep(step.seconds)
                elif stop.wait(step.seconds):
                    raise Cancelled
            else:
                stepper.reply = step.run() if isinstance(step, Call) else step.fn()
        except Exception as exc:
            stepper.error = exc
    return stepper.value


async def run_async(steps: Steps[T]) -> T:
    """Perform ``steps`` on the running event loop, local work in a worker thread."""
    stepper = _Stepper(steps)
    while (step := stepper.next()) is not None:
        try:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Call):
                stepper.reply = await step.arun()
            else:
                stepper.reply = await asyncio.to_thread(step.fn)
        except Exception as exc:
            stepper.error = exc
    return stepper.value


class _Stepper(Generic[T]):
    """Moves a generator of steps on: the last step's reply sent in, or its error raised in."""

    __slots__ = ("_steps", "error", "reply", "value")

    def __init__(self, steps: Steps[T]) -> None:
        self._steps = steps
        self.reply: Any = None
        self.error: Exception | None = None
        self.value: T

    def next(self) -> Step | None:
        reply, error = self.reply, self.error
        self.reply, self.error = None, None
        try:
            return self._steps.send(reply) if error is None else self._steps.throw(error)
        except StopIteration as done:
            self.value = done.value
            return None
