"""The store benchmark still runs (its quick mode, a few seconds of CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_store_search_benchmark_quick() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "store_search.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    for row in (
        "| InMemoryStore single |",
        "| FaissStore batch |",
        "| funnel, Flat first pass, batch of 50 |",
        "| funnel, HNSW32 first pass, batch of 50 |",
    ):
        assert row in out
    assert "recall@10" in out
