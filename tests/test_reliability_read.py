"""Reliability of reading: readers see committed states, text is bounded, bad input is an error.

Each case here was once a wrong answer, an unbounded allocation or a traceback. The suite is
marked ``reliability``; it runs with the rest of the tests.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmembed
from mmembed._files import sqlite_error
from mmembed.chunkers import TextChunker
from mmembed.content import Text
from mmembed.embedders.gemini import GeminiEmbedder
from mmembed.embedders.static import StaticEmbedder, static_model_available
from mmembed.errors import (
    ChunkingError,
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    DiskError,
    InputLimitError,
    MMEmbedError,
    StoreError,
    UnsupportedMediaError,
)
from mmembed.index import Index
from mmembed.limits import MAX_TEXT_FILE_BYTES
from mmembed.matryoshka import truncate
from mmembed.protocols import Hit
from mmembed.stores import FaissStore, InMemoryStore, QdrantStore
from mmembed.testing import FakeEmbedder, FakeGeminiServer
from mmembed.testing.contracts.store import forge_checksums, npy_bytes
from mmembed.testing.media import make_pdf, make_text, make_video

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
    assert len(reader.store) == len(hits)  # a closed index still hands out its store


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


# -- bad calls are mmembed errors --------------------------------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


class _Env:
    """What the bad calls are made on: an index of one file, three embedders, three stores."""

    def __init__(self, root: Path, server: FakeGeminiServer) -> None:
        docs = root / "docs"
        docs.mkdir()
        self.file = make_text(50, seed=1, path=docs / "a.txt")
        self.root = root
        self.index = Index(root / "ix", embedder=FakeEmbedder(dimensions=8))
        self.index.add(docs)
        self.embedders: dict[str, Any] = {
            "fake": FakeEmbedder(dimensions=8),
            "gemini": GeminiEmbedder(
                client=server.client(), dimensions=128, retry_initial_delay=0.01
            ),
        }
        if static_model_available():
            self.embedders["static"] = StaticEmbedder()
        self.stores: dict[str, Any] = {"memory": InMemoryStore(8), "faiss": FaissStore(8)}
        if importlib.util.find_spec("qdrant_client") is not None:
            self.stores["qdrant"] = QdrantStore(8)
        for store in self.stores.values():
            store.add(["x", "y"], np.eye(2, 8, dtype=np.float32), [{"k": 1}, {"k": 2}])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Env]:
    with FakeGeminiServer() as server:
        made = _Env(tmp_path_factory.mktemp("bad-calls"), server)
        yield made
        made.index.close()


Call = Callable[[_Env], object]


def _new_index(e: _Env, options: object) -> Index:
    return Index(e.root / "new", embedder=FakeEmbedder(), chunk_options=options)  # type: ignore[arg-type]


def _options_call(modality: str, key: str, value: object) -> Call:
    return lambda e: _new_index(e, {modality: {key: value}})


_CE, _DM, _UM = ConfigurationError, DimensionMismatchError, UnsupportedMediaError

# (name, call, the error it must raise)
_INDEX_CALLS: list[tuple[str, Call, type[MMEmbedError]]] = [
    ("search k='5'", lambda e: e.index.search("x", k="5"), _CE),  # type: ignore[arg-type]
    ("search k=None", lambda e: e.index.search("x", k=None), _CE),  # type: ignore[arg-type]
    ("search k=1.5", lambda e: e.index.search("x", k=1.5), _CE),  # type: ignore[arg-type]
    ("search k=0", lambda e: e.index.search("x", k=0), _CE),
    ("search k=-3", lambda e: e.index.search("x", k=-3), _CE),
    ("search k=True", lambda e: e.index.search("x", k=True), _CE),
    ("search k=[1]", lambda e: e.index.search("x", k=[1]), _CE),  # type: ignore[arg-type]
    ("search where str", lambda e: e.index.search("x", where="modality=text"), _CE),  # type: ignore[arg-type]
    ("search where list", lambda e: e.index.search("x", where=["modality"]), _CE),  # type: ignore[arg-type]
    ("search where modality nope", lambda e: e.index.search("x", where={"modality": "nope"}), _CE),
    ("search where $gt", lambda e: e.index.search("x", where={"k": {"$gt": 1}}), _CE),
    ("search where page str", lambda e: e.index.search("x", where={"page": "x"}), _CE),
    ("search where page 0", lambda e: e.index.search("x", where={"page": 0}), _CE),
    ("search where int key", lambda e: e.index.search("x", where={1: 2}), _CE),  # type: ignore[dict-item]
    ("search where time str", lambda e: e.index.search("x", where={"time": "soon"}), _CE),
    ("search where source int", lambda e: e.index.search("x", where={"source": 5}), _CE),
    ("search where modality dict", lambda e: e.index.search("x", where={"modality": {}}), _CE),
    ("search None", lambda e: e.index.search(None), _CE),  # type: ignore[arg-type]
    ("search int", lambda e: e.index.search(5), _CE),  # type: ignore[arg-type]
    ("search bytes", lambda e: e.index.search(b"abc"), _CE),  # type: ignore[arg-type]
    ("search empty", lambda e: e.index.search(""), _CE),
    ("search blank", lambda e: e.index.search("  \n"), _CE),
    ("search dict", lambda e: e.index.search({"a": 1}), _CE),  # type: ignore[arg-type]
    ("search list", lambda e: e.index.search(["a", "b"]), _CE),  # type: ignore[arg-type]
    ("search mode bad", lambda e: e.index.search("x", mode="bad"), _CE),  # type: ignore[arg-type]
    ("search mode int", lambda e: e.index.search("x", mode=5), _CE),  # type: ignore[arg-type]
    ("search group str", lambda e: e.index.search("x", group="yes"), _CE),  # type: ignore[arg-type]
    ("search group None", lambda e: e.index.search("x", group=None), _CE),  # type: ignore[arg-type]
    ("add nothing", lambda e: e.index.add(), _CE),
    ("add None", lambda e: e.index.add(None), _CE),  # type: ignore[arg-type]
    ("add int", lambda e: e.index.add(5), _CE),  # type: ignore[arg-type]
    ("add empty path", lambda e: e.index.add(""), _CE),
    ("add NUL path", lambda e: e.index.add("a\0b"), _CE),
    ("add missing path", lambda e: e.index.add(e.root / "nope"), _CE),
    ("add metadata str", lambda e: e.index.add(e.file, metadata="x"), _CE),  # type: ignore[arg-type]
    ("add metadata deep", lambda e: e.index.add(e.file, metadata=_deep(200)), _CE),
    ("add metadata very deep", lambda e: e.index.add(e.file, metadata=_deep(5000)), _CE),
    ("add metadata object", lambda e: e.index.add(e.file, metadata={"a": object()}), _CE),
    ("add metadata NaN", lambda e: e.index.add(e.file, metadata={"a": float("nan")}), _CE),
    ("add metadata int key", lambda e: e.index.add(e.file, metadata={1: "x"}), _CE),  # type: ignore[dict-item]
    ("add metadata reserved", lambda e: e.index.add(e.file, metadata={"source": "x"}), _CE),
    ("add include int", lambda e: e.index.add(e.file, include=5), _CE),  # type: ignore[arg-type]
    ("add exclude int", lambda e: e.index.add(e.file, exclude=[5]), _CE),  # type: ignore[list-item]
    ("add max_cost str", lambda e: e.index.add(e.file, max_cost="5"), _CE),  # type: ignore[arg-type]
    ("add max_cost -1", lambda e: e.index.add(e.file, max_cost=-1), _CE),
    ("add max_cost NaN", lambda e: e.index.add(e.file, max_cost=float("nan")), _CE),
    ("add progress int", lambda e: e.index.add(e.file, progress=5), _CE),  # type: ignore[arg-type]
    ("remove None", lambda e: e.index.remove(None), _CE),  # type: ignore[arg-type]
    ("remove int", lambda e: e.index.remove(5), _CE),  # type: ignore[arg-type]
    ("Index None", lambda e: Index(None), _CE),  # type: ignore[arg-type]
    ("Index int", lambda e: Index(5), _CE),  # type: ignore[arg-type]
    ("Index a file", lambda e: Index(e.file), _CE),
    ("Index embedder str", lambda e: Index(e.root / "n1", embedder="x"), _CE),  # type: ignore[arg-type]
    ("Index store str", lambda e: Index(e.root / "n2", embedder=FakeEmbedder(), store="x"), _CE),  # type: ignore[arg-type]
    ("Index batch_size 0", lambda e: Index(e.root / "n3", batch_size=0), _CE),
    ("Index batch_size str", lambda e: Index(e.root / "n4", batch_size="5"), _CE),  # type: ignore[arg-type]
    ("Index chunk_options str", lambda e: _new_index(e, "x"), _CE),
    ("Index chunk_options value", lambda e: _new_index(e, {"text": 5}), _CE),
    ("Index chunk_options modality", lambda e: _new_index(e, {"nope": {}}), _CE),
    ("Index chunk_options unknown", lambda e: _new_index(e, {"text": {"nope": 1}}), _CE),
    *[
        (f"Index chunk_options {m} {key}={value!r}", _options_call(m, key, value), _CE)
        for m, key, value in [
            ("text", "size", "x"),
            ("text", "size", float("nan")),
            ("text", "size", 0),
            ("text", "overlap", "x"),
            ("text", "unit", 5),
            ("text", "tokenizer", 5),
            ("text", "max_bytes", 0),
            ("text", "max_bytes", "1MB"),
            ("audio", "window_seconds", "x"),
            ("audio", "window_seconds", float("nan")),
            ("audio", "sample_rate", "x"),
            ("audio", "timeout", "x"),
            ("video", "segment_seconds", "x"),
            ("video", "segment_seconds", float("inf")),
            ("video", "frames_per_segment", "x"),
            ("video", "mode", 5),
            ("pdf", "pages", "x"),
            ("pdf", "pages", True),
            ("pdf", "render_dpi", "x"),
            ("pdf", "overlap", "x"),
            ("image", "max_side", "x"),
            ("image", "jpeg_quality", "x"),
            ("image", "memory_mb", "x"),
        ]
    ],
]

_EMBED_CALLS: list[tuple[str, Callable[[Any], object], type[MMEmbedError]]] = [
    ("embed None", lambda m: m.embed(None), _CE),
    ("embed str", lambda m: m.embed("abc"), _CE),
    ("embed dict", lambda m: m.embed({"a": 1}), _CE),
    ("embed bytes", lambda m: m.embed(b"abc"), _CE),
    ("embed int", lambda m: m.embed(5), _CE),
    ("embed Text", lambda m: m.embed(Text("abc")), _CE),
    ("embed [None]", lambda m: m.embed([None]), _CE),
    ("embed [5]", lambda m: m.embed([5]), _CE),
    ("embed [bytes]", lambda m: m.embed([b"x"]), _CE),
    ("embed [dict]", lambda m: m.embed([{"a": 1}]), _CE),
    ("embed [[str]]", lambda m: m.embed([["a"]]), _CE),
    ("embed task bad", lambda m: m.embed(["a"], task="bad"), _CE),
    ("embed task int", lambda m: m.embed(["a"], task=5), _CE),
    ("embed task list", lambda m: m.embed(["a"], task=[]), _CE),
]

_STORE_CALLS: list[tuple[str, Callable[[Any], object], type[MMEmbedError]]] = [
    ("add bare id", lambda s: s.add("abc", np.ones((3, 8))), _CE),
    ("add empty id", lambda s: s.add([""], np.ones((1, 8))), _CE),
    ("add int id", lambda s: s.add([5], np.ones((1, 8))), _CE),
    ("add surrogate id", lambda s: s.add(["\udc80"], np.ones((1, 8))), _CE),
    ("add object vectors", lambda s: s.add(["a"], np.array([[object()] * 8])), _CE),
    ("add str vectors", lambda s: s.add(["a"], [["x"] * 8]), _CE),
    ("add complex vectors", lambda s: s.add(["a"], np.ones((1, 8), complex)), _CE),
    ("add wide vectors", lambda s: s.add(["a"], np.ones((1, 10**6), np.float32)), _DM),
    ("add narrow vectors", lambda s: s.add(["a"], np.ones((1, 3))), _DM),
    ("add NaN vector", lambda s: s.add(["a"], np.full((1, 8), np.nan)), _CE),
    ("add inf vector", lambda s: s.add(["a"], np.full((1, 8), np.inf)), _CE),
    ("add 1e300 vector", lambda s: s.add(["a"], np.full((1, 8), 1e300)), _CE),
    ("add count mismatch", lambda s: s.add(["a", "b"], np.ones((1, 8))), _CE),
    ("add 3-D vectors", lambda s: s.add(["a"], np.ones((1, 1, 8))), _CE),
    ("add metadata deep", lambda s: s.add(["a"], np.ones((1, 8)), [_deep(100)]), _CE),
    ("add metadata NaN", lambda s: s.add(["a"], np.ones((1, 8)), [{"x": float("nan")}]), _CE),
    ("add metadata object", lambda s: s.add(["a"], np.ones((1, 8)), [{"x": object()}]), _CE),
    ("add metadata str", lambda s: s.add(["a"], np.ones((1, 8)), ["x"]), _CE),
    ("search k str", lambda s: s.search(np.ones(8), k="5"), _CE),
    ("search k 0", lambda s: s.search(np.ones(8), k=0), _CE),
    ("search k float", lambda s: s.search(np.ones(8), k=2.0), _CE),
    ("search where str", lambda s: s.search(np.ones(8), where="k=1"), _CE),
    ("search where $gt", lambda s: s.search(np.ones(8), where={"k": {"$gt": 1}}), _CE),
    ("search where nested list", lambda s: s.search(np.ones(8), where={"k": [[1]]}), _CE),
    ("search NaN query", lambda s: s.search(np.full(8, np.nan)), _CE),
    ("search zero query", lambda s: s.search(np.zeros(8)), _CE),
    ("search wide query", lambda s: s.search(np.ones(9)), _DM),
    ("search object query", lambda s: s.search(np.array([object()] * 8)), _CE),
    ("search None query", lambda s: s.search(None), _CE),
    ("search_batch 1-D", lambda s: s.search_batch(np.ones(8)), _CE),
    ("delete bare id", lambda s: s.delete("abc"), _CE),
    ("get bare id", lambda s: s.get("abc"), _CE),
]

_TRUNCATE_CALLS: list[tuple[str, Call, type[MMEmbedError]]] = [
    ("truncate NaN", lambda e: truncate(np.full((1, 8), np.nan), 4), _CE),
    ("truncate inf", lambda e: truncate(np.full(8, np.inf), 4), _CE),
    ("truncate 1e300", lambda e: truncate(np.full(8, 1e300), 4), _CE),
    ("truncate str", lambda e: truncate("abc", 4), _CE),
    ("truncate object", lambda e: truncate(np.array([object()] * 8), 4), _CE),
    ("truncate 3-D", lambda e: truncate(np.ones((1, 1, 8)), 4), _CE),
    ("truncate dims 0", lambda e: truncate(np.ones(8), 0), _CE),
    ("truncate dims str", lambda e: truncate(np.ones(8), "4"), _CE),  # type: ignore[arg-type]
    ("truncate dims wider", lambda e: truncate(np.ones(8), 9), _CE),
]


@pytest.mark.parametrize(
    ("call", "error"),
    [pytest.param(c, err, id=name) for name, c, err in _INDEX_CALLS + _TRUNCATE_CALLS],
)
def test_bad_index_calls_are_mmembed_errors(
    env: _Env, call: Call, error: type[MMEmbedError]
) -> None:
    with pytest.raises(error) as caught:
        call(env)
    assert type(caught.value).__module__ == "mmembed.errors"
    assert len(str(caught.value)) > 20  # says what is wrong


_COMPONENT_CALLS = [
    pytest.param("embedders", kind, call, error, id=f"{kind}: {name}")
    for kind in ("fake", "gemini", "static")
    for name, call, error in _EMBED_CALLS
] + [
    pytest.param("stores", kind, call, error, id=f"{kind}: {name}")
    for kind in ("memory", "faiss", "qdrant")
    for name, call, error in _STORE_CALLS
]


@pytest.mark.parametrize(("group", "kind", "call", "error"), _COMPONENT_CALLS)
def test_bad_calls_are_the_same_error_on_every_embedder_and_store(
    env: _Env, group: str, kind: str, call: Callable[[Any], object], error: type[MMEmbedError]
) -> None:
    made: dict[str, Any] = getattr(env, group)
    if kind not in made:
        pytest.skip(f"{kind} is not installed")
    with pytest.raises(error) as caught:
        call(made[kind])
    assert type(caught.value).__module__ == "mmembed.errors"
    if group == "stores":
        assert len(made[kind]) == 2  # nothing was stored


# -- hostile index files are mmembed errors ----------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    docs = root / "docs"
    docs.mkdir()
    for i in range(3):
        make_text(80, seed=i, path=docs / f"f{i}.txt")
    with Index(root / "good", embedder=FakeEmbedder(dimensions=8)) as index:
        index.add(docs)
    return root / "good", docs


def _copy(built: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the built index to tamper with, and the folder it indexed."""
    good, docs = built
    shutil.copytree(good, tmp_path / "ix")
    return tmp_path / "ix", docs


def _use(path: Path, shared: Path) -> None:
    """Open, search, change a file, re-index, remove, list: what a user does with an index."""
    docs = path.parent / "docs"
    if not docs.exists():
        shutil.copytree(shared, docs)
    with Index(path) as index:
        index.search("cells")
        index.info()
        index.files()
        (docs / "f1.txt").write_text(make_text(90, seed=7), encoding="utf-8")
        index.add(docs)
        index.remove(docs / "f2.txt")
        index.search("cells", mode="vector")


_CATALOG_EDITS = {
    "files.size text": "UPDATE files SET size = 'big'",
    "files.mtime_ns text": "UPDATE files SET mtime_ns = 'x'",
    "files.chunks text": "UPDATE files SET chunks = 'x'",
    "files.metadata broken": "UPDATE files SET metadata = '{'",
    "files.metadata list": "UPDATE files SET metadata = '[1]'",
    "files.metadata deep": "UPDATE files SET metadata = '"
    + '{"a":' * 5000
    + "1"
    + "}" * 5000
    + "'",
    "files.modality unknown": "UPDATE files SET modality = 'nope'",
    "chunks.ord text": "UPDATE chunks SET ord = 'x'",
    "chunks.span text": "UPDATE chunks SET span_kind = 'text', span_a = 'x'",
    "chunks.span kind": "UPDATE chunks SET span_kind = 'weird', span_a = 1, span_b = 2",
    "chunks.modality unknown": "UPDATE chunks SET modality = 'nope'",
    "chunks.metadata broken": "UPDATE chunks SET metadata = '['",
    "chunks.vector short": "UPDATE chunks SET vector = x'000000'",
    "chunks.vector text": "UPDATE chunks SET vector = 'abcd'",
    "chunks.vector NaN": "UPDATE chunks SET vector = x'"
    + np.full(8, np.nan, "<f4").tobytes().hex()
    + "'",
    "meta compacted_seq text": "INSERT OR REPLACE INTO meta VALUES ('compacted_seq', 'x')",
    "meta schema_version text": "UPDATE meta SET value = 'x' WHERE key = 'schema_version'",
    "no chunks table": "DROP TABLE chunks",
}


@pytest.mark.parametrize("edit", list(_CATALOG_EDITS), ids=list(_CATALOG_EDITS))
def test_a_tampered_catalog_is_a_corrupt_store_error(
    built: tuple[Path, Path], tmp_path: Path, edit: str
) -> None:
    path, docs = _copy(built, tmp_path)
    (path / "store").rename(tmp_path / "snapshot")  # the catalog's vectors are read too
    (path / "store.json").unlink()
    db = sqlite3.connect(path / "catalog.sqlite")
    db.executescript(_CATALOG_EDITS[edit])
    db.commit()
    db.close()
    with pytest.raises(StoreError) as caught:
        _use(path, docs)
    assert "delete" not in str(caught.value)


def _deep_json(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


_CONFIG_EDITS: dict[str, Callable[[dict[str, Any]], object]] = {
    "deep": lambda c: _deep_json(100_000),
    "a list": lambda c: [],
    "no embedder": lambda c: {k: v for k, v in c.items() if k != "embedder"},
    "embedder a string": lambda c: {**c, "embedder": "x"},
    "no dimensions": lambda c: {**c, "embedder": {"kind": "fake"}},
    "dimensions text": lambda c: {**c, "embedder": {**c["embedder"], "dimensions": "eight"}},
    "dimensions huge": lambda c: {**c, "embedder": {**c["embedder"], "dimensions": 10**12}},
    "dimensions bool": lambda c: {**c, "embedder": {**c["embedder"], "dimensions": True}},
    "spec a list": lambda c: {**c, "embedder": {**c["embedder"], "spec": [1]}},
    "spec kind a module": lambda c: {**c, "embedder": {**c["embedder"], "spec": {"kind": "os"}}},
    "chunking a string": lambda c: {**c, "chunking": "x"},
    "chunking options a list": lambda c: {**c, "chunking": {**c["chunking"], "options": [1]}},
    "chunking option a string": lambda c: {**c, "chunking": {"options": {"text": "x"}}},
    "chunking option bad value": lambda c: {
        **c,
        "chunking": {**c["chunking"], "options": {"text": {"size": "x"}}},
    },
    "store a string": lambda c: {**c, "store": "x"},
    "store spec a list": lambda c: {**c, "store": {"spec": [1]}},
    "version other": lambda c: {**c, "version": "x"},
}


@pytest.mark.parametrize("edit", list(_CONFIG_EDITS), ids=list(_CONFIG_EDITS))
def test_a_crafted_config_is_an_mmembed_error(
    built: tuple[Path, Path], tmp_path: Path, edit: str
) -> None:
    path, docs = _copy(built, tmp_path)
    config = json.loads((path / "config.json").read_text())
    made = _CONFIG_EDITS[edit](config)
    (path / "config.json").write_text(made if isinstance(made, str) else json.dumps(made))
    with pytest.raises((CorruptStoreError, ConfigurationError)):
        _use(path, docs)


@pytest.mark.parametrize(
    "state",
    ['{"spec": null, "seq": "x"}', '{"seq": -1}', '{"seq": 1e308}', "[1]", "[" * 100_000],
)
def test_a_crafted_store_json_is_a_corrupt_store_error(
    built: tuple[Path, Path], tmp_path: Path, state: str
) -> None:
    path, docs = _copy(built, tmp_path)
    (path / "store.json").write_text(state)
    with pytest.raises(CorruptStoreError):
        _use(path, docs)


_RESEALS: dict[str, Callable[[Path], object]] = {
    "NaN vectors": lambda g: (g / "vectors.npy").write_bytes(
        npy_bytes(np.full_like(np.load(g / "vectors.npy"), np.nan))
    ),
    "10^12 rows": lambda g: (g / "vectors.npy").write_bytes(
        npy_bytes(np.load(g / "vectors.npy"), shape=(10**12, 8))
    ),
    "Fortran order": lambda g: (g / "vectors.npy").write_bytes(
        npy_bytes(np.load(g / "vectors.npy"), fortran=True)
    ),
    "deep records": lambda g: (g / "records.json").write_text(
        '{"ids": ["0"], "metadata": [' + "[" * 100_000 + "]" * 100_000 + "]}"
    ),
    "records not ids": lambda g: (g / "records.json").write_text('{"ids": 5}'),
}


@pytest.mark.parametrize("kind", ["faiss", "memory"])
@pytest.mark.parametrize("reseal", list(_RESEALS), ids=list(_RESEALS))
def test_a_resealed_store_is_refused_on_load(tmp_path: Path, kind: str, reseal: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_text(80, seed=1, path=docs / "a.txt")
    store = FaissStore(8) if kind == "faiss" else InMemoryStore(8)
    with Index(tmp_path / "ix", embedder=FakeEmbedder(dimensions=8), store=store) as index:
        index.add(docs)
    snapshot = tmp_path / "ix" / "store"
    newest = max(snapshot.glob("gen-*"))
    for older in snapshot.glob("gen-*"):
        if older != newest:
            shutil.rmtree(older)
    _RESEALS[reseal](newest)
    forge_checksums(snapshot)  # checksums recomputed, as an attacker would
    with pytest.raises(CorruptStoreError):
        (FaissStore if kind == "faiss" else InMemoryStore).load(snapshot)
    with pytest.raises(CorruptStoreError):
        Index(tmp_path / "ix")


# -- a full or read-only disk says so ----------------------------------------------------------


def test_a_full_disk_during_indexing_is_a_disk_error_and_keeps_what_was_committed(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_text(80, seed=1, path=docs / "a.txt")
    with Index(tmp_path / "ix", embedder=FakeEmbedder(dimensions=8)) as index:
        index.add(docs)
        before = len(index)
        # the catalog may not grow by one page more: SQLite's own "database or disk is full"
        index._catalog._db.execute("PRAGMA max_page_count = 1")
        for i in range(2, 6):
            make_text(3000, seed=i, path=docs / f"big{i}.txt")
        with pytest.raises(DiskError) as caught:
            index.add(docs)
    message = str(caught.value)
    assert "the disk is full" in message
    assert "free some space and run the command again" in message
    assert "delete" not in message
    with Index(tmp_path / "ix") as reopened:
        assert len(reopened) >= before
        assert reopened.search("cells", k=1)


def test_sqlite_failures_say_what_is_true(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as raised:
        read_only.execute("INSERT INTO t VALUES (1)")
    read_only.close()
    error = sqlite_error(raised.value, "the index catalog")
    assert isinstance(error, DiskError)
    assert "read-only" in str(error)
    assert "the files are intact" in str(error)
    assert "delete" not in str(error)
    # a file that is not a database: damaged, and never "delete the index directory"
    (tmp_path / "ix").mkdir()
    (tmp_path / "ix" / "catalog.sqlite").write_bytes(b"x" * 4096)
    with pytest.raises(CorruptStoreError) as caught:
        Index(tmp_path / "ix", embedder=FakeEmbedder(dimensions=8))
    assert "restore it from a backup" in str(caught.value)
    assert "delete" not in str(caught.value)


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_a_store_is_a_disk_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FaissStore(8)
    store.add(["a"], np.ones((1, 8)))
    monkeypatch.setattr("mmembed.stores._persist.open_new", _no_space)
    with pytest.raises(DiskError, match=r"the disk is full.*previous saved state is intact"):
        store.save(tmp_path / "s")


def test_the_cli_exits_8_on_a_full_disk_not_3_or_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmembed.cli import ExitCode, main

    docs = tmp_path / "docs"
    docs.mkdir()
    make_text(80, seed=1, path=docs / "a.txt")
    monkeypatch.setenv("MMEMBED_HELPER", "off")
    monkeypatch.setattr("mmembed._files.write_bytes_atomic", _no_space)
    with FakeGeminiServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        code = main(["index", "--index", str(tmp_path / "ix"), str(docs)])
    err = capsys.readouterr().err
    assert code == ExitCode.DISK == 8, err
    assert "the disk is full" in err
    assert "delete" not in err
    assert "Traceback" not in err


def test_a_writer_after_another_writers_snapshot_saves_without_reapplying(
    two_files: tuple[Path, Path, Path],
) -> None:
    path, a, _ = two_files
    first = Index(path)
    extra = make_text(40, seed=11, path=a.parent / "c.txt")
    with Index(path) as second:
        # the first index replays the second's committed file before the second saves its
        # snapshot: its store holds everything, but was loaded from the older snapshot
        second.add(extra, progress=lambda _: first.search("cells", k=1))
    later = make_text(40, seed=12, path=a.parent / "d.txt")
    report = first.add(later)
    assert len(report.added) == 1
    assert len(first.store) == len(first) == len(Index(path).store)
    names = {Path(f).name for f in first.files()}
    assert {"c.txt", "d.txt"} <= names
    first.close()


# -- messages say what is true -----------------------------------------------------------------


def test_an_mp4_with_a_damaged_moov_is_not_called_audio(tmp_path: Path) -> None:
    pytest.importorskip("av")
    data = bytearray(make_video(seconds=1.0, audio=False))
    trak = data.find(b"trak")
    assert trak > 0
    data[trak : trak + 400] = bytes(400)  # the track boxes inside the moov header, zeroed
    path = tmp_path / "broken.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(ChunkingError) as caught:
        list(mmembed.chunk(path))
    message = str(caught.value)
    assert "audio" not in message
    assert "damaged" in message
    assert "re-encode or download it again" in message


def test_pypdf_warnings_stay_off_stderr(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    good = make_pdf(pages=2)
    path = tmp_path / "xref.pdf"
    path.write_bytes(good.replace(b"startxref", b"startxref\n999999\n%"))  # a broken pointer
    # a process of its own: pytest's log capture would hide what a user's terminal shows
    script = f"import mmembed; print(len(list(mmembed.chunk({str(path)!r}))))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout) >= 1  # pypdf recovers; it only complained
    assert done.stderr == ""
