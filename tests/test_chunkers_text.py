"""TextChunker: exact spans, no gaps, the declared overlap, and never over the token limit."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmembed import ConfigurationError, Text, TextSpan, UnsupportedMediaError
from mmembed.chunkers.text import TextChunker, text_windows
from mmembed.limits import GEMINI_EMBEDDING_001, ModelLimits, estimate_tokens
from mmembed.protocols import Chunker
from mmembed.testing.contracts.chunker import ChunkerContract, Source

PROSE = (
    "Cats are small furry animals. They sleep a lot! Do they dream?\n\n"
    "Rockets carry satellites into orbit. The first stage burns for about two minutes.\n\n"
) * 40


class TestTextChunkerContract(ChunkerContract):
    span_type = TextSpan

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        return TextChunker(limits=limits, size=200, overlap=20)

    @pytest.fixture
    def sources(self, tmp_path: Path) -> list[Source]:
        path = tmp_path / "notes.txt"
        path.write_text(PROSE, encoding="utf-8")
        return [str(path), path, Text(PROSE), Text("short")]

    @pytest.fixture
    def bad_sources(self, tmp_path: Path) -> list[Source]:
        latin1 = tmp_path / "latin1.txt"
        latin1.write_bytes("café crème".encode("latin-1"))
        png = tmp_path / "image.txt"
        png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
        return [str(latin1), str(png), str(tmp_path)]

    def bounds(self, source: Source) -> float | None:
        return float(len(self._source_text(source)))


class TestTextChunkerWithASmallModel(TestTextChunkerContract):
    """gemini-embedding-001 takes 2,048 tokens: a default chunker must respect it."""

    @pytest.fixture
    def limits(self) -> ModelLimits:
        return GEMINI_EMBEDDING_001

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        return TextChunker(limits=limits, size=100_000, unit="chars", overlap=0)


# ----------------------------------------------------------------------------- properties

_words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Cc")),
    min_size=1,
    max_size=14,
)
_separators = st.sampled_from([" ", " ", " ", ". ", "! ", "\n", "\n\n", "\n \n", "。", "  "])
_texts = st.lists(st.tuples(_words, _separators), max_size=120).map(
    lambda pairs: "".join(w + s for w, s in pairs)
)


def _measure(text: str, unit: Literal["tokens", "chars"]) -> int:
    return len(text) if unit == "chars" else estimate_tokens(text)


@st.composite
def _settings(draw: st.DrawFn) -> tuple[str, int, int, Literal["tokens", "chars"]]:
    unit: Literal["tokens", "chars"] = draw(st.sampled_from(["tokens", "chars"]))
    size = draw(st.integers(min_value=4, max_value=120))
    overlap = draw(st.integers(min_value=0, max_value=(size - 1) // 2))
    return draw(_texts), size, overlap, unit


@given(_settings())
def test_windows_cover_the_text_with_the_declared_overlap_and_no_gaps(
    case: tuple[str, int, int, Literal["tokens", "chars"]],
) -> None:
    text, size, overlap, unit = case
    windows = list(text_windows(text, size=size, overlap=overlap, unit=unit))
    if not text:
        assert windows == []
        return
    assert windows[0].start == 0
    assert windows[-1].end == len(text)
    for w in windows:
        assert w.start < w.end
        assert _measure(text[w.start : w.end], unit) <= size or w.end - w.start == 1
    for prev, nxt in itertools.pairwise(windows):
        assert prev.start < nxt.start, "windows advance"
        assert nxt.start <= prev.end, "no gap between windows"
        assert _measure(text[nxt.start : prev.end], unit) <= overlap


@given(_settings())
def test_chunks_are_exact_spans_that_cover_every_visible_character(
    case: tuple[str, int, int, Literal["tokens", "chars"]],
) -> None:
    text, size, overlap, unit = case
    chunks = list(TextChunker(size=size, overlap=overlap, unit=unit).chunk(Text(text)))
    covered = [False] * len(text)
    for chunk in chunks:
        span = chunk.span
        assert isinstance(span, TextSpan)
        assert isinstance(chunk.content, Text)
        assert text[span.start : span.end] == chunk.content.text
        assert chunk.content.text == chunk.content.text.strip()
        assert chunk.content.text
        for i in range(span.start, span.end):
            covered[i] = True
    for i, ch in enumerate(text):
        assert covered[i] or ch.isspace(), f"character {i} ({ch!r}) is in no chunk"


@given(
    st.text(alphabet="abcdefghij", min_size=1, max_size=400),
    st.integers(min_value=4, max_value=60),
    st.data(),
)
def test_overlap_is_exactly_as_declared_when_nothing_moves_it(
    text: str, size: int, data: st.DataObject
) -> None:
    # Without spaces or punctuation no break point moves a window, so every window but the last
    # is exactly `size` characters and every overlap exactly `overlap`.
    overlap = data.draw(st.integers(min_value=0, max_value=(size - 1) // 2))
    windows = list(text_windows(text, size=size, overlap=overlap, unit="chars"))
    for w in windows[:-1]:
        assert w.end - w.start == size
    for prev, nxt in itertools.pairwise(windows):
        assert prev.end - nxt.start == overlap


@given(st.text(min_size=0, max_size=3000), st.integers(min_value=16, max_value=2048))
def test_no_chunk_is_over_the_models_token_limit(text: str, max_tokens: int) -> None:
    limits = replace(GEMINI_EMBEDDING_001, model="tiny", max_tokens=max_tokens)
    chunker = TextChunker(limits=limits, size=1_000_000, unit="chars", overlap=0)
    for chunk in chunker.chunk(Text(text)):
        assert isinstance(chunk.content, Text)
        assert estimate_tokens(chunk.content.text) <= max_tokens


# ----------------------------------------------------------------------------- behaviour


def _texts_of(chunker: TextChunker, text: str) -> list[str]:
    out = []
    for chunk in chunker.chunk(Text(text)):
        assert isinstance(chunk.content, Text)
        out.append(chunk.content.text)
    return out


def test_breaks_prefer_paragraphs_then_sentences_then_words() -> None:
    chunker = TextChunker(size=40, overlap=0, unit="chars")
    paragraph = "First paragraph is here. Really.\n\nSecond one. It is longer."
    assert _texts_of(chunker, paragraph)[0] == "First paragraph is here. Really."
    sentence = "Alpha beta gamma delta. Epsilon zeta eta theta iota kappa."
    assert _texts_of(chunker, sentence)[0] == "Alpha beta gamma delta."
    # A break must keep the window at least half full: here only a word break qualifies.
    early = "Short. Then a long run of words that goes on and on."
    assert _texts_of(chunker, early)[0] == "Short. Then a long run of words that"
    assert _texts_of(TextChunker(size=10, overlap=0, unit="chars"), "aaaa bbbb cccc dddd") == [
        "aaaa bbbb",
        "cccc dddd",
    ]


def test_a_user_tokenizer_decides_the_window_size() -> None:
    def words(s: str) -> int:
        return len(s.split())

    text = " ".join(f"w{i}" for i in range(100))
    chunks = list(TextChunker(size=10, overlap=2, tokenizer=words).chunk(Text(text)))
    for chunk in chunks:
        assert isinstance(chunk.content, Text)
        assert words(chunk.content.text) <= 10
    assert len(chunks) == pytest.approx(100 / 8, abs=2)
    first, second = _texts_of(TextChunker(size=10, overlap=2, tokenizer=words), text)[:2]
    assert first.split()[-2:] == second.split()[:2], "two words of overlap"


def test_cjk_text_without_spaces_is_cut_and_overlapped() -> None:
    text = "猫は小さな動物です。" * 50
    chunks = list(TextChunker(size=60, overlap=10).chunk(Text(text)))
    assert len(chunks) > 3
    for chunk in chunks:
        assert isinstance(chunk.span, TextSpan)
        assert estimate_tokens(text[chunk.span.start : chunk.span.end]) <= 60
    assert chunks[1].span.start < chunks[0].span.end  # type: ignore[union-attr]


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="half"):
        TextChunker(size=100, overlap=50)
    with pytest.raises(ConfigurationError, match="limit of 2048"):
        TextChunker(limits=GEMINI_EMBEDDING_001, size=4000)
    with pytest.raises(ConfigurationError, match="unit"):
        TextChunker(unit="lines")  # type: ignore[arg-type]
    assert TextChunker(limits=GEMINI_EMBEDDING_001).size == 1024


def test_title_and_source_name_carry_over(tmp_path: Path) -> None:
    (chunk,) = TextChunker().chunk(Text("hello there", title="Greeting"))
    assert isinstance(chunk.content, Text)
    assert chunk.content.title == "Greeting"
    assert chunk.uri == "<text>#char=0,11"
    path = tmp_path / "a.md"
    path.write_text("  hello  ")
    (chunk,) = TextChunker().chunk(path)
    assert chunk.source == str(path)
    assert chunk.span == TextSpan(2, 7)


def test_a_non_text_file_is_refused_with_the_type_found(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"\x00" * 32)
    with pytest.raises(UnsupportedMediaError, match="TextChunker takes text, but this is a PDF"):
        list(TextChunker().chunk(path))
