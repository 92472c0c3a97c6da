"""What one :meth:`Index.add` run reports: the report, the problems, the progress events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmembed._estimate import PlanLine

__all__ = ["FileProblem", "IndexProgress", "IndexReport", "plan_summary"]


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
            lines += plan_table(self.plan)
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


def plan_table(plan: tuple[PlanLine, ...]) -> list[str]:
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


def plan_summary(plan: tuple[PlanLine, ...]) -> str:
    parts = [f"{line.label} ${line.cost_usd:,.2f}" for line in plan if line.cost_usd is not None]
    return ", ".join(parts) or "nothing priced"
