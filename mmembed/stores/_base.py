"""What every local store shares: ids, metadata, the full vectors, filters, locking, persistence.

Rows live in one contiguous float32 block (unit rows, in insertion order with swap-on-delete), so
exact search is one BLAS call over a single array. Subclasses add kernels or an index on top.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed.errors import (
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    MissingDependencyError,
)
from mmembed.protocols import Hit
from mmembed.stores import _persist

__all__ = ["ArrayStore", "Record"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_VECTORS = "vectors.npy"
_RECORDS = "records.json"
# database rows per GEMM block in numpy batch search: keeps the score block ~256 MB at 1000 queries
_BLOCK_ROWS = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One stored item: its id, its (unit-length) vector and its metadata."""

    id: str
    vector: NDArray[np.float32] = field(repr=False)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


class _RWLock:
    """Many readers or one writer; writers go first so a stream of searches cannot starve them.

    FAISS indexes crash when one thread adds while another searches, and numpy buffers are
    reallocated on growth, so every mutation takes the write side.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


# ---------------------------------------------------------------------------------------------
# validation helpers


def check_dimensions(dimensions: object, *, what: str = "dimensions") -> int:
    """Return ``dimensions`` as an int or raise :class:`ConfigurationError`."""
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise ConfigurationError(f"{what} must be an int, got {type(dimensions).__name__}")
    if dimensions < 1:
        raise ConfigurationError(f"{what} must be at least 1, got {dimensions}")
    return int(dimensions)


def _clean_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(
                f"metadata {where} is {value}, which JSON cannot store; use None or a string"
            )
        return value
    if isinstance(value, (list, tuple)):
        return [_clean_value(item, where) for item in value]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigurationError(f"metadata {where} has a non-string key {key!r}")
            out[key] = _clean_value(item, where)
        return out
    raise ConfigurationError(
        f"metadata {where} is a {type(value).__name__}; stores keep JSON values only (str, int, "
        "float, bool, None, and lists or dicts of them): convert it first, e.g. a date to an "
        "ISO string"
    )


def clean_metadata(metadata: Any, item_id: str) -> dict[str, Any]:
    """Validate one item's metadata and return a private JSON-able copy."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ConfigurationError(
            f"metadata for {item_id!r} must be a mapping, got {type(metadata).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"metadata keys must be strings; {item_id!r} has {key!r}")
        out[key] = _clean_value(value, f"{key!r} of {item_id!r}")
    return out


def _same(a: Any, b: Any) -> bool:
    # JSON tells true from 1; Python does not, so compare bools only with bools
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _compile_where(where: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    if not isinstance(where, Mapping):
        raise ConfigurationError(
            f"where must be a mapping of metadata keys to values, got {type(where).__name__}"
        )
    terms = []
    for key, wanted in where.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"where keys must be strings, got {key!r}")
        options = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        terms.append((key, [_clean_value(option, f"filter {key!r}") for option in options]))
    return terms


_MISSING = object()


def _matches(metadata: Mapping[str, Any], terms: list[tuple[str, list[Any]]]) -> bool:
    for key, options in terms:
        value = metadata.get(key, _MISSING)
        if value is _MISSING or not any(_same(value, option) for option in options):
            return False
    return True


def top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the ``k`` largest scores, best first."""
    if k >= scores.shape[0]:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(scores, scores.shape[0] - k)[-k:]
    return part[np.argsort(-scores[part], kind="stable")]


def as_slice(rows: NDArray[np.intp]) -> NDArray[np.intp] | slice:
    """``rows`` as a slice when they are consecutive and ascending (as the rows of new ids are):
    slicing copies blocks of rows, where a fancy index moves them one by one."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _normalize_rows(matrix: NDArray[np.float32]) -> NDArray[np.float32]:
    """Unit rows, in place; zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    norms[norms == 0] = 1.0
    matrix /= norms[:, None]
    return matrix


# ---------------------------------------------------------------------------------------------


class ArrayStore:
    """Shared machinery of the local stores; not used directly."""

    _KIND: ClassVar[str] = "ArrayStore"

    def __init__(self, dimensions: int) -> None:
        self._dimensions = check_dimensions(dimensions)
        self._buffer: NDArray[np.float32] = np.empty((0, self._dimensions), dtype=np.float32)
        self._n = 0
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._metadata: list[dict[str, Any]] = []
        self._lock = _RWLock()
        self._version = 0
        self._prefix_norms: dict[int, tuple[int, NDArray[np.float32]]] = {}
        self._filter_cache: dict[tuple[int, str], NDArray[np.intp]] = {}
        self._cache_lock = threading.Lock()  # readers share the caches
        self._saved_at: tuple[Path, int] | None = None

    # -- read-only views -----------------------------------------------------------------------

    @property
    def dimensions(self) -> int:
        """The width of every stored vector."""
        return self._dimensions

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def __iter__(self) -> Iterator[str]:
        """The stored ids (a snapshot, in storage order)."""
        with self._lock.read():
            return iter(list(self._ids))

    @property
    def vectors(self) -> NDArray[np.float32]:
        """The stored unit vectors, row ``i`` for the ``i``-th id of ``iter(store)``.

        A read-only view, not a copy: take ``.copy()`` before changing the store.
        """
        view = self._buffer[: self._n]
        view.flags.writeable = False
        return view

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records of those ``ids`` that are stored, in the order asked; unknown ids are
        skipped."""
        if isinstance(ids, str):
            raise ConfigurationError("get takes a list of ids; wrap a single id as [id]")
        with self._lock.read():
            out = []
            for item_id in ids:
                row = self._rows.get(item_id)
                if row is not None:
                    out.append(
                        Record(
                            id=item_id,
                            vector=self._buffer[row].copy(),
                            metadata=MappingProxyType(dict(self._metadata[row])),
                        )
                    )
            return out

    # -- mutation ------------------------------------------------------------------------------

    def add(
        self,
        ids: Sequence[str],
        vectors: ArrayLike,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Insert or replace vectors (stored L2-normalised) and their metadata under ``ids``.

        An id given twice in one call keeps its last vector. Metadata values must be JSON-able.

        Raises:
            DimensionMismatchError: the vectors are not ``dimensions`` wide.
            ConfigurationError: counts differ, values are not finite, or metadata is not JSON.
        """
        if isinstance(ids, str):
            raise ConfigurationError("ids must be a list of strings; wrap a single id as [id]")
        ids = list(ids)
        for item_id in ids:
            if not isinstance(item_id, str):
                raise ConfigurationError(f"ids must be strings, got {type(item_id).__name__}")
        matrix = np.asarray(vectors, dtype=np.float32)  # read only: never the caller's to change
        if matrix.ndim == 1 and len(ids) == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or (matrix.shape[0] == 0 and not ids):
            if not ids and matrix.size == 0:
                return
            raise ConfigurationError(f"vectors must be a 2-D array, got shape {matrix.shape}")
        if matrix.shape[1] != self._dimensions:
            raise DimensionMismatchError(
                f"this store holds {self._dimensions}-dimensional vectors, got "
                f"{matrix.shape[1]}; use an embedder with dimensions={self._dimensions} or "
                "truncate the vectors (mmembed.truncate)"
            )
        if matrix.shape[0] != len(ids):
            raise ConfigurationError(f"got {len(ids)} ids but {matrix.shape[0]} vectors")
        # a NaN or an infinity anywhere in a row makes its squared norm NaN or infinite
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        if not np.isfinite(norms).all():
            raise ConfigurationError("vectors contain NaN or infinity; check the embedder output")
        norms[norms == 0] = 1.0  # zero rows stay zero
        if metadata is not None:
            metadata = list(metadata)
            if len(metadata) != len(ids):
                raise ConfigurationError(f"got {len(ids)} ids but {len(metadata)} metadata entries")
        cleaned = [
            clean_metadata(metadata[i] if metadata is not None else None, item_id)
            for i, item_id in enumerate(ids)
        ]
        if not ids:
            return
        # last occurrence wins, as in a dict update
        last = {item_id: i for i, item_id in enumerate(ids)}
        if len(last) != len(ids):
            keep = sorted(last.values())
            ids = [ids[i] for i in keep]
            cleaned = [cleaned[i] for i in keep]
            matrix, norms = matrix[keep], norms[keep]
        with self._lock.write():
            self._make_writable(self._n + len(ids))
            rows = np.empty(len(ids), dtype=np.intp)
            replaced = []
            for i, item_id in enumerate(ids):
                row = self._rows.get(item_id)
                if row is None:
                    row = self._n
                    self._n += 1
                    self._rows[item_id] = row
                    self._ids.append(item_id)
                    self._metadata.append(cleaned[i])
                else:
                    replaced.append(row)
                    self._metadata[row] = cleaned[i]
                rows[i] = row
            where = as_slice(rows)
            if isinstance(where, slice):
                np.divide(matrix, norms[:, None], out=self._buffer[where])
            else:
                self._buffer[where] = matrix / norms[:, None]
            self._version += 1
            self._on_add(rows, np.asarray(replaced, dtype=np.intp))
            self._after_change()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ``ids``; unknown ids are ignored. Returns how many were removed."""
        if isinstance(ids, str):
            raise ConfigurationError("ids must be a list of strings; wrap a single id as [id]")
        removed = 0
        with self._lock.write():
            for item_id in ids:
                key: object = item_id  # callers may pass anything; only strings are ids
                row = self._rows.pop(key, None) if isinstance(key, str) else None
                if row is None:
                    continue
                self._make_writable(self._n)
                self._on_delete(row)
                last = self._n - 1
                if row != last:
                    self._buffer[row] = self._buffer[last]
                    moved = self._ids[last]
                    self._ids[row] = moved
                    self._metadata[row] = self._metadata[last]
                    self._rows[moved] = row
                    self._on_move(last, row)
                self._ids.pop()
                self._metadata.pop()
                self._n -= 1
                removed += 1
            if removed:
                self._version += 1
                self._after_change()
        return removed

    def _make_writable(self, needed: int) -> None:
        """Grow the buffer to ``needed`` rows (doubling) and copy a memory-mapped one into RAM."""
        buffer = self._buffer
        in_ram = type(buffer) is np.ndarray and buffer.flags.writeable
        if buffer.shape[0] >= needed and in_ram:
            return
        if buffer.shape[0] >= needed:
            capacity = buffer.shape[0]
        else:
            capacity = max(needed, 2 * buffer.shape[0], 1024)
        grown = np.empty((capacity, self._dimensions), dtype=np.float32)
        grown[: self._n] = buffer[: self._n]
        self._buffer = grown

    # hooks for subclasses; called under the write lock
    def _on_add(self, rows: NDArray[np.intp], replaced: NDArray[np.intp]) -> None:
        """Rows were written (new or replaced ones)."""

    def _on_delete(self, row: int) -> None:
        """``row`` is about to be removed."""

    def _on_move(self, src: int, dst: int) -> None:
        """Row ``src`` (the last one) was moved to ``dst``."""

    def _after_change(self) -> None:
        """An add or delete finished (still under the write lock)."""

    # -- search --------------------------------------------------------------------------------

    def search(
        self,
        query: ArrayLike,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        dimensions: int | None = None,
    ) -> list[Hit]:
        """The ``k`` stored vectors most similar to ``query`` that match ``where``.

        Args:
            query: one vector (any length > 0; it is normalised), ``dimensions`` wide or the
                store's full width.
            k: how many hits at most.
            where: metadata filter applied before ranking: ``{"key": value}`` for equality,
                ``{"key": [a, b]}`` for any of them; all keys must match.
            dimensions: search at this Matryoshka prefix of the stored vectors (each prefix
                renormalised), e.g. 256 of 3072, without re-embedding.

        Returns:
            Hits by descending cosine similarity (at the prefix, when ``dimensions`` is given).
        """
        queries = self._prepare_queries(query, dimensions, single=True)
        return self._search(queries, k, where, dimensions)[0]

    def search_batch(
        self,
        queries: ArrayLike,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        dimensions: int | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for each row of a 2-D ``queries`` array, in one pass (much faster)."""
        prepared = self._prepare_queries(queries, dimensions, single=False)
        return self._search(prepared, k, where, dimensions)

    def _search(
        self,
        queries: NDArray[np.float32],
        k: int,
        where: Mapping[str, Any] | None,
        dimensions: int | None,
    ) -> list[list[Hit]]:
        given: object = k
        if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or given < 1:
            raise ConfigurationError(f"k must be a positive int, got {k!r}")
        terms = _compile_where(where) if where else None
        if dimensions is not None and dimensions == self._dimensions:
            dimensions = None
        with self._lock.read():
            if self._n == 0 or queries.shape[0] == 0:
                return [[] for _ in range(queries.shape[0])]
            allowed: NDArray[np.intp] | None = None
            if terms is not None:
                allowed = self._matching_rows(terms)
                if allowed.size == 0:
                    return [[] for _ in range(queries.shape[0])]
            k = min(int(k), self._n if allowed is None else int(allowed.size))
            scores, rows = self._knn(queries, k, allowed, dimensions)
            return [self._hits(scores[i], rows[i]) for i in range(queries.shape[0])]

    def _matching_rows(self, terms: list[tuple[str, list[Any]]]) -> NDArray[np.intp]:
        """Rows whose metadata match ``terms``; the last few answers are kept until a change,
        since applications tend to repeat the same filter."""
        key = (self._version, repr(terms))
        with self._cache_lock:
            cached = self._filter_cache.get(key)
        if cached is not None:
            return cached
        rows = np.fromiter(
            (i for i, meta in enumerate(self._metadata) if _matches(meta, terms)), dtype=np.intp
        )
        rows.flags.writeable = False
        with self._cache_lock:
            while len(self._filter_cache) >= 16:
                self._filter_cache.pop(next(iter(self._filter_cache)))
            self._filter_cache[key] = rows
        return rows

    def _hits(self, scores: NDArray[np.float32], rows: NDArray[np.intp]) -> list[Hit]:
        hits = []
        for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
            if row < 0:
                continue
            hits.append(
                Hit(
                    id=self._ids[row],
                    score=min(1.0, max(-1.0, score)),
                    metadata=MappingProxyType(self._metadata[row]),
                )
            )
        return hits

    def _prepare_queries(
        self, query: ArrayLike, dimensions: int | None, *, single: bool
    ) -> NDArray[np.float32]:
        width = self._dimensions
        if dimensions is not None:
            dimensions = check_dimensions(dimensions)
            if dimensions > width:
                raise ConfigurationError(
                    f"cannot search {width}-dimensional vectors at {dimensions} dimensions; "
                    f"a Matryoshka prefix must be at most {width}"
                )
        matrix = np.array(query, dtype=np.float32, copy=True)
        if single:
            if matrix.ndim == 2 and matrix.shape[0] == 1:
                matrix = matrix[0]
            if matrix.ndim != 1:
                raise ConfigurationError(
                    f"search takes one query vector, got shape {matrix.shape}; use "
                    "search_batch for several queries"
                )
            matrix = matrix[None, :]
        elif matrix.ndim != 2:
            raise ConfigurationError(
                f"search_batch takes a 2-D array of queries, got shape {matrix.shape}"
            )
        target = dimensions or width
        if matrix.shape[1] not in (width, target):
            raise DimensionMismatchError(
                f"query has {matrix.shape[1]} dimensions but the store holds {width}"
                + (f" (searching at {target})" if dimensions else "")
                + "; embed the query with the same dimensions as the stored vectors"
            )
        if not np.isfinite(matrix).all():
            raise ConfigurationError("query contains NaN or infinity")
        matrix = np.ascontiguousarray(matrix[:, :target])
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        if matrix.shape[0] and not (norms > 0).all():
            raise ConfigurationError(
                "a query vector is all zeros, so it has no direction to compare; embed a "
                "non-empty query"
            )
        if matrix.shape[0]:
            matrix /= norms[:, None]
        return matrix

    # -- exact kernels (numpy); subclasses override _knn to pick others -----------------------

    def _prefix_inverse_norms(self, dimensions: int) -> NDArray[np.float32]:
        """1 / ‖row[:dimensions]‖ for every row (0 for zero prefixes), cached per version."""
        cached = self._prefix_norms.get(dimensions)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        prefix = self._buffer[: self._n, :dimensions]
        norms = np.sqrt(np.einsum("ij,ij->i", prefix, prefix))
        inverse: NDArray[np.float32] = np.zeros(norms.shape, dtype=np.float32)
        np.divide(1.0, norms, out=inverse, where=norms > 0)
        self._prefix_norms[dimensions] = (self._version, inverse)
        return inverse

    def _knn(
        self,
        queries: NDArray[np.float32],
        k: int,
        allowed: NDArray[np.intp] | None,
        dimensions: int | None,
    ) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
        return self._exact_knn(queries, k, allowed, dimensions)

    def _exact_knn(
        self,
        queries: NDArray[np.float32],
        k: int,
        allowed: NDArray[np.intp] | None,
        dimensions: int | None,
    ) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
        """Exact top-k by cosine (at a prefix when ``dimensions`` is set)."""
        matrix = self._buffer[: self._n]
        inverse = None
        if dimensions is not None:
            matrix = matrix[:, :dimensions]
            inverse = self._prefix_inverse_norms(dimensions)
        if allowed is not None and allowed.size < self._n // 4:
            # few rows match: gather them rather than score everything
            matrix = matrix[allowed]
            if inverse is not None:
                inverse = inverse[allowed]
            scores, local = _numpy_knn(queries, matrix, inverse, k, None)
            return scores, np.where(local >= 0, allowed[np.maximum(local, 0)], -1)
        return _numpy_knn(queries, matrix, inverse, k, allowed)

    # -- Matryoshka shrink ---------------------------------------------------------------------

    def shrink(self, dimensions: int) -> Self:
        """A new store holding the renormalised ``dimensions``-prefix of every vector, with the
        same ids and metadata: a smaller, faster store without re-embedding anything."""
        dimensions = check_dimensions(dimensions)
        if dimensions > self._dimensions:
            raise ConfigurationError(
                f"cannot shrink {self._dimensions}-dimensional vectors to {dimensions}; a "
                f"Matryoshka prefix must be at most {self._dimensions}"
            )
        new = self._empty_like(dimensions)
        with self._lock.read():
            ids = list(self._ids)
            metadata = [dict(m) for m in self._metadata]
            prefix = np.array(self._buffer[: self._n, :dimensions], dtype=np.float32)
        new.add(ids, prefix, metadata)
        return new

    def _empty_like(self, dimensions: int) -> Self:
        return type(self)(dimensions)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Save the store to the directory ``path`` atomically (a crash keeps the old or the new
        state). Searches may continue meanwhile; changes wait until the save is done.

        Args:
            path: the store directory; created if missing, a new generation if it exists.
            force: save even if another writer committed to ``path`` since this store was
                loaded from or saved to it (their changes are then replaced by this state).

        Raises:
            StoreError: another process is saving there right now, the store on disk changed
                since this one was loaded from it (and ``force`` is false), or the disk refused
                the write.
        """
        root = Path(path).resolve()
        with self._lock.read():
            expected = None
            if not force and self._saved_at is not None and self._saved_at[0] == root:
                expected = self._saved_at[1]
            n = self._n
            records = {"ids": list(self._ids), "metadata": self._metadata}
            vectors = self._buffer[:n]

            def write_vectors(target: Path) -> None:
                with open(target, "wb") as fh:
                    _persist.write_npy(fh, vectors)

            def write_records(target: Path) -> None:
                with open(target, "wb") as fh:
                    _persist.write_json(fh, records)

            files = {_VECTORS: write_vectors, _RECORDS: write_records, **self._extra_files()}
            info = {"count": n, "dimensions": self._dimensions, **self._settings()}
            number = _persist.write_generation(
                root, kind=self._KIND, files=files, info=info, expected_generation=expected
            )
            self._saved_at = (root, number)

    def _extra_files(self) -> dict[str, _persist.Writer]:
        return {}

    def _settings(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _read_saved(
        cls, generation: _persist.Generation, *, mmap: bool
    ) -> tuple[NDArray[np.float32], list[str], list[dict[str, Any]]]:
        root = generation.directory.parent
        info = generation.info
        count, dimensions = info.get("count"), info.get("dimensions")
        if not isinstance(count, int) or not isinstance(dimensions, int) or dimensions < 1:
            raise CorruptStoreError(f"the manifest of {root} lacks a valid count and dimensions")
        records = generation.load_json(_RECORDS)
        if not isinstance(records, dict):
            raise CorruptStoreError(f"{_RECORDS} in {root} is not an object")
        ids, metadata = records.get("ids"), records.get("metadata")
        if (
            not isinstance(ids, list)
            or not isinstance(metadata, list)
            or len(ids) != count
            or len(metadata) != count
            or not all(isinstance(i, str) for i in ids)
            or not all(isinstance(m, dict) for m in metadata)
            or len(set(ids)) != count
        ):
            raise CorruptStoreError(
                f"{_RECORDS} in {root} does not hold {count} unique ids with metadata; the store "
                "is inconsistent"
            )
        vectors = generation.load_npy(
            _VECTORS, dtype=np.float32, shape=(count, dimensions), mmap=mmap
        )
        return vectors, ids, metadata

    def _restore(
        self,
        generation: _persist.Generation,
        vectors: NDArray[np.float32],
        ids: list[str],
        metadata: list[dict[str, Any]],
    ) -> None:
        """Fill a freshly constructed store from verified saved state."""
        self._buffer = vectors
        self._n = len(ids)
        self._ids = ids
        self._rows = {item_id: i for i, item_id in enumerate(ids)}
        self._metadata = metadata
        self._version += 1
        self._saved_at = (generation.directory.parent, generation.number)


# ---------------------------------------------------------------------------------------------
# numpy exact search


_POOL: ThreadPoolExecutor | None = None
_POOL_GUARD = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_GUARD:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mmembed-topk")
        return _POOL


# scores per GEMM block in batch search (64 MB): large enough for full BLAS speed, small enough
# that the heaps read the block back while much of it is still in cache (measured ~20 % faster
# than 256 MB blocks for the 256-d funnel pass)
_BLOCK_VALUES = 1 << 24

_faiss_module: ModuleType | None = None


def _faiss() -> ModuleType:
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


def _faiss_knn(
    queries: NDArray[np.float32], matrix: NDArray[np.float32], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact inner-product top-k of a query batch: numpy's GEMM over blocks of the database,
    FAISS's multi-threaded heaps for the selection.

    The split is deliberate. ``faiss.knn`` does both in C++, but FAISS wheels bundle an older
    OpenBLAS that falls back to a generic kernel on CPUs it does not know (Zen 4 among them)
    and scans query by query below ``distance_compute_blas_threshold``; numpy's BLAS is current.
    FAISS's heaps take each block without the per-row sort numpy would need.
    """
    faiss = _faiss()
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


def _numpy_knn(
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
            found, labels = _faiss_knn(queries, subset, width)
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
