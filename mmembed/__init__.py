"""mmembed: multimodal embeddings with Gemini Embedding 2, chunked with provenance, searchable.

Files become chunks, chunks become vectors, vectors go into a store, and search results point
back into the files (``lecture3.mp4#t=720,750``, ``deck.pdf#page=7``).

Heavy dependencies (google-genai, FAISS, PyAV) load on first use, so ``import mmembed`` is fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

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
    BudgetExceededError,
    ChunkingError,
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    EmbeddingError,
    IncompatibleIndexError,
    IndexLockedError,
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

if TYPE_CHECKING:
    from mmembed.cache import CachedEmbedder, EmbeddingCache
    from mmembed.chunkers import chunk
    from mmembed.embedders.gemini import GeminiEmbedder
    from mmembed.index import Index, IndexReport
    from mmembed.results import Result, Results
    from mmembed.stores import FaissStore, InMemoryStore, QdrantStore

try:
    __version__ = version("mmembed")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# name -> module that defines it; imported on first access to keep `import mmembed` light
_LAZY: dict[str, str] = {
    "CachedEmbedder": "mmembed.cache",
    "EmbeddingCache": "mmembed.cache",
    "FaissStore": "mmembed.stores",
    "GeminiEmbedder": "mmembed.embedders.gemini",
    "InMemoryStore": "mmembed.stores",
    "Index": "mmembed.index",
    "IndexReport": "mmembed.index",
    "QdrantStore": "mmembed.stores",
    "Result": "mmembed.results",
    "Results": "mmembed.results",
    "chunk": "mmembed.chunkers",
}

__all__ = [
    "Audio",
    "AuthenticationError",
    "BudgetExceededError",
    "CachedEmbedder",
    "Chunk",
    "Chunker",
    "ChunkingError",
    "ConfigurationError",
    "Content",
    "CorruptStoreError",
    "DimensionMismatchError",
    "Embeddable",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingError",
    "FaissStore",
    "GeminiEmbedder",
    "Hit",
    "Image",
    "InMemoryStore",
    "IncompatibleIndexError",
    "Index",
    "IndexLockedError",
    "IndexReport",
    "InputLimitError",
    "MMEmbedError",
    "Matryoshka",
    "MissingDependencyError",
    "Modality",
    "PageSpan",
    "Part",
    "Pdf",
    "ProviderError",
    "QdrantStore",
    "RateLimitError",
    "Result",
    "Results",
    "StoreError",
    "Task",
    "Text",
    "TextSpan",
    "TimeSpan",
    "UnsupportedMediaError",
    "VectorStore",
    "Video",
    "__version__",
    "chunk",
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
