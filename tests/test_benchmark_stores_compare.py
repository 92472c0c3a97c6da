"""The store comparison benchmark still runs (its quick mode, seconds of CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stores_compare_benchmark_quick() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stores_compare.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "Store" in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| FaissStore (Flat, in memory, saved)",
        "| QdrantStore (local mode, in memory)",
        "| QdrantStore (local mode, on disk)",
        "| MilvusStore (Milvus Lite file)",
    ]
    for row in rows:
        assert "not measured" not in row, row
        assert row.endswith("| 20/20 |"), row  # every store finds the exact nearest neighbour
