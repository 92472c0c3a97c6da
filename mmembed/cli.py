"""The ``mmembed`` command: index folders, search them, inspect and prune the index.

::

    mmembed index examples/                 # walk, chunk, embed, store (incremental)
    mmembed search "the Krebs cycle"        # best chunks, with files, pages and timestamps
    mmembed search --image diagram.png -k 3
    mmembed info
    mmembed remove examples/old-notes.md

Exit codes (see :class:`ExitCode`): 0 done; 1 done, but some files failed (or nothing matched
``remove``); 2 bad usage; 3 no embedder or a missing extra; 4 no index, or an index that cannot
be used with these settings; 5 the embedding service failed (key, quota, outage); 6 another
process is writing to the index; 7 the run's estimated cost is over ``--max-cost`` (nothing was
sent); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, TextIO

from mmembed.content import Modality, Part, load
from mmembed.errors import (
    ConfigurationError,
    CorruptStoreError,
    EmbeddingError,
    IncompatibleIndexError,
    MissingDependencyError,
    MMEmbedError,
    StoreError,
    UnsupportedMediaError,
)

__all__ = ["ExitCode", "main"]


class ExitCode(IntEnum):
    """What ``mmembed`` exits with; scripts can rely on these."""

    OK = 0
    #: the command finished, but some files failed (listed), or ``remove`` matched nothing
    PARTIAL = 1
    #: bad arguments (argparse also uses 2)
    USAGE = 2
    #: no embedder available, or an optional extra is missing (the message says what to install)
    SETUP = 3
    #: no index at ``--index``, or one built with another embedder, or damaged files
    INDEX = 4
    #: the embedding service failed: bad key, quota exhausted, outage
    EMBEDDING = 5
    #: another mmembed process is writing to the same index
    LOCKED = 6
    #: ``index --max-cost``: the estimated cost is over the limit; nothing was sent
    BUDGET = 7
    #: stopped with Ctrl-C; committed files are kept, run the command again to resume
    INTERRUPTED = 130


_DEFAULT_INDEX = ".mmembed"


class _Fail(Exception):
    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--index",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"the index directory (default: ./{_DEFAULT_INDEX}, or $MMEMBED_INDEX)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only JSON on stdout (notices and progress go to stderr)",
    )
    parser = _Parser(
        prog="mmembed",
        description="Multimodal search over your files: text, images, audio, video and PDFs.",
        epilog="Exit codes: 0 ok, 1 some files failed, 2 usage, 3 setup (no embedder or extra), "
        "4 index unusable, 5 embedding service, 6 index busy, 7 over --max-cost, 130 interrupted.",
        parents=[common],
    )
    parser.add_argument(
        "--version", action="version", version=f"mmembed {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "index",
        parents=[common],
        help="add files and folders to the index (only new or changed files are embedded)",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--model", help="embedding model for a new index")
    p.add_argument("--dimensions", type=int, help="vector size for a new index (Gemini: 768)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only count the chunks and API calls the new and changed files need, and the cost",
    )
    p.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="refuse to start when the estimated cost (as --dry-run shows it) is above USD",
    )
    p.add_argument(
        "--video-strategy",
        choices=("segments", "keyframes", "both"),
        help="how a new index embeds video: MP4 segments (default), keyframes (scene changes "
        "as images, far cheaper), or both",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        metavar="N",
        help="the most chunks being embedded at once; each file commits as soon as its "
        "vectors are in (256)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser(
        "search", parents=[common], help="search the index with text, or with a file"
    )
    s.add_argument("query", nargs="*", help="what to look for")
    for modality in ("image", "audio", "video", "pdf"):
        s.add_argument(f"--{modality}", metavar="FILE", help=f"search with {modality} FILE")
    s.add_argument("-k", type=int, default=10, metavar="N", help="number of results (10)")
    s.add_argument(
        "--modality",
        action="append",
        choices=[m.value for m in Modality],
        help="only results of this modality (repeatable)",
    )
    s.add_argument("--group", action="store_true", help="one result per file")

    sub.add_parser("info", parents=[common], help="what is in the index and how it was built")

    r = sub.add_parser(
        "remove", parents=[common], help="drop files or folders from the index (not from disk)"
    )
    r.add_argument("paths", nargs="+", metavar="PATH")
    return parser


def _version() -> str:
    """The installed distribution's version (the package metadata is the one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmembed")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mmembed`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    args.index = getattr(args, "index", None) or os.environ.get("MMEMBED_INDEX") or _DEFAULT_INDEX
    args.json = bool(getattr(args, "json", False))
    handler: Callable[[argparse.Namespace], int] = {
        "index": _cmd_index,
        "search": _cmd_search,
        "info": _cmd_info,
        "remove": _cmd_remove,
    }[args.command]
    try:
        return handler(args)
    except _Fail as exc:
        _error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted; finished files are kept; run the same command again to resume")
        return ExitCode.INTERRUPTED
    except MMEmbedError as exc:
        _error(str(exc))
        return _code_for(exc)
    except OSError as exc:
        _error(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
        return ExitCode.SETUP


def _code_for(exc: MMEmbedError) -> ExitCode:
    from mmembed.errors import BudgetExceededError, IndexLockedError

    if isinstance(exc, IndexLockedError):
        return ExitCode.LOCKED
    if isinstance(exc, BudgetExceededError):
        return ExitCode.BUDGET
    if isinstance(exc, EmbeddingError):
        return ExitCode.EMBEDDING
    if isinstance(exc, MissingDependencyError):
        return ExitCode.SETUP
    if isinstance(exc, (IncompatibleIndexError, CorruptStoreError, StoreError)):
        return ExitCode.INDEX
    if isinstance(exc, (ConfigurationError, UnsupportedMediaError)):
        return ExitCode.USAGE
    return ExitCode.SETUP


def _error(message: str) -> None:
    # one line: a message that says what to do, never a traceback
    print(f"mmembed: error: {' '.join(message.split())}", file=sys.stderr)


def _notice(message: str) -> None:
    print(f"mmembed: {message}", file=sys.stderr)


def _exists(index_dir: str) -> bool:
    return (Path(index_dir) / "config.json").is_file()


def _open_existing(args: argparse.Namespace) -> Any:
    from mmembed.index import Index

    if not _exists(args.index):
        raise _Fail(
            f"no index at {args.index}; create one with: mmembed index FOLDER"
            + ("" if args.index == _DEFAULT_INDEX else f" --index {args.index}"),
            ExitCode.INDEX,
        )
    return Index(args.index)


# -- index -------------------------------------------------------------------------------------


def _cmd_index(args: argparse.Namespace) -> int:
    import tempfile

    from mmembed.index import Index, choose_embedder

    existing = _exists(args.index)
    embedder = None
    if existing:
        if args.model or args.dimensions:
            # checked against the index's own settings: a mismatch is an IncompatibleIndexError
            embedder, _ = _chosen(args.model, args.dimensions, choose_embedder)
    else:
        embedder, note = _chosen(args.model, args.dimensions, choose_embedder)
        _notice(note)
    if args.max_cost is not None and not args.max_cost >= 0:
        raise _Fail(
            f"--max-cost must be a number of dollars >= 0, got {args.max_cost}", ExitCode.USAGE
        )
    options = None
    if args.video_strategy:
        if existing:
            from mmembed._index_config import read_json

            config = read_json(Path(args.index) / "config.json") or {}
            stored = config.get("chunking", {}).get("options", {}).get("video", {})
            if stored.get("strategy", "segments") != args.video_strategy:
                raise _Fail(
                    f"{args.index} was built with another video strategy; use another --index "
                    "for this one (the strategy is part of an index's chunk settings)",
                    ExitCode.INDEX,
                )
        else:
            options = {"video": {"strategy": args.video_strategy}}
    if args.dry_run and not existing:
        # a dry run leaves no index behind
        with tempfile.TemporaryDirectory(prefix="mmembed-dry-") as tmp:
            index = Index(
                Path(tmp) / "index",
                embedder=embedder,
                batch_size=args.batch_size,
                chunk_options=options,
            )
            report = index.add(*args.paths, dry_run=True)
            index.close()
    else:
        index = Index(
            args.index, embedder=embedder, batch_size=args.batch_size, chunk_options=options
        )
        if existing and not args.json:
            spec = index.info()["embedder"]
            _notice(f"index {args.index}: {spec['model']}, {spec['dimensions']} dimensions")
        bar = None if args.json or args.quiet or args.dry_run else _progress_bar()
        try:
            report = index.add(
                *args.paths, dry_run=args.dry_run, progress=bar, max_cost=args.max_cost
            )
        finally:
            if bar is not None:
                bar.close()
            index.close()
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report)
    return ExitCode.PARTIAL if report.failed else ExitCode.OK


def _chosen(model: str | None, dimensions: int | None, choose: Any) -> tuple[Any, str]:
    try:
        return tuple(choose(model=model, dimensions=dimensions))
    except ConfigurationError as exc:
        if str(exc).startswith("no embedder available"):
            raise _Fail(str(exc), ExitCode.SETUP) from exc
        raise


class _Bar:
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


def _progress_bar() -> _Bar | None:
    if not sys.stderr.isatty():
        return None
    return _Bar(sys.stderr)


# -- search ------------------------------------------------------------------------------------


def _cmd_search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise _Fail(f"-k must be at least 1, got {args.k}", ExitCode.USAGE)
    files = [(m, getattr(args, m)) for m in ("image", "audio", "video", "pdf")]
    given = [(m, f) for m, f in files if f]
    text = " ".join(args.query).strip()
    if len(given) > 1 or (given and text):
        raise _Fail(
            "search with text or with one of --image/--audio/--video/--pdf, not several",
            ExitCode.USAGE,
        )
    if not given and not text:
        raise _Fail('nothing to search for: mmembed search "your question"', ExitCode.USAGE)
    query: str | Part = text
    if given:
        modality, file = given[0]
        query = _load_query(modality, file)
    index = _open_existing(args)
    try:
        where = {"modality": args.modality} if args.modality else None
        results = index.search(query, k=args.k, where=where, group=args.group)
    finally:
        index.close()
    if args.json:
        _print_json(results.to_dicts())
    else:
        print(results.table())
    return ExitCode.OK


def _load_query(modality: str, file: str) -> Part:
    try:
        part = load(file)
    except ConfigurationError as exc:
        raise _Fail(f"--{modality} {file}: no such file", ExitCode.USAGE) from exc
    found = part.modality.value
    if found != modality:
        hint = f"; use --{found} {file}" if found != "text" else "; pass text as the query"
        raise _Fail(
            f"--{modality} {file}: the file is {found}, not {modality}{hint}", ExitCode.USAGE
        )
    return part


# -- info and remove ----------------------------------------------------------------------------


def _cmd_info(args: argparse.Namespace) -> int:
    index = _open_existing(args)
    try:
        info = index.info()
    finally:
        index.close()
    size = sum(p.stat().st_size for p in Path(args.index).rglob("*") if p.is_file())
    info["bytes_on_disk"] = size
    if args.json:
        _print_json(info)
        return ExitCode.OK
    spec = info["embedder"]
    by = ", ".join(f"{n} {m}" for m, n in sorted(info["chunks_by_modality"].items())) or "none"
    store = info["store"].get("class", "?").rpartition(":")[2]
    lines = [
        f"index      {info['path']}",
        f"embedder   {spec['model']} ({spec['kind']}), {spec['dimensions']} dimensions",
        f"store      {store}",
        f"files      {info['files']}"
        + (f" ({info['failed_files']} failed)" if info["failed_files"] else ""),
        f"chunks     {info['chunks']} ({by})",
        f"on disk    {size / 1e6:.1f} MB",
    ]
    print("\n".join(lines))
    return ExitCode.OK


def _cmd_remove(args: argparse.Namespace) -> int:
    index = _open_existing(args)
    try:
        removed = index.remove(*args.paths)
    finally:
        index.close()
    from mmembed._walk import display_path

    shown = [display_path(p) for p in removed]
    if args.json:
        _print_json({"removed": shown})
    else:
        for p in shown:
            print(f"removed {p}")
        if not shown:
            _notice("nothing in the index matched " + " ".join(args.paths))
    return ExitCode.OK if removed else ExitCode.PARTIAL


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
