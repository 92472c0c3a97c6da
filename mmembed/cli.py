"""The ``mmembed`` command: index folders, search them, inspect and prune the index.

::

    mmembed index examples/                 # walk, chunk, embed, store (incremental)
    mmembed search "the Krebs cycle"        # best chunks, with files, pages and timestamps
    mmembed search "mitochondria" --path "lectures/*" --where type=pdf
    mmembed search --image diagram.png -k 3
    mmembed info
    mmembed remove examples/old-notes.md

Exit codes (see :class:`ExitCode`): 0 done; 1 done, but some files failed (or nothing matched
``remove``); 2 bad usage; 3 no embedder or a missing extra; 4 no index, or an index that cannot
be used with these settings; 5 the embedding service failed (key, quota, outage); 6 another
process is writing to the index; 7 the run's estimated cost is over ``--max-cost`` (nothing was
sent); 130 interrupted; 141 the reader of the output went away (``mmembed info | head -1``),
quietly, as for any Unix command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, TextIO

from mmembed._batch_cli import (
    add_index_options,
    add_jobs_command,
    batch_options,
    cmd_jobs,
    print_batch,
)
from mmembed._files import printable
from mmembed._search_cli import Outcome, SearchFailure
from mmembed.content import Modality
from mmembed.errors import (
    ChunkingError,
    ConfigurationError,
    CorruptStoreError,
    EmbeddingError,
    IncompatibleIndexError,
    InputLimitError,
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
    #: the disk refused a write (full, read-only, not writable); what was committed is kept
    DISK = 8
    #: stopped with Ctrl-C; committed files are kept, run the command again to resume
    INTERRUPTED = 130
    #: the reader of the output went away (``| head -1``); nothing is printed about it
    BROKEN_PIPE = 141


_DEFAULT_INDEX = ".mmembed"


class _Fail(Exception):
    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        # an unknown option is reported by the subcommand it was given to, with its usage
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(parsed, "command", None)
            owner = self._subcommands.get(command, self) if command else self
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

    @property
    def _subcommands(self) -> dict[str, argparse.ArgumentParser]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}


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
        "4 index unusable, 5 embedding service, 6 index busy, 7 over --max-cost, "
        "8 disk full or read-only, 130 interrupted, 141 output closed.",
        parents=[common],
    )
    parser.add_argument("--version", action=_Version, help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "index",
        parents=[common],
        help="add files and folders to the index (only new or changed files are embedded)",
        description="Add files and folders to the index; only new or changed files are embedded. "
        "Folders are walked without their hidden files, and without what .gitignore and "
        ".mmembedignore files (and --include/--exclude) leave out; a file indexed before and "
        "left out now is removed from the index, as a deleted file is.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument(
        "--model",
        metavar="NAME",
        help="embedding model for a new index: a Gemini model, all-MiniLM-L6-v2, or "
        "tokenlearn-static-model",
    )
    p.add_argument(
        "--dimensions", type=int, metavar="N", help="vector size for a new index (Gemini: 768)"
    )
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
    p.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="index only files matching GLOB (.gitignore syntax, relative to each folder, e.g. "
        "'*.md' or 'papers/**/*.pdf'); repeatable",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave out files and folders matching GLOB (e.g. 'drafts/'); repeatable",
    )
    p.add_argument(
        "--no-ignore",
        action="store_true",
        help="index what .gitignore and .mmembedignore files would leave out (they are respected "
        "by default)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no list of skipped files"
    )
    add_index_options(p)

    s = sub.add_parser(
        "search", parents=[common], help="search the index with text, or with a file"
    )
    s.add_argument(
        "query",
        nargs="*",
        metavar="QUERY",
        help="what to look for; an image, audio, video or PDF file searches with that file",
    )
    for modality in ("image", "audio", "video", "pdf"):
        s.add_argument(f"--{modality}", metavar="FILE", help=f"search with {modality} FILE")
    s.add_argument("-k", type=int, default=10, metavar="N", help="number of results (10)")
    s.add_argument(
        "--modality",
        action="append",
        choices=[m.value for m in Modality],
        help="only results of this modality (repeatable)",
    )
    s.add_argument(
        "--path",
        action="append",
        metavar="GLOB",
        help='only results from these files: a file, a folder or a glob ("lectures/*"); repeatable',
    )
    s.add_argument(
        "--where",
        action="append",
        metavar="KEY=VALUE",
        help="only results whose KEY is VALUE: type=pdf, page=12, page=3-5, time=1:00-2:00, "
        "modified_after=2024-05-01, or a key of the metadata given at indexing; repeatable (the "
        "same key twice means either value)",
    )
    s.add_argument(
        "--mode",
        choices=["hybrid", "vector", "keyword"],
        help="hybrid: keywords and vectors together (the default for text when the index has "
        "text); vector: similar meaning only; keyword: the words only (no model is loaded)",
    )
    s.add_argument("--group", action="store_true", help="one result per file")

    sub.add_parser("info", parents=[common], help="what is in the index and how it was built")
    add_jobs_command(sub, common)

    r = sub.add_parser(
        "remove", parents=[common], help="drop files or folders from the index (not from disk)"
    )
    r.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="indexed files, or folders to drop all under",
    )
    return parser


class _Version(argparse.Action):
    """``--version``: the package metadata is read only when asked (it costs 0.1 s)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from mmembed._version import __version__

        shown = __version__ if __version__ != "0.0.0" else "unknown (not installed)"
        print(f"mmembed {shown}")
        parser.exit()


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
        "jobs": lambda a: cmd_jobs(_open_existing(a), a),
    }[args.command]
    try:
        return handler(args)
    except BrokenPipeError:
        return _broken_pipe()
    except _Fail as exc:
        _error(str(exc))
        return exc.code
    except SearchFailure as exc:
        _error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted; finished files are kept; run the same command again to resume")
        return ExitCode.INTERRUPTED
    except MMEmbedError as exc:
        _error(str(exc))
        return _code_for(exc)
    except OSError as exc:
        from mmembed._files import disk_error

        disk = disk_error(exc, str(exc.filename or "a file"))
        if disk is not None:
            _error(str(disk))
            return ExitCode.DISK
        _error(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
        return ExitCode.SETUP


def _broken_pipe() -> int:
    """The reader went away: say nothing, and keep the interpreter from saying it at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return ExitCode.BROKEN_PIPE


def _code_for(exc: MMEmbedError) -> ExitCode:
    from mmembed.errors import BudgetExceededError, DiskError, IndexLockedError

    if isinstance(exc, IndexLockedError):
        return ExitCode.LOCKED
    if isinstance(exc, BudgetExceededError):
        return ExitCode.BUDGET
    if isinstance(exc, EmbeddingError):
        return ExitCode.EMBEDDING
    if isinstance(exc, MissingDependencyError):
        return ExitCode.SETUP
    if isinstance(exc, DiskError):
        return ExitCode.DISK
    if isinstance(exc, (IncompatibleIndexError, CorruptStoreError, StoreError)):
        return ExitCode.INDEX
    if isinstance(exc, (ConfigurationError, UnsupportedMediaError, InputLimitError, ChunkingError)):
        return ExitCode.USAGE  # something given on the command line: an option, a file, a query
    return ExitCode.SETUP


def _error(message: str) -> None:
    # one line: a message that says what to do, never a traceback
    print(f"mmembed: error: {printable(' '.join(message.split()))}", file=sys.stderr)


def _notice(message: str) -> None:
    print(f"mmembed: {printable(message)}", file=sys.stderr)


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
        _check_settings(args)
    else:
        missing = [p for p in args.paths if not os.path.lexists(p)]
        if missing:
            # checked before anything is created: a typo leaves no empty index behind
            raise _Fail(
                f"{missing[0]}: no such file or folder; nothing was indexed (check the path)",
                ExitCode.USAGE,
            )
        embedder, note = _chosen(args.model, args.dimensions, choose_embedder)
        _notice(note)
    if args.max_cost is not None and not args.max_cost >= 0:
        raise _Fail(
            f"--max-cost must be a number of dollars >= 0, got {args.max_cost}", ExitCode.USAGE
        )
    batch = batch_options(args, lambda message: _Fail(message, ExitCode.USAGE))
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
            report = index.add(*args.paths, dry_run=True, **_selection(args), **batch)
            index.close()
    else:
        index = Index(
            args.index, embedder=embedder, batch_size=args.batch_size, chunk_options=options
        )
        if existing and not (args.json or args.quiet):
            spec = index.info()["embedder"]
            _notice(f"index {args.index}: {spec['model']}, {spec['dimensions']} dimensions")
        bar = None if args.json or args.quiet or args.dry_run else _progress_bar()
        try:
            report = index.add(
                *args.paths,
                dry_run=args.dry_run,
                progress=bar,
                max_cost=args.max_cost,
                **_selection(args),
                **batch,
            )
        finally:
            if bar is not None:
                bar.close()
            index.close()
    if args.json:
        _print_json(report.to_dict())
    else:
        _print_report(report, args)
    return ExitCode.PARTIAL if report.failed else ExitCode.OK


def _check_settings(args: argparse.Namespace) -> None:
    """``--model``/``--dimensions`` on an existing index: fine when they are its own."""
    if not (args.model or args.dimensions):
        return
    from mmembed._index_config import read_json

    spec = (read_json(Path(args.index) / "config.json") or {}).get("embedder") or {}
    model, dims = spec.get("model"), spec.get("dimensions")
    if args.model in (None, model) and args.dimensions in (None, dims):
        return
    given = " ".join(
        f"--{k} {v}" for k, v in (("model", args.model), ("dimensions", args.dimensions)) if v
    )
    raise _Fail(
        f"the index {args.index} was made with {model} ({dims} dimensions) and keeps it; "
        f"{given} applies to a new index: mmembed index FOLDER --index NEW_DIR {given}",
        ExitCode.INDEX,
    )


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


def _print_report(report: Any, args: argparse.Namespace) -> None:
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
        _notice(f"skipped {len(paths)} {noun} ({shown}{more}): {reason}")
    if kinds:
        from mmembed._search_cli import gemini_hint

        _notice(gemini_hint(args.index))
    _notice("-q hides this list; --json lists every skipped file with its reason")


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Index.add`` options for --include, --exclude and --no-ignore."""
    return {
        "include": args.include,
        "exclude": args.exclude,
        "respect_ignore": not args.no_ignore,
    }


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
    if _SURROGATE.search(text):
        raise _Fail(
            f"the query '{printable(text)}' is not valid UTF-8; check the terminal's encoding "
            "(locale) and type it again",
            ExitCode.USAGE,
        )
    request: dict[str, Any] = {"text": text, "index_dir": args.index, "json": args.json}
    if given:
        request["modality"], request["file"] = given[0]
    elif len(args.query) == 1 and (found := _media_file(text)) is not None:
        # `mmembed search photo.png`: the file, not its name (said on stderr)
        request.update(modality=found, file=text, inferred=True)
    request["width"] = 0 if args.json else shutil.get_terminal_size((120, 20)).columns
    # what Index.search takes, as plain JSON (the helper runs the same request)
    request["search"] = {"k": args.k, "where": _where(args), "group": args.group}
    if args.mode:
        request["search"]["mode"] = args.mode
    if not _exists(args.index):
        _open_existing(args)  # says there is no index, and how to make one
    outcome = _search_by_helper(args.index, request)
    if outcome is None:
        from mmembed import _search_cli

        index = _search_cli.open_for_search(args.index)
        try:
            outcome = _search_cli.run(index, request, index_dir=args.index)
        finally:
            _search_cli.close(index)
    for notice in outcome.notices:
        _notice(notice)
    sys.stdout.write(outcome.stdout)
    sys.stdout.flush()
    return outcome.code


def _where(args: argparse.Namespace) -> dict[str, Any] | None:
    """The filter the options ask for: --modality, --path and each --where KEY=VALUE."""
    from mmembed._where import FIELDS

    where: dict[str, list[Any]] = {}
    if args.modality:
        where["modality"] = list(args.modality)
    if args.path:
        where["source"] = list(args.path)
    for item in args.where or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _Fail(
                f"--where takes KEY=VALUE (like --where page=12), got {item!r}", ExitCode.USAGE
            )
        values = where.setdefault(key, [])
        if key in FIELDS:
            values.append(value)  # the fields read their values from text themselves
        else:
            # metadata given at indexing: a number or true/false as typed, or the text
            for typed in (_scalar(value), value):
                if not any(type(v) is type(typed) and v == typed for v in values):
                    values.append(typed)
    return dict(where) or None


def _scalar(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


def _media_file(arg: str) -> str | None:
    """The modality of ``arg`` when it names an existing file that is not text."""
    from mmembed.content import sniff_file

    path = Path(arg)
    try:
        if not path.is_file():
            return None
        _, _, modality = sniff_file(path)
    except OSError:
        return None
    return None if modality in (None, Modality.TEXT) else modality.value


def _search_by_helper(index_dir: str, request: dict[str, Any]) -> Outcome | None:
    """The outcome from the index's resident helper, or ``None`` to search in this process."""
    from mmembed import _daemon

    if not _daemon.enabled():
        return None
    try:
        reply = _daemon.ask(index_dir, request)
    except _daemon.Unsafe as exc:
        _notice(f"{exc}; searching without the helper")
        return None
    if reply is None:
        return None
    if "error" in reply:
        raise _Fail(str(reply["error"]), ExitCode(int(reply["code"])))
    return Outcome.from_dict(reply["ok"])


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
        f"index      {printable(str(info['path']))}",
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
            print(f"removed {printable(p)}")
        if not shown:
            _notice("nothing in the index matched " + " ".join(args.paths))
    return ExitCode.OK if removed else ExitCode.PARTIAL


def _print_json(data: Any) -> None:
    # a name that is not UTF-8 keeps its bytes as lone surrogates: written as JSON escapes
    text = json.dumps(data, indent=2, ensure_ascii=False)
    sys.stdout.write(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


_SURROGATE = re.compile("[\ud800-\udfff]")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
