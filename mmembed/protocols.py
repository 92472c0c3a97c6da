"""The three contracts mmembed is built on, and the values that flow between them.

Any object with these methods works with mmembed: nothing needs to inherit from these classes.

- :class:`Embedder` turns items into a float32 matrix of unit rows, one row per item, in order.
- :class:`Chunker` cuts a source into :class:`Chunk` objects that point back into the source.
- :class:`VectorStore` keeps vectors under string ids and answers with :class:`Hit` objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed.content import Content, Embeddable, Modality, Part, Task, main_modality
from mmembed.errors import ConfigurationError

__all__ = [
    "Chunk",
    "Chunker",
    "Embedder",
    "Hit",
    "PageSpan",
    "Span",
    "TextSpan",
    "TimeSpan",
    "VectorStore",
]


def _num(x: float) -> str:
    """Format a number for a URI fragment: ``30`` not ``30.0``, at most millisecond precision."""
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """A stretch of time in seconds, ``start`` inclusive, ``end`` exclusive."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (0 <= self.start <= self.end):
            raise ConfigurationError(
                f"TimeSpan needs 0 <= start <= end, got {self.start}..{self.end}"
            )

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    @property
    def fragment(self) -> str:
        """The W3C media-fragment for this span, e.g. ``t=30,60``."""
        return f"t={_num(self.start)},{_num(self.end)}"

    def __str__(self) -> str:
        return f"{_clock(self.start)}–{_clock(self.end)}"


@dataclass(frozen=True, slots=True)
class PageSpan:
    """A range of pages, 1-based, both ends inclusive."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not (1 <= self.first <= self.last):
            raise ConfigurationError(
                f"PageSpan needs 1 <= first <= last, got {self.first}..{self.last}"
            )

    @property
    def pages(self) -> int:
        """How many pages the span covers."""
        return self.last - self.first + 1

    @property
    def fragment(self) -> str:
        """The PDF open parameter for the first page, e.g. ``page=7``."""
        return f"page={self.first}"

    def __str__(self) -> str:
        return f"p. {self.first}" if self.first == self.last else f"pp. {self.first}–{self.last}"


@dataclass(frozen=True, slots=True)
class TextSpan:
    """A range of characters, ``start`` inclusive, ``end`` exclusive (Python slice semantics)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start <= self.end):
            raise ConfigurationError(
                f"TextSpan needs 0 <= start <= end, got {self.start}..{self.end}"
            )

    @property
    def fragment(self) -> str:
        """The RFC 5147 fragment, e.g. ``char=100,250``."""
        return f"char={self.start},{self.end}"

    def __str__(self) -> str:
        return f"chars {self.start}–{self.end}"


Span: TypeAlias = TimeSpan | PageSpan | TextSpan


def _clock(seconds: float) -> str:
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    frac = seconds - whole
    tail = f"{frac:.1f}"[1:] if frac >= 0.05 else ""
    return f"{h}:{m:02d}:{s:02d}{tail}" if h else f"{m}:{s:02d}{tail}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One embeddable piece of a source, and where it came from.

    Args:
        content: what gets embedded (one vector).
        source: the file (or other name) the piece was cut from.
        span: where in the source; ``None`` for a whole item such as an image.
        uri: the media-fragment URI; derived from ``source`` and ``span`` when left empty.
        metadata: extra facts a chunker knows (page text, sample frames, ...).
    """

    content: Part | Content
    source: str
    span: Span | None = None
    uri: str = ""
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.uri:
            uri = self.source if self.span is None else f"{self.source}#{self.span.fragment}"
            object.__setattr__(self, "uri", uri)

    @property
    def modality(self) -> Modality:
        """The chunk's modality (for a multi-part content, the first non-text part's)."""
        return main_modality(self.content)


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result from a :class:`VectorStore`: higher ``score`` is better (cosine)."""

    id: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class Embedder(Protocol):
    """**Protocol**: turns items into vectors.

    ``embed`` returns a float32 array of shape ``(len(items), dimensions)``, each row
    L2-normalised, row ``i`` for item ``i``; an empty input gives shape ``(0, dimensions)``.
    """

    @property
    def model(self) -> str:
        """The model id."""
        ...

    @property
    def dimensions(self) -> int:
        """The width of every vector."""
        ...

    @property
    def modalities(self) -> frozenset[Modality]:
        """The modalities this embedder accepts."""
        ...

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Embed ``items``, one unit row each, in order."""
        ...

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`."""
        ...


class Chunker(Protocol):
    """**Protocol**: cuts a source into chunks that each fit one embedding."""

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        """Yield the chunks of ``source`` (a part, or a path to a file)."""
        ...


class VectorStore(Protocol):
    """**Protocol**: keeps vectors under string ids and finds the nearest ones.

    ``add`` is an upsert. ``search`` returns hits by descending cosine similarity; ``where`` maps
    metadata keys to a value (equality) or a list of values (any of them), all keys must match,
    and the filter applies before top-k. ``delete`` returns how many existing ids it removed.
    """

    @property
    def dimensions(self) -> int:
        """The width of every stored vector."""
        ...

    def add(
        self,
        ids: Sequence[str],
        vectors: ArrayLike,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Insert or replace vectors (and their metadata) under ``ids``."""
        ...

    def search(
        self, query: ArrayLike, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The ``k`` stored vectors most similar to ``query`` that match ``where``."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ``ids``; unknown ids are ignored. Returns how many were removed."""
        ...

    def __len__(self) -> int: ...
