from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmembed.stores import InMemoryStore
from mmembed.testing.contracts.store import MakeStore, VectorStoreContract, random_vectors, unit


class TestInMemoryStore(VectorStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return InMemoryStore


def test_vectors_view_is_read_only_and_unit() -> None:
    store = InMemoryStore(8)
    store.add(["a", "b"], random_vectors(2, 8) * 3)
    view = store.vectors
    np.testing.assert_allclose(np.linalg.norm(view, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0


def test_zero_vectors_stay_zero_and_score_zero() -> None:
    store = InMemoryStore(4)
    store.add(["zero", "x"], [[0, 0, 0, 0], [1, 0, 0, 0]])
    hits = store.search([1, 0, 0, 0], k=2)
    assert [(h.id, h.score) for h in hits] == [("x", 1.0), ("zero", 0.0)]


def test_mmap_load_searches_then_copies_on_change(tmp_path: Path) -> None:
    vectors = random_vectors(500, 16, seed=2)
    store = InMemoryStore(16)
    store.add([str(i) for i in range(500)], vectors)
    store.save(tmp_path / "s")
    mapped = InMemoryStore.load(tmp_path / "s", mmap=True)
    assert isinstance(mapped.vectors.base, np.memmap) or isinstance(mapped.vectors, np.memmap)
    assert mapped.search(vectors[3], k=1)[0].id == "3"
    mapped.add(["new"], vectors[:1])
    assert len(mapped) == 501
    # the saved files were not modified by the change
    assert len(InMemoryStore.load(tmp_path / "s")) == 500


def test_repr_is_short() -> None:
    store = InMemoryStore(3)
    store.add(["a"], [[1, 2, 3]])
    assert repr(store) == "InMemoryStore(dimensions=3, count=1)"


def test_large_single_query_scan_is_exact() -> None:
    vectors = random_vectors(70_000, 32, seed=12)
    store = InMemoryStore(32)
    store.add([str(i) for i in range(70_000)], vectors)
    query = random_vectors(1, 32, seed=13)[0]
    expected = unit(vectors) @ unit(query)
    hits = store.search(query, k=20)
    np.testing.assert_allclose([h.score for h in hits], np.sort(expected)[::-1][:20], atol=1e-5)
    assert hits[0].id == str(int(np.argmax(expected)))
    filtered = store.search(query, k=5, where={"missing": 1})
    assert filtered == []


def test_without_faiss_a_batch_search_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import mmembed.stores._kernels as base
    from mmembed.errors import MissingDependencyError

    store = InMemoryStore(8)
    store.add(["a", "b"], random_vectors(2, 8))
    monkeypatch.setattr(base, "_faiss_module", None)
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    assert store.search(random_vectors(1, 8)[0], k=1)[0].id in {"a", "b"}  # numpy only
    with pytest.raises(MissingDependencyError, match="pip install faiss-cpu"):
        store.search_batch(random_vectors(3, 8), k=1)
