"""The contract every VectorStore passes. Subclass it and provide a ``make_store`` fixture.

``make_store(dimensions)`` returns a new, empty store. The Hypothesis properties use at most 30
vectors, where approximate indexes (HNSW, IVF) must still be exact, as FAISS's are; their recall
on large data belongs in the store's own test module. ``persistent = False`` skips the
save/load tests.
"""

from __future__ import annotations

import datetime as dt
import pickle
import threading
import time
from collections.abc import Callable
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

MakeStore = Callable[[int], Any]

# make_store is a stateless factory, and each store class runs the same property tests
_FIXTURE_OK = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]
)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def random_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
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
        payload = pickle.dumps(_Boom(str(marker)))
        generation = next(path.glob("gen-*"))
        # 1. an extra pickle file next to ours
        (generation / "index.pkl").write_bytes(payload)
        with pytest.raises(CorruptStoreError, match=r"index\.pkl"):
            type(store).load(path)
        (generation / "index.pkl").unlink()
        # 2. every file we read replaced by the payload, manifest checksums forged to match
        for name in ("records.json", "vectors.npy"):
            original = (generation / name).read_bytes()
            for blob in (payload, _object_npy(_Boom(str(marker)))):
                (generation / name).write_bytes(blob)
                _forge_checksums(path)
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


class _Boom:
    """Pickling this makes unpickling create a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


def _object_npy(obj: object) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([obj], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _forge_checksums(path: Path) -> None:
    """Rewrite manifest and CURRENT so every checksum matches the files as they are now."""
    import hashlib
    import json

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
