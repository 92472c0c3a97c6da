"""The migration pages' examples run against FakeGeminiServer: ours always, theirs where the
peer package is installed here (a block whose imports are missing is skipped, not run).

Pages: migrate-langchain.md, migrate-llamaindex.md, migrate-chroma.md.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmembed.testing import FakeGeminiServer

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ("migrate-langchain.md", "migrate-llamaindex.md", "migrate-chroma.md")
_IMPORT = re.compile(r"^(?:from|import) ([\w.]+)", re.M)


def _blocks(page: str) -> list[tuple[str, str]]:
    """(heading, code) for each ```python block, under the ## heading it follows."""
    text = (DOCS / page).read_text(encoding="utf-8")
    out = []
    heading = ""
    for part in re.split(r"(^## .*$)", text, flags=re.M):
        if part.startswith("## "):
            heading = part[3:].strip()
        out += [(heading, code) for code in re.findall(r"```python\n(.*?)```", part, re.S)]
    return out


def _missing(code: str) -> str | None:
    for name in _IMPORT.findall(code):
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:
            return name
    return None


@pytest.fixture
def gemini_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as server:
        for key, value in server.env(api_key="docs-example-key").items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
        yield server


def test_each_page_has_their_code_and_ours() -> None:
    for page in PAGES:
        headings = [h for h, _ in _blocks(page)]
        assert "Their code" in headings, page
        assert "Ours" in headings, page


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.usefixtures("gemini_env")
def test_migration_examples_run(page: str) -> None:
    ran = []
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    try:
        for heading, code in _blocks(page):
            missing = _missing(code)
            if missing is not None:
                assert heading != "Ours", f"{page}: our example needs {missing}"
                continue  # their package is not installed here
            exec(compile(code, f"{page} ({heading})", "exec"), namespace)
            ran.append(heading)
    finally:
        if "chromadb" in namespace:
            namespace["chromadb"].api.client.SharedSystemClient.clear_system_cache()
    if "Ours" not in ran:
        pytest.skip(f"{page}: the framework is not installed")
