"""The examples in docstrings and in docs/*.md run as tests, so the docs stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import mmembed

ROOT = Path(__file__).resolve().parents[1]
_OPTIONAL_ROOTS = ("langchain", "llama", "chroma", "qdrant", "sentence", "torch", "av", "pypdf")


def _modules() -> list[str]:
    names = ["mmembed"]
    for info in pkgutil.walk_packages(mmembed.__path__, "mmembed."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra that is not installed
        if exc.name and exc.name.split(".")[0].startswith(_OPTIONAL_ROOTS):
            pytest.skip(f"{name} needs {exc.name}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _pages_with_their_own_test() -> set[str]:
    """Pages whose examples need prepared files run in a test of their own (test_*docs*.py)."""
    own = set()
    for test in (ROOT / "tests").glob("test_*docs*.py"):
        if test.name != "test_docs.py":
            own.update(re.findall(r"[\w-]+\.md", test.read_text(encoding="utf-8")))
    return own


def _doc_blocks() -> list[tuple[str, str]]:
    out = []
    own = _pages_with_their_own_test()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name in own:
            continue
        for i, block in enumerate(_BLOCK.findall(page.read_text(encoding="utf-8"))):
            out.append((f"{page.name}[{i}]", block))
    return out


@pytest.mark.parametrize(("where", "code"), _doc_blocks(), ids=[w for w, _ in _doc_blocks()])
def test_docs_python_blocks_run(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ```python block in docs/ runs (blocks meant for a real key use ```py instead)."""
    monkeypatch.chdir(tmp_path)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})
