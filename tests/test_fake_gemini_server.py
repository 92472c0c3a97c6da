"""FakeGeminiServer on its own: wire format, limits, faults and log (raw HTTP and the SDK)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mmembed.limits import limits_for
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_audio, make_image, make_pdf

MODEL = "gemini-embedding-2"


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as s:
        yield s


def post(
    server: FakeGeminiServer,
    body: Any,
    *,
    path: str = f"/v1/models/{MODEL}:batchEmbedContents",
    key: str | None = "k",
) -> tuple[int, Any]:
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-goog-api-key"] = key
    try:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def one(parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"requests": [{"content": {"parts": parts}, **extra}]}


def vector(server: FakeGeminiServer, parts: list[dict[str, Any]], **extra: Any) -> np.ndarray:
    status, answer = post(server, one(parts, outputDimensionality=128, **extra))
    assert status == 200, answer
    return np.array(answer["embeddings"][0]["values"])


def test_both_key_casings_and_both_base64_alphabets_give_the_same_vector(
    server: FakeGeminiServer,
) -> None:
    # bytes whose base64 uses the characters that differ between the alphabets
    data = bytes(range(256)) * 4
    image = (
        make_image("PNG", (8, 8), noise=True, seed=3) + data
    )  # still sniffed and sent as image/png
    std = base64.b64encode(image).decode()
    url = base64.urlsafe_b64encode(image).decode().rstrip("=")
    assert std != url
    snake = vector(server, [{"inline_data": {"mime_type": "image/png", "data": url}}])
    camel = vector(server, [{"inlineData": {"mimeType": "image/png", "data": std}}])
    np.testing.assert_array_equal(snake, camel)
    status, _ = post(
        server, one([{"text": "x"}], output_dimensionality=128)
    )  # snake_case request field
    assert status == 200


def test_vectors_are_deterministic_unit_and_the_requested_width(
    server: FakeGeminiServer,
) -> None:
    a = vector(server, [{"text": "the cat sat on the mat"}])
    b = vector(server, [{"text": "the cat sat on the mat"}])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (128,)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    _, answer = post(server, one([{"text": "x"}]))
    assert len(answer["embeddings"][0]["values"]) == limits_for(MODEL).default_dimensions


def test_shared_words_mean_a_higher_cosine_and_prefixes_are_ignored(
    server: FakeGeminiServer,
) -> None:
    doc = vector(server, [{"text": "title: none | text: the Krebs cycle in mitochondria"}])
    query = vector(server, [{"text": "task: search result | query: the Krebs cycle"}])
    other = vector(server, [{"text": "task: search result | query: fourteen line sonnets"}])
    assert doc @ query > doc @ other
    plain = vector(server, [{"text": "the Krebs cycle"}])
    np.testing.assert_allclose(plain, query, atol=1e-6)


def test_embed_content_single_form(server: FakeGeminiServer) -> None:
    status, answer = post(
        server,
        {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 128},
        path=f"/v1beta/models/{MODEL}:embedContent",
    )
    assert status == 200
    assert len(answer["embedding"]["values"]) == 128


def _error(server: FakeGeminiServer, body: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    status, answer = post(server, body, **kw)
    assert set(answer) == {"error"}
    assert set(answer["error"]) >= {"code", "message", "status"}
    assert answer["error"]["code"] == status
    return status, answer["error"]


def test_limits_are_enforced_with_googles_error_shape(server: FakeGeminiServer) -> None:
    lim = limits_for(MODEL)
    status, err = _error(server, {"requests": [{"content": {"parts": [{"text": "x"}]}}] * 101})
    assert (status, err["status"]) == (400, "INVALID_ARGUMENT")
    assert err["message"] == (
        "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
    )
    img = {
        "inline_data": {
            "mime_type": "image/png",
            "data": base64.b64encode(make_image("PNG", (8, 8), noise=True)).decode(),
        }
    }
    status, err = _error(server, one([img] * (lim.max_images_per_item + 1)))
    assert status == 400
    assert "at most 6 images" in err["message"]
    gif = {"inline_data": {"mime_type": "image/gif", "data": "R0lGODlh"}}
    status, err = _error(server, one([gif]))
    assert "Unsupported MIME type: image/gif" in err["message"]
    long_audio = base64.b64encode(
        make_audio(seconds=lim.max_audio_seconds + 5, sample_rate=2000)
    ).decode()
    status, err = _error(
        server, one([{"inline_data": {"mime_type": "audio/wav", "data": long_audio}}])
    )
    assert "exceeds the maximum of 180s" in err["message"]
    pages = base64.b64encode(make_pdf(7)).decode()
    status, err = _error(
        server, one([{"inline_data": {"mime_type": "application/pdf", "data": pages}}])
    )
    assert "at most 6 pages" in err["message"]
    status, err = _error(server, one([{"text": "word " * 6000}]))
    assert "exceeds the maximum number of tokens allowed (8192)" in err["message"]
    status, err = _error(server, one([{"text": "x"}], outputDimensionality=64))
    assert "output_dimensionality" in err["message"]
    status, err = _error(
        server, one([{"inline_data": {"mime_type": "image/png", "data": "!!not base64!!"}}])
    )
    assert "Base64 decoding failed" in err["message"]
    assert all(r.status == 400 for r in server.requests)


def test_the_inline_payload_limit_is_enforced(server: FakeGeminiServer) -> None:
    lim = limits_for(MODEL)
    data = base64.b64encode(
        make_image("PNG", (256, 256), noise=True)
    ).decode()  # random pixels: about 260 kB of base64
    per_call = lim.max_items_per_call
    assert len(data) * per_call > lim.max_inline_bytes
    parts = [{"inline_data": {"mime_type": "image/png", "data": data}}]
    status, err = _error(server, {"requests": [{"content": {"parts": parts}}] * per_call})
    assert status == 400
    assert (
        err["message"] == f"Request payload size exceeds the limit: {lim.max_inline_bytes} bytes."
    )


def test_keys_are_checked() -> None:
    with FakeGeminiServer(api_key="right") as server:
        status, err = _error(server, one([{"text": "x"}]), key=None)
        assert (status, err["status"]) == (403, "PERMISSION_DENIED")
        status, err = _error(server, one([{"text": "x"}]), key="wrong")
        assert (status, err["status"]) == (400, "INVALID_ARGUMENT")
        assert err["details"][0]["reason"] == "API_KEY_INVALID"
        assert post(server, one([{"text": "x"}]), key="right")[0] == 200
        assert [r.api_key_sent for r in server.requests] == [False, True, True]
        assert all(r.headers.get("x-goog-api-key", "***") == "***" for r in server.requests)


def test_unknown_models_and_paths_are_404(server: FakeGeminiServer) -> None:
    status, err = _error(server, one([{"text": "x"}]), path="/v1/models/gpt-4:batchEmbedContents")
    assert status == 404
    assert "models/gpt-4 is not found" in err["message"]
    status, _ = _error(server, {}, path="/v1/nothing/here")
    assert status == 404


def test_a_429_carries_quota_failure_and_retry_info(server: FakeGeminiServer) -> None:
    server.rate_limit_next(1, retry_delay=1.5)
    status, err = _error(server, one([{"text": "x"}]))
    assert (status, err["status"]) == (429, "RESOURCE_EXHAUSTED")
    types_ = [d["@type"] for d in err["details"]]
    assert types_ == [
        "type.googleapis.com/google.rpc.QuotaFailure",
        "type.googleapis.com/google.rpc.RetryInfo",
    ]
    assert err["details"][1]["retryDelay"] == "1.5s"
    assert post(server, one([{"text": "x"}]))[0] == 200  # only the next call failed


def test_faults_apply_in_order_to_the_next_calls(server: FakeGeminiServer) -> None:
    server.fail_next(2, status=503)
    server.fail_next(1, status=500, message="boom")
    statuses = [post(server, one([{"text": "x"}]))[0] for _ in range(4)]
    assert statuses == [503, 503, 500, 200]


def test_a_dropped_connection_gets_no_answer(server: FakeGeminiServer) -> None:
    server.drop_next()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(server, one([{"text": "x"}]))
    assert server.requests[0].status == 0
    assert post(server, one([{"text": "x"}]))[0] == 200


def test_the_request_log_parses_bodies(server: FakeGeminiServer) -> None:
    post(server, one([{"text": "hello"}], outputDimensionality=128))
    (recorded,) = server.requests
    assert recorded.method == "POST"
    assert recorded.endpoint == "batchEmbedContents"
    assert recorded.model == MODEL
    assert recorded.items == 1
    assert recorded.contents == [{"parts": [{"text": "hello"}]}]
    server.reset()
    assert server.requests == []


def test_the_files_api_flow_through_the_sdk() -> None:
    from google.genai import types

    with FakeGeminiServer(file_processing_polls=1) as server:
        client = server.client()
        data = make_image("PNG", (32, 32), noise=True, seed=8)
        uploaded = client.files.upload(file=io.BytesIO(data), config={"mime_type": "image/png"})
        assert uploaded.state is not None
        assert uploaded.state.value == "PROCESSING"
        assert uploaded.name is not None
        assert client.files.get(name=uploaded.name).state.value == "PROCESSING"  # type: ignore[union-attr]
        active = client.files.get(name=uploaded.name)
        assert active.state is not None
        assert active.state.value == "ACTIVE"
        assert server.uploaded_files[uploaded.name] == data
        by_ref = client.models.embed_content(
            model=MODEL,
            contents=[
                types.Content(
                    parts=[types.Part.from_uri(file_uri=active.uri or "", mime_type="image/png")]
                )
            ],
            config=types.EmbedContentConfig(output_dimensionality=128),
        )
        inline = client.models.embed_content(
            model=MODEL,
            contents=[
                types.Content(parts=[types.Part.from_bytes(data=data, mime_type="image/png")])
            ],
            config=types.EmbedContentConfig(output_dimensionality=128),
        )
        assert by_ref.embeddings is not None
        assert inline.embeddings is not None
        assert by_ref.embeddings[0].values == inline.embeddings[0].values
        client.files.delete(name=uploaded.name)
        assert uploaded.name not in server.uploaded_files


def test_task_type_can_be_rejected_for_prefix_models() -> None:
    with FakeGeminiServer(reject_task_type=True) as server:
        status, err = _error(server, one([{"text": "x"}], taskType="RETRIEVAL_QUERY"))
        assert status == 400
        assert "task_type" in err["message"]
        ok = post(
            server,
            one([{"text": "x"}], taskType="RETRIEVAL_QUERY"),
            path="/v1/models/gemini-embedding-001:batchEmbedContents",
        )
        assert ok[0] == 200


def test_start_stop_and_repr() -> None:
    server = FakeGeminiServer()
    assert repr(server) == "FakeGeminiServer(stopped)"
    server.start()
    url = server.base_url
    assert url.startswith("http://127.0.0.1:")
    assert server.env()["GOOGLE_GEMINI_BASE_URL"] == url
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(Exception, match="not running"):
        _ = server.base_url


def _timed_calls(server: FakeGeminiServer, calls: int) -> float:
    body = one([{"text": "hi"}], outputDimensionality=8)
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        start = time.perf_counter()
        for _ in range(calls):
            conn.request("POST", f"/v1/models/{MODEL}:batchEmbedContents", json.dumps(body))
            response = conn.getresponse()
            assert response.status == 400 or response.read()
        return time.perf_counter() - start
    finally:
        conn.close()


def test_small_replies_on_a_kept_alive_connection_are_not_held_back(
    server: FakeGeminiServer,
) -> None:
    # a reply written as headers then body waits for the client's delayed ACK (40 ms on
    # Linux) under Nagle's algorithm: 20 calls would take ~0.8 s instead of a few ms each
    assert _timed_calls(server, 20) < 0.5


def test_latency_counts_from_arrival_and_includes_the_servers_own_work() -> None:
    def slow(answer: Any) -> Any:
        time.sleep(0.2)  # the fake's own work, done within the latency
        return answer

    with FakeGeminiServer(latency=0.3) as server:
        assert 0.3 <= _timed_calls(server, 1) < 0.45
        server.tamper_next(transform=slow)
        assert 0.3 <= _timed_calls(server, 1) < 0.45
        server.fail_next(1, status=503)  # errors keep the latency too
        assert 0.3 <= _timed_calls(server, 1) < 0.45


def test_many_clients_connecting_at_once_are_all_answered_promptly(
    server: FakeGeminiServer,
) -> None:
    # with the listen backlog of 5 a burst of new connections loses handshakes, which the
    # kernel retries only a second later
    clients = 48
    gate = threading.Barrier(clients)
    took: list[float] = []

    def client() -> None:
        gate.wait()
        took.append(_timed_calls(server, 1))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(took) == clients
    assert max(took) < 0.9
