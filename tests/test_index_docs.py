"""The runnable example in docs/index-and-cli.md runs, and says what the page says."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

from mmembed._cli_output import Bar as _Bar
from mmembed.index import IndexProgress

DOC = Path(__file__).resolve().parent.parent / "docs" / "index-and-cli.md"


def test_runnable_example_in_the_docs() -> None:
    text = DOC.read_text(encoding="utf-8")
    after = text.split("A runnable version", 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), str(DOC), "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(eval(lines[0])) == 2  # both files added
    assert len(eval(lines[1])) == 2  # both unchanged
    assert lines[2].endswith("krebs.md")


def test_plain_progress_line_has_counts_throughput_and_eta(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "rich.progress", None)  # as if the cli extra were missing
    stream = io.StringIO()
    bar = _Bar(stream)
    bar(IndexProgress(files_done=5, files_total=10, chunks_done=42, path="a.md"))
    bar(IndexProgress(files_done=10, files_total=10, chunks_done=80, path="b.md"))
    bar.close()
    shown = stream.getvalue()
    assert "indexing 10/10 files" in shown
    assert "80 chunks" in shown
    assert "files/s" in shown
    assert "ETA" in shown
