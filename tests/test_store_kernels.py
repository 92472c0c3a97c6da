"""Every exact kernel (the scan, numpy's GEMV, the GEMM blocks) returns the brute-force answer,
ties included: the higher score first, the earlier row first among equal scores; and the race
that picks between them runs the faster one.

The vectors hold four entries of +-1 each (two in the first half, the Matryoshka prefix, two in
the second), so every cosine is a multiple of 1/4 computed exactly in any summation order, and
most scores tie with many others: a kernel that breaks ties its own way fails here at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmembed.stores._kernels as kernels
from mmembed.stores import FaissStore, InMemoryStore

ROOT = Path(__file__).resolve().parents[1]
N, D, PREFIX, K = 600, 16, 8, 10


def sparse_signs(n: int, seed: int) -> np.ndarray:
    """``n`` rows with two entries of +-1 in each half of ``D`` dimensions."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, D), dtype=np.float32)
    for row in out:
        for half in (0, PREFIX):
            cols = half + rng.choice(PREFIX, size=2, replace=False)
            row[cols] = rng.choice([-1.0, 1.0], size=2)
    return out


VECTORS = sparse_signs(N, seed=1)
QUERIES = sparse_signs(31, seed=2)
# where filters: 120 matching rows (few: the rows are gathered first) and 400 (many: the other
# rows are masked out of the full scan)
METADATA: list[dict[str, Any]] = [{"five": i % 5 == 0, "three": i % 3} for i in range(N)]
FEW = {"five": True}
MANY = {"three": [1, 2]}


def expected(
    queries: np.ndarray, where: dict[str, Any] | None, prefix: int | None
) -> list[list[int]]:
    """The brute-force rows: scores in float64 from the sign patterns, then by row."""
    width = prefix or D
    scores = queries[:, :width].astype(np.float64) @ VECTORS[:, :width].T.astype(np.float64)
    rows = np.arange(N)
    if where is not None:
        ((key, value),) = where.items()
        values = value if isinstance(value, list) else [value]
        rows = np.array([i for i in range(N) if METADATA[i][key] in values])
    out = []
    for row_scores in scores:
        order = np.lexsort((rows, -row_scores[rows]))[:K]
        out.append(rows[order].tolist())
    return out


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def faiss_threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """FAISS's thread count set for the test, as OMP_NUM_THREADS would."""
    faiss = kernels.load_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(request.param)
    try:
        yield request.param
    finally:
        faiss.omp_set_num_threads(before)


@pytest.fixture(params=["scan", "blas", "wide"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The kernel every search runs, whatever the race or the thread count would pick."""

    def pick(nq: int, matrix: np.ndarray) -> tuple[str, None]:
        # a strided matrix (a prefix view) has BLAS alone
        return (request.param if matrix.flags.c_contiguous else "blas"), None

    monkeypatch.setattr(kernels, "_pick", pick)
    return str(request.param)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks small enough that this small store is split, chunked and blocked as a large one:
    scans split whatever the size, 64-row chunks, 96-row GEMM blocks and wide blocks of at
    least 96 rows and 640 scores (the last ones short)."""
    monkeypatch.setattr(kernels, "_SPLIT_BYTES", 1)
    monkeypatch.setattr(kernels, "_SCAN_BYTES", 64 * D * 4)
    monkeypatch.setattr(kernels, "_BLOCK_ROWS", 96)
    monkeypatch.setattr(kernels, "_BLOCK_VALUES", 640)


def make(kind: str) -> InMemoryStore | FaissStore:
    store: InMemoryStore | FaissStore
    if kind == "memory":
        store = InMemoryStore(D)
    elif kind == "faiss":
        store = FaissStore(D)
    else:  # the prefix rows kept contiguous: a prefix search scans them like full vectors
        store = FaissStore(D, funnel_dimensions=PREFIX)
    store.add([str(i) for i in range(N)], VECTORS, METADATA)
    return store


@pytest.mark.usefixtures("small_blocks", "kernel")
@pytest.mark.parametrize(
    ("kind", "prefix"),
    # a funnel at full width is approximate (tests/test_store_faiss.py)
    [("memory", None), ("memory", PREFIX), ("faiss", None), ("faiss", PREFIX), ("funnel", PREFIX)],
)
@pytest.mark.parametrize("where", [None, FEW, MANY], ids=["all", "few", "many"])
@pytest.mark.parametrize("nq", [1, 2, 5, 31])
def test_every_kernel_path_equals_brute_force(
    faiss_threads: int,
    kind: str,
    where: dict[str, Any] | None,
    prefix: int | None,
    nq: int,
) -> None:
    store = make(kind)
    queries = QUERIES[:nq]
    want = expected(queries, where, prefix)
    if nq == 1:
        found = [store.search(queries[0], K, where=where, dimensions=prefix)]
    else:
        found = store.search_batch(queries, K, where=where, dimensions=prefix)
    assert [[int(hit.id) for hit in hits] for hits in found] == want
    width = prefix or D
    for hits, query in zip(found, queries, strict=True):
        q = query[:width] / np.linalg.norm(query[:width])
        rows = [int(hit.id) for hit in hits]
        v = VECTORS[rows, :width] / np.linalg.norm(VECTORS[rows, :width], axis=1, keepdims=True)
        np.testing.assert_allclose([hit.score for hit in hits], v @ q, atol=1e-6)


@pytest.mark.usefixtures("small_blocks", "kernel")
@pytest.mark.parametrize("nq", [1, 3])
def test_kernels_agree_directly(faiss_threads: int, nq: int) -> None:
    """The kernel entry point against brute force, on a Fortran-ordered (strided) matrix too,
    with fewer matching rows than k (the rest comes back as -1 / -inf)."""
    matrix = np.ascontiguousarray(VECTORS / 2)
    queries = np.ascontiguousarray(QUERIES[:nq] / 2)
    want = expected(QUERIES[:nq], None, None)
    for layout in (matrix, np.asfortranarray(matrix)):
        scores, rows = kernels.knn(queries, layout, K)
        assert rows.tolist() == want
        np.testing.assert_allclose(
            scores, np.take_along_axis(queries @ matrix.T, rows, axis=1), atol=1e-6
        )
    allowed = np.array([3, 7, 500], dtype=np.intp)
    scores, rows = kernels.knn(queries, matrix, K, allowed=allowed)
    assert (rows[:, 3:] == -1).all()
    assert np.isneginf(scores[:, 3:]).all()
    assert all(sorted(r[:3]) == [3, 7, 500] for r in rows.tolist())


@pytest.mark.parametrize("kernel", ["scan"], indirect=True)
def test_the_scan_shares_chunks_among_faiss_threads(
    monkeypatch: pytest.MonkeyPatch, small_blocks: None, kernel: str
) -> None:
    """As many threads as FAISS's OpenMP has (OMP_NUM_THREADS, omp_set_num_threads) take the
    chunks; each runs FAISS on one thread meanwhile, so a search never splits twice."""
    faiss = kernels.load_faiss()
    calls: list[tuple[str, int]] = []
    started = threading.Event()
    scan_chunks = kernels._scan_chunks

    def recording(*args: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            started.wait(5)  # let a helper take chunks too, however busy the machine
        else:
            started.set()
        calls.append((threading.current_thread().name, kernels.threads()))
        return scan_chunks(*args)

    monkeypatch.setattr(kernels, "_scan_chunks", recording)
    before = faiss.omp_get_max_threads()
    try:
        for count in (1, 2, 3):
            faiss.omp_set_num_threads(count)
            calls.clear()
            started.clear()
            if count == 1:
                started.set()
            _, rows = kernels.knn(QUERIES[:1] / 2, VECTORS / 2, K)
            assert rows.tolist() == expected(QUERIES[:1], None, None)
            main = threading.main_thread().name
            helpers = [seen for name, seen in calls if name != main]
            assert (main, 1) in calls
            assert min(1, count - 1) <= len(helpers) <= count - 1
            assert set(helpers) <= {1}
            assert kernels.threads() == count  # this thread's count is given back
    finally:
        faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("kernel", ["scan"], indirect=True)
def test_small_matrices_are_not_split(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    faiss = kernels.load_faiss()
    calls: list[str] = []
    scan_chunks = kernels._scan_chunks

    def recording(*args: Any) -> Any:
        calls.append(threading.current_thread().name)
        return scan_chunks(*args)

    monkeypatch.setattr(kernels, "_scan_chunks", recording)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        kernels.knn(QUERIES[:1], VECTORS, K)  # 38 KB: below the split size
    finally:
        faiss.omp_set_num_threads(before)
    assert calls == [threading.main_thread().name]


def test_thread_count_follows_omp_num_threads() -> None:
    code = "import mmembed.stores._kernels as k; print(k.threads())"
    for value in ("1", "2", "3"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": value},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == value


@pytest.mark.parametrize("where", [None, FEW, MANY], ids=["all", "few", "many"])
@pytest.mark.parametrize("prefix", [None, PREFIX], ids=["full", "prefix"])
def test_without_faiss_one_query_takes_numpy_with_the_same_answer(
    monkeypatch: pytest.MonkeyPatch, where: dict[str, Any] | None, prefix: int | None
) -> None:
    store = make("memory")
    monkeypatch.setattr(kernels, "_faiss_module", None)
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    assert kernels.threads() == 1
    for query, want in zip(QUERIES[:5], expected(QUERIES[:5], where, prefix), strict=True):
        hits = store.search(query, K, where=where, dimensions=prefix)
        assert [int(hit.id) for hit in hits] == want


def test_top_k_keeps_the_earlier_of_equal_scores() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.9, 0.1], dtype=np.float32)
    assert kernels.top_k(scores, 3).tolist() == [1, 4, 0]
    assert kernels.top_k(scores, 4).tolist() == [1, 4, 0, 2]
    assert kernels.top_k(scores, 9).tolist() == [1, 4, 0, 2, 3, 5]


def test_the_race_runs_the_faster_kernel_and_keeps_timing_the_other() -> None:
    race = kernels._Race(("scan", "blas"))
    cost = {"scan": 1.0, "blas": 2.0}
    picked = []
    for _ in range(200):
        name = race.pick()
        picked.append(name)
        race.record(name, cost[name])
    # three runs of each first, then the faster, with the other every 16th search
    assert picked[:6] == ["scan"] * 3 + ["blas"] * 3
    explored = [call for call in range(7, 201) if call % kernels._EXPLORE == 0]
    assert picked[6:].count("blas") == len(explored)
    cost["scan"] = 3.0  # the scan became slower (another load, another size)
    for _ in range(200):
        name = race.pick()
        picked.append(name)
        race.record(name, cost[name])
    assert picked[-100:].count("blas") > 90


@pytest.mark.parametrize("faiss_threads", [1, 2], indirect=True)
def test_searches_report_to_their_race(monkeypatch: pytest.MonkeyPatch, faiss_threads: int) -> None:
    """Each race is one thread count, batch size (above three, a power of two), width and size
    range; every search of a large matrix reports its time to its race (the scan against BLAS
    up to three queries, 1024-row against wide GEMM blocks for batches on one thread), and
    small matrices take BLAS without one."""
    monkeypatch.setattr(kernels, "_RACES", {})
    monkeypatch.setattr(kernels, "_RACE_BYTES", 1)
    matrix = np.ascontiguousarray(VECTORS / 2)
    for nq in (1, 2, 3, 4, 5, 6, 7, 8):
        for _ in range(8):
            kernels.knn(np.ascontiguousarray(QUERIES[:nq] / 2), matrix, K)
    batches = [1, 2, 3] + ([4, 8] if faiss_threads == 1 else [])
    assert sorted(key[1] for key in kernels._RACES) == batches, kernels._RACES
    for key, race in kernels._RACES.items():
        assert key[0] == faiss_threads
        assert set(race._times) == ({"scan", "blas"} if key[1] <= 3 else {"blas", "wide"})
        counts = sorted(len(times) for times in race._times.values())
        if key[1] == 4:  # four batch sizes (4-7) share one race: 32 searches, 5 kept each
            assert counts == [5, 5], (key, race._times)
        else:  # 8 searches: 3 of each first, then the faster of the moment
            assert counts[0] >= 3, (key, race._times)
            assert sum(counts) == 8, (key, race._times)
    monkeypatch.setattr(kernels, "_RACES", {})
    monkeypatch.setattr(kernels, "_RACE_BYTES", 1 << 22)
    kernels.knn(QUERIES[:1], VECTORS, K)
    assert kernels._RACES == {}
