"""The examples in docs/integrations.md run as written (offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[1] / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
NEEDS = {
    "langchain": "langchain_core",
    "llama_index": "llama_index.core",
    "chromadb": "chromadb",
    "mmembed.stores.milvus": "pymilvus",
}


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_runs(code: str) -> None:
    for word, module in NEEDS.items():
        if f"import {word}" in code or f"from {word}" in code:
            pytest.importorskip(module)
    if "mmembed.integrations.langchain" in code:
        pytest.importorskip("langchain_core")
    try:
        exec(compile(code, str(DOC), "exec"), {})
    finally:
        if "chromadb" in code:
            import chromadb

            chromadb.api.client.SharedSystemClient.clear_system_cache()


def test_every_block_was_found() -> None:
    assert len(BLOCKS) == 5
