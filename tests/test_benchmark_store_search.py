"""The store benchmark still runs (its quick mode, a few seconds of CPU) and prints every table
row it promises: each thread count, each batch size, each raw kernel and store, with ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RAW_SINGLE = ["numpy", "FAISS knn", "FAISS scan, row blocks"]
RAW_BATCH = ["numpy", "FAISS knn", "FAISS knn, BLAS", "FAISS scan, row blocks"]
RAW_BATCH += ["numpy GEMM + FAISS heaps"]
STORES = ["InMemoryStore", "FaissStore"]


def table(text: str) -> list[list[str]]:
    """The cells of a markdown table's body rows."""
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_store_search_benchmark_quick() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "store_search.py"),
            "--quick",
            "--threads",
            "1,2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    ratio, ms = re.compile(r"\d+\.\d\dx"), re.compile(r"\d+\.\d\d \(\d+\.\d\d\)")
    for threads in (1, 2):
        header = f"## {threads} thread{'s' if threads > 1 else ''} (OMP_NUM_THREADS={threads},"
        section = out.split(header, 1)[1].split("\n## ", 1)[0]
        assert "The floor of one query:" in section
        rows = table(section)
        paths = [(int(row[0]), row[1]) for row in rows]
        want = [(1, path) for path in RAW_SINGLE + STORES]
        for batch in (8, 32, 128):
            raw = [p for p in RAW_BATCH if batch <= 32 or p != "FAISS scan, row blocks"]
            want += [(batch, path) for path in raw + STORES]
        assert sorted(paths) == sorted(want)
        for row in rows:
            assert len(row) == 8
            assert ms.fullmatch(row[2])
            assert ratio.fullmatch(row[3])
            if row[0] == "1":  # one query: against the floor
                assert ratio.fullmatch(row[4])
                assert row[5:] == ["", "", ""]
            else:  # batches: against the GEMM rate
                assert row[4] == ""
                assert re.fullmatch(r"\d+", row[5])
                assert all(re.fullmatch(r"\d+%", cell) for cell in row[6:])
    summary = table(out.split("## Summary", 1)[1].split("\n### ", 1)[0])
    assert [(row[0], row[1]) for row in summary] == [
        (str(t), str(b)) for t in (1, 2) for b in (1, 8, 32, 128)
    ]
    for row in summary:
        assert row[2] in RAW_BATCH
        assert all(ratio.fullmatch(cell) for cell in row[4:6])
        assert re.fullmatch(r"\d+\.\d\dx floor|\d+% of GEMM \(\d+% of peak\)", row[6])
    assert "targets: every store <= 1.15x the fastest raw kernel" in out
    for row in (
        "| funnel, Flat first pass, batch of 50 |",
        "| funnel, HNSW32 first pass, batch of 50 |",
    ):
        assert row in out
    assert "recall@10" in out
