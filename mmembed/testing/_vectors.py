"""Deterministic stand-in vectors: the same content always gives the same vector, and texts
that share words point in similar directions, so retrieval tests behave like the real thing."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

__all__ = ["fake_vector"]

_WORD = re.compile(r"\w+", re.UNICODE)
# weight of the part of a text's vector that is unique to the exact text
_EXACT_WEIGHT = 0.15


@lru_cache(maxsize=65536)
def _seeded(key: bytes, dimensions: int) -> NDArray[np.float32]:
    seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    vec = np.random.default_rng(seed).standard_normal(dimensions, dtype=np.float32)
    vec /= np.float32(np.linalg.norm(vec))
    vec.setflags(write=False)
    return vec


def _text_vector(text: str, dimensions: int) -> NDArray[np.float32]:
    words = _WORD.findall(text.lower())
    out = np.zeros(dimensions, dtype=np.float32)
    for word in words:
        out += _seeded(b"w\0" + word.encode(), dimensions)
    norm = float(np.linalg.norm(out))
    if norm > 0:
        out /= np.float32(norm)
    out += np.float32(_EXACT_WEIGHT) * _seeded(b"t\0" + text.encode(), dimensions)
    return out


def fake_vector(
    texts: Iterable[str], blobs: Iterable[bytes], dimensions: int
) -> NDArray[np.float32]:
    """One unit float32 vector for an item made of ``texts`` and binary ``blobs``.

    Each text contributes a bag-of-words direction (so shared words mean a higher cosine) and each
    blob a direction seeded by its hash; an item with several parts gets their normalised sum.
    """
    out = np.zeros(dimensions, dtype=np.float32)
    for text in texts:
        out += _text_vector(text, dimensions)
    for blob in blobs:
        out += _seeded(b"b\0" + hashlib.sha256(blob).digest(), dimensions)
    norm = float(np.linalg.norm(out))
    if norm == 0:
        return _seeded(b"empty", dimensions).copy()
    out /= np.float32(norm)
    return out
