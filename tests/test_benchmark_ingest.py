"""The ingest benchmark runs (quick mode) and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ingest_benchmark_quick_mode_runs() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore::DeprecationWarning",
            str(ROOT / "benchmarks" / "ingest.py"),
            "--quick",
            "--concurrency",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "| mmembed embed, concurrency 4 |" in done.stdout
    assert "| floor, concurrency 4 | 0.125 |" in done.stdout
