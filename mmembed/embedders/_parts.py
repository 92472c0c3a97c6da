"""What the local embedders share: one vector per item from the vectors of its parts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["pool"]


def pool(rows: NDArray[np.float32], owners: Sequence[int], count: int) -> NDArray[np.float32]:
    """``count`` unit rows: row ``i`` is the normalised sum of the ``rows`` whose owner is ``i``
    (an item of several parts gets their mean direction; an item with no rows stays zero)."""
    out = np.zeros((count, rows.shape[1]), dtype=np.float32)
    if len(owners):
        np.add.at(out, np.asarray(owners), rows)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
