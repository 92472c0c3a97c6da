"""The search methods every store shares, written once: ``search`` and ``search_batch`` check
their arguments the same way (``k``, ``where``, ``dimensions``, then the queries, see
:mod:`mmembed.stores._validate`) and hand them to the store's own ``_search``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed.errors import ConfigurationError
from mmembed.protocols import Hit
from mmembed.stores._validate import Terms, check_dimensions, check_k, check_queries, check_where

__all__ = ["StoreMethods"]


class StoreMethods:
    """``search``, ``search_batch`` and the checks of a Matryoshka width, for every store."""

    _dimensions: int
    #: Whether ``search(..., dimensions=d)`` can score a prefix of the stored vectors.
    _PREFIX_SEARCH: ClassVar[bool] = True

    def search(
        self,
        query: ArrayLike,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        dimensions: int | None = None,
    ) -> list[Hit]:
        """The ``k`` stored vectors most similar to ``query`` that match ``where``.

        Args:
            query: one vector (any length > 0; it is normalised), ``dimensions`` wide or the
                store's full width.
            k: how many hits at most.
            where: metadata filter applied before ranking: ``{"key": value}`` for equality,
                ``{"key": [a, b]}`` for any of them; all keys must match; a list-valued
                metadata value matches when any of its items does.
            dimensions: search at this Matryoshka prefix of the stored vectors (each prefix
                renormalised), e.g. 256 of 3072, without re-embedding (stores that index whole
                vectors refuse a prefix: :meth:`shrink` them instead).

        Returns:
            Hits by descending cosine similarity (at the prefix, when ``dimensions`` is given).
        """
        return self._checked_search(query, k, where, dimensions, single=True)[0]

    def search_batch(
        self,
        queries: ArrayLike,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        dimensions: int | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for each row of a 2-D ``queries`` array, in one pass (much faster)."""
        return self._checked_search(queries, k, where, dimensions, single=False)

    def _checked_search(
        self,
        query: ArrayLike,
        k: int,
        where: Mapping[str, Any] | None,
        dimensions: int | None,
        *,
        single: bool,
    ) -> list[list[Hit]]:
        k = check_k(k)
        terms = check_where(where)
        prefix = self._check_prefix(dimensions)
        queries = check_queries(query, width=self._dimensions, prefix=prefix, single=single)
        return self._search(queries, k, terms, prefix)

    def _search(
        self, queries: NDArray[np.float32], k: int, terms: Terms | None, prefix: int | None
    ) -> list[list[Hit]]:
        """Search with checked arguments: unit query rows (``prefix`` wide when set)."""
        raise NotImplementedError

    def _check_prefix(self, dimensions: int | None) -> int | None:
        """The Matryoshka prefix to search at: ``None`` for the full width."""
        if dimensions is None:
            return None
        prefix = check_dimensions(dimensions)
        if prefix != self._dimensions and not self._PREFIX_SEARCH:
            raise ConfigurationError(
                f"{type(self).__name__} searches whole {self._dimensions}-dimensional vectors, "
                f"not a {prefix}-dimensional prefix: use store.shrink({prefix}) to build a "
                "prefix store and search that"
            )
        self._prefix_width(prefix, searching=True)
        return None if prefix == self._dimensions else prefix

    def _prefix_width(self, dimensions: object, *, searching: bool = False) -> int:
        """A Matryoshka width to search at or shrink to: at most :attr:`dimensions`."""
        width = check_dimensions(dimensions)
        if width > self._dimensions:
            doing = (
                f"search {self._dimensions}-dimensional vectors at {width} dimensions"
                if searching
                else f"shrink {self._dimensions}-dimensional vectors to {width}"
            )
            raise ConfigurationError(
                f"cannot {doing}; a Matryoshka prefix must be at most {self._dimensions}"
            )
        return width
