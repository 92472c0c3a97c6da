"""Helpers for testing code that uses mmembed, with no network and no API key.

- :class:`FakeEmbedder`: a deterministic in-process embedder of any width.
"""

from __future__ import annotations

from mmembed.testing._fake_embedder import FakeEmbedder, FakeEmbedderCall

__all__ = ["FakeEmbedder", "FakeEmbedderCall"]
