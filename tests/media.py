"""Small media samples generated in memory, for tests that need real bytes of each type."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from PIL import Image as PILImage


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (32, 24), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def audio_bytes(fmt: str = "WAV", seconds: float = 0.5, rate: int = 16000, **kw: str) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, tone, rate, format=fmt, **kw)
    return buf.getvalue()


def pdf_bytes(pages: int = 2) -> bytes:
    """A minimal valid PDF with ``pages`` empty pages, written by hand (no dependency)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"] * pages
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def mp4_header(brand: bytes = b"isom") -> bytes:
    """The first box of an ISO-BMFF file with the given major brand (enough for sniffing)."""
    body = brand + b"\x00\x00\x02\x00" + brand + b"mp41"
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 64


def png_bytes(*, seed: int = 0, size: int = 32) -> bytes:
    """A real PNG of random colour blocks."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(*, seconds: float = 1.0, rate: int = 8000, freq: float = 440.0) -> bytes:
    """A real mono 16-bit WAV of a sine tone."""
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(
        buf,
        (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32),
        rate,
        format="WAV",
        subtype="PCM_16",
    )
    return buf.getvalue()
