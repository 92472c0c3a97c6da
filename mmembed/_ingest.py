"""One :meth:`Index.add` run: walk, decide, chunk, embed in rounds, commit file by file.

The run sees its index only through an :class:`IngestContext` (the catalog, the embedder to
call, the chunkers, the sizes): nothing here reaches into the ``Index`` itself.
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mmembed._catalog import Catalog, ChunkRecord, FileRecord
from mmembed._checks import check_rows
from mmembed._estimate import PlanLine, Planner
from mmembed._files import sha256_file
from mmembed._index_config import Chunkers
from mmembed._sniff import check_text_block
from mmembed._threads import worker_pool
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
    BudgetExceededError,
    ConfigurationError,
    EmbeddingError,
    InputLimitError,
    MMEmbedError,
    RateLimitError,
    UnsupportedMediaError,
)
from mmembed.limits import ModelLimits
from mmembed.protocols import Chunk, Embedder

if TYPE_CHECKING:
    from mmembed.chunkers.text import TextChunker

__all__ = ["FileProblem", "IndexProgress", "IndexReport", "Ingest", "IngestContext", "PlanLine"]

_PREVIEW_CHARS = 240
# media bytes in one round: about what one request may carry inline (20 MB after base64)
_ROUND_BYTES = 15 << 20
# media bytes in all the rounds in flight together: memory stays bounded whatever the input
# (each byte is held about four times on its way out: raw, base64, the JSON body, the socket)
_IN_FLIGHT_BYTES = 48 << 20


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
        plan: the estimate before anything was sent, one line per modality and per video
            strategy (chunks, calls, tokens, cost); always made in a dry run, and in a run with
            ``max_cost``.
        chunk_seconds: time spent reading and cutting files.
        wait_seconds: time spent waiting for the embedding service with nothing left to cut
            (what chunking could not hide).
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
    plan: tuple[PlanLine, ...] = ()
    chunk_seconds: float = 0.0
    wait_seconds: float = 0.0

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
            "chunk_seconds": round(self.chunk_seconds, 3),
            "wait_seconds": round(self.wait_seconds, 3),
            "plan": [line.to_dict() for line in self.plan],
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
        if self.plan and self.dry_run:
            lines += _plan_table(self.plan)
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
    """A file being indexed: its chunks, and their vectors as rounds come back."""

    path: str
    stat: os.stat_result
    sha256: str
    modality: Modality
    existed: bool
    records: list[ChunkRecord] = field(default_factory=list)
    vectors: list[NDArray[np.float32] | None] = field(default_factory=list)
    missing: int = 0  # vectors not back yet
    chunked: bool = False  # every chunk has been cut and queued
    error: str = ""


@dataclass(slots=True)
class _Round:
    """Chunks of one or more files, embedded together in one ``embed`` call."""

    entries: list[tuple[_Pending, int]] = field(default_factory=list)
    items: list[Embeddable] = field(default_factory=list)
    nbytes: int = 0


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
        self.wait_seconds = 0.0
        self.open_files: list[_Pending] = []
        self.round = _Round()
        self.in_flight: dict[Future[Any], _Round] = {}
        self.in_flight_bytes = 0
        self.in_flight_items = 0
        self.pool: ThreadPoolExecutor | None = None
        self.lanes = 1
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
                f"this run is estimated to cost ${cost:,.2f} ({_plan_summary(self.planned)}), "
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
                self._collect(block=False)
                self._tick(total, path)
            self._send_round()
            while self.in_flight:
                self._collect(block=True)
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
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self._collect(block=False, final=True)
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
            part = _open_part(path, streamed=self._text_chunker())
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
        pending = _Pending(
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
            self._drop_queued(pending)
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

    def _queue(self, pending: _Pending, ord_: int, chunk: Chunk) -> None:
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
            metadata=_plain_metadata(chunk.metadata),
            text=text,
        )
        pending.records.append(record)
        pending.vectors.append(None)
        pending.missing += 1
        self.round.entries.append((pending, ord_))
        self.round.items.append(content)
        self.round.nbytes += _nbytes(content)
        if len(self.round.items) >= self._round_items() or self.round.nbytes >= _ROUND_BYTES:
            self._send_round()

    def _round_items(self) -> int:
        per_call = self.ctx.limits.max_items_per_call if self.ctx.limits else self.ctx.batch_size
        return max(1, min(self.ctx.batch_size, per_call))

    def _drop_queued(self, pending: _Pending) -> None:
        keep = [i for i, (p, _) in enumerate(self.round.entries) if p is not pending]
        if len(keep) == len(self.round.entries):
            return
        self.round = _Round(
            entries=[self.round.entries[i] for i in keep],
            items=[self.round.items[i] for i in keep],
            nbytes=sum(_nbytes(self.round.items[i]) for i in keep),
        )

    # -- rounds -----------------------------------------------------------------------------

    def _send_round(self) -> None:
        current, self.round = self.round, _Round()
        if not current.items:
            return
        if self.pool is None:  # the embedder is built only once something needs embedding
            _map_large_buffers()
            self.lanes = _lanes(self.ctx.embedder)
            self.pool = worker_pool(self.lanes, "mmembed-ingest")
        # bounded: calls at once, media bytes, and chunks (what a killed run can lose)
        while self.in_flight and (
            len(self.in_flight) >= self.lanes
            or self.in_flight_bytes + current.nbytes > _IN_FLIGHT_BYTES
            or self.in_flight_items + len(current.items) > self.ctx.batch_size
        ):
            self._collect(block=True)
        future = self.pool.submit(self._embed_round, current.entries, current.items)
        self.in_flight[future] = _Round(entries=current.entries, nbytes=current.nbytes)
        self.in_flight_bytes += current.nbytes
        self.in_flight_items += len(current.entries)

    def _collect(self, *, block: bool, final: bool = False) -> None:
        """Apply the rounds that came back and commit the files they complete.

        ``block`` waits for at least one round; ``final`` (the run is ending, perhaps on an
        error) keeps what succeeded and raises nothing.
        """
        if block and self.in_flight:
            started = time.perf_counter()
            wait(list(self.in_flight), return_when=FIRST_COMPLETED)
            self.wait_seconds += time.perf_counter() - started
        for future in [f for f in self.in_flight if f.done()]:
            sent = self.in_flight.pop(future)
            self.in_flight_bytes -= sent.nbytes
            self.in_flight_items -= len(sent.entries)
            if final and (future.cancelled() or future.exception() is not None):
                continue
            vectors, errors = future.result()
            for j, (pending, ord_) in enumerate(sent.entries):
                reason = errors.get(id(pending))
                if reason is not None:
                    pending.error = pending.error or reason
                elif vectors[j] is not None and pending.vectors[ord_] is None:
                    pending.vectors[ord_] = vectors[j]
                    pending.missing -= 1
            _release_freed_memory()
        self._commit_ready()

    def _embed_round(
        self, entries: list[tuple[_Pending, int]], items: list[Embeddable]
    ) -> tuple[list[NDArray[np.float32] | None], dict[int, str]]:
        """Embed one round (in a worker thread): a vector per item, or a reason per file."""
        try:
            vectors = self.ctx.embedder().embed(items, task=Task.DOCUMENT)
            rows = check_rows(vectors, len(items), self.ctx.dimensions, who=self.ctx.model)
            return list(rows), {}
        except (AuthenticationError, RateLimitError):
            raise  # every other file would fail the same way: stop, keeping what is committed
        except (EmbeddingError, InputLimitError, UnsupportedMediaError) as exc:
            files = {id(p): p for p, _ in entries}
            if len(files) == 1:
                return [None] * len(items), {id(entries[0][0]): _reason(exc, entries[0][0].path)}
        # find the culprit: embed each half of the round's files, and halve again where a half
        # fails; a bad file is found in about 2*log2(files) calls, and the replies that came
        # back are in the cache, so no answered item is paid for again
        order = list(dict.fromkeys(id(p) for p, _ in entries))
        first = set(order[: len(order) // 2])
        out: list[NDArray[np.float32] | None] = [None] * len(items)
        errors: dict[int, str] = {}
        for in_first in (True, False):
            positions = [j for j, (p, _) in enumerate(entries) if (id(p) in first) == in_first]
            got, bad = self._embed_round(
                [entries[j] for j in positions], [items[j] for j in positions]
            )
            errors.update(bad)
            for j, vector in zip(positions, got, strict=True):
                out[j] = vector
        return out, errors

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
            wait_seconds=self.wait_seconds,
        )


_trimmed_at = 0.0
# glibc's mallopt option for the size from which blocks are mapped on their own
_M_MMAP_THRESHOLD = -3


def _release_freed_memory() -> None:
    """Give memory freed by the rounds back to the system, at most once a second.

    A round's media pass through several large buffers (bytes, base64, the request body) on
    worker threads; glibc keeps what they free in per-thread arenas, so without this the
    process's memory settles at several rounds' worth per thread. ``malloc_trim`` returns it.
    """
    global _trimmed_at
    now = time.monotonic()
    if now - _trimmed_at < 1.0:
        return
    _trimmed_at = now
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _map_large_buffers() -> None:
    """Have glibc map every buffer of 1 MiB or more on its own, and unmap it when freed.

    By default glibc raises that threshold each time such a buffer is freed (up to 32 MiB),
    after which media buffers come from the per-thread heaps and stay there: measured on the
    course benchmark, the indexing process kept hundreds of MB more. A fixed threshold keeps
    memory at what is in use. Process-wide, and harmless to everything else (large buffers
    cost one ``mmap`` each).
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


@functools.cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return None
    return libc


def _lanes(embedder: Callable[[], Embedder]) -> int:
    """Rounds in flight at once: as many calls as the embedder sends at once (1 if unknown)."""
    found: object = embedder()
    while found is not None:
        lanes = getattr(found, "concurrency", None)
        if isinstance(lanes, int) and lanes > 0:
            return lanes
        found = getattr(found, "embedder", None)  # look through wrappers
    return 1


def _open_part(path: str, *, streamed: TextChunker | None) -> Part | None:
    """The file as a part, by its bytes; ``None`` for a text file the text chunker streams.

    A streamed text file is checked here, block by block, to be within the chunker's size limit,
    UTF-8 and free of NUL bytes, so a file that is not is skipped before any of it is sent.
    """
    if streamed is not None:
        from mmembed._sniff import HEAD_BYTES, sniff
        from mmembed.content import modality_of

        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
        mime = sniff(head)
        if mime and modality_of(mime) is Modality.TEXT:
            streamed.check_size(path, path)
            _check_utf8(path)
            return None
    return load(path)


def _check_utf8(path: str) -> None:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            check_text_block(block, offset, path)
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise UnsupportedMediaError(
                    f"{path}: looks like text but is not valid UTF-8 (byte {offset + exc.start}); "
                    "re-encode it as UTF-8"
                ) from exc
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise UnsupportedMediaError(
                f"{path}: looks like text but ends inside a UTF-8 character; re-encode it as UTF-8"
            ) from exc


def _plan_table(plan: tuple[PlanLine, ...]) -> list[str]:
    rows = [("", "files", "chunks", "calls", "tokens", "cost")]
    for line in plan:
        rows.append(
            (
                line.label,
                f"{line.files:,}",
                f"{line.chunks:,}",
                f"~{line.calls:,}",
                f"~{line.tokens:,}",
                "" if line.cost_usd is None else f"~${line.cost_usd:,.2f}",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(6)]
    out = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [row[c].rjust(widths[c]) for c in range(1, 6)]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _plan_summary(plan: tuple[PlanLine, ...]) -> str:
    parts = [f"{line.label} ${line.cost_usd:,.2f}" for line in plan if line.cost_usd is not None]
    return ", ".join(parts) or "nothing priced"


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
