"""Page-level hits for PDFs: a vector per page beside each part, merged with it at query time."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from mmembed import Modality, PageSpan, Pdf
from mmembed.chunkers import PdfChunker
from mmembed.errors import ConfigurationError
from mmembed.index import Index
from mmembed.limits import GEMINI_EMBEDDING_2, cost_usd
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_pdf

ROOT = Path(__file__).resolve().parent.parent
PAGES = [f"Slide {i}\nThis slide covers topic number {i} of the course." for i in range(1, 15)]
PAGES[11] = "Slide 12\nThe citric acid cycle diagram, with every enzyme named."


def spans(chunker: PdfChunker, data: bytes) -> list[tuple[int, int]]:
    return [(c.span.first, c.span.last) for c in chunker.chunk(Pdf(data))]  # type: ignore[union-attr]


def test_the_chunker_adds_each_page_after_its_part() -> None:
    data = make_pdf(PAGES)
    chunker = PdfChunker(page_vectors=True, page_text=True, isolate=False)
    chunks = list(chunker.chunk(Pdf(data)))
    assert [(c.span.first, c.span.last) for c in chunks] == [  # type: ignore[union-attr]
        (1, 6),
        *[(i, i) for i in range(1, 7)],
        (7, 12),
        *[(i, i) for i in range(7, 13)],
        (13, 14),
        (13, 13),
        (14, 14),
    ]
    page12 = next(c for c in chunks if c.span == PageSpan(12, 12))
    assert page12.metadata["page_text"][0].startswith("Slide 12")
    assert page12.uri.endswith("#page=12")
    # overlapping parts: a shared page gets one vector; one-page parts need none
    overlapping = spans(PdfChunker(pages=4, overlap=2, page_vectors=True, isolate=False), data)
    assert sorted(s for s in overlapping if s[0] == s[1]) == [(i, i) for i in range(1, 15)]
    assert spans(PdfChunker(pages=1, page_vectors=True, isolate=False), data) == [
        (i, i) for i in range(1, 15)
    ]
    assert len(spans(PdfChunker(isolate=False), data)) == 3  # off by default
    with pytest.raises(ConfigurationError, match="page_vectors is for PDF chunks"):
        PdfChunker(mode="text", page_vectors=True)


def test_a_gemini_index_with_page_vectors_answers_with_the_page(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    from mmembed.embedders.gemini import GeminiEmbedder

    folder = tmp_path / "course"
    folder.mkdir()
    make_pdf(PAGES, path=folder / "deck.pdf")
    query = "which slide shows the citric acid cycle diagram?"

    plain = Index(tmp_path / "plain", embedder=GeminiEmbedder(dimensions=128))
    plain.add(folder)
    assert plain.search(query, k=1)[0].span == PageSpan(7, 12)  # the part, at best

    paged = Index(
        tmp_path / "paged",
        embedder=GeminiEmbedder(dimensions=128),
        chunk_options={"pdf": {"page_vectors": True}},
    )
    report = paged.add(folder)
    assert report.chunks == 3 + 14
    top = paged.search(query, k=3)[0]
    assert top.uri == f"{folder / 'deck.pdf'}#page=12" or top.uri.endswith("deck.pdf#page=12")
    assert top.span == PageSpan(12, 12)
    assert top.modality is Modality.PDF
    assert "citric acid" in top.preview
    # the part and its page are one result, not two
    results = paged.search(query, k=5)
    assert sum(1 for r in results if r.span in (PageSpan(12, 12), PageSpan(7, 12))) == 1
    # reopened with the path alone, the index keeps its chunk settings
    paged.close()
    with Index(tmp_path / "paged") as again:
        assert again.fingerprint["chunking"]["options"] == {"pdf": {"page_vectors": True}}


def test_a_local_index_reads_pdfs_a_page_a_chunk_whatever_the_option(tmp_path: Path) -> None:
    from mmembed.testing import FakeEmbedder

    folder = tmp_path / "course"
    folder.mkdir()
    make_pdf(PAGES, path=folder / "deck.pdf")
    index = Index(
        tmp_path / "ix",
        embedder=FakeEmbedder(32, modalities=frozenset({Modality.TEXT})),
        chunk_options={"pdf": {"page_vectors": True}},
    )
    index.add(folder)
    top = index.search("citric acid cycle diagram", k=1)[0]
    assert top.span == PageSpan(12, 12)
    assert len(index) == 14


def test_the_docs_state_what_page_vectors_cost() -> None:
    text = (ROOT / "docs" / "search.md").read_text(encoding="utf-8")
    limits = GEMINI_EMBEDDING_2
    pages = 100
    tokens = pages * limits.tokens_per_pdf_page
    parts = math.ceil(pages / limits.max_pdf_pages)
    dollars = cost_usd({Modality.PDF: tokens}, limits)
    batch = cost_usd({Modality.PDF: tokens}, limits, batch=True)
    for fact in (f"{parts} parts", f"{tokens:,} tokens", f"${dollars:.4f}", f"${batch:.4f}"):
        assert fact in text, fact
    assert re.search(r"\b100 more items\b", text)
