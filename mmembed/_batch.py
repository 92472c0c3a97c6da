"""Batch mode of :meth:`Index.add`: the Gemini Batch API, at half price, resumable.

One batch run is a loop of ordinary ingest passes with one difference: the embedder behind the
index's cache is a :class:`BatchCollector`, which checks the items it is given (the same checks,
the same :class:`~mmembed.errors.InputLimitError` as interactive mode), queues those not already
in a job, and answers "waiting" so their files are not committed yet. After the pass the queue
is submitted as jobs, each recorded in the catalog (``batch_jobs``, ``batch_items``) *before* it
is created, under an id sent as its display name, so a process killed at any point never creates
a job the catalog cannot find again. A later pass first asks the service about every open job;
a succeeded job's vectors, read through the interactive reply check, go into the index's cache,
so the next pass commits the files from the cache in order and nothing is paid twice. Items
that failed inside a job are queued again by the next pass; a job that failed, expired or was
cancelled keeps its items out of new jobs until the user asks to resubmit them.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mmembed._bases import WrapsEmbedder
from mmembed._catalog import _Tx
from mmembed._checks import check_rows
from mmembed.content import Embeddable, Modality, Task, as_content, content_hash, main_modality
from mmembed.errors import ConfigurationError, EmbeddingError, ProviderError, StoreError
from mmembed.limits import ModelLimits, cost_usd, estimate_item_tokens, inline_bytes

if TYPE_CHECKING:
    from mmembed.cache import EmbeddingCache
    from mmembed.embedders.gemini._batch import BatchClient

__all__ = ["PENDING_REASON", "BatchCollector", "BatchJob", "JobBook", "collect"]

logger = logging.getLogger("mmembed.batch")

#: The reason a file waits for a batch job (how a batch run tells it from a failure).
PENDING_REASON = "waiting for its Batch API job"
#: The most items one job takes (Google allows far more; smaller jobs come back sooner and a
#: failed one costs less to resubmit).
JOB_ITEMS = 5000
#: Media bytes (as sent, base64) queued before they are submitted in the middle of a pass.
JOB_BYTES = 64 << 20
_STOPPED = ("FAILED", "CANCELLED", "EXPIRED")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchJob:
    """A Batch API job of an index, as its catalog remembers it.

    Attributes:
        id: mmembed's id of the job, sent as its display name.
        name: the service's name (``batches/…``); ``None`` while it is being created.
        state: ``SUBMITTING``, ``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``,
            ``CANCELLED`` or ``EXPIRED``.
        task: the task its items were embedded for.
        items: how many items it holds.
        failed_items: items that failed inside it (resubmitted by the next batch run).
        message: what the service said when it ended without results.
        collected: its results are in the cache (succeeded), or its items were released for
            resubmission (failed, cancelled, expired).
        tokens: input tokens of its items (as reported, or estimated).
        cost_usd: their price at the Batch API rate.
        created, updated: Unix times.
    """

    id: str
    name: str | None
    state: str
    task: str
    items: int
    failed_items: int = 0
    message: str = ""
    collected: bool = False
    tokens: int = 0
    cost_usd: float = 0.0
    created: float = 0.0
    updated: float = 0.0

    @property
    def advice(self) -> str:
        """What to do about the job now, in one sentence ("" when nothing)."""
        if self.collected:
            return ""
        if self.state in ("SUBMITTING", "PENDING", "RUNNING"):
            return "wait: run `mmembed index --batch` again (or `mmembed jobs`) later"
        if self.state in _STOPPED:
            what = {"EXPIRED": "expired before it ran", "CANCELLED": "was cancelled"}.get(
                self.state, f"failed ({self.message or 'no reason given'})"
            )
            return (
                f"the job {what}: its {self.items} items were not embedded. Resubmit them with "
                "`mmembed index DIR --batch --resubmit` (Index.add(..., batch=True, "
                "resubmit=True)), or embed them now with `mmembed index DIR`"
            )
        return ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with :attr:`advice`."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "task": self.task,
            "items": self.items,
            "failed_items": self.failed_items,
            "message": self.message,
            "collected": self.collected,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "created": self.created,
            "updated": self.updated,
            "advice": self.advice,
        }

    def __str__(self) -> str:
        name = self.name or self.id
        tail = f"; {self.failed_items} failed" if self.failed_items else ""
        line = f"{name}: {self.state}, {self.items} items{tail}"
        return f"{line} — {self.advice}" if self.advice else line


_SELECT_JOBS = (
    "SELECT id, name, state, task, items, failed_items, message, settled, tokens, cost_usd, "
    "created, updated FROM batch_jobs ORDER BY created, id"
)
_SELECT_OPEN_JOBS = _SELECT_JOBS.replace(" ORDER BY", " WHERE settled = 0 ORDER BY")


class JobBook:
    """The jobs of one index, in its catalog, on a connection of their own.

    Safe to use from any thread (one lock): a batch pass submits jobs from its embedding worker
    while the calling thread commits files through the catalog's own connection.
    """

    def __init__(self, catalog: str | os.PathLike[str]) -> None:
        self._path = Path(catalog)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self._path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"index catalog {self._path}: {exc}") from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"index catalog {self._path}: {exc}") from exc

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``statements`` in one transaction."""
        with self._lock:
            try:
                with _Tx(self._db, self._path):
                    for sql, params in statements:
                        self._db.execute(sql, tuple(params))
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"index catalog {self._path}: {exc}") from exc

    def jobs(self, *, open_only: bool = False) -> list[BatchJob]:
        """Every job, oldest first (``open_only``: those not collected yet)."""
        return [_job(r) for r in self._rows(_SELECT_OPEN_JOBS if open_only else _SELECT_JOBS)]

    def held_hashes(self) -> set[str]:
        """Hashes of items in jobs not collected: never put into another job."""
        rows = self._rows(
            "SELECT DISTINCT i.hash FROM batch_items AS i JOIN batch_jobs AS j ON j.id = i.job "
            "WHERE j.settled = 0"
        )
        return {str(r[0]) for r in rows}

    def items(self, job_id: str) -> list[tuple[str, str, int]]:
        """(hash, modality, estimated tokens) of a job's items, in order."""
        rows = self._rows(
            "SELECT hash, modality, tokens FROM batch_items WHERE job = ? ORDER BY ord", (job_id,)
        )
        return [(str(h), str(m), int(t)) for h, m, t in rows]

    def begin(self, job_id: str, task: Task, items: Sequence[tuple[str, str, int]]) -> None:
        """Record a job about to be created, with its items."""
        now = time.time()
        insert = "INSERT INTO batch_items (job, ord, hash, modality, tokens) VALUES (?,?,?,?,?)"
        self._write(
            [
                (
                    "INSERT INTO batch_jobs (id, name, state, task, items, created, updated) "
                    "VALUES (?, NULL, 'SUBMITTING', ?, ?, ?, ?)",
                    (job_id, str(task), len(items), now, now),
                ),
                *((insert, (job_id, i, h, m, t)) for i, (h, m, t) in enumerate(items)),
            ]
        )

    def created(self, job_id: str, name: str) -> None:
        """The service created the job under ``name``."""
        self.update(job_id, "PENDING", name=name)

    def forget(self, job_id: str) -> None:
        """The job was never created: its items are free again."""
        self._write(
            [
                ("DELETE FROM batch_items WHERE job = ?", (job_id,)),
                ("DELETE FROM batch_jobs WHERE id = ?", (job_id,)),
            ]
        )

    def update(
        self,
        job_id: str,
        state: str,
        *,
        name: str | None = None,
        message: str = "",
        settled: bool = False,
        failed_items: int = 0,
        tokens: int = 0,
        cost: float = 0.0,
    ) -> None:
        """Record what the service said about a job (and whether it is collected)."""
        self._write(
            [
                (
                    "UPDATE batch_jobs SET state = ?, name = COALESCE(?, name), message = ?, "
                    "settled = ?, failed_items = ?, tokens = ?, cost_usd = ?, updated = ? "
                    "WHERE id = ?",
                    (
                        state,
                        name,
                        message,
                        int(settled),
                        failed_items,
                        tokens,
                        cost,
                        time.time(),
                        job_id,
                    ),
                )
            ]
        )

    def clear_waiting(self) -> None:
        """Forget the failure records of files that only wait for a job (they are not failed)."""
        self._write(
            [("DELETE FROM files WHERE status = 'failed' AND reason = ?", (PENDING_REASON,))]
        )

    def release(self) -> list[BatchJob]:
        """Mark every failed, cancelled or expired job collected, so its items are resubmitted."""
        stopped = [j for j in self.jobs(open_only=True) if j.state in _STOPPED]
        now = time.time()
        self._write(
            [
                ("UPDATE batch_jobs SET settled = 1, updated = ? WHERE id = ?", (now, j.id))
                for j in stopped
            ]
        )
        return stopped

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def _job(row: Sequence[Any]) -> BatchJob:
    return BatchJob(
        id=str(row[0]),
        name=None if row[1] is None else str(row[1]),
        state=str(row[2]),
        task=str(row[3]),
        items=int(row[4]),
        failed_items=int(row[5]),
        message=str(row[6]),
        collected=bool(row[7]),
        tokens=int(row[8]),
        cost_usd=float(row[9]),
        created=float(row[10]),
        updated=float(row[11]),
    )


class _Waiting(EmbeddingError):
    """Items queued for (or already in) a batch job: their file commits on a later pass."""


@dataclass(slots=True)
class _Queued:
    item: Embeddable
    modality: str
    tokens: int


class BatchCollector(WrapsEmbedder):
    """Stands where the embedder would, behind the cache: checks items and queues them.

    Items in a job not collected yet are not queued again. The queue is submitted as jobs when
    it holds :data:`JOB_ITEMS` items or :data:`JOB_BYTES` media bytes (so memory stays bounded
    on a large archive) and when the pass ends (:meth:`flush`). Every call ends with the
    "waiting" error, so the ingest pass keeps the files of these items uncommitted.
    """

    __slots__ = ("_book", "_bytes", "_client", "_held", "_limits", "_lock", "_queued", "submitted")

    def __init__(
        self, embedder: Any, client: BatchClient, book: JobBook, limits: ModelLimits
    ) -> None:
        self._embedder = embedder
        self._client = client
        self._book = book
        self._held = book.held_hashes()
        self._limits = limits
        self._lock = threading.Lock()
        self._queued: dict[Task, dict[str, _Queued]] = {}
        self._bytes = 0
        #: Names of the jobs created so far.
        self.submitted: list[str] = []

    @property
    def dimensions(self) -> int:
        """The wrapped embedder's width."""
        return int(self._embedder.dimensions)

    @property
    def concurrency(self) -> int:
        """One: queuing is local work."""
        return 1

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Check ``items`` as the embedder would and queue them; always raises the wait."""
        self._client.check(items, task=task)
        found = [(content_hash(item), item) for item in items]
        with self._lock:
            queue = self._queued.setdefault(Task(task), {})
            for h, item in found:
                if h in self._held or h in queue:
                    continue
                content = as_content(item)
                tokens = sum(estimate_item_tokens(item, self._limits).values())
                queue[h] = _Queued(item, main_modality(content).value, tokens)
                self._bytes += inline_bytes(content)
            if self._bytes >= JOB_BYTES or sum(map(len, self._queued.values())) >= JOB_ITEMS:
                self._flush()
        raise _Waiting(PENDING_REASON)

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Batch mode runs on the calling thread only."""
        raise ConfigurationError("batch mode has no async path; call Index.add(batch=True)")

    def flush(self) -> list[str]:
        """Submit what is queued; returns the names of every job this collector created."""
        with self._lock:
            self._flush()
            return list(self.submitted)

    def _flush(self) -> None:
        """Create jobs for everything queued, each recorded before it is created.

        A crash between recording and naming a job leaves a ``SUBMITTING`` row that
        :func:`collect` resolves by the job's id (its display name at the service); an error
        leaves the items not submitted yet in the queue.
        """
        from mmembed.embedders.gemini._batch import new_job_id

        for task, queue in self._queued.items():
            while queue:
                part = list(itertools.islice(queue.items(), JOB_ITEMS))
                job_id = new_job_id()
                self._book.begin(job_id, task, [(h, q.modality, q.tokens) for h, q in part])
                name = self._client.submit([q.item for _, q in part], task=task, job_id=job_id)
                self._book.created(job_id, name)
                self.submitted.append(name)
                logger.info("batch job %s: %d items submitted", name, len(part))
                for h, _ in part:
                    self._held.add(h)
                    del queue[h]
        self._bytes = 0


@dataclass(slots=True)
class Collected:
    """What one look at the open jobs found."""

    finished: list[str] = field(default_factory=list)  # jobs that ended since the last look
    vectors: int = 0  # vectors put into the cache
    tokens: int = 0
    cost_usd: float = 0.0
    #: tokens and cost of the collected items by modality, at the batch price
    by_modality: dict[str, tuple[int, float]] = field(default_factory=dict)

    def add(self, other: Collected) -> None:
        """Count ``other`` in as well."""
        self.finished += other.finished
        self.vectors += other.vectors
        self.tokens += other.tokens
        self.cost_usd += other.cost_usd
        for name, (n, usd) in other.by_modality.items():
            had = self.by_modality.get(name, (0, 0.0))
            self.by_modality[name] = (had[0] + n, had[1] + usd)


def collect(
    book: JobBook,
    client: BatchClient,
    cache: EmbeddingCache,
    *,
    model: str,
    dimensions: int,
    limits: ModelLimits,
) -> Collected:
    """Ask the service about every open job; put the results of succeeded ones into the cache."""
    out = Collected()
    for job in book.jobs(open_only=True):
        if job.name is None:  # created or not before a crash: the service knows
            name = client.find(job.id)
            if name is None:
                book.forget(job.id)
                continue
            book.created(job.id, name)
            job = BatchJob(**{**_fields(job), "name": name, "state": "PENDING"})
        if job.state in _STOPPED:
            continue  # reported; its items wait for a resubmission
        assert job.name is not None
        try:
            reply = client.get(job.name)
        except ProviderError as exc:
            if exc.status_code != 404:
                raise
            # deleted at the service (or by its retention): its items can only be resubmitted
            book.update(job.id, "FAILED", message="the service no longer knows this job")
            continue
        if reply.state in ("PENDING", "RUNNING"):
            if reply.state != job.state:
                book.update(job.id, reply.state)
            continue
        out.finished.append(job.name)
        if reply.state != "SUCCEEDED":
            book.update(job.id, reply.state, message=reply.message or reply.state.lower())
            continue
        items = book.items(job.id)
        if len(reply.results) != len(items):
            book.update(
                job.id,
                "FAILED",
                message=f"returned {len(reply.results)} results for {len(items)} items",
            )
            continue
        good = [i for i, r in enumerate(reply.results) if not isinstance(r, str)]
        if good:
            rows = np.stack([np.asarray(reply.results[i], dtype=np.float32) for i in good])
            rows = check_rows(rows, len(good), dimensions, who=model)
            cache.put_many(
                [items[i][0] for i in good], rows, model=model, dimensions=dimensions, task=job.task
            )
        tokens: dict[Modality, int] = {}
        for i in good:
            reported = reply.tokens[i] if i < len(reply.tokens) else 0
            modality = Modality(items[i][1])
            tokens[modality] = tokens.get(modality, 0) + (reported or items[i][2])
        cost = cost_usd(tokens, limits, batch=True)
        total = sum(tokens.values())
        failed = len(items) - len(good)
        reasons = sorted({r for r in reply.results if isinstance(r, str)})
        book.update(
            job.id,
            "SUCCEEDED",
            settled=True,
            failed_items=failed,
            tokens=total,
            cost=cost,
            message="; ".join(reasons)[:500],
        )
        out.vectors += len(good)
        out.tokens += total
        out.cost_usd += cost
        for modality, n in tokens.items():
            had = out.by_modality.get(modality.value, (0, 0.0))
            usd = cost_usd({modality: n}, limits, batch=True)
            out.by_modality[modality.value] = (had[0] + n, had[1] + usd)
    return out


def _fields(job: BatchJob) -> dict[str, Any]:
    return {name: getattr(job, name) for name in BatchJob.__dataclass_fields__}


def open_states(jobs: Iterable[BatchJob]) -> set[str]:
    """The states of the jobs that are not collected."""
    return {j.state for j in jobs if not j.collected}


def wait_for_jobs(
    look: Callable[[], list[BatchJob]],
    *,
    poll_seconds: float,
    timeout: float | None,
    show: Callable[[list[BatchJob]], None] | None,
) -> bool:
    """Look at the open jobs every ``poll_seconds`` until none is pending or running.

    Returns False when ``timeout`` passed first.
    """
    started = time.monotonic()
    while True:
        jobs = look()
        if show is not None:
            show(jobs)
        if not open_states(jobs) & {"SUBMITTING", "PENDING", "RUNNING"}:
            return True
        if timeout is not None and time.monotonic() - started > timeout:
            return False
        time.sleep(poll_seconds)
