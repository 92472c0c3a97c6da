"""An in-process embedder for tests: deterministic, any width, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from mmembed.content import Embeddable, Modality, Task, Text, as_content, as_items, as_task
from mmembed.errors import ConfigurationError, UnsupportedMediaError
from mmembed.testing._vectors import fake_vector

__all__ = ["FakeEmbedder", "FakeEmbedderCall"]


@dataclass(frozen=True, slots=True)
class FakeEmbedderCall:
    """One recorded call to :class:`FakeEmbedder`."""

    items: tuple[Embeddable, ...]
    task: Task


class FakeEmbedder:
    """A deterministic :class:`~mmembed.protocols.Embedder` for tests.

    The same item always gives the same unit vector; texts that share words get a higher cosine
    than unrelated ones; media vectors come from a hash of their bytes. The task does not change
    the vector. Every call is recorded in :attr:`calls`.

    Args:
        dimensions: the width of the vectors.
        model: the model id it reports.
        modalities: what it accepts; other items raise :class:`UnsupportedMediaError`.
        max_input_tokens: read only this many tokens (words) of each text and cut the rest off
            silently, as a local model does; ``None`` reads everything.

    >>> FakeEmbedder(dimensions=8).embed(["a", "b"]).shape
    (2, 8)
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        dimensions: int = 768,
        *,
        model: str = "fake-embedder",
        modalities: frozenset[Modality] = frozenset(Modality),
        max_input_tokens: int | None = None,
    ) -> None:
        if isinstance(dimensions, bool) or dimensions < 1:
            raise ConfigurationError(f"dimensions must be a positive int, got {dimensions!r}")
        if max_input_tokens is not None and (
            isinstance(max_input_tokens, bool) or max_input_tokens < 1
        ):
            raise ConfigurationError(
                f"max_input_tokens must be a positive int or None, got {max_input_tokens!r}"
            )
        self._max_input_tokens = max_input_tokens
        self._dimensions = dimensions
        self._model = model
        self._modalities = frozenset(modalities)
        self.calls: list[FakeEmbedderCall] = []

    @property
    def model(self) -> str:
        """The model id."""
        return self._model

    @property
    def dimensions(self) -> int:
        """The vector width."""
        return self._dimensions

    @property
    def modalities(self) -> frozenset[Modality]:
        """The accepted modalities."""
        return self._modalities

    @property
    def max_input_tokens(self) -> int | None:
        """How many tokens (words) of a text it reads; ``None``: all of them."""
        return self._max_input_tokens

    def count_tokens(self, text: str) -> int:
        """The tokens of ``text``: its words."""
        return len(text.split())

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Embed ``items`` deterministically."""
        items = tuple(as_items(items))
        self.calls.append(FakeEmbedderCall(items, as_task(task)))
        out = np.empty((len(items), self._dimensions), dtype=np.float32)
        for i, item in enumerate(items):
            texts: list[str] = []
            blobs: list[bytes] = []
            for part in as_content(item).parts:
                if part.modality not in self._modalities:
                    raise UnsupportedMediaError(
                        f"item {i}: {self._model} does not take {part.modality.value} "
                        f"(it takes {', '.join(sorted(m.value for m in self._modalities))})"
                    )
                if isinstance(part, Text):
                    words = part.text.split()
                    cut = self._max_input_tokens
                    texts.append(part.text if cut is None else " ".join(words[:cut]))
                else:
                    blobs.append(part.read_bytes())
            out[i] = fake_vector(texts, blobs, self._dimensions)
        return out

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`."""
        return self.embed(items, task=task)

    def to_spec(self) -> dict[str, Any]:
        """``{"kind": "fake", "dimensions": …, "model": …}`` (and the modalities when limited)."""
        spec: dict[str, Any] = {
            "kind": "fake",
            "dimensions": self._dimensions,
            "model": self._model,
        }
        if self._modalities != frozenset(Modality):
            spec["modalities"] = sorted(m.value for m in self._modalities)
        if self._max_input_tokens is not None:
            spec["max_input_tokens"] = self._max_input_tokens
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_spec` output."""
        from mmembed.registry import spec_options

        options = spec_options(
            spec,
            "fake",
            required=("dimensions",),
            optional=("model", "modalities", "max_input_tokens"),
        )
        if "modalities" in options:
            options["modalities"] = frozenset(Modality(m) for m in options["modalities"])
        return cls(**options)

    def __repr__(self) -> str:
        return f"FakeEmbedder(dimensions={self._dimensions}, model={self._model!r})"
