"""Contract suites: what mmembed relies on from an embedder, a chunker or a vector store, as
pytest test classes to run against your own.

Every embedder, chunker and store in mmembed passes these. Subclass one in a test module of your
own and give it the fixture it asks for; pytest then runs the whole contract against your class:

- :class:`EmbedderContract`: fixture ``embedder`` (shapes, unit rows, order, determinism, tasks,
  async).
- :class:`ChunkerContract`: fixtures ``chunker``, ``sources`` and ``bad_sources`` (limits, spans,
  URIs, laziness, only mmembed errors on bad input).
- :class:`VectorStoreContract`: fixture ``make_store`` (a function from ``dimensions`` to a new
  empty store): upsert, delete, filters, cosine scores, the same error for the same bad input,
  read-only hits, Hypothesis properties, threads; with ``persistent = True``, ``save``/``load``,
  flipped bytes and planted pickles.

These modules import pytest and Hypothesis (``pip install pytest hypothesis``);
``import mmembed.testing`` does not import this package, so it needs neither.
"""

from __future__ import annotations

import importlib.util

from mmembed.errors import MissingDependencyError

for _name in ("pytest", "hypothesis"):
    if importlib.util.find_spec(_name) is None:
        _err = MissingDependencyError(
            f"mmembed.testing.contracts are pytest suites that need {_name}, which is not "
            "installed. Install it with: pip install pytest hypothesis"
        )
        _err.name = _name
        raise _err

from mmembed.testing.contracts.chunker import ChunkerContract  # noqa: E402
from mmembed.testing.contracts.embedder import EmbedderContract  # noqa: E402
from mmembed.testing.contracts.store import MakeStore, VectorStoreContract  # noqa: E402

__all__ = ["ChunkerContract", "EmbedderContract", "MakeStore", "VectorStoreContract"]
