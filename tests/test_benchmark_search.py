"""The search benchmark still runs (its quick mode: FakeEmbedder, a few seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_search_benchmark_quick() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "search.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "| FakeEmbedder | " in out
    for mode in ("vector", "keyword", "hybrid (default)"):
        assert f"| {mode} |" in out
    assert "| the language reference, repeated (2,000) | hybrid |" in out
    assert "hybrid / vector" in out


def test_the_questions_name_documents_of_the_corpus() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import search
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    docs = search.corpus()
    data = json.loads((ROOT / "benchmarks" / "search_eval" / "questions.json").read_text())
    assert len(data["eval"]) >= 50
    for question in data["dev"] + data["eval"]:
        assert question["docs"], question
        assert set(question["docs"]) <= set(docs), question
