"""GeminiEmbedder on the real google-genai SDK, against FakeGeminiServer on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mmembed import Content, Image, Modality, Task, Text
from mmembed.embedders import GeminiEmbedder
from mmembed.embedders.gemini import TASK_PREFIXES, TASK_TYPES, apply_task
from mmembed.errors import ConfigurationError, ProviderError
from mmembed.limits import limits_for
from mmembed.protocols import Embedder
from mmembed.testing import FakeGeminiServer
from mmembed.testing._vectors import fake_vector
from mmembed.testing.contracts.embedder import EmbedderContract
from mmembed.testing.media import make_image


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as s:
        yield s


def make(server: FakeGeminiServer, **options: Any) -> GeminiEmbedder:
    options.setdefault("dimensions", 256)
    options.setdefault("retry_initial_delay", 0.01)
    return GeminiEmbedder(client=server.client(), **options)


class TestGeminiContract(EmbedderContract):
    @pytest.fixture
    def embedder(self, server: FakeGeminiServer) -> Embedder:
        return make(server)


def test_250_items_take_three_calls_one_vector_each_in_order(server: FakeGeminiServer) -> None:
    texts = [f"document number {i} about topic {i % 7}" for i in range(250)]
    out = make(server).embed(texts)
    calls = server.embed_requests
    assert len(calls) >= 3
    assert all(c.items <= 100 for c in calls)
    assert sum(c.items for c in calls) == 250
    assert out.shape == (250, 256)
    # every row is exactly the vector of its own text: nothing fused, nothing out of order
    expected = np.stack([fake_vector([t], [], 256) for t in texts])
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_each_item_is_its_own_content(server: FakeGeminiServer) -> None:
    make(server).embed(["alpha", "beta", "gamma"])
    (call,) = server.embed_requests
    assert call.endpoint == "batchEmbedContents"
    assert [len(c["parts"]) for c in call.contents] == [1, 1, 1]


def test_a_content_with_several_parts_gives_one_combined_vector(server: FakeGeminiServer) -> None:
    image = Image(make_image("PNG", (8, 8), noise=True, seed=1), "image/png")
    out = make(server).embed([Content([Text("a red square"), image]), "a red square"])
    (call,) = server.embed_requests
    assert call.items == 2
    first = call.contents[0]["parts"]
    assert first[0] == {"text": apply_task("a red square", Task.DOCUMENT)}
    assert set(first[1]) == {"inline_data"}
    assert out.shape == (2, 256)
    assert not np.allclose(out[0], out[1])


@pytest.mark.parametrize("task", list(Task))
def test_tasks_become_prefixes_on_gemini_embedding_2(server: FakeGeminiServer, task: Task) -> None:
    make(server).embed([Text("what is ATP?", title="Biology")], task=task)
    (request,) = server.embed_requests[0].body["requests"]
    sent = request["content"]["parts"][0]["text"]
    assert sent == TASK_PREFIXES[task].format(text="what is ATP?", title="Biology")
    assert "taskType" not in request
    assert "task_type" not in request
    assert request["outputDimensionality"] == 256


def test_document_prefix_says_title_none_without_a_title(server: FakeGeminiServer) -> None:
    make(server).embed(["plain"], task=Task.DOCUMENT)
    (request,) = server.embed_requests[0].body["requests"]
    assert request["content"]["parts"][0]["text"] == "title: none | text: plain"


@pytest.mark.parametrize("task", list(Task))
def test_tasks_become_task_type_on_gemini_embedding_001(
    server: FakeGeminiServer, task: Task
) -> None:
    make(server, model="gemini-embedding-001").embed(["what is ATP?"], task=task)
    (request,) = server.embed_requests[0].body["requests"]
    assert request["content"]["parts"][0]["text"] == "what is ATP?"
    assert request["taskType"] == TASK_TYPES[task]


def test_a_query_is_close_to_its_document(server: FakeGeminiServer) -> None:
    embedder = make(server)
    docs = embedder.embed(
        ["The Krebs cycle runs in the mitochondria", "Sonnets have fourteen lines"],
        task=Task.DOCUMENT,
    )
    query = embedder.embed(["where does the Krebs cycle run"], task=Task.QUERY)[0]
    assert docs[0] @ query > docs[1] @ query


def test_rows_are_normalised_client_side(server: FakeGeminiServer) -> None:
    def scale(answer: dict[str, Any]) -> dict[str, Any]:
        for e in answer["embeddings"]:
            e["values"] = [3.0 * v for v in e["values"]]
        return answer

    server.tamper_next(transform=scale)
    out = make(server).embed(["one", "two"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


def test_fewer_vectors_than_items_is_an_error_not_a_guess(server: FakeGeminiServer) -> None:
    server.tamper_next(transform=lambda a: {"embeddings": a["embeddings"][:1]})
    with pytest.raises(ProviderError, match="returned 1 vectors for 2 items"):
        make(server).embed(["one", "two"])


def test_vectors_of_the_wrong_width_are_an_error(server: FakeGeminiServer) -> None:
    def shorten(answer: dict[str, Any]) -> dict[str, Any]:
        for e in answer["embeddings"]:
            e["values"] = e["values"][:100]
        return answer

    server.tamper_next(transform=shorten)
    with pytest.raises(ProviderError, match="100 values for item 0, expected 256"):
        make(server).embed(["one"])


def test_sync_and_async_give_identical_rows(server: FakeGeminiServer) -> None:
    items: list[Any] = [f"sentence {i} with words" for i in range(230)]
    items += [Image(make_image("PNG", (8, 8), noise=True, seed=i), "image/png") for i in range(3)]
    items.append(
        Content(["caption", Image(make_image("PNG", (8, 8), noise=True, seed=9), "image/png")])
    )
    embedder = make(server, concurrency=3)
    sync = embedder.embed(items, task=Task.QUERY)
    async_ = asyncio.run(embedder.aembed(items, task=Task.QUERY))
    assert sync.shape == (len(items), 256)
    np.testing.assert_array_equal(sync, async_)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_large_inputs_run_calls_concurrently_within_the_bound(mode: str) -> None:
    with FakeGeminiServer(latency=0.15) as server:
        embedder = make(server, concurrency=3, batch_size=10)
        texts = [f"t{i}" for i in range(90)]
        out = embedder.embed(texts) if mode == "sync" else asyncio.run(embedder.aembed(texts))
        assert out.shape == (90, 256)
        assert len(server.embed_requests) == 9
        assert server.max_concurrent == 3


def test_batch_size_and_inline_bytes_split_calls(server: FakeGeminiServer) -> None:
    image = make_image("PNG", (32, 32), noise=True, seed=3)
    # room for two images (base64) per call, so six images need three calls
    limit = int(len(image) * 4 / 3 * 2) + 8
    embedder = make(server, inline_bytes_limit=limit)
    embedder.embed(
        [Image(make_image("PNG", (32, 32), noise=True, seed=i), "image/png") for i in range(6)]
    )
    assert [c.items for c in server.embed_requests] == [2, 2, 2]
    server.reset()
    make(server, batch_size=4).embed([f"x{i}" for i in range(10)])
    assert sorted(c.items for c in server.embed_requests) == [2, 4, 4]


def test_empty_input_sends_nothing(server: FakeGeminiServer) -> None:
    out = make(server).embed([])
    assert out.shape == (0, 256)
    assert server.requests == []


def test_usage_counts_tokens_and_cost_per_call_and_in_total(server: FakeGeminiServer) -> None:
    embedder = make(server)
    embedder.embed(["hello world", "another text"])
    first = embedder.last_usage
    assert first.requests == 1
    assert first.items == 2
    assert not first.estimated
    # the fake server counts a text part as ceil(characters / 4) tokens
    sent = [apply_task(t, Task.DOCUMENT) for t in ("hello world", "another text")]
    assert first.tokens == sum(math.ceil(len(t) / 4) for t in sent)
    price = limits_for("gemini-embedding-2").price_per_million_tokens

    assert first.cost_usd == pytest.approx(first.tokens * price[Modality.TEXT] / 1e6)
    embedder.embed([Image(make_image("PNG", (8, 8), noise=True, seed=2), "image/png")])
    second = embedder.last_usage
    assert second.tokens_by_modality[Modality.IMAGE] > 0
    assert second.cost_usd == pytest.approx(
        second.tokens_by_modality[Modality.IMAGE] * price[Modality.IMAGE] / 1e6
    )
    total = embedder.usage
    assert total.requests == 2
    assert total.items == 3
    assert total.tokens == first.tokens + second.tokens
    assert total.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)


def test_usage_is_estimated_when_the_service_reports_none() -> None:
    with FakeGeminiServer(usage_metadata=False) as server:
        embedder = make(server)
        embedder.embed(["hello world"])
        usage = embedder.last_usage
        assert usage.estimated
        assert usage.tokens > 0


def test_vertex_sends_one_content_per_request(server: FakeGeminiServer) -> None:
    client = server.client(vertexai=True)
    embedder = GeminiEmbedder(dimensions=128, client=client)
    assert embedder.vertexai
    out = embedder.embed(["a", "b", "c"])
    assert out.shape == (3, 128)
    calls = server.embed_requests
    assert [c.endpoint for c in calls] == ["embedContent"] * 3
    assert all("publishers/google/models/gemini-embedding-2" in c.path for c in calls)


def test_invalid_options_are_configuration_errors(server: FakeGeminiServer) -> None:
    client = server.client()
    for bad in (
        {"dimensions": 64},
        {"dimensions": 4000},
        {"batch_size": 101},
        {"concurrency": 0},
        {"timeout": 0},
        {"max_retries": -1},
    ):
        with pytest.raises(ConfigurationError):
            GeminiEmbedder(client=client, **bad)
    with pytest.raises(ConfigurationError, match="sequence"):
        make(server).embed("not a list")  # type: ignore[arg-type]


def test_repr_and_fingerprint(server: FakeGeminiServer) -> None:
    embedder = make(server)
    assert repr(embedder) == (
        "GeminiEmbedder(model='gemini-embedding-2', dimensions=256, backend='gemini-api')"
    )
    fp = embedder.fingerprint
    assert fp["dimensions"] == 256
    assert fp["task_style"] == "prefix"
    assert embedder.limits is limits_for("gemini-embedding-2")


def test_import_mmembed_does_not_import_google_genai() -> None:
    code = (
        "import sys, mmembed, mmembed.embedders, mmembed.testing, mmembed.cache;"
        "print(any(m.startswith('google') for m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="."
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("model", ["gemini-embedding-2", "gemini-embedding-001"])
def test_the_request_body_is_what_the_sdk_itself_sends(
    server: FakeGeminiServer, model: str
) -> None:
    """The fast path builds the body by hand: it must stay identical to the SDK's own."""
    from google.genai import types

    image = make_image("PNG", (8, 8), noise=True, seed=2)
    items: list[Any] = ["alpha", Content(["caption", Image(image, "image/png")])]
    if model == "gemini-embedding-001":
        items = ["alpha", "beta"]
    embedder = make(server, model=model)
    embedder.embed(items, task=Task.QUERY)
    ours = server.embed_requests[-1].body
    contents = []
    for item in items:
        parts = item.parts if isinstance(item, Content) else [Text(item)]
        sdk_parts = []
        first = True
        for p in parts:
            if isinstance(p, Text):
                text = apply_task(p.text, Task.QUERY) if first and model.endswith("-2") else p.text
                first = False
                sdk_parts.append(types.Part(text=text))
            else:
                sdk_parts.append(types.Part.from_bytes(data=image, mime_type="image/png"))
        contents.append(types.Content(parts=sdk_parts))
    task_type = TASK_TYPES[Task.QUERY] if model == "gemini-embedding-001" else None
    server.client().models.embed_content(
        model=model,
        contents=contents,
        config=types.EmbedContentConfig(output_dimensionality=256, task_type=task_type),
    )
    assert server.embed_requests[-1].body == ours
