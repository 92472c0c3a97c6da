"""Cut PDFs into standalone PDFs of a few pages each (or into page text), with page spans.

Parsing runs in the decoder sandbox (:mod:`mmembed.chunkers._sandbox`): a PDF that crashes,
hangs or floods memory fails alone with a :class:`~mmembed.errors.ChunkingError`. Splitting
uses pypdf; page text and page renders use pypdfium2 (both from the ``pdf`` extra; PyMuPDF is
avoided for its AGPL licence).

>>> from mmembed.chunkers import PdfChunker
>>> for chunk in PdfChunker(pages=6).chunk("slides.pdf"):  # doctest: +SKIP
...     print(chunk.uri)          # slides.pdf#page=1, slides.pdf#page=7, ...
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from mmembed._optional import import_optional
from mmembed.chunkers._common import resolve_source
from mmembed.chunkers._sandbox import isolated
from mmembed.chunkers.text import text_windows
from mmembed.content import Image, Modality, Part, Pdf, Text
from mmembed.errors import ChunkingError, ConfigurationError
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits, estimate_tokens
from mmembed.protocols import Chunk, PageSpan

__all__ = ["PdfChunker"]

#: Longest side of a page render in pixels, whatever the DPI (a poster-sized page would
#: otherwise become a gigapixel bitmap).
MAX_RENDER_SIDE = 3072

# pdfium is not thread-safe; in-process use from several threads must take turns.
_PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Options:
    name: str
    pages: int
    overlap: int
    mode: Literal["pdf", "text"]
    page_text: bool
    render: bool
    render_dpi: float
    max_tokens: int


def _page_groups(n: int, pages: int, overlap: int) -> Iterator[tuple[int, int]]:
    """0-based inclusive ``(first, last)`` page ranges of at most ``pages`` pages."""
    first = 0
    while first < n:
        last = min(first + pages, n) - 1
        yield first, last
        if last == n - 1:
            return
        first = last + 1 - overlap


def _open_reader(data: bytes | Path, name: str) -> Any:
    pypdf = import_optional("pypdf", extra="pdf", purpose="PdfChunker")
    errors = pypdf.errors
    try:
        reader = pypdf.PdfReader(io.BytesIO(data) if isinstance(data, bytes) else data)
        if reader.is_encrypted:
            # Many PDFs are encrypted only to restrict printing or copying, with an empty
            # password for reading; those are readable. Anything else needs the password.
            try:
                opened = reader.decrypt("")
            except (errors.PyPdfError, NotImplementedError, ValueError) as exc:
                raise ChunkingError(
                    f"{name}: the PDF is encrypted and could not be decrypted ({exc}); save an "
                    "unencrypted copy (for example `qpdf --decrypt in.pdf out.pdf`)"
                ) from exc
            if not opened:
                raise ChunkingError(
                    f"{name}: the PDF is protected by a password; save an unencrypted copy "
                    "(for example `qpdf --password=... --decrypt in.pdf out.pdf`)"
                )
        n = len(reader.pages)
    except ChunkingError:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise ChunkingError(
            f"{name}: not a readable PDF ({type(exc).__name__}: {exc}); the file is damaged or "
            "not a PDF"
        ) from exc
    if n == 0:
        raise ChunkingError(f"{name}: the PDF has no pages")
    return reader


def _split(reader: Any, first: int, last: int) -> bytes:
    pypdf = import_optional("pypdf", extra="pdf", purpose="PdfChunker")
    writer = pypdf.PdfWriter()
    for i in range(first, last + 1):
        writer.add_page(reader.pages[i])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _pdfium_text(doc: Any, i: int) -> str:
    page = doc[i]
    try:
        textpage = page.get_textpage()
        try:
            text: str = textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _pdfium_render(doc: Any, i: int, dpi: float) -> bytes:
    page = doc[i]
    try:
        width, height = page.get_size()  # in points, 1/72 inch
        scale = dpi / 72
        longest = max(width, height) * scale
        if longest > MAX_RENDER_SIDE:
            scale *= MAX_RENDER_SIDE / longest
        bitmap = page.render(scale=scale)
        try:
            image = bitmap.to_pil()
        finally:
            bitmap.close()
    finally:
        page.close()
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _pdfium_document(data: bytes | Path) -> Any:
    pdfium = import_optional("pypdfium2", extra="pdf", purpose="PdfChunker")
    return pdfium.PdfDocument(data if isinstance(data, bytes) else str(data))


def pdf_chunks(data: bytes | Path, options: _Options) -> Iterator[Chunk]:
    """The chunks of one PDF (runs inside the sandbox; module-level so it can be sent there)."""
    reader = _open_reader(data, options.name)
    n = len(reader.pages)
    needs_pdfium = options.mode == "text" or options.page_text or options.render
    doc = _pdfium_document(data) if needs_pdfium else None
    try:
        if options.mode == "text":
            yield from _text_chunks(doc, n, options)
            return
        for first, last in _page_groups(n, options.pages, options.overlap):
            metadata: dict[str, Any] = {"pages": n}
            if doc is not None:
                with _PDFIUM_LOCK:
                    if options.page_text:
                        metadata["page_text"] = tuple(
                            _pdfium_text(doc, i) for i in range(first, last + 1)
                        )
                    if options.render:
                        metadata["page_images"] = tuple(
                            Image(_pdfium_render(doc, i, options.render_dpi), "image/png")
                            for i in range(first, last + 1)
                        )
            yield Chunk(
                content=Pdf(_split(reader, first, last)),
                source=options.name,
                span=PageSpan(first + 1, last + 1),
                metadata=MappingProxyType(metadata),
            )
    finally:
        if doc is not None:
            doc.close()


def _text_chunks(doc: Any, n: int, options: _Options) -> Iterator[Chunk]:
    """Page text grouped into chunks of at most ``pages`` pages and ``max_tokens`` tokens."""
    with _PDFIUM_LOCK:
        texts = [_pdfium_text(doc, i) for i in range(n)]
    budget = options.max_tokens
    i = 0
    while i < n:
        if not texts[i]:
            i += 1  # a scanned or empty page has no text to embed
            continue
        if estimate_tokens(texts[i]) > budget:
            # One page alone is over the model's limit: window it, each piece keeps the page.
            for w in text_windows(texts[i], size=budget, overlap=0, max_tokens=budget):
                piece = texts[i][w.start : w.end].strip()
                if piece:
                    yield Chunk(
                        content=Text(piece),
                        source=options.name,
                        span=PageSpan(i + 1, i + 1),
                        metadata=MappingProxyType({"pages": n}),
                    )
            i += 1
            continue
        last = i
        joined = texts[i]
        while last + 1 < n and last + 1 - i < options.pages:
            candidate = f"{joined}\n\n{texts[last + 1]}" if texts[last + 1] else joined
            if estimate_tokens(candidate) > budget:
                break
            joined = candidate
            last += 1
        yield Chunk(
            content=Text(joined),
            source=options.name,
            span=PageSpan(i + 1, last + 1),
            metadata=MappingProxyType({"pages": n}),
        )
        if last == n - 1:
            return
        i = max(i + 1, last + 1 - options.overlap)


class PdfChunker:
    """Standalone PDFs of at most ``pages`` pages, each with its :class:`~mmembed.PageSpan`.

    Args:
        limits: the model's limits; ``pages`` defaults to ``limits.max_pdf_pages`` (6 for
            Gemini Embedding 2), and text chunks stay under ``limits.max_tokens``.
        pages: pages per chunk (at most the model's limit).
        overlap: pages shared by consecutive chunks (less than ``pages``).
        mode: ``"pdf"`` yields PDF chunks; ``"text"`` yields the pages' text as
            :class:`~mmembed.Text` chunks with page spans, for embedders that take no PDFs
            (scanned pages without a text layer yield nothing).
        page_text: add each page's text to ``chunk.metadata["page_text"]`` (a tuple of str).
        render: add each page rendered as PNG to ``chunk.metadata["page_images"]`` (a tuple of
            :class:`~mmembed.Image`), for image-only embedders or previews.
        render_dpi: resolution of the renders (their longest side is capped at 3,072 px).
        isolate: parse in a separate process (default) so a hostile file cannot crash, hang
            or exhaust this one; ``False`` is faster for trusted files.
        timeout: seconds allowed for each chunk when isolated.
        memory_mb: address-space limit of the isolated process.

    Every chunk's ``metadata["pages"]`` is the page count of the whole document.

    Raises (while iterating):
        ChunkingError: the PDF is damaged, encrypted with a password, or hostile.
        MissingDependencyError: the ``pdf`` extra is not installed.
    """

    def __init__(
        self,
        *,
        limits: ModelLimits | None = None,
        pages: int | None = None,
        overlap: int = 0,
        mode: Literal["pdf", "text"] = "pdf",
        page_text: bool = False,
        render: bool = False,
        render_dpi: float = 100.0,
        isolate: bool = True,
        timeout: float = 60.0,
        memory_mb: int | None = 2048,
    ) -> None:
        self.limits = limits if limits is not None else GEMINI_EMBEDDING_2
        cap = self.limits.max_pdf_pages if self.limits.max_pdf_pages > 0 else 6
        if pages is None:
            pages = cap
        if pages < 1:
            raise ConfigurationError(f"pages must be at least 1, got {pages}")
        if mode == "pdf" and pages > cap:
            raise ConfigurationError(
                f"pages={pages} is over {self.limits.model}'s limit of {cap} pages a PDF; "
                "choose a smaller number"
            )
        if not 0 <= overlap < pages:
            raise ConfigurationError(
                f"overlap must be at least 0 and less than pages ({pages}), got {overlap}"
            )
        if mode not in ("pdf", "text"):
            raise ConfigurationError(f"mode must be 'pdf' or 'text', got {mode!r}")
        if render_dpi <= 0:
            raise ConfigurationError(f"render_dpi must be positive, got {render_dpi}")
        self.pages = pages
        self.overlap = overlap
        self.mode: Literal["pdf", "text"] = mode
        self.page_text = page_text
        self.render = render
        self.render_dpi = render_dpi
        self.isolate = isolate
        self.timeout = timeout
        self.memory_mb = memory_mb

    def __repr__(self) -> str:
        return (
            f"PdfChunker(pages={self.pages}, overlap={self.overlap}, mode={self.mode!r}, "
            f"model={self.limits.model!r})"
        )

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        """Yield the chunks of ``source`` (a :class:`~mmembed.Pdf` or a path to a PDF)."""
        part, name = resolve_source(source, Modality.PDF, "PdfChunker")
        assert isinstance(part, Pdf)
        # Fail here, in the caller's process, with the install line if the extra is missing.
        import_optional("pypdf", extra="pdf", purpose="PdfChunker")
        if self.mode == "text" or self.page_text or self.render:
            import_optional("pypdfium2", extra="pdf", purpose="PdfChunker")
        options = _Options(
            name=name,
            pages=self.pages,
            overlap=self.overlap,
            mode=self.mode,
            page_text=self.page_text,
            render=self.render,
            render_dpi=self.render_dpi,
            max_tokens=self.limits.max_tokens,
        )
        yield from isolated(
            pdf_chunks,
            part.data,
            options,
            timeout=self.timeout,
            memory_mb=self.memory_mb,
            name=name,
            isolate=self.isolate,
            read_ahead=True,  # cut the next chunk while this one is embedded
            preload=("pypdf", "pypdfium2"),
        )
