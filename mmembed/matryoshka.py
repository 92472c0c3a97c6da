"""Matryoshka truncation: a prefix of a Matryoshka-trained vector is a smaller embedding.

Gemini Embedding 2 is trained so that the first ``d`` values of its 3072-wide vectors are a valid
``d``-wide embedding once renormalised. :func:`truncate` does that on vectors you already have;
:class:`Matryoshka` wraps any embedder so it returns the smaller vectors directly.

>>> import numpy as np
>>> from mmembed.matryoshka import truncate
>>> truncate(np.array([3.0, 4.0, 12.0], dtype=np.float32), 2).tolist()
[0.6000000238418579, 0.800000011920929]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed._bases import WrapsEmbedder
from mmembed.content import Embeddable, Task
from mmembed.errors import ConfigurationError
from mmembed.protocols import Embedder

__all__ = ["Matryoshka", "normalize", "truncate"]


def normalize(vectors: ArrayLike) -> NDArray[np.float32]:
    """L2-normalise each row (or the single vector) into a new float32 array.

    Rows of zeros stay zero rather than becoming NaN.
    """
    arr = np.array(vectors, dtype=np.float32, copy=True)
    if arr.ndim not in (1, 2):
        raise ConfigurationError(f"expected a vector or a 2-D matrix, got {arr.ndim} dimensions")
    _normalize_inplace(arr)
    return arr


def _normalize_inplace(arr: NDArray[np.float32]) -> None:
    """Unit rows (or a unit vector), in place; see :func:`_unit_rows`."""
    _unit_rows(arr[None, :] if arr.ndim == 1 else arr)


# Row norms in this range come out of float32 arithmetic exact: no square under- or overflows
_SAFE_NORMS = (1e-18, 1e18)


def _row_norms(matrix: NDArray[np.float32]) -> NDArray[np.float32]:
    """The float32 L2 norm of each row: ``inf`` or ``nan`` when a row holds infinity or NaN, and
    possibly ``inf`` or ``0`` for finite rows of very large or very small values (``[1e30] * 8``,
    ``[1e-30] * 8``), which :func:`_unit_rows` still normalises."""
    # einsum computes the norms without a temporary the size of the matrix
    norms: NDArray[np.float32] = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    return norms


def _unit_rows(
    matrix: NDArray[np.float32],
    *,
    out: NDArray[np.float32] | None = None,
    norms: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Write the L2-normalised rows of ``matrix`` into ``out`` (default: ``matrix`` itself).

    Zero rows stay zero (never NaN); rows holding NaN or infinity are copied unchanged (callers
    that must refuse them check first, reusing ``norms`` from :func:`_row_norms`). Every finite
    row is normalised, however large or small its values: rows whose float32 norm would over- or
    underflow are normalised in float64.
    """
    if norms is None:
        norms = _row_norms(matrix)
    target = matrix if out is None else out
    lo, hi = _SAFE_NORMS
    # the usual case, one division (min and max are NaN when a norm is: then the slow path)
    if not norms.size or (lo <= norms.min() and norms.max() <= hi):
        np.divide(matrix, norms[:, None], out=target)
        return target
    safe = (norms >= lo) & (norms <= hi)
    odd = np.flatnonzero(~safe)
    rows = np.array(matrix[odd], dtype=np.float64)  # read before an in-place division
    divisors: NDArray[np.float32] = np.where(safe, norms, np.float32(1))
    np.divide(matrix, divisors[:, None], out=target)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(rows).all(axis=1, keepdims=True)
        sizes = np.sqrt(np.einsum("ij,ij->i", rows, rows))  # float32's range squared fits
        scaled = np.divide(rows, sizes[:, None], out=np.zeros_like(rows), where=sizes[:, None] > 0)
    target[odd] = np.where(finite, scaled, rows)
    return target


def truncate(vectors: ArrayLike, dimensions: int) -> NDArray[np.float32]:
    """Keep the first ``dimensions`` values of each vector and L2-renormalise.

    Args:
        vectors: one vector (1-D) or a matrix of row vectors (2-D); left unmodified.
        dimensions: the new width, from 1 up to the current width.

    Returns:
        A new float32 array of the same rank, with unit rows. A row that is zero (or whose
        prefix is) stays zero: it has no direction to keep, and stores take it as it is (only
        a zero *query* is refused).

    Raises:
        ConfigurationError: ``dimensions`` is not a positive int or exceeds the current width;
            the vectors are not numbers, or hold NaN or infinity (beyond float32's range).
    """
    try:
        arr = np.asarray(vectors)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"dtype {arr.dtype}")
        if arr.ndim not in (1, 2):
            raise ConfigurationError(
                f"expected a vector or a 2-D matrix, got {arr.ndim} dimensions"
            )
        width = arr.shape[-1]
        _check_dimensions(dimensions, width)
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.array(arr[..., :dimensions], dtype=np.float32, copy=True, order="C")
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(
            f"truncate takes an array of numbers, got {type(vectors).__name__} ({exc})"
        ) from None
    if not np.isfinite(out).all():
        raise ConfigurationError(
            "the vectors hold NaN or infinity (or values beyond float32's range) in their "
            f"first {dimensions} values; a prefix of them has no direction: check the embedder "
            "that made them"
        )
    _normalize_inplace(out)
    return out


def _check_dimensions(dimensions: int, width: int) -> None:
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise ConfigurationError(f"dimensions must be an int, got {type(dimensions).__name__}")
    if dimensions < 1:
        raise ConfigurationError(f"dimensions must be at least 1, got {dimensions}")
    if dimensions > width:
        raise ConfigurationError(
            f"cannot truncate {width}-dimensional vectors to {dimensions}: a Matryoshka prefix "
            f"can only shrink a vector; choose dimensions <= {width}"
        )


class Matryoshka(WrapsEmbedder):
    """An :class:`~mmembed.protocols.Embedder` that returns a renormalised prefix of another's.

    Args:
        embedder: the full-width embedder; tasks are passed through to it.
        dimensions: the width to return, at most ``embedder.dimensions``.

    >>> from mmembed.testing import FakeEmbedder
    >>> small = Matryoshka(FakeEmbedder(dimensions=768), 256)
    >>> small.embed(["hello"]).shape
    (1, 256)
    """

    __slots__ = ("_dimensions",)

    def __init__(self, embedder: Embedder, dimensions: int) -> None:
        _check_dimensions(dimensions, embedder.dimensions)
        self._embedder = embedder
        self._dimensions = int(dimensions)

    @property
    def dimensions(self) -> int:
        """The truncated width."""
        return self._dimensions

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Embed with the wrapped embedder and truncate to :attr:`dimensions`."""
        return truncate(self._embedder.embed(items, task=task), self._dimensions)

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`."""
        return truncate(await self._embedder.aembed(items, task=task), self._dimensions)

    def to_spec(self) -> dict[str, Any]:
        """``{"kind": "matryoshka", "dimensions": …, "embedder": <the wrapped spec>}``."""
        from mmembed.registry import to_spec

        return {
            "kind": "matryoshka",
            "dimensions": self._dimensions,
            "embedder": to_spec(self._embedder),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_spec` output (the wrapped embedder is rebuilt first)."""
        from mmembed.registry import build_embedder, spec_options

        options = spec_options(spec, "matryoshka", required=("dimensions", "embedder"))
        return cls(build_embedder(options["embedder"]), options["dimensions"])

    def __repr__(self) -> str:
        return f"Matryoshka({self._embedder!r}, dimensions={self._dimensions})"
