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
