"""PdfChunker: standalone PDFs of at most six pages, page text and renders, a text-only mode."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image as PILImage

from mmembed import (
    ChunkingError,
    ConfigurationError,
    Image,
    PageSpan,
    Pdf,
    Text,
    UnsupportedMediaError,
)
from mmembed.chunkers.pdf import PdfChunker
from mmembed.limits import GEMINI_EMBEDDING_001, GEMINI_EMBEDDING_2, ModelLimits
from mmembed.protocols import Chunker
from mmembed.testing.contracts.chunker import ChunkerContract, Source
from mmembed.testing.media import make_image, make_pdf, page_heading


@pytest.fixture(scope="module")
def pdf14() -> bytes:
    return make_pdf(14, image=True)


def _pdfium_pages(data: bytes) -> list[str]:
    """Each page's text, read by an independent PDF engine (pdfium, not pypdf)."""
    doc = pdfium.PdfDocument(data)
    try:
        texts = []
        for page in doc:
            textpage = page.get_textpage()
            texts.append(textpage.get_text_bounded())
            textpage.close()
            page.close()
        return texts
    finally:
        doc.close()


class TestPdfChunkerContract(ChunkerContract):
    span_type = PageSpan

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        return PdfChunker(limits=limits)

    @pytest.fixture
    def sources(self, tmp_path: Path, pdf14: bytes) -> list[Source]:
        path = tmp_path / "deck.pdf"
        path.write_bytes(pdf14)
        return [str(path), path, Pdf(make_pdf(1)), Pdf(path)]

    @pytest.fixture
    def bad_sources(self, tmp_path: Path, pdf14: bytes) -> list[Source]:
        truncated = tmp_path / "truncated.pdf"
        truncated.write_bytes(pdf14[: len(pdf14) // 3])
        locked = tmp_path / "locked.pdf"
        locked.write_bytes(make_pdf(2, password="secret"))
        empty = tmp_path / "empty.pdf"
        empty.write_bytes(b"")
        png = tmp_path / "picture.pdf"
        png.write_bytes(make_image("PNG"))
        return [str(truncated), str(locked), str(empty), str(png)]

    def bounds(self, source: Source) -> float | None:
        if isinstance(source, Pdf):
            return float(len(_pdfium_pages(source.read_bytes())))
        return float(len(_pdfium_pages(Path(source).read_bytes())))  # type: ignore[arg-type]


class TestPdfTextModeContract(TestPdfChunkerContract):
    @pytest.fixture
    def limits(self) -> ModelLimits:
        return GEMINI_EMBEDDING_001

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        return PdfChunker(limits=limits, mode="text")


def test_fourteen_pages_give_three_standalone_pdfs(pdf14: bytes) -> None:
    chunks = list(PdfChunker().chunk(Pdf(pdf14)))
    assert [c.span for c in chunks] == [PageSpan(1, 6), PageSpan(7, 12), PageSpan(13, 14)]
    for chunk in chunks:
        assert isinstance(chunk.content, Pdf)
        assert isinstance(chunk.span, PageSpan)
        texts = _pdfium_pages(chunk.content.read_bytes())
        assert len(texts) == chunk.span.pages
        for offset, text in enumerate(texts):
            assert page_heading(chunk.span.first + offset) in text
        assert chunk.metadata["pages"] == 14
    assert chunks[1].uri == f"<{len(pdf14)} bytes>#page=7"


def test_overlap_and_page_count_are_configurable(pdf14: bytes) -> None:
    spans = [c.span for c in PdfChunker(pages=6, overlap=2).chunk(Pdf(pdf14))]
    assert spans == [PageSpan(1, 6), PageSpan(5, 10), PageSpan(9, 14)]
    spans = [c.span for c in PdfChunker(pages=1).chunk(Pdf(make_pdf(3)))]
    assert spans == [PageSpan(1, 1), PageSpan(2, 2), PageSpan(3, 3)]
    small = replace(GEMINI_EMBEDDING_2, max_pdf_pages=4)
    spans = [c.span for c in PdfChunker(limits=small).chunk(Pdf(pdf14))]
    assert spans[0] == PageSpan(1, 4)


def test_page_text_and_renders_in_metadata(pdf14: bytes) -> None:
    chunker = PdfChunker(page_text=True, render=True, render_dpi=50)
    first = next(iter(chunker.chunk(Pdf(pdf14))))
    texts = first.metadata["page_text"]
    assert len(texts) == 6
    assert all(page_heading(i + 1) in t for i, t in enumerate(texts))
    assert "\r" not in texts[0]
    images = first.metadata["page_images"]
    assert len(images) == 6
    assert all(isinstance(im, Image) and im.mime_type == "image/png" for im in images)
    with PILImage.open(io.BytesIO(images[0].read_bytes())) as im:
        # A4 is 595 x 842 points; at 50 dpi that is 413 x 585 pixels.
        assert im.size == pytest.approx((413, 585), abs=2)


def test_text_mode_gives_page_text_with_page_spans(pdf14: bytes) -> None:
    chunks = list(PdfChunker(mode="text").chunk(Pdf(pdf14)))
    assert [c.span for c in chunks] == [PageSpan(1, 6), PageSpan(7, 12), PageSpan(13, 14)]
    assert all(isinstance(c.content, Text) for c in chunks)
    assert page_heading(7) in chunks[1].content.text  # type: ignore[union-attr]


def test_text_mode_splits_pages_that_exceed_the_token_limit(pdf14: bytes) -> None:
    tiny = replace(GEMINI_EMBEDDING_001, max_tokens=60)
    chunks = list(PdfChunker(limits=tiny, mode="text").chunk(Pdf(pdf14)))
    assert len(chunks) > 14
    spans = [c.span for c in chunks]
    assert all(isinstance(s, PageSpan) and s.pages == 1 for s in spans)
    assert spans[0] == PageSpan(1, 1)
    assert spans[-1] == PageSpan(14, 14)
    for chunk in chunks:
        assert isinstance(chunk.content, Text)
        assert len(chunk.content.text.encode()) <= 3 * 60


def test_empty_password_encryption_is_read(tmp_path: Path) -> None:
    data = make_pdf(2, password="")
    assert b"/Encrypt" in data
    assert [c.span for c in PdfChunker().chunk(Pdf(data))] == [PageSpan(1, 2)]


def test_a_password_protected_pdf_is_a_clear_chunking_error() -> None:
    with pytest.raises(ChunkingError, match="password"):
        list(PdfChunker().chunk(Pdf(make_pdf(2, password="secret"))))


@pytest.mark.parametrize("isolate", [True, False])
def test_a_damaged_pdf_is_a_chunking_error_in_either_mode(pdf14: bytes, isolate: bool) -> None:
    damaged = pdf14[:200] + b"\x00" * 500
    with pytest.raises(ChunkingError, match="<700 bytes>"):
        list(PdfChunker(isolate=isolate).chunk(Pdf(damaged, "application/pdf")))


def test_in_process_and_isolated_give_the_same_chunks(pdf14: bytes) -> None:
    a = [(c.span, c.content) for c in PdfChunker(isolate=True).chunk(Pdf(pdf14))]
    b = [(c.span, c.content) for c in PdfChunker(isolate=False).chunk(Pdf(pdf14))]
    assert a == b


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="limit of 6 pages"):
        PdfChunker(pages=7)
    with pytest.raises(ConfigurationError, match="overlap"):
        PdfChunker(pages=3, overlap=3)
    with pytest.raises(ConfigurationError, match="mode"):
        PdfChunker(mode="pages")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        PdfChunker(pages=0)


def test_another_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.pdf"
    path.write_bytes(make_image("JPEG"))
    with pytest.raises(UnsupportedMediaError, match="PdfChunker takes a PDF, but this is an image"):
        list(PdfChunker().chunk(path))
