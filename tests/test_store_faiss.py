from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmembed.errors import ConfigurationError, CorruptStoreError, StoreError
from mmembed.stores import FaissStore, InMemoryStore
from mmembed.testing.contracts.store import MakeStore, VectorStoreContract, random_vectors, unit

ROOT = Path(__file__).resolve().parents[1]


class TestFaissFlat(VectorStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return FaissStore


class TestFaissFlatFunnel(VectorStoreContract):
    """With the shortlist at least the store size, the funnel must be exact."""

    @pytest.fixture
    def make_store(self) -> MakeStore:
        return lambda d: FaissStore(d, funnel_dimensions=max(1, d // 4), funnel_candidates=2000)


class TestFaissHNSW(VectorStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return lambda d: FaissStore(d, index="HNSW32")


class TestFaissIVF(VectorStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return lambda d: FaissStore(d, index="IVF8,Flat", train_size=256)


class TestFaissHNSWFunnel(VectorStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return lambda d: FaissStore(d, index="HNSW32", funnel_dimensions=max(1, d // 2))


# -- data ------------------------------------------------------------------------------------


def clustered(n: int, d: int, *, clusters: int = 100, seed: int = 0) -> np.ndarray:
    """Gaussian mixture in a low-dimensional latent space, projected to ``d`` dimensions."""
    rng = np.random.default_rng(seed)
    latent = 16
    centres = rng.standard_normal((clusters, latent))
    points = centres[rng.integers(clusters, size=n)] + 0.6 * rng.standard_normal((n, latent))
    out = points @ rng.standard_normal((latent, d)) + 0.2 * rng.standard_normal((n, d))
    return unit(out.astype(np.float32))


def matryoshka_like(n: int, d: int, *, seed: int = 0, alpha: float = 0.5) -> np.ndarray:
    """Clustered vectors whose per-dimension spread decays with the index, like Matryoshka."""
    rng = np.random.default_rng(seed)
    scale = (np.arange(d) + 1.0) ** -alpha
    centres = rng.standard_normal((200, d))
    x = centres[rng.integers(200, size=n)] + rng.standard_normal((n, d))
    return unit((x * scale).astype(np.float32))


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = unit(queries) @ vectors.T
    return np.argsort(-scores, axis=1)[:, :k]


def recall(store: Any, vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    truth = exact_top(vectors, queries, k)
    found = store.search_batch(queries, k=k)
    hits = sum(
        len({int(h.id) for h in got} & set(row.tolist()))
        for got, row in zip(found, truth, strict=True)
    )
    return hits / (k * len(queries))


# -- accuracy --------------------------------------------------------------------------------


def test_flat_equals_brute_force_single_and_batch() -> None:
    vectors = random_vectors(3000, 48, seed=3)
    queries = random_vectors(200, 48, seed=4)
    store = FaissStore(48)
    store.add([str(i) for i in range(3000)], vectors)
    truth = unit(queries) @ unit(vectors).T
    expected = -np.sort(-truth, axis=1)[:, :10]
    batch = store.search_batch(queries, k=10)  # FAISS's GEMM path
    single = [store.search(q, k=10) for q in queries[:20]]  # numpy's GEMV path
    np.testing.assert_allclose([[h.score for h in hits] for hits in batch], expected, atol=1e-5)
    np.testing.assert_allclose(
        [[h.score for h in hits] for hits in single], expected[:20], atol=1e-5
    )
    # a small batch (below FAISS's BLAS threshold) takes the same path and the same answers
    small = store.search_batch(queries[:3], k=10)
    assert [[h.id for h in r] for r in small] == [[h.id for h in r] for r in batch[:3]]


@pytest.mark.parametrize("kind", [FaissStore, InMemoryStore])
def test_batch_over_many_blocks_equals_brute_force(
    monkeypatch: pytest.MonkeyPatch, kind: type[FaissStore] | type[InMemoryStore]
) -> None:
    """Large stores are scanned in blocks (the last one short); small blocks force that here,
    for plain cosines and for cosines at a prefix (scaled by the rows' inverse norms)."""
    import mmembed.stores._kernels as base

    monkeypatch.setattr(base, "_BLOCK_ROWS", 1024)  # blocks of 1024, 1024 and 952 rows
    vectors = random_vectors(3000, 48, seed=5)
    queries = random_vectors(30, 48, seed=6)
    store = kind(48)
    store.add([str(i) for i in range(3000)], vectors)
    for width in (48, 24):
        truth = unit(queries[:, :width]) @ unit(vectors[:, :width]).T
        order = np.argsort(-truth, axis=1)[:, :10]
        batch = store.search_batch(queries, k=10, dimensions=None if width == 48 else width)
        assert [[int(h.id) for h in hits] for hits in batch] == order.tolist()
        np.testing.assert_allclose(
            [[h.score for h in hits] for hits in batch],
            np.take_along_axis(truth, order, axis=1),
            atol=1e-5,
        )


def test_hnsw_recall_on_clustered_data() -> None:
    vectors = clustered(10_000, 64)
    queries = clustered(200, 64, seed=1)
    store = FaissStore(64, index="HNSW32")
    store.add([str(i) for i in range(len(vectors))], vectors)
    assert recall(store, vectors, queries) >= 0.9


def test_ivf_trains_when_enough_vectors_and_keeps_recall() -> None:
    vectors = clustered(6000, 32, seed=2)
    queries = clustered(100, 32, seed=3)
    store = FaissStore(32, index="IVF32,Flat")
    store.add([str(i) for i in range(1000)], vectors[:1000])
    assert not store.is_trained  # 39 per list are needed: exact search meanwhile
    assert recall(store, vectors[:1000], queries) == 1.0
    store.add([str(i) for i in range(1000, 6000)], vectors[1000:])
    assert store.is_trained
    assert recall(store, vectors, queries) >= 0.9


def test_funnel_recall_and_scores_on_matryoshka_like_data() -> None:
    vectors = matryoshka_like(20_000, 256)
    queries = matryoshka_like(100, 256, seed=1)
    funnel = FaissStore(256, funnel_dimensions=32, funnel_candidates=400)
    funnel.add([str(i) for i in range(len(vectors))], vectors)
    assert recall(funnel, vectors, queries) >= 0.99
    # reranked scores are full-width cosines, the scale of every store
    hit = funnel.search(queries[0], k=1)[0]
    assert hit.score == pytest.approx(float(unit(queries[0]) @ vectors[int(hit.id)]), abs=1e-5)
    # the prefix alone is clearly worse: the rerank is doing the work
    prefix_only = funnel.search_batch(queries, k=10, dimensions=32)
    truth = exact_top(vectors, queries, 10)
    prefix_recall = np.mean(
        [
            len({int(h.id) for h in r} & set(t.tolist())) / 10
            for r, t in zip(prefix_only, truth, strict=True)
        ]
    )
    assert prefix_recall < 0.99


def test_funnel_with_an_hnsw_first_pass_keeps_the_recall() -> None:
    vectors = matryoshka_like(20_000, 256)
    queries = matryoshka_like(100, 256, seed=1)
    funnel = FaissStore(256, index="HNSW32", funnel_dimensions=32, funnel_candidates=400)
    funnel.add([str(i) for i in range(len(vectors))], vectors)
    assert recall(funnel, vectors, queries) >= 0.99
    hit = funnel.search(queries[0], k=1)[0]
    assert hit.score == pytest.approx(float(unit(queries[0]) @ vectors[int(hit.id)]), abs=1e-5)


def test_hnsw_deletes_are_hidden_then_compacted() -> None:
    vectors = clustered(2000, 32, seed=5)
    store = FaissStore(32, index="HNSW32")
    store.add([str(i) for i in range(2000)], vectors)
    assert store.delete([str(i) for i in range(0, 2000, 3)]) == 667
    for i in (0, 3, 999):
        assert all(int(h.id) % 3 != 0 for h in store.search(vectors[i], k=20))
    store.delete([str(i) for i in range(1, 2000, 3)])  # past half stale: rebuilt
    assert len(store) == 666
    assert store._dead == 0  # compacted
    assert store.search(vectors[2], k=1)[0].id == "2"


def test_filtered_hnsw_search_still_fills_k() -> None:
    vectors = clustered(5000, 32, seed=6)
    store = FaissStore(32, index="HNSW32")
    meta = [{"bucket": i % 10, "rare": i % 500 == 0} for i in range(5000)]
    store.add([str(i) for i in range(5000)], vectors, meta)
    broad = store.search_batch(vectors[:20], k=25, where={"bucket": [1, 2, 3]})
    assert all(len(r) == 25 and all(h.metadata["bucket"] in (1, 2, 3) for h in r) for r in broad)
    rare = store.search(vectors[7], k=10, where={"rare": True})
    assert len(rare) == 10
    assert {h.id for h in rare} == {str(i) for i in range(0, 5000, 500)}


def test_invalid_settings() -> None:
    with pytest.raises(ConfigurationError, match="FAISS cannot build"):
        FaissStore(16, index="NoSuchIndex")
    with pytest.raises(ConfigurationError, match="drop the IDMap"):
        FaissStore(16, index="IDMap,Flat")
    with pytest.raises(ConfigurationError, match="smaller than dimensions"):
        FaissStore(16, funnel_dimensions=16)
    with pytest.raises(ConfigurationError):
        FaissStore(16, funnel_candidates=0)


def test_shrink_keeps_index_kind_and_drops_a_funnel_that_no_longer_fits() -> None:
    store = FaissStore(64, index="HNSW32", funnel_dimensions=32)
    store.add(["a", "b"], random_vectors(2, 64))
    assert store.shrink(48).funnel_dimensions == 32
    small = store.shrink(16)
    assert small.index == "HNSW32"
    assert small.funnel_dimensions is None
    assert small.search(small.get(["a"])[0].vector, k=1)[0].id == "a"


# -- persistence -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["HNSW32", "IVF8,Flat"])
def test_ann_round_trip_uses_saved_index_or_rebuilds(tmp_path: Path, spec: str) -> None:
    vectors = clustered(3000, 32, seed=7)
    store = FaissStore(32, index=spec, funnel_dimensions=16, train_size=500)
    store.add([str(i) for i in range(3000)], vectors, [{"i": i} for i in range(3000)])
    store.delete([str(i) for i in range(10)])
    store.save(tmp_path / "s")
    assert (next((tmp_path / "s").glob("gen-*")) / "index.faiss").exists()
    queries = clustered(30, 32, seed=8)
    before = [[h.id for h in r] for r in store.search_batch(queries, k=5)]
    for rebuild in (False, True):
        loaded = FaissStore.load(tmp_path / "s", rebuild_index=rebuild)
        assert loaded.index == spec
        assert loaded.funnel_dimensions == 16
        assert len(loaded) == 2990
        after = [[h.id for h in r] for r in loaded.search_batch(queries, k=5)]
        agree = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(before, after, strict=True)])
        assert agree >= (0.99 if not rebuild else 0.9)
        assert "5" not in loaded
        assert "11" in loaded


def test_checksums_are_verified_before_faiss_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    store = FaissStore(16, index="HNSW32")
    store.add([str(i) for i in range(300)], random_vectors(300, 16))
    store.save(tmp_path / "s")
    index_file = next((tmp_path / "s").glob("gen-*/index.faiss"))
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    index_file.write_bytes(bytes(data))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("faiss.read_index ran on an unverified file")

    monkeypatch.setattr(faiss, "read_index", refuse)
    with pytest.raises(CorruptStoreError, match="sha256"):
        FaissStore.load(tmp_path / "s")


def test_wrong_kind_of_store(tmp_path: Path) -> None:
    store = InMemoryStore(4)
    store.add(["a"], np.ones((1, 4)))
    store.save(tmp_path / "s")
    with pytest.raises(StoreError, match=r"InMemoryStore\.load"):
        FaissStore.load(tmp_path / "s")


def test_old_generations_are_collected(tmp_path: Path) -> None:
    store = InMemoryStore(4)
    for i in range(5):
        store.add([str(i)], np.ones((1, 4)))
        store.save(tmp_path / "s")
    generations = sorted(p.name for p in (tmp_path / "s").glob("gen-*"))
    assert generations == ["gen-000004", "gen-000005"]  # the newest and the one before
    assert len(InMemoryStore.load(tmp_path / "s")) == 5


# -- processes: locks and crashes ------------------------------------------------------------


def _python(code: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_second_writing_process_gets_a_clear_error_and_a_dead_one_blocks_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    store = InMemoryStore(4)
    store.add(["a"], np.ones((1, 4)))
    store.save(path)
    holder = _python(
        f"""
        import fcntl, os, sys, time
        fd = os.open({str(path / "LOCK")!r}, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, str(os.getpid()).encode())
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        store.add(["b"], np.ones((1, 4)))
        with pytest.raises(StoreError, match=f"another process \\(pid {holder.pid}"):
            store.save(path)
        # opening and closing the lock file in this process must not steal the lock
        (path / "LOCK").read_bytes()
        with pytest.raises(StoreError, match="another process"):
            store.save(path)
    finally:
        holder.kill()  # SIGKILL: the kernel drops the flock with the process
        holder.communicate()
    store.save(path)
    assert "b" in InMemoryStore.load(path)


_CHILD = """
import sys, numpy as np
from mmembed.stores import FaissStore, InMemoryStore
path, kind = sys.argv[1], sys.argv[2]

def state(version):
    n = 1500 + (version % 5) * 300
    rng = np.random.default_rng(version)
    return [f"{version}-{i}" for i in range(n)], rng.standard_normal((n, 32)).astype(np.float32)

def save(version):
    store = FaissStore(32, index="HNSW32") if kind == "faiss" else InMemoryStore(32)
    ids, vectors = state(version)
    store.add(ids, vectors, [{"version": version}] * len(ids))
    store.save(path)

version = int(sys.argv[3]) + 1
save(version)
print("ready", flush=True)  # from here on the parent may kill us at any moment
while True:
    version += 1
    save(version)
"""


@pytest.mark.parametrize(("kind", "trials"), [("memory", 8), ("faiss", 4)])
def test_kill_9_during_save_leaves_old_or_new_never_a_mix(
    tmp_path: Path, kind: str, trials: int
) -> None:
    path = tmp_path / "s"
    cls = FaissStore if kind == "faiss" else InMemoryStore
    rng = np.random.default_rng(0)
    last_version = 0
    seen_versions = set()
    for _ in range(trials):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), kind, str(last_version)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.5)))
        proc.kill()
        proc.communicate()
        store = cls.load(path)
        versions = {store.get([i])[0].metadata["version"] for i in list(store)[:50]}
        assert len(versions) == 1
        version = versions.pop()
        n = 1500 + (version % 5) * 300
        assert len(store) == n
        expected = np.random.default_rng(version).standard_normal((n, 32)).astype(np.float32)
        got = np.stack([r.vector for r in store.get([f"{version}-{i}" for i in range(n)])])
        np.testing.assert_allclose(got, unit(expected), atol=1e-6)
        assert all(m == version for m in (store.get([i])[0].metadata["version"] for i in store))
        assert version > last_version  # the save before "ready" was durable
        seen_versions.add(version)
        last_version = version
    # the kills landed at different points: several distinct generations were seen
    assert len(seen_versions) >= 2


# -- hygiene ---------------------------------------------------------------------------------


def test_import_stores_does_not_load_faiss() -> None:
    code = "import sys, mmembed.stores; print('faiss' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_package_never_unpickles() -> None:
    # The decoder sandbox pickles in memory between its own processes, and reads what a worker
    # sends back with an allow-list unpickler (tests/test_sandbox.py); nothing else may.
    sandbox = ROOT / "mmembed" / "chunkers" / "_sandbox.py"
    sources = "\n".join(p.read_text() for p in (ROOT / "mmembed").rglob("*.py") if p != sandbox)
    for forbidden in ("import pickle", "pickle.load", "allow_pickle=True", "yaml.load("):
        assert forbidden not in sources
    assert "class _ChildUnpickler(pickle.Unpickler)" in sandbox.read_text()
