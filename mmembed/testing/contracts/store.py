"""The contract every :class:`~mmembed.protocols.VectorStore` passes.

Subclass :class:`VectorStoreContract` in a test module and provide a ``make_store`` fixture that
returns a function from ``dimensions`` to a new, empty store::

    import pytest
    from mmembed.testing.contracts import VectorStoreContract


    class TestMyStore(VectorStoreContract):
        persistent = False  # no save(path) / load(path)

        @pytest.fixture
        def make_store(self):
            return MyStore

Besides the protocol (upsert, delete, ``where`` before top-k, cosine scores), the contract pins
what every mmembed store shares: the same error type for each kind of bad input (ids, vectors,
metadata, ``where``, ``k``: :class:`~mmembed.errors.ConfigurationError`, a wrong width:
:class:`~mmembed.errors.DimensionMismatchError`), :class:`~mmembed.protocols.Hit` values with
read-only metadata, a list-valued metadata value matching when any item does, any memory layout
of the input, and ``get``/``search_batch``/``shrink``/``search(..., dimensions=)``.

The Hypothesis properties use at most 30 vectors, where approximate indexes (HNSW, IVF) must
still be exact, as FAISS's are; their recall on large data belongs in the store's own tests.
``persistent = False`` skips the ``save``/``load`` tests; a capability a store lacks is marked
with ``pytest.mark.xfail`` on the overriding test (as mmembed's Qdrant tests do for prefix
search).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmembed.errors import (
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    StoreError,
)
from mmembed.protocols import Hit

__all__ = [
    "MakeStore",
    "VectorStoreContract",
    "brute_force",
    "forge_checksums",
    "npy_bytes",
    "planted_pickle",
    "random_vectors",
    "unit",
]

MakeStore = Callable[[int], Any]
"""Builds a new, empty store of the given dimensions."""

# make_store is a stateless factory, and each store class runs the same property tests
_FIXTURE_OK = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
    deadline=None,
)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows (or a vector) scaled to unit length; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def random_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    """``n`` reproducible random float32 vectors of width ``d``."""
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def brute_force(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine of ``query`` with every row, in float64."""
    v = unit(vectors).astype(np.float64)
    q = unit(query).astype(np.float64)
    return v @ q


# float32 vectors with a usable direction (Hypothesis draws these)
_finite = st.floats(-1.0, 1.0, width=32, allow_nan=False, allow_infinity=False)


def _matrix(n: int, d: int) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float32, (n, d), elements=_finite).filter(
        lambda m: bool((np.linalg.norm(m, axis=1) > 1e-3).all())
    )


@st.composite
def _dataset(draw: st.DrawFn) -> tuple[np.ndarray, list[int], np.ndarray, int]:
    n = draw(st.integers(1, 30))
    vectors = draw(_matrix(n, 8))
    groups = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    query = draw(_matrix(1, 8))[0]
    k = draw(st.integers(1, 12))
    return vectors, groups, query, k


class VectorStoreContract:
    """Behaviour users rely on, whatever the store."""

    persistent = True

    @pytest.fixture
    def make_store(self) -> MakeStore:
        raise NotImplementedError

    @pytest.fixture
    def filled(self, make_store: MakeStore) -> tuple[Any, np.ndarray]:
        vectors = random_vectors(300, 16, seed=1)
        store = make_store(16)
        meta = [
            {"group": i % 3, "kind": ["text", "image", "video"][i % 3], "flag": i % 2 == 0}
            for i in range(300)
        ]
        store.add([f"id{i}" for i in range(300)], vectors, meta)
        return store, vectors

    # -- basics ----------------------------------------------------------------------------

    def test_empty_store(self, make_store: MakeStore) -> None:
        store = make_store(8)
        assert len(store) == 0
        assert store.dimensions == 8
        assert store.search(np.ones(8), k=5) == []
        assert store.delete(["nothing"]) == 0

    def test_add_search_len(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        assert len(store) == 300
        hits = store.search(vectors[17], k=5)
        assert hits[0].id == "id17"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert hits[0].metadata["group"] == 17 % 3

    def test_score_is_cosine_for_non_unit_queries(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        query = random_vectors(1, 16, seed=9)[0]
        plain = store.search(query, k=10)
        scaled = store.search(query * 37.5, k=10)
        expected = brute_force(vectors, query)
        assert [h.id for h in plain] == [h.id for h in scaled]
        for hit in scaled:
            row = int(hit.id[2:])
            assert hit.score == pytest.approx(expected[row], abs=1e-5)

    def test_upsert_replaces_vector_and_metadata(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        store.add(["id3"], vectors[200:201] * -1, [{"group": 99}])
        assert len(store) == 300
        hits = store.search(-vectors[200], k=1)
        assert hits[0].id == "id3"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert store.search(-vectors[200], k=1, where={"group": 99})[0].id == "id3"
        assert store.get(["id3"])[0].metadata == {"group": 99}

    def test_same_id_twice_in_one_call_keeps_the_last(self, make_store: MakeStore) -> None:
        store = make_store(4)
        store.add(["a", "a"], np.eye(4)[:2], [{"n": 1}, {"n": 2}])
        assert len(store) == 1
        assert store.get(["a"])[0].metadata == {"n": 2}
        np.testing.assert_allclose(store.get(["a"])[0].vector, np.eye(4)[1], atol=1e-6)

    def test_delete_counts_and_readd(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        assert store.delete(["id5", "id6", "id5", "missing"]) == 2
        assert len(store) == 298
        assert "id5" not in store
        assert all(h.id not in ("id5", "id6") for h in store.search(vectors[5], k=20))
        store.add(["id5"], vectors[5:6], [{"group": 7}])
        assert store.search(vectors[5], k=1)[0].id == "id5"
        assert len(store) == 299

    def test_delete_everything(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        assert store.delete([f"id{i}" for i in range(300)]) == 300
        assert len(store) == 0
        assert store.search(vectors[0], k=3) == []

    def test_get_contains_iter(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        records = store.get(["id2", "nope", "id1"])
        assert [r.id for r in records] == ["id2", "id1"]
        np.testing.assert_allclose(records[0].vector, unit(vectors[2]), atol=1e-6)
        assert records[1].metadata == {"group": 1, "kind": "image", "flag": False}
        assert "id1" in store
        assert "nope" not in store
        assert sorted(store) == sorted(f"id{i}" for i in range(300))

    def test_batch_equals_single(self, filled: tuple[Any, np.ndarray]) -> None:
        store, _ = filled
        queries = random_vectors(70, 16, seed=4)
        batch = store.search_batch(queries, k=7, where={"group": [0, 2]})
        assert len(batch) == 70
        for query, hits in zip(queries, batch, strict=True):
            single = store.search(query, k=7, where={"group": [0, 2]})
            assert [h.id for h in hits] == [h.id for h in single]
            np.testing.assert_allclose(
                [h.score for h in hits], [h.score for h in single], atol=1e-5
            )

    # -- filters ---------------------------------------------------------------------------

    def test_where_equality_any_of_and_all_keys(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        hits = store.search(vectors[0], k=50, where={"kind": "image"})
        assert len(hits) == 50
        assert all(h.metadata["kind"] == "image" for h in hits)
        hits = store.search(vectors[0], k=300, where={"kind": ["image", "video"]})
        assert len(hits) == 200
        hits = store.search(vectors[0], k=300, where={"group": 0, "flag": True})
        assert len(hits) == 50  # i % 3 == 0 and i even
        assert all(h.metadata["group"] == 0 and h.metadata["flag"] for h in hits)

    def test_where_missing_key_and_bool_vs_int(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        assert store.search(vectors[0], k=5, where={"absent": 1}) == []
        # JSON tells true from 1: a filter on 1 does not match flag=True
        assert store.search(vectors[0], k=5, where={"flag": 1}) == []
        assert len(store.search(vectors[0], k=5, where={"flag": True})) == 5

    def test_filter_returns_k_when_that_many_match(self, make_store: MakeStore) -> None:
        store = make_store(16)
        vectors = random_vectors(2000, 16, seed=3)
        store.add(
            [f"v{i}" for i in range(2000)], vectors, [{"rare": i % 200 == 0} for i in range(2000)]
        )
        hits = store.search(vectors[1], k=10, where={"rare": True})
        assert len(hits) == 10
        assert all(h.metadata["rare"] is True for h in hits)

    # -- bad input -------------------------------------------------------------------------

    def test_add_leaves_the_callers_array_alone(self, make_store: MakeStore) -> None:
        store = make_store(4)
        vectors = np.array([[3.0, 0, 0, 4], [0, 2, 0, 0]], dtype=np.float32)
        before = vectors.copy()
        store.add(["a", "b"], vectors)
        store.add(["b", "c"], vectors)  # a replacement and a new row
        np.testing.assert_array_equal(vectors, before)
        np.testing.assert_allclose(store.get(["a"])[0].vector, [0.6, 0, 0, 0.8], atol=1e-6)

    def test_wrong_width_is_dimension_mismatch(self, make_store: MakeStore) -> None:
        store = make_store(8)
        with pytest.raises(DimensionMismatchError, match=r"8-dimensional"):
            store.add(["a"], np.ones((1, 7)))
        store.add(["a"], np.ones((1, 8)))
        with pytest.raises(DimensionMismatchError):
            store.search(np.ones(9))

    def test_bad_input_is_configuration_error(self, make_store: MakeStore) -> None:
        store = make_store(4)
        with pytest.raises(ConfigurationError, match="NaN"):
            store.add(["a"], [[np.nan, 0, 0, 1]])
        with pytest.raises(ConfigurationError, match="infinity"):
            store.add(["a", "b"], [[0, 0, 0, 1], [0, -np.inf, 0, 1]])
        assert len(store) == 0
        with pytest.raises(ConfigurationError, match="2 ids but 1"):
            store.add(["a", "b"], np.ones((1, 4)))
        with pytest.raises(ConfigurationError, match="list of strings"):
            store.add("ab", np.ones((2, 4)))
        with pytest.raises(ConfigurationError, match="datetime"):
            store.add(["a"], np.ones((1, 4)), [{"when": dt.datetime(2024, 1, 1)}])
        with pytest.raises(ConfigurationError, match="JSON cannot store"):
            store.add(["a"], np.ones((1, 4)), [{"x": float("inf")}])
        assert len(store) == 0  # nothing half-added
        store.add(["a"], np.ones((1, 4)))
        with pytest.raises(ConfigurationError, match="all zeros"):
            store.search(np.zeros(4))
        with pytest.raises(ConfigurationError, match="search_batch"):
            store.search(np.ones((2, 4)))
        with pytest.raises(ConfigurationError, match="k must be"):
            store.search(np.ones(4), k=0)

    # -- the same answer to the same bad input, in every store -----------------------------

    def test_bad_ids_are_configuration_errors(self, make_store: MakeStore) -> None:
        store = make_store(4)
        bad: list[Any] = ["ab", b"ab", None, [1], [""], ["a", None]]
        for ids in bad:
            rows = np.ones((2 if ids in ("ab", b"ab") or ids == ["a", None] else 1, 4))
            with pytest.raises(ConfigurationError, match="ids"):
                store.add(ids, rows)
        lookups: list[Any] = ["ab", None, [1], [b"a"]]
        for ids in lookups:
            with pytest.raises(ConfigurationError, match="ids"):
                store.delete(ids)
            with pytest.raises(ConfigurationError, match="ids"):
                store.get(ids)
        assert len(store) == 0
        assert store.delete([""]) == 0  # any string may be asked for; unknown ones are ignored
        assert store.get(["", "nope"]) == []

    def test_bad_vectors_are_refused_before_anything_is_stored(self, make_store: MakeStore) -> None:
        store = make_store(4)
        bad: list[Any] = [
            [[np.nan, 0, 0, 1]],
            [[0, 0, 0, 1], [0, -np.inf, 0, 1]],
            np.full((1, 4), 1e39),  # float64, beyond float32
            np.array([[1.0, 2.0, 3.0, 4.0]], dtype=object),
            [["a", "b", "c", "d"]],
            np.ones((1, 4), dtype=np.complex64),
            [[1, 2, 3, 4], [1, 2, 3]],  # ragged
            np.ones((1, 1, 4)),
            None,
        ]
        for vectors in bad:
            rows = len(vectors) if isinstance(vectors, list) else 1
            with pytest.raises(ConfigurationError):
                store.add([f"v{i}" for i in range(rows)], vectors)
        with pytest.raises(ConfigurationError, match="too large"):
            store.add(["a"], np.full((1, 4), 1e39))
        with pytest.raises(DimensionMismatchError):
            store.add(["a"], np.ones((1, 40_000)))
        assert len(store) == 0

    def test_bad_queries(self, make_store: MakeStore) -> None:
        store = make_store(4)
        store.add(["a"], np.ones((1, 4)))
        for query in ([np.nan, 0, 0, 1], np.full(4, 1e39), None, "abcd", np.ones((1, 1, 4))):
            with pytest.raises(ConfigurationError):
                store.search(query)
        for queries in (np.ones(4), [[np.inf, 0, 0, 1]], np.zeros((2, 4))):
            with pytest.raises(ConfigurationError):
                store.search_batch(queries)
        with pytest.raises(DimensionMismatchError):
            store.search_batch(np.ones((2, 5)))

    def test_finite_vectors_are_normalised_whatever_their_scale(
        self, make_store: MakeStore
    ) -> None:
        store = make_store(4)
        store.add(
            ["big", "small", "max"],
            np.array(
                [[1e30, 1e30, 0, 0], [0, 0, 1e-30, 0], [3e38, 3e38, 3e38, 3e38]], dtype=np.float32
            ),
        )
        for record in store.get(["big", "small", "max"]):
            assert float(np.linalg.norm(record.vector)) == pytest.approx(1.0, abs=1e-5)
        hits = store.search(np.array([1e30, 1e30, 0, 0], dtype=np.float32), k=1)
        assert hits[0].id == "big"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert store.search([0, 0, 1e-30, 0], k=1)[0].id == "small"

    def test_any_memory_layout_works(self, make_store: MakeStore) -> None:
        store = make_store(8)
        base = random_vectors(40, 16, seed=31)
        fortran = np.asfortranarray(base[:20, :8])
        strided = base[20:, ::2]  # every other column: not contiguous
        assert not fortran.flags.c_contiguous
        assert not strided.flags.c_contiguous
        store.add([f"f{i}" for i in range(20)], fortran)
        store.add([f"s{i}" for i in range(20)], strided)
        assert store.search(strided[3], k=1)[0].id == "s3"
        assert store.search(np.asfortranarray(fortran[2:3]), k=1)[0].id == "f2"
        batch = store.search_batch(np.asfortranarray(base[:5, ::2]), k=3)
        plain = store.search_batch(np.ascontiguousarray(base[:5, ::2]), k=3)
        assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in plain]

    def test_bad_metadata_is_a_configuration_error(self, make_store: MakeStore) -> None:
        store = make_store(4)
        deep: dict[str, Any] = {}
        node = deep
        for _ in range(200):
            node["x"] = {}
            node = node["x"]
        bad: list[Any] = [
            [{1: "one"}],  # a key that is not a string
            [{"x": {2: "two"}}],  # nested
            [{"_mmembed_id": "x"}],  # reserved
            [{"x": {1, 2}}],
            [{"x": float("nan")}],
            [{"x": deep}],  # nested too deeply
            ["not a mapping"],
            {"x": 1},  # a mapping, not one per id
            [{}, {}],  # one too many
        ]
        for metadata in bad:
            with pytest.raises(ConfigurationError, match="metadata"):
                store.add(["a"], np.ones((1, 4)), metadata)
        assert len(store) == 0
        store.add(["a"], np.ones((1, 4)), [None])  # None means no metadata
        assert dict(store.get(["a"])[0].metadata) == {}

    def test_bad_where_is_a_configuration_error(self, make_store: MakeStore) -> None:
        store = make_store(4)
        store.add(["a"], np.ones((1, 4)), [{"k": 2, "modality": "text"}])
        bad: list[Any] = [
            "modality=text",  # not a mapping
            ["modality"],
            {"k": {"$gt": 1}},  # operators are refused, never silently matched
            {"k": {"$in": [1, 2]}},
            {1: "x"},
            {"a.b": 1},  # a path into nested metadata
            {"": 1},
            {"k": object()},
            {"k": float("nan")},
            {"k": [[2]]},
        ]
        for where in bad:
            with pytest.raises(ConfigurationError, match="where"):
                store.search(np.ones(4), where=where)
            with pytest.raises(ConfigurationError, match="where"):
                store.search_batch(np.ones((2, 4)), where=where)
        assert store.search(np.ones(4), where={}) != []  # an empty filter is no filter
        assert store.search(np.ones(4), where={"modality": "nope"}) == []

    def test_bad_k_is_a_configuration_error(self, make_store: MakeStore) -> None:
        store = make_store(4)
        store.add(["a", "b", "c"], np.eye(4)[:3])
        for k in ("5", 0, -1, True, 1.5, None):
            with pytest.raises(ConfigurationError, match="k must be"):
                store.search(np.ones(4), k=k)
            with pytest.raises(ConfigurationError, match="k must be"):
                store.search_batch(np.ones((1, 4)), k=k)
        assert len(store.search(np.ones(4), k=np.int64(2))) == 2

    def test_hits_and_records_are_read_only_values(self, filled: tuple[Any, np.ndarray]) -> None:
        store, _ = filled
        for hits in (store.search(np.ones(16), k=3), *store.search_batch(np.ones((2, 16)), k=3)):
            assert len(hits) == 3
            for hit in hits:
                assert type(hit) is Hit
                assert type(hit.id) is str
                assert type(hit.score) is float
                assert -1.0 <= hit.score <= 1.0
                assert isinstance(hit.metadata, Mapping)
                assert set(hit.metadata) == {"group", "kind", "flag"}
                with pytest.raises(TypeError):
                    hit.metadata["group"] = 5  # type: ignore[index]
                with pytest.raises(dataclasses.FrozenInstanceError):
                    hit.score = 2.0  # type: ignore[misc]
        (record,) = store.get(["id1"])
        assert record.vector.dtype == np.float32
        assert record.vector.shape == (16,)
        with pytest.raises(TypeError):
            record.metadata["group"] = 5
        assert store.get(["id1"])[0].metadata["group"] == 1

    def test_list_valued_metadata_matches_any_item(self, make_store: MakeStore) -> None:
        store = make_store(4)
        e = np.eye(4)
        store.add(
            ["tags", "one", "flags", "float", "none"],
            e[[0, 1, 2, 3, 0]],
            [{"v": ["x", "y"]}, {"v": "x"}, {"v": [True]}, {"v": [1, 2.0]}, {"v": [None, 3]}],
        )

        def found(where: Mapping[str, Any]) -> set[str]:
            return {h.id for h in store.search(np.ones(4), k=5, where=where)}

        assert found({"v": "x"}) == {"tags", "one"}
        assert found({"v": ["y", "z"]}) == {"tags"}
        assert found({"v": 2}) == {"float"}  # 2 equals 2.0
        assert found({"v": 1}) == {"float"}  # true is not 1
        assert found({"v": True}) == {"flags"}
        assert found({"v": None}) == {"none"}
        assert found({"v": []}) == set()

    def test_empty_input_is_a_no_op(self, make_store: MakeStore) -> None:
        store = make_store(4)
        store.add([], np.empty((0, 4)))
        store.add([], [])
        store.add([], np.empty((0, 4)), [])
        assert len(store) == 0
        assert store.search_batch(np.empty((0, 4)), k=3) == []

    def test_json_metadata_kinds_round_trip(self, make_store: MakeStore) -> None:
        store = make_store(4)
        meta = {"s": "x", "i": 3, "f": 0.5, "b": False, "n": None, "l": [1, "a", [2]]}
        store.add(["a"], np.ones((1, 4)), [{**meta, "np": np.int64(4)}])
        assert dict(store.get(["a"])[0].metadata) == {**meta, "np": 4}

    # -- Matryoshka ------------------------------------------------------------------------

    def test_search_at_prefix_equals_brute_force(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        query = random_vectors(1, 16, seed=8)[0]
        hits = store.search(query, k=10, dimensions=4)
        expected = brute_force(vectors[:, :4], query[:4])
        top = np.sort(expected)[::-1][:10]
        np.testing.assert_allclose([h.score for h in hits], top, atol=1e-5)
        # a query already at the prefix width works too
        short = store.search(query[:4], k=10, dimensions=4)
        assert [h.id for h in short] == [h.id for h in hits]
        with pytest.raises(ConfigurationError):
            store.search(query, dimensions=32)

    def test_shrink_keeps_ids_metadata_and_prefix(self, filled: tuple[Any, np.ndarray]) -> None:
        store, vectors = filled
        small = store.shrink(8)
        assert type(small) is type(store)
        assert small.dimensions == 8
        assert len(small) == 300
        assert len(store) == 300
        assert store.dimensions == 16
        record = small.get(["id4"])[0]
        np.testing.assert_allclose(record.vector, unit(vectors[4, :8]), atol=1e-6)
        assert record.metadata == store.get(["id4"])[0].metadata
        assert small.search(vectors[4, :8], k=1)[0].id == "id4"

    # -- properties (Hypothesis) -----------------------------------------------------------

    @_FIXTURE_OK
    @given(data=_dataset())
    def test_property_stored_vector_is_its_own_nearest_neighbour(
        self, make_store: MakeStore, data: tuple[np.ndarray, list[int], np.ndarray, int]
    ) -> None:
        vectors, _, _, _ = data
        store = make_store(8)
        store.add([str(i) for i in range(len(vectors))], vectors)
        for i in range(len(vectors)):
            hits = store.search(vectors[i], k=len(vectors))
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            # it is among the hits tied for first (exact duplicates tie)
            tied = {h.id for h in hits if h.score >= hits[0].score - 1e-4}
            assert str(i) in tied

    @_FIXTURE_OK
    @given(data=_dataset())
    def test_property_results_equal_brute_force(
        self, make_store: MakeStore, data: tuple[np.ndarray, list[int], np.ndarray, int]
    ) -> None:
        vectors, _, query, k = data
        store = make_store(8)
        store.add([str(i) for i in range(len(vectors))], vectors)
        hits = store.search(query, k=k)
        expected = brute_force(vectors, query)
        assert len(hits) == min(k, len(vectors))
        np.testing.assert_allclose(
            [h.score for h in hits], np.sort(expected)[::-1][: len(hits)], atol=1e-5
        )
        for hit in hits:
            assert hit.score == pytest.approx(expected[int(hit.id)], abs=1e-5)

    @_FIXTURE_OK
    @given(data=_dataset(), wanted=st.lists(st.integers(0, 3), min_size=1, max_size=2))
    def test_property_filters_never_leak_and_fill_k(
        self,
        make_store: MakeStore,
        data: tuple[np.ndarray, list[int], np.ndarray, int],
        wanted: list[int],
    ) -> None:
        vectors, groups, query, k = data
        store = make_store(8)
        store.add([str(i) for i in range(len(vectors))], vectors, [{"g": g} for g in groups])
        where = {"g": wanted if len(wanted) > 1 else wanted[0]}
        hits = store.search(query, k=k, where=where)
        matching = [i for i, g in enumerate(groups) if g in wanted]
        assert all(groups[int(h.id)] in wanted for h in hits)
        assert len(hits) == min(k, len(matching))
        if matching:
            expected = brute_force(vectors[matching], query)
            np.testing.assert_allclose(
                [h.score for h in hits], np.sort(expected)[::-1][: len(hits)], atol=1e-5
            )

    # -- concurrency -----------------------------------------------------------------------

    def test_one_writer_eight_readers(self, make_store: MakeStore) -> None:
        store = make_store(32)
        base = random_vectors(2000, 32, seed=11)
        store.add([f"b{i}" for i in range(2000)], base, [{"w": 0}] * 2000)
        known = {f"b{i}" for i in range(2000)}
        known_lock = threading.Lock()
        errors: list[BaseException] = []
        stop = threading.Event()

        def writer() -> None:
            try:
                for step in range(25):
                    batch = random_vectors(100, 32, seed=100 + step)
                    ids = [f"w{step}-{i}" for i in range(100)]
                    with known_lock:
                        known.update(ids)
                    store.add(ids, batch, [{"w": 1}] * 100)
                    store.delete([f"w{step - 1}-{i}" for i in range(0, 100, 2)])
            except BaseException as exc:
                errors.append(exc)
            finally:
                stop.set()

        def reader(seed: int) -> None:
            queries = random_vectors(8, 32, seed=seed)
            try:
                while not stop.is_set():
                    for hit in store.search(queries[0], k=10):
                        with known_lock:
                            assert hit.id in known
                        assert -1.0 <= hit.score <= 1.0
                    for hits in store.search_batch(queries, k=5, where={"w": [0, 1]}):
                        assert len(hits) == 5
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
        threads.append(threading.Thread(target=writer))
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors[0]
        assert time.monotonic() - start < 120
        assert len(store) == 2000 + 25 * 100 - 24 * 50

    # -- persistence -----------------------------------------------------------------------

    @pytest.fixture
    def saved(self, filled: tuple[Any, np.ndarray], tmp_path: Path) -> tuple[Any, Path]:
        if not self.persistent:
            pytest.skip("store does not persist locally")
        store, _ = filled
        store.delete(["id10"])
        path = tmp_path / "store"
        store.save(path)
        return store, path

    def test_round_trip(self, saved: tuple[Any, Path], filled: tuple[Any, np.ndarray]) -> None:
        store, path = saved
        _, vectors = filled
        loaded = type(store).load(path)
        assert type(loaded) is type(store)
        assert len(loaded) == len(store) == 299
        assert loaded.dimensions == store.dimensions
        assert sorted(loaded) == sorted(store)
        assert loaded.get(["id7"])[0].metadata == store.get(["id7"])[0].metadata
        for query in random_vectors(5, 16, seed=21):
            a = store.search(query, k=8, where={"kind": ["text", "video"]})
            b = loaded.search(query, k=8, where={"kind": ["text", "video"]})
            assert [h.id for h in a] == [h.id for h in b]
        # the loaded store keeps working: upsert, delete, save again
        loaded.add(["id10"], vectors[10:11])
        assert loaded.delete(["id11"]) == 1
        loaded.save(path)
        again = type(store).load(path)
        assert len(again) == 299
        assert "id10" in again
        assert "id11" not in again

    def test_stale_writer_is_refused(self, saved: tuple[Any, Path]) -> None:
        store, path = saved
        first = type(store).load(path)
        second = type(store).load(path)
        first.add(["x"], np.ones((1, 16)))
        first.save(path)
        second.add(["y"], np.ones((1, 16)))
        with pytest.raises(StoreError, match="changed by another writer"):
            second.save(path)
        assert "x" in type(store).load(path)
        second.save(path, force=True)  # an explicit overwrite
        reloaded = type(store).load(path)
        assert "y" in reloaded
        assert "x" not in reloaded

    def test_load_missing_or_foreign(self, make_store: MakeStore, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("store does not persist locally")
        cls = type(make_store(4))
        with pytest.raises(StoreError, match="does not exist"):
            cls.load(tmp_path / "nowhere")
        (tmp_path / "empty").mkdir()
        with pytest.raises(StoreError, match="no saved store"):
            cls.load(tmp_path / "empty")

    def test_every_flipped_byte_is_corrupt_store_error(self, saved: tuple[Any, Path]) -> None:
        store, path = saved
        files = [p for p in path.rglob("*") if p.is_file() and p.name != "LOCK"]
        assert any(p.name == "manifest.json" for p in files)
        rng = np.random.default_rng(5)
        for file in files:
            original = file.read_bytes()
            for offset in {
                0,
                len(original) // 2,
                len(original) - 1,
                int(rng.integers(len(original))),
            }:
                data = bytearray(original)
                data[offset] ^= 0x01 << int(rng.integers(8))
                file.write_bytes(bytes(data))
                with pytest.raises(CorruptStoreError):
                    type(store).load(path)
            file.write_bytes(original)
        assert len(type(store).load(path)) == len(store)

    def test_truncated_file_is_corrupt_store_error(self, saved: tuple[Any, Path]) -> None:
        store, path = saved
        vectors = next(path.glob("gen-*/vectors.npy"))
        vectors.write_bytes(vectors.read_bytes()[:-64])
        with pytest.raises(CorruptStoreError, match="truncated"):
            type(store).load(path)

    def test_planted_pickle_never_executes(self, saved: tuple[Any, Path], tmp_path: Path) -> None:
        store, path = saved
        marker = tmp_path / "pwned"
        payload = planted_pickle(marker)
        generation = next(path.glob("gen-*"))
        # 1. an extra pickle file next to ours
        (generation / "index.pkl").write_bytes(payload)
        with pytest.raises(CorruptStoreError, match=r"index\.pkl"):
            type(store).load(path)
        (generation / "index.pkl").unlink()
        # 2. every file we read replaced by the payload, manifest checksums forged to match
        for name in ("records.json", "vectors.npy"):
            original = (generation / name).read_bytes()
            for blob in (payload, _object_npy(payload)):
                (generation / name).write_bytes(blob)
                forge_checksums(path)
                with pytest.raises(CorruptStoreError):
                    type(store).load(path)
            (generation / name).write_bytes(original)
        # 3. a directory holding only a pickle is not a store
        lone = tmp_path / "lone"
        lone.mkdir()
        (lone / "index.pkl").write_bytes(payload)
        with pytest.raises(StoreError):
            type(store).load(lone)
        assert not marker.exists()


def planted_pickle(marker: Path) -> bytes:
    """A pickle that creates the file ``marker`` when unpickled: what a hostile store would hold.

    Written by hand, so that mmembed never imports :mod:`pickle`.
    """
    name = str(marker).encode("raw_unicode_escape")
    # getattr(pathlib.Path(marker), "touch")(), in pickle protocol 0
    return b"cbuiltins\ngetattr\n(cpathlib\nPath\n(V" + name + b"\ntRVtouch\ntR(tR."


def _object_npy(payload: bytes) -> bytes:
    """An ``.npy`` file of object dtype: numpy unpickles its data when allowed to."""
    buffer = io.BytesIO()
    header = {"descr": "|O", "fortran_order": False, "shape": (1,)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + payload


def npy_bytes(
    array: np.ndarray, *, shape: tuple[int, ...] | None = None, fortran: bool = False
) -> bytes:
    """``array`` as an ``.npy`` file whose header may lie: claim another ``shape`` (10**12 rows)
    or Fortran order: what a tampered store would hold."""
    buffer = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": fortran,
        "shape": shape or array.shape,
    }
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + (array.T if fortran else array).tobytes()


def forge_checksums(path: Path) -> None:
    """Rewrite the manifest and ``CURRENT`` of the store directory ``path`` so every checksum
    matches its files as they are now: what someone who tampers with a store would do."""
    generation = next(path.glob("gen-*"))
    manifest_file = generation / "manifest.json"
    manifest = json.loads(manifest_file.read_bytes())
    for name, entry in manifest["files"].items():
        data = (generation / name).read_bytes()
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["bytes"] = len(data)
    raw = json.dumps(manifest).encode()
    manifest_file.write_bytes(raw)
    (path / "CURRENT").write_text(f"{generation.name} {hashlib.sha256(raw).hexdigest()}\n")
