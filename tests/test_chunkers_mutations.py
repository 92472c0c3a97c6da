"""Corrupted PDFs and images give valid chunks or mmembed errors: no crash, no hang, no leak."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from mmembed.chunkers._sandbox import isolated
from mmembed.testing.media import make_image, make_pdf
from tests import _mutation_targets as targets

VARIANTS = 60


@pytest.mark.parametrize(
    ("kind", "mime", "make"),
    [
        ("pdf", "application/pdf", lambda: make_pdf(3, image=True)),
        ("image", "image/png", lambda: make_image("PNG", (96, 64))),
        ("image", "image/jpeg", lambda: make_image("JPEG", (96, 64))),
        ("image", "image/webp", lambda: make_image("WEBP", (96, 64))),
    ],
    ids=["pdf", "png", "jpeg", "webp"],
)
def test_mutants_give_valid_chunks_or_mmembed_errors(kind: str, mime: str, make: object) -> None:
    original = make()  # type: ignore[operator]
    variants = targets.mutants(original, VARIANTS, seed=len(original))
    assert len(set(variants)) > VARIANTS * 0.9, "the mutants differ from one another"
    started = time.monotonic()
    # One sandboxed worker runs the whole batch: a native crash fails the test with the signal,
    # and each variant must finish within the per-item timeout.
    results = list(
        isolated(targets.outcomes, kind, mime, variants, timeout=20, memory_mb=1024, name=mime)
    )
    assert len(results) == VARIANTS
    tally = Counter(status for status, _ in results)
    leaks = [detail for status, detail in results if status == "leak"]
    assert not leaks, f"non-mmembed errors escaped: {leaks}"
    bad = [detail for status, detail in results if status == "ok" and detail]
    assert not bad, f"invalid chunks: {bad}"
    assert tally["mmembed"] > 0, "corruption was noticed at least sometimes"
    assert time.monotonic() - started < 30
