"""The real Gemini API, only when GEMINI_API_KEY is set (never in CI by default)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mmembed import Content, Image, Task
from mmembed.embedders import GeminiEmbedder
from mmembed.testing.media import make_image

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")),
        reason="set GEMINI_API_KEY to run the live Gemini tests",
    ),
]


def test_live_text_and_image_round_trip() -> None:
    with GeminiEmbedder(dimensions=768, max_retry_seconds=120) as embedder:
        docs = embedder.embed(
            [
                "The Krebs cycle takes place in the mitochondrial matrix.",
                "A sonnet is a poem of fourteen lines.",
                Content(
                    ["a red square", Image(make_image("PNG", (32, 32), noise=True), "image/png")]
                ),
            ],
            task=Task.DOCUMENT,
        )
        query = embedder.embed(["where does the citric acid cycle happen?"], task=Task.QUERY)
        assert docs.shape == (3, 768)
        np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-5)
        assert docs[0] @ query[0] > docs[1] @ query[0]
        assert embedder.usage.requests == 2
