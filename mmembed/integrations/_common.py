"""What every framework adapter needs: building the embedder and checking what comes back."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed.errors import ConfigurationError, EmbeddingError
from mmembed.protocols import Embedder

__all__ = [
    "aclose_embedder",
    "build_gemini",
    "check_embedder",
    "close_embedder",
    "rows_as_floats",
]

DEFAULT_MODEL = "gemini-embedding-2"


def check_embedder(embedder: object, *, who: str) -> Embedder:
    """``embedder`` if it has the :class:`~mmembed.protocols.Embedder` members; else an error."""
    missing = [
        name for name in ("embed", "aembed", "dimensions", "model") if not hasattr(embedder, name)
    ]
    if missing:
        raise ConfigurationError(
            f"{who} needs an mmembed Embedder (such as GeminiEmbedder or FakeEmbedder); "
            f"{type(embedder).__name__} lacks {', '.join(missing)}"
        )
    return embedder  # type: ignore[return-value]


def build_gemini(
    *, model: str | None, dimensions: int | None, api_key: str | None, options: dict[str, Any]
) -> Embedder:
    """A ``GeminiEmbedder`` from model parameters (imported only now: it pulls in google-genai)."""
    from mmembed.embedders.gemini import GeminiEmbedder

    kwargs: dict[str, Any] = dict(options)
    if dimensions is not None:
        kwargs["dimensions"] = dimensions
    if api_key is not None:
        kwargs["api_key"] = api_key
    embedder: Embedder = GeminiEmbedder(model or DEFAULT_MODEL, **kwargs)
    return embedder


def close_embedder(embedder: object) -> None:
    """Close ``embedder`` if it can be closed (a ``GeminiEmbedder`` holds HTTP connections)."""
    close = getattr(embedder, "close", None)
    if callable(close):
        close()


async def aclose_embedder(embedder: object) -> None:
    """Async :func:`close_embedder`: closes the async transport inside the running loop."""
    aclose = getattr(embedder, "aclose", None)
    if callable(aclose):
        await aclose()
    else:
        close_embedder(embedder)


def rows_as_floats(matrix: NDArray[np.float32], expected: int, *, model: str) -> list[list[float]]:
    """The rows of ``matrix`` as lists of Python floats, after checking there is one per input.

    Frameworks compare against ``float`` and serialise to JSON, where ``np.float32`` fails; and a
    wrong row count is exactly the silent Gemini aggregation bug, so it is checked, not assumed.
    """
    array = np.asarray(matrix)
    if array.ndim != 2 or array.shape[0] != expected:
        raise EmbeddingError(
            f"{model} returned {array.shape[0] if array.ndim else 0} vectors for {expected} "
            "inputs; every input must get exactly one vector. This is a bug in the embedder: "
            "please report it"
        )
    out: list[list[float]] = array.astype(np.float64).tolist()
    return out


def refuse_parameters_with_embedder(who: str, **parameters: object) -> None:
    """Raise when Gemini parameters come along with a ready embedder: one of them would be lost."""
    given = [name for name, value in parameters.items() if value is not None]
    if given:
        raise ConfigurationError(
            f"{who} got an embedder and {', '.join(given)}: configure the embedder itself, "
            "or leave it out to build a GeminiEmbedder from parameters"
        )
