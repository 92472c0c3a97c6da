"""FakeGeminiServer configured like the real service: per-modality latency, a requests-per-minute
quota answered with 429s, a request-size limit, bodies not kept, and what it billed."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from mmembed import Image
from mmembed.content import Modality
from mmembed.embedders.gemini import GeminiEmbedder
from mmembed.errors import ConfigurationError, RateLimitError
from mmembed.limits import cost_usd, limits_for
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_image
from tests.test_fake_gemini_server import one, post

MODEL = "gemini-embedding-2"


def image_part(data: bytes) -> dict[str, Any]:
    return {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(data).decode()}}


def timed(server: FakeGeminiServer, body: Any) -> tuple[float, int, Any]:
    start = time.monotonic()
    status, answer = post(server, body)
    return time.monotonic() - start, status, answer


def test_a_call_takes_the_latency_of_its_slowest_modality() -> None:
    png = make_image("PNG", (32, 32))
    with FakeGeminiServer(latency=0.0, latency_by_modality={"image": 0.4}) as server:
        text_s, status, _ = timed(server, one([{"text": "hello"}]))
        assert status == 200
        image_s, status, _ = timed(server, one([{"text": "a caption"}, image_part(png)]))
        assert status == 200
    assert image_s >= 0.4
    assert text_s < 0.4


def test_latency_by_modality_names_known_modalities_only() -> None:
    with pytest.raises(ConfigurationError, match="latency_by_modality"):
        FakeGeminiServer(latency_by_modality={"movie": 1.0})
    with pytest.raises(ConfigurationError, match="requests_per_minute"):
        FakeGeminiServer(requests_per_minute=0)


def test_calls_past_the_per_minute_quota_get_a_429_with_the_wait_until_a_slot_frees() -> None:
    with FakeGeminiServer(requests_per_minute=2) as server:
        assert post(server, one([{"text": "a"}]))[0] == 200
        assert post(server, one([{"text": "b"}]))[0] == 200
        status, answer = post(server, one([{"text": "c"}]))
        assert status == 429
        assert answer["error"]["status"] == "RESOURCE_EXHAUSTED"
        delays = [d["retryDelay"] for d in answer["error"]["details"] if "RetryInfo" in d["@type"]]
        assert len(delays) == 1
        assert 55 <= float(delays[0].rstrip("s")) <= 60
        usage = server.usage
    assert (usage.calls, usage.requests, usage.rate_limited) == (2, 3, 1)


def test_the_embedder_gives_up_on_a_quota_wait_longer_than_its_budget() -> None:
    with FakeGeminiServer(requests_per_minute=1) as server:
        embedder = GeminiEmbedder(dimensions=128, client=server.client(), max_retry_seconds=5)
        embedder.embed(["first"])
        with pytest.raises(RateLimitError) as caught:
            embedder.embed(["second"])
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 5


def test_media_over_the_request_size_limit_are_refused_inline_and_taken_by_upload() -> None:
    png = make_image("PNG", (200, 200), noise=True)  # incompressible: about 120 KB
    limit = 64 * 1024
    with FakeGeminiServer(max_inline_bytes=limit) as server:
        status, answer = post(server, one([image_part(png)]))
        assert status == 400
        assert f"{limit} bytes" in answer["error"]["message"]
        embedder = GeminiEmbedder(dimensions=128, client=server.client(), inline_bytes_limit=limit)
        vectors = embedder.embed([Image(png, "image/png")])
        endpoints = [r.endpoint for r in server.requests]
    assert vectors.shape == (1, 128)
    assert "files.upload" in endpoints


def test_without_bodies_the_log_keeps_sizes_and_item_counts() -> None:
    with FakeGeminiServer(keep_bodies=False) as server:
        body = {"requests": [{"content": {"parts": [{"text": t}]}} for t in "abc"]}
        assert post(server, body)[0] == 200
        (request,) = server.embed_requests
    assert request.body is None
    assert request.items == 3
    assert request.size > 0


def test_usage_is_what_the_answers_reported_priced_by_the_cost_table() -> None:
    png = make_image("PNG", (32, 32))
    with FakeGeminiServer() as server:
        embedder = GeminiEmbedder(dimensions=128, client=server.client())
        embedder.embed(["some words to count", Image(png, "image/png")])
        usage = server.usage
    assert (usage.calls, usage.items) == (1, 2)
    limits = limits_for(MODEL)
    assert usage.tokens_by_modality[Modality.IMAGE] == limits.tokens_per_image
    assert usage.cost_usd == pytest.approx(cost_usd(usage.tokens_by_modality, limits))
    assert usage.cost_usd == pytest.approx(embedder.usage.cost_usd)
    assert usage.bytes_received > len(png)


def test_reset_clears_the_bill_and_the_quota_window() -> None:
    with FakeGeminiServer(requests_per_minute=1) as server:
        assert post(server, one([{"text": "a"}]))[0] == 200
        assert post(server, one([{"text": "b"}]))[0] == 429
        server.reset()
        assert server.usage.calls == 0
        assert server.usage.rate_limited == 0
        assert post(server, one([{"text": "c"}]))[0] == 200
