"""The one check of what an embedder returned: one row per item, of the promised width."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed.errors import EmbeddingError

__all__ = ["check_rows"]


def check_rows(vectors: Any, items: int, dimensions: int, *, who: str) -> NDArray[np.float32]:
    """``vectors`` as a float32 matrix of ``items`` rows of ``dimensions``, or EmbeddingError.

    A wrong row count is exactly the silent aggregation bug of Gemini integrations (N inputs,
    one fused vector), so it is checked wherever vectors come back, never assumed.

    Args:
        vectors: what the embedder returned.
        items: how many items it was given.
        dimensions: the width it promised.
        who: the embedder, for the message (its model id).
    """
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape != (items, dimensions):
        shape = "x".join(str(n) for n in array.shape) or "a scalar"
        raise EmbeddingError(
            f"{who} returned {shape} for {items} items of {dimensions} dimensions; every item "
            "must get exactly one vector of the embedder's width, so nothing was used. This is a "
            "bug in the embedder: please report it"
        )
    return array.astype(np.float32, copy=False)
