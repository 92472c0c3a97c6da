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


def _pages() -> list[Path]:
    own = _pages_with_their_own_test()
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in pages if p.name not in own and _BLOCK.search(p.read_text("utf-8"))]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_docs_python_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ```python block of a page runs, in order, in one namespace.

    The blocks run in an empty directory holding a few small images, against a running
    FakeGeminiServer that the SDK's environment points at (and that a block may call
    ``server``). Blocks meant only to be read (signatures, a real key) use ```py instead.
    """
    from mmembed.testing import FakeGeminiServer
    from mmembed.testing.media import make_image

    for name in ("bike.png", "slide.png", "diagram.png", "photo.png"):
        (tmp_path / name).write_bytes(make_image("PNG", (32, 24), noise=True, seed=len(name)))
    monkeypatch.chdir(tmp_path)
    with FakeGeminiServer() as server:
        for key, value in server.env(api_key="docs-example-key").items():
            monkeypatch.setenv(key, value)
        namespace: dict[str, object] = {"__name__": "__docs__", "server": server}
        for i, block in enumerate(_BLOCK.findall(page.read_text(encoding="utf-8"))):
            exec(compile(block, f"{page.name} block {i}", "exec"), namespace)
