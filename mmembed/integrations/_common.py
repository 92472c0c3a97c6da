"""What every framework adapter needs: building the embedder, checking the arguments it was given
and what comes back."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mmembed.content import Task
from mmembed.errors import ConfigurationError, EmbeddingError
from mmembed.protocols import Embedder

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = [
    "ClosesOwnEmbedder",
    "aclose_embedder",
    "api_key_or_env",
    "build_gemini",
    "check_embedder",
    "close_embedder",
    "gemini_option_names",
    "refuse_unknown_arguments",
    "rows_as_floats",
    "task_from_gemini_name",
]

DEFAULT_MODEL = "gemini-embedding-2"
# The SDK's own precedence: GOOGLE_API_KEY wins when both are set.
_KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")


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


def api_key_or_env(api_key: str | SecretStr | None) -> SecretStr | None:
    """``api_key`` as a ``SecretStr``; when it is ``None``, the first of ``GOOGLE_API_KEY`` and
    ``GEMINI_API_KEY`` that is set (``None`` when neither is)."""
    from pydantic import SecretStr

    if api_key is None:
        api_key = next((os.environ[v] for v in _KEY_VARIABLES if os.environ.get(v)), None)
    return SecretStr(api_key) if isinstance(api_key, str) else api_key


def build_gemini(
    *,
    model: str | None,
    dimensions: int | None,
    api_key: str | SecretStr | None,
    options: dict[str, Any],
) -> Embedder:
    """A ``GeminiEmbedder`` from model parameters (imported only now: it pulls in google-genai)."""
    from mmembed.embedders.gemini import GeminiEmbedder

    kwargs: dict[str, Any] = dict(options)
    if dimensions is not None:
        kwargs["dimensions"] = dimensions
    if api_key is not None:
        kwargs["api_key"] = api_key if isinstance(api_key, str) else api_key.get_secret_value()
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


class ClosesOwnEmbedder:
    """``close()`` and ``aclose()`` for an adapter that may have built its embedder itself
    (``_owns_embedder``): only that one is closed, one passed in is left to its owner."""

    if TYPE_CHECKING:
        _embedder: Embedder | None
        _owns_embedder: bool

    def close(self) -> None:
        """Close the embedder this object built from Gemini parameters (one passed in is left
        to its owner)."""
        if self._owns_embedder and self._embedder is not None:
            close_embedder(self._embedder)

    async def aclose(self) -> None:
        """Async :meth:`close`: call it from the event loop that ran the async methods."""
        if self._owns_embedder and self._embedder is not None:
            await aclose_embedder(self._embedder)


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


# Names people bring from the Gemini SDK and from other frameworks' Gemini classes, and what
# mmembed calls the same thing. Close misspellings are found by difflib; these are not close.
_SYNONYMS: Mapping[str, str] = {
    "output_dimensionality": "dimensions",
    "output_dimension": "dimensions",
    "dimension": "dimensions",
    "dim": "dimensions",
    "dims": "dimensions",
    "embedding_dim": "dimensions",
    "task_type": "query_task= and document_task=",
    "task": "query_task= and document_task=",
    "model_name": "model",
    "google_api_key": "api_key",
    "batch_size": "embed_batch_size",
    "embedding_config": "dimensions= (and query_task= / document_task= for the task)",
}


def refuse_unknown_arguments(
    who: str,
    given: Iterable[str],
    accepted: Iterable[str],
    *,
    hints: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`ConfigurationError` naming the first argument of ``given`` that ``who``
    does not take, with the argument it most likely meant.

    Frameworks pass keyword arguments through to places that fail much later (at the first
    embed, or never); checking here makes a typo or another library's name fail at
    construction, where it was written.
    """
    known = sorted(set(accepted))
    for name in given:
        if name in known:
            continue
        meant = {**_SYNONYMS, **(hints or {})}.get(name)
        if meant is None or meant.split("=")[0] not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            meant = close[0] if close else None
        suggestion = f"; did you mean {meant}?" if meant else ""
        raise ConfigurationError(
            f"{who} got an unexpected argument {name!r}{suggestion} It takes: {', '.join(known)}"
        )


def gemini_option_names() -> frozenset[str]:
    """The keyword options ``GeminiEmbedder`` takes (read from its signature, so they stay
    true whatever options it gains; the module is light, google-genai loads on first use)."""
    from mmembed.embedders.gemini import GeminiEmbedder

    parameters = inspect.signature(GeminiEmbedder.__init__).parameters
    return frozenset(
        name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def task_from_gemini_name(value: object, *, who: str) -> Task:
    """An mmembed :class:`Task` from a Gemini ``task_type`` name (``"RETRIEVAL_QUERY"``,
    ``"SEMANTIC_SIMILARITY"``...) or from a ``Task`` / its value."""
    from mmembed.embedders.gemini import TASK_TYPES

    if isinstance(value, Task):
        return value
    if isinstance(value, str):
        by_name = {name: task for task, name in TASK_TYPES.items()}
        upper = value.upper()
        if upper in by_name:
            return by_name[upper]
        if value.lower() in {t.value for t in Task}:
            return Task(value.lower())
    names = ", ".join(sorted({name for name in TASK_TYPES.values()}))
    raise ConfigurationError(
        f"{who} got task_type={value!r}; use one of {names} (or an mmembed Task)"
    )
