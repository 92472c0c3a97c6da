"""Helpers for testing code that uses mmembed, with no network and no API key.

- :class:`FakeEmbedder`: a deterministic in-process embedder of any width.
- :class:`FakeGeminiServer`: the Gemini embedding API on 127.0.0.1 for the real google-genai SDK
  (and any process pointed at it through :meth:`FakeGeminiServer.env`).
- :mod:`mmembed.testing.media`: real small files of every kind (``make_text``, ``make_image``,
  ``make_audio``, ``make_video``, ``make_pdf``); import it on its own, it is not loaded here.
"""

from __future__ import annotations

from mmembed.testing._fake_embedder import FakeEmbedder, FakeEmbedderCall
from mmembed.testing._fake_gemini import FakeGeminiServer, FakeGeminiUsage, RecordedRequest

__all__ = [
    "FakeEmbedder",
    "FakeEmbedderCall",
    "FakeGeminiServer",
    "FakeGeminiUsage",
    "RecordedRequest",
]
