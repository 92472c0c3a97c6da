"""What the stores on a database's collection share (:class:`~mmembed.stores.QdrantStore`,
:class:`~mmembed.stores.MilvusStore`): their width and collection name, closing, ``with``, and
scores clamped as the local stores clamp them."""

from __future__ import annotations

from mmembed._bases import Closeable
from mmembed.stores._api import StoreMethods

__all__ = ["CollectionStore", "clamp_score"]


def clamp_score(score: float) -> float:
    """A database's float32 cosine, which can stray just past ±1, clamped as the local stores
    clamp theirs."""
    return min(1.0, max(-1.0, float(score)))


class CollectionStore(StoreMethods, Closeable):
    """A store whose vectors live in one collection of a database it reaches through a client."""

    _collection: str

    @property
    def dimensions(self) -> int:
        """The width of every stored vector."""
        return self._dimensions

    @property
    def collection(self) -> str:
        """The collection name."""
        return self._collection
