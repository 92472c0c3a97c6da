"""One :meth:`Index.add` run: walk, decide, chunk, embed in rounds, commit file by file.

The run sees its index only through an :class:`IngestContext` (the catalog, the embedder to
call, the chunkers, the sizes): nothing here reaches into the ``Index`` itself.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._catalog import Catalog, ChunkRecord, FileRecord
from mmembed._checks import check_rows
from mmembed._files import sha256_file
from mmembed._index_config import Chunkers
from mmembed._walk import Selection, display_path, is_under, walk
from mmembed.content import (
    Content,
    Embeddable,
    Modality,
    Part,
    Task,
    Text,
    content_hash,
    load,
)
from mmembed.errors import (
    AuthenticationError,
    ChunkingError,
    ConfigurationError,
    EmbeddingError,
    InputLimitError,
    MissingDependencyError,
    MMEmbedError,
    RateLimitError,
    UnsupportedMediaError,
)
from mmembed.limits import ModelLimits, cost_usd, estimate_item_tokens
from mmembed.protocols import Chunk, Embedder

__all__ = ["FileProblem", "IndexProgress", "IndexReport", "Ingest", "IngestContext"]

_PREVIEW_CHARS = 240
# media bytes held in memory waiting for an embedding call before a round is sent anyway
_MAX_QUEUE_BYTES = 64 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class FileProblem:
    """A file that failed or was skipped, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexReport:
    """What one :meth:`Index.add` (or its dry run) did or would do.

    Attributes:
        added: files indexed for the first time.
        unchanged: files already indexed with the same content (no API call).
        replaced: files whose content changed; their old chunks are gone.
        removed: files that disappeared from an indexed folder (or were removed by name).
        failed: files that could not be indexed, each with its reason.
        skipped: paths that are not indexed by design (unsupported type, modality the embedder
            does not take, FIFO, link out of the folder), each with its reason.
        ignored: files and folders that include/exclude patterns or ignore files leave out of
            the folders walked (a folder left out counts once; its files are not looked at).
        chunks: chunks embedded (in a dry run: chunks that would be embedded).
        calls: embedding API calls made, when the embedder counts them (dry run: estimated).
        tokens: tokens used, when the embedder counts them (dry run: estimated).
        cost_usd: estimated cost in US dollars, when known.
        seconds: wall time.
        dry_run: nothing was embedded or written.
    """

    added: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[FileProblem, ...] = ()
    skipped: tuple[FileProblem, ...] = ()
    ignored: int = 0
    chunks: int = 0
    calls: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "dry_run": self.dry_run,
            "added": list(self.added),
            "unchanged": list(self.unchanged),
            "replaced": list(self.replaced),
            "removed": list(self.removed),
            "failed": [{"path": p.path, "reason": p.reason} for p in self.failed],
            "skipped": [{"path": p.path, "reason": p.reason} for p in self.skipped],
            "ignored": self.ignored,
            "chunks": self.chunks,
            "calls": self.calls,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "seconds": round(self.seconds, 3),
        }

    def __str__(self) -> str:
        verb = "would add" if self.dry_run else "added"
        head = (
            f"{verb} {len(self.added)}, {'would replace' if self.dry_run else 'replaced'} "
            f"{len(self.replaced)}, unchanged {len(self.unchanged)}, removed "
            f"{len(self.removed)}, failed {len(self.failed)}, skipped {len(self.skipped)}"
            + (f", ignored {self.ignored}" if self.ignored else "")
        )
        noun = "chunk" if self.chunks == 1 else "chunks"
        tail = [f"{self.chunks} {noun}{' to embed' if self.dry_run else ' embedded'}"]
        if self.calls is not None:
            plural = "" if self.calls == 1 else "s"
            tail.append(f"{'~' if self.dry_run else ''}{self.calls} API call{plural}")
        if self.tokens is not None:
            tail.append(f"{'~' if self.dry_run else ''}{self.tokens:,} tokens")
        if self.cost_usd is not None:
            tail.append(f"{'~' if self.dry_run else ''}${self.cost_usd:.4f}")
        if not self.dry_run:
            tail.append(f"{self.seconds:.1f} s")
        lines = [f"{head}; {', '.join(tail)}"]
        lines += [f"  failed: {p}" for p in self.failed]
        lines += [f"  skipped: {p}" for p in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexProgress:
    """A progress event from :meth:`Index.add`, for progress bars.

    ``files_done`` counts files dealt with (indexed, unchanged, failed or skipped) out of
    ``files_total``; ``chunks_done`` counts chunks embedded so far; ``path`` is the file just
    finished (empty before the first).
    """

    files_done: int
    files_total: int
    chunks_done: int
    path: str = ""


@dataclass(slots=True)
class _Pending:
    """A file being indexed: its chunks, and their vectors as batches come back."""

    path: str
    stat: os.stat_result
    sha256: str
    modality: Modality
    existed: bool
    records: list[ChunkRecord] = field(default_factory=list)
    vectors: list[NDArray[np.float32] | None] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestContext:
    """What a run needs from its index, handed over explicitly.

    Attributes:
        root: the index directory (never walked into).
        catalog: the catalog the run commits to.
        embedder: returns the embedder to call (behind the cache); builds it on first call.
        model: the model id, for messages (known without building the embedder).
        usage: the usage counter of the embedder if it was built and counts usage, else None.
        chunkers: the chunker for each modality.
        dimensions: the width every vector must have.
        batch_size: chunks per embedding round.
        limits: the model's limits, when it publishes them.
        metadata: the user metadata for every file of the run (``None``: files keep theirs).
    """

    root: Path
    catalog: Catalog
    embedder: Callable[[], Embedder]
    model: str
    usage: Callable[[], Any]
    chunkers: Chunkers
    dimensions: int
    batch_size: int
    limits: ModelLimits | None
    metadata: Mapping[str, Any] | None = None


class Ingest:
    """One add() run: walk, decide, chunk, embed in batches, commit file by file."""

    def __init__(
        self,
        ctx: IngestContext,
        *,
        dry_run: bool,
        progress: Callable[[IndexProgress], None] | None,
    ) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.dry_run = dry_run
        self.progress = progress
        self.targets: dict[str, os.stat_result] = {}
        self.walked_dirs: list[str] = []
        self.added: list[str] = []
        self.unchanged: list[str] = []
        self.replaced: list[str] = []
        self.removed: list[str] = []
        self.failed: list[FileProblem] = []
        self.skipped: list[FileProblem] = []
        self.ignored = 0
        self.chunks = 0
        self.est_by: dict[Modality, int] = {}
        self.done = 0
        self.queue: list[tuple[_Pending, int, Embeddable]] = []
        self.queue_bytes = 0
        self.open_files: list[_Pending] = []
        # read without building the embedder: a run with nothing to embed never loads a model
        self.usage_before = ctx.usage()

    # -- walking ----------------------------------------------------------------------------

    def walk(
        self, paths: Iterable[str | os.PathLike[str]], select: Selection | None = None
    ) -> None:
        """Find the files to index. Files the catalog holds below a walked folder that the walk
        no longer yields (deleted, or now left out by ``select``) are removed."""
        exclude = (str(self.ctx.root),)
        for p in paths:
            top = os.path.abspath(p)
            if not os.path.lexists(top):
                known = self.catalog.files(under=top)
                if not known:
                    raise ConfigurationError(f"{p} does not exist")
                self._remove(known)
                continue
            if os.path.isdir(top):
                self.walked_dirs.append(top)
            for found in walk(top, exclude=exclude, select=select):
                if found.ignored:
                    self.ignored += 1
                elif found.skipped:
                    self.skipped.append(FileProblem(path=_show(found.path), reason=found.skipped))
                elif found.stat is not None:
                    self.targets.setdefault(found.path, found.stat)
        # files the catalog holds below a walked folder that are no longer there
        for directory in self.walked_dirs:
            gone = [
                f
                for f in self.catalog.files(under=directory)
                if f.path not in self.targets and not is_under(f.path, str(self.ctx.root))
            ]
            self._remove(gone)

    def _remove(self, files: list[FileRecord]) -> None:
        for f in files:
            if not self.dry_run:
                self.catalog.remove_file(f.path)
            if f.status == "indexed":  # skipped or failed files were never in the results
                self.removed.append(_show(f.path))

    # -- processing -------------------------------------------------------------------------

    def process(self) -> None:
        total = len(self.targets)
        self._tick(total, "")
        try:
            for path, st in self.targets.items():
                self._file(path, st)
                self._tick(total, path)
                if self._full():
                    self._flush()
                    self._tick(total, path)
            self._flush()
        finally:
            # whatever stops the run (an error, Ctrl-C), files whose vectors are all here are
            # committed; nothing more is sent
            self._commit_ready()
            self._tick(total, "")

    def _tick(self, total: int, path: str) -> None:
        if self.progress is not None:
            self.progress(
                IndexProgress(
                    files_done=self.done,
                    files_total=total,
                    chunks_done=self.chunks,
                    path=_show(path) if path else "",
                )
            )

    def _file(self, path: str, st: os.stat_result) -> None:
        old = self.catalog.file(path)
        indexed = old is not None and old.status == "indexed"
        same_stat = old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns)
        if old is not None and same_stat and old.status == "skipped":
            # decided before, for this very file: no need to sniff it or load a model again
            self.skipped.append(FileProblem(path=_show(path), reason=old.reason))
            self.done += 1
            return
        if old is not None and indexed and same_stat:
            self._keep(old)
            return
        try:
            sha, _ = sha256_file(path)
        except OSError as exc:
            self._fail(path, f"cannot read: {exc.strerror or exc}")
            return
        if old is not None and indexed and old.sha256 == sha:
            if not self.dry_run:
                self.catalog.touch(path, size=st.st_size, mtime_ns=st.st_mtime_ns)
            self._keep(old)
            return
        try:
            part = load(path)
        except UnsupportedMediaError as exc:
            self._skip(path, _reason(exc, path), st=st, sha=sha)
            return
        except (ConfigurationError, OSError) as exc:
            self._fail(path, _reason(exc, path))
            return
        modality = part.modality
        accepted = self.ctx.embedder().modalities
        pdf_as_text = modality is Modality.PDF and Modality.PDF not in accepted
        if modality not in accepted and not (pdf_as_text and Modality.TEXT in accepted):
            self._skip(
                path,
                f"{self.ctx.model} does not embed {modality.value} (it takes "
                f"{', '.join(sorted(m.value for m in accepted))})",
                st=st,
                sha=sha,
            )
            return
        pending = _Pending(path=path, stat=st, sha256=sha, modality=modality, existed=indexed)
        try:
            for ord_, chunk in enumerate(self._chunks(part, path, pdf_as_text=pdf_as_text)):
                self._queue(pending, ord_, chunk)
        except (
            ChunkingError,
            UnsupportedMediaError,
            InputLimitError,
            MissingDependencyError,
        ) as exc:
            self._drop_queued(pending)
            self._fail(path, _reason(exc, path))
            return
        except MMEmbedError as exc:
            self._drop_queued(pending)
            self._fail(path, _reason(exc, path))
            return
        if not pending.records:
            self._drop_queued(pending)
            if self.dry_run:
                self.done += 1
                return
            self._fail(path, "no content to index (empty file?)")
            return
        self.open_files.append(pending)

    def _keep(self, old: FileRecord) -> None:
        """An unchanged file: nothing to embed; only new user metadata is recorded."""
        wanted = self.ctx.metadata
        if wanted is not None and not self.dry_run and dict(wanted) != dict(old.metadata or {}):
            self.catalog.set_file_metadata(old.path, wanted)
        self.unchanged.append(_show(old.path))
        self.done += 1

    def _chunks(self, part: Part, path: str, *, pdf_as_text: bool) -> Iterator[Chunk]:
        yield from self.ctx.chunkers.for_part(part.modality, pdf_as_text=pdf_as_text).chunk(part)

    def _queue(self, pending: _Pending, ord_: int, chunk: Chunk) -> None:
        content = chunk.content
        text = chunk_text(chunk)
        path_key = hashlib.sha256(pending.path.encode()).hexdigest()[:16]
        chunk_id = f"{path_key}-{pending.sha256[:12]}-{ord_:05d}"
        record = ChunkRecord(
            id=chunk_id,
            path=pending.path,
            ord=ord_,
            # a PDF read as text is still a PDF to the user (and to where={"modality": "pdf"})
            modality=pending.modality.value
            if pending.modality is Modality.PDF
            else chunk.modality.value,
            span=chunk.span,
            preview=" ".join(text.split())[:_PREVIEW_CHARS],
            content_hash=content_hash(content) if not self.dry_run else "",
            metadata=_plain_metadata(chunk.metadata),
            text=text,
        )
        pending.records.append(record)
        pending.vectors.append(None)
        if self.dry_run:
            if self.ctx.limits is not None:
                for modality, n in estimate_item_tokens(content, self.ctx.limits).items():
                    self.est_by[modality] = self.est_by.get(modality, 0) + n
            return
        self.queue.append((pending, len(pending.records) - 1, content))
        self.queue_bytes += _nbytes(content)
        if self._full():
            self._flush()  # a long file is embedded as it is cut, not held whole in memory

    def _full(self) -> bool:
        return len(self.queue) >= self.ctx.batch_size or self.queue_bytes >= _MAX_QUEUE_BYTES

    def _drop_queued(self, pending: _Pending) -> None:
        before = len(self.queue)
        self.queue = [q for q in self.queue if q[0] is not pending]
        if len(self.queue) != before:
            self.queue_bytes = sum(_nbytes(c) for _, _, c in self.queue)

    def _flush(self) -> None:
        if self.dry_run:
            for pending in self.open_files:
                self._record_outcome(pending)
                self.chunks += len(pending.records)
                self.done += 1
            self.open_files = []
            return
        queue, self.queue, self.queue_bytes = self.queue, [], 0
        if queue:
            self._embed(queue)
        self._commit_ready()

    def _commit_ready(self) -> None:
        if self.dry_run:
            return
        still_open = []
        for pending in self.open_files:
            if pending.error:
                self._fail(pending.path, pending.error)
            elif all(v is not None for v in pending.vectors):
                self._commit(pending)
            else:
                still_open.append(pending)
        self.open_files = still_open

    def _embed(self, queue: list[tuple[_Pending, int, Embeddable]]) -> None:
        items = [c for _, _, c in queue]
        try:
            vectors = self.ctx.embedder().embed(items, task=Task.DOCUMENT)
        except (AuthenticationError, RateLimitError):
            raise  # every other file would fail the same way: stop, keeping what is committed
        except (EmbeddingError, InputLimitError, UnsupportedMediaError) as exc:
            if len({id(p) for p, _, _ in queue}) == 1:
                queue[0][0].error = _reason(exc, queue[0][0].path)
                return
            # find the culprit: embed file by file (the cache keeps what already succeeded)
            by_file: dict[int, list[tuple[_Pending, int, Embeddable]]] = {}
            for q in queue:
                by_file.setdefault(id(q[0]), []).append(q)
            for group in by_file.values():
                self._embed(group)
            return
        vectors = check_rows(vectors, len(items), self.ctx.dimensions, who=self.ctx.model)
        for (pending, i, _), vector in zip(queue, vectors, strict=True):
            pending.vectors[i] = vector

    def _commit(self, pending: _Pending) -> None:
        vectors = np.stack([v for v in pending.vectors if v is not None])
        record = FileRecord(
            path=pending.path,
            size=pending.stat.st_size,
            mtime_ns=pending.stat.st_mtime_ns,
            sha256=pending.sha256,
            modality=pending.modality.value,
            status="indexed",
            chunks=len(pending.records),
            metadata=self.ctx.metadata,
        )
        self.catalog.replace_file(record, pending.records, vectors)
        self._record_outcome(pending)
        self.chunks += len(pending.records)
        self.done += 1

    def _record_outcome(self, pending: _Pending) -> None:
        (self.replaced if pending.existed else self.added).append(_show(pending.path))

    def _fail(self, path: str, reason: str) -> None:
        self.failed.append(FileProblem(path=_show(path), reason=reason))
        self.done += 1
        if self.dry_run:
            return
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = 0, 0
        self.catalog.record_failure(
            FileRecord(
                path=path,
                size=size,
                mtime_ns=mtime,
                sha256="",
                modality="",
                status="failed",
                reason=reason,
            )
        )

    def _skip(
        self, path: str, reason: str, *, st: os.stat_result | None = None, sha: str = ""
    ) -> None:
        self.skipped.append(FileProblem(path=_show(path), reason=reason))
        self.done += 1
        if self.dry_run:
            return
        # a file that used to be indexed and is now of a type we skip must not linger
        self.catalog.remove_file(path)
        if st is not None:
            self.catalog.record_failure(
                FileRecord(
                    path=path,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha,
                    modality="",
                    status="skipped",
                    reason=reason,
                )
            )

    # -- report -----------------------------------------------------------------------------

    def report(self, seconds: float) -> IndexReport:
        calls: int | None = None
        tokens: int | None = None
        cost: float | None = None
        limits = self.ctx.limits
        after = self.ctx.usage()
        if self.dry_run:
            per_call = limits.max_items_per_call if limits else 0
            calls = math.ceil(self.chunks / per_call) if per_call else None
            if limits is not None:
                tokens = sum(self.est_by.values())
                cost = cost_usd(self.est_by, limits)
        elif after is None and self.usage_before is None:
            # the embedder was never built, so nothing was embedded; a priced model cost nothing
            if limits is not None:
                calls, tokens, cost = 0, 0, 0.0
        else:
            if after is not None:
                before = self.usage_before
                calls = int(after.requests - (before.requests if before else 0))
                tokens = int(after.tokens - (before.tokens if before else 0))
                cost = float(after.cost_usd - (before.cost_usd if before else 0.0))
        return IndexReport(
            added=tuple(self.added),
            unchanged=tuple(self.unchanged),
            replaced=tuple(self.replaced),
            removed=tuple(self.removed),
            failed=tuple(self.failed),
            skipped=tuple(self.skipped),
            ignored=self.ignored,
            chunks=self.chunks,
            calls=calls,
            tokens=tokens,
            cost_usd=cost,
            seconds=seconds,
            dry_run=self.dry_run,
        )


def _show(path: str) -> str:
    return display_path(path)


def _reason(exc: BaseException, path: str) -> str:
    text = str(exc) or type(exc).__name__
    # messages often start with the path; the report already shows it
    for prefix in (path, _show(path), os.path.basename(path)):
        if text.startswith(prefix + ": "):
            return text[len(prefix) + 2 :]
    return text


def chunk_text(chunk: Chunk) -> str:
    """A chunk's whole text: its text parts, else the page text, transcript or caption."""
    content = chunk.content
    texts: list[str] = []
    parts = content.parts if isinstance(content, Content) else (content,)
    for part in parts:
        if isinstance(part, Text):
            texts.append(part.text)
    if not texts:
        for key in ("text", "page_text", "transcript", "caption"):
            value = chunk.metadata.get(key)
            if isinstance(value, (tuple, list)):
                value = " ".join(v for v in value if isinstance(v, str))
            if isinstance(value, str) and value.strip():
                texts.append(value)
                break
    return "\n\n".join(texts)


def _plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the JSON-friendly scalars of a chunk's metadata (no bytes, no frames)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            if isinstance(value, str) and len(value) > 2000:
                value = value[:2000]
            out[str(key)] = value
    return out


def _nbytes(item: Embeddable) -> int:
    parts = item.parts if isinstance(item, Content) else (item,)
    total = 0
    for part in parts:
        if isinstance(part, str):
            total += len(part)
        elif isinstance(part, Text):
            total += len(part.text)
        elif part.path is None:
            total += part.nbytes
    return total
