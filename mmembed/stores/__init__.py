"""Vector stores: where vectors live and how they are searched.

- :class:`InMemoryStore`: exact numpy search, the reference implementation.
- :class:`FaissStore`: FAISS indexes (``Flat``, ``HNSW32``, ``IVF…``) and Matryoshka funnel
  search (a small-prefix shortlist reranked exactly with the full vectors).

Both save to a directory with ``store.save(path)`` and open with ``Store.load(path)``: no
pickle, checksums verified before any parser runs, atomic generations, one writer at a time.
FAISS is imported only when a :class:`FaissStore` is created or loaded.

- :class:`QdrantStore` (extra ``qdrant``): Qdrant in memory, in a local directory or on a
  server; Qdrant persists by itself. ``qdrant-client`` is imported only when one is created.
- :class:`MilvusStore` (extra ``milvus``): Milvus Lite in a local file, or a Milvus server or
  cluster; Milvus persists by itself. ``pymilvus`` is imported only when one is created.
"""

from __future__ import annotations

from mmembed.stores._base import Record
from mmembed.stores.faiss import FaissStore
from mmembed.stores.memory import InMemoryStore
from mmembed.stores.milvus import MilvusStore
from mmembed.stores.qdrant import QdrantStore

__all__ = ["FaissStore", "InMemoryStore", "MilvusStore", "QdrantStore", "Record"]
