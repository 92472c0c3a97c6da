"""Runs corrupted media through the chunkers inside ONE sandboxed worker (see the mutation tests).

Each variant's outcome is one item, so the sandbox's per-item timeout bounds every variant and a
native crash on any of them fails the batch loudly.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

from mmembed import Image, MMEmbedError, Pdf
from mmembed.chunkers import ImageChunker, PdfChunker

Outcome = tuple[str, str]


def mutants(data: bytes, count: int, seed: int) -> list[bytes]:
    """``count`` corrupted copies of ``data``: truncations, bit flips, splices, zeroed headers."""
    rng = random.Random(seed)
    out: list[bytes] = []
    n = len(data)
    kinds = ["truncate", "flip", "splice", "zero-head", "zero-range", "insert", "duplicate"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        b = bytearray(data)
        if kind == "truncate":
            b = b[: rng.randrange(1, n)]
        elif kind == "flip":
            for _ in range(rng.randint(1, 16)):
                pos = rng.randrange(n)
                b[pos] ^= 1 << rng.randrange(8)
        elif kind == "splice":
            a = rng.randrange(n)
            length = rng.randint(1, max(1, n // 8))
            piece = bytes(b[a : a + length])
            dest = rng.randrange(n)
            b[dest : dest + len(piece)] = piece
        elif kind == "zero-head":
            k = rng.randint(1, min(64, n))
            b[:k] = bytes(k)
        elif kind == "zero-range":
            a = rng.randrange(n)
            b[a : a + rng.randint(1, 256)] = bytes(min(256, n - a))
        elif kind == "insert":
            pos = rng.randrange(n)
            b[pos:pos] = rng.randbytes(rng.randint(1, 64))
        else:
            a = rng.randrange(n)
            b[a:a] = b[a : a + rng.randint(1, 512)]
        out.append(bytes(b))
    return out


def _check_pdf_chunks(data: bytes) -> str:
    import pypdf

    chunks = list(PdfChunker(isolate=False, page_text=True).chunk(Pdf(data, "application/pdf")))
    if not chunks:
        return "no chunks"
    for chunk in chunks:
        assert isinstance(chunk.content, Pdf)
        pages = len(pypdf.PdfReader(io.BytesIO(chunk.content.read_bytes())).pages)
        if chunk.span is None or pages != chunk.span.pages or pages > 6:  # type: ignore[union-attr]
            return f"chunk {chunk.span} holds {pages} pages"
    return ""


def _check_image_chunks(data: bytes, mime: str) -> str:
    from PIL import Image as PILImage

    chunks = list(ImageChunker(isolate=False).chunk(Image(data, mime)))
    if len(chunks) != 1:
        return f"{len(chunks)} chunks"
    content = chunks[0].content
    assert isinstance(content, Image)
    if content.mime_type not in ("image/png", "image/jpeg"):
        return f"mime {content.mime_type}"
    with PILImage.open(io.BytesIO(content.read_bytes())) as im:
        im.load()
        if max(im.size) > 3072:
            return f"size {im.size}"
    return ""


def outcomes(kind: str, mime: str, variants: list[bytes]) -> Iterator[Outcome]:
    """For each variant: ("ok", "") / ("ok", problem) / ("mmembed", error class) / ("leak", ...)."""
    for data in variants:
        try:
            problem = _check_pdf_chunks(data) if kind == "pdf" else _check_image_chunks(data, mime)
        except MMEmbedError as exc:
            yield ("mmembed", type(exc).__name__)
        except Exception as exc:  # anything else escaped the chunker: a bug
            yield ("leak", f"{type(exc).__name__}: {exc}")
        else:
            yield ("ok", problem)
