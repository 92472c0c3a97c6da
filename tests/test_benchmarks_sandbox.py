"""The sandbox benchmark runs (quick mode) and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sandbox_benchmark_quick_mode_prints_a_table() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sandbox.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    lines = out.stdout.splitlines()
    assert any(line.startswith("trivial generator") and "sandbox" in line for line in lines)
    assert sum("sandbox (mmembed)" in line for line in lines) >= 5
