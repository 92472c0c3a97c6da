"""Reliability of reading: readers see committed states, text is bounded, bad input is an error.

Each case here was once a wrong answer, an unbounded allocation or a traceback. The suite is
marked ``reliability``; it runs with the rest of the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmembed.index import Index
from mmembed.protocols import Hit
from mmembed.testing import FakeEmbedder
from mmembed.testing.media import make_text

pytestmark = pytest.mark.reliability


# -- readers see committed states --------------------------------------------------------------


class _HookedStore:
    """Another store's search, with ``hook`` run once in the middle of it (after the store was
    searched, before the index reads the hits' records)."""

    def __init__(self, store: Any, hook: Callable[[], None]) -> None:
        self._store = store
        self._hook: Callable[[], None] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __len__(self) -> int:
        return len(self._store)

    def search(self, *args: Any, **kwargs: Any) -> list[Hit]:
        hits: list[Hit] = self._store.search(*args, **kwargs)
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return hits


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    a = make_text(60, seed=1, path=docs / "a.txt")
    b = make_text(60, seed=2, path=docs / "b.txt")
    index = Index(tmp_path / "ix", embedder=FakeEmbedder(dimensions=16))
    index.add(docs)
    index.close()
    return tmp_path / "ix", a, b


def test_a_writer_committing_during_a_search_is_not_half_seen(
    two_files: tuple[Path, Path, Path],
) -> None:
    path, a, _ = two_files
    reader = Index(path)
    before = {r.source for r in reader.search("anything", k=10, mode="vector")}
    assert len(before) == 2

    def rewrite_a() -> None:
        # another writer changes a.txt: its chunks get new ids, the old ones go
        a.write_text(make_text(60, seed=9), encoding="utf-8")
        with Index(path) as writer:
            writer.add(a)

    reader._store = _HookedStore(reader._store, rewrite_a)  # type: ignore[assignment]
    during = reader.search("anything", k=10, mode="vector")
    # the state the store was searched in: both files (never b alone, which never existed)
    assert {Path(r.source).name for r in during} == {"a.txt", "b.txt"}
    # the next search sees the new a.txt, as a fresh reader does
    after = reader.search(make_text(60, seed=9), k=10, mode="vector")
    with Index(path) as fresh:
        expected = fresh.search(make_text(60, seed=9), k=10, mode="vector")
    assert [r.chunk_id for r in after] == [r.chunk_id for r in expected]
    assert {r.chunk_id for r in after}.isdisjoint(r.chunk_id for r in during if "a.txt" in r.source)
    reader.close()


@pytest.mark.parametrize("mode", ["vector", "hybrid", "keyword"])
def test_a_long_lived_index_picks_up_another_writers_commits(
    two_files: tuple[Path, Path, Path], mode: str
) -> None:
    path, a, _ = two_files
    reader = Index(path)
    reader.search("warm up", k=1)
    extra = make_text(40, seed=5, path=a.parent / "c.txt")
    with Index(path) as writer:  # saves a snapshot and compacts the change log past the reader
        writer.add(extra)
        writer.remove(a)
    assert len(reader.store) == len(reader) == len(Index(path))
    results = reader.search(make_text(40, seed=5), k=10, mode=mode)  # type: ignore[arg-type]
    found = {Path(r.source).name for r in results}
    assert "c.txt" in found
    assert "a.txt" not in found
    hits = reader.store.search(np.ones(16, dtype=np.float32), k=100)
    assert {h.id for h in hits} == {h.id for h in Index(path).store.search(np.ones(16), k=100)}
    reader.close()
