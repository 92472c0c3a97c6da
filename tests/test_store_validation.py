"""Every store answers the same bad input with the same error: same type, same message.

The contract (mmembed.testing.contracts.store) checks the error types for any store; this module
checks that mmembed's own three stores, which share one validation module, agree to the letter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from mmembed.errors import ConfigurationError, DimensionMismatchError, MMEmbedError
from mmembed.stores import FaissStore, InMemoryStore

_deep: dict[str, Any] = {}
_node = _deep
for _ in range(40):
    _node["x"] = {}
    _node = _node["x"]

Call = Callable[[Any], object]

# (name, call on a 4-d store holding "a" with metadata {"k": 2})
CASES: list[tuple[str, Call]] = [
    ("ids a string", lambda s: s.add("ab", np.ones((2, 4)))),
    ("ids None", lambda s: s.add(None, np.ones((1, 4)))),
    ("id an int", lambda s: s.add([1], np.ones((1, 4)))),
    ("id empty", lambda s: s.add([""], np.ones((1, 4)))),
    ("id a lone surrogate", lambda s: s.add(["a\udcff"], np.ones((1, 4)))),
    ("delete an int id", lambda s: s.delete([1])),
    ("get a string", lambda s: s.get("a")),
    ("NaN", lambda s: s.add(["b"], [[np.nan, 0, 0, 1]])),
    ("infinity", lambda s: s.add(["b"], [[np.inf, 0, 0, 1]])),
    ("too large for float32", lambda s: s.add(["b"], np.full((1, 4), 1e39))),
    ("object dtype", lambda s: s.add(["b"], np.array([[1, 2, 3, 4]], dtype=object))),
    ("strings", lambda s: s.add(["b"], [["a", "b", "c", "d"]])),
    ("ragged", lambda s: s.add(["b", "c"], [[1, 2, 3, 4], [1, 2]])),
    ("3-D", lambda s: s.add(["b"], np.ones((1, 1, 4)))),
    ("wrong width", lambda s: s.add(["b"], np.ones((1, 5)))),
    ("absurdly wide", lambda s: s.add(["b"], np.ones((1, 1_000_000)))),
    ("count", lambda s: s.add(["b", "c"], np.ones((1, 4)))),
    ("metadata count", lambda s: s.add(["b"], np.ones((1, 4)), [{}, {}])),
    ("metadata a mapping", lambda s: s.add(["b"], np.ones((1, 4)), {"k": 1})),
    ("metadata not a mapping", lambda s: s.add(["b"], np.ones((1, 4)), ["x"])),
    ("metadata key an int", lambda s: s.add(["b"], np.ones((1, 4)), [{1: "x"}])),
    ("nested key an int", lambda s: s.add(["b"], np.ones((1, 4)), [{"x": {1: "x"}}])),
    ("reserved key", lambda s: s.add(["b"], np.ones((1, 4)), [{"_mmembed_id": "x"}])),
    ("metadata NaN", lambda s: s.add(["b"], np.ones((1, 4)), [{"x": float("nan")}])),
    ("metadata a set", lambda s: s.add(["b"], np.ones((1, 4)), [{"x": {1}}])),
    ("metadata deep", lambda s: s.add(["b"], np.ones((1, 4)), [{"x": _deep}])),
    ("where a string", lambda s: s.search(np.ones(4), where="modality=text")),
    ("where an operator", lambda s: s.search(np.ones(4), where={"k": {"$gt": 1}})),
    ("where a path", lambda s: s.search(np.ones(4), where={"a.b": 1})),
    ("where key an int", lambda s: s.search(np.ones(4), where={1: 2})),
    ("where NaN", lambda s: s.search(np.ones(4), where={"k": float("nan")})),
    ("where an object", lambda s: s.search(np.ones(4), where={"k": object()})),
    ("k a string", lambda s: s.search(np.ones(4), k="5")),
    ("k zero", lambda s: s.search(np.ones(4), k=0)),
    ("k a bool", lambda s: s.search(np.ones(4), k=True)),
    ("query NaN", lambda s: s.search([np.nan, 0, 0, 1])),
    ("query zero", lambda s: s.search(np.zeros(4))),
    ("query None", lambda s: s.search(None)),
    ("query 2-D", lambda s: s.search(np.ones((2, 4)))),
    ("query wrong width", lambda s: s.search(np.ones(5))),
    ("batch 1-D", lambda s: s.search_batch(np.ones(4))),
    ("shrink too wide", lambda s: s.shrink(8)),
    ("shrink a string", lambda s: s.shrink("2")),
]


def _stores() -> Iterator[Any]:
    yield InMemoryStore(4)
    yield FaissStore(4)
    yield FaissStore(4, index="HNSW32")
    try:
        from mmembed.stores import QdrantStore

        yield QdrantStore(4)
    except ImportError:
        pass


@pytest.mark.parametrize(("name", "call"), CASES, ids=[name for name, _ in CASES])
def test_same_error_and_message_in_every_store(name: str, call: Call) -> None:
    seen = []
    for store in _stores():
        store.add(["a"], np.ones((1, 4)), [{"k": 2}])
        with pytest.raises(MMEmbedError) as caught:
            call(store)
        seen.append((type(store).__name__, type(caught.value), str(caught.value)))
        assert len(store) == 1, name  # nothing half-done
    assert len(seen) >= 3
    kinds = {kind for _, kind, _ in seen}
    messages = {message for _, _, message in seen}
    assert len(kinds) == 1, seen
    assert len(messages) == 1, seen
    assert kinds <= {ConfigurationError, DimensionMismatchError}


def test_constructors_check_dimensions_alike() -> None:
    from mmembed.stores._validate import MAX_DIMENSIONS

    makers: list[Callable[[Any], Any]] = [InMemoryStore, FaissStore]
    try:
        from mmembed.stores import QdrantStore

        makers.append(QdrantStore)
    except ImportError:
        pass
    for bad in ("8", 0, -3, True, 2.0, None, MAX_DIMENSIONS + 1):
        messages = set()
        for make in makers:
            with pytest.raises(ConfigurationError) as caught:
                make(bad)
            messages.add(str(caught.value))
        assert len(messages) == 1, messages
    for make in makers:
        assert make(np.int64(3)).dimensions == 3  # numpy integers are ints
