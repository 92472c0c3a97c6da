"""The examples in docs/chunkers-av.md run as written, on files generated here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmembed.testing.media import make_audio, make_video

DOC = Path(__file__).resolve().parent.parent / "docs" / "chunkers-av.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL)


def test_the_doc_has_examples() -> None:
    assert len(examples()) >= 4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("av")
    pytest.importorskip("soxr")
    d = tmp_path_factory.mktemp("docs")
    make_video(seconds=50, fps=5, gop=10, path=d / "lecture.mp4")
    make_audio("M4A", seconds=40, sample_rate=44100, path=d / "talk.m4a")
    return d


@pytest.mark.parametrize("index", range(len(examples())))
def test_example_runs(
    index: int, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workdir)
    exec(compile(examples()[index], f"{DOC.name} example {index}", "exec"), {})
    out = capsys.readouterr().out
    if "print(" in examples()[index]:
        assert out.strip(), "the example printed nothing"
