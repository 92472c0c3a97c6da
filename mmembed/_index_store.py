"""The vector store of an index, kept to the catalog: opening it (its snapshot, or rebuilt from
the catalog), replaying the change log to catch up with other writers, and saving snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._catalog import Catalog, ChunkRecord
from mmembed._files import write_json_atomic
from mmembed._index_config import (
    build_empty_store,
    check_store_state,
    load_store,
    read_json,
    store_entry,
)
from mmembed.errors import (
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    MMEmbedError,
)
from mmembed.protocols import VectorStore
from mmembed.stores._persist import current_generation

__all__ = ["StoreKeeper", "default_store"]


class StoreKeeper:
    """An index's store and the catalog position it holds.

    ``config`` is the index's ``config.json`` dict, shared with the index: the store's entry is
    recorded in it, and it is written with every snapshot.
    """

    def __init__(
        self,
        path: Path,
        dimensions: int,
        catalog: Catalog,
        config: dict[str, Any],
        *,
        new: bool,
    ) -> None:
        self.path = path
        self.dimensions = dimensions
        self.catalog = catalog
        self.config = config
        self.new = new
        self.seq = 0
        # the catalog position of the snapshot on disk (None: no usable snapshot yet)
        self.saved_seq: int | None = None
        # the generation of store/ the store was loaded from (or last saved as)
        self.generation: int | None = None

    def start(self, given: VectorStore | None) -> None:
        """Open the store: ``given`` (filled from the catalog), or the index's own."""
        self.store: VectorStore = self.open(given)

    def open(self, given: VectorStore | None) -> VectorStore:
        state = read_json(self.path / "store.json")
        if state is not None:
            check_store_state(self.path, state)
        if given is not None:
            if int(given.dimensions) != self.dimensions:
                raise DimensionMismatchError(
                    f"the store holds {given.dimensions}-dimensional vectors but the embedder "
                    f"makes {self.dimensions}; create the store with dimensions="
                    f"{self.dimensions}"
                )
            if len(given) and not self.new:
                raise ConfigurationError(
                    "a store passed to an existing index must be empty: the index fills it "
                    "from its catalog"
                )
            self.config["store"] = store_entry(given)
            self.rebuild_into(given)
            return given
        self.generation = current_generation(self.path / "store")
        if state is not None and (self.path / "store").exists():
            for _ in range(3):
                self.generation = current_generation(self.path / "store")
                try:
                    store: VectorStore = load_store(state, self.path / "store")
                except MMEmbedError:
                    raise
                except Exception as exc:
                    raise CorruptStoreError(
                        f"{self.path / 'store'} could not be read ({exc}); delete store/ and "
                        "store.json (the index rebuilds them from its catalog, which holds every "
                        "vector)"
                    ) from exc
                self.seq = check_store_state(self.path, state)
                # a writer may have compacted the log past our snapshot meanwhile: reread
                if self.replay(store):
                    self.saved_seq = self.seq
                    return store
                state = read_json(self.path / "store.json") or state
            # the snapshot and the log do not meet (files restored by hand?): the catalog holds
            # every vector, so rebuild the store from it rather than trust either
            fresh = build_empty_store(state, self.dimensions)
            self.rebuild_into(fresh)
            return fresh
        recorded = self.config.get("store")
        if recorded:
            store = build_empty_store(recorded, self.dimensions)
        else:
            store = default_store(self.dimensions)
            self.config["store"] = store_entry(store)
        self.rebuild_into(store)
        return store

    def rebuild_into(self, store: VectorStore) -> None:
        """Fill an empty store with every chunk of the catalog."""
        with self.catalog.reading():
            seq = self.catalog.last_seq()
            for batch in self.catalog.all_chunk_vectors():
                self._add(store, batch)
        self.seq = seq

    def catch_up(self) -> None:
        """Bring the store to the catalog's newest commit, whoever made it.

        Another process that saved a snapshot may have compacted the change log past this
        store's position: the log no longer says what changed, so the store is reloaded (from
        that snapshot, or rebuilt from the catalog) instead of searched as it was.
        """
        if not self.replay(self.store):
            self.saved_seq = None
            self.store = self.open(None)

    def replay(self, store: VectorStore) -> bool:
        """Apply the catalog changes made after the store's position (idempotent); ``False``,
        with nothing applied, when the log was compacted past that position."""
        with self.catalog.reading():
            if self.catalog.oldest_logged_seq() > self.seq:
                return False
            ids, newest = self.catalog.changed_since(self.seq)
            if ids:
                present = self.catalog.chunk_vectors(ids)
                gone = [i for i in ids if i not in present]
                if gone:
                    store.delete(gone)
                if present:
                    self._add(store, list(present.values()))
        self.seq = newest
        return True

    def _add(
        self, store: VectorStore, batch: Sequence[tuple[ChunkRecord, NDArray[np.float32]]]
    ) -> None:
        if not batch:
            return
        vectors = np.stack([v for _, v in batch]).astype(np.float32, copy=False)
        if vectors.shape[1] != self.dimensions:
            raise CorruptStoreError(
                f"{self.path}: stored vectors have {vectors.shape[1]} dimensions, the index "
                f"{self.dimensions}; restore catalog.sqlite from a backup, or index the files "
                "again into a new directory"
            )
        store.add(
            [r.id for r, _ in batch],
            vectors,
            [{"source": r.path, "modality": r.modality} for r, _ in batch],
        )

    def save(self) -> None:
        """Snapshot the store, then record which catalog position it holds, then compact."""
        if self.saved_seq == self.seq:
            return  # the snapshot on disk already holds everything
        if not self.config.get("store"):
            self.config["store"] = store_entry(self.store)
        write_json_atomic(self.path / "config.json", self.config)
        save = getattr(self.store, "save", None)
        if save is None:
            return  # the store is rebuilt from the catalog on every open
        if current_generation(self.path / "store") != self.generation:
            # another writer saved a snapshot since this store was loaded (its changes were
            # replayed from the log): start from that snapshot, caught up from the catalog
            self.saved_seq = None
            self.store = self.open(None)
            save = self.store.save  # type: ignore[attr-defined]
        save(self.path / "store")
        self.generation = current_generation(self.path / "store")
        write_json_atomic(self.path / "store.json", {**store_entry(self.store), "seq": self.seq})
        self.catalog.compact(self.seq)
        self.saved_seq = self.seq


def default_store(dimensions: int) -> VectorStore:
    from mmembed.stores import FaissStore  # FAISS loads on first use

    store: VectorStore = FaissStore(dimensions)
    return store
