"""One :meth:`Index.add` in batch mode: collect, pass, submit, and (when asked) wait and again.

See :mod:`mmembed._batch` for the parts: the job book in the catalog, the collector that stands
where the embedder would, submitting and collecting jobs.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmembed._batch import (
    PENDING_REASON,
    BatchCollector,
    BatchJob,
    Collected,
    JobBook,
    collect,
    wait_for_jobs,
)
from mmembed._ingest import IndexReport, IngestContext
from mmembed.errors import ConfigurationError
from mmembed.protocols import Embedder

if TYPE_CHECKING:
    from mmembed.embedders.gemini._batch import BatchClient
    from mmembed.index import Index

__all__ = ["BatchReport", "batch_client", "index_jobs", "run_batch"]

#: Passes one waiting run makes at most: items that keep failing inside jobs are resubmitted
#: this many times less one, then left to the next run.
MAX_PASSES = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchReport(IndexReport):
    """What one :meth:`Index.add` in batch mode did (an :class:`IndexReport` with its jobs).

    ``calls`` counts the jobs created; ``tokens`` and ``cost_usd`` are those of the results
    collected in this run, at the Batch API price.

    Attributes:
        pending: files waiting for a job's results (committed by a later batch run).
        submitted: names of the jobs created by this run.
        jobs: the index's jobs not collected yet, and those collected by this run.
        cost_by_modality: the results collected by this run, per modality: ``(tokens, cost in
            US dollars at the batch price)``.
    """

    pending: tuple[str, ...] = ()
    submitted: tuple[str, ...] = ()
    jobs: tuple[BatchJob, ...] = ()
    cost_by_modality: Mapping[str, tuple[int, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the :class:`IndexReport` fields, ``pending`` and ``jobs``."""
        out = IndexReport.to_dict(self)
        out["batch"] = True
        out["pending"] = list(self.pending)
        out["submitted"] = list(self.submitted)
        out["jobs"] = [job.to_dict() for job in self.jobs]
        out["cost_by_modality"] = {
            name: {"tokens": n, "cost_usd": round(usd, 6)}
            for name, (n, usd) in sorted(self.cost_by_modality.items())
        }
        return out

    def batch_lines(self) -> list[str]:
        """What the batch run adds to the summary: files waiting, jobs and their advice."""
        lines = []
        if self.pending or self.submitted:
            lines.append(
                f"batch: {len(self.pending)} files waiting for results; "
                f"{len(self.submitted)} jobs submitted"
            )
        if self.cost_by_modality:
            lines.append(
                "batch price of the results collected: "
                + ", ".join(
                    f"{name} {n:,} tokens ${usd:.4f}"
                    for name, (n, usd) in sorted(self.cost_by_modality.items())
                )
            )
        return lines + [f"  job {job}" for job in self.jobs]

    def __str__(self) -> str:
        return "\n".join([IndexReport.__str__(self), *self.batch_lines()])


def batch_client(index: Index) -> tuple[Any, BatchClient]:
    """The index's cached embedder and a Batch API client for its Gemini embedder.

    Raises:
        ConfigurationError: the index does not embed with Gemini, or has no cache.
    """
    from mmembed.cache import CachedEmbedder
    from mmembed.embedders.gemini import GeminiEmbedder
    from mmembed.embedders.gemini._batch import BatchClient

    embedder = index.embedder
    if not isinstance(embedder, GeminiEmbedder):
        raise ConfigurationError(
            f"batch mode uses Gemini's Batch API; this index embeds with {embedder.model!r}. "
            "Index interactively (leave out --batch / batch=True)"
        )
    front = index._embed_with
    if not isinstance(front, CachedEmbedder):
        raise ConfigurationError(
            "batch mode keeps the jobs' results in the index's embedding cache; open the index "
            "with cache=True"
        )
    return front, BatchClient(embedder)


def index_jobs(index: Index, *, refresh: bool) -> list[BatchJob]:
    """What :meth:`Index.jobs` answers (the caller holds the index's writer lock)."""
    book = JobBook(index._catalog.path)
    try:
        if refresh and book.jobs(open_only=True):
            _collect(book, *batch_client(index))
        return book.jobs()
    finally:
        book.close()


def _collect(book: JobBook, front: Any, client: BatchClient) -> Collected:
    """Collect the open jobs into the cache in front of the index's embedder."""
    embedder = front.embedder
    return collect(
        book,
        client,
        front.cache,
        model=embedder.model,
        dimensions=embedder.dimensions,
        limits=embedder.limits,
    )


def run_batch(
    index: Index,
    one_pass: Callable[[IngestContext, bool], IndexReport],
    **options: Any,
) -> BatchReport:
    """Collect finished jobs, run a pass that commits what the cache holds and queues the rest,
    submit it; with ``wait``, wait for the jobs and go again (at most :data:`MAX_PASSES`).

    ``one_pass(context, first)`` runs one ingest pass with ``context`` (``first``: the budget
    guard applies).
    """
    front, client = batch_client(index)
    embedder = front.embedder
    limits = embedder.limits
    book = JobBook(index._catalog.path)
    try:
        return _run(index, one_pass, book, front, client, embedder, limits, **options)
    finally:
        book.close()


def _run(
    index: Index,
    one_pass: Callable[[IngestContext, bool], IndexReport],
    book: JobBook,
    front: Any,
    client: BatchClient,
    embedder: Any,
    limits: Any,
    *,
    metadata: Any,
    wait: bool,
    resubmit: bool,
    poll_seconds: float,
    wait_timeout: float | None,
    show_jobs: Callable[[list[BatchJob]], None] | None,
    started: float,
) -> BatchReport:
    from mmembed.cache import CachedEmbedder

    known_before = {job.id for job in book.jobs(open_only=True)}
    if resubmit:
        book.release()
    got = Collected()

    def look() -> list[BatchJob]:
        got.add(_collect(book, front, client))
        return book.jobs(open_only=True)

    reports: list[IndexReport] = []
    submitted: list[str] = []
    for n in range(MAX_PASSES):
        look()
        collector = BatchCollector(embedder, client, book, limits)
        behind_cache: Embedder = CachedEmbedder(collector, front.cache)
        context = dataclasses.replace(
            index._ingest_context(),
            embedder=functools.partial(_same, behind_cache),
            metadata=metadata,
            batch=True,
        )
        try:
            report = one_pass(context, n == 0)
        finally:
            book.clear_waiting()
        names = collector.flush()  # a pass stopped by an error submits nothing more
        reports.append(report)
        submitted += names
        waiting = [p for p in report.failed if p.reason == PENDING_REASON]
        if not wait or not waiting:
            break
        active = {"SUBMITTING", "PENDING", "RUNNING"}
        if not names and not any(j.state in active for j in book.jobs(open_only=True)):
            break  # only stopped jobs hold the rest: the user decides (resubmit or not)
        if not wait_for_jobs(look, poll_seconds=poll_seconds, timeout=wait_timeout, show=show_jobs):
            break
    ours = set(submitted) | set(got.finished)
    jobs = [j for j in book.jobs() if not j.collected or j.name in ours or j.id in known_before]
    return _merge(reports, submitted, jobs, got, time.perf_counter() - started)


def _merge(
    reports: Sequence[IndexReport],
    submitted: list[str],
    jobs: list[BatchJob],
    got: Collected,
    seconds: float,
) -> BatchReport:
    """One report for the passes of a batch run."""
    last = reports[-1]
    added = _union(r.added for r in reports)
    replaced = _union(r.replaced for r in reports)
    done = set(added) | set(replaced)
    return BatchReport(
        added=tuple(added),
        unchanged=tuple(p for p in reports[0].unchanged if p not in done),
        replaced=tuple(replaced),
        removed=tuple(_union(r.removed for r in reports)),
        failed=tuple(p for p in last.failed if p.reason != PENDING_REASON),
        skipped=last.skipped,
        ignored=last.ignored,
        chunks=sum(r.chunks for r in reports),
        calls=len(submitted),
        tokens=got.tokens,
        cost_usd=got.cost_usd,
        seconds=seconds,
        plan=reports[0].plan,
        chunk_seconds=sum(r.chunk_seconds for r in reports),
        wait_seconds=sum(r.wait_seconds for r in reports),
        pending=tuple(p.path for p in last.failed if p.reason == PENDING_REASON),
        submitted=tuple(submitted),
        jobs=tuple(jobs),
        cost_by_modality=dict(got.by_modality),
    )


def _same(embedder: Embedder) -> Embedder:
    return embedder


def _union(groups: Any) -> list[str]:
    return list(dict.fromkeys(p for group in groups for p in group))
