"""Index: incremental adds, removal, fingerprint, crash consistency of the catalog/store pair."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import ArrayLike

from mmembed import Image, IncompatibleIndexError, Modality, Text, TextSpan
from mmembed.content import Part
from mmembed.errors import ConfigurationError, CorruptStoreError
from mmembed.index import Index, IndexLockedError, IndexProgress
from mmembed.protocols import Chunk, Hit
from mmembed.results import Result, Results
from mmembed.testing import FakeEmbedder
from mmembed.testing.media import make_image


class LineChunker:
    """A tiny chunker for tests: one chunk per paragraph of a text, media whole."""

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        assert not isinstance(source, (str, os.PathLike))
        name = str(getattr(source, "path", "") or "")
        if isinstance(source, Text):
            start = 0
            for para in source.text.split("\n\n"):
                end = start + len(para)
                if para.strip():
                    yield Chunk(Text(para), "x", TextSpan(start, end))
                start = end + 2
        else:
            yield Chunk(source, name)


class ListStore:
    """A store with no save(): the index must rebuild it from its catalog on every open."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.rows: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def add(
        self,
        ids: Sequence[str],
        vectors: ArrayLike,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        arr = np.asarray(vectors, dtype=np.float32)
        for i, id_ in enumerate(ids):
            self.rows[id_] = (arr[i], dict(metadata[i]) if metadata else {})

    def search(
        self, query: ArrayLike, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        q = np.asarray(query, dtype=np.float32)
        hits = []
        for id_, (vec, meta) in self.rows.items():
            if where and any(
                meta.get(key) not in (v if isinstance(v, list) else [v]) for key, v in where.items()
            ):
                continue
            hits.append(Hit(id_, float(vec @ q / np.linalg.norm(q)), meta))
        return sorted(hits, key=lambda h: -h.score)[:k]

    def delete(self, ids: Sequence[str]) -> int:
        return sum(self.rows.pop(i, None) is not None for i in ids)

    def __len__(self) -> int:
        return len(self.rows)


NOTES = {
    "krebs.md": "The Krebs cycle runs in the mitochondria.\n\nIt makes ATP and carbon dioxide.",
    "sonnet.txt": "A sonnet has fourteen lines of iambic pentameter.",
    "rome.md": "Rome was founded on seven hills by the river Tiber.",
}


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    for name, text in NOTES.items():
        (root / name).write_text(text)
    (root / "diagram.png").write_bytes(make_image("PNG", (32, 32), noise=True, seed=1))
    return root


def make(tmp_path: Path, **kw: Any) -> Index:
    kw.setdefault("embedder", FakeEmbedder(32))
    kw.setdefault("store", ListStore(32))
    kw.setdefault("chunker", LineChunker())
    return Index(tmp_path / "ix", **kw)


def test_add_then_search_finds_the_matching_note(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path)
    report = index.add(course)
    assert len(report.added) == 4
    assert report.failed == ()
    assert report.unchanged == ()
    assert report.chunks == 5
    results = index.search("where does the Krebs cycle run", k=3)
    assert isinstance(results, Results)
    top = results[0]
    assert top.source.endswith("krebs.md")
    assert top.modality is Modality.TEXT
    assert top.span == TextSpan(0, 41)
    assert top.uri == f"{top.source}#char=0,41"
    assert "Krebs" in top.preview


def test_reindex_of_unchanged_tree_embeds_nothing(tmp_path: Path, course: Path) -> None:
    embedder = FakeEmbedder(32)
    index = make(tmp_path, embedder=embedder)
    index.add(course)
    calls = len(embedder.calls)
    report = index.add(course)
    assert len(report.unchanged) == 4
    assert report.added == ()
    assert report.replaced == ()
    assert report.chunks == 0
    assert len(embedder.calls) == calls


def test_touched_but_identical_file_is_unchanged(tmp_path: Path, course: Path) -> None:
    embedder = FakeEmbedder(32)
    index = make(tmp_path, embedder=embedder)
    index.add(course)
    calls = len(embedder.calls)
    os.utime(course / "rome.md", ns=(1, 1))
    report = index.add(course)
    assert len(report.unchanged) == 4
    assert len(embedder.calls) == calls


def test_changed_file_replaces_its_chunks(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path)
    index.add(course)
    (course / "rome.md").write_text("Photosynthesis happens in chloroplasts.")
    report = index.add(course)
    assert [Path(p).name for p in report.replaced] == ["rome.md"]
    assert len(index) == 5
    top = index.search("photosynthesis chloroplasts", k=1)[0]
    assert top.source.endswith("rome.md")
    assert "chloroplasts" in top.preview
    assert all("Tiber" not in r.preview for r in index.search("Rome seven hills Tiber", k=10))


def test_deleted_file_disappears_on_reindex_of_its_folder(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path)
    index.add(course)
    (course / "sonnet.txt").unlink()
    report = index.add(course)
    assert [Path(p).name for p in report.removed] == ["sonnet.txt"]
    assert all(not r.source.endswith("sonnet.txt") for r in index.search("sonnet lines", k=10))


def test_remove_drops_a_file_but_not_from_disk(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path)
    index.add(course)
    removed = index.remove(course / "krebs.md")
    assert [Path(p).name for p in removed] == ["krebs.md"]
    assert (course / "krebs.md").exists()
    assert len(index) == 3
    assert all(not r.source.endswith("krebs.md") for r in index.search("Krebs", k=10))


def test_search_with_an_image_finds_that_image(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path)
    index.add(course)
    top = index.search(Image.from_path(course / "diagram.png"), k=1)[0]
    assert top.source.endswith("diagram.png")
    assert top.modality is Modality.IMAGE
    assert top.span is None
    assert top.score == pytest.approx(1.0, abs=1e-5)


def test_where_filters_by_modality_and_by_relative_source(
    tmp_path: Path, course: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = make(tmp_path)
    index.add(course)
    only_images = index.search("Krebs cycle", k=5, where={"modality": "image"})
    assert [r.modality for r in only_images] == [Modality.IMAGE]
    monkeypatch.chdir(course)
    only_rome = index.search("Krebs cycle", k=5, where={"source": "rome.md"})
    assert [r.source for r in only_rome] == ["rome.md"]


def test_group_gives_one_result_per_source_with_its_spans(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path)
    index.add(course)
    grouped = index.search("Krebs cycle mitochondria ATP carbon", k=2, group=True)
    sources = [r.source for r in grouped]
    assert len(set(sources)) == len(sources) == 2
    krebs = next(r for r in grouped if r.source.endswith("krebs.md"))
    assert len(krebs.matches) == 2
    assert krebs.matches[0].score >= krebs.matches[1].score


def test_bad_file_is_reported_and_the_rest_indexed(tmp_path: Path, course: Path) -> None:
    (course / "broken.txt").write_bytes(b"\xff\xfe not utf8 \xff" * 10)
    (course / "data.bin").write_bytes(bytes(range(256)) * 4)
    index = make(tmp_path)
    report = index.add(course)
    assert len(report.added) == 4
    problems = {Path(p.path).name: p.reason for p in (*report.failed, *report.skipped)}
    assert "broken.txt" in problems
    assert "data.bin" in problems
    assert all(problems.values())


def test_media_the_embedder_cannot_take_is_skipped_with_the_reason(
    tmp_path: Path, course: Path
) -> None:
    text_only = FakeEmbedder(32, modalities=frozenset({Modality.TEXT}))
    index = make(tmp_path, embedder=text_only)
    report = index.add(course)
    assert [Path(p.path).name for p in report.skipped] == ["diagram.png"]
    assert "image" in report.skipped[0].reason
    assert len(report.added) == 3


def test_reopen_without_arguments_reuses_the_embedder(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path, embedder=FakeEmbedder(32, model="m1"))
    index.add(course)
    index.close()
    again = Index(tmp_path / "ix", chunker=LineChunker(), store=ListStore(32))
    assert again.embedder.model == "m1"
    assert again.dimensions == 32
    assert again.search("Krebs", k=1)[0].source.endswith("krebs.md")


def test_incompatible_embedder_is_refused(tmp_path: Path, course: Path) -> None:
    make(tmp_path, embedder=FakeEmbedder(32, model="m1")).add(course)
    with pytest.raises(IncompatibleIndexError, match="dimensions"):
        Index(tmp_path / "ix", embedder=FakeEmbedder(64, model="m1"))
    with pytest.raises(IncompatibleIndexError, match="model"):
        Index(tmp_path / "ix", embedder=FakeEmbedder(32, model="m2"))


def test_changed_chunk_options_are_refused(tmp_path: Path, course: Path) -> None:
    Index(
        tmp_path / "ix",
        embedder=FakeEmbedder(32),
        store=ListStore(32),
        chunk_options={"text": {"size": 500}},
    )
    with pytest.raises(IncompatibleIndexError, match="chunk settings"):
        Index(tmp_path / "ix", embedder=FakeEmbedder(32), chunk_options={"text": {"size": 900}})


def test_a_nonempty_store_for_an_existing_index_is_refused(tmp_path: Path, course: Path) -> None:
    make(tmp_path).add(course)
    full = ListStore(32)
    full.add(["x"], np.ones((1, 32)))
    with pytest.raises(ConfigurationError, match="empty"):
        Index(tmp_path / "ix", store=full, chunker=LineChunker())


def test_symlinks_out_of_the_root_and_loops_are_not_followed(tmp_path: Path, course: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the course")
    (course / "link.txt").symlink_to(outside)
    (course / "sub").mkdir()
    (course / "sub" / "loop").symlink_to(course, target_is_directory=True)
    (course / "sub" / "inner.md").write_text("inner note about enzymes")
    index = make(tmp_path)
    report = index.add(course)
    names = sorted(Path(p).name for p in report.added)
    assert names == ["diagram.png", "inner.md", "krebs.md", "rome.md", "sonnet.txt"]
    assert any("outside" in p.reason for p in report.skipped)


def test_fifo_is_skipped_not_opened(tmp_path: Path, course: Path) -> None:
    os.mkfifo(course / "pipe")
    report = make(tmp_path).add(course)
    assert any(Path(p.path).name == "pipe" and "FIFO" in p.reason for p in report.skipped)


def test_index_dir_inside_the_folder_is_not_indexed(tmp_path: Path, course: Path) -> None:
    index = Index(
        course / ".mmembed",
        embedder=FakeEmbedder(32),
        store=ListStore(32),
        chunker=LineChunker(),
    )
    report = index.add(course)
    assert all(".mmembed" not in p for p in report.added)
    assert len(report.added) == 4


def test_dry_run_counts_without_embedding(tmp_path: Path, course: Path) -> None:
    embedder = FakeEmbedder(32)
    index = make(tmp_path, embedder=embedder)
    report = index.add(course, dry_run=True)
    assert report.dry_run
    assert report.chunks == 5
    assert len(report.added) == 4
    assert embedder.calls == []
    assert len(index) == 0
    assert "would add 4" in str(report)


def test_committed_files_survive_a_failure_midway(tmp_path: Path, course: Path) -> None:
    class Boom(FakeEmbedder):
        def embed(self, items: Any, *, task: Any = None) -> Any:  # type: ignore[override]
            if any("Rome" in getattr(i, "text", "") for i in items):
                raise KeyboardInterrupt
            return super().embed(items)

    index = make(tmp_path, embedder=Boom(32), batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        index.add(course)
    index.close()
    again = Index(
        tmp_path / "ix",
        embedder=FakeEmbedder(32),
        chunker=LineChunker(),
        store=ListStore(32),
    )
    assert {Path(p).name for p in again.files()} == {"diagram.png", "krebs.md"}
    report = again.add(course)
    assert sorted(Path(p).name for p in report.added) == ["rome.md", "sonnet.txt"]
    assert len(report.unchanged) == 2


def test_results_render_as_text_and_html(tmp_path: Path, course: Path) -> None:
    index = make(tmp_path)
    index.add(course)
    results = index.search("Krebs", k=4)
    table = results.table(width=100)
    assert table.splitlines()[0].split()[:3] == ["#", "score", "source"]
    assert "krebs.md" in table
    html = results._repr_html_()
    assert "<table>" in html
    assert "data:image/png;base64," in html
    assert json.loads(json.dumps(results.to_dicts()))[0]["uri"].endswith("#char=0,41")
    assert "krebs.md" in str(results[0])


def test_result_str_shows_time_ranges_and_pages() -> None:
    from mmembed import PageSpan, TimeSpan

    video = Result(
        score=0.5,
        source="a.mp4",
        modality=Modality.VIDEO,
        span=TimeSpan(75, 90),
        uri="a.mp4#t=75,90",
    )
    pdf = Result(
        score=0.4, source="d.pdf", modality=Modality.PDF, span=PageSpan(7, 7), uri="d.pdf#page=7"
    )
    assert "1:15–1:30" in str(video)
    assert "p. 7" in str(pdf)
    html = Results([video, pdf])._repr_html_()
    assert "page 7" in html
    assert "1:15–1:30" in html


def test_reindex_never_builds_the_embedder_for_known_skipped_files(
    tmp_path: Path, course: Path
) -> None:
    text_only = FakeEmbedder(32, modalities=frozenset({Modality.TEXT}))
    make(tmp_path, embedder=text_only).add(course)
    reopened = Index(tmp_path / "ix", chunker=LineChunker(), store=ListStore(32))
    report = reopened.add(course)
    assert [Path(p.path).name for p in report.skipped] == ["diagram.png"]
    assert len(report.unchanged) == 3
    assert reopened._embedder_obj is None  # no model was loaded to decide anything


def test_a_run_killed_before_the_store_save_is_caught_up_from_the_catalog(
    tmp_path: Path, course: Path
) -> None:
    index = Index(tmp_path / "ix", embedder=FakeEmbedder(32), chunker=LineChunker())
    index.add(course)

    def killed(path: object) -> None:
        raise KeyboardInterrupt

    index.store.save = killed  # type: ignore[attr-defined]
    (course / "new.md").write_text("Glycolysis splits glucose in the cytoplasm.")
    with pytest.raises(KeyboardInterrupt):
        index.add(course)
    index.close()
    again = Index(tmp_path / "ix", chunker=LineChunker())
    top = again.search("glycolysis glucose cytoplasm", k=1)[0]
    assert top.source.endswith("new.md")
    assert len(again.store) == len(again) == 6


def test_a_run_killed_between_store_save_and_its_record_replays_without_duplicates(
    tmp_path: Path, course: Path
) -> None:
    index = Index(tmp_path / "ix", embedder=FakeEmbedder(32), chunker=LineChunker())
    index.add(course)
    old_state = (tmp_path / "ix" / "store.json").read_text()
    (course / "krebs.md").write_text("Changed: the Krebs cycle in one line.")
    (course / "new.md").write_text("Glycolysis splits glucose in the cytoplasm.")
    index.add(course)
    index.close()
    # the new snapshot is on disk but the record of what it holds is the old one
    (tmp_path / "ix" / "store.json").write_text(old_state)
    again = Index(tmp_path / "ix", chunker=LineChunker())
    assert len(again.store) == len(again) == 5
    ids = [r.chunk_id for r in again.search("Krebs cycle glycolysis", k=50)]
    assert len(ids) == len(set(ids)) == 5


@st.composite
def edits(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    names = [f"n{i}.md" for i in range(5)]
    words = ["krebs", "cycle", "rome", "hills", "sonnet", "lines", "enzyme"]
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["write", "write", "delete", "touch"]))
        text = " ".join(draw(st.lists(st.sampled_from(words), min_size=1, max_size=4)))
        ops.append((op, draw(st.sampled_from(names)), text))
    return ops


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rounds=st.lists(edits(), min_size=1, max_size=3))
def test_the_index_always_mirrors_the_folder(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[list[tuple[str, str, str]]]
) -> None:
    """Whatever is written, rewritten, touched or deleted between runs, after add() the index
    holds exactly the folder's files, each once, with its current text, and no stray vectors."""
    base = tmp_path_factory.mktemp("mirror")
    folder = base / "f"
    folder.mkdir()
    embedder = FakeEmbedder(16)
    index = Index(base / "ix", embedder=embedder, chunker=LineChunker())
    for ops in rounds:
        for op, name, text in ops:
            path = folder / name
            if op == "write":
                path.write_text(text)
            elif op == "delete":
                path.unlink(missing_ok=True)
            elif path.exists():
                os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
        if not any(folder.iterdir()):
            (folder / "keep.md").write_text("keep")
        calls = len(embedder.calls)
        report = index.add(folder)
        # unchanged files never cost an embedding call
        assert len(embedder.calls) - calls <= len(report.added) + len(report.replaced)
        on_disk = {p.name: p.read_text() for p in folder.iterdir()}
        assert {Path(p).name for p in index.files()} == set(on_disk)
        assert len(index.store) == len(index) == len(on_disk)
        previews = {r.source.rsplit("/", 1)[-1]: r.preview for r in index.search("x", k=50)}
        assert previews == {name: " ".join(text.split()) for name, text in on_disk.items()}
    index.close()


def test_search_with_a_content_of_text_and_image(tmp_path: Path, course: Path) -> None:
    from mmembed import Content

    embedder = FakeEmbedder(32)
    index = make(tmp_path, embedder=embedder)
    index.add(course)
    query = Content([Text("a diagram"), Image.from_path(course / "diagram.png")])
    results = index.search(query, k=2)
    assert results[0].source.endswith("diagram.png")
    assert embedder.calls[-1].task.value == "document"  # media queries embed like the chunks
    index.search(Content([Text("Krebs"), Text("cycle")]), k=1)
    assert embedder.calls[-1].task.value == "query"


def test_progress_reports_every_file(tmp_path: Path, course: Path) -> None:
    events: list[IndexProgress] = []
    make(tmp_path).add(course, progress=events.append)
    assert events[-1].files_done == events[-1].files_total == 4
    assert events[-1].chunks_done == 5
    done = [e.files_done for e in events]
    assert done == sorted(done)


def test_damaged_index_files_are_a_clear_error(tmp_path: Path, course: Path) -> None:
    make(tmp_path).add(course)
    (tmp_path / "ix" / "config.json").write_text("{not json")
    with pytest.raises(
        CorruptStoreError,
        match="restore it from a backup, or index the files again into a new directory",
    ):
        Index(tmp_path / "ix")


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path: Path, course: Path) -> None:
    first = make(tmp_path)
    second = Index(tmp_path / "ix", chunker=LineChunker(), store=ListStore(32))
    with first._lock, pytest.raises(IndexLockedError, match="another mmembed process"):
        second.add(course)
    assert second.add(course).added  # free again once the first is done
