"""Gemini Embedding 2 (and gemini-embedding-001) through the google-genai SDK, done right.

What this package guarantees, each point a trap the popular frameworks fall into:

- one content per item, so N items always give N vectors (a bare list of strings gives ONE fused
  vector on gemini-embedding-2), checked on every response together with the width;
- at most ``limits.max_items_per_call`` items per call, several calls in flight at once, rows in
  input order;
- every item checked against :func:`mmembed.limits.limits_for` before anything is sent;
- the task as the documented text prefix for Gemini Embedding 2, as ``task_type`` for 001;
- retries with backoff and jitter on 429, 5xx, timeouts and dropped connections, waiting at least
  as long as the server's ``RetryInfo`` asks, bounded in attempts and in total time;
- SDK and HTTP errors translated once into :mod:`mmembed.errors`, with the API key scrubbed from
  every object that would carry it;
- media too large to send inline uploaded through the Files API;
- tokens and an estimated cost counted per call and cumulatively.

google-genai is imported when an embedder is created, never by ``import mmembed``.

Inside, each private module owns one idea: ``_embedder`` (the class: options, properties,
``embed``/``aembed``), ``_items`` (checked items and calls), ``_tasks`` (task prefixes and
``task_type``), ``_transport`` (the public-SDK and the fast path, and every private SDK access),
``_reply`` (reading replies), ``_errors`` (error translation), ``_retry`` (the retry policy and
the sync and async drivers), ``_pool`` (several calls in flight), ``_files`` (Files API upload and
poll), ``_usage`` (tokens and cost).

>>> from mmembed.testing import FakeGeminiServer
>>> with FakeGeminiServer() as server:
...     embedder = GeminiEmbedder(dimensions=768, client=server.client())
...     embedder.embed(["a red bicycle", "a blue car"]).shape
(2, 768)
"""

from __future__ import annotations

from mmembed.embedders.gemini._embedder import GeminiEmbedder
from mmembed.embedders.gemini._tasks import TASK_PREFIXES, TASK_TYPES, apply_task
from mmembed.embedders.gemini._usage import EmbeddingUsage

__all__ = [
    "TASK_PREFIXES",
    "TASK_TYPES",
    "EmbeddingUsage",
    "GeminiEmbedder",
    "apply_task",
]
