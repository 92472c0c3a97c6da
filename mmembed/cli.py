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
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

from mmembed._batch_cli import batch_options, cmd_jobs
from mmembed._cli_output import error as _error
from mmembed._cli_output import notice as _notice
from mmembed._cli_output import print_report as _print_report
from mmembed._cli_output import progress_bar as _progress_bar
from mmembed._cli_parser import DEFAULT_INDEX as _DEFAULT_INDEX
from mmembed._cli_parser import build_parser
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mmembed`` command; returns the exit code."""
    parser = build_parser(_Parser)
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
