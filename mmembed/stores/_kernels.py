"""Exact k-nearest-neighbour kernels of the local stores, behind one entry point, :func:`knn`,
plus the candidate rerank of FAISS indexes (:func:`rerank`).

Two kernels, which return the same answer (``benchmarks/store_search.py`` times them next to
raw numpy and FAISS at one and two threads):

- **the scan**: FAISS's SIMD inner products over chunks of the rows, the chunks shared out
  among the search's threads, each thread keeping its own heaps, merged at the end. It reads
  memory faster than OpenBLAS's one-thread GEMV at some widths, needs no separate top-k pass,
  and reads the rows once for a batch of two or three queries.
- **BLAS**: one numpy GEMV and a partition for one query; for a batch, numpy's GEMM over
  blocks of 1024 rows with FAISS's heaps taking each block (``faiss.knn`` scans query by
  query below its BLAS threshold, 2-166 queries at 768 dimensions, several times slower), or
  (**wide**) over blocks of 16M scores, which large batches on one thread may prefer.

Which one runs is measured while the store works (:class:`_Race`): the scan against BLAS for
up to three queries over a large contiguous matrix, 1024-row against wide blocks for larger
batches on one thread. Larger batches on several threads take the scan's chunks of GEMM
blocks; small or strided matrices (a Matryoshka prefix view) take BLAS, and so does one query
without FAISS.

The thread count is FAISS's: :func:`threads` (``OMP_NUM_THREADS``, ``faiss.omp_set_num_threads``
or a threadpoolctl limit set it). Every kernel scores with inner products, so callers pass unit
rows (or per-row inverse norms) to get cosines, and every kernel breaks ties the same way: the
higher score first, the lower row first among equal scores. FAISS is imported on first use of
a kernel that needs it, never at import.
"""

from __future__ import annotations

import importlib
import itertools
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._threads import worker_pool
from mmembed.errors import MissingDependencyError

__all__ = ["knn", "load_faiss", "rerank", "threads", "top_k"]

# database rows per GEMM block of a batch, as in FAISS's own BLAS path: a block stays in cache
# between the product and the heaps; on one thread 1.1-1.4x faster than 64 MB score blocks for
# 2-128 queries
_BLOCK_ROWS = 1024
# scores per block of the wide GEMM (64 MB): for 1000 queries on one thread numpy's GEMM runs
# 1.3x faster over such blocks than over 1024 rows on one machine, as fast on another
_BLOCK_VALUES = 1 << 24
# batches up to this size may be scanned (one FAISS inner-product pass per query over each
# chunk of rows, the chunk read from memory once): on one thread 1.4x faster than GEMM blocks
# for 2 queries of 768 dimensions, 1.3x for 3, 0.8x for 4
_SCAN_QUERIES = 3
# below this many bytes the matrix stays in cache and BLAS wins: the scan's fixed cost
# (its heaps, a thread to wake) is larger than its gain
_RACE_BYTES = 1 << 22
# bytes of rows per chunk of a scan: small enough to share the rows out evenly between threads
# and to keep a chunk in cache while it is scored for each query of a small batch
_SCAN_BYTES = 1 << 22
# a scan splits over threads only when each thread gets at least this many bytes of rows:
# below it, handing a block to another thread costs more than it saves
_SPLIT_BYTES = 1 << 21

_faiss_module: ModuleType | None = None


def load_faiss() -> ModuleType:
    """The ``faiss`` module, imported now, or :class:`MissingDependencyError`."""
    global _faiss_module
    if _faiss_module is None:
        try:
            _faiss_module = importlib.import_module("faiss")
        except ImportError as exc:
            err = MissingDependencyError(
                "FaissStore and batch search need FAISS (faiss-cpu, a dependency of mmembed), "
                "which is not installed. Install it with: pip install faiss-cpu"
            )
            err.name = "faiss"
            raise err from exc
    return _faiss_module


def _faiss_or_none() -> ModuleType | None:
    try:
        return load_faiss()
    except MissingDependencyError:
        return None


def threads() -> int:
    """How many threads one search may use: FAISS's OpenMP thread count, which follows
    ``OMP_NUM_THREADS``, ``faiss.omp_set_num_threads`` and threadpoolctl limits (1 inside the
    scan's own worker threads, so a search never splits twice)."""
    faiss = _faiss_or_none()
    if faiss is None:
        return 1
    return max(1, int(faiss.omp_get_max_threads()))


def top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the ``k`` largest scores, best first; among equal scores the lower index
    first (the rule every kernel follows)."""
    n = scores.shape[0]
    if k >= n:
        return np.argsort(-scores, kind="stable")
    kth = np.partition(scores, n - k)[n - k]
    above = np.flatnonzero(scores > kth)
    ties = np.flatnonzero(scores == kth)[: k - above.size]
    chosen = np.concatenate([above, ties])
    return chosen[np.argsort(-scores[chosen], kind="stable")]


def knn(
    queries: NDArray[np.float32],
    matrix: NDArray[np.float32],
    k: int,
    *,
    inverse: NDArray[np.float32] | None = None,
    allowed: NDArray[np.intp] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """Exact top-k of ``queries @ matrix.T``, each column scaled by ``inverse`` when given,
    over the rows in ``allowed`` (sorted row numbers) when given.

    Returns scores and row numbers, ``(len(queries), k)`` each, best first; ``-inf`` and ``-1``
    where fewer than ``k`` rows exist.
    """
    nq, n = queries.shape[0], matrix.shape[0]
    faiss = _faiss_or_none() if nq == 1 else load_faiss()
    if faiss is None:
        return _gemv_knn(queries[0], matrix, k, inverse, allowed)
    kernel, race = _pick(nq, matrix)
    start = time.perf_counter()
    if kernel == "blas" and nq == 1:
        scores, rows = _gemv_knn(queries[0], matrix, k, inverse, allowed)
    else:
        blocked = None
        if allowed is not None:
            blocked = np.ones(n, dtype=bool)
            blocked[allowed] = False
        labels = _descending(n)
        query = np.ascontiguousarray(queries, dtype=np.float32)
        search = _Search(faiss, query, matrix, k, inverse, blocked, labels)
        if kernel == "scan":
            scores, found = _scan(search)
        else:
            scores, found = _gemm_heaps(search, wide=kernel == "wide")
        # empty heap slots (fewer than k rows) hold label -1 and -FLT_MAX
        missing = found < 0
        scores[missing] = -np.inf
        rows = np.where(missing, -1, labels.shape[0] - 1 - found)
    if race is not None:
        race.record(kernel, (time.perf_counter() - start) / (matrix.nbytes * nq))
    return scores, rows


# -- choosing a kernel ------------------------------------------------------------------------

# the recent timings a race keeps per kernel, and how often it runs a kernel not in front
_SAMPLES = 5
_EXPLORE = 16


class _Race:
    """Kernels that return the same answer, timed on the searches themselves.

    Each search runs the kernel with the lowest median time per byte and query over its recent
    runs
    (every kernel runs three times first); every :data:`_EXPLORE`-th search runs another
    one, so that a change (the machine's load, the data's size) is noticed. Which kernel is
    faster depends on the CPU, the BLAS, the width of the rows and the thread count (FAISS's
    scan reads 768-d rows faster than OpenBLAS's one-thread GEMV on a Zen 4 core, 3072-d rows
    slower): measuring beats any fixed rule.
    """

    def __init__(self, kernels: tuple[str, ...]) -> None:
        self._times = {name: deque[float](maxlen=_SAMPLES) for name in kernels}
        self._calls = 0
        self._lock = threading.Lock()

    def pick(self) -> str:
        with self._lock:
            self._calls += 1
            for name, times in self._times.items():
                if len(times) < 3:
                    return name
            ranked = sorted(self._times, key=lambda name: statistics.median(self._times[name]))
            if self._calls % _EXPLORE:
                return ranked[0]
            return ranked[1 + (self._calls // _EXPLORE) % (len(ranked) - 1)]

    def record(self, kernel: str, seconds_per_byte: float) -> None:
        with self._lock:
            self._times[kernel].append(seconds_per_byte)


_RACES: dict[tuple[int, ...], _Race] = {}


def _pick(nq: int, matrix: NDArray[np.float32]) -> tuple[str, _Race | None]:
    """The kernel for ``nq`` queries against ``matrix``: ``"scan"``, ``"blas"`` (one GEMV, or
    GEMM blocks of 1024 rows) or ``"wide"`` (wide GEMM blocks), raced where more than one
    applies; the race to report the search's time to, if any."""
    if not matrix.flags.c_contiguous or matrix.nbytes < _RACE_BYTES:
        return "blas", None
    count = threads()
    if nq > _SCAN_QUERIES:
        if count > 1:
            # a batch on several threads: GEMM chunks taken by each thread alone (one handover
            # per search) rather than numpy's threads joining for every block (on a busy
            # machine each join waits for a descheduled thread: measured up to 8x slower for
            # 128 queries)
            return "scan", None
        kernels, batch = ("blas", "wide"), 1 << (nq.bit_length() - 1)
    else:
        kernels, batch = ("scan", "blas"), nq
    # one race per thread count, batch size (a power of two above three), row width and 4x
    # range of the matrix's size
    key = (count, batch, matrix.shape[1], matrix.nbytes.bit_length() // 2)
    race = _RACES.get(key)
    if race is None:
        race = _RACES.setdefault(key, _Race(kernels))
    return race.pick(), race


# -- heaps -------------------------------------------------------------------------------------

_labels_cache = np.empty(0, dtype=np.int64)


def _descending(n: int) -> NDArray[np.int64]:
    """Heap labels, ``label = len(labels) - 1 - row``: descending along the rows.

    FAISS's heaps admit a score only when it beats the worst kept one, and evict the smallest
    label among equal worst scores. Fed labels that fall as rows rise, both keep the lower row
    of a tie, the rule :func:`top_k` follows; ascending labels would keep an arbitrary mix.
    """
    global _labels_cache
    cached = _labels_cache
    if cached.shape[0] < n:
        cached = np.arange(max(n, 2 * cached.shape[0]) - 1, -1, -1, dtype=np.int64)
        _labels_cache = cached
    return cached


@dataclass(frozen=True, slots=True)
class _Search:
    """One exact search as the heap kernels see it."""

    faiss: ModuleType
    queries: NDArray[np.float32]  # contiguous rows
    matrix: NDArray[np.float32]
    k: int
    inverse: NDArray[np.float32] | None  # per-row factors of the scores
    blocked: NDArray[np.bool_] | None  # the rows a filter rules out
    labels: NDArray[np.int64]  # see _descending

    def heaps(self) -> tuple[NDArray[np.float32], NDArray[np.int64], Any]:
        """Scores and labels ``(queries, k)`` and an empty FAISS min-heap on each row."""
        faiss, nq = self.faiss, self.queries.shape[0]
        scores = np.empty((nq, self.k), dtype=np.float32)
        found = np.empty((nq, self.k), dtype=np.int64)
        heaps = faiss.float_minheap_array_t()
        heaps.nh, heaps.k = scores.shape
        heaps.val, heaps.ids = faiss.swig_ptr(scores), faiss.swig_ptr(found)
        heaps.heapify()
        return scores, found, heaps

    def take(self, heaps: Any, out: NDArray[np.float32], start: int, stop: int) -> None:
        """Feed the heaps the scores ``out`` of rows ``start:stop`` (one line per query),
        scaled by the rows' inverse norms, filtered rows ruled out."""
        if self.inverse is not None:
            out *= self.inverse[start:stop]
        if self.blocked is not None:
            np.copyto(out, np.float32(-np.inf), where=self.blocked[start:stop])
        ptr = self.faiss.swig_ptr
        heaps.addn_with_ids(stop - start, ptr(out), ptr(self.labels[start:stop]), 0, 0, len(out))


# -- one query: the scan -----------------------------------------------------------------------

_POOL: tuple[ThreadPoolExecutor, int] | None = None
_POOL_GUARD = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The scan's worker threads; FAISS inside them runs on one thread (no nested teams)."""
    global _POOL
    with _POOL_GUARD:
        if _POOL is None or _POOL[1] < workers:
            size = max(workers, os.cpu_count() or 1)
            faiss = load_faiss()
            pool = worker_pool(size, "mmembed-scan", lambda: faiss.omp_set_num_threads(1))
            _POOL = (pool, size)
        return _POOL[0]


def _scan(search: _Search) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Queries against contiguous rows, chunk by chunk: each thread of the search takes the
    next chunk until none is left, keeping heaps of its own, merged at the end. A thread that
    starts late (on a busy machine) finds less to do, or nothing, and is not waited for."""
    faiss, matrix, nq = search.faiss, search.matrix, search.queries.shape[0]
    n = matrix.shape[0]
    rows = _BLOCK_ROWS if nq > _SCAN_QUERIES else max(1, _SCAN_BYTES // (4 * matrix.shape[1]))
    helpers = min(threads(), -(-n // rows), max(1, matrix.nbytes // _SPLIT_BYTES)) - 1
    tickets = itertools.count()

    def work() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        return _scan_chunks(search, rows, tickets)

    futures = [_pool(helpers).submit(work) for _ in range(helpers)]
    # this thread takes chunks too, FAISS on one thread here as in the helpers
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        results = [work()]
    finally:
        faiss.omp_set_num_threads(before)
    for future in futures:
        if not future.cancel():
            results.append(future.result())
    if len(results) == 1:
        return results[0]
    scores = np.concatenate([r[0] for r in results], axis=1)
    found = np.concatenate([r[1] for r in results], axis=1)
    # by score, then by label (descending labels are ascending rows)
    order = np.lexsort((-found, -scores), axis=1)[:, : search.k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(found, order, 1)


def _scan_chunks(
    search: _Search, rows: int, tickets: Iterator[int], *, blas: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The top-k, for each query, of the chunks of ``rows`` rows this thread takes, scored by
    numpy's GEMM (``blas``: on numpy's threads, any memory layout), else by FAISS's SIMD inner
    products (one pass per query over the chunk in cache), or for more queries than
    :data:`_SCAN_QUERIES` by one GEMM on FAISS's BLAS (on this thread alone: the caller
    makes FAISS's OpenMP count 1)."""
    faiss, queries, matrix = search.faiss, search.queries, search.matrix
    (nq, width), n = queries.shape, matrix.shape[0]
    scores, found, heaps = search.heaps()
    # one buffer for every chunk: the short last chunk is its contiguous head, not a fresh
    # allocation (first-touch page faults cost more than the GEMM of a small chunk)
    buffer = np.empty(nq * min(rows, n), dtype=np.float32)
    pointers = [faiss.swig_ptr(query) for query in queries]
    product: Any = None
    if not blas and nq > _SCAN_QUERIES:
        # y = A x with A the queries: the chunk's scores, one row of nq per database row
        product = faiss.LinearTransform(width, nq, False)
        faiss.copy_array_to_vector(queries.ravel(), product.A)
        product.is_trained = True
        transposed = np.empty((min(rows, n), nq), dtype=np.float32)
    for ticket in tickets:
        lo = ticket * rows
        if lo >= n:
            break
        hi = min(n, lo + rows)
        out = buffer[: nq * (hi - lo)].reshape(nq, hi - lo)
        if blas:
            np.matmul(queries, matrix[lo:hi].T, out=out)
        elif product is not None:
            product.apply_noalloc(
                hi - lo, faiss.swig_ptr(matrix[lo:hi]), faiss.swig_ptr(transposed)
            )
            np.copyto(out, transposed[: hi - lo].T)
        else:
            block = faiss.swig_ptr(matrix[lo:hi])
            for query, line in zip(pointers, out, strict=True):
                faiss.fvec_inner_products_ny(faiss.swig_ptr(line), query, block, width, hi - lo)
        search.take(heaps, out, lo, hi)
    heaps.reorder()
    return scores, found


def _gemv_knn(
    query: NDArray[np.float32],
    matrix: NDArray[np.float32],
    k: int,
    inverse: NDArray[np.float32] | None,
    allowed: NDArray[np.intp] | None,
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """One query by numpy alone: one BLAS GEMV (any memory layout), then :func:`top_k`."""
    scores = np.empty(matrix.shape[0], dtype=np.float32)
    np.dot(matrix, query, out=scores)
    if inverse is not None:
        scores *= inverse
    rows: NDArray[np.intp] | None = allowed
    if allowed is not None:
        scores = scores[allowed]
    order = top_k(scores, k)
    best = np.full((1, k), -np.inf, dtype=np.float32)
    found = np.full((1, k), -1, dtype=np.intp)
    best[0, : order.size] = scores[order]
    found[0, : order.size] = order if rows is None else rows[order]
    return best, found


# -- a batch: GEMM blocks ----------------------------------------------------------------------


def _gemm_heaps(
    search: _Search, *, wide: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """A query batch on this thread: numpy's GEMM (on numpy's threads) over blocks of
    :data:`_BLOCK_ROWS` rows (``wide``: of :data:`_BLOCK_VALUES` scores), FAISS's heaps taking
    each block.

    The split is deliberate. ``faiss.knn`` does both in C++, but scans query by query below
    ``distance_compute_blas_threshold``; FAISS's heaps take each block without the per-row
    sort numpy would need.
    """
    nq = search.queries.shape[0]
    rows = max(_BLOCK_ROWS, _BLOCK_VALUES // nq) if wide else _BLOCK_ROWS
    return _scan_chunks(search, rows, itertools.count(), blas=True)


# -- candidate rerank --------------------------------------------------------------------------


def rerank(
    vectors: NDArray[np.float32],
    queries: NDArray[np.float32],
    candidates: NDArray[np.int64],
    k: int,
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """Exact top-k among each query's candidate rows (``-1`` ends a row's candidates).

    FAISS's ``knn_inner_products_by_idx`` reads the candidate rows in place (no gathered copy)
    and runs queries in parallel; a memory-mapped ``vectors`` is read only where needed.
    """
    faiss = load_faiss()
    nq, width = candidates.shape
    k_out = min(k, width)
    cand = np.ascontiguousarray(candidates, dtype=np.int64)
    query = np.ascontiguousarray(queries, dtype=np.float32)
    scores = np.empty((nq, k_out), dtype=np.float32)
    labels = np.empty((nq, k_out), dtype=np.int64)
    if nq and width:
        faiss.knn_inner_products_by_idx(
            faiss.swig_ptr(query),
            faiss.swig_ptr(vectors),
            faiss.swig_ptr(cand),
            vectors.shape[1],
            nq,
            vectors.shape[0],
            width,
            k_out,
            faiss.swig_ptr(scores),
            faiss.swig_ptr(labels),
            width,  # the ids' row stride; -1 is misread by some FAISS versions
        )
    missing = labels < 0
    scores[missing] = -np.inf
    return scores, np.where(missing, -1, labels).astype(np.intp)
