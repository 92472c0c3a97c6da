"""The contract every :class:`~mmembed.protocols.Embedder` passes.

Subclass :class:`EmbedderContract` in a test module and provide an ``embedder`` fixture::

    import pytest
    from mmembed.testing.contracts import EmbedderContract


    class TestMyEmbedder(EmbedderContract):
        @pytest.fixture
        def embedder(self):
            return MyEmbedder()

The texts in :data:`TEXTS` are embedded (two about mitochondria must score closer than one about
sonnets); ``test_every_task_is_accepted`` tries every :class:`~mmembed.Task`.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mmembed import Content, Task, Text
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

    def test_async_matches_sync(self, embedder: Embedder) -> None:
        sync = embedder.embed(TEXTS[:3], task=Task.QUERY)
        async_ = asyncio.run(embedder.aembed(TEXTS[:3], task=Task.QUERY))
        np.testing.assert_allclose(sync, async_, atol=1e-6)

    def test_related_texts_score_higher(self, embedder: Embedder) -> None:
        out = embedder.embed(TEXTS[:4])
        related = float(out[0] @ out[2])  # both about mitochondria
        unrelated = float(out[0] @ out[3])
        assert related > unrelated
