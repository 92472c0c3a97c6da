"""The reference store: exact cosine search over one numpy array."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from mmembed.stores._base import ArrayStore

__all__ = ["InMemoryStore"]


class InMemoryStore(ArrayStore):
    """Exact cosine search in numpy: the reference :class:`~mmembed.protocols.VectorStore`.

    Vectors are stored L2-normalised in one contiguous float32 block, so a query is one BLAS
    matrix-vector product and a batch is a blocked matrix product (FAISS's heaps keep each
    query's top-k); ``where`` filters apply before top-k. Thread-safe: many searches run at
    once, changes wait for them.

    Args:
        dimensions: the width of every vector.

    >>> import numpy as np
    >>> store = InMemoryStore(3)
    >>> store.add(["a", "b"], np.eye(3)[:2], [{"kind": "x"}, {"kind": "y"}])
    >>> [hit.id for hit in store.search([1.0, 0.1, 0.0], k=1)]
    ['a']
    >>> [hit.id for hit in store.search([1.0, 0.1, 0.0], k=1, where={"kind": "y"})]
    ['b']
    >>> store.to_spec()
    {'kind': 'memory', 'dimensions': 3}
    """

    _KIND: ClassVar[str] = "InMemoryStore"
    _SPEC_KIND: ClassVar[str] = "memory"

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = False) -> Self:
        """Open a store saved with :meth:`save`, after verifying every file's checksum.

        Args:
            path: the store directory.
            mmap: memory-map the vectors instead of reading them into RAM (opens instantly;
                the first change copies them into RAM).

        Raises:
            StoreError: nothing was saved there, or by another kind of store.
            CorruptStoreError: a file is damaged, missing, or not written by mmembed.
        """
        return cls._load_saved(path, mmap=mmap)[0]

    def __repr__(self) -> str:
        return f"InMemoryStore(dimensions={self.dimensions}, count={len(self)})"
