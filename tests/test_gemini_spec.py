"""GeminiEmbedder describes itself as a plain spec and is rebuilt from it, never with a key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmembed.cache import EmbeddingCache
from mmembed.embedders import GeminiEmbedder
from mmembed.errors import ConfigurationError
from mmembed.registry import Specified, build_embedder, to_spec
from mmembed.testing import FakeGeminiServer
from tests.gemini_helpers import SENTINEL_KEY


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGeminiServer]:
    """A fake server the SDK's environment points at, as a rebuilt embedder finds it."""
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with FakeGeminiServer() as s:
        for name, value in s.env(api_key=SENTINEL_KEY).items():
            monkeypatch.setenv(name, value)
        yield s


def test_defaults_give_the_smallest_spec(server: FakeGeminiServer) -> None:
    with GeminiEmbedder() as embedder:
        assert isinstance(embedder, Specified)
        assert to_spec(embedder) == {
            "kind": "gemini",
            "model": "gemini-embedding-2",
            "dimensions": 3072,
        }


def test_every_option_that_differs_round_trips(server: FakeGeminiServer, tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "dimensions": 256,
        "timeout": 30,
        "max_retries": 2,
        "max_retry_seconds": 40.0,
        "retry_initial_delay": 0.5,
        "retry_max_delay": 8.0,
        "concurrency": 3,
        "batch_size": 50,
        "inline_bytes_limit": 4096,
        "file_wait_seconds": 5.0,
        "cache": tmp_path / "vectors.sqlite",
    }
    first = GeminiEmbedder("models/gemini-embedding-2-preview", **options)
    spec = first.to_spec()
    assert spec == {
        "kind": "gemini",
        "model": "gemini-embedding-2-preview",
        "dimensions": 256,
        "timeout": 30.0,
        "max_retries": 2,
        "max_retry_seconds": 40.0,
        "retry_initial_delay": 0.5,
        "retry_max_delay": 8.0,
        "concurrency": 3,
        "batch_size": 50,
        "cache": str(tmp_path / "vectors.sqlite"),
        "inline_bytes_limit": 4096,
        "file_wait_seconds": 5.0,
    }
    assert json.loads(json.dumps(spec)) == spec  # plain JSON
    again = build_embedder(json.loads(json.dumps(spec)))
    assert isinstance(again, GeminiEmbedder)
    assert again.to_spec() == spec
    texts = [f"text {i}" for i in range(120)]
    np.testing.assert_array_equal(first.embed(texts), again.embed(texts))
    calls = server.embed_requests
    assert sorted(c.items for c in calls) == [20, 50, 50]  # batch_size=50
    assert all("gemini-embedding-2-preview" in c.path for c in calls)
    assert all(c.api_key_sent for c in calls)  # the key came from the environment
    # the rebuilt embedder shares the cache file: nothing was sent again
    assert again.last_usage.cached_items == 120
    first.close()
    again.close()


def test_an_embedding_cache_object_is_recorded_by_its_path(
    server: FakeGeminiServer, tmp_path: Path
) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    with GeminiEmbedder(dimensions=128, cache=cache) as embedder:
        assert embedder.to_spec()["cache"] == cache.path


def test_no_key_ever_appears_in_a_spec(server: FakeGeminiServer) -> None:
    made = [
        GeminiEmbedder(dimensions=128, api_key=SENTINEL_KEY),
        GeminiEmbedder(dimensions=128),  # the key from the environment
        GeminiEmbedder(dimensions=128, client=server.client(api_key=SENTINEL_KEY)),
        GeminiEmbedder(dimensions=128, client=server.client(api_key=SENTINEL_KEY, vertexai=True)),
    ]
    for embedder in made:
        text = json.dumps(embedder.to_spec())
        assert SENTINEL_KEY not in text
        assert "api_key" not in text
        assert "client" not in text


def test_a_vertex_client_is_recorded_as_vertexai(server: FakeGeminiServer) -> None:
    vertex = GeminiEmbedder(dimensions=128, client=server.client(vertexai=True))
    assert vertex.to_spec()["vertexai"] is True
    assert "vertexai" not in GeminiEmbedder(dimensions=128, client=server.client()).to_spec()
    assert GeminiEmbedder(dimensions=128, vertexai=False).to_spec()["vertexai"] is False


@pytest.mark.parametrize("key", ["api_key", "client", "dimension", "retries"])
def test_an_unknown_key_is_named(server: FakeGeminiServer, key: str) -> None:
    spec = {"kind": "gemini", "model": "gemini-embedding-2", "dimensions": 128, key: "x"}
    with pytest.raises(ConfigurationError, match=rf"does not take '{key}'") as info:
        GeminiEmbedder.from_spec(spec)
    assert "environment" in str(info.value)
    with pytest.raises(ConfigurationError, match=rf"'{key}'"):
        build_embedder(spec)


def test_another_kind_or_a_bad_value_is_a_configuration_error(server: FakeGeminiServer) -> None:
    with pytest.raises(ConfigurationError, match="not a gemini spec"):
        GeminiEmbedder.from_spec({"kind": "local", "model": "x"})
    with pytest.raises(ConfigurationError, match="dimensions must be an int"):
        build_embedder({"kind": "gemini", "dimensions": 64})
