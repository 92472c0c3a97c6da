"""One :meth:`Index.add` run: walk, decide, chunk, embed in rounds, commit file by file.

The run sees its index only through an :class:`IngestContext` (the catalog, the embedder to
call, the chunkers, the sizes): nothing here reaches into the ``Index`` itself.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmembed._catalog import Catalog, ChunkRecord, FileRecord
from mmembed._estimate import PlanLine, Planner
from mmembed._files import sha256_file
from mmembed._index_config import Chunkers
from mmembed._ingest_read import chunk_text, open_part, plain_metadata
from mmembed._ingest_read import reason as _reason
from mmembed._ingest_read import show as _show
from mmembed._ingest_report import FileProblem, IndexProgress, IndexReport, plan_summary
from mmembed._ingest_rounds import Pending, Rounds
from mmembed._walk import Selection, is_under, walk
from mmembed.content import Modality, Part, Text, content_hash
from mmembed.errors import (
    BudgetExceededError,
    ConfigurationError,
    EmbeddingError,
    InputLimitError,
    MMEmbedError,
    UnsupportedMediaError,
)
from mmembed.limits import ModelLimits
from mmembed.protocols import Chunk, Embedder

if TYPE_CHECKING:
    from mmembed.chunkers.text import TextChunker

__all__ = [
    "FileProblem",
    "IndexProgress",
    "IndexReport",
    "Ingest",
    "IngestContext",
    "PlanLine",
    "chunk_text",
]

_PREVIEW_CHARS = 240


@dataclass(frozen=True, slots=True)
class _Todo:
    """A file that needs embedding: its part (``None``: text read as it is cut) and hash."""

    part: Part | None
    modality: Modality
    sha256: str
    existed: bool
    pdf_as_text: bool


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
        batch_size: the most chunks being embedded at once (all rounds in flight together).
        limits: the model's limits, when it publishes them.
        metadata: the user metadata for every file of the run (``None``: files keep theirs).
        batch: the run goes through the Batch API: its plan is priced at the batch rate.
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
    batch: bool = False


class Ingest:
    """One add() run: walk, decide, chunk, embed in rounds while cutting, commit file by file.

    Cutting and embedding overlap: the calling thread cuts files and fills rounds (at most one
    API call's worth of chunks each); rounds go to worker threads, as many at once as the
    embedder sends calls at once, within a bound on the media bytes in flight. Whenever a round
    comes back, every file whose chunks all have their vectors commits at once.
    """

    def __init__(
        self,
        ctx: IngestContext,
        *,
        dry_run: bool,
        progress: Callable[[IndexProgress], None] | None,
        max_cost: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.dry_run = dry_run
        self.max_cost = max_cost
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
        self.done = 0
        self.planned: tuple[PlanLine, ...] = ()
        self.planned_calls = 0
        self.chunk_seconds = 0.0
        self.open_files: list[Pending] = []
        self.rounds = Rounds(ctx, self._commit_ready)
        self.wound_down = False
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

    # -- the plan ---------------------------------------------------------------------------

    def plan(self) -> tuple[PlanLine, ...]:
        """Estimate what the files to embed will cost, reading headers only; nothing is sent.

        A dry run records each file's outcome (would add, unchanged, skipped...); a run with
        ``max_cost`` refuses to start when the estimate is over it.

        Raises:
            BudgetExceededError: the estimate is over ``max_cost``.
        """
        planner = Planner(self.ctx.limits, batch=self.ctx.batch)
        for path, st in self.targets.items():
            todo = self._classify(path, st, planning=True)
            if todo is None:
                continue
            if self.dry_run:
                (self.replaced if todo.existed else self.added).append(_show(path))
                self.done += 1
            chunker = self.ctx.chunkers.for_part(
                todo.modality, pdf_as_text=todo.pdf_as_text
            ).chunker
            part = todo.part if todo.part is not None else Text("")
            if planner.add_file(part, chunker, size=st.st_size):
                continue
            label = todo.modality.value
            try:
                for n, chunk in enumerate(self._chunks(todo, path)):
                    planner.add_chunk(label, chunk.content, first=n == 0)
            except MMEmbedError as exc:
                if self.dry_run:
                    self.failed.append(FileProblem(path=_show(path), reason=_reason(exc, path)))
        self.planned = planner.lines()
        self.planned_calls = planner.total_calls()
        self.chunks = sum(line.chunks for line in self.planned) if self.dry_run else 0
        cost = self.estimated_cost()
        if self.max_cost is not None and cost is not None and cost > self.max_cost:
            raise BudgetExceededError(
                f"this run is estimated to cost ${cost:,.2f} ({plan_summary(self.planned)}), "
                f"over max_cost=${self.max_cost:,.2f}; nothing was embedded. Raise the limit, "
                "index fewer files, or choose a cheaper video strategy (keyframes)",
                estimate_usd=cost,
                max_cost_usd=self.max_cost,
            )
        return self.planned

    def estimated_cost(self) -> float | None:
        """The plan's total cost, ``None`` when the model publishes no prices."""
        costs = [line.cost_usd for line in self.planned if line.cost_usd is not None]
        return sum(costs) if costs else (None if self.ctx.limits is None else 0.0)

    # -- processing -------------------------------------------------------------------------

    def process(self) -> None:
        total = len(self.targets)
        self._tick(total, "")
        try:
            for path, st in self.targets.items():
                self._file(path, st)
                self.rounds.collect(block=False)
                self._tick(total, path)
            self.rounds.send()
            while self.rounds.in_flight:
                self.rounds.collect(block=True)
                self._tick(total, "")
        except EmbeddingError as exc:
            # the key or the quota: every other file would fail the same way, so the run
            # stops; the message says what is left, and the next run picks it up
            self._wind_down(total)
            indexed = len(self.added) + len(self.replaced)
            exc.args = (
                f"{exc}. The run stopped: {indexed} files indexed, {total - self.done} of "
                f"{total} files left to do; run the same command again to index them",
            )
            raise
        finally:
            self._wind_down(total)

    def _wind_down(self, total: int) -> None:
        """Whatever stops the run (an error, Ctrl-C): calls already sent finish, files whose
        vectors are all here are committed; nothing more is sent."""
        if self.wound_down:
            return
        self.wound_down = True
        self.rounds.shutdown()
        self.rounds.collect(block=False, final=True)
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

    def _classify(self, path: str, st: os.stat_result, *, planning: bool) -> _Todo | None:
        """Decide what a file needs; ``None`` when it is settled (unchanged, skipped, failed).

        While planning nothing is written, and a new file is not hashed (nothing to compare).
        """
        quiet = planning and not self.dry_run  # the budget's look ahead records nothing
        old = self.catalog.file(path)
        indexed = old is not None and old.status == "indexed"
        same_stat = old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns)
        if old is not None and same_stat and old.status == "skipped":
            # decided before, for this very file: no need to sniff it or load a model again
            if not quiet:
                self.skipped.append(FileProblem(path=_show(path), reason=old.reason))
                self.done += 1
            return None
        if old is not None and indexed and same_stat:
            if not quiet:
                self._keep(old)
            return None
        sha = ""
        if not planning or indexed:
            try:
                sha, _ = sha256_file(path)
            except OSError as exc:
                if not quiet:
                    self._fail(path, f"cannot read: {exc.strerror or exc}")
                return None
        if old is not None and indexed and old.sha256 == sha:
            if not planning:
                self.catalog.touch(path, size=st.st_size, mtime_ns=st.st_mtime_ns)
            if not quiet:
                self._keep(old)
            return None
        try:
            part = open_part(path, streamed=self._text_chunker())
        except UnsupportedMediaError as exc:
            if not quiet:
                self._skip(path, _reason(exc, path), st=st, sha=sha)
            return None
        except (ConfigurationError, InputLimitError, OSError) as exc:
            # a file over a limit is tried again on the next run: the limit may be raised
            if not quiet:
                self._fail(path, _reason(exc, path))
            return None
        modality = part.modality if part is not None else Modality.TEXT
        accepted = self.ctx.embedder().modalities
        pdf_as_text = modality is Modality.PDF and Modality.PDF not in accepted
        if modality not in accepted and not (pdf_as_text and Modality.TEXT in accepted):
            if not quiet:
                self._skip(
                    path,
                    f"{self.ctx.model} does not embed {modality.value} (it takes "
                    f"{', '.join(sorted(m.value for m in accepted))})",
                    st=st,
                    sha=sha,
                )
            return None
        return _Todo(part, modality, sha, indexed, pdf_as_text)

    def _text_chunker(self) -> TextChunker | None:
        """The text chunker when it streams files (``None`` for a chunker of the caller's)."""
        from mmembed.chunkers.text import TextChunker

        chunker = self.ctx.chunkers.for_part(Modality.TEXT).chunker
        return chunker if isinstance(chunker, TextChunker) else None

    def _file(self, path: str, st: os.stat_result) -> None:
        started = time.perf_counter()
        todo = self._classify(path, st, planning=False)
        if todo is None:
            self.chunk_seconds += time.perf_counter() - started
            return
        pending = Pending(
            path=path, stat=st, sha256=todo.sha256, modality=todo.modality, existed=todo.existed
        )
        self.open_files.append(pending)
        try:
            chunks = self._chunks(todo, path)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except MMEmbedError as exc:  # the file's own fault; not a round's (those stop)
                    pending.error = pending.error or _reason(exc, path)
                    break
                self.chunk_seconds += time.perf_counter() - started
                self._queue(pending, len(pending.records), chunk)
                started = time.perf_counter()
        finally:
            self.chunk_seconds += time.perf_counter() - started
            pending.chunked = True
        if pending.error:
            self.rounds.drop(pending)
        elif not pending.records:
            pending.error = "no content to index (empty file?)"

    def _keep(self, old: FileRecord) -> None:
        """An unchanged file: nothing to embed; only new user metadata is recorded."""
        wanted = self.ctx.metadata
        if wanted is not None and not self.dry_run and dict(wanted) != dict(old.metadata or {}):
            self.catalog.set_file_metadata(old.path, wanted)
        self.unchanged.append(_show(old.path))
        self.done += 1

    def _chunks(self, todo: _Todo, path: str) -> Iterator[Chunk]:
        chunker = self.ctx.chunkers.for_part(todo.modality, pdf_as_text=todo.pdf_as_text)
        source: Part | str = todo.part if todo.part is not None else path
        yield from chunker.chunk(source)

    def _queue(self, pending: Pending, ord_: int, chunk: Chunk) -> None:
        content = chunk.content
        text = chunk_text(chunk)
        path_key = hashlib.sha256(pending.path.encode()).hexdigest()[:16]
        record = ChunkRecord(
            id=f"{path_key}-{pending.sha256[:12]}-{ord_:05d}",
            path=pending.path,
            ord=ord_,
            # a PDF read as text is still a PDF to the user (and to where={"modality": "pdf"}),
            # and a keyframe of a video is still video
            modality=pending.modality.value
            if pending.modality in (Modality.PDF, Modality.VIDEO)
            else chunk.modality.value,
            span=chunk.span,
            preview=" ".join(text.split())[:_PREVIEW_CHARS],
            content_hash=content_hash(content),
            metadata=plain_metadata(chunk.metadata),
            text=text,
        )
        pending.records.append(record)
        pending.vectors.append(None)
        pending.missing += 1
        self.rounds.queue(pending, ord_, content)

    def _commit_ready(self) -> None:
        still_open = []
        for pending in self.open_files:
            if not pending.chunked:
                still_open.append(pending)
            elif pending.error:
                self._fail(pending.path, pending.error)
            elif pending.missing == 0:
                self._commit(pending)
            else:
                still_open.append(pending)
        self.open_files = still_open

    def _commit(self, pending: Pending) -> None:
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
        (self.replaced if pending.existed else self.added).append(_show(pending.path))
        self.chunks += len(pending.records)
        self.done += 1

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
            if limits is not None:
                calls = self.planned_calls
                tokens = sum(line.tokens for line in self.planned)
                cost = self.estimated_cost()
        elif after is None and self.usage_before is None:
            # the embedder was never built, so nothing was embedded; a priced model cost nothing
            if limits is not None:
                calls, tokens, cost = 0, 0, 0.0
        elif after is not None:
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
            plan=self.planned,
            chunk_seconds=self.chunk_seconds,
            wait_seconds=self.rounds.wait_seconds,
        )
