"""The examples in docs/stores.md and the stores' docstrings run as written; the contract example
of the testing page runs under pytest."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mmembed.stores.memory

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "stores.md"
# spelled so that test_docs.py, which skips the pages other doc tests name, still runs the
# testing page's other examples
TESTING_PAGE = (ROOT / "docs" / "testing").with_suffix(".md")


def test_docs_examples_run() -> None:
    found = re.findall(r"^( *)```python\n(.*?)^\1```", DOC.read_text(), flags=re.S | re.M)
    blocks = [textwrap.dedent(body) for _, body in found]
    runnable = [b for b in blocks if "MyStore" not in b]  # the last one is a template
    assert len(runnable) >= 5
    namespace: dict[str, object] = {}
    for block in runnable:
        exec(compile(block, str(DOC), "exec"), namespace)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(mmembed.stores.memory, raise_on_error=False)
    assert result.attempted >= 3
    assert result.failed == 0


def test_check_your_own_backend_example_passes_under_pytest(tmp_path: Path) -> None:
    text = TESTING_PAGE.read_text(encoding="utf-8")
    section = text[text.index("## Check your own backend") :]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert block is not None
    (tmp_path / "test_my_backends.py").write_text(block.group(1), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_backends.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed is not None
    from mmembed.testing.contracts import EmbedderContract, VectorStoreContract

    expected = sum(
        name.startswith("test_")
        for cls in (EmbedderContract, VectorStoreContract)
        for name in dir(cls)
    )
    assert int(passed.group(1)) == expected, run.stdout[-500:]  # both contracts ran in full


def test_testing_helpers_import_without_pytest() -> None:
    code = (
        "import sys, mmembed.testing; print('pytest' in sys.modules, 'hypothesis' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.split() == ["False", "False"]
