"""Small real media files, generated in the tests (nothing is downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

# shaped like a real key, assembled so that secret scanners do not take it for one
SENTINEL_KEY = "AIza" + "SyD-SENTINEL-0123456789abcdefghijkl"


def png(width: int = 8, height: int = 8, seed: int = 0) -> bytes:
    """A PNG of random pixels (incompressible, so its size follows its area)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def gif() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buf, format="GIF")
    return buf.getvalue()


def wav(seconds: float, rate: int = 2000) -> bytes:
    """A mono 16-bit WAV tone of ``seconds`` (a low rate keeps long clips small)."""
    import soundfile

    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    buf = io.BytesIO()
    soundfile.write(buf, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def mp4(seconds: int, path: Path) -> Path:
    """A tiny H.264 MP4 of ``seconds`` at 1 frame per second."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(seconds):
            frame = av.VideoFrame.from_ndarray(
                np.full((16, 16, 3), i % 256, dtype=np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def pdf(pages: int) -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("helvetica", size=12)
    for i in range(pages):
        doc.add_page()
        doc.cell(text=f"page {i + 1}")
    return bytes(doc.output())
