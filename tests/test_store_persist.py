"""Failure paths of the shared store persistence."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mmembed.errors import CorruptStoreError, StoreError
from mmembed.stores import InMemoryStore, _persist
from mmembed.testing.contracts.store import npy_bytes


def _saved(path: Path, n: int = 50) -> InMemoryStore:
    store = InMemoryStore(4)
    store.add([str(i) for i in range(n)], np.random.default_rng(n).standard_normal((n, 4)))
    store.save(path)
    return store


def test_disk_full_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    store = _saved(path)
    store.add(["new"], np.ones((1, 4)))

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_persist, "write_json", full)
    with pytest.raises(StoreError, match="previous saved state is intact"):
        store.save(path)
    monkeypatch.undo()
    assert len(InMemoryStore.load(path)) == 50
    assert not [p for p in path.iterdir() if p.name.startswith(".tmp-")]  # cleaned up
    store.save(path)  # and the next save works
    assert "new" in InMemoryStore.load(path)


def _rewrite_manifest(path: Path, change: dict[str, object]) -> None:
    generation = next(path.glob("gen-*"))
    manifest = json.loads((generation / "manifest.json").read_bytes())
    manifest.update(change)
    raw = json.dumps(manifest).encode()
    (generation / "manifest.json").write_bytes(raw)
    (path / "CURRENT").write_text(f"{generation.name} {hashlib.sha256(raw).hexdigest()}\n")


def test_newer_format_is_refused_not_guessed(tmp_path: Path) -> None:
    _saved(tmp_path / "s")
    _rewrite_manifest(tmp_path / "s", {"version": 99})
    with pytest.raises(StoreError, match="newer than this mmembed"):
        InMemoryStore.load(tmp_path / "s")


def test_manifest_cannot_name_code_or_foreign_files(tmp_path: Path) -> None:
    _saved(tmp_path / "s")
    _rewrite_manifest(tmp_path / "s", {"kind": "os.system"})
    with pytest.raises(StoreError, match=r"open it with os\.system\.load"):
        InMemoryStore.load(tmp_path / "s")
    _saved(tmp_path / "t")
    generation = next((tmp_path / "t").glob("gen-*"))
    (generation / "evil.pkl").write_bytes(b"x")
    manifest = json.loads((generation / "manifest.json").read_bytes())
    manifest["files"]["../evil.pkl"] = {"sha256": "0" * 64, "bytes": 1}
    raw = json.dumps(manifest).encode()
    (generation / "manifest.json").write_bytes(raw)
    (tmp_path / "t" / "CURRENT").write_text(
        f"{generation.name} {hashlib.sha256(raw).hexdigest()}\n"
    )
    with pytest.raises(CorruptStoreError, match="schema"):
        InMemoryStore.load(tmp_path / "t")


def test_symlinked_file_is_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "s")
    vectors = next((tmp_path / "s").glob("gen-*/vectors.npy"))
    outside = tmp_path / "outside.npy"
    outside.write_bytes(vectors.read_bytes())
    vectors.unlink()
    vectors.symlink_to(outside)
    with pytest.raises(CorruptStoreError, match=r"symlink|regular file"):
        InMemoryStore.load(tmp_path / "s")


def test_damaged_current_is_not_overwritten(tmp_path: Path) -> None:
    store = _saved(tmp_path / "s")
    (tmp_path / "s" / "CURRENT").write_text("garbage\n")
    with pytest.raises(CorruptStoreError):
        InMemoryStore.load(tmp_path / "s")
    with pytest.raises(CorruptStoreError, match="refusing to overwrite"):
        InMemoryStore(4).save(tmp_path / "s")
    assert len(store) == 50


def test_ids_that_look_like_paths_stay_data(tmp_path: Path) -> None:
    store = InMemoryStore(2)
    ids = ["../../escape", "/etc/passwd", "a\x00b", "C:\\x"]
    store.add(ids, np.eye(2)[[0, 1, 0, 1]])
    store.save(tmp_path / "s")
    assert sorted(InMemoryStore.load(tmp_path / "s")) == sorted(ids)
    assert {p.name for p in (tmp_path).iterdir()} == {"s"}


def test_planted_payloads_of_the_contract_really_run(tmp_path: Path) -> None:
    """The contract's hostile files must be live, or "never executes" would prove nothing."""
    import io
    import pickle

    from mmembed.testing.contracts.store import _object_npy, planted_pickle

    marker = tmp_path / "ran"
    pickle.loads(planted_pickle(marker))
    assert marker.exists()
    marker.unlink()
    np.load(io.BytesIO(_object_npy(planted_pickle(marker))), allow_pickle=True)
    assert marker.exists()


def test_symlinked_lock_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    # a store that exists, and a directory where nothing was saved yet
    _saved(tmp_path / "s")
    (tmp_path / "s" / "LOCK").unlink()
    (tmp_path / "fresh").mkdir()
    for root in (tmp_path / "s", tmp_path / "fresh"):
        (root / "LOCK").symlink_to(outside)
        store = InMemoryStore(4)
        store.add(["a"], np.ones((1, 4)))
        with pytest.raises(StoreError, match="symbolic link"):
            store.save(root)
        assert outside.read_text() == "keep me\n"
        (root / "LOCK").unlink()
        store.save(root)  # once the link is gone, saving works
        assert "a" in InMemoryStore.load(root)
        assert not (root / "LOCK").is_symlink()
    assert outside.read_text() == "keep me\n"


def test_no_file_a_save_writes_follows_a_planted_symlink(tmp_path: Path) -> None:
    import os

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    root = tmp_path / "s"
    store = _saved(root)
    # where the next save writes its pointer before renaming it into place
    (root / f".CURRENT.{os.getpid()}.tmp").symlink_to(outside)
    store.add(["b"], np.ones((1, 4)))
    store.save(root)
    assert outside.read_text() == "keep me\n"
    assert not (root / "CURRENT").is_symlink()
    assert "b" in InMemoryStore.load(root)
    assert not [p for p in root.iterdir() if p.is_symlink()]  # the leftover link was removed


def test_writer_locks_never_follow_symlinks_nor_lock_odd_files(tmp_path: Path) -> None:
    import os

    from mmembed._lock import WriterLock

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    (tmp_path / "lock").symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"), WriterLock(tmp_path / "lock"):
        pass
    assert outside.read_text() == "keep me\n"
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(StoreError, match="not a regular file"), WriterLock(tmp_path / "fifo"):
        pass


def test_threads_saving_one_directory_take_turns(tmp_path: Path) -> None:
    import threading

    stores = [InMemoryStore(4) for _ in range(4)]
    for i, store in enumerate(stores):
        store.add([f"s{i}"], np.ones((1, 4)))
    errors: list[BaseException] = []

    def save(store: InMemoryStore) -> None:
        try:
            for _ in range(5):
                store.save(tmp_path / "s", force=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert len(InMemoryStore.load(tmp_path / "s")) == 1


def test_without_fcntl_the_package_imports_saves_and_says_what_is_unprotected(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys, threading, warnings
        sys.modules["fcntl"] = None  # as on Windows: `import fcntl` fails
        import numpy as np
        import mmembed, mmembed.index, mmembed.stores
        from mmembed.stores import FaissStore, InMemoryStore

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = InMemoryStore(4)
            store.add(["a"], np.ones((1, 4)))
            threads = [
                threading.Thread(target=store.save, args=(sys.argv[1],), kwargs={"force": True})
                for _ in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            FaissStore(4).save(sys.argv[2])
        print(len(InMemoryStore.load(sys.argv[1])), len(FaissStore.load(sys.argv[2])))
        for w in caught:
            print(w.category.__name__, w.message)
        """
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a"), str(tmp_path / "b")],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "1 0"
    assert len(out) == 2  # warned once, whatever the number of saves
    assert out[1].startswith("RuntimeWarning")
    assert "fcntl" in out[1]
    assert "only one process" in out[1]


def _reseal_vectors(path: Path, data: bytes) -> None:
    from mmembed.testing.contracts.store import forge_checksums

    next(path.glob("gen-*/vectors.npy")).write_bytes(data)
    forge_checksums(path)


def test_resealed_stores_with_bad_vectors_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    store = _saved(path)
    good = store.vectors.copy()
    cases = {
        "NaN": np.where(np.arange(4) == 1, np.nan, good).astype(np.float32),
        "not unit": good * 2,
        "Fortran": good,
        "10^12 rows": good,
    }
    for name, vectors in cases.items():
        if name == "Fortran":
            data = npy_bytes(vectors, fortran=True)
        elif name == "10^12 rows":
            data = npy_bytes(vectors, shape=(10**12, 4))  # a header that claims 16 TB
        else:
            data = npy_bytes(vectors)
        _reseal_vectors(path, data)
        with pytest.raises(CorruptStoreError):
            InMemoryStore.load(path)
        with pytest.raises(CorruptStoreError):
            InMemoryStore.load(path, mmap=True)
    _reseal_vectors(path, npy_bytes(good))
    assert len(InMemoryStore.load(path)) == 50


def test_resealed_deeply_nested_records_are_refused(tmp_path: Path) -> None:
    from mmembed.testing.contracts.store import forge_checksums

    path = tmp_path / "s"
    _saved(path, n=1)
    records = next(path.glob("gen-*/records.json"))
    records.write_text('{"ids": ["0"], "metadata": [' + "[" * 100_000 + "]" * 100_000 + "]}")
    forge_checksums(path)
    with pytest.raises(CorruptStoreError, match="too deeply"):
        InMemoryStore.load(path)
