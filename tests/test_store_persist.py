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
