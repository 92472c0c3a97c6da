"""Retries, timeouts, error translation and key hygiene of GeminiEmbedder."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mmembed.embedders import GeminiEmbedder
from mmembed.errors import (
    AuthenticationError,
    EmbeddingError,
    ProviderError,
    RateLimitError,
)
from mmembed.testing import FakeGeminiServer
from tests.gemini_helpers import SENTINEL_KEY


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as s:
        yield s


def make(server: FakeGeminiServer, **options: Any) -> GeminiEmbedder:
    options.setdefault("dimensions", 128)
    options.setdefault("retry_initial_delay", 0.01)
    options.setdefault("retry_max_delay", 0.05)
    return GeminiEmbedder(client=server.client(), **options)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_two_429s_with_a_retry_delay_are_waited_out(server: FakeGeminiServer, mode: str) -> None:
    server.rate_limit_next(2, retry_delay=1.5)
    embedder = make(server)
    start = time.monotonic()
    if mode == "sync":
        out = embedder.embed(["hello", "world"])
    else:
        out = asyncio.run(embedder.aembed(["hello", "world"]))
    elapsed = time.monotonic() - start
    assert out.shape == (2, 128)
    assert [r.status for r in server.embed_requests] == [429, 429, 200]
    # the backoff alone would be ~0.05 s: only the server's RetryInfo explains 2 x 1.5 s
    assert elapsed >= 3.0
    assert elapsed < 3.0 * 1.1 + 2.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_statuses_are_retried(server: FakeGeminiServer, status: int) -> None:
    server.fail_next(2, status=status)
    out = make(server).embed(["x"])
    assert out.shape == (1, 128)
    assert [r.status for r in server.embed_requests] == [status, status, 200]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_dropped_connections_are_retried(server: FakeGeminiServer, mode: str) -> None:
    server.drop_next(2)
    embedder = make(server)
    out = embedder.embed(["x"]) if mode == "sync" else asyncio.run(embedder.aembed(["x"]))
    assert out.shape == (1, 128)
    assert [r.status for r in server.embed_requests] == [0, 0, 200]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_request_that_outlives_the_timeout_is_retried(
    server: FakeGeminiServer, mode: str
) -> None:
    server.slow_next(1, seconds=4.0)
    embedder = make(server, timeout=1.0)
    start = time.monotonic()
    out = embedder.embed(["x"]) if mode == "sync" else asyncio.run(embedder.aembed(["x"]))
    assert out.shape == (1, 128)
    assert len(server.embed_requests) >= 1
    assert time.monotonic() - start < 3.5  # did not wait for the slow answer


def test_retries_stop_after_max_retries(server: FakeGeminiServer) -> None:
    server.rate_limit_next(10, retry_delay=None)
    with pytest.raises(RateLimitError) as info:
        make(server, max_retries=3).embed(["x"])
    assert len(server.embed_requests) == 4
    assert info.value.status_code == 429
    assert info.value.retry_after is None  # the server did not say
    assert "gave up after 4 attempts" in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_rate_limit_error_carries_the_servers_retry_delay(
    server: FakeGeminiServer, mode: str
) -> None:
    server.rate_limit_next(10, retry_delay=0.05)
    embedder = make(server, max_retries=2)
    with pytest.raises(RateLimitError) as info:
        embedder.embed(["x"]) if mode == "sync" else asyncio.run(embedder.aembed(["x"]))
    assert info.value.retry_after == pytest.approx(0.05)
    assert pickle.loads(pickle.dumps(info.value)).retry_after == pytest.approx(0.05)
    server.reset()
    server.rate_limit_next(1, retry_delay=60)
    with pytest.raises(RateLimitError, match="max_retry_seconds") as info:
        make(server, max_retry_seconds=5).embed(["x"])
    assert info.value.retry_after == pytest.approx(60)


def test_a_server_delay_beyond_the_time_budget_fails_at_once(server: FakeGeminiServer) -> None:
    server.rate_limit_next(1, retry_delay=60)
    start = time.monotonic()
    with pytest.raises(RateLimitError, match="max_retry_seconds"):
        make(server, max_retry_seconds=5).embed(["x"])
    assert time.monotonic() - start < 2
    assert len(server.embed_requests) == 1


def test_a_daily_quota_is_not_retried(server: FakeGeminiServer) -> None:
    server.fail_next(1, status=429, quota_id="EmbedContentRequestsPerDayPerProjectPerModel")
    with pytest.raises(RateLimitError, match="daily quota"):
        make(server).embed(["x"])
    assert len(server.embed_requests) == 1


def test_a_bad_request_is_not_retried(server: FakeGeminiServer) -> None:
    server.fail_next(1, status=400, message="Invalid value at 'requests[0]'")
    with pytest.raises(ProviderError, match="400 INVALID_ARGUMENT") as info:
        make(server).embed(["x"])
    assert info.value.status_code == 400
    assert not info.value.retryable
    assert len(server.embed_requests) == 1


def test_an_unknown_model_is_a_clear_error(server: FakeGeminiServer) -> None:
    with pytest.raises(ProviderError, match="check the model id"):
        make(server, model="no-such-model").embed(["x"])


def test_a_refused_key_is_an_authentication_error() -> None:
    with FakeGeminiServer(api_key="the-right-key") as server:
        embedder = GeminiEmbedder(dimensions=128, client=server.client(api_key="a-wrong-key"))
        with pytest.raises(AuthenticationError, match="API key was refused"):
            embedder.embed(["x"])
        assert len(server.embed_requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_failing_call_fails_the_whole_embed_with_its_error(
    server: FakeGeminiServer, mode: str
) -> None:
    server.latency = 0.02  # calls overlap, so some are in flight when one fails
    server.fail_next(1, status=400, message="one bad call")
    embedder = make(server, batch_size=10, concurrency=4)
    texts = [f"t{i}" for i in range(200)]
    with pytest.raises(ProviderError, match="one bad call"):
        embedder.embed(texts) if mode == "sync" else asyncio.run(embedder.aembed(texts))
    # the calls not yet started were dropped
    assert len(server.embed_requests) < 20


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_malformed_reply_among_concurrent_calls_fails_the_embed(
    server: FakeGeminiServer, mode: str
) -> None:
    server.latency = 0.02
    server.tamper_next(transform=lambda answer: '{"embeddings": [')
    embedder = make(server, batch_size=10, concurrency=4)
    texts = [f"t{i}" for i in range(200)]
    with pytest.raises(ProviderError, match="not JSON"):
        embedder.embed(texts) if mode == "sync" else asyncio.run(embedder.aembed(texts))
    assert len(server.embed_requests) < 20
    # the embedder stays usable
    assert embedder.embed(texts[:30]).shape == (30, 128)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _assert_clean(err: BaseException) -> None:
    texts = [str(err), repr(err), "".join(traceback.format_exception(err))]
    texts.append(pickle.dumps(err).decode("latin-1"))
    for link in _chain(err):
        texts += [str(link), repr(link), repr(getattr(link, "__dict__", {}))]
        response = getattr(link, "response", None)
        request = getattr(link, "_request", None)
        assert response is None or SENTINEL_KEY not in repr(vars(response))
        assert request is None
    for text in texts:
        assert SENTINEL_KEY not in text


def test_the_api_key_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeGeminiServer() as server:
        client = server.client(api_key=SENTINEL_KEY)
        embedder = GeminiEmbedder(
            dimensions=128,
            client=client,
            retry_initial_delay=0.01,
            retry_max_delay=0.02,
            max_retries=1,
            timeout=1.0,
        )
        errors: list[EmbeddingError] = []
        for inject in (
            lambda: server.rate_limit_next(9, retry_delay=0.01),
            lambda: server.fail_next(9, status=500),
            lambda: server.fail_next(1, status=400),
            lambda: server.drop_next(9),  # aiohttp retries a dropped reused connection itself
            lambda: server.slow_next(2, seconds=2.5),
        ):
            inject()
            with pytest.raises(EmbeddingError) as info:
                embedder.embed(["x"])
            errors.append(info.value)
            server.reset()
            inject()
            with pytest.raises(EmbeddingError) as ainfo:
                asyncio.run(embedder.aembed(["y"]))
            errors.append(ainfo.value)
            server.reset()
        out = embedder.embed(["fine"])
        assert out.shape == (1, 128)
        for err in errors:
            _assert_clean(err)
        assert SENTINEL_KEY not in repr(embedder)
        assert SENTINEL_KEY not in repr(embedder.usage)
        assert SENTINEL_KEY not in repr(server.requests)
        assert caplog.records  # retries were logged
        assert all(SENTINEL_KEY not in r.getMessage() for r in caplog.records)
        assert SENTINEL_KEY not in caplog.text


def test_a_key_the_embedder_creates_its_client_with_never_shows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeGeminiServer() as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.base_url)
        embedder = GeminiEmbedder(
            dimensions=128, api_key=SENTINEL_KEY, retry_initial_delay=0.01, max_retries=0
        )
        try:
            server.fail_next(1, status=503)
            with pytest.raises(ProviderError) as info:
                embedder.embed(["x"])
            _assert_clean(info.value)
            assert SENTINEL_KEY not in repr(embedder)
            np.testing.assert_equal(embedder.embed(["x"]).shape, (1, 128))
            assert server.embed_requests[-1].api_key_sent
        finally:
            embedder.close()
        assert SENTINEL_KEY not in caplog.text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_item_the_server_refuses_is_named(server: FakeGeminiServer, mode: str) -> None:
    server.slow_next(1, seconds=0)  # the first call goes through
    server.fail_next(
        1,
        status=400,
        message="* BatchEmbedContentsRequest.requests[2].content.parts[0].inline_data: "
        "Unable to process input image.",
    )
    embedder = make(server, batch_size=4, concurrency=1)
    texts = [f"t{i}" for i in range(12)]
    with pytest.raises(ProviderError, match=r"^item 6 was refused: .*requests\[2\]") as info:
        embedder.embed(texts) if mode == "sync" else asyncio.run(embedder.aembed(texts))
    assert info.value.status_code == 400
    assert not info.value.retryable
