"""A :class:`~mmembed.protocols.VectorStore` on Milvus: Milvus Lite in a local file, or a server.

``MilvusStore(768, "vectors.db")`` runs Milvus Lite (the Milvus engine embedded, in a process of
its own) on a local file; ``MilvusStore(768, "http://host:19530")`` talks to a Milvus server or
cluster with the same code. The extra ``milvus`` installs ``pymilvus`` and Milvus Lite.

A collection has four fields: ``id`` (the mmembed id, the VARCHAR primary key), ``vector``
(FLOAT_VECTOR, cosine), ``metadata`` (JSON, the user's metadata as given, for any Milvus tool to
read) and :data:`TERMS_FIELD` (JSON, what ``where`` filters match, see below).

**Ids** are any Unicode text of at most :data:`MAX_ID_BYTES` UTF-8 bytes without a line break
or NUL (Milvus's filter expressions, through which ids are looked up, cannot spell ``\\r`` or
``\\n``, and Milvus fails on a primary key holding NUL).
They are written into expressions escaped, never through pymilvus's own ``ids=`` lookups, which
quote ids without escaping them.

**where** filters are Milvus boolean expressions over :data:`TERMS_FIELD`, which holds one token
per top-level metadata value (a hash of the key and the value's JSON type and value). Matching
tokens instead of the JSON field gives the meaning every mmembed store has
(:mod:`mmembed.stores._filters`: ``1`` equals ``1.0`` but not ``true``, ``None`` matches null, a
list matches when any item does) and keeps user text out of expressions: Milvus's own JSON
filters cannot match null, compare large integers as floats, cannot spell a string holding a line
break, and stop with an engine error on a list of values of mixed types.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed._optional import import_optional
from mmembed.errors import ConfigurationError, DimensionMismatchError, StoreError
from mmembed.matryoshka import _unit_rows
from mmembed.protocols import Hit
from mmembed.stores._collection import CollectionStore, clamp_score
from mmembed.stores._milvus_expr import (
    TERMS_FIELD,
    check_ints,
    expression_string,
    id_expression,
    spellable,
    term_token,
    tokens,
    where_expression,
)
from mmembed.stores._table import Record
from mmembed.stores._validate import (
    Terms,
    check_dimensions,
    check_ids,
    check_metadata,
    check_spec,
    check_vectors,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = [
    "MAX_ID_BYTES",
    "MAX_K",
    "MAX_VECTOR_DIMENSIONS",
    "TERMS_FIELD",
    "TOKEN_ENV",
    "MilvusStore",
    "expression_string",
    "term_token",
]

#: The environment variable :meth:`MilvusStore.from_spec` reads a server's token from.
TOKEN_ENV = "MILVUS_TOKEN"  # noqa: S105 (a variable name, not a secret)
#: The longest id, in UTF-8 bytes: Milvus's limit for a VARCHAR primary key.
MAX_ID_BYTES = 65_535
#: The widest vectors Milvus indexes.
MAX_VECTOR_DIMENSIONS = 32_768
#: The most hits Milvus returns for one query.
MAX_K = 16_384

_FIELDS = ("id", "vector", "metadata", TERMS_FIELD)
# rows per insert request: well under a server's default 64 MB message at 32k dimensions
_BATCH = 256
# query rows per search request (Milvus takes at most 16,384)
_QUERIES = 256
# rows per page when reading the whole collection
_PAGE = 1000
# ids per lookup expression, and their bytes
_LOOKUP_IDS = 1024
_LOOKUP_BYTES = 1 << 20
# Milvus Lite runs one server process per file: shared by the stores on that file in this
# process, stopped when the last one closes
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


def _pymilvus() -> ModuleType:
    return import_optional("pymilvus", extra="milvus", purpose="MilvusStore")


class MilvusStore(CollectionStore):
    """Vectors in a Milvus collection, searched by cosine similarity.

    Args:
        dimensions: the width of every vector (at most :data:`MAX_VECTOR_DIMENSIONS`).
        uri: a Milvus Lite file (a path ending in ``.db``; its folder must exist), or the
            ``http://``/``https://`` address of a Milvus server or cluster.
        collection: the collection name; created (cosine, a ``FLAT`` index: exact search) when
            missing. An existing collection must have the fields MilvusStore writes.
        token: the server's token (``"user:password"`` or an API key); never shown in ``repr``
            and never in :meth:`to_spec`.
        client: an already configured ``pymilvus.MilvusClient`` to use instead of ``uri`` (the
            caller keeps ownership; :meth:`close` does not close it).
        timeout: request timeout in seconds.

    Raises:
        MissingDependencyError: ``pymilvus`` (or, for a file, Milvus Lite) is not installed.
        DimensionMismatchError: the existing collection holds vectors of another width.
        StoreError: Milvus cannot be reached or the collection does not fit.

    Milvus indexes whole vectors, so ``search(..., dimensions=)`` takes only the store's own
    width: for a Matryoshka prefix, :meth:`shrink` into a prefix collection.
    """

    _PREFIX_SEARCH: ClassVar[bool] = False

    def __init__(
        self,
        dimensions: int,
        uri: str | os.PathLike[str] | None = None,
        *,
        collection: str = "mmembed",
        token: str | None = None,
        client: MilvusClient | None = None,
        timeout: float | None = None,
    ) -> None:
        self._dimensions = check_dimensions(dimensions)
        if self._dimensions > MAX_VECTOR_DIMENSIONS:
            raise ConfigurationError(
                f"Milvus indexes vectors of at most {MAX_VECTOR_DIMENSIONS:,} dimensions, not "
                f"{self._dimensions:,}; embed with fewer dimensions (mmembed.truncate)"
            )
        name: object = collection  # callers may pass anything
        if not isinstance(name, str) or not name:
            raise ConfigurationError("collection must be a non-empty name")
        self._m = _pymilvus()
        self._collection = collection
        self._timeout = timeout
        self._max_id_bytes = MAX_ID_BYTES
        self._lite: str | None = None
        self._closed = False
        if client is not None:
            self._client: MilvusClient = client
            self._where = "client"
        else:
            self._where = self._open(uri, token)
        try:
            self._ensure_collection()
        except BaseException:
            self.close()
            raise

    def _open(self, uri: str | os.PathLike[str] | None, token: str | None) -> str:
        if uri is None:
            raise ConfigurationError(
                'MilvusStore needs a uri ("vectors.db" for Milvus Lite, "http://host:19530" for '
                "a server) or a client"
            )
        where = os.fspath(uri)
        options: dict[str, Any] = {} if self._timeout is None else {"timeout": self._timeout}
        if where.startswith(("http://", "https://")):
            target = where
            options["token"] = token or ""
        else:
            if token is not None:
                raise ConfigurationError("token is only used with a server URI, not a local file")
            if not where.endswith(".db"):
                raise ConfigurationError(
                    f"a Milvus Lite file name ends in .db, got {where!r}; for a server give "
                    "its http:// or https:// URI"
                )
            path = Path(where).absolute()
            if not path.parent.is_dir():
                raise ConfigurationError(
                    f"the folder of the Milvus Lite file {where!r} does not exist; create it first"
                )
            with warnings.catch_warnings():
                # Milvus Lite imports setuptools' pkg_resources, which warns on import
                warnings.simplefilter("ignore")
                import_optional("milvus_lite.server_manager", extra="milvus", purpose="Milvus Lite")
            target = self._lite = str(path.resolve())
            with _lite_lock:
                _lite_users[target] = _lite_users.get(target, 0) + 1
        try:
            self._client = self._m.MilvusClient(uri=target, **options)
        except Exception as exc:
            self._release_lite()
            hint = (
                ". A Milvus Lite file can be open in only one process at a time"
                if self._lite is not None
                else ""
            )
            raise StoreError(f"cannot open Milvus at {where!r}: {exc}{hint}") from exc
        return where

    # -- setup ----------------------------------------------------------------------------------

    def _ensure_collection(self) -> None:
        c, name = self._client, self._collection
        exists = self._call("open", lambda: c.has_collection(name))
        if not exists:
            self._create()
            return
        fields = {
            f["name"]: f for f in self._call("open", lambda: c.describe_collection(name))["fields"]
        }
        DataType = self._m.DataType
        wanted = {
            "id": DataType.VARCHAR,
            "vector": DataType.FLOAT_VECTOR,
            "metadata": DataType.JSON,
            TERMS_FIELD: DataType.JSON,
        }
        if any(fields.get(f, {}).get("type") != t for f, t in wanted.items()) or not fields[
            "id"
        ].get("is_primary"):
            raise StoreError(
                f"the Milvus collection {name!r} was not made by MilvusStore (it needs the fields "
                f"{', '.join(_FIELDS)}, with id a VARCHAR primary key): use another collection"
            )
        width = int(fields["vector"]["params"]["dim"])
        if width != self._dimensions:
            raise DimensionMismatchError(
                f"the Milvus collection {name!r} holds vectors of {width} dimensions, not "
                f"{self._dimensions}: open it with MilvusStore({width}, ...) or use another "
                "collection name"
            )
        self._max_id_bytes = int(fields["id"]["params"].get("max_length", MAX_ID_BYTES))
        index = self._call("open", lambda: c.describe_index(name, "vector"))
        if (index or {}).get("metric_type") != "COSINE":
            raise StoreError(
                f"the Milvus collection {name!r} is indexed with the "
                f"{(index or {}).get('metric_type')} metric; MilvusStore needs COSINE so scores "
                "match other stores: use another collection"
            )
        self._call("open", lambda: c.load_collection(name))

    def _create(self) -> None:
        c, name, DataType = self._client, self._collection, self._m.DataType
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dimensions)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field(TERMS_FIELD, DataType.JSON)
        index = c.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")

        def create() -> None:
            # strong consistency: a search sees every write that returned before it
            c.create_collection(name, schema=schema, consistency_level="Strong")
            # pymilvus polls a new index every 0.5 s; an empty collection's is ready at once,
            # so poll faster (loading before it is ready leaves segments without an index)
            c.create_index(name, index, sync=False)
            deadline = time.monotonic() + (self._timeout or 60.0)
            while (c.describe_index(name, "vector") or {}).get("state") != "Finished":
                if time.monotonic() > deadline:
                    raise StoreError(f"the index of the new collection {name!r} is not ready")
                time.sleep(0.01)
            c.load_collection(name)

        self._call("create", create)

    # -- protocol -------------------------------------------------------------------------------

    @property
    def client(self) -> MilvusClient:
        """The underlying ``pymilvus.MilvusClient`` (for features mmembed does not wrap)."""
        return self._client

    # -- specs ----------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """Where this store lives, as a plain dict (never the token)::

            {"kind": "milvus", "dimensions": 768, "uri": "vectors.db", "collection": "mmembed"}

        ``"timeout"`` is kept when set.

        Raises:
            ConfigurationError: the store was built on a ``client=``, whose connection it cannot
                describe.
        """
        if self._where == "client":
            raise ConfigurationError(
                "a MilvusStore built on client= cannot describe its connection; build it with a "
                "uri (a .db file or a server address) to rebuild it from a spec"
            )
        spec: dict[str, Any] = {
            "kind": "milvus",
            "dimensions": self._dimensions,
            "uri": self._where,
            "collection": self._collection,
        }
        if self._timeout is not None:
            spec["timeout"] = self._timeout
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """The store on the Milvus a spec from :meth:`to_spec` names, as it is there (Milvus
        persists by itself; the collection is created empty when missing). A server's token is
        read from the environment variable :data:`TOKEN_ENV` (``MILVUS_TOKEN``) when set.

        Raises:
            ConfigurationError: the spec is of another kind, has unknown keys or no uri.
        """
        options = check_spec(spec, kind="milvus", keys=("uri", "collection", "timeout"))
        uri = options.get("uri")
        if not isinstance(uri, str) or not uri:
            raise ConfigurationError(
                f"a milvus store spec names its uri (a .db file or a server), got {uri!r}"
            )
        server = uri.startswith(("http://", "https://"))
        return cls(
            options["dimensions"],
            uri,
            collection=options.get("collection", "mmembed"),
            token=os.environ.get(TOKEN_ENV) if server else None,
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
                non-empty string, is longer than the collection's id limit (:data:`MAX_ID_BYTES`
                UTF-8 bytes) or holds a line break, a vector is not finite, or metadata is not
                JSON (or holds an integer beyond 64 bits).
            DimensionMismatchError: the vectors are not ``dimensions`` wide.
        """
        new_ids = check_ids(ids, adding=True)
        matrix, norms = check_vectors(vectors, width=self._dimensions, count=len(new_ids))
        cleaned = check_metadata(metadata, new_ids)
        for id_ in new_ids:
            self._check_id(id_)
        for id_, meta in zip(new_ids, cleaned, strict=True):
            check_ints(meta, f"of {id_!r}")
        unit = _unit_rows(matrix, out=np.empty(matrix.shape, dtype=np.float32), norms=norms)
        # Milvus would keep an arbitrary one of two rows with the same primary key in a batch
        latest = {id_: i for i, id_ in enumerate(new_ids)}
        rows = [
            {
                "id": id_,
                "vector": unit[i].tolist(),
                "metadata": cleaned[i],
                TERMS_FIELD: {"any": tokens(cleaned[i])},
            }
            for id_, i in latest.items()
        ]
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            self._call("add", lambda batch=batch: self._client.upsert(self._collection, batch))

    def _check_id(self, id_: str) -> None:
        size = len(id_) if id_.isascii() else len(id_.encode("utf-8"))
        if size > self._max_id_bytes:
            raise ConfigurationError(
                f"id {id_[:40]!r}... is {size:,} bytes long in UTF-8; the Milvus collection keeps "
                f"ids of at most {self._max_id_bytes:,} bytes (its VARCHAR primary key): shorten "
                "it, e.g. to a hash of it"
            )
        if not spellable(id_):
            raise ConfigurationError(
                f"id {id_[:40]!r} holds a line break or a NUL character, which Milvus cannot "
                "look up (its filter expressions cannot spell a line break; it fails on a key "
                "holding NUL); replace them, e.g. id.replace('\\n', ' ')"
            )

    def _search(
        self, matrix: NDArray[np.float32], k: int, terms: Terms | None, prefix: int | None
    ) -> list[list[Hit]]:
        """Search with checked arguments, :data:`_QUERIES` query rows per request."""
        if matrix.shape[0] == 0:
            return []
        expression = where_expression(terms)
        if expression is None:
            return [[] for _ in range(matrix.shape[0])]
        if k > MAX_K:
            if len(self) > MAX_K:
                raise ConfigurationError(
                    f"Milvus returns at most {MAX_K:,} hits per query, not k={k:,}; ask for "
                    "fewer, or narrow the search with where="
                )
            k = MAX_K
        out: list[list[Hit]] = []
        for start in range(0, matrix.shape[0], _QUERIES):
            rows = matrix[start : start + _QUERIES].tolist()
            found = self._call(
                "search",
                lambda rows=rows: self._client.search(
                    self._collection,
                    data=rows,
                    limit=k,
                    filter=expression,
                    output_fields=["metadata"],
                    search_params={"metric_type": "COSINE"},
                ),
            )
            out.extend([_hit(hit) for hit in hits] for hits in found)
        return out

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ``ids``; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        for expression in self._lookups(check_ids(ids, adding=False)):
            found = self._call(
                "delete",
                lambda e=expression: self._client.query(
                    self._collection, filter=e, output_fields=["id"]
                ),
            )
            if found:
                present = id_expression([row["id"] for row in found])
                self._call(
                    "delete",
                    lambda e=present: self._client.delete(self._collection, filter=e),
                )
            removed += len(found)
        return removed

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The records of those ``ids`` that are stored, in the order asked; unknown ids are
        skipped. Vectors come back unit length, as they are stored."""
        wanted = list(dict.fromkeys(check_ids(ids, adding=False)))
        by_id: dict[str, Record] = {}
        for expression in self._lookups(wanted):
            rows = self._call(
                "get",
                lambda e=expression: self._client.query(
                    self._collection, filter=e, output_fields=["id", "vector", "metadata"]
                ),
            )
            for row in rows:
                by_id[row["id"]] = _record(row)
        return [by_id[i] for i in wanted if i in by_id]

    def _lookups(self, ids: Sequence[str]) -> Iterator[str]:
        """``id in [...]`` expressions for ``ids``, a bounded number of bytes each. Ids no
        MilvusStore can hold (a line break, NUL) are known to be absent and left out."""
        batch: list[str] = []
        size = 0
        for id_ in dict.fromkeys(ids):
            if not spellable(id_):
                continue
            batch.append(id_)
            size += len(id_)
            if len(batch) >= _LOOKUP_IDS or size >= _LOOKUP_BYTES:
                yield id_expression(batch)
                batch, size = [], 0
        if batch:
            yield id_expression(batch)

    def __len__(self) -> int:
        rows = self._call(
            "count",
            lambda: self._client.query(self._collection, filter="", output_fields=["count(*)"]),
        )
        return int(rows[0]["count(*)"])

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        return any(
            self._call(
                "lookup",
                lambda e=e: self._client.query(self._collection, filter=e, output_fields=["id"]),
            )
            for e in self._lookups([id])
        )

    def __iter__(self) -> Iterator[str]:
        """Every stored id, page by page."""
        for rows in self._pages("scroll", ["id"]):
            for row in rows:
                yield str(row["id"])

    def _pages(self, what: str, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        """Every row of the collection, a page at a time, in id order.

        Paged by id here, not by pymilvus's query iterator: that one writes the last id of a
        page into its next expression unescaped, and never ends on an id holding a quote.
        """
        fields = list(dict.fromkeys(["id", *fields]))
        expression = 'id != ""'  # every row: no stored id is empty
        while True:
            page = self._call(
                what,
                lambda e=expression: self._client.query(
                    self._collection,
                    filter=e,
                    limit=_PAGE,
                    output_fields=fields,
                    # rows in id order, the first `limit` of them: what pymilvus's iterator asks
                    iterator="True",
                    reduce_stop_for_best="True",
                ),
            )
            if not page:
                return
            yield list(page)
            expression = f"id > {expression_string(str(page[-1]['id']))}"

    def shrink(self, dimensions: int, *, collection: str | None = None) -> MilvusStore:
        """A new store, in a new collection of the same Milvus, holding the renormalised
        ``dimensions``-prefix of every vector with the same ids and metadata (Matryoshka):
        smaller and faster, without re-embedding anything.

        Args:
            dimensions: the prefix width, at most :attr:`dimensions`.
            collection: the new collection's name (default ``"<collection>_<dimensions>"``,
                as Milvus names take letters, digits and underscores); it must hold nothing yet.
        """
        dimensions = self._prefix_width(dimensions)
        name = collection or f"{self._collection}_{dimensions}"
        if name == self._collection:
            raise ConfigurationError("shrink needs a collection other than the store's own")
        small = MilvusStore(dimensions, collection=name, client=self._client)
        if len(small):
            raise StoreError(
                f"the Milvus collection {name!r} already holds rows: pass another collection="
            )
        for rows in self._pages("shrink", ["id", "vector", "metadata"]):
            records = [_record(row) for row in rows]
            vectors = np.asarray([r.vector[:dimensions] for r in records], dtype=np.float32)
            small.add([r.id for r in records], vectors, [r.metadata for r in records])
        return small

    def clear(self) -> None:
        """Remove every row (the collection itself stays, with its settings)."""
        # no stored id is empty, so this matches every row
        self._call("clear", lambda: self._client.delete(self._collection, filter='id != ""'))

    def close(self) -> None:
        """Release the connection (and a Milvus Lite file's server once no store in this
        process has it open). A passed-in client stays open."""
        if self._closed:
            return
        self._closed = True
        if self._where != "client" and hasattr(self, "_client"):
            self._client.close()
        self._release_lite()

    def _release_lite(self) -> None:
        path, self._lite = self._lite, None
        if path is None:
            return
        with _lite_lock:
            left = _lite_users.get(path, 1) - 1
            if left:
                _lite_users[path] = left
                return
            _lite_users.pop(path, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)

    def __repr__(self) -> str:
        # the token is deliberately left out: reprs end up in notebooks and logs
        return (
            f"MilvusStore({self._dimensions}, uri={self._where!r}, collection={self._collection!r})"
        )

    # -- helpers --------------------------------------------------------------------------------

    def _call(self, what: str, fn: Any) -> Any:
        """Run a pymilvus call; its errors become :class:`StoreError` naming the collection."""
        if self._closed:
            raise StoreError(f"this MilvusStore ({self._collection!r}) is closed")
        try:
            return fn()
        except (ConfigurationError, StoreError):
            raise
        except Exception as exc:
            raise StoreError(
                f"Milvus {what} failed on collection {self._collection!r} at {self._where!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def _record(row: Mapping[str, Any]) -> Record:
    return Record(
        id=str(row["id"]),
        vector=np.asarray(row["vector"], dtype=np.float32),
        metadata=MappingProxyType(dict(row.get("metadata") or {})),
    )


def _hit(hit: Mapping[str, Any]) -> Hit:
    entity = hit.get("entity") or {}
    return Hit(
        id=str(hit["id"]),
        score=clamp_score(hit["distance"]),
        metadata=MappingProxyType(dict(entity.get("metadata") or {})),
    )
