"""A retried call frees its request and media when the call ends, not when the GC next runs."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator
from types import FrameType, TracebackType

import pytest

from mmembed.content import Image
from mmembed.embedders import GeminiEmbedder
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_image


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as s:
        yield s


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fault", ["429", "503", "drop"])
def test_a_retried_call_leaves_no_cycle_holding_its_media(
    server: FakeGeminiServer, mode: str, fault: str
) -> None:
    embedder = GeminiEmbedder(
        client=server.client(), dimensions=128, retry_initial_delay=0.01, retry_max_delay=0.02
    )
    part = Image(make_image("PNG", (64, 64), seed=3))
    embedder.embed(["warm up"])  # the SDK's one-time setup is not this call's garbage
    if fault == "429":
        server.rate_limit_next(2, retry_delay=0.01)
    elif fault == "503":
        server.fail_next(2, status=503)
    else:
        server.drop_next(2)
    gc.collect()
    gc.disable()  # what the call leaves behind must go by reference counting alone
    try:
        before = sys.getrefcount(part)
        if mode == "sync":
            out = embedder.embed([part, "a caption"])
        else:
            out = asyncio.run(embedder.aembed([part, "a caption"]))
        after = sys.getrefcount(part)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, (FrameType, TracebackType))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        embedder.close()
    assert out.shape == (2, 128)
    assert len(server.embed_requests) == 4  # the warm-up, two failed attempts, the answer
    assert after == before  # no frame of a failed attempt still holds the image
    assert left == []  # no traceback kept its frames (and their request bodies) in a cycle
