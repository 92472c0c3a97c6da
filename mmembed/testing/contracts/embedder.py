"""The contract every :class:`~mmembed.protocols.Embedder` passes.

Subclass :class:`EmbedderContract` in a test module and provide an ``embedder`` fixture::

    import pytest
    from mmembed.testing.contracts import EmbedderContract


    class TestMyEmbedder(EmbedderContract):
        @pytest.fixture
        def embedder(self):
            return MyEmbedder()

The texts in :data:`TEXTS` are embedded (two about mitochondria must score closer than one about
sonnets); ``test_every_task_is_accepted`` tries every :class:`~mmembed.Task`. Bad input is a
:class:`~mmembed.errors.ConfigurationError` from every embedder alike: one item where a sequence
belongs (``embed("abc")``, ``embed({"a": 1})``), an item that is not content, an unknown task.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mmembed import Content, Task, Text
from mmembed.errors import ConfigurationError
from mmembed.protocols import Embedder

__all__ = ["TEXTS", "EmbedderContract"]

#: The texts the contract embeds.
TEXTS = [
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis turns light into chemical energy.",
    "The Krebs cycle runs in the mitochondrial matrix.",
    "A sonnet has fourteen lines.",
    "",
]


class EmbedderContract:
    """Behaviour users rely on, whatever the backend."""

    @pytest.fixture
    def embedder(self) -> Embedder:
        raise NotImplementedError

    def test_shape_dtype_and_unit_rows(self, embedder: Embedder) -> None:
        out = embedder.embed(TEXTS[:4])
        assert out.shape == (4, embedder.dimensions)
        assert out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)

    def test_empty_input_gives_zero_rows(self, embedder: Embedder) -> None:
        out = embedder.embed([])
        assert out.shape == (0, embedder.dimensions)
        assert out.dtype == np.float32

    def test_rows_follow_input_order(self, embedder: Embedder) -> None:
        batch = embedder.embed(TEXTS[:4])
        for i, text in enumerate(TEXTS[:4]):
            single = embedder.embed([text])
            np.testing.assert_allclose(single[0], batch[i], atol=1e-5)

    def test_deterministic(self, embedder: Embedder) -> None:
        np.testing.assert_array_equal(embedder.embed(TEXTS[:3]), embedder.embed(TEXTS[:3]))

    def test_str_and_text_are_the_same_item(self, embedder: Embedder) -> None:
        a = embedder.embed([TEXTS[0]])
        b = embedder.embed([Text(TEXTS[0])])
        np.testing.assert_allclose(a, b, atol=1e-6)

    def test_content_gives_one_combined_vector(self, embedder: Embedder) -> None:
        out = embedder.embed([Content([TEXTS[0], TEXTS[1]]), TEXTS[2]])
        assert out.shape == (2, embedder.dimensions)

    def test_every_task_is_accepted(self, embedder: Embedder) -> None:
        for task in Task:
            out = embedder.embed([TEXTS[0]], task=task)
            assert out.shape == (1, embedder.dimensions)

    def test_one_item_where_a_sequence_belongs_is_refused(self, embedder: Embedder) -> None:
        # a bare str would embed its characters, a dict its keys: neither is what was meant
        for items in ("abc", b"abc", Text("abc"), Content(["abc"]), {"a": 1}, None, 5):
            with pytest.raises(ConfigurationError, match="sequence of items"):
                embedder.embed(items)  # type: ignore[arg-type]

    def test_items_that_are_not_content_are_refused(self, embedder: Embedder) -> None:
        for item in (None, 5, b"abc", {"a": 1}, ["a"]):
            with pytest.raises(ConfigurationError, match="cannot embed"):
                embedder.embed([item])  # type: ignore[list-item]

    def test_an_unknown_task_is_refused(self, embedder: Embedder) -> None:
        for task in ("bad", 5, None):
            with pytest.raises(ConfigurationError, match="unknown task"):
                embedder.embed([TEXTS[0]], task=task)  # type: ignore[arg-type]

    def test_async_matches_sync(self, embedder: Embedder) -> None:
        sync = embedder.embed(TEXTS[:3], task=Task.QUERY)
        async_ = asyncio.run(embedder.aembed(TEXTS[:3], task=Task.QUERY))
        np.testing.assert_allclose(sync, async_, atol=1e-6)

    def test_related_texts_score_higher(self, embedder: Embedder) -> None:
        out = embedder.embed(TEXTS[:4])
        related = float(out[0] @ out[2])  # both about mitochondria
        unrelated = float(out[0] @ out[3])
        assert related > unrelated
