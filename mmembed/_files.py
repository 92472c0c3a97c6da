"""Small file operations every part of mmembed shares: hashing, atomic writes, fsync.

Written once here so the index, the stores and the content types agree on them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from mmembed.errors import CorruptStoreError, DiskError, StoreError

__all__ = [
    "HASH_BLOCK",
    "disk_error",
    "fsync_dir",
    "fsync_file",
    "open_new",
    "sha256_file",
    "sha256_stream",
    "sqlite_error",
    "write_bytes_atomic",
    "write_json_atomic",
]

# what an OSError or SQLite says when the disk refused a write (not when the data is bad)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error(exc: BaseException, what: str) -> DiskError | None:
    """A :class:`DiskError` saying what is true when ``exc`` is the disk refusing a write of
    ``what`` (full, read-only, not writable); ``None`` for any other failure."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    number = getattr(exc, "errno", None)
    if number in _FULL or name.startswith("SQLITE_FULL"):
        return DiskError(
            f"the disk is full: {what} could not be written ({exc}); free some space and run "
            "the command again (everything committed before is kept)"
        )
    if number in _READ_ONLY or name.startswith(
        ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")
    ):
        return DiskError(
            f"{what} cannot be written here ({exc}): the folder or file is read-only or not "
            "yours; make it writable, or copy the folder somewhere writable (the files are "
            "intact)"
        )
    return None


def sqlite_error(exc: sqlite3.Error, what: str) -> StoreError:
    """The mmembed error for a SQLite failure on ``what``: a :class:`DiskError` when the disk
    refused a write, a :class:`CorruptStoreError` when the file is not a database or is
    damaged, else a :class:`StoreError` with SQLite's words."""
    disk = disk_error(exc, what)
    if disk is not None:
        return disk
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return CorruptStoreError(
            f"{what} is damaged or not an mmembed file ({exc}); restore it from a backup, or "
            "index the files again into a new directory"
        )
    return StoreError(f"{what}: {exc}")


#: Bytes read at a time when hashing a file: large enough to run at memory speed.
HASH_BLOCK = 1 << 20


def sha256_stream(blocks: Iterable[bytes] | BinaryIO) -> tuple[str, int]:
    """The hex SHA-256 of a binary stream (or an iterable of blocks) and its length in bytes."""
    digest = hashlib.sha256()
    size = 0
    if hasattr(blocks, "read"):
        stream: BinaryIO = blocks  # type: ignore[assignment]
        while block := stream.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    else:
        for block in blocks:
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """The hex SHA-256 of a file, streamed (never the whole file in memory), and its size."""
    with open(path, "rb") as fh:
        return sha256_stream(fh)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and platforms) cannot fsync a directory
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` so that a crash leaves the old file or the new one.

    The new text goes to a temporary file in the same directory, is flushed to disk, and is
    renamed over ``path``; the directory is then synced so the rename itself survives a crash.
    A ``path`` that is a symbolic link is replaced, never followed.
    """
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    try:
        write_bytes_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise disk_error(exc, str(path)) or exc from exc


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one.

    As :func:`write_json_atomic`: a temporary file beside ``path`` (created afresh, never through
    a link), fsynced, renamed over ``path``, and the directory fsynced.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover (or a planted link) is replaced, never written into
    try:
        with open_new(tmp) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def open_new(path: str | os.PathLike[str]) -> BinaryIO:
    """Create ``path`` and open it for binary writing; fail if anything is there already, a
    symbolic link included, so a write never lands outside the directory it was meant for.

    Raises:
        FileExistsError: something is at ``path`` already.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    return os.fdopen(fd, "wb")


# the files SQLite keeps beside a database: written as the database is
SQLITE_SIDECARS = ("", "-wal", "-shm", "-journal")


def refuse_links(*paths: str | os.PathLike[str]) -> None:
    """Refuse any of ``paths`` that is a symbolic link: mmembed never writes through one.

    For the files and folders of an index: a planted link would make a write land outside it.

    Raises:
        CorruptStoreError: one of ``paths`` is a symbolic link.
    """
    for path in paths:
        if os.path.islink(path):
            raise CorruptStoreError(
                f"{path} is a symbolic link; mmembed never writes through one, so it does not use "
                "it. Put the file or folder itself there (or remove the link) and try again"
            )


# invisible characters that reorder what a terminal shows (bidirectional controls)
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal line: control characters, line breaks and
    bidirectional controls escaped (``\\n``, ``\\u202e``), and the bytes of a name that is not
    UTF-8 (kept by Python as lone surrogates) shown as ``\\xff``. Other text is unchanged.

    >>> printable("notes\\n.txt"), printable("a\\udcffb.txt"), printable("caf\u00e9.md")
    ('notes\\\\n.txt', 'a\\\\xffb.txt', 'café.md')
    """
    if text.isprintable() and not any(ch in _BIDI for ch in text):
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _BIDI or (not ch.isprintable() and ch != " "):
            escaped = ch.encode("unicode_escape").decode("ascii")
            out.append(escaped if escaped != ch else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
