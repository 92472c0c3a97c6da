"""EmbeddingCache and CachedEmbedder: the same item is never embedded twice."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmembed import Image, Task, Text
from mmembed.cache import CachedEmbedder, EmbeddingCache
from mmembed.content import content_hash
from mmembed.errors import CorruptStoreError
from mmembed.protocols import Embedder
from mmembed.testing import FakeEmbedder
from mmembed.testing.contracts.embedder import EmbedderContract
from mmembed.testing.media import make_image


class TestCachedEmbedderContract(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return CachedEmbedder(FakeEmbedder(dimensions=64), EmbeddingCache(":memory:"))


def _vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_vectors_round_trip_exactly_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.sqlite"
    vectors = _vectors(3, 16)
    with EmbeddingCache(path) as cache:
        cache.put_many(["a", "b", "c"], vectors, model="m", dimensions=16, task=Task.QUERY)
    with EmbeddingCache(path) as again:
        got = again.get_many(["c", "x", "a"], model="m", dimensions=16, task=Task.QUERY)
        assert got[1] is None
        np.testing.assert_array_equal(got[0], vectors[2])
        np.testing.assert_array_equal(got[2], vectors[0])
        assert got[0].dtype == np.float32
        assert len(again) == 3


def test_model_dimensions_and_task_are_part_of_the_key() -> None:
    cache = EmbeddingCache(":memory:")
    cache.put_many(["h"], _vectors(1, 8), model="m", dimensions=8, task=Task.QUERY)
    assert cache.get_many(["h"], model="m", dimensions=8, task=Task.DOCUMENT) == [None]
    assert cache.get_many(["h"], model="other", dimensions=8, task=Task.QUERY) == [None]
    assert cache.get_many(["h"], model="m", dimensions=16, task=Task.QUERY) == [None]
    assert cache.get_many(["h"], model="m", dimensions=8, task=Task.QUERY)[0] is not None


def test_many_keys_in_one_lookup() -> None:
    cache = EmbeddingCache(":memory:")
    keys = [f"k{i}" for i in range(2500)]  # more than one SQL chunk
    cache.put_many(keys, _vectors(2500, 4), model="m", dimensions=4, task="t")
    got = cache.get_many(keys, model="m", dimensions=4, task="t")
    assert all(v is not None for v in got)


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                keys = [f"{t}-{i}-{j}" for j in range(5)]
                cache.put_many(keys, _vectors(5, 8, t * 100 + i), model="m", dimensions=8, task="q")
                assert all(
                    v is not None for v in cache.get_many(keys, model="m", dimensions=8, task="q")
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) == 6 * 20 * 5


def test_a_file_that_is_not_a_cache_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CorruptStoreError, match="delete it"):
        EmbeddingCache(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    with pytest.raises(CorruptStoreError):
        EmbeddingCache(other)


def test_a_damaged_row_is_a_miss() -> None:
    cache = EmbeddingCache(":memory:")
    cache.put_many(["h"], _vectors(1, 8), model="m", dimensions=8, task="q")
    cache._db.execute("UPDATE embeddings SET vector = x'0000'")
    assert cache.get_many(["h"], model="m", dimensions=8, task="q") == [None]


def test_only_misses_reach_the_wrapped_embedder_each_once() -> None:
    inner = FakeEmbedder(dimensions=32)
    cached = CachedEmbedder(inner, EmbeddingCache(":memory:"))
    first = cached.embed(["a", "b", "a", Text("b")], task=Task.QUERY)
    assert [list(c.items) for c in inner.calls] == [["a", "b"]]
    np.testing.assert_array_equal(first[0], first[2])
    second = cached.embed(["b", "c", "a"], task=Task.QUERY)
    assert list(inner.calls[-1].items) == ["c"]
    np.testing.assert_allclose(second, inner.embed(["b", "c", "a"]), atol=1e-7)
    assert (cached.hits, cached.misses) == (4, 3)
    cached.embed(["a"], task=Task.DOCUMENT)  # another task is another key
    assert list(inner.calls[-1].items) == ["a"]


def test_media_items_are_keyed_by_their_bytes(tmp_path: Path) -> None:
    inner = FakeEmbedder(dimensions=16)
    cached = CachedEmbedder(inner, tmp_path / "c.sqlite")
    data = make_image("PNG", (8, 8), noise=True, seed=4)
    on_disk = tmp_path / "same.png"
    on_disk.write_bytes(data)
    cached.embed([Image(data, "image/png")])
    cached.embed([Image.from_path(on_disk)])  # same bytes, held by path
    assert len(inner.calls) == 1
    assert content_hash(Image(data, "image/png")) == content_hash(Image.from_path(on_disk))


def test_async_uses_the_cache_too() -> None:
    inner = FakeEmbedder(dimensions=16)
    cached = CachedEmbedder(inner, EmbeddingCache(":memory:"))
    a = asyncio.run(cached.aembed(["x", "y"]))
    b = asyncio.run(cached.aembed(["y", "x"]))
    assert len(inner.calls) == 1
    np.testing.assert_array_equal(a[::-1], b)


@given(
    st.lists(st.sampled_from(["red", "green", "blue", "cyan", ""]), max_size=12),
    st.lists(st.sampled_from(["red", "blue", "magenta"]), max_size=4),
)
def test_cached_rows_equal_direct_rows_and_nothing_is_sent_twice(
    items: list[str], warm: list[str]
) -> None:
    inner = FakeEmbedder(dimensions=8)
    cached = CachedEmbedder(inner, EmbeddingCache(":memory:"))
    cached.embed(warm)
    out = cached.embed(items)
    assert out.shape == (len(items), 8)
    if items:
        np.testing.assert_allclose(out, FakeEmbedder(dimensions=8).embed(items), atol=1e-7)
    sent = [i for call in inner.calls for i in call.items]
    assert len(sent) == len(set(sent))
    assert set(sent) == set(warm) | set(items)


def test_repr() -> None:
    cache = EmbeddingCache(":memory:")
    assert repr(cache) == "EmbeddingCache(':memory:')"
    assert "FakeEmbedder" in repr(CachedEmbedder(FakeEmbedder(dimensions=4), cache))
