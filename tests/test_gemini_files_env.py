"""Files API uploads, the SDK's environment, and the embedding cache inside GeminiEmbedder."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmembed import Content, Image, Task
from mmembed.cache import EmbeddingCache
from mmembed.embedders import GeminiEmbedder
from mmembed.errors import AuthenticationError, InputLimitError
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_image


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(file_processing_polls=2) as s:
        yield s


def make(server: FakeGeminiServer, **options: Any) -> GeminiEmbedder:
    options.setdefault("dimensions", 128)
    return GeminiEmbedder(client=server.client(), **options)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_media_too_large_to_send_inline_go_through_the_files_api(
    server: FakeGeminiServer, tmp_path: Path, mode: str
) -> None:
    big = make_image("PNG", (64, 64), noise=True, seed=5)
    on_disk = tmp_path / "photo.png"
    on_disk.write_bytes(make_image("PNG", (64, 64), noise=True, seed=6))
    items: list[Any] = [
        Image(big, "image/png"),
        "small text",
        Content(["caption", Image.from_path(on_disk)]),
        Image(big, "image/png"),  # the same bytes again: uploaded once
    ]
    embedder = make(server, inline_bytes_limit=1000)
    out = embedder.embed(items) if mode == "sync" else asyncio.run(embedder.aembed(items))
    uploads = [r for r in server.requests if r.endpoint == "files.upload"]
    assert len(uploads) == 4  # start + bytes, for each of the two distinct images
    polls = [r for r in server.requests if r.endpoint == "files.get"]
    assert len(polls) == 6  # each file was PROCESSING on two polls, ACTIVE on the third
    parts = [c["parts"] for call in server.embed_requests for c in call.contents]
    assert "file_data" in parts[0][0]
    assert parts[1] == [{"text": "title: none | text: small text"}]
    assert "file_data" in parts[2][1]
    assert sorted(server.uploaded_files.values()) == sorted([big, on_disk.read_bytes()])
    # an uploaded item gets the same vector as the same item sent inline
    inline = make(server).embed(items)
    np.testing.assert_allclose(out, inline, atol=1e-6)


def test_a_file_that_stays_processing_is_a_clear_error() -> None:
    with FakeGeminiServer(file_processing_polls=1000) as server:
        embedder = make(server, inline_bytes_limit=100, file_wait_seconds=0.5)
        from mmembed.errors import ProviderError

        with pytest.raises(ProviderError, match="still PROCESSING"):
            embedder.embed([Image(make_image("PNG", (16, 16), noise=True), "image/png")])
        assert server.embed_requests == []


def test_vertex_refuses_items_too_large_to_send_inline(server: FakeGeminiServer) -> None:
    embedder = GeminiEmbedder(
        dimensions=128, client=server.client(vertexai=True), inline_bytes_limit=100
    )
    with pytest.raises(InputLimitError, match="Files API"):
        embedder.embed([Image(make_image("PNG", (16, 16), noise=True), "image/png")])


def test_the_sdk_environment_is_honoured(
    server: FakeGeminiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in server.env(api_key="env-key", api_version="v1beta").items():
        monkeypatch.setenv(name, value)
    with GeminiEmbedder(dimensions=128) as embedder:
        out = embedder.embed(["from the environment"])
    assert out.shape == (1, 128)
    (call,) = server.embed_requests
    assert call.path == "/v1beta/models/gemini-embedding-2:batchEmbedContents"
    assert call.api_key_sent


def test_google_api_key_is_read_too(
    server: FakeGeminiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.base_url)
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    with GeminiEmbedder(dimensions=128) as embedder:
        embedder.embed(["x"])
    assert server.embed_requests[0].path.startswith("/v1/")


def test_no_key_anywhere_is_an_authentication_error_that_says_what_to_do() -> None:
    with pytest.raises(AuthenticationError, match="GEMINI_API_KEY"):
        GeminiEmbedder()


def test_env_points_another_process_at_the_server(server: FakeGeminiServer) -> None:
    code = (
        "from mmembed.embedders import GeminiEmbedder\n"
        "e = GeminiEmbedder(dimensions=128)\n"
        "print(e.embed(['hello', 'world']).shape)\n"
        "e.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_API_KEY"}
    env.update(server.env())
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 128)"
    assert len(server.embed_requests) == 1


def test_a_second_run_is_served_from_the_cache(server: FakeGeminiServer, tmp_path: Path) -> None:
    items: list[Any] = [f"text {i}" for i in range(120)] + [
        Image(make_image("PNG", (8, 8), noise=True, seed=1), "image/png")
    ]
    first = make(server, cache=tmp_path / "cache.sqlite").embed(items, task=Task.QUERY)
    assert len(server.embed_requests) == 2
    server.reset()
    # a new embedder, as in a new process: the cache on disk answers everything
    again = make(server, cache=tmp_path / "cache.sqlite")
    second = again.embed(items, task=Task.QUERY)
    assert server.requests == []
    np.testing.assert_array_equal(first, second)
    assert again.last_usage.cached_items == len(items)
    assert again.last_usage.requests == 0
    # the async path reads the same cache
    third = asyncio.run(again.aembed(items, task=Task.QUERY))
    assert server.requests == []
    np.testing.assert_array_equal(first, third)


def test_the_cache_keeps_tasks_dimensions_and_models_apart(
    server: FakeGeminiServer, tmp_path: Path
) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    make(server, cache=cache).embed(["same text"], task=Task.QUERY)
    make(server, cache=cache).embed(["same text"], task=Task.DOCUMENT)
    make(server, cache=cache, dimensions=256).embed(["same text"], task=Task.QUERY)
    make(server, cache=cache, model="gemini-embedding-001").embed(["same text"], task=Task.QUERY)
    assert len(server.embed_requests) == 4
    make(server, cache=cache).embed(["same text", "new text"], task=Task.QUERY)
    assert server.embed_requests[-1].items == 1  # only the miss was sent
    assert len(cache) == 5


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_attempt_of_an_upload_sends_the_whole_file(
    server: FakeGeminiServer, tmp_path: Path, mode: str
) -> None:
    """A retried upload starts from the first byte again (the SDK uploads from the offset)."""
    from mmembed.embedders.gemini._transport import open_transport
    from mmembed.limits import limits_for

    on_disk = tmp_path / "photo.png"
    on_disk.write_bytes(make_image("PNG", (32, 32), noise=True, seed=8))
    transport = open_transport(
        server.client(),
        api_key=None,
        vertexai=None,
        model="gemini-embedding-2",
        dimensions=128,
        timeout=10,
        limits=limits_for("gemini-embedding-2"),
    )
    call = transport.upload(Image.from_path(on_disk), {"mime_type": "image/png"})

    async def twice() -> None:
        await transport.guard_loop()  # the loop's connections close with it
        for _ in range(2):
            await call.arun()

    if mode == "sync":
        for _ in range(2):  # what a retry does: the same call again
            call.run()
    else:
        asyncio.run(twice())
    assert list(server.uploaded_files.values()) == [on_disk.read_bytes()] * 2
