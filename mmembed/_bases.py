"""Small bases the public classes share: closing in a ``with`` block, and the members an
embedder that wraps another passes through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from mmembed.limits import ModelLimits

if TYPE_CHECKING:
    from mmembed.content import Modality
    from mmembed.protocols import Embedder

__all__ = ["Closeable", "WrapsEmbedder"]


class Closeable:
    """``with obj:`` hands back ``obj`` and calls its ``close()`` on the way out."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WrapsEmbedder:
    """``embedder``, ``model``, ``modalities`` and ``limits`` of an embedder that wraps another
    (set ``_embedder``): all of them are the wrapped embedder's."""

    __slots__ = ("_embedder",)

    _embedder: Embedder

    @property
    def embedder(self) -> Embedder:
        """The wrapped embedder."""
        return self._embedder

    @property
    def model(self) -> str:
        """The wrapped embedder's model id."""
        return self._embedder.model

    @property
    def modalities(self) -> frozenset[Modality]:
        """The wrapped embedder's modalities."""
        return self._embedder.modalities

    @property
    def limits(self) -> ModelLimits | None:
        """The wrapped embedder's model limits, when it knows them (chunkers size from these)."""
        limits = getattr(self._embedder, "limits", None)
        return limits if isinstance(limits, ModelLimits) else None
