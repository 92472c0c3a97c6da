"""mmembed: multimodal embeddings with Gemini Embedding 2, chunked with provenance, searchable.

Files become chunks, chunks become vectors, vectors go into a store, and search results point
back into the files (``lecture3.mp4#t=720,750``, ``deck.pdf#page=7``).

Heavy dependencies (google-genai, FAISS, PyAV) load on first use, so ``import mmembed`` is fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmembed._optional import lazy_attributes
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
    DiskError,
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

if TYPE_CHECKING:
    from mmembed._version import __version__
    from mmembed.cache import CachedEmbedder, EmbeddingCache
    from mmembed.chunkers import chunk
    from mmembed.embedders.gemini import GeminiEmbedder
    from mmembed.index import Index, IndexReport
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
    from mmembed.results import Result, Results
    from mmembed.stores import FaissStore, InMemoryStore, QdrantStore

# name -> module that defines it; imported on first access to keep `import mmembed` light
# (numpy, behind the protocols and Matryoshka, and the package metadata take a third of a
# second: a command that only asks a resident helper needs neither)
_LAZY: dict[str, str] = {
    "__version__": "mmembed._version",
    "Matryoshka": "mmembed.matryoshka",
    "truncate": "mmembed.matryoshka",
    "Chunk": "mmembed.protocols",
    "Chunker": "mmembed.protocols",
    "Embedder": "mmembed.protocols",
    "Hit": "mmembed.protocols",
    "PageSpan": "mmembed.protocols",
    "TextSpan": "mmembed.protocols",
    "TimeSpan": "mmembed.protocols",
    "VectorStore": "mmembed.protocols",
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
    "DiskError",
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


__getattr__, __dir__ = lazy_attributes("mmembed", _LAZY, globals())
