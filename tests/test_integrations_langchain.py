"""The LangChain adapters, checked by LangChain's own standard test suites and by our own tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")
# langchain-tests' own dependencies: its suites use their markers and async tests
pytest.importorskip("pytest_asyncio")
pytest.importorskip("pytest_benchmark")

import pytest_asyncio

pytest.importorskip("qdrant_client")

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests
from PIL import Image as PILImage

from mmembed.content import Image, Task
from mmembed.errors import ConfigurationError, EmbeddingError
from mmembed.integrations.langchain import LangChainEmbeddings, LangChainVectorStore
from mmembed.stores import FaissStore, InMemoryStore
from mmembed.stores.qdrant import QdrantStore
from mmembed.testing import FakeEmbedder, FakeGeminiServer

# The standard suites' async tests carry no marker of their own and the project runs
# pytest-asyncio in strict mode, so the whole module is marked; the plugin's complaint about the
# mark on the sync tests is expected here.
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings(
        "ignore:The test <Function .* is marked with '@pytest.mark.asyncio' but it is not an "
        "async function:pytest.PytestWarning"
    ),
]


# -- LangChain's standard suites ---------------------------------------------------------------


class TestStandardEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LangChainEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": FakeEmbedder(64)}


class TestStandardGeminiParamsUnit(EmbeddingsUnitTests):
    """Construction from Gemini parameters is lazy: it needs no SDK call and no network."""

    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LangChainEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "gemini-embedding-2", "dimensions": 128}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"GEMINI_API_KEY": "key-from-env"},
            {"model": "gemini-embedding-2", "dimensions": 128},
            {"api_key": "key-from-env", "model": "gemini-embedding-2", "dimensions": 128},
        )


class TestStandardEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LangChainEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": FakeEmbedder(64)}


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as server:
        yield server


@pytest.fixture
def gemini_env(gemini_server: FakeGeminiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the real google-genai SDK (as any app would configure it) at the fake server."""
    for name, value in gemini_server.env().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("gemini_env")
class TestStandardGeminiIntegration(EmbeddingsIntegrationTests):
    """The integration suite end to end: LangChain -> GeminiEmbedder -> SDK -> HTTP server."""

    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LangChainEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "gemini-embedding-2", "dimensions": 128}

    # the suite's own fixture, plus closing the SDK's connections in the test's event loop
    @pytest_asyncio.fixture
    async def model(self) -> AsyncIterator[Embeddings]:
        made = LangChainEmbeddings(**self.embedding_model_params)
        yield made
        await made.aclose()


class TestStandardVectorStoreQdrant(VectorStoreIntegrationTests):
    """LangChain's vector-store suite over an mmembed QdrantStore (in memory)."""

    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:  # type: ignore[override]
        store = QdrantStore(6)  # the suite's fake embeddings are 6 wide
        yield LangChainVectorStore(store, self.get_embeddings())
        store.close()


class TestStandardVectorStoreMemory(VectorStoreIntegrationTests):
    """The same suite over InMemoryStore."""

    @pytest.fixture
    def vectorstore(self) -> VectorStore:  # type: ignore[override]
        return LangChainVectorStore(InMemoryStore(6), self.get_embeddings())


class TestStandardVectorStoreFaiss(VectorStoreIntegrationTests):
    """The same suite over FaissStore."""

    @pytest.fixture
    def vectorstore(self) -> VectorStore:  # type: ignore[override]
        return LangChainVectorStore(FaissStore(6), self.get_embeddings())


class _ProtocolOnly:
    """A store with nothing but the VectorStore protocol (no ``get``)."""

    def __init__(self, dimensions: int) -> None:
        self._inner = InMemoryStore(dimensions)
        self.dimensions = dimensions
        self.add = self._inner.add
        self.search = self._inner.search
        self.delete = self._inner.delete

    def __len__(self) -> int:
        return len(self._inner)


class TestStandardVectorStoreProtocolOnly(VectorStoreIntegrationTests):
    """The suite over a bare protocol store: lookups by id go through ``where`` filters."""

    @pytest.fixture
    def vectorstore(self) -> VectorStore:  # type: ignore[override]
        return LangChainVectorStore(_ProtocolOnly(6), self.get_embeddings())


# -- LangChainEmbeddings ------------------------------------------------------------------------


def test_one_vector_per_input_of_python_floats() -> None:
    fake = FakeEmbedder(16)
    emb = LangChainEmbeddings(fake)
    texts = [f"text number {i}" for i in range(150)]  # more than one Gemini batch
    vectors = emb.embed_documents(texts)
    assert len(vectors) == 150
    assert all(len(v) == 16 for v in vectors)
    assert all(type(x) is float for v in vectors for x in v)
    np.testing.assert_allclose(vectors, fake.embed(texts), atol=1e-6)
    assert len({tuple(v) for v in vectors}) == 150  # never one fused vector repeated


def test_tasks_reach_the_embedder() -> None:
    fake = FakeEmbedder(8)
    emb = LangChainEmbeddings(fake)
    emb.embed_documents(["a", "b"])
    emb.embed_query("q")
    asyncio.run(emb.aembed_documents(["c"]))
    asyncio.run(emb.aembed_query("d"))
    assert [c.task for c in fake.calls] == [Task.DOCUMENT, Task.QUERY, Task.DOCUMENT, Task.QUERY]
    assert [c.items for c in fake.calls] == [("a", "b"), ("q",), ("c",), ("d",)]


def test_custom_tasks() -> None:
    fake = FakeEmbedder(8)
    emb = LangChainEmbeddings(
        fake, query_task=Task.QUESTION_ANSWERING, document_task=Task.CLUSTERING
    )
    emb.embed_query("q")
    emb.embed_documents(["d"])
    assert [c.task for c in fake.calls] == [Task.QUESTION_ANSWERING, Task.CLUSTERING]


def test_async_twins_are_native_and_match_sync() -> None:
    class AsyncOnly(FakeEmbedder):
        def embed(self, items: Any, *, task: Task = Task.DOCUMENT) -> Any:
            raise AssertionError("the async path must not call the sync embed")

        async def aembed(self, items: Any, *, task: Task = Task.DOCUMENT) -> Any:
            await asyncio.sleep(0)
            return FakeEmbedder.embed(self, items, task=task)

    emb = LangChainEmbeddings(AsyncOnly(8))
    docs = asyncio.run(emb.aembed_documents(["x", "y"]))
    query = asyncio.run(emb.aembed_query("x"))
    expected = FakeEmbedder(8).embed(["x", "y"])
    np.testing.assert_allclose(docs, expected, atol=1e-6)
    np.testing.assert_allclose(query, expected[0], atol=1e-6)


def test_multimodal_items_and_image_files(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    PILImage.new("RGB", (8, 8), (255, 0, 0)).save(path)
    fake = FakeEmbedder(8)
    emb = LangChainEmbeddings(fake)
    from_file = emb.embed_image([str(path)])
    direct = emb.embed_documents([Image.from_path(path)])
    assert from_file == direct
    assert len(emb.embed_query(Image.from_path(path))) == 8
    (tmp_path / "note.txt").write_text("hello")
    with pytest.raises(ConfigurationError, match="not an image"):
        emb.embed_image([str(tmp_path / "note.txt")])


def test_a_wrong_row_count_is_an_error_not_a_fused_vector() -> None:
    class Fusing(FakeEmbedder):
        def embed(self, items: Any, *, task: Task = Task.DOCUMENT) -> Any:
            return super().embed(["fused"], task=task)  # the classic Gemini list bug

    with pytest.raises(EmbeddingError, match="1 vectors for 3 inputs"):
        LangChainEmbeddings(Fusing(8)).embed_documents(["a", "b", "c"])


def test_close_leaves_a_passed_in_embedder_alone() -> None:
    class Closable(FakeEmbedder):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    mine = Closable(8)
    emb = LangChainEmbeddings(mine)
    emb.close()
    asyncio.run(emb.aclose())
    assert mine.closed == 0


def test_bad_construction_and_input() -> None:
    with pytest.raises(ConfigurationError, match="dimensions"):
        LangChainEmbeddings(FakeEmbedder(8), dimensions=8)
    with pytest.raises(ConfigurationError, match="mmembed Embedder"):
        LangChainEmbeddings(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not one string"):
        LangChainEmbeddings(FakeEmbedder(8)).embed_documents("abc")


def test_gemini_parameters_are_kept_and_the_key_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    emb = LangChainEmbeddings(model="gemini-embedding-2", dimensions=256, api_key="sk-secret")
    assert emb.dimensions == 256
    assert emb.model == "gemini-embedding-2"
    assert "sk-secret" not in repr(emb)
    assert "sk-secret" not in str(emb.api_key)
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    env = LangChainEmbeddings(dimensions=128)
    assert env.api_key is not None
    assert env.api_key.get_secret_value() == "google-key"  # the SDK's precedence
    assert env.model == "gemini-embedding-2"


@pytest.mark.usefixtures("gemini_env")
def test_gemini_gets_one_content_per_text_and_task_prefixes(
    gemini_server: FakeGeminiServer,
) -> None:
    gemini_server.reset()
    emb = LangChainEmbeddings(model="gemini-embedding-2", dimensions=128)
    texts = [f"note {i}" for i in range(120)]  # over the 100-item limit of one call
    vectors = emb.embed_documents(texts)
    query = emb.embed_query("note 7")
    assert len(vectors) == 120
    assert len({tuple(v) for v in vectors}) == 120
    assert all(len(v) == 128 for v in vectors)
    sent = [c["parts"][0]["text"] for r in gemini_server.embed_requests for c in r.contents]
    # batches may run concurrently, so compare as sets; the query comes after all of them
    assert sorted(sent[:120]) == sorted(f"title: none | text: note {i}" for i in range(120))
    assert sent[120:] == ["task: search result | query: note 7"]
    assert all(r.items <= 100 for r in gemini_server.embed_requests)
    # the fake server ignores the prefixes, so a query finds its own text
    best = int(np.argmax(np.asarray(vectors) @ np.asarray(query)))
    assert best == 7


def test_google_genai_names_work_and_wrong_names_fail_at_construction(
    gemini_server: FakeGeminiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a GoogleGenerativeAIEmbeddings user writes works; anything else fails right away."""
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini_server.base_url)
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "v1")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    gemini_server.reset()
    emb = LangChainEmbeddings(
        model="gemini-embedding-2",
        google_api_key="key-from-argument",
        output_dimensionality=256,
        task_type="SEMANTIC_SIMILARITY",
    )
    assert emb.dimensions == 256
    assert emb.api_key is not None
    assert emb.api_key.get_secret_value() == "key-from-argument"
    assert (emb.query_task, emb.document_task) == (Task.SIMILARITY, Task.SIMILARITY)
    docs = emb.embed_documents(["cats purr", "rockets fly"])
    query = emb.embed_query("cats purr")
    emb.close()
    assert [len(v) for v in [*docs, query]] == [256, 256, 256]
    sent = [c["parts"][0]["text"] for r in gemini_server.embed_requests for c in r.contents]
    # LangChain's task_type is one task for both sides; gemini-embedding-2 reads it as a prefix
    assert sent == [
        "task: sentence similarity | query: cats purr",
        "task: sentence similarity | query: rockets fly",
        "task: sentence similarity | query: cats purr",
    ]
    fake = FakeEmbedder(8)
    LangChainEmbeddings(fake, task_type="clustering").embed_query("x")
    assert fake.calls[-1].task is Task.CLUSTERING

    wrong = {
        "dimension": "did you mean dimensions",
        "taskType": "did you mean task_type",
        "model_name": "did you mean model",
        "max_retry": "did you mean max_retries",
        "base_url": "did you mean client=",
    }
    for name, suggestion in wrong.items():
        with pytest.raises(ConfigurationError, match=suggestion):
            LangChainEmbeddings(**{name: 1})
    with pytest.raises(ConfigurationError, match="same setting"):
        LangChainEmbeddings(api_key="a", google_api_key="b")
    with pytest.raises(ConfigurationError, match="same setting"):
        LangChainEmbeddings(dimensions=768, output_dimensionality=768)
    with pytest.raises(ConfigurationError, match="RETRIEVAL_QUERY"):
        LangChainEmbeddings(task_type="RETRIEVE")
    with pytest.raises(ConfigurationError, match="task_type sets both"):
        LangChainEmbeddings(task_type="CLUSTERING", query_task=Task.QUESTION_ANSWERING)
    with pytest.raises(ConfigurationError, match="got an embedder and api_key"):
        LangChainEmbeddings(FakeEmbedder(8), google_api_key="k")
    assert len(gemini_server.embed_requests) == 2  # the refused ones sent nothing


# -- LangChainVectorStore -----------------------------------------------------------------------


@pytest.fixture
def lc_store() -> Iterator[LangChainVectorStore]:
    store = QdrantStore(32)
    yield LangChainVectorStore(store, FakeEmbedder(32))
    store.close()


def test_add_texts_search_filter_and_scores(lc_store: LangChainVectorStore) -> None:
    ids = lc_store.add_texts(
        ["cats purr and sleep", "rockets launch into orbit", "dogs bark at cats"],
        metadatas=[{"topic": "pets"}, {"topic": "space"}, {"topic": "pets"}],
        ids=["c", "r", "d"],
    )
    assert ids == ["c", "r", "d"]
    [top] = lc_store.similarity_search("cats purr and sleep", k=1)
    assert top == Document(page_content="cats purr and sleep", metadata={"topic": "pets"}, id="c")
    pairs = lc_store.similarity_search_with_score("rockets", k=3, filter={"topic": "pets"})
    assert {doc.id for doc, _ in pairs} == {"c", "d"}
    assert all(-1.0 <= score <= 1.0 for _, score in pairs)
    anyof = lc_store.similarity_search("x", k=5, filter={"topic": ["space", "pets"]})
    assert len(anyof) == 3
    relevance = lc_store.similarity_search_with_relevance_scores("cats purr and sleep", k=1)
    assert relevance[0][1] == pytest.approx(1.0, abs=1e-5)


def test_search_by_vector_and_image_query(lc_store: LangChainVectorStore) -> None:
    lc_store.add_texts(["alpha", "beta"], ids=["a", "b"])
    vector = lc_store.embeddings.embed_query("beta")
    assert [d.id for d in lc_store.similarity_search_by_vector(vector, k=1)] == ["b"]
    pairs = lc_store.similarity_search_with_score_by_vector(vector, k=2)
    assert pairs[0][1] == pytest.approx(1.0, abs=1e-5)


def test_generated_ids_and_get_by_ids(lc_store: LangChainVectorStore) -> None:
    ids = lc_store.add_texts(["one", "two"])
    assert len(set(ids)) == 2
    docs = lc_store.get_by_ids([ids[1], "missing", ids[0]])
    assert [d.page_content for d in docs] == ["two", "one"]
    assert lc_store.get_by_ids([]) == []


def test_delete_and_readd(lc_store: LangChainVectorStore) -> None:
    lc_store.add_texts(["one", "two"], ids=["1", "2"])
    assert lc_store.delete(["1", "nope"]) is True
    assert len(lc_store.store) == 1
    lc_store.add_texts(["one again"], ids=["1"])
    assert {d.page_content for d in lc_store.get_by_ids(["1", "2"])} == {"one again", "two"}
    with pytest.raises(ConfigurationError, match="needs the ids"):
        lc_store.delete()


def test_reserved_keys_and_length_mismatches(lc_store: LangChainVectorStore) -> None:
    with pytest.raises(ConfigurationError, match="reserved"):
        lc_store.add_texts(["x"], metadatas=[{"page_content": "y"}])
    with pytest.raises(ConfigurationError, match="metadatas"):
        lc_store.add_texts(["x", "y"], metadatas=[{}])
    with pytest.raises(ConfigurationError, match="ids"):
        lc_store.add_texts(["x", "y"], ids=["1"])
    assert lc_store.add_texts([]) == []
    assert len(lc_store.store) == 0


def test_async_add_and_search(lc_store: LangChainVectorStore) -> None:
    async def run() -> list[Document]:
        await lc_store.aadd_texts(["sun", "moon"], ids=["s", "m"])
        return await lc_store.asimilarity_search("moon", k=1)

    assert [d.id for d in asyncio.run(run())] == ["m"]


def test_from_texts_builds_a_default_store() -> None:
    vs = LangChainVectorStore.from_texts(
        ["red", "green"], LangChainEmbeddings(FakeEmbedder(12)), metadatas=[{"n": 1}, {"n": 2}]
    )
    assert len(vs.store) == 2
    assert vs.similarity_search("green", k=1)[0].metadata == {"n": 2}
    # a plain LangChain Embeddings works too: its width is measured with one probe call
    from langchain_core.embeddings import DeterministicFakeEmbedding

    other = LangChainVectorStore.from_texts(["a"], DeterministicFakeEmbedding(size=5))
    assert other.store.dimensions == 5


def test_max_marginal_relevance_prefers_diverse_documents() -> None:
    e = np.eye(4, dtype=np.float32)
    near = e[0] + 0.05 * e[1]
    store = InMemoryStore(4)
    # two near-duplicates close to the query and one different document a bit further away
    store.add(
        ["dup1", "dup2", "other"],
        [near, near + 0.01 * e[3], e[0] + 0.9 * e[2]],
        [
            {"page_content": "a", "lc_id": "dup1"},
            {"page_content": "a'", "lc_id": "dup2"},
            {"page_content": "b", "lc_id": "other"},
        ],
    )
    vs = LangChainVectorStore(store, FakeEmbedder(4))
    plain = vs.similarity_search_by_vector(list(e[0]), k=2)
    assert [d.id for d in plain] == ["dup1", "dup2"]
    mmr = vs.max_marginal_relevance_search_by_vector(list(e[0]), k=2, fetch_k=3, lambda_mult=0.3)
    assert [d.id for d in mmr] == ["dup1", "other"]
    assert [d.page_content for d in mmr] == ["a", "b"]
    assert vs.max_marginal_relevance_search_by_vector(list(e[0]), k=2, filter={"x": 1}) == []
    retriever = vs.as_retriever(search_type="mmr", search_kwargs={"k": 1})
    assert len(retriever.invoke("anything")) == 1
    assert len(asyncio.run(vs.amax_marginal_relevance_search("q", k=2))) == 2
    bare = LangChainVectorStore(_ProtocolOnly(4), FakeEmbedder(4))
    with pytest.raises(ConfigurationError, match="get"):
        bare.max_marginal_relevance_search("q")


def test_as_retriever(lc_store: LangChainVectorStore) -> None:
    lc_store.add_texts(["the krebs cycle", "the water cycle"], ids=["k", "w"])
    retriever = lc_store.as_retriever(search_kwargs={"k": 1})
    assert [d.id for d in retriever.invoke("the krebs cycle")] == ["k"]


def test_store_and_embedder_widths_must_agree() -> None:
    with pytest.raises(ConfigurationError, match="16-dimensional"):
        LangChainVectorStore(QdrantStore(8), FakeEmbedder(16))
    with pytest.raises(ConfigurationError, match="VectorStore"):
        LangChainVectorStore(object(), FakeEmbedder(8))  # type: ignore[arg-type]
