"""A persistent embedding cache: the same item is never sent (or paid for) twice.

Vectors are kept in one SQLite file, keyed by the item's content hash
(:func:`mmembed.content.content_hash`), the model, the dimensions and the task, because each of
them changes the vector. :class:`CachedEmbedder` puts the cache in front of any
:class:`~mmembed.protocols.Embedder` and sends only the misses; ``GeminiEmbedder(cache=...)``
does the same internally.

>>> from mmembed.testing import FakeEmbedder
>>> cache = EmbeddingCache(":memory:")
>>> embedder = CachedEmbedder(FakeEmbedder(dimensions=8), cache)
>>> _ = embedder.embed(["hello", "world"])
>>> _ = embedder.embed(["hello"])
>>> (embedder.hits, embedder.misses)
(1, 2)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from mmembed._bases import Closeable, WrapsEmbedder
from mmembed._checks import check_rows
from mmembed._files import disk_error
from mmembed.content import Embeddable, Task, as_items, as_task, content_hash
from mmembed.errors import CorruptStoreError, StoreError
from mmembed.protocols import Embedder

__all__ = ["CachedEmbedder", "EmbeddingCache"]

_SCHEMA_VERSION = 1
# SQLite's default limit on host parameters is 32766 in current builds, 999 in old ones
_SQL_CHUNK = 900
_SELECT = (
    "SELECT hash, vector FROM embeddings WHERE model=? AND dimensions=? AND task=? "
    "AND hash IN ({marks})"
)


class EmbeddingCache(Closeable):
    """Vectors by (content hash, model, dimensions, task) in a SQLite file.

    Safe to share between threads (one connection behind a lock) and between processes (WAL
    journal: readers never block the writer). Vectors are stored as raw little-endian float32.

    Args:
        path: the database file, created with its parent directory when missing;
            ``":memory:"`` for a cache that lives as long as the object.

    Raises:
        CorruptStoreError: the file exists but is not an mmembed cache.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self._path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise disk_error(exc, f"the embedding cache {self._path}") or CorruptStoreError(
                f"{self._path} is not a readable mmembed embedding cache ({exc}); "
                "delete it and it will be rebuilt"
            ) from exc

    def _setup(self) -> None:
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version not in (0, _SCHEMA_VERSION) or (tables and "embeddings" not in tables):
            raise sqlite3.DatabaseError(f"unknown schema (user_version {version})")
        if self._path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a lost cache entry only costs a re-embed
        db.execute(
            """CREATE TABLE IF NOT EXISTS embeddings (
                hash TEXT NOT NULL,
                model TEXT NOT NULL,
                dimensions INTEGER NOT NULL,
                task TEXT NOT NULL,
                vector BLOB NOT NULL,
                PRIMARY KEY (hash, model, dimensions, task)
            ) WITHOUT ROWID"""
        )
        db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    @property
    def path(self) -> str:
        """The database file (or ``":memory:"``)."""
        return self._path

    def get_many(
        self, hashes: Sequence[str], *, model: str, dimensions: int, task: Task | str
    ) -> list[NDArray[np.float32] | None]:
        """The cached vector for each hash, or ``None`` for a miss, in the order given."""
        found: dict[str, NDArray[np.float32]] = {}
        unique = list(dict.fromkeys(hashes))
        with self._lock:
            try:
                for start in range(0, len(unique), _SQL_CHUNK):
                    chunk = unique[start : start + _SQL_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    # only "?" marks are formatted in; every value is a bound parameter
                    sql = _SELECT.format(marks=marks)
                    rows = self._db.execute(sql, (model, dimensions, str(task), *chunk)).fetchall()
                    for key, blob in rows:
                        if len(blob) == 4 * dimensions:  # a damaged row is simply a miss
                            found[key] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc
        return [found.get(h) for h in hashes]

    def put_many(
        self,
        hashes: Sequence[str],
        vectors: NDArray[np.float32],
        *,
        model: str,
        dimensions: int,
        task: Task | str,
    ) -> None:
        """Store one vector per hash (replacing any older one)."""
        arr = np.asarray(vectors, dtype="<f4")
        if arr.shape != (len(hashes), dimensions):
            raise StoreError(
                f"cache put of {arr.shape} vectors for {len(hashes)} hashes of "
                f"{dimensions} dimensions; pass one row per hash"
            )
        rows = [(h, model, dimensions, str(task), arr[i].tobytes()) for i, h in enumerate(hashes)]
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._error("write", exc) from exc

    def clear(self) -> None:
        """Remove every cached vector."""
        with self._lock:
            self._db.execute("DELETE FROM embeddings")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        """Close the database; the object cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        disk = disk_error(exc, f"the embedding cache {self._path}")
        if disk is not None:
            return disk
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            return CorruptStoreError(
                f"embedding cache {self._path} is damaged ({exc}); delete it and it will be rebuilt"
            )
        return StoreError(f"could not {action} the embedding cache {self._path}: {exc}")

    def __repr__(self) -> str:
        return f"EmbeddingCache({self._path!r})"


Saver = Callable[[Sequence[int], NDArray[np.float32]], None]
"""Keeps rows as they arrive: (positions in the list being computed, their rows)."""


def embed_through_cache(
    cache: EmbeddingCache,
    items: Sequence[Embeddable],
    *,
    model: str,
    dimensions: int,
    task: Task,
    compute: Callable[[list[Embeddable], Saver], NDArray[np.float32]],
) -> tuple[NDArray[np.float32], int]:
    """Serve ``items`` from ``cache``, computing each distinct miss once.

    ``compute(todo, save)`` returns the rows of ``todo``; it may hand rows to ``save`` as each
    reply arrives, so that they are kept even when a later call fails (or the process is
    killed): answered work is never paid for twice.

    Returns the rows and the number of items that were not sent (cache hits, and repeats of an
    item earlier in the same call).
    """
    items = as_items(items)
    hashes = [content_hash(item) for item in items]
    cached = cache.get_many(hashes, model=model, dimensions=dimensions, task=task)
    todo, todo_hashes = _misses(items, hashes, cached)
    saved: set[int] = set()

    def save(positions: Sequence[int], rows: NDArray[np.float32]) -> None:
        rows = check_rows(rows, len(positions), dimensions, who=model)
        cache.put_many(
            [todo_hashes[j] for j in positions], rows, model=model, dimensions=dimensions, task=task
        )
        saved.update(positions)

    fresh = compute(todo, save) if todo else np.empty((0, dimensions), dtype=np.float32)
    return _assemble(cache, hashes, cached, todo_hashes, fresh, model, dimensions, task, saved)


async def aembed_through_cache(
    cache: EmbeddingCache,
    items: Sequence[Embeddable],
    *,
    model: str,
    dimensions: int,
    task: Task,
    compute: Callable[[list[Embeddable]], Awaitable[NDArray[np.float32]]],
) -> tuple[NDArray[np.float32], int]:
    """Async twin of :func:`embed_through_cache`; hashing and SQLite run in a worker thread."""

    items = as_items(items)

    def lookup() -> tuple[list[str], list[NDArray[np.float32] | None]]:
        hashes = [content_hash(item) for item in items]
        return hashes, cache.get_many(hashes, model=model, dimensions=dimensions, task=task)

    hashes, cached = await asyncio.to_thread(lookup)
    todo, todo_hashes = _misses(items, hashes, cached)
    fresh = await compute(todo) if todo else np.empty((0, dimensions), dtype=np.float32)
    return await asyncio.to_thread(
        _assemble, cache, hashes, cached, todo_hashes, fresh, model, dimensions, task, set()
    )


def _misses(
    items: Sequence[Embeddable],
    hashes: list[str],
    cached: list[NDArray[np.float32] | None],
) -> tuple[list[Embeddable], list[str]]:
    todo: list[Embeddable] = []
    todo_hashes: list[str] = []
    seen: set[str] = set()
    for item, h, vec in zip(items, hashes, cached, strict=True):
        if vec is None and h not in seen:  # a repeated item in one call is sent once
            seen.add(h)
            todo.append(item)
            todo_hashes.append(h)
    return todo, todo_hashes


def _assemble(
    cache: EmbeddingCache,
    hashes: list[str],
    cached: list[NDArray[np.float32] | None],
    todo_hashes: list[str],
    fresh: NDArray[np.float32],
    model: str,
    dimensions: int,
    task: Task,
    saved: set[int],
) -> tuple[NDArray[np.float32], int]:
    fresh = check_rows(fresh, len(todo_hashes), dimensions, who=model)
    unsaved = [j for j in range(len(todo_hashes)) if j not in saved]
    if unsaved:
        cache.put_many(
            [todo_hashes[j] for j in unsaved],
            fresh[unsaved],
            model=model,
            dimensions=dimensions,
            task=task,
        )
    by_hash = dict(zip(todo_hashes, fresh, strict=True))
    out = np.empty((len(hashes), dimensions), dtype=np.float32)
    for i, (h, vec) in enumerate(zip(hashes, cached, strict=True)):
        out[i] = vec if vec is not None else by_hash[h]
    return out, len(hashes) - len(todo_hashes)


class CachedEmbedder(WrapsEmbedder):
    """Any :class:`~mmembed.protocols.Embedder` behind an :class:`EmbeddingCache`.

    Only items missing from the cache reach the wrapped embedder, each distinct one once; their
    vectors are stored before the call returns. Rows come back in input order.

    Args:
        embedder: the embedder to call for misses.
        cache: an :class:`EmbeddingCache`, or a path to open one at.

    Attributes:
        hits: items answered without the wrapped embedder so far (from the cache, or repeats
            within one call).
        misses: items the wrapped embedder had to embed so far.
    """

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | str | os.PathLike[str]) -> None:
        self._embedder = embedder
        self._cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.hits = 0
        self.misses = 0

    @property
    def cache(self) -> EmbeddingCache:
        """The cache in front of it."""
        return self._cache

    @property
    def dimensions(self) -> int:
        """The wrapped embedder's width."""
        return self._embedder.dimensions

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Embed ``items``, sending only cache misses to the wrapped embedder."""
        task = as_task(task)
        # an embedder that hands over each call's rows as they arrive (GeminiEmbedder) has them
        # kept at once, so a call that fails later does not cost the answered ones again
        each = getattr(self._embedder, "embed_each", None)
        out, hits = embed_through_cache(
            self._cache,
            items,
            model=self.model,
            dimensions=self.dimensions,
            task=task,
            compute=lambda todo, save: (
                each(todo, task=task, on_rows=save)
                if callable(each)
                else self._embedder.embed(todo, task=task)
            ),
        )
        self._count(len(items), hits)
        return out

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`."""
        task = as_task(task)
        out, hits = await aembed_through_cache(
            self._cache,
            items,
            model=self.model,
            dimensions=self.dimensions,
            task=task,
            compute=lambda todo: self._embedder.aembed(todo, task=task),
        )
        self._count(len(items), hits)
        return out

    def _count(self, total: int, hits: int) -> None:
        self.hits += hits
        self.misses += total - hits

    def to_spec(self) -> dict[str, Any]:
        """``{"kind": "cached", "path": <the cache file>, "embedder": <the wrapped spec>}``."""
        from mmembed.registry import to_spec

        return {"kind": "cached", "path": self._cache.path, "embedder": to_spec(self._embedder)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_spec` output: the same cache file before the same embedder."""
        from mmembed.registry import build_embedder, spec_options

        options = spec_options(spec, "cached", required=("path", "embedder"))
        return cls(build_embedder(options["embedder"]), str(options["path"]))

    def __repr__(self) -> str:
        return f"CachedEmbedder({self._embedder!r}, {self._cache!r})"
