"""The options of the ``mmembed`` command: its subcommands and their arguments, as argparse
describes them (the parser class, and what a usage error exits with, are the command's)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from mmembed._batch_cli import add_index_options, add_jobs_command
from mmembed.content import Modality

__all__ = ["DEFAULT_INDEX", "Version", "build_parser"]

DEFAULT_INDEX = ".mmembed"


def build_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The command's parser, its subparsers made with ``parser_class``."""
    common = parser_class(add_help=False)
    common.add_argument(
        "--index",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"the index directory (default: ./{DEFAULT_INDEX}, or $MMEMBED_INDEX)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only JSON on stdout (notices and progress go to stderr)",
    )
    parser = parser_class(
        prog="mmembed",
        description="Multimodal search over your files: text, images, audio, video and PDFs.",
        epilog="Exit codes: 0 ok, 1 some files failed, 2 usage, 3 setup (no embedder or extra), "
        "4 index unusable, 5 embedding service, 6 index busy, 7 over --max-cost, "
        "8 disk full or read-only, 130 interrupted, 141 output closed.",
        parents=[common],
    )
    parser.add_argument("--version", action=Version, help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)

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


class Version(argparse.Action):
    """``--version``: the package metadata is read only when asked (it costs 0.1 s)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from mmembed._version import __version__

        shown = __version__ if __version__ != "0.0.0" else "unknown (not installed)"
        print(f"mmembed {shown}")
        parser.exit()
