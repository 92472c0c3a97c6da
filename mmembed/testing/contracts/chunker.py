"""The contract every :class:`~mmembed.protocols.Chunker` passes.

Subclass :class:`ChunkerContract` in a test module and provide three fixtures:

- ``chunker``: the chunker under test, built with ``limits``;
- ``sources``: a list of good sources (parts, ``str`` paths or ``PathLike`` paths);
- ``bad_sources``: a list of sources that must fail (corrupt, wrong type, ...); the contract adds
  a missing path and a file of random bytes on its own.

Set ``span_type`` to the span class the chunker produces (``None`` for whole items). Override
:meth:`ChunkerContract.bounds` to say how long a source is (seconds, pages or characters) so
spans can be checked against it, and ``limits`` to test another model's limits.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mmembed import Audio, Chunk, Content, Image, MMEmbedError, Pdf, Text, Video
from mmembed.chunkers._common import source_name
from mmembed.content import Part
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits, estimate_tokens
from mmembed.protocols import Chunker, PageSpan, TextSpan, TimeSpan

__all__ = ["TIME_SLACK", "ChunkerContract", "Source"]

Source = Part | str | os.PathLike[str]
"""What a chunker takes: a part, or the path of a file."""

#: Seconds a media chunk may exceed its declared span (AAC priming, frame rounding).
TIME_SLACK = 0.1


def _pdf_pages(part: Pdf) -> int:
    pypdf = pytest.importorskip("pypdf")
    with part.open() as f:
        return len(pypdf.PdfReader(io.BytesIO(f.read())).pages)


def _media_seconds(part: Audio | Video) -> float | None:
    """The real duration of an audio or video chunk, or ``None`` if no reader is installed."""
    if isinstance(part, Audio) and part.mime_type == "audio/wav":
        import soundfile as sf

        with part.open() as f:
            info = sf.info(f)
        return float(info.frames) / float(info.samplerate)
    try:
        import av
    except ImportError:
        return None
    with part.open() as f, av.open(f, "r") as container:
        if container.duration is None:
            return None
        return float(container.duration) / 1_000_000


class ChunkerContract:
    """Behaviour users rely on, whatever the chunker."""

    #: The span class every chunk carries (``None``: whole items, ``span is None``).
    span_type: ClassVar[type[TimeSpan] | type[PageSpan] | type[TextSpan] | None] = None

    @pytest.fixture
    def limits(self) -> ModelLimits:
        return GEMINI_EMBEDDING_2

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        raise NotImplementedError

    @pytest.fixture
    def sources(self, tmp_path: Path) -> list[Source]:
        raise NotImplementedError

    @pytest.fixture
    def bad_sources(self, tmp_path: Path) -> list[Source]:
        return []

    def bounds(self, source: Source) -> float | None:
        """How long ``source`` is in its span's unit (seconds, pages, characters), if known."""
        return None

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _source_text(source: Source) -> str:
        if isinstance(source, Text):
            return source.text
        if isinstance(source, (str, os.PathLike)):
            return Path(source).read_text("utf-8-sig")
        raise TypeError(f"not a text source: {source!r}")

    def _chunks(self, chunker: Chunker, source: Source) -> list[Chunk]:
        chunks = list(chunker.chunk(source))
        assert chunks, f"no chunks for {source!r}"
        return chunks

    # ------------------------------------------------------------------ the contract

    def test_chunks_are_chunks_of_parts(self, chunker: Chunker, sources: list[Source]) -> None:
        for source in sources:
            for chunk in self._chunks(chunker, source):
                assert isinstance(chunk, Chunk)
                assert isinstance(chunk.content, (Text, Image, Audio, Video, Pdf, Content))

    def test_every_chunk_fits_the_limits(
        self, chunker: Chunker, sources: list[Source], limits: ModelLimits
    ) -> None:
        for source in sources:
            for chunk in self._chunks(chunker, source):
                content = chunk.content
                parts = content.parts if isinstance(content, Content) else (content,)
                assert chunk.modality in limits.modalities
                tokens = sum(estimate_tokens(p.text) for p in parts if isinstance(p, Text))
                assert tokens <= limits.max_tokens
                images = [p for p in parts if isinstance(p, Image)]
                assert len(images) <= limits.max_images_per_item
                for part in parts:
                    if isinstance(part, Text):
                        continue
                    assert part.mime_type in limits.mime_types(part.modality), part.mime_type
                    assert part.nbytes <= limits.max_inline_bytes
                    if isinstance(part, Pdf):
                        assert _pdf_pages(part) <= limits.max_pdf_pages
                    elif isinstance(part, (Audio, Video)):
                        cap = (
                            limits.max_audio_seconds
                            if isinstance(part, Audio)
                            else limits.max_video_seconds
                        )
                        seconds = _media_seconds(part)
                        if seconds is not None:
                            assert seconds <= cap + TIME_SLACK
                if isinstance(chunk.span, TimeSpan):
                    cap = (
                        limits.max_video_seconds
                        if isinstance(content, Video)
                        else limits.max_audio_seconds
                    )
                    assert chunk.span.duration <= cap
                if isinstance(chunk.span, PageSpan) and isinstance(content, Pdf):
                    assert chunk.span.pages <= limits.max_pdf_pages
                    assert _pdf_pages(content) == chunk.span.pages

    def test_source_is_named_as_given(self, chunker: Chunker, sources: list[Source]) -> None:
        for source in sources:
            for chunk in self._chunks(chunker, source):
                assert chunk.source == source_name(source)
                assert isinstance(chunk.source, str)

    def test_span_has_the_right_type_and_lies_inside_the_source(
        self, chunker: Chunker, sources: list[Source]
    ) -> None:
        for source in sources:
            bound = self.bounds(source)
            previous_start: float = -1
            for chunk in self._chunks(chunker, source):
                if self.span_type is None:
                    assert chunk.span is None
                    continue
                span = chunk.span
                assert isinstance(span, self.span_type)
                if isinstance(span, PageSpan):
                    start, end = float(span.first), float(span.last)
                else:
                    start, end = float(span.start), float(span.end)
                assert start >= previous_start, "chunks come in source order"
                previous_start = start
                if bound is not None:
                    slack = TIME_SLACK if isinstance(span, TimeSpan) else 0
                    assert end <= bound + slack
                if isinstance(span, TextSpan):
                    text = self._source_text(source)
                    assert isinstance(chunk.content, Text)
                    assert text[span.start : span.end].strip() == chunk.content.text.strip()

    def test_uri_carries_the_media_fragment(self, chunker: Chunker, sources: list[Source]) -> None:
        prefix: dict[type[Any], str] = {TimeSpan: "t=", PageSpan: "page=", TextSpan: "char="}
        for source in sources:
            for chunk in self._chunks(chunker, source):
                if chunk.span is None:
                    assert chunk.uri == chunk.source
                else:
                    assert chunk.uri == f"{chunk.source}#{chunk.span.fragment}"
                    fragment = chunk.uri.rpartition("#")[2]
                    assert fragment.startswith(prefix[type(chunk.span)])

    def test_chunking_is_deterministic(self, chunker: Chunker, sources: list[Source]) -> None:
        for source in sources:
            first = [(c.span, c.uri) for c in chunker.chunk(source)]
            again = [(c.span, c.uri) for c in chunker.chunk(source)]
            assert first == again

    def test_iteration_is_lazy(
        self, chunker: Chunker, sources: list[Source], tmp_path: Path
    ) -> None:
        # Asking for the chunks of a missing file does no work until the first chunk is wanted.
        missing = tmp_path / "missing-file"
        chunks = chunker.chunk(str(missing))
        assert isinstance(chunks, Iterator)
        with pytest.raises(MMEmbedError):
            next(chunks)
        # Taking one chunk and stopping is fine (no need to drain the source).
        it = chunker.chunk(sources[0])
        assert isinstance(next(it), Chunk)
        close = getattr(it, "close", None)
        if close is not None:
            close()

    def test_bad_input_gives_only_mmembed_errors(
        self, chunker: Chunker, bad_sources: list[Source], tmp_path: Path
    ) -> None:
        garbage = tmp_path / "garbage.bin"
        garbage.write_bytes(bytes(range(256)) * 4 + b"\x00\xff" * 100)
        everything: list[Source] = [str(tmp_path / "missing"), str(garbage), *bad_sources]
        for source in everything:
            with pytest.raises(MMEmbedError):
                list(chunker.chunk(source))
