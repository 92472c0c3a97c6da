"""benchmarks/cli_latency.py and benchmarks/offline_quality.py run in quick mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quick(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_cli_latency_quick_prints_first_run_and_p50_per_option() -> None:
    out = quick("cli_latency.py")
    assert "fake server round trip" in out
    rows = [line for line in out.splitlines() if line.endswith("x")]
    assert any(line.startswith("gemini (fake server)") for line in rows)
    for line in rows:
        # in-process first and p50, helper first and p50
        assert len(re.findall(r"\d\.\d\d s", line)) == 4


@pytest.mark.slow
def test_offline_quality_quick_scores_each_installed_model() -> None:
    out = quick("offline_quality.py")
    assert "5 questions over 8 pages" in out
    assert any("/5" in line for line in out.splitlines()[2:])
