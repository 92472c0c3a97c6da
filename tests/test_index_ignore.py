"""Folders as people keep them: --include/--exclude globs, nested .gitignore and .mmembedignore."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmembed._walk import Selection, walk
from mmembed.cli import ExitCode, main
from mmembed.errors import ConfigurationError
from mmembed.index import Index
from mmembed.testing import FakeEmbedder, FakeGeminiServer


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


TREE = {
    ".gitignore": "*.log\nbuild/\n/top-only.md\n!important.log\n",
    "a.md": "alpha",
    "debug.log": "noise",
    "important.log": "kept by a negated pattern",
    "top-only.md": "ignored at the top only",
    "build/x.md": "a build product",
    "sub/.gitignore": "*.md\n!keep.md\n",
    "sub/b.md": "ignored by sub's own file",
    "sub/keep.md": "re-included in sub",
    "sub/c.txt": "not a markdown file",
    "other/top-only.md": "the top's anchored pattern does not reach here",
    "sub/deeper/.mmembedignore": "secret.txt\n",
    "sub/deeper/secret.txt": "left out by .mmembedignore",
    "sub/deeper/d.md": "sub's *.md reaches down here",
    "sub/deeper/keep.md": "and so does its !keep.md",
    "sub/deeper/e.txt": "kept",
    "other/b.md": "sub's patterns do not apply beside it",
    "logs/.gitignore": "!*.log\n",
    "logs/run.log": "a deeper file re-includes what the top ignores",
    "both/.gitignore": "notes.md\n",
    "both/.mmembedignore": "!notes.md\n",
    "both/notes.md": ".mmembedignore wins at the same level",
}

KEPT = {
    "a.md",
    "important.log",
    "sub/keep.md",
    "sub/c.txt",
    "other/top-only.md",
    "sub/deeper/keep.md",
    "sub/deeper/e.txt",
    "other/b.md",
    "logs/run.log",
    "both/notes.md",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    _write(root, TREE)
    return root


def _walked(root: Path, select: Selection | None) -> tuple[set[str], set[str]]:
    kept, ignored = set(), set()
    for found in walk(root, select=select):
        rel = Path(found.path).relative_to(root).as_posix()
        (ignored if found.ignored else kept).add(rel)
    return kept, ignored


def test_nested_ignore_files_apply_to_their_own_subtree(tree: Path) -> None:
    kept, ignored = _walked(tree, Selection())
    assert kept == KEPT
    # build/ is left out as a folder, never entered
    assert ignored == {
        "debug.log",
        "top-only.md",
        "build",
        "sub/b.md",
        "sub/deeper/secret.txt",
        "sub/deeper/d.md",
    }


def test_no_selection_or_respect_ignore_false_keeps_everything(tree: Path) -> None:
    everything = {rel for rel in TREE if not Path(rel).name.startswith(".")}
    assert _walked(tree, None)[0] == everything
    assert _walked(tree, Selection(respect_ignore=False)) == (everything, set())


def test_include_and_exclude_globs(tree: Path) -> None:
    kept, _ = _walked(tree, Selection.build("*.md"))
    assert kept == {rel for rel in KEPT if rel.endswith(".md")}
    kept, ignored = _walked(tree, Selection.build(exclude=["sub/", "*.log"]))
    assert kept == {"a.md", "other/b.md", "other/top-only.md", "both/notes.md"}
    assert "sub" in ignored  # a folder left out is not entered
    kept, _ = _walked(tree, Selection.build(include=["sub/**/*.txt"], respect_ignore=False))
    assert kept == {"sub/c.txt", "sub/deeper/e.txt", "sub/deeper/secret.txt"}
    # anchored at the walked folder: /a.md is the top one only
    kept, _ = _walked(tree, Selection.build(include="/*.md", respect_ignore=False))
    assert kept == {"a.md", "top-only.md"}


def test_a_git_repository_above_the_walked_folder_lends_its_ignore_files(tmp_path: Path) -> None:
    files = {".gitignore": "generated/\n", "docs/a.md": "a", "docs/generated/b.md": "b"}
    _write(tmp_path / "repo", files)
    docs = tmp_path / "repo" / "docs"
    assert _walked(docs, Selection())[0] == {"a.md", "generated/b.md"}  # not a repository yet
    (tmp_path / "repo" / ".git").mkdir()
    assert _walked(docs, Selection())[0] == {"a.md"}
    assert _walked(docs, Selection(respect_ignore=False))[0] == {"a.md", "generated/b.md"}


def test_a_file_named_directly_ignores_ignore_files_but_not_globs(tree: Path) -> None:
    assert [f.ignored for f in walk(tree / "debug.log", select=Selection())] == [False]
    assert [f.ignored for f in walk(tree / "debug.log", select=Selection.build("*.md"))] == [True]
    assert [f.ignored for f in walk(tree / "a.md", select=Selection.build(exclude="a.*"))] == [True]


def test_bad_patterns_are_configuration_errors() -> None:
    for bad in ([1], [""], ["  "], 5, [None]):
        with pytest.raises(ConfigurationError, match="glob patterns"):
            Selection.build(include=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="exclude"):
            Selection.build(exclude=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="respect_ignore"):
        Selection(respect_ignore="no")  # type: ignore[arg-type]


# -- the index ------------------------------------------------------------------------------------


def _indexed(index: Index, root: Path) -> set[str]:
    return {Path(f).relative_to(root).as_posix() for f in index.files()}


def _rel(paths: tuple[str, ...], root: Path) -> set[str]:
    """Report paths (shown relative to the working directory when below it) relative to root."""
    return {Path(os.path.abspath(p)).relative_to(root).as_posix() for p in paths}


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    ix = Index(tmp_path / "ix", embedder=FakeEmbedder(16))
    yield ix
    ix.close()


def test_index_add_respects_ignore_files_and_counts_what_they_leave_out(
    index: Index, tree: Path
) -> None:
    report = index.add(tree)
    assert _rel(report.added, tree) == KEPT
    assert report.failed == ()
    assert report.skipped == ()  # ignored files are not skipped files
    assert report.ignored == 6
    assert report.to_dict()["ignored"] == 6
    assert ", ignored 6;" in str(report)
    assert _indexed(index, tree) == KEPT


def test_files_left_out_later_are_removed_on_the_next_run(index: Index, tree: Path) -> None:
    index.add(tree, respect_ignore=False)
    assert len(_indexed(index, tree)) == len([r for r in TREE if Path(r).name[0] != "."])
    report = index.add(tree)  # now the ignore files count: what they name goes, as if deleted
    assert _rel(report.removed, tree) == {
        "debug.log",
        "top-only.md",
        "build/x.md",
        "sub/b.md",
        "sub/deeper/secret.txt",
        "sub/deeper/d.md",
    }
    assert _indexed(index, tree) == KEPT
    # a pattern added to an ignore file removes what it names on the next run of the folder
    (tree / "other" / ".mmembedignore").write_text("b.md\n")
    report = index.add(tree)
    assert [Path(p).name for p in report.removed] == ["b.md"]
    assert report.added == ()
    # include narrows the folder to what it names; the rest leaves the index
    report = index.add(tree, include=["*.txt"], exclude="deeper/")
    assert _indexed(index, tree) == {"sub/c.txt"}
    # a file named directly is indexed whatever the ignore files say
    report = index.add(tree / "debug.log")
    assert [Path(p).name for p in report.added] == ["debug.log"]


def test_dry_run_follows_the_same_selection(index: Index, tree: Path) -> None:
    report = index.add(tree, dry_run=True, include="*.md")
    assert len(report.added) == len([r for r in KEPT if r.endswith(".md")])
    assert index.files() == []


def test_bad_patterns_fail_before_anything_is_walked(index: Index, tree: Path) -> None:
    with pytest.raises(ConfigurationError, match="include"):
        index.add(tree, include=[3])  # type: ignore[list-item]
    assert index.files() == []


# -- the command line -----------------------------------------------------------------------------


def test_cli_include_exclude_and_no_ignore(
    tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = str(tmp_path / "cli-ix")

    def index(*flags: str) -> dict[str, Any]:
        code = main(["index", str(tree), "--index", ix, "--json", *flags])
        out, err = capsys.readouterr()
        assert code == ExitCode.OK, err
        report: dict[str, Any] = json.loads(out)
        return report

    with FakeGeminiServer() as gemini:
        for key, value in gemini.env().items():
            monkeypatch.setenv(key, value)
        report = index("--include", "*.md", "--exclude", "other/", "--exclude", "both")
        assert sorted(Path(p).name for p in report["added"]) == ["a.md", "keep.md", "keep.md"]
        report = index("--no-ignore")
        assert "debug.log" in {Path(p).name for p in report["added"]}
        assert report["ignored"] == 0


def test_cli_help_names_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    out = capsys.readouterr().out
    for flag in ("--include GLOB", "--exclude GLOB", "--no-ignore", ".mmembedignore"):
        assert flag in out


def test_the_docs_example_runs() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "index-and-cli.md"
    section = doc.read_text(encoding="utf-8").split("### Which files", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "report.ignored == 2" in code
    exec(compile(code, str(doc), "exec"), {})
