"""What the ``mmembed`` command prints besides results: errors and notices on stderr, the
report of an index run (failures in plain words, skipped files grouped by why) and the
progress bar."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any, TextIO

from mmembed._batch_cli import print_batch
from mmembed._files import printable

__all__ = ["Bar", "error", "notice", "plain_reason", "print_report", "progress_bar"]


def error(message: str) -> None:
    # one line: a message that says what to do, never a traceback
    print(f"mmembed: error: {printable(' '.join(message.split()))}", file=sys.stderr)


def notice(message: str) -> None:
    print(f"mmembed: {printable(message)}", file=sys.stderr)


# "(AttributeError: 'NoneType' object has no attribute 'x')", "[Errno 1094995529] ": what a
# decoder said, in Python's words; the report keeps it (--json), the terminal gets the sentence
_PY_DETAIL = re.compile(
    r" ?\((?:[A-Za-z_.]*(?:Error|Exception|Warning)): ([^()]*(?:\([^()]*\)[^()]*)*)\)"
)
_ERRNO = re.compile(r"\[Errno -?\d+\] ")
_PY_WORDS = re.compile(
    r"NoneType|object has no attribute|object is not|not subscriptable|positional argument|"
    r"keyword argument|index out of range|not iterable|<[\w.]+ object at 0x[0-9a-f]+>"
)


def plain_reason(reason: str) -> str:
    """A failure reason without Python internals: no exception class names, no errno numbers,
    no object reprs; a decoder's own words are kept when they mean something to a person."""

    def detail(match: re.Match[str]) -> str:
        said = _ERRNO.sub("", match.group(1)).strip()
        return "" if not said or _PY_WORDS.search(said) else f" ({said})"

    return _ERRNO.sub("", _PY_DETAIL.sub(detail, reason))


# how many skipped files of one kind are named before the rest are counted
_SHOWN_SKIPS = 3
_OLD_HINT = "; set GEMINI_API_KEY and use a Gemini index to include it"


def print_report(report: Any, args: argparse.Namespace) -> None:
    """The summary and the failures on stdout; skipped files, grouped by why, on stderr."""
    head = str(report).splitlines()[0]
    print(
        "\n".join(
            [
                head,
                *(
                    f"  failed: {printable(p.path)}: {printable(plain_reason(p.reason))}"
                    for p in report.failed
                ),
            ]
        )
    )
    print_batch(report)
    if args.quiet or not report.skipped:
        return
    groups: dict[str, list[str]] = {}
    kinds: dict[str, list[str]] = {}  # modalities a model does not embed, per group
    for problem in report.skipped:
        reason = problem.reason.removesuffix(_OLD_HINT)
        model, cut, rest = reason.partition(" does not embed ")
        if cut:  # "m does not embed image (it takes text)": one line for every modality
            modality, _, takes = rest.partition(" ")
            key = f"{model} does not embed {{}} {takes}"
            if modality not in kinds.setdefault(key, []):
                kinds[key].append(modality)
        else:  # the same cause for different bytes ("unknown binary data (first bytes: …)")
            key = re.sub(r" *\([^)]*\)", "", reason)
        groups.setdefault(key, []).append(printable(problem.path))
    for key, paths in groups.items():
        shown = ", ".join(paths[:_SHOWN_SKIPS])
        more = f" and {len(paths) - _SHOWN_SKIPS} more" if len(paths) > _SHOWN_SKIPS else ""
        noun = "file" if len(paths) == 1 else "files"
        reason = key.format(", ".join(kinds[key])) if key in kinds else key
        notice(f"skipped {len(paths)} {noun} ({shown}{more}): {reason}")
    if kinds:
        from mmembed._search_cli import gemini_hint

        notice(gemini_hint(args.index))
    notice("-q hides this list; --json lists every skipped file with its reason")


class Bar:
    """Progress on stderr: a rich bar when rich is installed, a plain line otherwise.

    Only on a terminal: in pipes and CI logs the command stays quiet.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._start = time.monotonic()
        self._rich: Any = None
        self._task: Any = None
        self._last = 0.0
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError:
            return
        self._rich = Progress(
            TextColumn("[bold]indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files  {task.fields[chunks]} chunks  {task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=True,
        )
        self._rich.start()
        self._task = self._rich.add_task("index", total=None, chunks=0, rate="")

    def __call__(self, event: Any) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = f"{event.files_done / elapsed:.1f} files/s"
        if self._rich is not None:
            self._rich.update(
                self._task,
                total=event.files_total,
                completed=event.files_done,
                chunks=event.chunks_done,
                rate=rate,
            )
            return
        now = time.monotonic()
        if now - self._last < 0.2 and event.files_done < event.files_total:
            return
        self._last = now
        left = event.files_total - event.files_done
        eta = left * elapsed / event.files_done if event.files_done else 0.0
        line = (
            f"\rindexing {event.files_done}/{event.files_total} files  {event.chunks_done} "
            f"chunks  {rate}  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        self._stream.write(line.ljust(79)[:79])
        self._stream.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
        else:
            self._stream.write("\r" + " " * 79 + "\r")
            self._stream.flush()


def progress_bar() -> Bar | None:
    if not sys.stderr.isatty():
        return None
    return Bar(sys.stderr)
