"""Media the tests generate themselves (no downloads): PDFs with fpdf2, images with Pillow."""

from __future__ import annotations

import io

from PIL import Image as PILImage
from PIL import ImageDraw

TOPICS = ["cats", "rockets", "volcanoes", "bicycles", "oceans", "violins", "glaciers", "bees"]


def page_heading(i: int) -> str:
    """The heading on page ``i`` (1-based) of :func:`make_pdf`'s output."""
    return f"Page {i}: all about {TOPICS[(i - 1) % len(TOPICS)]}"


def make_pdf(pages: int, *, image: bool = False, password: str | None = None) -> bytes:
    """A PDF of ``pages`` A4 pages, each with a heading and a paragraph (and a picture)."""
    from fpdf import FPDF

    pdf = FPDF()
    if password is not None:
        from fpdf.enums import EncryptionMethod

        pdf.set_encryption(
            owner_password="owner", user_password=password, encryption_method=EncryptionMethod.RC4
        )
    pdf.set_font("helvetica", size=14)
    picture = make_image("PNG", (200, 120)) if image else b""
    for i in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(text=page_heading(i), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(
            w=0,
            text=f"This page is about {TOPICS[(i - 1) % len(TOPICS)]}. " * 6,
        )
        if picture:
            pdf.image(io.BytesIO(picture), w=60)
        pdf.set_font("helvetica", size=14)
    return bytes(pdf.output())


def draw(size: tuple[int, int], mode: str = "RGB") -> PILImage.Image:
    """A picture with shapes, so compression and orientation are visible."""
    im = PILImage.new(mode, size, (30, 90, 160) if mode != "L" else 90)
    d = ImageDraw.Draw(im)
    w, h = size
    d.rectangle((0, 0, w // 3, h // 3), fill=(240, 40, 40) if mode != "L" else 240)
    d.ellipse((w // 2, h // 2, w - 1, h - 1), fill=(250, 220, 30) if mode != "L" else 200)
    return im


def make_image(fmt: str, size: tuple[int, int] = (320, 200), **save: object) -> bytes:
    """Image bytes of ``fmt`` (PNG, JPEG, WEBP, GIF, BMP, TIFF, ...)."""
    mode = "RGB" if fmt in ("JPEG", "BMP") else "RGBA" if fmt in ("PNG", "WEBP") else "RGB"
    im = draw(size, mode)
    out = io.BytesIO()
    im.save(out, format=fmt, **save)
    return out.getvalue()
