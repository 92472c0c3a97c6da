"""``where`` filters on every field a result shows, in the Index and the CLI; unknown keys fail."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from mmembed import PageSpan, TimeSpan, _search
from mmembed.cli import ExitCode, main
from mmembed.errors import ConfigurationError
from mmembed.index import Index
from mmembed.testing import FakeEmbedder
from mmembed.testing.media import make_audio, make_pdf

DAY = 86_400
OLD = dt.datetime(2020, 1, 1).timestamp()
NEW = dt.datetime(2024, 6, 1).timestamp()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    (root / "lectures").mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "lectures" / "cells.md").write_text("Cells make energy in the mitochondria.")
    (root / "lectures" / "plants.txt").write_text("Plants make energy from light.")
    (root / "notes" / "energy.md").write_text("Energy is the capacity to do work.")
    make_pdf(10, path=root / "lectures" / "slides.pdf")
    (root / "notes" / "tone.wav").write_bytes(make_audio(seconds=60.0, sample_rate=8000))
    os.utime(root / "notes" / "energy.md", (OLD, OLD))
    for path in root.rglob("*"):
        if path.is_file() and path.name != "energy.md":
            os.utime(path, (NEW, NEW))
    return root


@pytest.fixture
def index(tmp_path: Path, tree: Path) -> Index:
    ix = Index(
        tmp_path / "ix",
        embedder=FakeEmbedder(32),
        chunk_options={"audio": {"window_seconds": 20, "overlap_seconds": 0}},
    )
    ix.add(tree / "lectures", metadata={"course": "biology", "year": 2024, "tags": ["a", "b"]})
    ix.add(tree / "notes", metadata={"course": "physics", "year": 2023})
    return ix


def names(index: Index, **where: object) -> set[str]:
    hits = index.search("energy", k=50, where=where, mode="vector")
    return {Path(r.source).name for r in hits}


def test_source_takes_a_file_a_folder_or_a_glob(
    index: Index, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    assert names(index, source="lectures/cells.md") == {"cells.md"}
    assert names(index, source="lectures") == {"cells.md", "plants.txt", "slides.pdf"}
    assert names(index, source="*/*.md") == {"cells.md", "energy.md"}
    assert names(index, source=["notes", "lectures/p*"]) == {"energy.md", "tone.wav", "plants.txt"}
    assert names(index, source=str(tree / "notes" / "energy.md")) == {"energy.md"}
    assert names(index, source="lectures/none.md") == set()


def test_modality_type_and_modified(index: Index) -> None:
    assert names(index, modality="pdf") == {"slides.pdf"}
    assert names(index, modality=["audio", "pdf"]) == {"slides.pdf", "tone.wav"}
    assert names(index, type="md") == {"cells.md", "energy.md"}
    assert names(index, type=[".PDF", "txt"]) == {"slides.pdf", "plants.txt"}
    assert names(index, modified_before="2021-01-01") == {"energy.md"}
    assert "energy.md" not in names(index, modified_after=dt.date(2021, 1, 1))
    assert names(index, modified_after=NEW - DAY, modified_before=NEW + DAY) == {
        "cells.md",
        "plants.txt",
        "slides.pdf",
        "tone.wav",
    }
    with pytest.raises(ConfigurationError, match="modality"):
        names(index, modality="hologram")
    with pytest.raises(ConfigurationError, match="ISO date"):
        names(index, modified_after="last week")


def test_page_filters_to_the_chunks_holding_the_page(index: Index) -> None:
    def spans(**where: object) -> list[object]:
        return sorted(
            (r.span for r in index.search("page", k=50, where=where, mode="vector")),
            key=str,
        )

    assert spans(page=8) == [PageSpan(7, 10)]
    assert spans(page=[1, 9]) == [PageSpan(1, 6), PageSpan(7, 10)]
    assert spans(page=range(5, 8)) == [PageSpan(1, 6), PageSpan(7, 10)]
    assert spans(page="2-3") == [PageSpan(1, 6)]
    assert spans(page=11) == []
    for bad in (0, "two", True, 1.5):
        with pytest.raises(ConfigurationError, match="page numbers"):
            spans(page=bad)


def test_time_filters_to_the_chunks_holding_the_instant_or_overlapping_the_range(
    index: Index,
) -> None:
    def spans(**where: object) -> list[object]:
        hits = index.search("tone", k=50, where=where, mode="vector")
        return sorted((r.span for r in hits), key=lambda s: s.start)  # type: ignore[union-attr]

    assert spans(time=25) == [TimeSpan(20, 40)]
    assert spans(time="0:45") == [TimeSpan(40, 60)]
    assert spans(time=(15, 25)) == [TimeSpan(0, 20), TimeSpan(20, 40)]
    assert spans(time="0:10-0:15") == [TimeSpan(0, 20)]
    assert spans(time=[5, "0:41"]) == [TimeSpan(0, 20), TimeSpan(40, 60)]
    assert spans(time=500) == []
    with pytest.raises(ConfigurationError, match="ends before it starts"):
        spans(time="2:00-1:00")
    with pytest.raises(ConfigurationError, match="clock time"):
        spans(time="noon")


def test_metadata_given_at_add_filters_and_shows(index: Index, tree: Path) -> None:
    assert names(index, course="physics") == {"energy.md", "tone.wav"}
    assert names(index, year=2024, type="md") == {"cells.md"}
    assert names(index, tags="b") == {"cells.md", "plants.txt", "slides.pdf"}
    assert names(index, course=["physics", "chemistry"]) == {"energy.md", "tone.wav"}
    assert names(index, year="2024") == set()  # JSON types: a string is not a number
    top = index.search("mitochondria", k=1, where={"course": "biology"})[0]
    assert top.metadata == {"course": "biology", "year": 2024, "tags": ["a", "b"]}
    assert top.to_dict()["metadata"]["course"] == "biology"

    # given again, new metadata replaces the old without embedding anything
    embedder = index.embedder
    assert isinstance(embedder, FakeEmbedder)
    calls = len(embedder.calls)
    report = index.add(tree / "notes", metadata={"course": "chemistry"})
    assert len(report.unchanged) == 2
    assert len(embedder.calls) == calls
    assert names(index, course="chemistry") == {"energy.md", "tone.wav"}
    assert names(index, course="physics") == set()
    # left out, files keep what they had
    index.add(tree / "notes")
    assert names(index, course="chemistry") == {"energy.md", "tone.wav"}


def test_an_unknown_key_is_an_error_that_lists_the_known_ones(index: Index) -> None:
    with pytest.raises(ConfigurationError) as caught:
        index.search("energy", where={"pgae": 7})
    message = str(caught.value)
    assert "'pgae'" in message
    for known in ("source", "modality", "type", "page", "time", "modified_after", "course"):
        assert known in message
    with pytest.raises(ConfigurationError, match="where takes a dict"):
        index.search("energy", where=[("page", 7)])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="operators"):
        index.search("energy", where={"course": {"$ne": "x"}})


def test_metadata_keys_may_not_hide_a_field(tmp_path: Path, tree: Path) -> None:
    index = Index(tmp_path / "ix", embedder=FakeEmbedder(8))
    with pytest.raises(ConfigurationError, match="built-in filter"):
        index.add(tree / "notes", metadata={"page": 3})
    with pytest.raises(ConfigurationError, match="JSON"):
        index.add(tree / "notes", metadata={"when": dt.datetime(2024, 1, 1)})
    with pytest.raises(ConfigurationError, match="takes a dict"):
        index.add(tree / "notes", metadata=["course"])  # type: ignore[arg-type]


def test_filters_apply_to_both_rankings_and_past_the_exact_limit(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    for mode in ("keyword", "hybrid", "vector"):
        hits = index.search("energy", k=50, where={"course": "physics"}, mode=mode)  # type: ignore[arg-type]
        assert {Path(r.source).name for r in hits} <= {"energy.md", "tone.wav"}
        assert hits
    # a filter that leaves many chunks asks the store for more and more instead
    monkeypatch.setattr(_search, "_EXACT_MAX", 1)
    assert names(index, type=["md", "txt"]) == {"cells.md", "plants.txt", "energy.md"}
    assert names(index, page=9) == {"slides.pdf"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_filters_with_where_and_path(
    index: Index, tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ix = str(index.path)
    index.close()
    monkeypatch.chdir(tree)

    def sources(*args: str) -> set[str]:
        code, out, err = run(capsys, "search", "energy", "--index", ix, "--json", "-k", "50", *args)
        assert code == ExitCode.OK, err
        return {Path(h["source"]).name for h in json.loads(out)}

    assert sources("--path", "lectures/*") == {"cells.md", "plants.txt", "slides.pdf"}
    assert sources("--path", "lectures/*", "--where", "type=md") == {"cells.md"}
    assert sources("--where", "year=2023") == {"energy.md", "tone.wav"}
    assert sources("--where", "course=physics", "--where", "course=biology") == {
        "cells.md",
        "plants.txt",
        "slides.pdf",
        "energy.md",
        "tone.wav",
    }
    assert sources("--where", "page=7-8") == {"slides.pdf"}
    assert sources("--where", "time=0:30", "--modality", "audio") == {"tone.wav"}
    assert sources("--where", "modified_before=2021-01-01") == {"energy.md"}

    code, _, err = run(capsys, "search", "energy", "--index", ix, "--where", "pgae=7")
    assert code == ExitCode.USAGE
    assert "unknown where key 'pgae'" in err
    assert "course" in err
    code, _, err = run(capsys, "search", "energy", "--index", ix, "--where", "page")
    assert code == ExitCode.USAGE
    assert "KEY=VALUE" in err
