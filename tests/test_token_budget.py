"""Chunks sized for the model that reads them: every embedder says how much it reads, and no
chunk is cut off silently (split, or its file failed with the reason)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmembed import Content, Image, Matryoshka, Modality, Text, TextSpan
from mmembed._index_config import TokenBudget, fit_chunk, token_budget
from mmembed.cache import CachedEmbedder
from mmembed.errors import ChunkingError, ConfigurationError
from mmembed.index import Index
from mmembed.limits import GEMINI_EMBEDDING_2, estimate_tokens
from mmembed.protocols import Chunk, PageSpan
from mmembed.registry import build_embedder, to_spec
from mmembed.testing import FakeEmbedder, FakeGeminiServer
from mmembed.testing.media import make_image, make_text


def words(chunk: Chunk) -> int:
    assert isinstance(chunk.content, Text)
    return len(chunk.content.text.split())


def test_every_embedder_states_what_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeGeminiServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        from mmembed.embedders.gemini import GeminiEmbedder

        gemini = GeminiEmbedder(dimensions=256)
        assert gemini.max_input_tokens == GEMINI_EMBEDDING_2.max_tokens
        assert gemini.count_tokens("how do cells make energy?") == estimate_tokens(
            "how do cells make energy?"
        )
        assert token_budget(Matryoshka(gemini, 128)) == TokenBudget(8192, gemini.count_tokens)
    fake = FakeEmbedder(8, max_input_tokens=20)
    assert fake.count_tokens("one two  three") == 3
    budget = token_budget(CachedEmbedder(Matryoshka(fake, 4), tmp_path / "cache.sqlite"))
    assert budget is not None
    assert budget.max_tokens == 20
    assert token_budget(FakeEmbedder(8)) is None  # reads everything
    assert to_spec(build_embedder(to_spec(fake))) == to_spec(fake)
    with pytest.raises(ConfigurationError, match="max_input_tokens"):
        FakeEmbedder(8, max_input_tokens=0)


def test_the_fake_embedder_cuts_off_what_it_does_not_read() -> None:
    fake = FakeEmbedder(16, max_input_tokens=3)
    head, longer = fake.embed(["alpha beta gamma", "alpha beta gamma delta epsilon"])
    assert head.tolist() == longer.tolist()


def test_text_chunks_follow_the_budget_and_keep_exact_spans(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    text = make_text(2000, seed=3)
    (notes / "long.txt").write_text(text)
    index = Index(tmp_path / "ix", embedder=FakeEmbedder(16, max_input_tokens=50))
    index.add(notes)
    hits = index.search("anything", k=1000, mode="vector")
    assert len(hits) >= 2000 // 50
    for hit in hits:
        assert isinstance(hit.span, TextSpan)
        piece = text[hit.span.start : hit.span.end]
        assert len(piece.split()) <= 50  # the whole chunk is read
        assert hit.preview == " ".join(piece.split())[:240]


def test_a_chunk_over_the_budget_is_split_where_it_lies() -> None:
    budget = TokenBudget(4, lambda s: len(s.split()))
    text = "one two three four five six seven eight nine"
    chunk = Chunk(Text(text, title="T"), "a.txt", TextSpan(100, 100 + len(text)))
    pieces = list(fit_chunk(chunk, budget))
    assert [p.content.text for p in pieces] == [  # type: ignore[union-attr]
        "one two three four",
        "five six seven eight",
        "nine",
    ]
    for p in pieces:
        assert isinstance(p.span, TextSpan)
        assert text[p.span.start - 100 : p.span.end - 100] == p.content.text  # type: ignore[union-attr]
        assert p.content.title == "T"  # type: ignore[union-attr]
        assert p.uri == f"a.txt#{p.span.fragment}"
    page = Chunk(Text(text), "a.pdf", PageSpan(3, 3))
    assert {p.span for p in fit_chunk(page, budget)} == {PageSpan(3, 3)}
    small = Chunk(Text("one two"), "a.txt", TextSpan(0, 7))
    assert list(fit_chunk(small, budget)) == [small]
    image = Chunk(Image(make_image("PNG", (8, 8)), "image/png"), "a.png")
    assert list(fit_chunk(image, budget)) == [image]
    mixed = Chunk(Content([text, Image(make_image("PNG", (8, 8)), "image/png")]), "a.png")
    with pytest.raises(ChunkingError, match="9 tokens and the model reads 4"):
        list(fit_chunk(mixed, budget))


class MixedChunker:
    """Every file as one text-and-image chunk, to show what happens when it cannot be split."""

    def chunk(self, source: object) -> Iterator[Chunk]:
        assert isinstance(source, Text)
        yield Chunk(Content([source, Image(make_image("PNG", (8, 8)), "image/png")]), "x")


def test_a_chunk_that_cannot_be_split_fails_its_file_with_the_reason(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.txt").write_text("word " * 30)
    (notes / "short.txt").write_text("a few words")
    index = Index(
        tmp_path / "ix",
        embedder=FakeEmbedder(16, max_input_tokens=10),
        chunker=MixedChunker(),
    )
    report = index.add(notes)
    assert [Path(p.path).name for p in report.failed] == ["long.txt"]
    assert "30 tokens and the model reads 10" in report.failed[0].reason
    assert [Path(p).name for p in report.added] == ["short.txt"]


def test_a_size_counts_in_the_models_tokens(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.txt").write_text(make_text(600, seed=1))
    index = Index(
        tmp_path / "ix",
        embedder=FakeEmbedder(16, max_input_tokens=500),
        chunk_options={"text": {"size": 40}},
    )
    index.add(notes)
    hits = index.search("anything", k=100, mode="vector")
    assert all(h.modality is Modality.TEXT for h in hits)
    # 40 of the model's tokens (words here), not 40 estimated ones (about 13 words)
    assert max(len(h.preview.split()) for h in hits) > 30
