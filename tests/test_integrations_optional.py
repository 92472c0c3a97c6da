"""Missing frameworks give MissingDependencyError with the install line; the package imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    ("blocked", "statement", "extra"),
    [
        ("langchain_core", "import mmembed.integrations.langchain", "langchain"),
        ("llama_index", "import mmembed.integrations.llamaindex", "llamaindex"),
        (
            "qdrant_client",
            "from mmembed.stores.qdrant import QdrantStore; QdrantStore(4)",
            "qdrant",
        ),
        (
            "pymilvus",
            "from mmembed.stores.milvus import MilvusStore; MilvusStore(4, 'http://127.0.0.1:9')",
            "milvus",
        ),
        (  # pymilvus there, Milvus Lite not
            "milvus_lite",
            "from mmembed.stores.milvus import MilvusStore; MilvusStore(4, 'vectors.db')",
            "milvus",
        ),
        (
            "chromadb",
            "from mmembed.integrations.chroma import register_with_chroma; register_with_chroma()",
            "chroma",
        ),
    ],
)
def test_missing_framework_names_the_extra(blocked: str, statement: str, extra: str) -> None:
    code = f"""
import sys
sys.modules[{blocked!r}] = None  # as if it were not installed
import mmembed.integrations, mmembed.stores.qdrant, mmembed.integrations.chroma
from mmembed.errors import MissingDependencyError
try:
    {statement}
except MissingDependencyError as exc:
    assert isinstance(exc, ImportError)
    print(exc)
else:
    raise SystemExit("no MissingDependencyError")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f'pip install "mmembed[{extra}]"' in done.stdout


def test_importing_the_stores_does_not_import_qdrant_client() -> None:
    code = (
        "import sys; from mmembed.stores import QdrantStore; "
        "sys.exit('qdrant_client' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_importing_the_stores_does_not_import_pymilvus() -> None:
    code = "import sys; from mmembed.stores import MilvusStore; sys.exit('pymilvus' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
