"""A :class:`~mmembed.protocols.VectorStore` on Qdrant: embedded (in memory or on disk) or a server.

``QdrantStore(768)`` keeps everything in memory; ``QdrantStore(768, location="vectors/")`` keeps
it in a local directory (Qdrant's own embedded mode, persisted as it goes); a ``http(s)://`` URL
talks to a Qdrant server or cluster. The extra ``qdrant`` installs ``qdrant-client``.

Qdrant only accepts unsigned integers and UUIDs as point ids, so each mmembed string id is mapped
to a UUID deterministically (``uuid5``) and kept in the payload under :data:`ID_KEY`; the user's
metadata sits next to it and comes back unchanged in :class:`~mmembed.protocols.Hit`.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed._bases import Closeable
from mmembed._lock import RWLock
from mmembed._optional import import_optional
from mmembed.errors import ConfigurationError, DimensionMismatchError, StoreError
from mmembed.matryoshka import _unit_rows
from mmembed.protocols import Hit
from mmembed.stores._api import StoreMethods
from mmembed.stores._table import Record
from mmembed.stores._validate import (
    RESERVED_KEY,
    Terms,
    check_dimensions,
    check_ids,
    check_metadata,
    check_spec,
    check_vectors,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qmodels

__all__ = ["API_KEY_ENV", "ID_KEY", "QdrantStore", "point_id"]

#: Payload key that holds the mmembed id of a point; no store's metadata may use it.
ID_KEY = RESERVED_KEY
#: The environment variable :meth:`QdrantStore.from_spec` reads a server's API key from.
API_KEY_ENV = "QDRANT_API_KEY"

# A fixed namespace makes the id -> UUID mapping the same in every process and release.
_NAMESPACE = uuid.UUID("6f1c1b64-3f4e-5a8e-9a55-6d6d656d6265")
# Points per upsert request: big enough to amortise a round trip, small enough for a server's
# default 32 MB request limit at 3072 float dimensions.
_BATCH = 256


def point_id(id: str) -> str:
    """The Qdrant point id (a UUID string) that stands for the mmembed id ``id``."""
    return str(uuid.uuid5(_NAMESPACE, id))


def _qdrant() -> tuple[ModuleType, ModuleType]:
    client = import_optional("qdrant_client", extra="qdrant", purpose="QdrantStore")
    models = import_optional("qdrant_client.models", extra="qdrant", purpose="QdrantStore")
    return client, models


class QdrantStore(StoreMethods, Closeable):
    """Vectors in a Qdrant collection, searched by cosine similarity.

    Args:
        dimensions: the width of every vector.
        location: ``":memory:"`` (the default) for a throwaway in-process store, a directory path
            for Qdrant's embedded on-disk mode, or an ``http://``/``https://`` URL of a server.
        collection: the collection name; created with cosine distance when missing. An existing
            collection must have the same width and cosine distance.
        api_key: the server's API key (URL locations only); never shown in ``repr``.
        client: an already configured ``qdrant_client.QdrantClient`` to use instead of
            ``location`` (the caller keeps ownership; :meth:`close` does not close it).
        timeout: request timeout in seconds for servers.

    Raises:
        MissingDependencyError: ``qdrant-client`` is not installed.
        DimensionMismatchError: the existing collection has another width.
        StoreError: the location cannot be opened (for a path: another client has it open).

    Qdrant indexes whole vectors, so ``search(..., dimensions=)`` takes only the store's own
    width: for a Matryoshka prefix, :meth:`shrink` into a prefix collection.

    >>> store = QdrantStore(3)
    >>> store.add(["a", "b"], [[1, 0, 0], [0, 1, 0]], [{"kind": "x"}, {"kind": "y"}])
    >>> [h.id for h in store.search([1, 0.1, 0], k=1)]
    ['a']
    """

    _PREFIX_SEARCH: ClassVar[bool] = False

    def __init__(
        self,
        dimensions: int,
        location: str | None = ":memory:",
        *,
        collection: str = "mmembed",
        api_key: str | None = None,
        client: QdrantClient | None = None,
        timeout: float | None = None,
    ) -> None:
        self._dimensions = check_dimensions(dimensions)
        name: object = collection  # callers may pass anything
        if not isinstance(name, str) or not name:
            raise ConfigurationError("collection must be a non-empty name")
        qdrant_client, self._m = _qdrant()
        self._collection = collection
        self._owns_client = client is None
        self._timeout = timeout
        # Qdrant's local mode is plain Python dicts and arrays with no locking of its own: many
        # readers or one writer, writers first, so threads can share a store (a server locks
        # by itself)
        self._lock: RWLock | None = None
        if client is not None:
            self._client: QdrantClient = client
            self._where = "client"
        else:
            if location is None:
                raise ConfigurationError(
                    'QdrantStore needs a location (":memory:", a directory or a URL) or a client'
                )
            location = str(location)
            self._where = location
            options: dict[str, Any] = {}
            if timeout is not None:
                options["timeout"] = math.ceil(timeout)
            try:
                if location == ":memory:":
                    self._client = qdrant_client.QdrantClient(location=":memory:")
                elif location.startswith(("http://", "https://")):
                    self._client = qdrant_client.QdrantClient(
                        url=location, api_key=api_key, **options
                    )
                else:
                    if api_key is not None:
                        raise ConfigurationError(
                            "api_key is only used with a server URL, not a local path"
                        )
                    self._client = qdrant_client.QdrantClient(path=location)
            except ConfigurationError:
                raise
            except Exception as exc:
                hint = (
                    ""
                    if location == ":memory:" or location.startswith(("http://", "https://"))
                    else ". A local path can be open in only one QdrantStore at a time: close "
                    "the other one (store.close()) first"
                )
                raise StoreError(f"cannot open Qdrant at {location!r}: {exc}{hint}") from exc
        if type(getattr(self._client, "_client", None)).__name__ == "QdrantLocal":
            self._lock = RWLock()
        self._ensure_collection()

    # -- setup ----------------------------------------------------------------------------------

    def _ensure_collection(self) -> None:
        m = self._m
        try:
            exists = self._client.collection_exists(self._collection)
            if not exists:
                self._client.create_collection(
                    self._collection,
                    vectors_config=m.VectorParams(
                        size=self._dimensions, distance=m.Distance.COSINE
                    ),
                )
                return
            info = self._client.get_collection(self._collection)
        except Exception as exc:
            raise StoreError(
                f"cannot open the Qdrant collection {self._collection!r} at {self._where!r}: {exc}"
            ) from exc
        params = info.config.params.vectors
        if not isinstance(params, m.VectorParams):
            raise StoreError(
                f"the Qdrant collection {self._collection!r} uses named vectors; QdrantStore needs "
                "a collection with one unnamed vector: pick another collection name"
            )
        if params.size != self._dimensions:
            raise DimensionMismatchError(
                f"the Qdrant collection {self._collection!r} holds vectors of {params.size} "
                f"dimensions, not {self._dimensions}: open it with QdrantStore({params.size}, ...) "
                "or use another collection name"
            )
        if params.distance != m.Distance.COSINE:
            raise StoreError(
                f"the Qdrant collection {self._collection!r} uses {params.distance} distance; "
                "QdrantStore needs cosine so scores match other stores: use another collection"
            )

    # -- protocol -------------------------------------------------------------------------------

    @property
    def dimensions(self) -> int:
        """The width of every stored vector."""
        return self._dimensions

    @property
    def collection(self) -> str:
        """The Qdrant collection name."""
        return self._collection

    @property
    def client(self) -> QdrantClient:
        """The underlying ``qdrant_client.QdrantClient`` (for features mmembed does not wrap)."""
        return self._client

    # -- specs ----------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """Where this store lives, as a plain dict (never the API key)::

            {"kind": "qdrant", "dimensions": 768, "location": ":memory:", "collection": "mmembed"}

        A server is named by ``"url"`` instead of ``"location"``; ``"timeout"`` is kept when set.

        Raises:
            ConfigurationError: the store was built on a ``client=``, whose connection it cannot
                describe.
        """
        if self._where == "client":
            raise ConfigurationError(
                "a QdrantStore built on client= cannot describe its connection; build it with a "
                "location (':memory:', a directory or a URL) to rebuild it from a spec"
            )
        place = "url" if self._where.startswith(("http://", "https://")) else "location"
        spec: dict[str, Any] = {
            "kind": "qdrant",
            "dimensions": self._dimensions,
            place: self._where,
            "collection": self._collection,
        }
        if self._timeout is not None:
            spec["timeout"] = self._timeout
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """A store on the Qdrant a spec from :meth:`to_spec` names.

        ``":memory:"`` gives a new empty store; a directory or a server opens the collection as
        it is (Qdrant persists by itself), created empty when missing. A server's API key is
        read from the environment variable :data:`API_KEY_ENV` (``QDRANT_API_KEY``) when set.

        Raises:
            ConfigurationError: the spec is of another kind, has unknown keys, or names both a
                location and a URL.
        """
        options = check_spec(spec, kind="qdrant", keys=("location", "url", "collection", "timeout"))
        if "location" in options and "url" in options:
            raise ConfigurationError("a qdrant store spec names a location or a url, not both")
        url = options.get("url")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            raise ConfigurationError(
                f"the url of a qdrant store spec must be http(s)://..., got {url!r}"
            )
        return cls(
            options["dimensions"],
            url if url is not None else options.get("location", ":memory:"),
            collection=options.get("collection", "mmembed"),
            api_key=os.environ.get(API_KEY_ENV) if url is not None else None,
            timeout=options.get("timeout"),
        )

    def add(
        self,
        ids: Sequence[str],
        vectors: ArrayLike,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Insert or replace vectors (and their metadata) under ``ids``.

        Within one call a repeated id keeps its last vector, as if added one after another.

        Raises:
            ConfigurationError: ids, vectors and metadata differ in length, an id is not a
                non-empty string, a vector is not finite, or metadata is not JSON or uses the
                reserved key :data:`ID_KEY` (the same rules and messages as the local stores).
            DimensionMismatchError: the vectors are not ``dimensions`` wide.
        """
        new_ids = check_ids(ids, adding=True)
        matrix, norms = check_vectors(vectors, width=self._dimensions, count=len(new_ids))
        cleaned = check_metadata(metadata, new_ids)
        # unit rows, as the other stores keep them (Qdrant's own float32 norm overflows on
        # vectors such as [1e30] * 8)
        unit = _unit_rows(matrix, out=np.empty(matrix.shape, dtype=np.float32), norms=norms)
        # Qdrant would keep an arbitrary one of two points with the same id in a batch.
        latest = {id_: i for i, id_ in enumerate(new_ids)}
        points = [
            self._m.PointStruct(
                id=point_id(id_), vector=unit[i].tolist(), payload={**cleaned[i], ID_KEY: id_}
            )
            for id_, i in latest.items()
        ]
        for start in range(0, len(points), _BATCH):
            self._call(
                "add",
                lambda batch=points[start : start + _BATCH]: self._client.upsert(
                    self._collection, points=batch, wait=True
                ),
                write=True,
            )

    def _search(
        self, matrix: NDArray[np.float32], k: int, terms: Terms | None, prefix: int | None
    ) -> list[list[Hit]]:
        """One Qdrant request for every query row (``search`` and ``search_batch`` check their
        arguments as every store does)."""
        if matrix.shape[0] == 0:
            return []
        query_filter = self._filter(terms)
        if query_filter is _NOTHING:
            return [[] for _ in range(matrix.shape[0])]
        requests = [
            self._m.QueryRequest(
                query=row.tolist(), limit=k, filter=query_filter, with_payload=True
            )
            for row in matrix
        ]
        responses = self._call(
            "search",
            lambda: self._client.query_batch_points(self._collection, requests=requests),
        )
        return [[_hit(point) for point in response.points] for response in responses]

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ``ids``; unknown ids are ignored. Returns how many were removed."""
        ids = list(dict.fromkeys(check_ids(ids, adding=False)))
        if not ids:
            return 0
        pids = [point_id(i) for i in ids]

        def remove() -> int:
            found = self._client.retrieve(
                self._collection, ids=pids, with_payload=False, with_vectors=False
            )
            if found:
                selector = self._m.PointIdsList(points=[p.id for p in found])
                self._client.delete(self._collection, points_selector=selector, wait=True)
            return len(found)

        removed: int = self._call("delete", remove, write=True)
        return removed

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records of those ``ids`` that are stored, in the order asked; unknown ids are
        skipped. Qdrant keeps cosine collections normalised, so vectors come back unit length."""
        ids = list(dict.fromkeys(check_ids(ids, adding=False)))
        if not ids:
            return []
        records = self._call(
            "get",
            lambda: self._client.retrieve(
                self._collection,
                ids=[point_id(i) for i in ids],
                with_payload=True,
                with_vectors=True,
            ),
        )
        by_id = {}
        for record in records:
            id_, metadata = _split(record.payload)
            by_id[id_] = Record(
                id=id_,
                vector=np.asarray(record.vector, dtype=np.float32),
                metadata=MappingProxyType(metadata),
            )
        return [by_id[i] for i in ids if i in by_id]

    def __len__(self) -> int:
        result = self._call("count", lambda: self._client.count(self._collection, exact=True))
        return int(result.count)

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        found = self._call(
            "lookup",
            lambda: self._client.retrieve(
                self._collection, ids=[point_id(id)], with_payload=False, with_vectors=False
            ),
        )
        return bool(found)

    def __iter__(self) -> Iterator[str]:
        """Every stored id (in Qdrant's order), scrolled page by page."""
        for records in self._pages("scroll", with_payload=[ID_KEY], with_vectors=False):
            for record in records:
                yield str((record.payload or {})[ID_KEY])

    def _pages(self, what: str, *, with_payload: Any, with_vectors: bool) -> Iterator[list[Any]]:
        """Every point of the collection, a page of records at a time."""
        offset: Any = None
        while True:
            records, offset = self._call(
                what,
                lambda offset=offset: self._client.scroll(
                    self._collection,
                    limit=256,
                    offset=offset,
                    with_payload=with_payload,
                    with_vectors=with_vectors,
                ),
            )
            yield records
            if offset is None:
                return

    def shrink(self, dimensions: int, *, collection: str | None = None) -> QdrantStore:
        """A new store, in a new collection of the same Qdrant, holding the renormalised
        ``dimensions``-prefix of every vector with the same ids and metadata (Matryoshka):
        smaller and faster, without re-embedding anything.

        Args:
            dimensions: the prefix width, at most :attr:`dimensions`.
            collection: the new collection's name (default ``"<collection>-<dimensions>"``);
                it must not hold points yet.
        """
        dimensions = self._prefix_width(dimensions)
        name = collection or f"{self._collection}-{dimensions}"
        if name == self._collection:
            raise ConfigurationError("shrink needs a collection other than the store's own")
        small = QdrantStore(dimensions, collection=name, client=self._client)
        small._lock = self._lock
        if len(small):
            raise StoreError(
                f"the Qdrant collection {name!r} already holds points: pass another collection="
            )
        for records in self._pages("shrink", with_payload=True, with_vectors=True):
            if records:
                ids, metadata = zip(*(_split(record.payload) for record in records), strict=True)
                vectors = np.asarray([r.vector for r in records], dtype=np.float32)
                small.add(list(ids), vectors[:, :dimensions], list(metadata))
        return small

    def clear(self) -> None:
        """Remove every point (the collection itself stays, with its settings)."""
        self._call(
            "clear",
            lambda: self._client.delete(
                self._collection,
                points_selector=self._m.FilterSelector(filter=self._m.Filter(must=[])),
                wait=True,
            ),
            write=True,
        )

    def close(self) -> None:
        """Release the client (for a path: the directory lock). A passed-in client stays open."""
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        # the API key is deliberately left out: reprs end up in notebooks and logs
        return (
            f"QdrantStore({self._dimensions}, location={self._where!r}, "
            f"collection={self._collection!r})"
        )

    # -- helpers --------------------------------------------------------------------------------

    def _filter(self, terms: Terms | None) -> Any:
        """The Qdrant filter with the meaning of :mod:`mmembed.stores._filters` (Qdrant matches a
        list-valued payload field when any item matches, as the local stores do)."""
        if terms is None:
            return None
        m = self._m
        must: list[Any] = []
        for key, values in terms:
            if not values:
                return _NOTHING  # "any of nothing" matches no point
            if len(values) > 1 and all(isinstance(v, str) for v in values):
                must.append(m.FieldCondition(key=key, match=m.MatchAny(any=list(values))))
            elif len(values) > 1:
                must.append(m.Filter(should=[self._equals(key, v) for v in values]))
            else:
                must.append(self._equals(key, values[0]))
        return m.Filter(must=must)

    def _equals(self, key: str, value: str | int | float | bool | None) -> Any:
        m = self._m
        if isinstance(value, bool | str):
            return m.FieldCondition(key=key, match=m.MatchValue(value=value))
        if value is None:
            return m.IsNullCondition(is_null=m.PayloadField(key=key))
        # a closed range, so 1 matches 1.0 as in the other stores (MatchValue would not),
        # while true/false stay apart from 1/0
        return m.FieldCondition(key=key, range=m.Range(gte=value, lte=value))

    def _call(self, what: str, fn: Any, *, write: bool = False) -> Any:
        try:
            if self._lock is None:
                return fn()
            with self._lock.write() if write else self._lock.read():
                return fn()
        except (ConfigurationError, StoreError):
            raise
        except Exception as exc:
            raise StoreError(
                f"Qdrant {what} failed on collection {self._collection!r} at {self._where!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


class _Nothing:
    """Marker for a filter that can match no point."""


_NOTHING: Any = _Nothing()


def _split(payload: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """A point's payload as its mmembed id and the user's metadata."""
    metadata = dict(payload or {})
    return str(metadata.pop(ID_KEY)), metadata


def _hit(point: qmodels.ScoredPoint) -> Hit:
    id_, metadata = _split(point.payload)
    # Qdrant's float32 cosine can stray just past 1; the local stores clamp it the same way
    score = min(1.0, max(-1.0, float(point.score)))
    return Hit(id=id_, score=score, metadata=MappingProxyType(metadata))
