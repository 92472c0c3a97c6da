"""Reading a reply: the vectors and token counts, checked before any row is used.

One vector per item, each of the requested width, finite and not all zero; anything else is a
:class:`~mmembed.errors.ProviderError` and nothing from the call is used. Rows are
L2-normalised here whatever the service returns.

>>> answer = parse('{"embeddings": [{"values": [3.0, 4.0]}]}', model="m")
>>> rows(answer, [7], dimensions=2, model="m").tolist()
[[0.6000000238418579, 0.800000011920929]]
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed.errors import ProviderError
from mmembed.matryoshka import normalize

__all__ = ["Answer", "from_response", "parse", "rows"]


@dataclass(slots=True)
class Answer:
    """One call's reply, whichever way it was read."""

    vectors: list[Any]
    prompt_tokens: int | None  # None: the service reported no token counts
    tokens_by_modality: list[tuple[str, int]]  # the service's modality names ("TEXT", ...)


@functools.cache
def _json_loads() -> Callable[[str], Any]:
    """The JSON reader for replies: orjson when it is installed, else the standard library.

    Reading the reply's float arrays is most of the client's work per call; orjson reads them
    about four times faster than ``json`` (``pip install "mmembed[fast]"``). Both reject a reply
    that is not JSON with a ``ValueError``.
    """
    try:
        import orjson
    except ImportError:
        return json.loads
    loads: Callable[[str], Any] = orjson.loads  # typed here even where orjson is not
    return loads


def parse(raw: str, *, model: str) -> Answer:
    """Read a ``batchEmbedContents`` reply body (the fast path)."""
    try:
        data = _json_loads()(raw) if raw else {}
    except ValueError:
        raise ProviderError(
            f"{model} answered with something that is not JSON ({len(raw)} characters); try again"
        ) from None
    if not isinstance(data, dict):
        raise ProviderError(f"{model} answered with unexpected JSON; try again")
    embeddings = data.get("embeddings") or []
    if not isinstance(embeddings, list):
        embeddings = []
    vectors = [e.get("values") if isinstance(e, dict) else None for e in embeddings]
    usage = data.get("usageMetadata")
    prompt_tokens: int | None = None
    details: list[tuple[str, int]] = []
    if isinstance(usage, dict) and isinstance(usage.get("promptTokenCount"), int):
        prompt_tokens = int(usage["promptTokenCount"])
        for d in usage.get("promptTokensDetails") or []:
            if isinstance(d, dict):
                details.append((str(d.get("modality", "TEXT")), int(d.get("tokenCount", 0))))
    return Answer(vectors=vectors, prompt_tokens=prompt_tokens, tokens_by_modality=details)


def from_response(response: Any) -> Answer:
    """Read an ``EmbedContentResponse`` of the SDK (the public-SDK path)."""
    vectors = [e.values for e in response.embeddings or []]
    meta = response.usage_metadata
    if meta is None or meta.prompt_token_count is None:
        return Answer(vectors=vectors, prompt_tokens=None, tokens_by_modality=[])
    details = [
        (str(getattr(d.modality, "value", d.modality) or "TEXT"), int(d.token_count or 0))
        for d in meta.prompt_tokens_details or []
    ]
    return Answer(
        vectors=vectors, prompt_tokens=int(meta.prompt_token_count), tokens_by_modality=details
    )


def rows(
    answer: Answer, indexes: Sequence[int], *, dimensions: int, model: str
) -> NDArray[np.float32]:
    """The unit rows of ``answer``, one per item of the call (``indexes``: their positions).

    Raises:
        ProviderError: the reply does not hold one sound vector of ``dimensions`` per item.
    """
    vectors = answer.vectors
    n = len(indexes)
    if len(vectors) != n:
        raise ProviderError(
            f"{model} returned {len(vectors)} vectors for {n} items; "
            "nothing from this call was used. This is a service fault: try again"
        )
    try:
        out = np.array(vectors, dtype=np.float32)  # one conversion when the reply is sound
    except (TypeError, ValueError):
        out = np.empty(0, dtype=np.float32)
    if out.shape != (n, dimensions):
        _reject(vectors, indexes, dimensions, model)
    if not np.all(np.isfinite(out)):
        raise ProviderError(f"{model} returned non-finite values; nothing from this call was used")
    out = normalize(out)
    if np.any(np.einsum("ij,ij->i", out, out) == 0):
        raise ProviderError(f"{model} returned an all-zero vector; try again")
    return out


def _reject(vectors: list[Any], indexes: Sequence[int], dimensions: int, model: str) -> None:
    """Raise the error that says which vector of a reply is malformed."""
    out = np.empty((len(indexes), dimensions), dtype=np.float32)
    for row, values in enumerate(vectors):
        if not isinstance(values, list) or len(values) != dimensions:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise ProviderError(
                f"{model} returned a vector of {got} values for item {indexes[row]}, expected "
                f"{dimensions}; nothing from this call was used"
            )
        try:
            out[row] = values
        except (TypeError, ValueError):
            raise ProviderError(
                f"{model} returned a vector that is not numbers for item {indexes[row]}; "
                "nothing from this call was used"
            ) from None
    raise ProviderError(  # every row converts on its own, but not all of them together
        f"{model} returned vectors of mixed shapes; nothing from this call was used"
    )
