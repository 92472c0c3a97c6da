"""The LlamaIndex adapter, offline: the conftest guard turns any download into a failure."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding, MultiModalEmbedding
from llama_index.core.schema import TextNode
from PIL import Image as PILImage

from mmembed.content import Audio, Image, Task
from mmembed.errors import ConfigurationError, EmbeddingError, UnsupportedMediaError
from mmembed.integrations.llamaindex import LlamaIndexEmbedding
from mmembed.testing import FakeEmbedder, FakeGeminiServer


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def test_is_a_llamaindex_multimodal_embedding() -> None:
    emb = LlamaIndexEmbedding(FakeEmbedder(16))
    assert isinstance(emb, BaseEmbedding)
    assert isinstance(emb, MultiModalEmbedding)
    assert emb.model_name == "fake-embedder"
    assert emb.dimensions == 16


def test_query_and_text_use_their_tasks() -> None:
    fake = FakeEmbedder(8)
    emb = LlamaIndexEmbedding(fake)
    q = emb.get_query_embedding("what purrs?")
    t = emb.get_text_embedding("cats purr")
    assert [c.task for c in fake.calls] == [Task.QUERY, Task.DOCUMENT]
    assert all(type(x) is float for x in q + t)
    np.testing.assert_allclose(t, fake.embed(["cats purr"])[0], atol=1e-6)


def test_batches_give_one_vector_per_item_in_order() -> None:
    fake = FakeEmbedder(8)
    emb = LlamaIndexEmbedding(fake, embed_batch_size=40)
    texts = [f"text {i}" for i in range(130)]
    vectors = emb.get_text_embedding_batch(texts)
    assert len(vectors) == 130
    np.testing.assert_allclose(vectors, FakeEmbedder(8).embed(texts), atol=1e-6)
    assert [len(c.items) for c in fake.calls] == [40, 40, 40, 10]


def test_async_paths_are_native_and_ordered() -> None:
    fake = FakeEmbedder(8)
    emb = LlamaIndexEmbedding(fake, embed_batch_size=7)
    texts = [f"t{i}" for i in range(20)]

    async def run() -> tuple[list[list[float]], list[float]]:
        vectors = await emb.aget_text_embedding_batch(texts)
        query = await emb.aget_query_embedding("t3")
        return vectors, query

    vectors, query = asyncio.run(run())
    expected = FakeEmbedder(8).embed(texts)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    np.testing.assert_allclose(query, expected[3], atol=1e-6)
    assert fake.calls[-1].task is Task.QUERY


def test_images_from_paths_bytesio_and_parts(tmp_path: Path) -> None:
    fake = FakeEmbedder(8)
    emb = LlamaIndexEmbedding(fake)
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    path = tmp_path / "red.png"
    path.write_bytes(red)
    expected = FakeEmbedder(8).embed([Image(red, "image/png"), Image(blue, "image/png")])

    np.testing.assert_allclose(emb.get_image_embedding(str(path)), expected[0], atol=1e-6)
    np.testing.assert_allclose(emb.get_image_embedding(io.BytesIO(blue)), expected[1], atol=1e-6)
    batch = emb.get_image_embedding_batch([str(path), io.BytesIO(blue), str(path)])
    np.testing.assert_allclose(batch, expected[[0, 1, 0]], atol=1e-6)
    assert len(fake.calls[-1].items) == 3  # one embedder call for the batch

    async def run() -> list[list[float]]:
        single = await emb.aget_image_embedding(str(path))
        many = await emb.aget_image_embedding_batch([io.BytesIO(blue), str(path)])
        return [single, *many]

    np.testing.assert_allclose(asyncio.run(run()), expected[[0, 1, 0]], atol=1e-6)


def test_bad_images_give_clear_errors(tmp_path: Path) -> None:
    emb = LlamaIndexEmbedding(FakeEmbedder(8))
    with pytest.raises(ConfigurationError, match="not a file"):
        emb.get_image_embedding(str(tmp_path / "missing.png"))
    (tmp_path / "a.txt").write_text("just words")
    with pytest.raises(UnsupportedMediaError, match="expected an image"):
        emb.get_image_embedding(str(tmp_path / "a.txt"))
    with pytest.raises(UnsupportedMediaError, match="not an image"):
        emb.get_image_embedding(io.BytesIO(b"\x00\x01\x02garbage"))


def test_other_modalities_through_get_embedding_for() -> None:
    fake = FakeEmbedder(8)
    emb = LlamaIndexEmbedding(fake)
    clip = Audio(b"RIFF0000WAVEfmt ", "audio/wav")
    vector = emb.get_embedding_for(clip)
    np.testing.assert_allclose(vector, FakeEmbedder(8).embed([clip])[0], atol=1e-6)
    emb.get_embedding_for("q", task=Task.CLASSIFICATION)
    assert fake.calls[-1].task is Task.CLASSIFICATION


def test_vector_store_index_end_to_end_offline() -> None:
    emb = LlamaIndexEmbedding(FakeEmbedder(32))
    nodes = [
        TextNode(text="the krebs cycle happens in mitochondria", id_="krebs"),
        TextNode(text="rockets launch into orbit", id_="rocket"),
    ]
    index = VectorStoreIndex(nodes, embed_model=emb)
    [hit] = index.as_retriever(similarity_top_k=1).retrieve("the krebs cycle")
    assert hit.node.node_id == "krebs"


def test_documents_are_split_with_bundled_tokenizers_offline() -> None:
    # from_documents runs LlamaIndex's sentence splitter (tiktoken + NLTK data); with the
    # network guard on, this passes only if no file is downloaded
    emb = LlamaIndexEmbedding(FakeEmbedder(16))
    text = " ".join(f"Sentence number {i} talks about cats." for i in range(200))
    index = VectorStoreIndex.from_documents([Document(text=text)], embed_model=emb)
    assert len(index.docstore.docs) > 1
    assert index.as_retriever(similarity_top_k=2).retrieve("cats")


def test_gemini_end_to_end_through_the_fake_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeGeminiServer() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        emb = LlamaIndexEmbedding(model="gemini-embedding-2", dimensions=128)
        path = tmp_path / "red.png"
        path.write_bytes(_png((255, 0, 0)))
        texts = emb.get_text_embedding_batch(["cats purr", "rockets fly"])
        query = emb.get_query_embedding("cats purr")
        image = emb.get_image_embedding(str(path))
        requests = server.embed_requests
    assert len(texts) == 2
    assert len(query) == len(image) == 128
    assert [r.items for r in requests] == [2, 1, 1]
    assert requests[1].contents[0]["parts"][0]["text"].startswith("task: search result | query:")
    assert "inlineData" in requests[2].contents[0]["parts"][0] or (
        "inline_data" in requests[2].contents[0]["parts"][0]
    )


def test_row_count_is_checked() -> None:
    class Fusing(FakeEmbedder):
        def embed(self, items: Any, *, task: Task = Task.DOCUMENT) -> Any:
            return super().embed(["fused"], task=task)

    with pytest.raises(EmbeddingError, match="1 vectors for 2 inputs"):
        LlamaIndexEmbedding(Fusing(8)).get_text_embedding_batch(["a", "b"])


def test_gemini_parameters_are_lazy_and_the_key_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    emb = LlamaIndexEmbedding(model="gemini-embedding-2", dimensions=256, api_key="sk-secret")
    assert (emb.model_name, emb.dimensions) == ("gemini-embedding-2", 256)
    assert "sk-secret" not in repr(emb)
    assert "sk-secret" not in str(emb.to_dict())
    monkeypatch.setenv("GEMINI_API_KEY", "env-key")
    from_env = LlamaIndexEmbedding()
    assert from_env.api_key is not None
    assert from_env.api_key.get_secret_value() == "env-key"
    with pytest.raises(ConfigurationError, match="model"):
        LlamaIndexEmbedding(FakeEmbedder(8), model="x")
    with pytest.raises(ConfigurationError, match="mmembed Embedder"):
        LlamaIndexEmbedding(object())  # type: ignore[arg-type]


def test_llamaindex_names_work_and_wrong_names_fail_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeGeminiServer() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        emb = LlamaIndexEmbedding(
            model_name="gemini-embedding-2", dimensions=128, embed_batch_size=2
        )
        vectors = emb.get_text_embedding_batch(["a", "b", "c"])
        # LlamaIndex serialises the model by its own field names and rebuilds it from them
        again = LlamaIndexEmbedding.from_dict(emb.to_dict())
        again.get_query_embedding("a")
        emb.close()
        again.close()
        requests = server.embed_requests
    assert len(vectors) == 3
    assert [r.items for r in requests] == [2, 1, 1]  # embed_batch_size items per call
    assert (again.model_name, again.dimensions, again.embed_batch_size) == (
        "gemini-embedding-2",
        128,
        2,
    )

    wrong = {
        "output_dimensionality": "did you mean dimensions",
        "task_type": "did you mean query_task= and document_task=",
        "embedding_config": "did you mean dimensions=",
        "embed_batch": "did you mean embed_batch_size",
        "retries": "max_retries",
    }
    for name, suggestion in wrong.items():
        with pytest.raises(ConfigurationError, match=suggestion):
            LlamaIndexEmbedding(**{name: 1})
    with pytest.raises(ConfigurationError, match="did you mean max_retries"):
        LlamaIndexEmbedding(gemini_options={"retries": 3})
    with pytest.raises(ConfigurationError, match="same setting"):
        LlamaIndexEmbedding(model="gemini-embedding-2", model_name="gemini-embedding-2")
    with pytest.raises(ConfigurationError, match="model"):
        LlamaIndexEmbedding(FakeEmbedder(8), model_name="x")
    # LlamaIndex's own fields still pass through
    assert LlamaIndexEmbedding(FakeEmbedder(8), num_workers=2).num_workers == 2
