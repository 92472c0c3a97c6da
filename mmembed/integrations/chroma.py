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

Importing this module is all it takes for Chroma to rebuild the function when a collection is
reopened without ``embedding_function=``, in any process: it registers the class with Chroma as
soon as Chroma's own registry is imported (now, or later), without importing Chroma itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import io
import os
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
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
    refuse_unknown_arguments,
    rows_as_floats,
)
from mmembed.protocols import Embedder
from mmembed.registry import build_embedder, to_spec

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

    Chroma's own names work as they do for its other embedding functions: ``model_name`` (the
    same as ``model``) and ``api_key_env_var``, the environment variable the key is read from;
    that name is stored in the collection configuration (the key never is), so a reopened
    collection reads the key from the same variable. Any other unknown name fails here, at
    construction, with the name it most likely meant (``dimension`` → ``dimensions``).

    Args:
        embedder: the mmembed embedder; leave it out to build a ``GeminiEmbedder`` (on first use)
            from ``model``, ``dimensions`` and ``api_key``.
        model: Gemini model id (default ``"gemini-embedding-2"``); only without ``embedder``.
        model_name: Chroma's name for ``model``; give one of the two.
        dimensions: Gemini output size; only without ``embedder``.
        api_key: Gemini API key; by default the SDK reads ``GOOGLE_API_KEY``/``GEMINI_API_KEY``.
            It is never written into Chroma's stored collection configuration.
        api_key_env_var: read the key from this environment variable (on first use) instead;
            stored in the configuration. Not together with ``api_key``.
        query_task: task for queries.
        document_task: task for what gets stored.

    Raises:
        ConfigurationError: an unknown argument, one setting under two names, or Gemini
            parameters next to a ready embedder.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | None = None,
        model_name: str | None = None,
        dimensions: int | None = None,
        api_key: str | None = None,
        api_key_env_var: str | None = None,
        query_task: Task = Task.QUERY,
        document_task: Task = Task.DOCUMENT,
        **unknown: Any,
    ) -> None:
        # **unknown exists only to answer a wrong name with the right one, here and not at the
        # first embed (Chroma's Gemini function calls the width `dimension`, for one)
        refuse_unknown_arguments("ChromaEmbeddingFunction", unknown, _ACCEPTED, hints=_HINTS)
        for name, value, other, other_value in (
            ("model", model, "model_name", model_name),
            ("api_key", api_key, "api_key_env_var", api_key_env_var),
        ):
            if value is not None and other_value is not None:
                raise ConfigurationError(
                    f"ChromaEmbeddingFunction got both {name} and {other}: give one of them"
                )
        model = model if model is not None else model_name
        if embedder is not None:
            refuse_parameters_with_embedder(
                "ChromaEmbeddingFunction",
                model=model,
                dimensions=dimensions,
                api_key=api_key,
                api_key_env_var=api_key_env_var,
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
        self.api_key_env_var = api_key_env_var
        self.query_task = Task(query_task)
        self.document_task = Task(document_task)

    @property
    def embedder(self) -> Embedder:
        """The mmembed embedder (for Gemini parameters, created on first use)."""
        if self._embedder is None:
            key = self._api_key
            if self.api_key_env_var is not None:
                key = os.environ.get(self.api_key_env_var) or None
                if key is None:
                    raise ConfigurationError(
                        f"the environment variable {self.api_key_env_var} (this collection's "
                        "api_key_env_var) is not set: set it to your Gemini API key"
                    )
            self._embedder = build_gemini(
                model=self._model, dimensions=self._dimensions, api_key=key, options={}
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
        """What Chroma stores to rebuild this function later (never the API key).

        Built from Gemini parameters, the parameters (and ``api_key_env_var``); built from an
        embedder, its spec (see :mod:`mmembed.registry`), so any embedder that can describe
        itself (wrapped, local, third-party) is rebuilt when the collection is reopened.
        """
        config: dict[str, Any] = {
            "kind": "gemini",
            "model": self._model,
            "query_task": self.query_task.value,
            "document_task": self.document_task.value,
        }
        if self._embedder is not None:
            try:
                spec: dict[str, Any] | None = to_spec(self._embedder)
            except ConfigurationError:
                spec = None
            config["kind"] = spec["kind"] if spec is not None else "custom"
            config["spec"] = spec
        if self._dimensions is not None:
            config["dimensions"] = self._dimensions
        if self.api_key_env_var is not None:
            config["api_key_env_var"] = self.api_key_env_var  # the variable's name, not the key
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        """Rebuild from :meth:`get_config` output.

        Raises:
            ConfigurationError: the collection was made with an embedder that cannot describe
                itself; pass ``embedding_function=`` when opening it.
        """
        query_task = Task(config.get("query_task", Task.QUERY))
        document_task = Task(config.get("document_task", Task.DOCUMENT))
        spec = config.get("spec")
        if spec is None and config.get("kind") == "fake":  # written before specs were stored
            spec = {"kind": "fake", "dimensions": config["dimensions"], "model": config["model"]}
        if spec is not None:
            return ChromaEmbeddingFunction(
                build_embedder(spec), query_task=query_task, document_task=document_task
            )
        if config.get("kind") == "gemini":
            return ChromaEmbeddingFunction(
                model=config.get("model"),
                dimensions=config.get("dimensions"),
                api_key_env_var=config.get("api_key_env_var"),
                query_task=query_task,
                document_task=document_task,
            )
        raise ConfigurationError(
            f"this Chroma collection was embedded with {config.get('model')!r} (an embedder "
            "that cannot describe itself), which mmembed cannot rebuild by itself: open the "
            "collection with embedding_function=ChromaEmbeddingFunction(your_embedder)"
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
        if not isinstance(config.get("kind"), str) or not isinstance(config.get("model"), str):
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


# the explicit parameters, so that a misspelt one is matched against them too
_ACCEPTED = frozenset(
    {
        "embedder",
        "model",
        "model_name",
        "dimensions",
        "api_key",
        "api_key_env_var",
        "query_task",
        "document_task",
    }
)
_HINTS = {
    # GoogleGeminiEmbeddingFunction's names; Vertex goes through a ready GeminiEmbedder
    "vertexai": "embedder= (GeminiEmbedder(vertexai=True, ...))",
    "project": "embedder= (GeminiEmbedder(vertexai=True, ...))",
    "location": "embedder= (GeminiEmbedder(vertexai=True, ...))",
}


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
    Importing this module already does it (when Chroma's registry loads, now or later); this
    call imports Chroma and registers at once.
    """
    functions = import_optional(_REGISTRY, extra="chroma", purpose="register_with_chroma")
    _register(functions)


_REGISTRY = "chromadb.utils.embedding_functions"


def _register(registry: ModuleType) -> None:
    registry.known_embedding_functions[_NAME] = ChromaEmbeddingFunction


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Registers the class right after Chroma's registry module runs, once.

    Chroma finds embedding functions only in that module's dictionary, and has no entry points;
    importing Chroma here to fill it would cost every user of this module a second or more.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _REGISTRY or getattr(self._local, "busy", False):
            return None
        self._local.busy = True  # the other finders below may ask the meta path again
        try:
            spec = next(
                (
                    found
                    for finder in sys.meta_path
                    if finder is not self and hasattr(finder, "find_spec")
                    for found in [finder.find_spec(fullname, path, target)]
                    if found is not None
                ),
                None,
            )
        finally:
            self._local.busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisteringLoader(spec.loader, self)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, finder: _RegisterOnImport) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)

    def __getattr__(self, name: str) -> Any:  # resource readers and the like
        return getattr(self._loader, name)


if _REGISTRY in sys.modules:
    _register(sys.modules[_REGISTRY])
elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterOnImport())
