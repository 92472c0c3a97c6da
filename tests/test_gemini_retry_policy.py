"""The retry policy and the sync and async drivers of the Gemini package, on their own."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mmembed.embedders.gemini._errors import Failure, from_exception
from mmembed.embedders.gemini._retry import (
    Call,
    Cancelled,
    RetryPolicy,
    Sleep,
    Steps,
    Work,
    retrying,
    run_async,
    run_sync,
)
from mmembed.errors import ProviderError, RateLimitError

FAST = RetryPolicy(max_retries=3, max_seconds=10.0, initial_delay=0.001, max_delay=0.002)


def translate(exc: Exception) -> Failure:
    return from_exception(exc, model="m", timeout=1.0)


def transient() -> Failure:
    return Failure(ProviderError("m: busy", status_code=503, retryable=True), True, None)


class Flaky:
    """A service that fails ``failures`` times with a dropped connection, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    def answer(self) -> str:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionResetError("dropped")
        return "answer"

    async def aanswer(self) -> str:
        return self.answer()

    def call(self) -> Call:
        return Call(self.answer, self.aanswer)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=10, max_seconds=1000, initial_delay=1.0, max_delay=4.0)
    for attempt, backoff in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (8, 4.0)]:
        for _ in range(20):
            delay = policy.next_delay(transient(), RuntimeError(), attempt, 0.0)
            assert backoff / 2 <= delay <= backoff


def test_the_servers_delay_is_a_floor_spread_by_up_to_a_tenth() -> None:
    asked = Failure(RateLimitError("m: slow down", status_code=429, retryable=True), True, 5.0)
    for _ in range(20):
        delay = FAST.next_delay(asked, RuntimeError(), 1, 0.0)
        assert 5.0 <= delay <= 5.5 + 1e-9


def test_a_failure_that_is_not_retryable_is_raised_at_once_from_its_cause() -> None:
    cause = RuntimeError("the SDK's error")
    final = Failure(ProviderError("m: refused", status_code=400), False, None)
    with pytest.raises(ProviderError, match="refused") as info:
        FAST.next_delay(final, cause, 1, 0.0)
    assert info.value.__cause__ is cause


def test_the_retries_and_the_time_budget_bound_a_call() -> None:
    with pytest.raises(ProviderError, match="gave up after 4 attempts") as info:
        FAST.next_delay(transient(), RuntimeError(), 4, 0.5)
    assert info.value.retryable
    limited = Failure(
        RateLimitError("m: slow down", status_code=429, retryable=True, retry_after=60.0),
        True,
        60.0,
    )
    with pytest.raises(RateLimitError, match="would pass max_retry_seconds=10") as rate:
        FAST.next_delay(limited, RuntimeError(), 1, 0.0)
    assert rate.value.retry_after == 60.0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_retry_loop_serves_both_drivers(mode: str) -> None:
    flaky = Flaky(failures=2)
    steps = retrying(flaky.call(), FAST, translate, n_items=1)
    result = run_sync(steps) if mode == "sync" else asyncio.run(run_async(steps))
    assert result == "answer"
    assert flaky.attempts == 3


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retries_end_with_the_translated_error(mode: str) -> None:
    flaky = Flaky(failures=10)
    steps = retrying(flaky.call(), FAST, translate, n_items=1)
    with pytest.raises(ProviderError, match=r"the connection failed.*gave up after 4 attempts"):
        run_sync(steps) if mode == "sync" else asyncio.run(run_async(steps))
    assert flaky.attempts == 4


def test_a_stopped_sync_driver_cuts_the_wait_short_with_the_calls_own_error() -> None:
    slow = RetryPolicy(max_retries=3, max_seconds=100.0, initial_delay=30.0, max_delay=30.0)
    stop = threading.Event()
    stop.set()  # another call of the same embed failed
    start = time.monotonic()
    with pytest.raises(ProviderError, match="the connection failed") as info:
        run_sync(retrying(Flaky(failures=10).call(), slow, translate, n_items=1), stop)
    assert time.monotonic() - start < 5
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_a_wait_outside_the_retry_loop_is_cancelled_by_stop() -> None:
    def poll() -> Steps[str]:
        yield Sleep(30.0)
        return "never"

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_sync(poll(), stop)


def test_work_runs_inline_in_sync_and_in_a_worker_thread_in_async() -> None:
    def where() -> Steps[int]:
        ident: int = yield Work(threading.get_ident)
        return ident

    assert run_sync(where()) == threading.get_ident()

    async def main() -> tuple[int, int]:
        return await run_async(where()), threading.get_ident()

    worker, loop = asyncio.run(main())
    assert worker != loop


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_error_raised_by_a_step_reaches_the_generator(mode: str) -> None:
    seen: list[str] = []

    def broken() -> str:
        raise OSError("disk gone")

    async def abroken() -> str:
        return broken()

    def steps() -> Steps[str]:
        try:
            yield Work(broken)
        except OSError as exc:
            seen.append(f"work: {exc}")
        try:
            yield Call(broken, abroken)
        except OSError as exc:
            seen.append(f"call: {exc}")
        return "done"

    result = run_sync(steps()) if mode == "sync" else asyncio.run(run_async(steps()))
    assert result == "done"
    assert seen == ["work: disk gone", "call: disk gone"]
