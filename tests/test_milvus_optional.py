"""Without the milvus extra: the stores import, and MilvusStore names the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    ("blocked", "statement"),
    [
        ("pymilvus", "MilvusStore(4, 'http://127.0.0.1:9')"),
        ("milvus_lite", "MilvusStore(4, 'vectors.db')"),  # pymilvus there, Milvus Lite not
    ],
)
def test_missing_milvus_names_the_extra(blocked: str, statement: str) -> None:
    code = f"""
import sys
sys.modules[{blocked!r}] = None  # as if it were not installed
from mmembed.stores import MilvusStore
from mmembed.errors import MissingDependencyError
assert sys.modules.get("pymilvus") is None  # importing the stores does not import it
try:
    {statement}
except MissingDependencyError as exc:
    print(exc)
else:
    raise SystemExit("no MissingDependencyError")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "mmembed[milvus]"' in done.stdout
