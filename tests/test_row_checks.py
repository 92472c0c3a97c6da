"""An embedder that returns the wrong number of rows is caught wherever vectors come back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from mmembed.cache import CachedEmbedder, EmbeddingCache
from mmembed.content import Embeddable, Task
from mmembed.errors import EmbeddingError
from mmembed.index import Index
from mmembed.testing import FakeEmbedder


class FusingEmbedder(FakeEmbedder):
    """Returns ONE vector for a whole list: the silent aggregation bug."""

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        return super().embed(list(items), task=task)[:1]


def test_the_cache_refuses_a_fused_reply_and_stores_nothing(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    with pytest.raises(EmbeddingError, match=r"returned 1x8 for 3 items of 8 dimensions"):
        CachedEmbedder(FusingEmbedder(8), cache).embed(["a", "b", "c"])
    assert len(cache) == 0


def test_an_index_fails_a_file_whose_reply_is_fused_and_keeps_the_others(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.md").write_text("first paragraph here. " * 20 + "\n\n" + "second part. " * 20)
    (notes / "short.md").write_text("one line")
    options = {"text": {"size": 40, "overlap": 0, "unit": "chars"}}
    with Index(tmp_path / "ix", embedder=FusingEmbedder(8), chunk_options=options) as index:
        report = index.add(notes)
        assert [p.path.rsplit("/", 1)[-1] for p in report.failed] == ["long.md"]
        assert "exactly one vector" in report.failed[0].reason
        assert [a.rsplit("/", 1)[-1] for a in report.added] == ["short.md"]
        assert len(index) == 1
