"""Walk the paths given to an index: regular files only, never out of the root, never in a loop."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Found", "walk"]


@dataclass(frozen=True, slots=True)
class Found:
    """A path met while walking: a file to index, or something skipped and why."""

    path: str
    stat: os.stat_result | None
    skipped: str = ""


def walk(root: str | os.PathLike[str], *, exclude: tuple[str, ...] = ()) -> Iterator[Found]:
    """Yield the regular files under ``root`` (or ``root`` itself when it is a file).

    Hidden entries (names starting with a dot) are not entered; symbolic links are followed only
    when their target stays inside ``root``; a directory reached twice (a link loop) is walked
    once; FIFOs, sockets and devices are skipped with a reason, since opening a FIFO blocks.
    Paths are absolute but not resolved, so a link keeps the name the user sees.

    Args:
        root: a file or a directory.
        exclude: absolute directories never to enter (the index directory itself).
    """
    top = os.path.abspath(root)
    try:
        st = os.stat(top)
    except OSError as exc:
        yield Found(top, None, f"cannot read: {exc.strerror or exc}")
        return
    if not stat.S_ISDIR(st.st_mode):
        yield _classify(top, st)
        return
    real_root = os.path.realpath(top)
    excluded = {os.path.realpath(e) for e in exclude}
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            dst = os.stat(directory)
        except OSError as exc:
            yield Found(directory, None, f"cannot read: {exc.strerror or exc}")
            continue
        key = (dst.st_dev, dst.st_ino)
        if key in seen or os.path.realpath(directory) in excluded:
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            yield Found(directory, None, f"cannot list: {exc.strerror or exc}")
            continue
        subdirs: list[str] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = entry.path
            if entry.is_symlink():
                target = os.path.realpath(path)
                if not _inside(target, real_root):
                    yield Found(path, None, "symbolic link pointing outside the indexed folder")
                    continue
            try:
                est = os.stat(path)
            except OSError as exc:
                yield Found(path, None, f"cannot read: {exc.strerror or exc}")
                continue
            if stat.S_ISDIR(est.st_mode):
                subdirs.append(path)
            else:
                yield _classify(path, est)
        # reversed so the stack pops them in name order
        stack.extend(reversed(subdirs))


def _classify(path: str, st: os.stat_result) -> Found:
    if stat.S_ISREG(st.st_mode):
        return Found(path, st)
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(st.st_mode)
        else "a socket"
        if stat.S_ISSOCK(st.st_mode)
        else "a device"
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        else "not a regular file"
    )
    return Found(path, None, f"{kind}, not a regular file")


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def is_under(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or below it (both absolute)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def display_path(path: str, *, cwd: Path | None = None) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    base = str(cwd or Path.cwd())
    if is_under(path, base) and path != base:
        return os.path.relpath(path, base)
    return path
