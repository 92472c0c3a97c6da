"""FAISS-backed store: exact or approximate search, and Matryoshka funnel search.

FAISS is imported when a :class:`FaissStore` is first created or loaded, never at
``import mmembed``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from mmembed.errors import ConfigurationError, CorruptStoreError, StoreError
from mmembed.matryoshka import _unit_rows
from mmembed.stores import _persist
from mmembed.stores._base import ArrayStore
from mmembed.stores._kernels import knn, load_faiss, rerank
from mmembed.stores._table import as_slice
from mmembed.stores._validate import check_dimensions, check_positive_int

__all__ = ["FaissStore"]

_INDEX_FILE = "index.faiss"
_LABELS_FILE = "labels.npy"
# rebuild an approximate index once this share of its entries are deleted or replaced
_DEAD_SHARE = 0.5


class FaissStore(ArrayStore):
    """A :class:`~mmembed.protocols.VectorStore` on FAISS, with Matryoshka funnel search.

    The full unit vectors are always kept (in RAM, or memory-mapped after :meth:`load`), so
    scores are exact cosine similarities on the same scale as :class:`InMemoryStore`, whatever
    the index.

    - ``index="Flat"``: exact search. A single query runs numpy's BLAS GEMV (faster than
      FAISS's scan for one query); batches run numpy's GEMM over blocks with
      FAISS's multi-threaded heaps selecting the top-k.
    - Any other FAISS factory string (``"HNSW32"``, ``"IVF1024,Flat"``, ``"IVF256,SQ8"``, ...):
      an approximate inner-product index whose candidates are rescored exactly. Indexes that need
      training (IVF, SQ, PQ) are trained once ``train_size`` vectors exist; until then search is
      exact. Deletes and replacements are hidden from the index at once and compacted when half
      of its entries are stale.
    - ``funnel_dimensions=d'``: the index (flat or approximate) holds the renormalised
      ``d'``-prefix of every vector; its top ``funnel_candidates`` per query are reranked exactly
      with the full vectors. With Matryoshka embeddings (Gemini: 3072 -> 256) this is several
      times faster than a full flat scan at nearly the same recall.

    Args:
        dimensions: the width of every vector.
        index: a FAISS factory string; the metric is always inner product on unit vectors.
        funnel_dimensions: build the index on this prefix and rerank with full vectors.
        funnel_candidates: shortlist size per query for the rerank (also used as the candidate
            count of approximate indexes without a funnel, when larger than ``k``).
        ef_search: HNSW search breadth (default 128, raised to the shortlist size when needed).
        nprobe: IVF lists probed per query (default: an eighth of the lists, at least 8).
        train_size: vectors needed before training an index that needs it (default: 39 per IVF
            list, else 10,000).

    Raises:
        ConfigurationError: an invalid factory string or option.
    """

    _KIND: ClassVar[str] = "FaissStore"
    _SPEC_KIND: ClassVar[str] = "faiss"
    _OPTIONS: ClassVar[tuple[str, ...]] = (
        "index",
        "funnel_dimensions",
        "funnel_candidates",
        "ef_search",
        "nprobe",
        "train_size",
    )

    def __init__(
        self,
        dimensions: int,
        *,
        index: str = "Flat",
        funnel_dimensions: int | None = None,
        funnel_candidates: int = 200,
        ef_search: int | None = None,
        nprobe: int | None = None,
        train_size: int | None = None,
    ) -> None:
        super().__init__(dimensions)
        spec: object = index
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigurationError(f"index must be a FAISS factory string, got {index!r}")
        self._spec = index.strip()
        if "IDMap" in self._spec:
            raise ConfigurationError(
                f"index {self._spec!r}: FaissStore maps string ids to FAISS ids itself; drop "
                "the IDMap prefix"
            )
        self._flat = self._spec == "Flat"
        if funnel_dimensions is not None:
            funnel_dimensions = check_dimensions(funnel_dimensions, what="funnel_dimensions")
            if funnel_dimensions >= self.dimensions:
                raise ConfigurationError(
                    f"funnel_dimensions ({funnel_dimensions}) must be smaller than dimensions "
                    f"({self.dimensions}); it is the short prefix the first pass searches"
                )
        self._funnel = funnel_dimensions
        self._candidates = check_positive_int(funnel_candidates, "funnel_candidates")
        self._ef_search = None if ef_search is None else check_positive_int(ef_search, "ef_search")
        self._nprobe = None if nprobe is None else check_positive_int(nprobe, "nprobe")
        self._train_size = (
            None if train_size is None else check_positive_int(train_size, "train_size")
        )
        self._index_width = funnel_dimensions or self.dimensions
        # the renormalised prefix rows for a flat funnel, aligned with the vector rows
        self._prefix = np.empty((0, self._index_width), dtype=np.float32)
        # approximate index state: FAISS labels are insertion numbers; rows move on delete
        self._ann: Any = None
        self._row_label = np.empty(0, dtype=np.int64)
        self._label_row = np.empty(0, dtype=np.int64)
        self._dead = 0
        if not self._flat:
            probe = self._new_index()
            self._needs_training = not probe.is_trained
            ivf = load_faiss().try_extract_index_ivf(probe)
            self._nlist = int(ivf.nlist) if ivf is not None else 0
            if self._train_size is None:
                self._train_size = 39 * self._nlist if self._nlist else 10_000
            if not self._needs_training:
                self._ann = probe

    # -- configuration -------------------------------------------------------------------------

    @property
    def index(self) -> str:
        """The FAISS factory string."""
        return self._spec

    @property
    def funnel_dimensions(self) -> int | None:
        """The prefix width of the first search pass, or ``None`` without a funnel."""
        return self._funnel

    @property
    def funnel_candidates(self) -> int:
        """Shortlist size per query reranked with the full vectors."""
        return self._candidates

    @property
    def is_trained(self) -> bool:
        """Whether the approximate index is built (always true for ``Flat``)."""
        return self._flat or self._ann is not None

    def __repr__(self) -> str:
        funnel = f", funnel_dimensions={self._funnel}" if self._funnel else ""
        return (
            f"FaissStore(dimensions={self.dimensions}, index={self._spec!r}{funnel}, "
            f"count={len(self)})"
        )

    def _new_index(self) -> Any:
        faiss = load_faiss()
        try:
            return faiss.index_factory(self._index_width, self._spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "invalid"
            raise ConfigurationError(
                f"FAISS cannot build index {self._spec!r} ({reason}); use a factory string "
                "such as 'Flat', 'HNSW32', 'IVF1024,Flat' or 'IVF256,SQ8'"
            ) from exc

    def _empty_like(self, dimensions: int) -> Self:
        spec = {**self.to_spec(), "dimensions": dimensions}
        if self._funnel is not None and self._funnel >= dimensions:
            spec["funnel_dimensions"] = None  # the whole shrunk vector is shorter than the funnel
        return self.from_spec(spec)

    # -- keeping the index in step (all under the write lock) ----------------------------------

    def _index_vectors(self, rows: NDArray[np.intp] | slice) -> NDArray[np.float32]:
        if isinstance(rows, np.ndarray):
            rows = as_slice(rows)
        if self._funnel is None:
            return np.ascontiguousarray(self._buffer[rows])
        # only the prefix columns are read (a copy: it is renormalised in place)
        return _unit_rows(np.array(self._buffer[rows, : self._funnel], order="C"))

    def _grow(self, array: NDArray[Any], needed: int, fill: float | int) -> NDArray[Any]:
        if array.shape[0] >= needed:
            return array
        grown = np.full(
            (max(needed, 2 * array.shape[0], 1024), *array.shape[1:]), fill, array.dtype
        )
        grown[: array.shape[0]] = array
        return grown

    def _on_add(self, rows: NDArray[np.intp], replaced: NDArray[np.intp]) -> None:
        if self._flat:
            if self._funnel is not None:
                self._prefix = self._grow(self._prefix, self._n, 0.0)
                self._prefix[as_slice(rows)] = self._index_vectors(rows)
            return
        self._row_label = self._grow(self._row_label, self._n, -1)
        for row in replaced.tolist():
            self._forget(row)
        self._row_label[rows] = -1
        if self._ann is None:
            if self._n >= (self._train_size or 0):
                self._rebuild()
            return
        start = int(self._ann.ntotal)
        _checked(self._ann.add, self._index_vectors(rows))
        labels = np.arange(start, start + rows.size, dtype=np.int64)
        self._label_row = self._grow(self._label_row, start + rows.size, -1)
        self._label_row[labels] = rows
        self._row_label[rows] = labels

    def _forget(self, row: int) -> None:
        label = int(self._row_label[row]) if row < self._row_label.shape[0] else -1
        if label >= 0:
            self._label_row[label] = -1
            self._row_label[row] = -1
            self._dead += 1

    def _on_delete(self, row: int) -> None:
        if not self._flat:
            self._forget(row)

    def _on_move(self, src: int, dst: int) -> None:
        if self._flat:
            if self._funnel is not None:
                self._prefix[dst] = self._prefix[src]
            return
        label = int(self._row_label[src])
        self._row_label[dst] = label
        self._row_label[src] = -1
        if label >= 0:
            self._label_row[label] = dst

    def _after_change(self) -> None:
        if self._ann is not None and self._dead > _DEAD_SHARE * max(1, int(self._ann.ntotal)):
            self._rebuild()

    def _rebuild(self) -> None:
        """Build the approximate index afresh from the stored vectors (labels = rows)."""
        n = self._n
        if self._needs_training and n < (self._train_size or 0):
            self._ann = None
            self._row_label[:n] = -1
            self._dead = 0
            return
        index = self._new_index()
        data = self._index_vectors(slice(0, n))
        if self._needs_training:
            sample = data
            limit = 256 * max(self._nlist, 1)
            if n > limit:
                pick = np.random.default_rng(0).choice(n, size=limit, replace=False)
                sample = data[np.sort(pick)]
            _checked(index.train, sample)
        _checked(index.add, data)
        self._ann = index
        self._row_label = self._grow(self._row_label, n, -1)
        self._row_label[:n] = np.arange(n, dtype=np.int64)
        self._label_row = np.arange(n, dtype=np.int64)
        self._dead = 0

    # -- search ----------------------------------------------------------------------------------

    def _knn(
        self,
        queries: NDArray[np.float32],
        k: int,
        allowed: NDArray[np.intp] | None,
        dimensions: int | None,
    ) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
        n = self._n
        if dimensions is not None:
            if self._flat and dimensions == self._funnel:
                return knn(queries, self._prefix[:n], k, allowed=allowed)
            return super()._knn(queries, k, allowed, dimensions)
        if not self._flat:
            if self._ann is not None:
                return self._ann_knn(queries, k, allowed)
            # not trained yet: exact search over the few vectors there are
        elif self._funnel is not None:
            return self._flat_funnel_knn(queries, k, allowed)
        return super()._knn(queries, k, allowed, None)

    def _flat_funnel_knn(
        self, queries: NDArray[np.float32], k: int, allowed: NDArray[np.intp] | None
    ) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
        n, width = self._n, self._index_width
        short = _unit_rows(np.array(queries[:, :width], dtype=np.float32, order="C"))
        size = min(max(self._candidates, k), n if allowed is None else int(allowed.size))
        _, candidates = knn(short, self._prefix[:n], size, allowed=allowed)
        return rerank(self._buffer, queries, candidates.astype(np.int64), k)

    def _search_params(self, fetch: int, selector: Any) -> Any:
        faiss = load_faiss()
        index = faiss.downcast_index(self._ann)
        if isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self._ef_search or 128, fetch)
        elif self._nlist:
            params = faiss.SearchParametersIVF()
            params.nprobe = min(self._nlist, self._nprobe or max(8, self._nlist // 8))
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        return params

    def _ann_knn(
        self, queries: NDArray[np.float32], k: int, allowed: NDArray[np.intp] | None
    ) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
        faiss = load_faiss()
        n = self._n
        if allowed is not None and allowed.size <= max(4 * k, n // 50):
            # a selective filter: scoring the few matching rows exactly is faster and complete
            return super()._knn(queries, k, allowed, None)
        ntotal = int(self._ann.ntotal)
        selector = bits = None
        if allowed is not None or self._dead:
            member = self._label_row[:ntotal] >= 0
            if allowed is not None:
                member = np.zeros(ntotal, dtype=bool)
                labels = self._row_label[allowed]
                member[labels[labels >= 0]] = True
            bits = np.packbits(member, bitorder="little")
            selector = faiss.IDSelectorBitmap(ntotal, faiss.swig_ptr(bits))
        fetch = max(k, self._candidates) if self._funnel is not None else k
        fetch = min(fetch, ntotal)
        query_in = queries
        if self._funnel is not None:
            query_in = _unit_rows(np.array(queries[:, : self._funnel], order="C"))
        params = self._search_params(fetch, selector)
        _, labels_found = self._ann.search(query_in, fetch, params=params)
        del bits  # the bitmap must outlive the search call above
        rows = np.where(labels_found >= 0, self._label_row[np.maximum(labels_found, 0)], -1)
        scores, best = rerank(self._buffer, queries, rows, k)
        available = n if allowed is None else int(allowed.size)
        short = (best >= 0).sum(axis=1) < min(k, available)
        if short.any():
            # the graph or the probed lists ran dry under the filter: finish those exactly
            fix_scores, fix_rows = super()._knn(queries[short], k, allowed, None)
            scores[short], best[short] = fix_scores, fix_rows
        return scores, best

    # -- persistence -------------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        return {
            "index": self._spec,
            "funnel_dimensions": self._funnel,
            "funnel_candidates": self._candidates,
            "ef_search": self._ef_search,
            "nprobe": self._nprobe,
            "train_size": self._train_size,
        }

    def _settings(self) -> dict[str, Any]:
        return {
            **self._options(),
            "index_total": None if self._ann is None else int(self._ann.ntotal),
        }

    def _extra_files(self) -> dict[str, _persist.Writer]:
        if self._flat or self._ann is None:
            return {}
        faiss = load_faiss()
        ann = self._ann
        labels = self._row_label[: self._n].copy()

        def write_index(fh: BinaryIO) -> None:
            # through the open file: FAISS never opens a path of its own
            faiss.write_index(ann, faiss.PyCallbackIOWriter(fh.write))

        def write_labels(fh: BinaryIO) -> None:
            _persist.write_npy(fh, labels)

        return {_INDEX_FILE: write_index, _LABELS_FILE: write_labels}

    @classmethod
    def load(
        cls, path: str | Path, *, mmap: bool | None = None, rebuild_index: bool = False
    ) -> Self:
        """Open a store saved with :meth:`save`, after verifying every file's checksum.

        Args:
            path: the store directory.
            mmap: memory-map the full vectors (default: only with a funnel, whose rerank reads
                few rows); the first change copies them into RAM.
            rebuild_index: rebuild an approximate index from the vectors instead of reading
                ``index.faiss``: for stores from untrusted sources, FAISS's native reader is
                not hardened against hostile files.

        Raises:
            StoreError: nothing was saved there, or by another kind of store.
            CorruptStoreError: a file is damaged, missing, inconsistent or not from mmembed.
        """
        store, generation = cls._load_saved(path, mmap=mmap)
        store._load_index(generation, rebuild=rebuild_index)
        return store

    @classmethod
    def _mmap_by_default(cls, options: Mapping[str, Any]) -> bool:
        return options["funnel_dimensions"] is not None  # the rerank reads few rows

    @classmethod
    def _saved_options(cls, generation: _persist.Generation) -> dict[str, Any]:
        """The settings a manifest records, checked (they never name code, only numbers and a
        factory string); ``index_total`` is checked here and read by :meth:`_load_index`."""
        info, where = generation.info, generation.directory
        spec = info.get("index")
        if not isinstance(spec, str) or not re.fullmatch(r"[A-Za-z0-9_,.:=x+-]{1,200}", spec):
            raise CorruptStoreError(f"the manifest in {where} names no valid FAISS index")
        out: dict[str, Any] = {"index": spec}
        for key in ("funnel_dimensions", "ef_search", "nprobe", "train_size", "index_total"):
            value = info.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise CorruptStoreError(f"the manifest in {where} has an invalid {key}")
            out[key] = value
        candidates = info.get("funnel_candidates")
        if not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < 1:
            raise CorruptStoreError(f"the manifest in {where} has an invalid funnel_candidates")
        out["funnel_candidates"] = candidates
        del out["index_total"]
        return out

    def _load_index(self, generation: _persist.Generation, *, rebuild: bool) -> None:
        n = self._n
        if self._flat:
            if self._funnel is not None:
                self._prefix = self._index_vectors(slice(0, n))
            return
        self._row_label = np.full(max(n, 1), -1, dtype=np.int64)
        if _INDEX_FILE not in generation.files or rebuild:
            self._rebuild()
            return
        faiss = load_faiss()
        file = generation.path(_INDEX_FILE)
        total = generation.info.get("index_total")
        try:
            index = faiss.read_index(str(file))
        except RuntimeError as exc:
            raise CorruptStoreError(f"FAISS cannot read {file}: the file is damaged") from exc
        if index.d != self._index_width or index.ntotal != total:
            raise CorruptStoreError(
                f"{file} holds {index.ntotal} vectors of width {index.d}, the manifest says "
                f"{total} of width {self._index_width}; the store is inconsistent"
            )
        labels = generation.load_npy(_LABELS_FILE, dtype=np.int64, shape=(n,))
        live = labels[labels >= 0]
        if (live >= total).any() or np.unique(live).size != live.size:
            raise CorruptStoreError(f"{generation.path(_LABELS_FILE)} is inconsistent")
        self._ann = index
        self._row_label[:n] = labels
        self._label_row = np.full(max(int(total), 1), -1, dtype=np.int64)
        rows = np.flatnonzero(labels >= 0)
        self._label_row[labels[rows]] = rows
        self._dead = int(total) - int(rows.size)


def _checked(method: Any, data: NDArray[np.float32]) -> None:
    """Call a FAISS ``add``/``train`` and translate its errors."""
    try:
        method(data)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise StoreError(f"FAISS could not index the vectors: {reason}") from exc
