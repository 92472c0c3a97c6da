"""The examples in docs/stores.md and the stores' docstrings run as written."""

from __future__ import annotations

import doctest
import re
import textwrap
from pathlib import Path

import mmembed.stores.memory

DOC = Path(__file__).resolve().parents[1] / "docs" / "stores.md"


def test_docs_examples_run() -> None:
    found = re.findall(r"^( *)```python\n(.*?)^\1```", DOC.read_text(), flags=re.S | re.M)
    blocks = [textwrap.dedent(body) for _, body in found]
    runnable = [b for b in blocks if "MyStore" not in b]  # the last one is a template
    assert len(runnable) >= 5
    namespace: dict[str, object] = {}
    for block in runnable:
        exec(compile(block, str(DOC), "exec"), namespace)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(mmembed.stores.memory, raise_on_error=False)
    assert result.attempted >= 3
    assert result.failed == 0
