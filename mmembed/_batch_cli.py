"""The batch side of the ``mmembed`` command: ``index --batch [--wait] [--resubmit]`` and
``jobs``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmembed._batch import BatchJob
    from mmembed._ingest_report import IndexReport
    from mmembed.index import Index

__all__ = ["add_index_options", "add_jobs_command", "batch_options", "cmd_jobs", "print_batch"]


def add_index_options(p: argparse.ArgumentParser) -> None:
    """``--batch``, ``--wait``, ``--resubmit`` and ``--poll`` on ``mmembed index``."""
    p.add_argument(
        "--batch",
        action="store_true",
        help="embed through Gemini's Batch API at half the price (results within 24 h): submit "
        "jobs and return; run the same command again to add finished results",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="with --batch: wait for the jobs, showing their states, and add their results",
    )
    p.add_argument(
        "--resubmit",
        action="store_true",
        help="with --batch: submit again the items of failed, cancelled or expired jobs",
    )
    p.add_argument(
        "--poll",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --wait: seconds between looks at the jobs (30)",
    )


def add_jobs_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """``mmembed jobs``."""
    j = sub.add_parser(
        "jobs",
        parents=[common],
        help="the index's Batch API jobs: their states, and what to do about them",
        description="Show the index's Batch API jobs (from mmembed index --batch). Open jobs are "
        "looked up first and the results of finished ones kept in the index's cache; the next "
        "mmembed index --batch adds them to the index without paying again.",
    )
    j.add_argument(
        "--no-refresh",
        action="store_true",
        help="only show what the index remembers; ask the service nothing",
    )


def batch_options(args: argparse.Namespace, fail: Callable[[str], Exception]) -> dict[str, Any]:
    """The keyword arguments of ``Index.add`` for the batch options given."""
    if not args.batch:
        if args.wait or args.resubmit:
            raise fail("--wait and --resubmit go with --batch (mmembed index DIR --batch --wait)")
        return {}
    if not args.poll > 0:
        raise fail(f"--poll takes a number of seconds > 0, got {args.poll}")
    show = None if args.json or args.quiet or not args.wait else _show_jobs
    return {
        "batch": True,
        "wait": args.wait,
        "resubmit": args.resubmit,
        "poll_seconds": args.poll,
        "show_jobs": show,
    }


def _show_jobs(jobs: list[BatchJob]) -> None:
    states: dict[str, int] = {}
    for job in jobs:
        states[job.state] = states.get(job.state, 0) + 1
    shown = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or "none open"
    print(f"mmembed: batch jobs: {shown}", file=sys.stderr, flush=True)


def print_batch(report: IndexReport) -> None:
    """The batch lines of a report (after its summary line), when it is a batch report."""
    from mmembed._batch_run import BatchReport

    if isinstance(report, BatchReport):
        for line in report.batch_lines():
            print(line)


def cmd_jobs(index: Index, args: argparse.Namespace) -> int:
    """``mmembed jobs``: one line per job (or JSON); exit 0."""
    try:
        jobs = index.jobs(refresh=not args.no_refresh)
    finally:
        index.close()
    if args.json:
        json.dump([job.to_dict() for job in jobs], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not jobs:
        print("no batch jobs (mmembed index DIR --batch submits some)", file=sys.stderr)
    for job in jobs:
        print(job)
    return 0
