"""The row table of the local stores: string ids <-> rows, the vectors, the metadata.

Rows live in one contiguous float32 block (unit rows, in insertion order, the last row moved into
a deleted one's place), so exact search is one BLAS call over a single array. ``add`` is an
upsert; subclasses keep their indexes in step through the ``_on_*`` hooks, which run under the
write lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed._lock import RWLock
from mmembed.matryoshka import _unit_rows
from mmembed.stores._validate import check_dimensions, check_ids, check_metadata, check_vectors

__all__ = ["Record", "RowTable", "as_slice"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One stored item: its id, its (unit-length) vector and its (read-only) metadata."""

    id: str
    vector: NDArray[np.float32] = field(repr=False)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


def as_slice(rows: NDArray[np.intp]) -> NDArray[np.intp] | slice:
    """``rows`` as a slice when they are consecutive and ascending (as the rows of new ids are):
    slicing copies blocks of rows, where a fancy index moves them one by one."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


class RowTable:
    """Ids, unit vectors and metadata in rows; thread-safe. The base of the local stores."""

    def __init__(self, dimensions: int) -> None:
        self._dimensions = check_dimensions(dimensions)
        self._buffer: NDArray[np.float32] = np.empty((0, self._dimensions), dtype=np.float32)
        self._n = 0
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._metadata: list[dict[str, Any]] = []
        self._lock = RWLock()
        self._version = 0  # bumped by every change: caches keyed by it go stale

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
        wanted = check_ids(ids, adding=False)
        with self._lock.read():
            out = []
            for item_id in wanted:
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

        An id given twice in one call keeps its last vector. Nothing is stored unless everything
        is valid (see :mod:`mmembed.stores._validate` for the rules).

        Raises:
            DimensionMismatchError: the vectors are not ``dimensions`` wide.
            ConfigurationError: bad ids, counts that differ, values that are not finite, or
                metadata that is not JSON.
        """
        new_ids = check_ids(ids, adding=True)
        # read only: the caller's array is never written
        matrix, norms = check_vectors(vectors, width=self._dimensions, count=len(new_ids))
        cleaned = check_metadata(metadata, new_ids)
        if not new_ids:
            return
        # last occurrence wins, as in a dict update
        last = {item_id: i for i, item_id in enumerate(new_ids)}
        if len(last) != len(new_ids):
            keep = sorted(last.values())
            new_ids = [new_ids[i] for i in keep]
            cleaned = [cleaned[i] for i in keep]
            matrix, norms = matrix[keep], norms[keep]
        with self._lock.write():
            self._make_writable(self._n + len(new_ids))
            rows = np.empty(len(new_ids), dtype=np.intp)
            replaced = []
            for i, item_id in enumerate(new_ids):
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
            if isinstance(where, slice):  # normalised straight into the buffer
                _unit_rows(matrix, out=self._buffer[where], norms=norms)
            else:
                self._buffer[where] = _unit_rows(matrix, out=np.empty_like(matrix), norms=norms)
            self._version += 1
            self._on_add(rows, np.asarray(replaced, dtype=np.intp))
            self._after_change()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ``ids``; unknown ids are ignored. Returns how many were removed."""
        gone = check_ids(ids, adding=False)
        removed = 0
        with self._lock.write():
            for item_id in gone:
                row = self._rows.pop(item_id, None)
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
