"""What the local stores share on top of their row table: search, Matryoshka prefixes, specs,
and saving and loading through :mod:`mmembed.stores._persist`.

The pieces live in modules of their own: :mod:`~mmembed.stores._validate` (every check of what a
store is given), :mod:`~mmembed.stores._api` (``search`` and ``search_batch``, for every store,
Qdrant included), :mod:`~mmembed.stores._table` (ids, rows, vectors, metadata),
:mod:`~mmembed.stores._filters` (``where``), :mod:`~mmembed.stores._kernels` (exact k-NN) and
:mod:`~mmembed.stores._persist` (the on-disk format).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from mmembed.errors import ConfigurationError, CorruptStoreError
from mmembed.matryoshka import _row_norms
from mmembed.protocols import Hit
from mmembed.stores import _persist
from mmembed.stores._api import StoreMethods
from mmembed.stores._filters import FilterCache
from mmembed.stores._kernels import knn
from mmembed.stores._table import Record, RowTable
from mmembed.stores._validate import Terms, check_spec

__all__ = ["ArrayStore", "Record"]

_VECTORS = "vectors.npy"
_RECORDS = "records.json"
# how far a saved row's norm may stray from 1 (float32 rounding is ~1e-7)
_UNIT_TOLERANCE = 1e-3


class ArrayStore(StoreMethods, RowTable):
    """Shared machinery of the local stores; not used directly."""

    #: The class name recorded in saved manifests (``load`` checks it).
    _KIND: ClassVar[str] = "ArrayStore"
    #: The registry kind of :meth:`to_spec` (see :mod:`mmembed.registry`).
    _SPEC_KIND: ClassVar[str] = ""
    #: Constructor options a spec may carry besides ``dimensions``.
    _OPTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, dimensions: int) -> None:
        super().__init__(dimensions)
        self._prefix_norms: dict[int, tuple[int, NDArray[np.float32]]] = {}
        self._filters = FilterCache()
        self._saved_at: tuple[Path, int] | None = None

    # -- specs ---------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """What this store is, as a plain dict: ``{"kind": ..., "dimensions": ..., options}``.

        :meth:`from_spec` builds an empty store of the same configuration from it (the stored
        vectors are not part of it: :meth:`save` them).
        """
        return {"kind": self._SPEC_KIND, "dimensions": self._dimensions, **self._options()}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """An empty store of the configuration :meth:`to_spec` describes.

        Raises:
            ConfigurationError: the spec is of another kind, lacks ``dimensions``, has keys this
                store does not know, or holds invalid values.
        """
        options = check_spec(spec, kind=cls._SPEC_KIND, keys=cls._OPTIONS)
        del options["kind"]
        return cls(options.pop("dimensions"), **options)

    def _options(self) -> dict[str, Any]:
        """The constructor options besides ``dimensions`` (keys of :attr:`_OPTIONS`)."""
        return {}

    # -- search (search and search_batch: StoreMethods) ----------------------------------------

    def _search(
        self, queries: NDArray[np.float32], k: int, terms: Terms | None, prefix: int | None
    ) -> list[list[Hit]]:
        with self._lock.read():
            if self._n == 0 or queries.shape[0] == 0:
                return [[] for _ in range(queries.shape[0])]
            allowed: NDArray[np.intp] | None = None
            if terms is not None:
                allowed = self._filters.rows(self._version, terms, self._metadata)
                if allowed.size == 0:
                    return [[] for _ in range(queries.shape[0])]
            k = min(k, self._n if allowed is None else int(allowed.size))
            scores, rows = self._knn(queries, k, allowed, prefix)
            return [self._hits(scores[i], rows[i]) for i in range(queries.shape[0])]

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

    # -- exact search --------------------------------------------------------------------------

    def _prefix_inverse_norms(self, dimensions: int) -> NDArray[np.float32]:
        """1 / ‖row[:dimensions]‖ for every row (0 for zero prefixes), cached per version."""
        cached = self._prefix_norms.get(dimensions)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        norms = _row_norms(self._buffer[: self._n, :dimensions])
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
        """Exact top-k by cosine (at a prefix when ``dimensions`` is set); subclasses override
        it to pick other kernels, and call it for exact answers."""
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
            scores, local = knn(queries, matrix, k, inverse=inverse)
            return scores, np.where(local >= 0, allowed[np.maximum(local, 0)], -1)
        return knn(queries, matrix, k, inverse=inverse, allowed=allowed)

    # -- Matryoshka shrink ---------------------------------------------------------------------

    def shrink(self, dimensions: int) -> Self:
        """A new store holding the renormalised ``dimensions``-prefix of every vector, with the
        same ids and metadata: a smaller, faster store without re-embedding anything."""
        dimensions = self._prefix_width(dimensions)
        new = self._empty_like(dimensions)
        with self._lock.read():
            ids = list(self._ids)
            metadata = [dict(m) for m in self._metadata]
            prefix = np.array(self._buffer[: self._n, :dimensions], dtype=np.float32)
        new.add(ids, prefix, metadata)
        return new

    def _empty_like(self, dimensions: int) -> Self:
        return self.from_spec({**self.to_spec(), "dimensions": dimensions})

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
                since this one was loaded from it (and ``force`` is false), the disk refused
                the write, or a file of the store directory (its ``LOCK``) is a symlink.
        """
        root = Path(path).resolve()
        with self._lock.read():
            expected = None
            if not force and self._saved_at is not None and self._saved_at[0] == root:
                expected = self._saved_at[1]
            n = self._n
            records = {"ids": list(self._ids), "metadata": self._metadata}
            vectors = self._buffer[:n]

            def write_vectors(fh: BinaryIO) -> None:
                _persist.write_npy(fh, vectors)

            def write_records(fh: BinaryIO) -> None:
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
        """What the manifest records besides count and dimensions."""
        return self._options()

    @classmethod
    def _saved_options(cls, generation: _persist.Generation) -> dict[str, Any]:
        """The constructor options a manifest records, checked (they name no code)."""
        return {}

    @classmethod
    def _load_saved(
        cls, path: str | Path, *, mmap: bool | None
    ) -> tuple[Self, _persist.Generation]:
        """A store filled from the verified current generation at ``path``, and that generation.

        ``mmap=None`` memory-maps the vectors when :meth:`_mmap_by_default` says so.
        """
        generation = _persist.read_generation(Path(path).resolve(), kind=cls._KIND)
        options = cls._saved_options(generation)
        if mmap is None:
            mmap = cls._mmap_by_default(options)
        vectors, ids, metadata = cls._read_saved(generation, mmap=mmap)
        try:
            store = cls(vectors.shape[1], **options)
        except ConfigurationError as exc:
            raise CorruptStoreError(
                f"the settings saved in {generation.directory} are invalid: {exc}"
            ) from exc
        store._restore(generation, vectors, ids, metadata)
        return store, generation

    @classmethod
    def _mmap_by_default(cls, options: Mapping[str, Any]) -> bool:
        return False

    @classmethod
    def _read_saved(
        cls, generation: _persist.Generation, *, mmap: bool
    ) -> tuple[NDArray[np.float32], list[str], list[dict[str, Any]]]:
        root = generation.directory.parent
        info = generation.info
        count, dimensions = info.get("count"), info.get("dimensions")
        if (
            not isinstance(count, int)
            or not isinstance(dimensions, int)
            or isinstance(count, bool)
            or isinstance(dimensions, bool)
            or count < 0
            or dimensions < 1
        ):
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
        norms = _row_norms(vectors)
        if not ((np.abs(norms - 1) <= _UNIT_TOLERANCE) | (norms == 0)).all():
            raise CorruptStoreError(
                f"{generation.path(_VECTORS)} holds rows that are not unit vectors (NaN, "
                "infinity, or values mmembed never writes); restore the store from a backup or "
                "rebuild it"
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
