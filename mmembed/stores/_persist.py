"""Crash-safe, pickle-free store directories shared by every local store.

Layout of a store directory::

    store/
      CURRENT              "gen-000007 <sha256 of its manifest.json>\\n", replaced atomically
      LOCK                 flock()ed by the process that is saving; holds its pid
      gen-000007/          one immutable generation
        manifest.json      format, kind, counts, settings, and a sha256 + size per file
        vectors.npy        float32 rows (np.load(..., allow_pickle=False))
        records.json       ids and metadata, plain JSON
        index.faiss        FAISS native file, only for approximate indexes
      gen-000006/          the previous generation, kept for readers that opened it

Saving writes a new generation under a temporary name, fsyncs every file and the directory,
renames it into place, then switches ``CURRENT`` with ``os.replace`` and fsyncs the directory.
A crash at any moment leaves ``CURRENT`` naming either the old complete generation or the new
complete one, never a mix. Loading checks ``CURRENT``'s hash of the manifest, then every file's
size and sha256, and refuses files it does not know, before numpy or FAISS parses a byte.

Checksums detect damage (a flipped bit, a truncated copy, a swapped file); they are not a
signature. Only approximate FAISS indexes read a native ``index.faiss``; loading with
``rebuild_index=True`` avoids even that for stores from untrusted sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from mmembed._files import disk_error, fsync_dir, open_new, sha256_file, write_bytes_atomic
from mmembed._lock import WriterLock
from mmembed.errors import CorruptStoreError, StoreError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Generation",
    "current_generation",
    "read_generation",
    "write_generation",
]

FORMAT = "mmembed.store"
FORMAT_VERSION = 1

_CURRENT = "CURRENT"
_LOCK = "LOCK"
_MANIFEST = "manifest.json"
_GEN_RE = re.compile(r"gen-(\d{6,})")
_CURRENT_RE = re.compile(r"(gen-\d{6,}) ([0-9a-f]{64})\n")
_FILE_RE = re.compile(r"[a-z][a-z0-9_]{0,40}\.(npy|json|faiss)")
_TMP_PREFIX = ".tmp-"
_MAX_MANIFEST_BYTES = 1 << 20
_MAX_CURRENT_BYTES = 256


def _busy(lock: Path, holder: str) -> StoreError:
    return StoreError(
        f"the store at {lock.parent} is being written by another process (pid "
        f"{holder or 'unknown'}); only one process may save a store at a time: wait for it to "
        "finish, or save to a different directory"
    )


@contextlib.contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """Hold the store's writer lock: threads of this process take turns, another process is
    refused at once (see :class:`mmembed._lock.WriterLock`)."""
    with WriterLock(path / _LOCK, busy=_busy, threads_wait=True):
        yield


def _read_small(path: Path, limit: int = _MAX_CURRENT_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def current_generation(path: str | os.PathLike[str]) -> int | None:
    """The generation number ``CURRENT`` names, or ``None`` when nothing was saved there."""
    text = _read_small(Path(path) / _CURRENT)
    match = _CURRENT_RE.fullmatch(text)
    if match is None:
        return None
    gen = _GEN_RE.fullmatch(match.group(1))
    return int(gen.group(1)) if gen else None


def write_npy(fh: BinaryIO, array: NDArray[Any]) -> None:
    """Write ``array`` as ``.npy`` (never pickled: only plain numeric dtypes reach here)."""
    if array.dtype.hasobject:
        raise StoreError("refusing to save an object array: only numeric arrays are stored")
    np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def write_json(fh: BinaryIO, value: Any) -> None:
    """Write ``value`` as compact UTF-8 JSON (NaN and infinity are refused)."""
    fh.write(json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())


Writer = Callable[[BinaryIO], None]
"""Writes one file of a generation into the file object it is given (created afresh, never
through a symlink)."""


def write_generation(
    path: str | os.PathLike[str],
    *,
    kind: str,
    files: Mapping[str, Writer],
    info: Mapping[str, Any],
    expected_generation: int | None = None,
) -> int:
    """Save a new generation of a store atomically and return its number.

    Args:
        path: the store directory (created if missing).
        kind: the store class name, checked again on load.
        files: file name -> a function that writes that file at the path it is given.
        info: JSON-able facts recorded in the manifest (counts, dimensions, settings).
        expected_generation: when set, the save fails unless ``CURRENT`` still names this
            generation (another writer committed since this store was loaded).

    Raises:
        StoreError: another process is saving the same directory, the directory changed since it
            was loaded, or the disk refused a write.
    """
    root = Path(path)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store directory {root}: {exc}") from exc
    if not root.is_dir():
        raise StoreError(f"{root} exists and is not a directory; choose another path")
    for name in files:
        if not _FILE_RE.fullmatch(name) or name == _MANIFEST:
            raise StoreError(f"internal error: invalid store file name {name!r}")
    root = root.resolve()
    with _writer_lock(root):
        current = current_generation(root)
        if (root / _CURRENT).exists() and current is None:
            raise CorruptStoreError(
                f"{root / _CURRENT} is damaged, so the store's last state is unknown; refusing "
                "to overwrite it. Move the directory aside and save to a fresh one"
            )
        if expected_generation is not None and current != expected_generation:
            raise StoreError(
                f"the store at {root} was changed by another writer since it was loaded "
                f"(generation {expected_generation} -> {current}); load it again and reapply "
                "your changes, or save to another directory"
            )
        number = (current or 0) + 1
        name = f"gen-{number:06d}"
        tmp = root / f"{_TMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            entries: dict[str, dict[str, Any]] = {}
            for file_name, writer in files.items():
                target = tmp / file_name
                with open_new(target) as fh:
                    writer(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                digest, size = sha256_file(target)
                entries[file_name] = {"sha256": digest, "bytes": size}
            manifest = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "kind": kind,
                "generation": number,
                "files": entries,
                "info": dict(info),
            }
            manifest_bytes = json.dumps(
                manifest, ensure_ascii=False, allow_nan=False, sort_keys=True, indent=1
            ).encode()
            with open_new(tmp / _MANIFEST) as fh:
                fh.write(manifest_bytes)
                fh.flush()
                os.fsync(fh.fileno())
            fsync_dir(tmp)
            final = root / name
            if final.exists():  # left by a crash before CURRENT switched: never referenced
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_dir(root)
            # the commit point: CURRENT replaced atomically (never written through a symlink)
            pointer = f"{name} {hashlib.sha256(manifest_bytes).hexdigest()}\n"
            write_bytes_atomic(root / _CURRENT, pointer.encode())
        except StoreError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except (OSError, ValueError, TypeError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            disk = disk_error(exc, f"the store at {root} (the previous saved state is intact)")
            if disk is not None:
                raise disk from exc
            raise StoreError(
                f"saving the store to {root} failed ({exc}); the previous saved state is intact"
            ) from exc
        _collect_garbage(root, keep={number, number - 1})
        return number


def _collect_garbage(root: Path, *, keep: set[int]) -> None:
    """Remove generations older than the previous one and leftovers of crashed saves."""
    for entry in root.iterdir():
        if (
            entry.name.startswith((_TMP_PREFIX, f".{_CURRENT}."))
            or entry.name == f"{_CURRENT}.tmp"  # left by older versions
        ):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            continue
        match = _GEN_RE.fullmatch(entry.name)
        if match and int(match.group(1)) not in keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation:
    """One verified generation of a store directory: every file's checksum has been checked."""

    directory: Path
    number: int
    kind: str
    info: Mapping[str, Any]
    files: frozenset[str] = field(default_factory=frozenset)

    def path(self, name: str) -> Path:
        """The path of a verified file."""
        if name not in self.files:
            raise CorruptStoreError(
                f"the store at {self.directory.parent} lacks {name}; it is incomplete or was not "
                "written by this version of mmembed"
            )
        return self.directory / name

    def load_json(self, name: str) -> Any:
        """Parse a verified JSON file."""
        try:
            return json.loads(self.path(name).read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(f"{self.path(name)} is not valid JSON: {exc}") from exc
        except RecursionError:
            raise CorruptStoreError(
                f"{self.path(name)} nests its JSON too deeply to be anything mmembed wrote"
            ) from None

    def load_npy(
        self,
        name: str,
        *,
        dtype: np.dtype[Any] | type[np.generic],
        shape: tuple[int, ...],
        mmap: bool = False,
    ) -> NDArray[Any]:
        """Load a verified ``.npy`` file, never unpickling: its header must name ``dtype`` and
        ``shape`` in C order and the file must be exactly that long, checked before any data is
        read (a header may claim any size)."""
        file = self.path(name)
        expected = np.dtype(dtype)
        try:
            with open(file, "rb") as fh:
                header = _npy_header(fh)
                offset = fh.tell()
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptStoreError(f"{file} is not a plain numeric .npy file: {exc}") from exc
        found_shape, fortran, found_dtype = header
        size = offset + expected.itemsize * int(np.prod(shape, dtype=np.int64))
        if found_dtype != expected or found_shape != shape or fortran:
            raise CorruptStoreError(
                f"{file} holds {found_dtype} {found_shape}"
                + (" in Fortran order" if fortran else "")
                + f", expected {expected} {shape}; the store is inconsistent"
            )
        if file.stat().st_size != size:
            raise CorruptStoreError(
                f"{file} is {file.stat().st_size} bytes, its header says {size}; the store is "
                "inconsistent"
            )
        try:
            array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptStoreError(f"{file} is not a plain numeric .npy file: {exc}") from exc
        if not isinstance(array, np.ndarray) or array.dtype != expected or array.shape != shape:
            raise CorruptStoreError(f"{file} does not hold the array its header names")
        return array


def _npy_header(fh: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, Fortran order, dtype) from a ``.npy`` header, the data left unread."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def read_generation(path: str | os.PathLike[str], *, kind: str) -> Generation:
    """Find and verify the current generation of the store at ``path``.

    Raises:
        StoreError: nothing was ever saved there, or it was saved by another kind of store.
        CorruptStoreError: any file is damaged, missing, unexpected or not ours.
    """
    root = Path(path)
    if not root.is_dir():
        raise StoreError(f"no store at {root}: the directory does not exist")
    # a concurrent save may garbage-collect the generation between reading CURRENT and the
    # files; the next CURRENT then names a newer complete one
    for _ in range(3):
        try:
            return _read_generation(root, kind=kind)
        except FileNotFoundError:
            continue
    return _read_generation(root, kind=kind)


def _read_generation(root: Path, *, kind: str) -> Generation:
    current_file = root / _CURRENT
    if not current_file.exists():
        raise StoreError(
            f"no saved store at {root} (it has no {_CURRENT} file): save a store there first, "
            "or check the path"
        )
    if current_file.is_symlink() or not current_file.is_file():
        raise CorruptStoreError(f"{current_file} is not a regular file; refusing to follow it")
    with open(current_file, "rb") as fh:
        raw = fh.read(_MAX_CURRENT_BYTES + 1)
    match = _CURRENT_RE.fullmatch(raw.decode("ascii", "replace"))
    if match is None:
        raise CorruptStoreError(
            f"{current_file} is damaged or not an mmembed store pointer; restore the directory "
            "from a backup or rebuild the store"
        )
    gen_name, manifest_sha = match.groups()
    directory = root / gen_name
    if directory.is_symlink() or not directory.is_dir():
        raise CorruptStoreError(f"{directory}, named by {current_file}, is missing")
    manifest_file = directory / _MANIFEST
    if manifest_file.is_symlink():
        raise CorruptStoreError(f"{manifest_file} is a symlink; refusing to follow it")
    with open(manifest_file, "rb") as fh:
        manifest_bytes = fh.read(_MAX_MANIFEST_BYTES + 1)
    if hashlib.sha256(manifest_bytes).hexdigest() != manifest_sha:
        raise CorruptStoreError(
            f"{manifest_file} does not match its checksum in {current_file}: the store is "
            "damaged; restore it from a backup or rebuild it"
        )
    manifest = _parse_manifest(manifest_bytes, manifest_file)
    if manifest["kind"] != kind:
        raise StoreError(
            f"the store at {root} was saved by {manifest['kind']}, not {kind}; open it with "
            f"{manifest['kind']}.load"
        )
    gen_match = _GEN_RE.fullmatch(gen_name)
    if gen_match is None or manifest["generation"] != int(gen_match.group(1)):
        raise CorruptStoreError(f"{manifest_file} belongs to another generation than {gen_name}")
    expected = set(manifest["files"])
    present = {entry.name for entry in directory.iterdir()} - {_MANIFEST}
    unexpected = sorted(present - expected)
    if unexpected:
        raise CorruptStoreError(
            f"the store at {root} holds files it never wrote ({', '.join(unexpected)}); "
            "refusing to open it. Remove them only if you know where they came from"
        )
    for name, entry in manifest["files"].items():
        file = directory / name
        try:
            info = file.lstat()
        except FileNotFoundError:
            if not directory.exists():
                raise  # garbage-collected by a concurrent save: the caller retries
            raise CorruptStoreError(f"{file} is missing from the store") from None
        if not _is_regular(info.st_mode):
            raise CorruptStoreError(f"{file} is not a regular file; refusing to follow it")
        if info.st_size != entry["bytes"]:
            raise CorruptStoreError(
                f"{file} has {info.st_size} bytes, the manifest says {entry['bytes']}: the file "
                "is truncated or was replaced; restore the store from a backup or rebuild it"
            )
        digest, _ = sha256_file(file)
        if digest != entry["sha256"]:
            raise CorruptStoreError(
                f"{file} does not match its sha256 in the manifest: the file is damaged or was "
                "replaced; restore the store from a backup or rebuild it"
            )
    return Generation(
        directory=directory,
        number=manifest["generation"],
        kind=manifest["kind"],
        info=manifest["info"],
        files=frozenset(expected),
    )


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _parse_manifest(data: bytes, where: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptStoreError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptStoreError(f"{where} is not an mmembed store manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CorruptStoreError(f"{where} has no valid format version")
    if version > FORMAT_VERSION:
        raise StoreError(
            f"the store at {where.parent.parent} uses store format {version}, newer than this "
            f"mmembed understands ({FORMAT_VERSION}); upgrade mmembed to open it"
        )
    files = manifest.get("files")
    ok = (
        isinstance(manifest.get("kind"), str)
        and isinstance(manifest.get("generation"), int)
        and isinstance(manifest.get("info"), dict)
        and isinstance(files, dict)
        and all(
            isinstance(name, str)
            and _FILE_RE.fullmatch(name) is not None
            and name != _MANIFEST
            and isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
            and isinstance(entry.get("bytes"), int)
            for name, entry in files.items()
        )
    )
    if not ok:
        raise CorruptStoreError(f"{where} does not follow the mmembed store manifest schema")
    return manifest
