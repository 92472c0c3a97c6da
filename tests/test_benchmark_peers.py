"""benchmarks/peers.py measures the frameworks' Gemini classes against the fake server.

Quick mode, on the peers installed here (skipped when none is); the reference row, mmembed's
own LangChain adapter, must show none of the three faults the script looks for.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEER_MODULES = ("langchain_google_genai", "chromadb", "llama_index.embeddings.google_genai")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
def test_quick_mode_measures_the_installed_peers() -> None:
    if not any(_installed(m) for m in PEER_MODULES):
        pytest.skip("no peer Gemini integration is installed here")
    pytest.importorskip("langchain_core")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        cwd=ROOT,
    )
    rows = {row["peer"]: row for row in map(json.loads, done.stdout.splitlines())}
    ours = rows["mmembed LangChainEmbeddings"]
    assert ours["verdicts"]["fused"] == "no: 3 texts → 3 vectors"
    assert ours["verdicts"]["task"] == "no: the query carries the task prefix"
    assert ours["verdicts"]["over 100"] == "no: 101 texts in 2 calls (largest 100)"
    assert ours["query"]["texts"] == ["task: search result | query: which animal purrs?"]
    measured = [row for row in rows.values() if row["installed"]]
    assert len(measured) >= 2  # the reference and at least one peer
    for row in measured:
        assert set(row["verdicts"]) == {"fused", "task", "over 100"}
        docs = row["documents"]
        if not docs["error"]:
            # the fake answers one vector per content, as the service does: what the caller got
            # is what was sent, so a fused result is the peer's doing
            assert docs["vectors"] == docs["contents"]
