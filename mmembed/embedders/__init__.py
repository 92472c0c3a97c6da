"""Embedders: turn items into unit float32 vectors.

- :class:`GeminiEmbedder`: Gemini Embedding 2 (and gemini-embedding-001) via google-genai.

google-genai is imported when an embedder is created, not when this package is imported.
"""

from __future__ import annotations

from mmembed.embedders.gemini import EmbeddingUsage, GeminiEmbedder

__all__ = ["EmbeddingUsage", "GeminiEmbedder"]
