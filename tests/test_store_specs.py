"""Stores describe themselves as plain specs and are rebuilt, empty, from them."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmembed.errors import ConfigurationError, StoreError
from mmembed.registry import Specified, build_store, to_spec
from mmembed.stores import FaissStore, InMemoryStore
from mmembed.testing.contracts.store import random_vectors


def _round_trip(store: Any) -> Any:
    spec = to_spec(store)
    assert json.loads(json.dumps(spec)) == spec  # plain JSON
    again = build_store(spec)
    assert type(again) is type(store)
    assert to_spec(again) == spec
    assert len(again) == 0 or spec.get("location", ":memory:") != ":memory:"
    return again


def test_memory_store_spec() -> None:
    store = InMemoryStore(12)
    store.add(["a"], np.ones((1, 12)))
    assert isinstance(store, Specified)
    assert store.to_spec() == {"kind": "memory", "dimensions": 12}
    again = _round_trip(store)
    assert again.dimensions == 12
    assert len(again) == 0  # a spec describes the configuration, not the vectors


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"index": "HNSW32", "ef_search": 64},
        {"funnel_dimensions": 8, "funnel_candidates": 50},
        {"index": "IVF4,Flat", "nprobe": 2, "train_size": 300, "funnel_dimensions": 16},
    ],
    ids=["flat", "hnsw", "funnel", "ivf-funnel"],
)
def test_faiss_store_spec(options: dict[str, Any]) -> None:
    store = FaissStore(32, **options)
    spec = store.to_spec()
    assert spec["kind"] == "faiss"
    assert spec["dimensions"] == 32
    assert {key: spec[key] for key in options} == options
    again = _round_trip(store)
    vectors = random_vectors(400, 32, seed=2)
    for s in (store, again):
        s.add([str(i) for i in range(400)], vectors)
    # the same configuration answers the same way
    for query in random_vectors(5, 32, seed=3):
        assert [h.id for h in again.search(query, k=5)] == [h.id for h in store.search(query, k=5)]
    assert again.is_trained == store.is_trained


def test_faiss_spec_survives_save_and_shrink(tmp_path: Path) -> None:
    store = FaissStore(16, index="HNSW32", funnel_dimensions=4, funnel_candidates=30)
    store.add([str(i) for i in range(50)], random_vectors(50, 16))
    store.save(tmp_path / "s")
    assert FaissStore.load(tmp_path / "s").to_spec() == store.to_spec()
    small = store.shrink(4)  # the funnel is as wide as the shrunk vectors: dropped
    assert small.to_spec() == {**store.to_spec(), "dimensions": 4, "funnel_dimensions": None}


def test_bad_specs_are_configuration_errors() -> None:
    bad: list[Any] = [
        {"kind": "memory"},  # no dimensions
        {"kind": "memory", "dimensions": 4, "colour": "red"},  # an unknown key
        {"kind": "memory", "dimensions": "4"},
        {"kind": "faiss", "dimensions": 4, "index": "Nonsense"},
        {"kind": "faiss", "dimensions": 4, "funnel_dimensions": 8},
        {"kind": "faiss", "dimensions": 4, "metric": "l2"},
        {"kind": "nope", "dimensions": 4},
        "memory",
    ]
    for spec in bad:
        with pytest.raises(ConfigurationError):
            build_store(spec)
    with pytest.raises(ConfigurationError, match=r"unknown keys.*colour"):
        InMemoryStore.from_spec({"kind": "memory", "dimensions": 4, "colour": "red"})
    with pytest.raises(ConfigurationError, match="'faiss'"):
        InMemoryStore.from_spec({"kind": "faiss", "dimensions": 4})


def test_qdrant_store_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("qdrant_client")
    from mmembed.stores import QdrantStore

    memory = QdrantStore(8, collection="c")
    assert memory.to_spec() == {
        "kind": "qdrant",
        "dimensions": 8,
        "location": ":memory:",
        "collection": "c",
    }
    assert len(_round_trip(memory)) == 0

    where = str(tmp_path / "q")
    with QdrantStore(8, where, collection="docs", timeout=5) as disk:
        disk.add(["a"], np.ones((1, 8)), [{"k": 1}])
        spec = disk.to_spec()
    assert spec == {
        "kind": "qdrant",
        "dimensions": 8,
        "location": where,
        "collection": "docs",
        "timeout": 5,
    }
    with build_store(spec) as reopened:  # Qdrant persists by itself: the points are there
        assert [h.id for h in reopened.search(np.ones(8))] == ["a"]

    with pytest.raises(ConfigurationError, match="client="):
        QdrantStore(8, collection="x", client=memory.client).to_spec()
    for bad in (
        {"kind": "qdrant", "dimensions": 8, "location": ":memory:", "url": "http://x"},
        {"kind": "qdrant", "dimensions": 8, "url": "ftp://x"},
        {"kind": "qdrant", "dimensions": 8, "api_key": "secret"},  # never part of a spec
    ):
        with pytest.raises(ConfigurationError):
            build_store(bad)
    # a server: the key comes from the environment, never from the spec (qdrant-client warns
    # that it is sent over plain http, which shows it is used); nothing listens on port 9
    spec = {"kind": "qdrant", "dimensions": 8, "url": "http://127.0.0.1:9"}
    monkeypatch.setenv("QDRANT_API_KEY", "from-the-environment")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(StoreError, match="Connection refused"):
            build_store(spec)
        # qdrant-client checks the server's version in a thread of its own, which warns too
        for thread in threading.enumerate():
            if "_check_compatibility" in thread.name:
                thread.join(timeout=60)
    assert any("Api key" in str(w.message) for w in caught)
