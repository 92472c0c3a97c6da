"""The index's catalog: files, chunks and their vectors in one SQLite database.

The catalog is the index's source of truth. The vector store is a fast copy of the vectors that
is saved now and then; every change to the chunks is also appended to a change log, so a store
snapshot older than the catalog (a run killed before it saved the store) is brought up to date by
replaying the log. A file's chunks, its vectors, its row in ``files`` and the log entries commit in
one transaction: a killed run leaves each file either fully indexed or not at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed.errors import CorruptStoreError, StoreError
from mmembed.protocols import PageSpan, Span, TextSpan, TimeSpan

__all__ = ["Catalog", "ChunkRecord", "FileRecord", "span_from_row", "span_to_row"]

SCHEMA_VERSION = 1
_SELECT_CHUNK = (
    "SELECT id, path, ord, modality, span_kind, span_a, span_b, preview, content_hash, metadata"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    modality TEXT NOT NULL,
    status TEXT NOT NULL,          -- 'indexed' | 'failed'
    reason TEXT NOT NULL DEFAULT '',
    chunks INTEGER NOT NULL DEFAULT 0,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    ord INTEGER NOT NULL,
    modality TEXT NOT NULL,
    span_kind TEXT,
    span_a REAL,
    span_b REAL,
    preview TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecord:
    """One file the catalog knows about."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    modality: str
    status: str
    reason: str = ""
    chunks: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRecord:
    """One stored chunk: where it came from and what it looked like."""

    id: str
    path: str
    ord: int
    modality: str
    span: Span | None
    preview: str
    content_hash: str
    metadata: Mapping[str, Any]


def span_to_row(span: Span | None) -> tuple[str | None, float | None, float | None]:
    """Flatten a span to (kind, a, b) columns."""
    if span is None:
        return None, None, None
    if isinstance(span, TimeSpan):
        return "time", span.start, span.end
    if isinstance(span, PageSpan):
        return "page", span.first, span.last
    return "text", span.start, span.end


def span_from_row(kind: str | None, a: float | None, b: float | None) -> Span | None:
    """Rebuild a span from its columns."""
    if kind is None or a is None or b is None:
        return None
    if kind == "time":
        return TimeSpan(float(a), float(b))
    if kind == "page":
        return PageSpan(int(a), int(b))
    if kind == "text":
        return TextSpan(int(a), int(b))
    raise CorruptStoreError(f"unknown span kind {kind!r} in the index catalog; rebuild the index")


class Catalog:
    """The SQLite catalog of one index directory (one connection, used from one thread)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed file survives power loss, not only a killed process
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if not readonly:
                self._db.executescript(_SCHEMA)
            version = self.get_meta("schema_version")
            if version is None and not readonly:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif version is not None and version != str(SCHEMA_VERSION):
                raise CorruptStoreError(
                    f"{self.path} has catalog schema {version}, this mmembed reads "
                    f"{SCHEMA_VERSION}; rebuild the index with this version"
                )
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(
                f"{self.path} is not a readable mmembed catalog ({exc}); delete the index "
                "directory and index again"
            ) from exc

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._q("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- files -------------------------------------------------------------------------------

    def file(self, path: str) -> FileRecord | None:
        row = self._q(
            "SELECT path, size, mtime_ns, sha256, modality, status, reason, chunks "
            "FROM files WHERE path = ?",
            (path,),
        ).fetchone()
        return None if row is None else _file(row)

    def files(self, *, under: str | None = None) -> list[FileRecord]:
        """Every file, or those at or below the directory ``under``."""
        sql = "SELECT path, size, mtime_ns, sha256, modality, status, reason, chunks FROM files"
        rows = self._q(sql + " ORDER BY path").fetchall()
        out = [_file(r) for r in rows]
        if under is None:
            return out
        prefix = under.rstrip(os.sep) + os.sep
        return [f for f in out if f.path == under or f.path.startswith(prefix)]

    def touch(self, path: str, *, size: int, mtime_ns: int) -> None:
        """Record a new stat for a file whose content did not change."""
        self._q("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def counts(self) -> dict[str, int]:
        """Files indexed, files failed, chunks, and chunks per modality."""
        out: dict[str, int] = {}
        for status, n in self._q("SELECT status, COUNT(*) FROM files GROUP BY status"):
            out[f"files_{status}"] = int(n)
        out["chunks"] = int(self._q("SELECT COUNT(*) FROM chunks").fetchone()[0])
        for modality, n in self._q("SELECT modality, COUNT(*) FROM chunks GROUP BY modality"):
            out[f"chunks_{modality}"] = int(n)
        return out

    # -- writes: each is one transaction ---------------------------------------------------------

    def replace_file(
        self,
        record: FileRecord,
        chunks: Sequence[ChunkRecord],
        vectors: NDArray[np.float32],
    ) -> None:
        """Atomically make ``chunks`` the only chunks of ``record.path`` and record the file."""
        if len(chunks) != len(vectors):
            raise StoreError(f"{len(chunks)} chunks but {len(vectors)} vectors for {record.path}")
        with self._transaction():
            self._drop_chunks(record.path)
            rows = []
            for chunk, vector in zip(chunks, vectors, strict=True):
                kind, a, b = span_to_row(chunk.span)
                rows.append(
                    (
                        chunk.id,
                        record.path,
                        chunk.ord,
                        chunk.modality,
                        kind,
                        a,
                        b,
                        chunk.preview,
                        chunk.content_hash,
                        json.dumps(dict(chunk.metadata), sort_keys=True, default=str),
                        np.ascontiguousarray(vector, dtype="<f4").tobytes(),
                    )
                )
            self._db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            self._db.executemany(
                "INSERT INTO changes(chunk_id) VALUES (?)", [(c.id,) for c in chunks]
            )
            self._put_file(record)

    def record_failure(self, record: FileRecord) -> None:
        """Remember that a file failed; what it had indexed before stays untouched."""
        with self._transaction():
            old = self.file(record.path)
            if old is not None and old.status == "indexed":
                # keep the last good version searchable; the failure is reported, not stored
                return
            self._put_file(record)

    def remove_file(self, path: str) -> int:
        """Forget a file and its chunks; returns how many chunks went."""
        with self._transaction():
            n = self._drop_chunks(path)
            self._q("DELETE FROM files WHERE path = ?", (path,))
            return n

    def _drop_chunks(self, path: str) -> int:
        ids = [r[0] for r in self._q("SELECT id FROM chunks WHERE path = ?", (path,))]
        if ids:
            self._q("DELETE FROM chunks WHERE path = ?", (path,))
            self._db.executemany("INSERT INTO changes(chunk_id) VALUES (?)", [(i,) for i in ids])
        return len(ids)

    def _put_file(self, r: FileRecord) -> None:
        self._q(
            "INSERT OR REPLACE INTO files(path, size, mtime_ns, sha256, modality, status, reason, "
            "chunks, indexed_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                r.path,
                r.size,
                r.mtime_ns,
                r.sha256,
                r.modality,
                r.status,
                r.reason,
                r.chunks,
                time.time(),
            ),
        )

    # -- chunks and the change log --------------------------------------------------------------

    def chunks(self, ids: Sequence[str]) -> dict[str, ChunkRecord]:
        """The chunk records for ``ids`` (missing ids are left out)."""
        out: dict[str, ChunkRecord] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            sql = _SELECT_CHUNK + f" FROM chunks WHERE id IN ({marks})"
            for row in self._q(sql, part):
                out[row[0]] = _chunk(row)
        return out

    def chunk_vectors(
        self, ids: Sequence[str]
    ) -> dict[str, tuple[ChunkRecord, NDArray[np.float32]]]:
        """Records and vectors for ``ids`` that still exist."""
        out: dict[str, tuple[ChunkRecord, NDArray[np.float32]]] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            sql = _SELECT_CHUNK + f", vector FROM chunks WHERE id IN ({marks})"
            for row in self._q(sql, part):
                out[row[0]] = (_chunk(row[:10]), np.frombuffer(row[10], dtype="<f4"))
        return out

    def all_chunk_vectors(
        self, batch: int = 2048
    ) -> Iterator[list[tuple[ChunkRecord, NDArray[np.float32]]]]:
        """Every chunk with its vector, in batches."""
        cursor = self._db.execute(
            "SELECT id, path, ord, modality, span_kind, span_a, span_b, preview, content_hash, "
            "metadata, vector FROM chunks ORDER BY rowid"
        )
        while rows := cursor.fetchmany(batch):
            yield [(_chunk(r[:10]), np.frombuffer(r[10], dtype="<f4")) for r in rows]

    def last_seq(self) -> int:
        row = self._q("SELECT MAX(seq) FROM changes").fetchone()
        # the log may have been compacted away entirely; the meta row remembers where it was
        logged = int(row[0]) if row and row[0] is not None else 0
        return max(logged, int(self.get_meta("compacted_seq") or 0))

    def changed_since(self, seq: int) -> tuple[list[str], int]:
        """Chunk ids touched after ``seq`` (each once) and the newest seq."""
        rows = self._q(
            "SELECT seq, chunk_id FROM changes WHERE seq > ? ORDER BY seq", (seq,)
        ).fetchall()
        if not rows:
            return [], max(seq, self.last_seq())
        ids = list(dict.fromkeys(r[1] for r in rows))
        return ids, int(rows[-1][0])

    def oldest_logged_seq(self) -> int:
        """The seq before which the log was compacted (entries up to it are gone)."""
        return int(self.get_meta("compacted_seq") or 0)

    def compact(self, upto: int) -> None:
        """Drop change-log entries a saved store snapshot already holds."""
        with self._transaction():
            self._q("DELETE FROM changes WHERE seq <= ?", (upto,))
            current = int(self.get_meta("compacted_seq") or 0)
            self.set_meta("compacted_seq", str(max(current, upto)))

    # -- plumbing ----------------------------------------------------------------------------

    def _q(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"index catalog {self.path}: {exc}") from exc

    def _transaction(self) -> _Tx:
        return _Tx(self._db, self.path)

    def reading(self) -> _Tx:
        """A read transaction: several reads see one consistent state (WAL snapshot)."""
        return _Tx(self._db, self.path, begin="BEGIN")

    def close(self) -> None:
        self._db.close()


class _Tx:
    def __init__(
        self, db: sqlite3.Connection, path: Path, *, begin: str = "BEGIN IMMEDIATE"
    ) -> None:
        self._db = db
        self._path = path
        self._begin = begin
        self._depth = 0

    def __enter__(self) -> None:
        if self._db.in_transaction:
            return
        try:
            self._db.execute(self._begin)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"index catalog {self._path}: {exc}") from exc
        self._depth = 1

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if not self._depth:
            return
        if kind is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _file(row: Sequence[Any]) -> FileRecord:
    return FileRecord(
        path=row[0],
        size=int(row[1]),
        mtime_ns=int(row[2]),
        sha256=row[3],
        modality=row[4],
        status=row[5],
        reason=row[6],
        chunks=int(row[7]),
    )


def _chunk(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        id=row[0],
        path=row[1],
        ord=int(row[2]),
        modality=row[3],
        span=span_from_row(row[4], row[5], row[6]),
        preview=row[7],
        content_hash=row[8],
        metadata=json.loads(row[9]),
    )
