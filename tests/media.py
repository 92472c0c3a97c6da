"""Small real media for tests, generated on the fly (no fixtures on disk)."""

from __future__ import annotations

import io

import numpy as np


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
