"""Matching a checked ``where`` (see :func:`~mmembed.stores._validate.check_where`) against the
metadata of the local stores. :class:`~mmembed.stores.QdrantStore` translates the same terms into
a Qdrant filter with the same meaning:

- a term matches when the metadata value equals any of the term's values;
- a metadata value that is a list matches when any of its items does (``{"tags": ["a", "b"]}``
  matches ``where={"tags": "a"}``);
- numbers compare as numbers (``1`` equals ``1.0``) but booleans only equal booleans, as in JSON;
- a missing key never matches; all terms must match.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed.stores._validate import Terms

__all__ = ["FilterCache", "matches"]

_MISSING = object()
# distinct filters whose matching rows a store remembers until its next change
_CACHED_FILTERS = 16


def _same(a: Any, b: Any) -> bool:
    # JSON tells true from 1; Python does not, so compare bools only with bools
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def matches(metadata: Mapping[str, Any], terms: Terms) -> bool:
    """Whether ``metadata`` satisfies every term."""
    for key, options in terms:
        value = metadata.get(key, _MISSING)
        if value is _MISSING:
            return False
        values = value if isinstance(value, list) else (value,)
        if not any(_same(item, option) for item in values for option in options):
            return False
    return True


class FilterCache:
    """The rows whose metadata match a filter, remembered per store version: applications tend
    to repeat the same filter, and finding the rows is a pass over every record in Python."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # readers share the cache
        self._rows: dict[tuple[int, str], NDArray[np.intp]] = {}

    def rows(
        self, version: int, terms: Terms, metadata: Sequence[Mapping[str, Any]]
    ) -> NDArray[np.intp]:
        """The (read-only, ascending) rows of ``metadata`` that match ``terms``."""
        # repr, not the terms themselves: as dict keys, 1, 1.0 and True are the same
        key = (version, repr(terms))
        with self._lock:
            cached = self._rows.get(key)
        if cached is not None:
            return cached
        rows = np.fromiter(
            (i for i, meta in enumerate(metadata) if matches(meta, terms)), dtype=np.intp
        )
        rows.flags.writeable = False
        with self._lock:
            while len(self._rows) >= _CACHED_FILTERS:
                self._rows.pop(next(iter(self._rows)))
            self._rows[key] = rows
        return rows
