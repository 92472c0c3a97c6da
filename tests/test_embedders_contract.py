from __future__ import annotations

import pytest

from mmembed import Matryoshka
from mmembed.protocols import Embedder
from mmembed.testing import FakeEmbedder
from mmembed.testing.contracts import EmbedderContract


class TestFakeEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return FakeEmbedder(dimensions=256)


class TestMatryoshkaOverFake(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return Matryoshka(FakeEmbedder(dimensions=512), 128)
