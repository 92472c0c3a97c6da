"""The examples in docs/chunkers.md run as written, on files generated here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmembed.testing.media import make_image, make_pdf

DOC = Path(__file__).resolve().parent.parent / "docs" / "chunkers.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL)


def test_the_doc_has_examples() -> None:
    assert len(examples()) >= 5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("docs")
    (d / "notes.md").write_text("Cats sleep a lot. They also purr.\n\n" * 60, encoding="utf-8")
    (d / "slides.pdf").write_bytes(make_pdf(14))
    (d / "holiday.webp").write_bytes(make_image("WEBP", (2048, 1536)))
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


def test_the_image_example_says_what_the_doc_says(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workdir)
    (example,) = [e for e in examples() if "holiday.webp" in e]
    exec(compile(example, "image example", "exec"), {})
    assert capsys.readouterr().out.split() == ["image/jpeg", "1024", "768", "WEBP", "True", "None"]
