"""ChromaEmbeddingFunction: the protocol shape without chromadb, then a real Chroma collection."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmembed.content import Image, Task
from mmembed.errors import ConfigurationError, EmbeddingError, UnsupportedMediaError
from mmembed.integrations.chroma import ChromaEmbeddingFunction
from mmembed.testing import FakeEmbedder, FakeGeminiServer


def test_module_does_not_import_chromadb() -> None:
    code = (
        "import sys, mmembed.integrations.chroma as m; "
        "m.ChromaEmbeddingFunction(model='gemini-embedding-2', dimensions=8)([]); "
        "sys.exit('chromadb' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_documents_and_queries_use_their_tasks() -> None:
    fake = FakeEmbedder(8)
    ef = ChromaEmbeddingFunction(fake)
    docs = ef(["cats purr", "rockets fly"])
    query = ef.embed_query(["cats purr"])
    assert [c.task for c in fake.calls] == [Task.DOCUMENT, Task.QUERY]
    assert len(docs) == 2
    assert all(v.dtype == np.float32 and v.shape == (8,) for v in docs)
    np.testing.assert_allclose(query[0], docs[0], atol=1e-6)
    assert ef([]) == []


def test_image_arrays_become_png_images() -> None:
    fake = FakeEmbedder(8)
    ef = ChromaEmbeddingFunction(fake)
    rgb = np.zeros((6, 4, 3), dtype=np.uint8)
    rgb[:, :, 0] = 255
    gray_float = np.full((5, 5), 0.5, dtype=np.float64)
    vectors = ef([rgb, gray_float, "a caption"])
    assert len(vectors) == 3
    items = fake.calls[-1].items
    assert isinstance(items[0], Image)
    assert items[0].mime_type == "image/png"
    assert isinstance(items[1], Image)
    assert items[2] == "a caption"
    with pytest.raises(UnsupportedMediaError, match="shape"):
        ef([np.zeros((2, 2, 7), dtype=np.uint8)])
    with pytest.raises(UnsupportedMediaError, match="expected a document"):
        ef([3.5])
    with pytest.raises(ConfigurationError, match="list"):
        ef("one string")  # type: ignore[arg-type]


def test_config_round_trip_never_holds_the_key() -> None:
    ef = ChromaEmbeddingFunction(model="gemini-embedding-2", dimensions=256, api_key="sk-secret")
    config = ef.get_config()
    assert config == {
        "kind": "gemini",
        "model": "gemini-embedding-2",
        "dimensions": 256,
        "query_task": "query",
        "document_task": "document",
    }
    assert "sk-secret" not in repr(ef)
    ChromaEmbeddingFunction.validate_config(config)
    rebuilt = ChromaEmbeddingFunction.build_from_config(config)
    assert rebuilt.get_config() == config
    fake_config = ChromaEmbeddingFunction(FakeEmbedder(12)).get_config()
    assert ChromaEmbeddingFunction.build_from_config(fake_config).embedder.dimensions == 12
    with pytest.raises(ConfigurationError, match="embedding_function="):
        ChromaEmbeddingFunction.build_from_config({"kind": "custom", "model": "mine"})
    with pytest.raises(ConfigurationError, match="cannot change dimensions"):
        ef.validate_config_update(config, {**config, "dimensions": 768})


def test_any_embedder_that_describes_itself_is_rebuilt_from_the_config(tmp_path: Path) -> None:
    from mmembed import Matryoshka
    from mmembed.cache import CachedEmbedder
    from mmembed.embedders.local import SentenceTransformerEmbedder

    for embedder in (
        Matryoshka(FakeEmbedder(64), 16),
        CachedEmbedder(FakeEmbedder(8), tmp_path / "c.sqlite"),
        SentenceTransformerEmbedder(),  # the bundled offline model
    ):
        config = ChromaEmbeddingFunction(embedder, query_task="question_answering").get_config()
        json.dumps(config)  # Chroma stores it as JSON
        ChromaEmbeddingFunction.validate_config(config)
        rebuilt = ChromaEmbeddingFunction.build_from_config(config)
        assert type(rebuilt.embedder) is type(embedder)
        assert rebuilt.get_config() == config
        assert rebuilt.query_task is Task.QUESTION_ANSWERING
    # a config written before specs were stored still opens
    old = {"kind": "fake", "model": "m", "dimensions": 4, "query_task": "query"}
    assert ChromaEmbeddingFunction.build_from_config(old).embedder.model == "m"


def test_gemini_parameters_reach_the_fake_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGeminiServer() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        ef = ChromaEmbeddingFunction(model="gemini-embedding-2", dimensions=128)
        docs = ef(["a", "b", "c"])
        ef.embed_query(["a"])
        requests = server.embed_requests
    assert [v.shape for v in docs] == [(128,)] * 3
    assert [r.items for r in requests] == [3, 1]
    assert requests[1].contents[0]["parts"][0]["text"] == "task: search result | query: a"


def test_row_count_and_construction_errors() -> None:
    class Fusing(FakeEmbedder):
        def embed(self, items: Any, *, task: Task = Task.DOCUMENT) -> Any:
            return super().embed(["fused"], task=task)

    with pytest.raises(EmbeddingError, match="1 vectors for 2 inputs"):
        ChromaEmbeddingFunction(Fusing(8))(["a", "b"])
    with pytest.raises(ConfigurationError, match="dimensions"):
        ChromaEmbeddingFunction(FakeEmbedder(8), dimensions=8)


# -- against a real (embedded, in-process) Chroma -----------------------------------------------


@pytest.fixture
def chromadb() -> Iterator[Any]:
    module = pytest.importorskip("chromadb")
    yield module
    # Chroma shares one system per path across clients in a process: forget it, so the next
    # test (or a doc example) may open a client with other settings
    module.api.client.SharedSystemClient.clear_system_cache()


def _settings(chromadb: Any) -> Any:
    return chromadb.config.Settings(anonymized_telemetry=False, allow_reset=True)


def test_chroma_collection_texts_images_and_filters(chromadb: Any) -> None:
    fake = FakeEmbedder(16)
    ef = ChromaEmbeddingFunction(fake)
    client = chromadb.EphemeralClient(settings=_settings(chromadb))
    try:
        col = client.create_collection("docs", embedding_function=ef)
        col.add(
            ids=["c", "r", "d"],
            documents=["cats purr and sleep", "rockets launch", "dogs bark at cats"],
            metadatas=[{"topic": "pets"}, {"topic": "space"}, {"topic": "pets"}],
        )
        found = col.query(query_texts=["cats purr and sleep"], n_results=1)
        assert found["ids"] == [["c"]]
        assert found["distances"][0][0] == pytest.approx(0.0, abs=1e-5)  # cosine space
        assert fake.calls[-1].task is Task.QUERY
        pets = col.query(query_texts=["rockets"], n_results=3, where={"topic": "pets"})
        assert sorted(pets["ids"][0]) == ["c", "d"]

        picture = np.zeros((8, 8, 3), dtype=np.uint8)
        picture[2:6, 2:6] = (0, 200, 0)
        col.add(ids=["img"], images=[picture])
        hit = col.query(query_images=[picture], n_results=1)
        assert hit["ids"] == [["img"]]
        assert col.configuration["hnsw"]["space"] == "cosine"
    finally:
        client.reset()


def test_persistent_collection_reopens_with_its_function(chromadb: Any, tmp_path: Path) -> None:
    ef = ChromaEmbeddingFunction(FakeEmbedder(8))
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=_settings(chromadb))
    try:
        client.create_collection("notes", embedding_function=ef).add(
            ids=["1", "2"], documents=["first note", "second note"]
        )
        reopened = client.get_collection("notes")  # no function passed: rebuilt from config
        assert reopened.query(query_texts=["second note"], n_results=1)["ids"] == [["2"]]
    finally:
        client.reset()


# -- Chroma's own argument names, and a collection reopened in a fresh process ----------------

_WRITE = """
import json, sys
import chromadb
from mmembed.integrations.chroma import ChromaEmbeddingFunction

ef = ChromaEmbeddingFunction(
    model_name="gemini-embedding-2", dimensions=128, api_key_env_var="NOTES_GEMINI_KEY"
)
client = chromadb.PersistentClient(
    path=sys.argv[1], settings=chromadb.config.Settings(anonymized_telemetry=False)
)
notes = client.create_collection("notes", embedding_function=ef)
notes.add(ids=["c", "r"], documents=["cats purr", "rockets fly"])
print(json.dumps(notes.configuration_json["embedding_function"]))
"""

# the reader imports only the module, in either order with chromadb, and never registers
_READ = """
import json, sys
{first}
{second}
client = chromadb.PersistentClient(
    path=sys.argv[1], settings=chromadb.config.Settings(anonymized_telemetry=False)
)
notes = client.get_collection("notes")  # no embedding_function: rebuilt from the stored config
print(json.dumps(notes.query(query_texts=["cats purr"], n_results=1)["ids"]))
"""


@pytest.mark.slow
def test_a_fresh_process_reopens_the_collection_with_the_key_from_its_variable(
    chromadb: Any, tmp_path: Path
) -> None:
    import json
    import os

    key = "notes-only-key"  # the server takes no other key
    with FakeGeminiServer(api_key=key) as server:
        env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
        env |= {
            "GOOGLE_GEMINI_BASE_URL": server.base_url,
            "GOOGLE_GENAI_API_VERSION": "v1",
            "NOTES_GEMINI_KEY": key,
            "ANONYMIZED_TELEMETRY": "False",
            "PYTHONPATH": str(Path(__file__).parents[1]),
        }
        path = str(tmp_path / "chroma")

        def run(code: str) -> Any:
            done = subprocess.run(
                [sys.executable, "-c", code, path],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            return json.loads(done.stdout.strip().splitlines()[-1])

        stored = run(_WRITE)
        imports = ("import mmembed.integrations.chroma", "import chromadb")
        found = [
            run(_READ.format(first=imports[0], second=imports[1])),
            run(_READ.format(first=imports[1], second=imports[0])),
        ]
        queries = [r.contents[0]["parts"][0]["text"] for r in server.embed_requests if r.items == 1]
    assert stored["name"] == "mmembed"
    assert stored["config"]["api_key_env_var"] == "NOTES_GEMINI_KEY"
    assert stored["config"]["model"] == "gemini-embedding-2"
    assert found == [[["c"]], [["c"]]]
    assert queries == ["task: search result | query: cats purr"] * 2
    for file in (tmp_path / "chroma").rglob("*"):  # the key is nowhere on disk
        if file.is_file():
            assert key.encode() not in file.read_bytes(), file


def test_chroma_names_work_and_wrong_names_fail_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MY_GEMINI_KEY", raising=False)
    ef = ChromaEmbeddingFunction(model_name="gemini-embedding-2", api_key_env_var="MY_GEMINI_KEY")
    assert ef.get_config()["api_key_env_var"] == "MY_GEMINI_KEY"
    assert ef.get_config()["model"] == "gemini-embedding-2"
    rebuilt = ChromaEmbeddingFunction.build_from_config(ef.get_config())
    assert rebuilt.get_config() == ef.get_config()
    with pytest.raises(ConfigurationError, match="MY_GEMINI_KEY"):
        ef(["no key in the variable yet"])
    with FakeGeminiServer(api_key="from-the-variable") as server:
        for name, value in server.env(api_key="not-this-one").items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        monkeypatch.setenv("MY_GEMINI_KEY", "from-the-variable")
        assert len(rebuilt(["cats purr", "rockets fly"])) == 2
        assert server.embed_requests[-1].items == 2

    wrong = {
        "dimension": "did you mean dimensions",
        "output_dimensionality": "did you mean dimensions",
        "task_type": "did you mean query_task= and document_task=",
        "api_key_env": "did you mean api_key_env_var",
        "vertexai": "GeminiEmbedder\\(vertexai=True",
    }
    for name, suggestion in wrong.items():
        with pytest.raises(ConfigurationError, match=suggestion):
            ChromaEmbeddingFunction(**{name: 1})
    with pytest.raises(ConfigurationError, match="both model and model_name"):
        ChromaEmbeddingFunction(model="a", model_name="b")
    with pytest.raises(ConfigurationError, match="both api_key and api_key_env_var"):
        ChromaEmbeddingFunction(api_key="k", api_key_env_var="MY_GEMINI_KEY")
    with pytest.raises(ConfigurationError, match="api_key_env_var"):
        ChromaEmbeddingFunction(FakeEmbedder(8), api_key_env_var="MY_GEMINI_KEY")
