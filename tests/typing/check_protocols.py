"""Checked by mypy in CI, never run: the implementations satisfy the protocols."""

from __future__ import annotations

from mmembed import Matryoshka
from mmembed.protocols import Embedder
from mmembed.testing import FakeEmbedder

fake: Embedder = FakeEmbedder(dimensions=8)
wrapped: Embedder = Matryoshka(fake, 4)
