"""Exact k-nearest-neighbour kernels of the local stores: numpy's BLAS (GEMV for one query, GEMM
over blocks for a batch), FAISS's heaps and candidate rerank, and the small thread pool that
splits the top-k selection.

Every kernel scores with inner products, so callers pass unit rows (or per-row inverse norms)
to get cosines. FAISS is imported on first use of a kernel that needs it, never at import.
"""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

from mmembed._threads import worker_pool
from mmembed.errors import MissingDependencyError

__all__ = ["faiss_knn", "load_faiss", "numpy_knn", "rerank", "top_k"]

# database rows per GEMM block in numpy batch search: keeps the score block ~256 MB at 1000 queries
_BLOCK_ROWS = 65536


def top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the ``k`` largest scores, best first."""
    if k >= scores.shape[0]:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(scores, scores.shape[0] - k)[-k:]
    return part[np.argsort(-scores[part], kind="stable")]


_POOL: ThreadPoolExecutor | None = None
_POOL_GUARD = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_GUARD:
        if _POOL is None:
            _POOL = worker_pool(2, "mmembed-topk")
        return _POOL


# scores per GEMM block in batch search (64 MB): large enough for full BLAS speed, small enough
# that the heaps read the block back while much of it is still in cache (measured ~20 % faster
# than 256 MB blocks for the 256-d funnel pass)
_BLOCK_VALUES = 1 << 24

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


def faiss_knn(
    queries: NDArray[np.float32], matrix: NDArray[np.float32], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact inner-product top-k of a query batch: numpy's GEMM over blocks of the database,
    FAISS's multi-threaded heaps for the selection.

    The split is deliberate. ``faiss.knn`` does both in C++, but FAISS wheels bundle an older
    OpenBLAS that falls back to a generic kernel on CPUs it does not know (Zen 4 among them)
    and scans query by query below ``distance_compute_blas_threshold``; numpy's BLAS is current.
    FAISS's heaps take each block without the per-row sort numpy would need.
    """
    faiss = load_faiss()
    nq, n = queries.shape[0], matrix.shape[0]
    k = min(k, n)
    scores = np.empty((nq, k), dtype=np.float32)
    labels = np.empty((nq, k), dtype=np.int64)
    heaps = faiss.float_minheap_array_t()  # a min-heap per query keeps the k largest
    heaps.k, heaps.nh = k, nq
    heaps.val, heaps.ids = faiss.swig_ptr(scores), faiss.swig_ptr(labels)
    heaps.heapify()
    query = np.ascontiguousarray(queries, dtype=np.float32)
    rows = max(1024, _BLOCK_VALUES // max(nq, 1))
    # one buffer for every block: the short last block is its contiguous head, not a fresh
    # allocation (first-touch page faults cost more than the GEMM of a small block)
    buffer = np.empty(nq * min(n, rows), dtype=np.float32)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        out = buffer[: nq * (stop - start)].reshape(nq, stop - start)
        np.matmul(query, matrix[start:stop].T, out=out)
        heaps.addn(stop - start, faiss.swig_ptr(out), start, 0, nq)
    heaps.reorder()
    return scores, labels


def numpy_knn(
    queries: NDArray[np.float32],
    matrix: NDArray[np.float32],
    inverse: NDArray[np.float32] | None,
    k: int,
    allowed: NDArray[np.intp] | None,
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """Exact top-k of ``queries @ matrix.T`` (scaled per row by ``inverse``), rows restricted to
    ``allowed`` when given. Returns scores and row numbers, ``-1`` where fewer than ``k`` exist."""
    nq, n = queries.shape[0], matrix.shape[0]
    if nq == 1:
        # one GEMV streams the matrix once; numpy's BLAS beats FAISS's scan here
        scores = _gemv(matrix, queries[0])
        if inverse is not None:
            scores *= inverse
        if allowed is not None:
            subset = scores[allowed]
            order = top_k(subset, k)
            return subset[order][None, :], allowed[order][None, :]
        order = top_k(scores, k)
        return scores[order][None, :], order[None, :]
    if inverse is None:
        # plain cosines: numpy's GEMM and FAISS's heaps (about twice as fast as argpartition)
        subset = matrix if allowed is None else matrix[allowed]
        width = min(k, subset.shape[0])
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        rows = np.full((nq, k), -1, dtype=np.intp)
        if width:
            found, labels = faiss_knn(queries, subset, width)
            scores[:, :width] = found
            if allowed is not None:
                labels = np.where(labels >= 0, allowed[np.maximum(labels, 0)], -1)
            rows[:, :width] = labels
        rows[~np.isfinite(scores)] = -1
        return scores, rows
    mask = None
    if allowed is not None:
        mask = np.zeros(n, dtype=bool)
        mask[allowed] = True
    best_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    best_rows = np.full((nq, k), -1, dtype=np.intp)
    block = np.empty((nq, min(n, _BLOCK_ROWS)), dtype=np.float32)
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(n, start + _BLOCK_ROWS)
        out = block[:, : stop - start]
        np.matmul(queries, matrix[start:stop].T, out=out)
        if inverse is not None:
            out *= inverse[start:stop]
        if mask is not None:
            out[:, ~mask[start:stop]] = -np.inf
        _merge_block(out, start, k, best_scores, best_rows)
    best_rows[~np.isfinite(best_scores)] = -1
    return best_scores, best_rows


def _gemv(matrix: NDArray[np.float32], query: NDArray[np.float32]) -> NDArray[np.float32]:
    """``matrix @ query`` as one BLAS call (numpy's OpenBLAS already uses every core for it;
    splitting it over Python threads measured slower on a busy two-core machine)."""
    out = np.empty(matrix.shape[0], dtype=np.float32)
    np.dot(matrix, query, out=out)
    return out


def _merge_block(
    block: NDArray[np.float32],
    offset: int,
    k: int,
    best_scores: NDArray[np.float32],
    best_rows: NDArray[np.intp],
) -> None:
    """Fold one score block into the running top-k, in two threads over query halves
    (argpartition runs on one core and costs as much as the GEMM that made the block)."""
    nq = block.shape[0]

    def work(lo: int, hi: int) -> None:
        part = block[lo:hi]
        width = part.shape[1]
        if k < width:
            idx = np.argpartition(part, width - k, axis=1)[:, -k:]
        else:
            idx = np.broadcast_to(np.arange(width), (hi - lo, width))
        cand_scores = np.concatenate(
            [best_scores[lo:hi], np.take_along_axis(part, idx, axis=1)], axis=1
        )
        cand_rows = np.concatenate([best_rows[lo:hi], idx + offset], axis=1)
        order = np.argsort(-cand_scores, axis=1, kind="stable")[:, :k]
        best_scores[lo:hi] = np.take_along_axis(cand_scores, order, axis=1)
        best_rows[lo:hi] = np.take_along_axis(cand_rows, order, axis=1)

    if nq < 64:
        work(0, nq)
        return
    half = nq // 2
    futures = [_pool().submit(work, 0, half), _pool().submit(work, half, nq)]
    for future in futures:
        future.result()


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
