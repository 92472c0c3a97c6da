"""Reliability of reading: readers see committed states, text is bounded, bad input is an error.

Each case here was once a wrong answer, an unbounded allocation or a traceback. The suite is
marked ``reliability``; it runs with the rest of the tests.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmembed
from mmembed.chunkers import TextChunker
from mmembed.errors import ConfigurationError, InputLimitError, UnsupportedMediaError
from mmembed.index import Index
from mmembed.limits import MAX_TEXT_FILE_BYTES
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


# -- text is bounded ---------------------------------------------------------------------------


def _text_then_zeros(path: Path, text_bytes: int, total: int) -> Path:
    """``text_bytes`` of prose, then NUL bytes up to ``total`` (a sparse file: no disk used)."""
    prose = (make_text(2000, seed=3) + "\n").encode()
    with open(path, "wb") as f:
        f.write((prose * (text_bytes // len(prose) + 1))[:text_bytes])
        f.truncate(total)
    return path


def test_nul_bytes_after_text_are_refused_as_binary(tmp_path: Path) -> None:
    path = _text_then_zeros(tmp_path / "dump.txt", 8 * 1024, 48 * 2**20)
    with pytest.raises(UnsupportedMediaError, match=r"binary data \(a NUL byte at byte 8,192\)"):
        list(TextChunker(max_bytes=None).chunk(path))
    with pytest.raises(UnsupportedMediaError, match="binary data"):
        mmembed.load(path)
    index = Index(tmp_path / "ix", embedder=FakeEmbedder(dimensions=8))
    report = index.add(path)
    assert not report.added
    (skipped,) = report.skipped
    assert "NUL byte at byte 8,192" in skipped.reason
    assert len(index) == 0


def test_a_text_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    assert MAX_TEXT_FILE_BYTES == 64 * 2**20  # the documented default
    path = tmp_path / "big.txt"
    path.write_text(make_text(3000, seed=4), encoding="utf-8")
    size = path.stat().st_size
    with pytest.raises(InputLimitError, match="over the text chunker's limit") as caught:
        list(TextChunker(max_bytes=size - 1).chunk(path))
    assert caught.value.limit == "text_file_bytes"
    assert len(list(TextChunker(max_bytes=size).chunk(path))) > 1
    # the default: a sparse file one byte over 64 MiB is refused at once, by its size
    huge = _text_then_zeros(tmp_path / "huge.txt", 2**16, MAX_TEXT_FILE_BYTES + 1)
    with pytest.raises(InputLimitError, match=r"64\.0 MiB"):
        list(TextChunker().chunk(huge))
    # an index skips it with the reason, and takes a raised limit
    index = Index(
        tmp_path / "ix",
        embedder=FakeEmbedder(dimensions=8),
        chunk_options={"text": {"max_bytes": size - 1}},
    )
    report = index.add(path)
    (failed,) = report.failed
    assert f"{size:,} bytes of text, over the text chunker's limit of {size - 1:,} bytes" in (
        failed.reason
    )
    assert "raise the limit: chunk_options={'text': {'max_bytes': ...}}" in failed.reason
    assert len(index) == 0
    index.close()
    # the limit is not part of the fingerprint: the same index takes a raised one
    raised = Index(tmp_path / "ix", chunk_options={"text": {"max_bytes": size}})
    assert len(raised.add(path).added) == 1
    assert len(raised) > 1
    raised.close()


@pytest.mark.parametrize(("bad", "what"), [(0, "0"), (-5, "-5"), ("1MB", "'1MB'"), (True, "True")])
def test_max_bytes_must_be_a_positive_int(bad: object, what: str) -> None:
    with pytest.raises(
        ConfigurationError, match=f"max_bytes must be a positive int or None, got {what}"
    ):
        TextChunker(max_bytes=bad)  # type: ignore[arg-type]


def test_a_long_text_file_is_cut_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    paragraph = (make_text(400, seed=6) + "\n\n").encode()
    with open(path, "wb") as f:
        for _ in range(24 * 2**20 // len(paragraph)):  # 24 MiB
            f.write(paragraph)
    tracemalloc.start()
    try:
        count = sum(1 for _ in TextChunker().chunk(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 1000
    # a few 1 MiB blocks as text (up to 4 bytes a character in Python), never the whole file
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB while cutting a 24 MiB file"
