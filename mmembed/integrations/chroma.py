"""Chroma adapter: any mmembed embedder as a Chroma embedding function (texts and images).

Chroma's ``EmbeddingFunction`` is a protocol, so :class:`ChromaEmbeddingFunction` implements it
without importing ``chromadb`` (which is large): this module imports nothing heavy, and works
with ``chromadb>=1.0`` (``pip install "mmembed[chroma]"``)::

    import chromadb
    from mmembed.integrations.chroma import ChromaEmbeddingFunction

    ef = ChromaEmbeddingFunction(model="gemini-embedding-2", dimensions=768)
    docs = chromadb.Client().create_collection("docs", embedding_function=ef)
    docs.add(ids=["a", "b"], documents=["cats purr", "rockets fly"])
    docs.query(query_texts=["kittens"], n_results=1)

Unlike Chroma's bundled Google function, each document gets its own vector (never one fused
vector for the list), queries are embedded with the query task (``embed_query``), and image
arrays (Chroma's ``images=``) are embedded too when the embedder takes images.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._optional import import_optional
from mmembed.content import Content, Embeddable, Image, Part, Task
from mmembed.errors import ConfigurationError, UnsupportedMediaError
from mmembed.integrations._common import (
    DEFAULT_MODEL,
    build_gemini,
    check_embedder,
    refuse_parameters_with_embedder,
    rows_as_floats,
)
from mmembed.protocols import Embedder

__all__ = ["ChromaEmbeddingFunction", "register_with_chroma"]

_NAME = "mmembed"


class ChromaEmbeddingFunction:
    """A Chroma embedding function backed by any mmembed :class:`~mmembed.protocols.Embedder`.

    Calling it (what Chroma does for ``documents=`` and ``images=``) embeds with
    ``document_task``; :meth:`embed_query` (what Chroma does for ``query_texts=`` and
    ``query_images=``) uses ``query_task``. Each input gets one float32 vector, in order.

    Inputs may be strings, images as numpy arrays (Chroma's ``Image``: ``(height, width)`` or
    ``(height, width, 3|4)`` of ``uint8``), or any mmembed part or
    :class:`~mmembed.content.Content`.

    Args:
        embedder: the mmembed embedder; leave it out to build a ``GeminiEmbedder`` (on first use)
            from ``model``, ``dimensions`` and ``api_key``.
        model: Gemini model id (default ``"gemini-embedding-2"``); only without ``embedder``.
        dimensions: Gemini output size; only without ``embedder``.
        api_key: Gemini API key; by default the SDK reads ``GOOGLE_API_KEY``/``GEMINI_API_KEY``.
            It is never written into Chroma's stored collection configuration.
        query_task: task for queries.
        document_task: task for what gets stored.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | None = None,
        dimensions: int | None = None,
        api_key: str | None = None,
        query_task: Task = Task.QUERY,
        document_task: Task = Task.DOCUMENT,
    ) -> None:
        if embedder is not None:
            refuse_parameters_with_embedder(
                "ChromaEmbeddingFunction", model=model, dimensions=dimensions, api_key=api_key
            )
            self._embedder: Embedder | None = check_embedder(
                embedder, who="ChromaEmbeddingFunction"
            )
            self._model = embedder.model
            self._dimensions: int | None = embedder.dimensions
        else:
            self._embedder = None
            self._model = model or DEFAULT_MODEL
            self._dimensions = dimensions
        self._api_key = api_key
        self.query_task = Task(query_task)
        self.document_task = Task(document_task)
        # Chroma looks functions up by name when it reopens a collection: make sure it can.
        if "chromadb" in sys.modules:
            register_with_chroma()

    @property
    def embedder(self) -> Embedder:
        """The mmembed embedder (for Gemini parameters, created on first use)."""
        if self._embedder is None:
            self._embedder = build_gemini(
                model=self._model, dimensions=self._dimensions, api_key=self._api_key, options={}
            )
        return self._embedder

    # -- Chroma's EmbeddingFunction protocol ---------------------------------------------------

    def __call__(self, input: Sequence[Any]) -> list[NDArray[np.float32]]:
        """Embed documents or images for storage: one vector per input."""
        return self._embed(input, self.document_task)

    def embed_query(self, input: Sequence[Any]) -> list[NDArray[np.float32]]:
        """Embed queries (texts or images) with the query task."""
        return self._embed(input, self.query_task)

    @staticmethod
    def name() -> str:
        """The name Chroma stores in the collection configuration."""
        return _NAME

    def get_config(self) -> dict[str, Any]:
        """What Chroma stores to rebuild this function later (never the API key)."""
        kind = "gemini" if self._embedder is None else _kind(self._embedder)
        config: dict[str, Any] = {
            "kind": kind,
            "model": self._model,
            "query_task": self.query_task.value,
            "document_task": self.document_task.value,
        }
        if self._dimensions is not None:
            config["dimensions"] = self._dimensions
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        """Rebuild from :meth:`get_config` output (Gemini and fake embedders only).

        Raises:
            ConfigurationError: the collection was made with another kind of embedder; pass
                ``embedding_function=`` when opening it.
        """
        kind = config.get("kind")
        query_task = Task(config.get("query_task", Task.QUERY))
        document_task = Task(config.get("document_task", Task.DOCUMENT))
        if kind == "gemini":
            return ChromaEmbeddingFunction(
                model=config.get("model"),
                dimensions=config.get("dimensions"),
                query_task=query_task,
                document_task=document_task,
            )
        if kind == "fake":
            from mmembed.testing import FakeEmbedder

            fake = FakeEmbedder(int(config["dimensions"]), model=str(config["model"]))
            return ChromaEmbeddingFunction(fake, query_task=query_task, document_task=document_task)
        raise ConfigurationError(
            f"this Chroma collection was embedded with {config.get('model')!r} "
            f"({kind} embedder), which mmembed cannot rebuild by itself: open the collection "
            "with embedding_function=ChromaEmbeddingFunction(your_embedder)"
        )

    def is_legacy(self) -> bool:
        """Chroma asks this; ``False`` means name and config are available."""
        return False

    def default_space(self) -> str:
        """Cosine: the vectors are unit length, and mmembed scores are cosine everywhere."""
        return "cosine"

    def supported_spaces(self) -> list[str]:
        """On unit vectors all three rank the same; cosine reads best."""
        return ["cosine", "ip", "l2"]

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Check a stored configuration."""
        if config.get("kind") not in ("gemini", "fake", "custom"):
            raise ConfigurationError(f"not an mmembed embedding function config: {config!r}")

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Refuse changes that would mix vectors of different models or widths."""
        for key in ("model", "dimensions"):
            if key in new_config and new_config[key] != old_config.get(key):
                raise ConfigurationError(
                    f"cannot change {key} of an existing collection ({old_config.get(key)!r} -> "
                    f"{new_config[key]!r}): its stored vectors would no longer compare; create a "
                    "new collection"
                )

    def __repr__(self) -> str:
        inner = repr(self._embedder) if self._embedder is not None else f"model={self._model!r}"
        return f"ChromaEmbeddingFunction({inner})"

    # -- helpers --------------------------------------------------------------------------------

    def _embed(self, input: object, task: Task) -> list[NDArray[np.float32]]:
        if isinstance(input, str | bytes) or (isinstance(input, np.ndarray) and input.ndim != 1):
            # a bare string or one image array: Chroma always passes a list
            raise ConfigurationError(
                "Chroma embedding functions take a list of documents or images, not one item"
            )
        if not isinstance(input, Sequence | np.ndarray):
            raise ConfigurationError(
                f"Chroma embedding functions take a list, got {type(input).__name__}"
            )
        items = [_item(x, i) for i, x in enumerate(input)]
        if not items:
            return []
        matrix = self.embedder.embed(items, task=task)
        rows_as_floats(matrix, len(items), model=self._model)  # the row-count check
        return [np.asarray(row, dtype=np.float32) for row in matrix]


def _kind(embedder: Embedder) -> str:
    name = type(embedder).__name__
    if name == "GeminiEmbedder":
        return "gemini"
    if name == "FakeEmbedder":
        return "fake"
    return "custom"


def _item(value: Any, index: int) -> Embeddable:
    if isinstance(value, str | Part | Content):
        return value
    if isinstance(value, np.ndarray):
        return _array_image(value, index)
    raise UnsupportedMediaError(
        f"input {index}: Chroma passed a {type(value).__name__}; expected a document string or "
        "an image array"
    )


def _array_image(array: NDArray[Any], index: int) -> Image:
    """A PNG :class:`Image` from one of Chroma's image arrays (lossless, any size)."""
    from PIL import Image as PILImage

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UnsupportedMediaError(
            f"input {index}: an image array must be (height, width) or (height, width, 3 or 4), "
            f"got shape {array.shape}"
        )
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(array.max()) <= 1.0:
            array = array * 255.0  # float images in 0..1
        array = np.clip(array, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return Image(buf.getvalue(), "image/png")


def register_with_chroma() -> None:
    """Register :class:`ChromaEmbeddingFunction` with Chroma under the name ``"mmembed"``.

    Chroma rebuilds a collection's embedding function from its stored configuration when the
    collection is opened without one; that needs the class registered in this process first.
    Creating a ``ChromaEmbeddingFunction`` registers it already when ``chromadb`` is imported.
    """
    functions = import_optional(
        "chromadb.utils.embedding_functions", extra="chroma", purpose="register_with_chroma"
    )
    functions.known_embedding_functions[_NAME] = ChromaEmbeddingFunction
