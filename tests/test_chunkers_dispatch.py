"""mmembed.chunkers.chunk(): the chunker follows the sniffed type, defaults follow the limits."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmembed.chunkers as chunkers
from mmembed import (
    ConfigurationError,
    Image,
    MMEmbedError,
    PageSpan,
    Pdf,
    Text,
    TextSpan,
    UnsupportedMediaError,
)
from mmembed.chunkers import ImageChunker, PdfChunker, TextChunker, chunk, chunker_for
from mmembed.limits import GEMINI_EMBEDDING_001, GEMINI_EMBEDDING_2
from mmembed.testing.media import make_image, make_pdf


def test_the_type_comes_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    disguised = tmp_path / "notes.txt"
    disguised.write_bytes(make_image("PNG"))
    (only,) = chunk(disguised)
    assert isinstance(only.content, Image)
    assert only.source == str(disguised)
    deck = tmp_path / "deck.bin"
    deck.write_bytes(make_pdf(8))
    spans = [c.span for c in chunk(str(deck))]
    assert spans == [PageSpan(1, 6), PageSpan(7, 8)]


def test_sources_are_named_as_given(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("Hello. " * 10)
    assert {c.source for c in chunk(str(path))} == {str(path)}
    assert {c.source for c in chunk(path)} == {str(path)}
    assert {c.uri for c in chunk(Text("Hi there"))} == {"<text>#char=0,8"}


def test_defaults_follow_the_limits(tmp_path: Path) -> None:
    deck = tmp_path / "deck.pdf"
    deck.write_bytes(make_pdf(8))
    four = replace(GEMINI_EMBEDDING_2, max_pdf_pages=4)
    assert [c.span for c in chunk(deck, limits=four)] == [PageSpan(1, 4), PageSpan(5, 8)]
    # A model that takes no PDFs gets their text instead.
    texts = list(chunk(deck, limits=GEMINI_EMBEDDING_001))
    assert all(isinstance(c.content, Text) for c in texts)
    assert all(isinstance(c.span, PageSpan) for c in texts)
    long = Text("word " * 20_000)
    for c in chunk(long, limits=GEMINI_EMBEDDING_001, size=2048, overlap=0):
        assert isinstance(c.content, Text)
        assert len(c.content.text.encode()) <= 3 * 2048


def test_a_model_without_the_modality_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaError, match="gemini-embedding-001 does not take image"):
        chunk(Image(make_image("PNG")), limits=GEMINI_EMBEDDING_001)


def test_options_go_to_the_chunkers_that_know_them(tmp_path: Path) -> None:
    deck = Pdf(make_pdf(5))
    text = Text("One. Two. Three. " * 50)
    # One set of options for every file, as an index passes them.
    mixed = {"pages": 2, "size": 40, "overlap": 0}
    assert [c.span for c in chunk(deck, **mixed)][:2] == [PageSpan(1, 2), PageSpan(3, 4)]
    assert all(isinstance(c.span, TextSpan) for c in chunk(text, **mixed))
    # Options for one modality only.
    spans = [c.span for c in chunk(deck, pdf={"pages": 3}, text={"size": 10})]
    assert spans == [PageSpan(1, 3), PageSpan(4, 5)]


def test_unknown_or_misplaced_options_are_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown chunker option.*pagez"):
        chunker_for("pdf", pagez=3)
    with pytest.raises(ConfigurationError, match=r"PdfChunker has no option.*size"):
        chunker_for("pdf", pdf={"size": 3})
    with pytest.raises(ConfigurationError, match="takes a dict"):
        chunker_for("pdf", pdf=3)
    with pytest.raises(ConfigurationError, match="limit of 6 pages"):
        chunker_for("pdf", pages=9)


def test_chunker_for_builds_the_right_chunker() -> None:
    assert isinstance(chunker_for("text"), TextChunker)
    assert isinstance(chunker_for("pdf"), PdfChunker)
    assert isinstance(chunker_for("image", max_side=512), ImageChunker)
    text_mode = chunker_for("pdf", limits=GEMINI_EMBEDDING_001)
    assert isinstance(text_mode, PdfChunker)
    assert text_mode.mode == "text"


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        chunk(tmp_path / "missing.pdf")
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)))
    with pytest.raises(UnsupportedMediaError, match="cannot chunk unknown binary data"):
        chunk(blob)
    with pytest.raises(ConfigurationError):
        chunk(42)  # type: ignore[arg-type]


def test_video_and_audio_chunkers_are_exported_lazily() -> None:
    assert {"VideoChunker", "AudioChunker"} <= set(dir(chunkers))
    for name, module in (("VideoChunker", "video"), ("AudioChunker", "audio")):
        if importlib.util.find_spec(f"mmembed.chunkers.{module}") is None:
            with pytest.raises(ImportError):
                getattr(chunkers, name)
        else:
            assert getattr(chunkers, name).__name__ == name
    with pytest.raises(AttributeError):
        chunkers.NoSuchChunker  # noqa: B018


def test_importing_the_chunkers_loads_no_media_library() -> None:
    code = (
        "import sys, mmembed.chunkers; "
        "print(sorted(m for m in ('av', 'pypdf', 'pypdfium2', 'PIL.Image', 'soundfile') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]"


def test_audio_and_video_go_to_their_chunkers(tmp_path: Path) -> None:
    pytest.importorskip("av")
    pytest.importorskip("soxr")
    from mmembed import Audio, TimeSpan, Video
    from mmembed.testing.media import make_audio, make_video

    clip = tmp_path / "clip.bin"  # the name says nothing; the bytes say MP4
    make_video(seconds=24, fps=5, gop=10, path=clip)
    tone = tmp_path / "tone.flac"
    make_audio("FLAC", seconds=25, path=tone)
    options = {"segment_seconds": 12, "window_seconds": 10, "overlap_seconds": 0, "size": 99}
    segments = list(chunk(clip, **options))
    assert all(isinstance(c.content, Video) for c in segments)
    assert all(isinstance(c.span, TimeSpan) and c.span.duration <= 12.5 for c in segments)
    assert {c.source for c in segments} == {str(clip)}
    windows = list(chunk(tone, **options))
    assert [c.content.mime_type for c in windows] == ["audio/wav"] * 3
    assert all(isinstance(c, Audio) for c in (w.content for w in windows))
    spans = [c.span for c in chunk(tone, audio={"window_seconds": 20, "overlap_seconds": 0})]
    assert spans[0] == TimeSpan(0, 20)
    assert spans[-1].end == 25  # type: ignore[union-attr]
    assert all(s.duration <= 20 for s in spans)  # type: ignore[union-attr]
    with pytest.raises(UnsupportedMediaError, match="does not take video"):
        chunk(clip, limits=GEMINI_EMBEDDING_001)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(ConfigurationError, match="not a regular file"):
        chunk(fifo)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        list(PdfChunker().chunk(str(fifo)))
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ConfigurationError, match="not a regular file"):
        chunk(zero)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_any_bytes_give_chunks_or_mmembed_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "anything"
    path.write_bytes(data)
    try:
        for piece in chunk(path, isolate=False):
            assert piece.source == str(path)
    except MMEmbedError:
        pass
