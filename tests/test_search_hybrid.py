"""Search modes: hybrid by default for text, vector for media, keyword without the model; the
fusion; one result per chunk when a chunk's vectors nest; the signals on every result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmembed import Image, Modality, PageSpan, TextSpan, TimeSpan
from mmembed._search import choose_mode, fuse, keyword_words, merge_nested
from mmembed.cli import ExitCode, main
from mmembed.errors import ConfigurationError
from mmembed.index import Index
from mmembed.results import Result, Results, Signal
from mmembed.testing import FakeEmbedder
from mmembed.testing.media import make_image

NOTES = {
    "krebs.md": "The Krebs cycle runs in the mitochondria and releases carbon dioxide.",
    "glycolysis.md": "Glycolysis splits glucose into pyruvate in the cytoplasm.",
    "operators.md": "The walrus operator := assigns inside an expression.",
}


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    for name, text in NOTES.items():
        (root / name).write_text(text)
    (root / "sunflower-photo.png").write_bytes(make_image("PNG", (16, 16), noise=True, seed=4))
    return root


def test_text_queries_are_hybrid_by_default_and_say_what_found_them(
    tmp_path: Path, notes: Path
) -> None:
    with Index(tmp_path / "ix", embedder=FakeEmbedder(32)) as index:
        index.add(notes)
        results = index.search("where does the Krebs cycle run?", k=3)
        top = results[0]
        assert Path(top.source).name == "krebs.md"
        assert [s.name for s in top.signals] == ["vector", "keyword"]
        assert all(s.rank == 1 for s in top.signals)
        assert top.found_by == "v1 k1"
        assert 0 < top.score <= 1  # a weighted sum of scores scaled to 0..1
        as_json = json.loads(json.dumps(top.to_dict()))
        assert as_json["signals"]["keyword"]["rank"] == 1
        assert as_json["signals"]["vector"]["score"] == pytest.approx(
            top.signals[0].score, abs=1e-5
        )
        assert "found" in results.table().splitlines()[0]

        vector = index.search("where does the Krebs cycle run?", k=3, mode="vector")
        assert [s.name for s in vector[0].signals] == ["vector"]
        assert vector[0].score == vector[0].signals[0].score  # the cosine
        keyword = index.search("mitochondria", k=3, mode="keyword")
        assert [Path(r.source).name for r in keyword] == ["krebs.md"]
        assert keyword[0].found_by == "k1"


def test_the_keyword_side_finds_file_names_and_needs_no_model(tmp_path: Path, notes: Path) -> None:
    with Index(tmp_path / "ix", embedder=FakeEmbedder(32)) as index:
        index.add(notes)
    with Index(tmp_path / "ix") as reopened:
        hits = reopened.search("sunflower", mode="keyword")
        assert [Path(r.source).name for r in hits] == ["sunflower-photo.png"]
        assert hits[0].modality is Modality.IMAGE
        assert reopened._embedder_obj is None  # nothing was built to answer


def test_media_queries_stay_vector_only(tmp_path: Path, notes: Path) -> None:
    image = Image.from_path(notes / "sunflower-photo.png")
    with Index(tmp_path / "ix", embedder=FakeEmbedder(32)) as index:
        index.add(notes)
        top = index.search(image, k=1)[0]
        assert top.found_by == "v1"
        assert top.score == pytest.approx(1.0, abs=1e-5)
        for mode in ("keyword", "hybrid"):
            with pytest.raises(ConfigurationError, match="needs a text query"):
                index.search(image, mode=mode)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="mode must be"):
            index.search("x", mode="semantic")  # type: ignore[arg-type]


def test_an_index_without_text_searches_by_vector(tmp_path: Path, notes: Path) -> None:
    for name in NOTES:
        (notes / name).unlink()
    with Index(tmp_path / "ix", embedder=FakeEmbedder(32)) as index:
        index.add(notes)
        assert choose_mode(None, text_query=True, has_text=index._has_text) == "vector"
        assert index.search("sunflower")[0].found_by == "v1"


def test_keyword_queries_drop_common_words_and_punctuation() -> None:
    assert keyword_words("What is the walrus operator := ?") == ["walrus", "operator"]
    assert keyword_words("what is it") == ["what", "is", "it"]  # nothing else to go on
    assert keyword_words(":= ??") == []


def test_fusion_adds_scaled_scores_and_keeps_each_rank() -> None:
    vector = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    keyword = [("c", 12.0), ("a", 6.0), ("d", 0.0)]
    fused = fuse(vector, keyword, vector_weight=0.5)
    assert [c.id for c in fused] == ["a", "c", "b", "d"]
    by_id = {c.id: c for c in fused}
    assert by_id["a"].score == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert by_id["c"].score == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert by_id["b"].score == pytest.approx(0.5 * 0.5)
    assert by_id["c"].signals == (
        Signal(name="vector", rank=3, score=0.1),
        Signal(name="keyword", rank=1, score=12.0),
    )
    # a weight of 1 is the vector ranking alone, 0 the keyword one
    assert [c.id for c in fuse(vector, keyword, vector_weight=1.0)][:3] == ["a", "b", "c"]
    assert [c.id for c in fuse(vector, keyword, vector_weight=0.0)][:2] == ["c", "a"]
    assert [c.id for c in fuse(vector, [])] == ["a", "b", "c"]
    assert fuse([], []) == []


def result(span: object, score: float, source: str = "deck.pdf", name: str = "vector") -> Result:
    return Result(
        score=score,
        source=source,
        modality=Modality.PDF,
        span=span,  # type: ignore[arg-type]
        uri=f"{source}#{span}",
        preview=f"preview of {span}",
        chunk_id=str(span),
        signals=(Signal(name=name, rank=int(100 * (1 - score)), score=score),),
    )


def test_hits_whose_spans_nest_are_one_result_at_the_best_inner_span() -> None:
    part = result(PageSpan(9, 14), 0.8)
    page12 = result(PageSpan(12, 12), 0.7, name="keyword")
    page13 = result(PageSpan(13, 13), 0.6)
    other = result(PageSpan(1, 6), 0.5)
    elsewhere = result(PageSpan(12, 12), 0.4, source="other.pdf")
    merged = merge_nested([part, page12, page13, other, elsewhere])
    assert [r.span for r in merged] == [PageSpan(12, 12), PageSpan(1, 6), PageSpan(12, 12)]
    first = merged[0]
    assert first.score == 0.8
    assert first.chunk_id == str(PageSpan(12, 12))
    assert {s.name: s.rank for s in first.signals} == {"vector": 19, "keyword": 30}
    # overlapping windows do not nest, and spans of other kinds never merge
    windows = [result(TextSpan(0, 100), 0.9), result(TextSpan(80, 180), 0.8)]
    assert len(merge_nested(windows)) == 2
    keyframe = [result(TimeSpan(60, 90), 0.9), result(TimeSpan(72, 72), 0.8)]
    assert [r.span for r in merge_nested(keyframe)] == [TimeSpan(72, 72)]
    assert merge_nested([result(None, 0.9), result(None, 0.8)]) == [
        result(None, 0.9),
        result(None, 0.8),
    ]


def test_results_print_and_serialise_their_signals() -> None:
    r = result(PageSpan(2, 2), 0.75)
    assert r.to_dict()["signals"] == {"vector": {"rank": 25, "score": 0.75}}
    assert "v25" in Results([r]).table()
    assert hash(r) == hash(result(PageSpan(2, 2), 0.75))


def test_the_cli_takes_a_mode(
    tmp_path: Path, notes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = str(tmp_path / "ix")
    Index(ix, embedder=FakeEmbedder(32)).add(notes)
    assert main(["search", "mitochondria", "--index", ix, "--json", "--mode", "keyword"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [Path(h["source"]).name for h in hits] == ["krebs.md"]
    assert list(hits[0]["signals"]) == ["keyword"]
    assert main(["search", "mitochondria", "--index", ix]) == 0
    assert "v1 k1" in capsys.readouterr().out
    code = main(["search", "--image", str(notes / "sunflower-photo.png"), "--index", ix])
    assert code == ExitCode.OK
    capsys.readouterr()
    code = main(
        [
            "search",
            "--image",
            str(notes / "sunflower-photo.png"),
            "--mode",
            "keyword",
            "--index",
            ix,
        ]
    )
    assert code == ExitCode.USAGE
    assert "needs a text query" in capsys.readouterr().err
