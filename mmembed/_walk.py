"""Walk the paths given to an index: regular files only, never out of the root, never in a loop,
and only the files a :class:`Selection` (include/exclude globs, ignore files) lets through."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmembed.errors import ConfigurationError

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

__all__ = ["IGNORE_FILES", "Found", "Selection", "walk"]

#: The files whose patterns leave files out of a folder walk, for their own folder and below;
#: at the same level ``.mmembedignore`` comes second, so its patterns win.
IGNORE_FILES = (".gitignore", ".mmembedignore")
# an ignore file larger than this is not a list of patterns anyone wrote
_MAX_IGNORE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Found:
    """A path met while walking: a file to index, or something skipped and why, or something
    the selection leaves out (``ignored``: a file, or a folder not entered)."""

    path: str
    stat: os.stat_result | None
    skipped: str = ""
    ignored: bool = False


@dataclass(frozen=True, slots=True)
class _Rules:
    """The patterns of one ignore file and the folder they are relative to (absolute, without a
    trailing separator: ``""`` for the file system's root)."""

    base: str
    spec: GitIgnoreSpec

    def verdict(self, path: str, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included by a ``!`` pattern, None: no pattern matched."""
        rel = path[len(self.base) + 1 :].replace(os.sep, "/") + ("/" if is_dir else "")
        return self.spec.check_file(rel).include


@dataclass(frozen=True, slots=True)
class Selection:
    """Which files a folder walk keeps: gitignore-style globs, and the folders' ignore files.

    Patterns use ``.gitignore`` syntax and match paths relative to the folder being walked:
    ``*.md`` matches at any depth, ``/notes`` only at the top, ``drafts/`` folders only,
    ``docs/**/*.pdf`` below ``docs``, ``!keep.md`` re-includes.

    Attributes:
        include: when given, only files matching one of these are kept (folders are still
            entered).
        exclude: files and folders matching one of these are left out (a folder is not entered).
        respect_ignore: read ``.gitignore`` and ``.mmembedignore`` files: in the walked folder and
            every folder below (each applies to its own folder and below; a deeper file's
            patterns win, as in git), and, when the walked folder is inside a git repository,
            in the folders from the repository's top down to it.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    respect_ignore: bool = True
    _include: GitIgnoreSpec | None = field(default=None, init=False, repr=False, compare=False)
    _exclude: GitIgnoreSpec | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.respect_ignore, bool):
            raise ConfigurationError(
                f"respect_ignore must be True or False, got {self.respect_ignore!r}"
            )
        object.__setattr__(self, "include", _patterns(self.include, "include"))
        object.__setattr__(self, "exclude", _patterns(self.exclude, "exclude"))
        object.__setattr__(self, "_include", _spec(self.include, "include"))
        object.__setattr__(self, "_exclude", _spec(self.exclude, "exclude"))

    @classmethod
    def build(
        cls,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        *,
        respect_ignore: bool = True,
    ) -> Selection:
        """A checked selection (a single pattern may be given as a string).

        Raises:
            ConfigurationError: a pattern is not a non-empty string or not a valid glob.
        """
        return cls(_patterns(include, "include"), _patterns(exclude, "exclude"), respect_ignore)

    def keeps_file(self, rel: str) -> bool:
        """Whether include/exclude keep a file at ``rel`` (``/``-separated, relative)."""
        if self._exclude is not None and self._exclude.match_file(rel):
            return False
        return self._include is None or bool(self._include.match_file(rel))


def _patterns(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise ConfigurationError(f"{what} takes glob patterns, got {type(value).__name__}")
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigurationError(f"{what} takes non-empty glob patterns, got {item!r}")
        out.append(item)
    return tuple(out)


def _spec(patterns: tuple[str, ...], what: str) -> GitIgnoreSpec | None:
    if not patterns:
        return None
    from pathspec import GitIgnoreSpec

    try:
        return GitIgnoreSpec.from_lines(patterns)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"bad {what} pattern: {exc}") from None


def _read_rules(directory: str) -> list[_Rules]:
    """The rules of the ignore files in ``directory`` (unreadable ones are passed over)."""
    from pathspec import GitIgnoreSpec

    rules = []
    for name in IGNORE_FILES:
        path = os.path.join(directory, name)
        try:
            if not stat.S_ISREG(os.stat(path).st_mode) or os.path.getsize(path) > _MAX_IGNORE_BYTES:
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        try:
            rules.append(_Rules(directory.rstrip(os.sep), GitIgnoreSpec.from_lines(lines)))
        except (ValueError, TypeError):
            continue  # git passes over a pattern it cannot read; so does the walk
    return rules


def _repository_rules(top: str) -> list[_Rules]:
    """The ignore files from the top of the git repository holding ``top`` down to its parent."""
    chain: list[str] = []
    directory = top
    while not os.path.exists(os.path.join(directory, ".git")):
        parent = os.path.dirname(directory)
        if parent == directory:
            return []  # not inside a repository: only the walked folder's own files count
        directory = parent
        chain.append(directory)
    return [rule for d in reversed(chain) for rule in _read_rules(d)]


def _ignored(rules: list[_Rules], path: str, is_dir: bool) -> bool:
    for rule in reversed(rules):  # the deepest file, and its last matching pattern, decides
        verdict = rule.verdict(path, is_dir)
        if verdict is not None:
            return verdict
    return False


def walk(
    root: str | os.PathLike[str],
    *,
    exclude: tuple[str, ...] = (),
    select: Selection | None = None,
) -> Iterator[Found]:
    """Yield the regular files under ``root`` (or ``root`` itself when it is a file).

    Hidden entries (names starting with a dot) are not entered; symbolic links are followed only
    when their target stays inside ``root``; a directory reached twice (a link loop) is walked
    once; FIFOs, sockets and devices are skipped with a reason, since opening a FIFO blocks.
    Paths are absolute but not resolved, so a link keeps the name the user sees.

    Args:
        root: a file or a directory.
        exclude: absolute directories never to enter (the index directory itself).
        select: which files to keep. A file named as ``root`` is matched by its name alone and
            ignore files do not apply to it (naming a file is asking for it).
    """
    top = os.path.abspath(root)
    try:
        st = os.stat(top)
    except OSError as exc:
        yield Found(top, None, f"cannot read: {exc.strerror or exc}")
        return
    if not _utf8(top):
        yield Found(top, None, _NOT_UTF8)
        return
    if not stat.S_ISDIR(st.st_mode):
        if select is not None and not select.keeps_file(os.path.basename(top)):
            yield Found(top, None, ignored=True)
            return
        yield _classify(top, st)
        return
    real_root = os.path.realpath(top)
    excluded = {os.path.realpath(e) for e in exclude}
    seen: set[tuple[int, int]] = set()
    respect = select is not None and select.respect_ignore
    inherited = _repository_rules(top) if respect else []
    # each folder still to walk, with the ignore rules of the folders above it
    stack: list[tuple[str, list[_Rules]]] = [(top, inherited)]
    while stack:
        directory, rules = stack.pop()
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
        if respect:
            rules = rules + _read_rules(directory)
        subdirs: list[str] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = entry.path
            if select is not None and _left_out(select, rules, top, entry):
                yield Found(path, None, ignored=True)
                continue
            if not _utf8(entry.name):
                yield Found(path, None, _NOT_UTF8)
                continue
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
        stack.extend((d, rules) for d in reversed(subdirs))


def _left_out(select: Selection, rules: list[_Rules], top: str, entry: os.DirEntry[str]) -> bool:
    """Whether the selection leaves out a folder entry (a folder: never entered)."""
    try:
        is_dir = entry.is_dir()
    except OSError:
        is_dir = False
    path = entry.path
    if rules and _ignored(rules, path, is_dir):
        return True
    rel = path[len(top) + 1 :].replace(os.sep, "/")
    if is_dir:
        return select._exclude is not None and bool(select._exclude.match_file(rel + "/"))
    return not select.keeps_file(rel)


_NOT_UTF8 = "the name is not valid UTF-8; rename it (convmv does it for a whole folder) to index it"


def _utf8(name: str) -> bool:
    """Whether a name is valid UTF-8 (bytes that are not come back as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
