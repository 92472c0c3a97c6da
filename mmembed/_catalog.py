"""The index's catalog: files, chunks and their vectors in one SQLite database.

The catalog is the index's source of truth. The vector store is a fast copy of the vectors that
is saved now and then; every change to the chunks is also appended to a change log, so a store
snapshot older than the catalog (a run killed before it saved the store) is brought up to date by
replaying the log. A file's chunks, its vectors, its row in ``files``, its chunks' rows in the
keyword index (``chunk_text``, SQLite FTS5) and the log entries commit in one transaction: a killed
run leaves each file either fully indexed or not at all, in both indexes.

The schema carries a version (``meta.schema_version``). A catalog written by an older mmembed is
brought up to date when it is opened, one step per version (:data:`_MIGRATIONS`), each step in
its own transaction; a catalog from a newer mmembed is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from mmembed._files import SQLITE_SIDECARS, refuse_links, sqlite_error
from mmembed.content import Modality
from mmembed.errors import CorruptStoreError, MMEmbedError, StoreError
from mmembed.protocols import PageSpan, Span, TextSpan, TimeSpan

_T = TypeVar("_T")

__all__ = [
    "NAME_WEIGHT",
    "TOKENIZE",
    "Catalog",
    "ChunkRecord",
    "FileRecord",
    "keyword_name",
    "span_from_row",
    "span_to_row",
]

SCHEMA_VERSION = 3
_SELECT_CHUNK = (
    "SELECT id, path, ord, modality, span_kind, span_a, span_b, preview, content_hash, metadata"
)
#: How much a match in a chunk's name (its file's name, a title) counts against one in its body.
NAME_WEIGHT = 2.0
#: How FTS5 cuts the keyword index's text into terms (words, lower case, accents and English
#: endings taken off).
TOKENIZE = "porter unicode61 remove_diacritics 2"
_SELECT_FILE = (
    "SELECT path, size, mtime_ns, sha256, modality, status, reason, chunks, metadata FROM files"
)
# every term of an FTS5 vocabulary ('instance'), how many times it occurs, and where (see
# Catalog.keyword_postings)
_POSTINGS = (
    "SELECT term, COUNT(*), group_concat(doc * 2 + (col = 'name'), ' ') FROM VOCAB GROUP BY term"
)
#: How many of the newest change-log entries a compaction keeps (see :meth:`Catalog.compact`).
LOG_KEPT = 20_000
# the chunks and their files, as a condition from mmembed._where names them (c and f)
_CHUNKS_AND_FILES = "SELECT c.id FROM chunks AS c JOIN files AS f ON f.path = c.path WHERE "

# Version 1: the tables every later version starts from.
_SCHEMA_1 = """
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
# Version 2: user metadata per file, and the keyword index. chunks.text_rowid names the chunk's
# row in chunk_text (an explicit key: VACUUM may renumber implicit rowids).
_SCHEMA_2 = f"""
ALTER TABLE files ADD COLUMN metadata TEXT NOT NULL DEFAULT '{{}}';
ALTER TABLE chunks ADD COLUMN text_rowid INTEGER;
CREATE VIRTUAL TABLE chunk_text USING fts5(
    chunk_id UNINDEXED, name, body, tokenize = '{TOKENIZE}'
);
"""

# Version 3: Batch API jobs and their items (read and written by mmembed._batch). A job's ``id``
# is ours, sent as its display name; ``name`` is the service's, NULL while it is being created.
_SCHEMA_3 = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY, name TEXT, state TEXT NOT NULL, task TEXT NOT NULL,
    items INTEGER NOT NULL, failed_items INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', created REAL NOT NULL, updated REAL NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batch_items (
    job TEXT NOT NULL REFERENCES batch_jobs(id) ON DELETE CASCADE, ord INTEGER NOT NULL,
    hash TEXT NOT NULL, modality TEXT NOT NULL, tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, ord)
);
CREATE INDEX IF NOT EXISTS batch_items_by_hash ON batch_items(hash);
"""

# the tables a catalog may hold: those its schemas create (plus FTS5's own chunk_text_* tables)
_TABLES = frozenset(
    re.findall(
        r"CREATE (?:VIRTUAL )?TABLE (?:IF NOT EXISTS )?(\w+)", _SCHEMA_1 + _SCHEMA_2 + _SCHEMA_3
    )
)


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
    #: The metadata the user gave ``Index.add`` for this file; ``None`` when writing keeps what
    #: the file had (nothing, for a new file).
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRecord:
    """One stored chunk: where it came from and what it looked like.

    ``text`` is the chunk's whole text (its own text, a PDF's page text, a transcript) for the
    keyword index; it is written there, not kept in ``chunks``, so records read back have ``""``.
    """

    id: str
    path: str
    ord: int
    modality: str
    span: Span | None
    preview: str
    content_hash: str
    metadata: Mapping[str, Any]
    text: str = ""


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

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        refuse_links(*(f"{self.path}{suffix}" for suffix in SQLITE_SIDECARS))
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._refuse_foreign()
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed file survives power loss, not only a killed process
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise sqlite_error(exc, f"the index catalog {self.path}") from exc

    def _refuse_foreign(self) -> None:
        """Refuse an SQLite database mmembed did not write, before anything is changed in it."""
        tables = {
            str(row[0])
            for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        foreign = sorted(
            t for t in tables if t not in _TABLES and not t.startswith(("chunk_text", "sqlite_"))
        )
        if foreign or (tables and "meta" not in tables):
            self._db.close()
            shown = ", ".join((foreign or sorted(tables))[:5])
            raise CorruptStoreError(
                f"{self.path} is an SQLite database that mmembed did not write (tables: {shown}); "
                "it was left as it is. Move it out of the index directory, or use another index"
            )

    def _migrate(self) -> None:
        """Create the tables of a new catalog, or bring an older one up to this version."""
        self._db.executescript(_SCHEMA_1)  # IF NOT EXISTS: a no-op on an existing catalog
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", "1")
            version = "1"
        if not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise CorruptStoreError(
                f"{self.path} has catalog schema {version}, this mmembed reads up to "
                f"{SCHEMA_VERSION}; upgrade mmembed, or rebuild the index with this version"
            )
        for target in range(int(version) + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                # another process may have taken this step while we waited for the lock
                if int(self.get_meta("schema_version") or 0) >= target:
                    continue
                _MIGRATIONS[target](self)
                self.set_meta("schema_version", str(target))

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._q("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- files -------------------------------------------------------------------------------

    def file(self, path: str) -> FileRecord | None:
        row = self._q(_SELECT_FILE + " WHERE path = ?", (path,)).fetchone()
        return None if row is None else _file(row)

    def files(self, *, under: str | None = None) -> list[FileRecord]:
        """Every file, or those at or below the directory ``under``."""
        rows = self._q(_SELECT_FILE + " ORDER BY path").fetchall()
        out = [_file(r) for r in rows]
        if under is None:
            return out
        prefix = under.rstrip(os.sep) + os.sep
        return [f for f in out if f.path == under or f.path.startswith(prefix)]

    def touch(self, path: str, *, size: int, mtime_ns: int) -> None:
        """Record a new stat for a file whose content did not change."""
        self._q("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def set_file_metadata(self, path: str, metadata: Mapping[str, Any]) -> None:
        """Replace the user metadata of an indexed file (its chunks stay as they are)."""
        self._q("UPDATE files SET metadata = ? WHERE path = ?", (_json(metadata), path))

    def metadata_keys(self) -> set[str]:
        """Every key of the user metadata given for some file."""
        rows = self._q(
            "SELECT DISTINCT j.key FROM files, json_each(files.metadata) AS j "
            "WHERE files.metadata != '{}'"
        )
        return {str(r[0]) for r in rows}

    def file_metadata(self, paths: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The user metadata of the given files (those without any are left out)."""
        rows = self._q(
            "SELECT path, metadata FROM files WHERE metadata != '{}' AND path IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(sorted(paths)),),
        )
        return {str(p): _decoded(_mapping, m) for p, m in rows}

    def files_with_metadata(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(path, metadata) of every indexed file that has user metadata."""
        rows = self._q(
            "SELECT path, metadata FROM files WHERE metadata != '{}' AND status = 'indexed'"
        )
        for path, metadata in rows:
            yield str(path), _decoded(_mapping, metadata)

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
                        _json(chunk.metadata),
                        np.ascontiguousarray(vector, dtype="<f4").tobytes(),
                        self._add_text(chunk.id, record.path, chunk.metadata, chunk.text),
                    )
                )
            self._db.executemany(
                "INSERT OR REPLACE INTO chunks(id, path, ord, modality, span_kind, span_a, "
                "span_b, preview, content_hash, metadata, vector, text_rowid) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
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
        rows = self._q("SELECT id, text_rowid FROM chunks WHERE path = ?", (path,)).fetchall()
        if rows:
            self._q("DELETE FROM chunks WHERE path = ?", (path,))
            self._db.executemany(
                "DELETE FROM chunk_text WHERE rowid = ?",
                [(r[1],) for r in rows if r[1] is not None],
            )
            self._db.executemany(
                "INSERT INTO changes(chunk_id) VALUES (?)", [(r[0],) for r in rows]
            )
        return len(rows)

    def _add_text(self, chunk_id: str, path: str, metadata: Mapping[str, Any], text: str) -> int:
        """Add a chunk's row to the keyword index; returns its rowid there."""
        cursor = self._q(
            "INSERT INTO chunk_text(chunk_id, name, body) VALUES (?, ?, ?)",
            (chunk_id, keyword_name(path, metadata), text),
        )
        rowid = cursor.lastrowid
        assert rowid is not None
        return rowid

    def _put_file(self, r: FileRecord) -> None:
        metadata = (
            _json(r.metadata)
            if r.metadata is not None
            else (
                self._q("SELECT metadata FROM files WHERE path = ?", (r.path,)).fetchone() or ["{}"]
            )[0]
        )
        self._q(
            "INSERT OR REPLACE INTO files(path, size, mtime_ns, sha256, modality, status, reason, "
            "chunks, indexed_at, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                metadata,
            ),
        )

    # -- the keyword index -------------------------------------------------------------------

    def keyword_slots(self) -> list[tuple[int, str]]:
        """(rowid, chunk id) of every row of the keyword index."""
        return [(int(r[0]), str(r[1])) for r in self._q("SELECT rowid, chunk_id FROM chunk_text")]

    def keyword_rows(self, chunk_ids: Sequence[str]) -> list[tuple[int, str]]:
        """(keyword-index rowid, chunk id) of those of ``chunk_ids`` the catalog holds."""
        rows = self._q(
            "SELECT text_rowid, id FROM chunks WHERE text_rowid IS NOT NULL AND id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(list(chunk_ids)),),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    def keyword_postings(self, rowids: Sequence[int] | None = None) -> tuple[list[str], str, str]:
        """The keyword index's tokens as FTS5 made them: (terms, how many times each occurs,
        where: one code per occurrence, ``rowid * 2 + 1`` in a name, ``rowid * 2`` in a body),
        the counts and codes as space-separated integers, term by term in the order of
        ``terms``. Of every row, or of the rows ``rowids`` (tokenized again, the same way)."""
        if rowids is None:
            self._q(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.mm_chunk_vocab "
                "USING fts5vocab(main, chunk_text, 'instance')"
            )
            sql = _POSTINGS.replace("VOCAB", "temp.mm_chunk_vocab")
        else:
            self._scratch()
            self._q(
                "INSERT INTO temp.mm_scratch(rowid, name, body) SELECT rowid, name, body "
                "FROM main.chunk_text WHERE rowid IN (SELECT value FROM json_each(?))",
                (json.dumps(list(rowids)),),
            )
            sql = _POSTINGS.replace("VOCAB", "temp.mm_scratch_vocab")
        rows = self._q(sql).fetchall()
        return (
            [str(r[0]) for r in rows],
            " ".join(str(r[1]) for r in rows),
            " ".join(str(r[2]) for r in rows),
        )

    def stems(self, words: Sequence[str]) -> list[list[str]]:
        """The terms each of ``words`` becomes in the keyword index (FTS5's tokenizer)."""
        self._scratch()
        self._db.executemany(
            "INSERT INTO temp.mm_scratch(rowid, body) VALUES (?, ?)", list(enumerate(words, 1))
        )
        found: list[list[str]] = [[] for _ in words]
        rows = self._q("SELECT doc, term FROM temp.mm_scratch_vocab ORDER BY doc, offset")
        for doc, term in rows:
            found[int(doc) - 1].append(str(term))
        return found

    def _scratch(self) -> None:
        """Empty this connection's own FTS5 table ``temp.mm_scratch`` (made on first use), which
        tokenizes as the keyword index does; ``temp.mm_scratch_vocab`` is its vocabulary."""
        self._q(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.mm_scratch USING "
            f"fts5(name, body, tokenize = '{TOKENIZE}')"
        )
        self._q(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.mm_scratch_vocab "
            "USING fts5vocab(temp, mm_scratch, 'instance')"
        )
        self._q("DELETE FROM temp.mm_scratch")

    def keyword_rowids_where(self, within: tuple[str, Sequence[Any]]) -> list[int]:
        """The keyword-index rowids of the chunks that meet a condition on ``c`` and ``f``."""
        sql = _CHUNKS_AND_FILES.replace("SELECT c.id", "SELECT c.text_rowid") + within[0]
        return [int(r[0]) for r in self._q(sql, within[1]) if r[0] is not None]

    def has_text(self) -> bool:
        """Whether some chunk has text in the keyword index (beyond its file's name)."""
        row = self._q("SELECT 1 FROM chunk_text WHERE body != '' LIMIT 1").fetchone()
        return row is not None

    def chunk_ids_where(self, within: tuple[str, Sequence[Any]]) -> list[str]:
        """The ids of the chunks that meet a condition on ``c`` (chunks) and ``f`` (files)."""
        return [str(r[0]) for r in self._q(_CHUNKS_AND_FILES + within[0], within[1])]

    def text_consistency(self) -> tuple[int, int]:
        """(chunks without a keyword row, keyword rows without a chunk): both 0 when in step."""
        missing = self._q(
            "SELECT COUNT(*) FROM chunks AS c LEFT JOIN chunk_text AS t ON t.rowid = c.text_rowid "
            "AND t.chunk_id = c.id WHERE t.rowid IS NULL"
        ).fetchone()[0]
        stray = self._q(
            "SELECT COUNT(*) FROM chunk_text AS t LEFT JOIN chunks AS c ON c.text_rowid = t.rowid "
            "WHERE c.id IS NULL"
        ).fetchone()[0]
        return int(missing), int(stray)

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
                out[row[0]] = (_chunk(row[:10]), _decoded(_vector, row[10]))
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
            yield [(_chunk(r[:10]), _decoded(_vector, r[10])) for r in rows]

    def last_seq(self) -> int:
        row = self._q("SELECT MAX(seq) FROM changes").fetchone()
        # the log may have been compacted away entirely; the meta row remembers where it was
        logged = int(row[0]) if row and row[0] is not None else 0
        return max(logged, _decoded(int, self.get_meta("compacted_seq") or 0))

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
        return _decoded(int, self.get_meta("compacted_seq") or 0)

    def compact(self, upto: int) -> None:
        """Drop change-log entries a saved store snapshot already holds, but the newest
        :data:`LOG_KEPT`: a reader holding an older state (the keyword ranking of a long-lived
        process) catches up from those instead of reading everything again."""
        upto -= LOG_KEPT
        if upto <= self.oldest_logged_seq():
            return
        with self._transaction():
            self._q("DELETE FROM changes WHERE seq <= ?", (upto,))
            current = _decoded(int, self.get_meta("compacted_seq") or 0)
            self.set_meta("compacted_seq", str(max(current, upto)))

    # -- plumbing ----------------------------------------------------------------------------

    def _q(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(_storable(p) for p in params))
        except sqlite3.Error as exc:
            raise sqlite_error(exc, f"the index catalog {self.path}") from exc

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
        except sqlite3.Error as exc:
            raise sqlite_error(exc, f"the index catalog {self._path}") from exc
        self._depth = 1

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if not self._depth:
            return
        if kind is not None:
            with contextlib.suppress(sqlite3.Error):  # the error on its way out says more
                self._db.execute("ROLLBACK")
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:  # a COMMIT that failed (a full disk): nothing is kept
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise sqlite_error(error, f"the index catalog {self._path}") from error


def _decoded(decode: Callable[[Any], _T], value: Any) -> _T:
    """``decode(value)`` for a value read from the catalog, or a :class:`CorruptStoreError`
    when it is not what mmembed writes (text in an integer column, broken JSON, ...)."""
    try:
        return decode(value)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise CorruptStoreError(
            f"the index catalog holds a value mmembed did not write ({detail}); restore "
            "catalog.sqlite from a backup, or index the files again into a new directory"
        ) from None


def _mapping(text: Any) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"metadata {str(text)[:40]!r} is not a JSON object")
    return value


def _vector(blob: Any) -> NDArray[np.float32]:
    if not isinstance(blob, bytes) or not blob or len(blob) % 4:
        raise TypeError(f"a vector of {type(blob).__name__} {str(blob)[:20]!r}")
    vector = np.frombuffer(blob, dtype="<f4")
    if not np.isfinite(vector).all():
        raise ValueError("a vector holds NaN or infinity")
    return vector


def _file(row: Sequence[Any]) -> FileRecord:
    return _decoded(_file_record, row)


def _file_record(row: Sequence[Any]) -> FileRecord:
    return FileRecord(
        path=str(row[0]),
        size=_int(row[1]),
        mtime_ns=_int(row[2]),
        sha256=str(row[3]),
        modality=Modality(row[4]).value if row[4] else "",  # "": failed before sniffed
        status=str(row[5]),
        reason=str(row[6]),
        chunks=_int(row[7]),
        metadata=_mapping(row[8]),
    )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{str(value)[:40]!r} where an integer belongs")
    return value


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(dict(data), sort_keys=True, default=str)


def keyword_name(path: str, metadata: Mapping[str, Any]) -> str:
    """What the keyword index holds as a chunk's name: its file's name and the title, if any."""
    title = metadata.get("title")
    name = os.path.basename(path)
    return f"{name}\n{title}" if isinstance(title, str) and title.strip() else name


# -- migrations -------------------------------------------------------------------------------


def _to_2(catalog: Catalog) -> None:
    """Add file metadata and the keyword index, filled from what the catalog holds.

    A text chunk gets its exact text back from its file when the file is unchanged; any other
    chunk gets its preview (the first characters of its text) until its file is indexed again.
    """
    for statement in _SCHEMA_2.split(";"):
        if statement.strip():
            catalog._db.execute(statement)
    texts: dict[str, str | None] = {}
    rows = catalog._db.execute(
        "SELECT c.id, c.path, c.span_kind, c.span_a, c.span_b, c.preview, c.metadata, f.sha256 "
        "FROM chunks AS c LEFT JOIN files AS f ON f.path = c.path ORDER BY c.rowid"
    ).fetchall()
    for chunk_id, path, kind, a, b, preview, metadata, sha in rows:
        body = preview
        if kind == "text" and sha:
            if path not in texts:
                texts[path] = _unchanged_text(path, sha)
            whole = texts[path]
            if whole is not None and a is not None and b is not None:
                body = whole[int(a) : int(b)]
        rowid = catalog._add_text(chunk_id, path, json.loads(metadata), body)
        catalog._db.execute("UPDATE chunks SET text_rowid = ? WHERE id = ?", (rowid, chunk_id))


def _unchanged_text(path: str, sha256: str) -> str | None:
    """The text of a text file, if it still has the content the catalog indexed."""
    from mmembed._files import sha256_file
    from mmembed.content import Text, load

    try:
        if sha256_file(path)[0] != sha256:
            return None
        part = load(path)
    except (MMEmbedError, OSError):
        return None
    return part.text if isinstance(part, Text) else None


def _to_3(catalog: Catalog) -> None:
    """Add the tables of Batch API jobs (empty: no older catalog had any)."""
    for statement in _SCHEMA_3.split(";"):
        if statement.strip():
            catalog._db.execute(statement)


#: The step that brings a catalog to each version from the one before (version 1 is the base).
_MIGRATIONS: dict[int, Callable[[Catalog], None]] = {2: _to_2, 3: _to_3}


def _chunk(row: Sequence[Any]) -> ChunkRecord:
    return _decoded(_chunk_record, row)


def _chunk_record(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        id=str(row[0]),
        path=str(row[1]),
        ord=_int(row[2]),
        modality=Modality(row[3]).value,
        span=span_from_row(row[4], row[5], row[6]),
        preview=str(row[7]),
        content_hash=str(row[8]),
        metadata=_mapping(row[9]),
    )


def _storable(value: Any) -> Any:
    """A query value SQLite can take. A path whose name is not UTF-8 (lone surrogates) is never
    in the catalog (the walk skips it), so it becomes a value no stored path equals or is below
    (paths hold no NUL)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "\0" + value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value
