"""mmembed: multimodal embeddings with Gemini Embedding 2, chunked with provenance, searchable.

Files become chunks, chunks become vectors, vectors go into a store, and search results point
back into the files (``lecture3.mp4#t=720,750``, ``deck.pdf#page=7``).

Heavy dependencies (google-genai, FAISS, PyAV) load on first use, so ``import mmembed`` is fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mmembed.content import (
    Audio,
    Content,
    Embeddable,
    Image,
    Modality,
    Part,
    Pdf,
    Task,
    Text,
    Video,
    load,
)
from mmembed.errors import (
    AuthenticationError,
    ChunkingError,
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    EmbeddingError,
    IncompatibleIndexError,
    InputLimitError,
    MissingDependencyError,
    MMEmbedError,
    ProviderError,
    RateLimitError,
    StoreError,
    UnsupportedMediaError,
)
from mmembed.matryoshka import Matryoshka, truncate
from mmembed.protocols import (
    Chunk,
    Chunker,
    Embedder,
    Hit,
    PageSpan,
    TextSpan,
    TimeSpan,
    VectorStore,
)

try:
    __version__ = version("mmembed")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# name -> module that defines it; imported on first access to keep `import mmembed` light
_LAZY: dict[str, str] = {}

__all__ = [
    "Audio",
    "AuthenticationError",
    "Chunk",
    "Chunker",
    "ChunkingError",
    "ConfigurationError",
    "Content",
    "CorruptStoreError",
    "DimensionMismatchError",
    "Embeddable",
    "Embedder",
    "EmbeddingError",
    "Hit",
    "Image",
    "IncompatibleIndexError",
    "InputLimitError",
    "MMEmbedError",
    "Matryoshka",
    "MissingDependencyError",
    "Modality",
    "PageSpan",
    "Part",
    "Pdf",
    "ProviderError",
    "RateLimitError",
    "StoreError",
    "Task",
    "Text",
    "TextSpan",
    "TimeSpan",
    "UnsupportedMediaError",
    "VectorStore",
    "Video",
    "__version__",
    "load",
    "truncate",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmembed' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
