"""A light offline embedder: a static word-embedding model, no torch (extra ``light``).

>>> from mmembed.embedders.static import StaticEmbedder
>>> StaticEmbedder().embed(["The Krebs cycle"]).shape     # doctest: +SKIP
(1, 64)

The weights (a 10,000 x 64 int8 table behind a 276,000-piece vocabulary, 4 MB) ship inside the
``tokenlearn-static-model`` wheel, whose Rust extension tokenizes and averages them: about 20 MB
installed against about 1.9 GB for torch and all-MiniLM-L6-v2. The price is quality: on the
benchmark questions it finds the right document first about half as often as all-MiniLM-L6-v2
(see ``benchmarks/offline_quality.py``), so it is an option for small installs, never the
default. It embeds text (and PDFs by their text); tasks make no difference to a static model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from mmembed._optional import import_optional
from mmembed.content import Embeddable, Modality, Task, Text, as_content, as_items, as_task
from mmembed.embedders._parts import pool
from mmembed.errors import ConfigurationError, EmbeddingError, UnsupportedMediaError

__all__ = ["STATIC_MODELS", "StaticEmbedder", "static_model_available"]

#: Model name -> (importable package that ships it, width of its vectors).
STATIC_MODELS: Mapping[str, tuple[str, int]] = {"tokenlearn-static-model": ("static_model", 64)}
DEFAULT_STATIC_MODEL = "tokenlearn-static-model"
# the package's own cut: longer texts are read up to this many word pieces
_MAX_TOKENS = 512


def static_model_available(model: str = DEFAULT_STATIC_MODEL) -> bool:
    """Whether ``model`` is a known static model whose package is installed (imports nothing)."""
    entry = STATIC_MODELS.get(model)
    return entry is not None and importlib.util.find_spec(entry[0]) is not None


class StaticEmbedder:
    """An :class:`~mmembed.protocols.Embedder` over a static word-embedding model.

    Args:
        model: the model name (``"tokenlearn-static-model"``, the one known so far).

    Raises:
        ConfigurationError: an unknown model name.
        MissingDependencyError: the ``light`` extra is not installed (on first use).
    """

    def __init__(self, model: str = DEFAULT_STATIC_MODEL) -> None:
        if model not in STATIC_MODELS:
            raise ConfigurationError(
                f"unknown static model {model!r}; known: {', '.join(sorted(STATIC_MODELS))}"
            )
        self._name = model
        self._package, self._width = STATIC_MODELS[model]
        self._module: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._module is None:
                self._module = import_optional(
                    self._package, extra="light", purpose="StaticEmbedder"
                )
            return self._module

    @property
    def model(self) -> str:
        """The model name."""
        return self._name

    @property
    def dimensions(self) -> int:
        """The width of the vectors (64)."""
        return self._width

    @property
    def modalities(self) -> frozenset[Modality]:
        """Text only (PDFs are indexed by their text)."""
        return frozenset({Modality.TEXT})

    @property
    def max_input_tokens(self) -> int:
        """How many of the model's word pieces of one item it reads (longer text is cut off);
        with no counter of its own, the index counts with the high estimate of
        :func:`mmembed.limits.estimate_tokens`, so its chunks stay under this."""
        return _MAX_TOKENS

    @property
    def max_tokens(self) -> int:
        """The former name of :attr:`max_input_tokens`."""
        return _MAX_TOKENS

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Embed ``items``: one unit float32 row each, in order (``task`` changes nothing)."""
        items = as_items(items)
        as_task(task)
        texts: list[str] = []
        owners: list[int] = []
        for i, item in enumerate(items):
            for part in as_content(item).parts:
                if not isinstance(part, Text):
                    name = part.name if len(items) == 1 or part.path is not None else f"item {i}"
                    raise UnsupportedMediaError(
                        f"{name}: the static model {self._name} does not take "
                        f"{part.modality.value}; it takes text. A Gemini index (GEMINI_API_KEY "
                        "set, a new index directory) takes every modality"
                    )
                texts.append(part.text)
                owners.append(i)
        if not texts:
            return np.zeros((len(items), self._width), dtype=np.float32)
        try:
            rows = np.asarray(self._load().get_embeddings(texts), dtype=np.float32)
        except (TypeError, ValueError, RuntimeError, OSError) as exc:
            raise EmbeddingError(f"the static model {self._name} failed: {exc}") from exc
        if rows.shape != (len(texts), self._width):
            raise EmbeddingError(
                f"the static model {self._name} returned shape {rows.shape} for {len(texts)} "
                f"texts; expected ({len(texts)}, {self._width})"
            )
        return pool(rows, owners, len(items))

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`: runs in a worker thread."""
        return await asyncio.to_thread(self.embed, items, task=task)

    def to_spec(self) -> dict[str, Any]:
        """``{"kind": "static", "model": …}``."""
        return {"kind": "static", "model": self._name}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_spec` output."""
        from mmembed.registry import spec_options

        options = spec_options(spec, "static", required=("model",), optional=())
        return cls(options.pop("model"))

    def __repr__(self) -> str:
        return f"StaticEmbedder(model={self._name!r})"
