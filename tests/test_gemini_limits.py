"""Every item is checked against the model's limits before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmembed import Audio, Content, Image, Pdf, Text, Video
from mmembed.embedders import GeminiEmbedder
from mmembed.errors import InputLimitError, UnsupportedMediaError
from mmembed.limits import limits_for
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_audio, make_image, make_pdf, make_video

LIMITS = limits_for("gemini-embedding-2")


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as s:
        yield s


def make(server: FakeGeminiServer, **options: Any) -> GeminiEmbedder:
    options.setdefault("dimensions", 128)
    return GeminiEmbedder(client=server.client(), **options)


def test_seven_images_in_one_content_are_refused_before_sending(
    server: FakeGeminiServer,
) -> None:
    images = [
        Image(make_image("PNG", (8, 8), noise=True, seed=i), "image/png")
        for i in range(LIMITS.max_images_per_item + 1)
    ]
    with pytest.raises(InputLimitError) as info:
        make(server).embed(["fine", Content(["caption", *images])])
    err = info.value
    assert err.index == 1
    assert err.limit == "image_per_item"
    assert "item 1" in str(err)
    assert f"at most {LIMITS.max_images_per_item}" in str(err)
    assert "ImageChunker" in str(err) or "separate items" in str(err)
    assert server.requests == []


def test_six_images_are_accepted(server: FakeGeminiServer) -> None:
    images = [
        Image(make_image("PNG", (8, 8), noise=True, seed=i), "image/png")
        for i in range(LIMITS.max_images_per_item)
    ]
    out = make(server).embed([Content(images)])
    assert out.shape == (1, 128)


def test_audio_over_the_limit_points_to_the_audio_chunker(server: FakeGeminiServer) -> None:
    long = Audio(make_audio(seconds=LIMITS.max_audio_seconds + 1, sample_rate=2000), "audio/wav")
    with pytest.raises(InputLimitError, match="AudioChunker") as info:
        make(server).embed([Audio(make_audio(seconds=2, sample_rate=2000), "audio/wav"), long])
    assert info.value.index == 1
    assert info.value.limit == "audio_seconds"
    assert "181.0 s" in str(info.value)
    assert server.requests == []


def test_audio_at_the_limit_is_sent(server: FakeGeminiServer) -> None:
    out = make(server).embed(
        [Audio(make_audio(seconds=LIMITS.max_audio_seconds, sample_rate=2000), "audio/wav")]
    )
    assert out.shape == (1, 128)


def test_the_preview_models_shorter_audio_limit_applies(server: FakeGeminiServer) -> None:
    clip = Audio(make_audio(seconds=100, sample_rate=2000), "audio/wav")
    with pytest.raises(InputLimitError, match="80 s"):
        make(server, model="gemini-embedding-2-preview").embed([clip])
    assert make(server).embed([clip]).shape == (1, 128)


def test_video_over_the_limit_points_to_the_video_chunker(
    server: FakeGeminiServer, tmp_path: Path
) -> None:
    video = Video.from_path(
        make_video(
            seconds=int(LIMITS.max_video_seconds) + 1,
            fps=1,
            audio=False,
            path=tmp_path / "long.mp4",
        )
    )
    with pytest.raises(InputLimitError, match="VideoChunker") as info:
        make(server).embed([video])
    assert "'long.mp4'" in str(info.value)
    assert info.value.limit == "video_seconds"
    assert server.requests == []


def test_a_short_video_is_sent(server: FakeGeminiServer, tmp_path: Path) -> None:
    video = Video.from_path(make_video(seconds=3, fps=1, audio=False, path=tmp_path / "short.mp4"))
    assert make(server).embed([video]).shape == (1, 128)


def test_pdf_with_too_many_pages_points_to_the_pdf_chunker(server: FakeGeminiServer) -> None:
    with pytest.raises(InputLimitError, match="PdfChunker") as info:
        make(server).embed([Pdf(make_pdf(LIMITS.max_pdf_pages + 1))])
    assert "7 pages" in str(info.value)
    assert server.requests == []
    assert make(server).embed([Pdf(make_pdf(LIMITS.max_pdf_pages))]).shape == (1, 128)


def test_too_long_text_points_to_the_text_chunker(server: FakeGeminiServer) -> None:
    with pytest.raises(InputLimitError, match="TextChunker") as info:
        make(server).embed(["word " * 6000])
    assert info.value.limit == "tokens"
    assert server.requests == []


def test_two_videos_in_one_item_are_refused(server: FakeGeminiServer, tmp_path: Path) -> None:
    a = Video.from_path(make_video(seconds=2, fps=1, audio=False, path=tmp_path / "a.mp4"))
    b = Video.from_path(make_video(seconds=2, fps=1, audio=False, path=tmp_path / "b.mp4"))
    with pytest.raises(InputLimitError, match="2 videos"):
        make(server).embed([Content([a, b])])


def test_a_format_the_model_refuses_is_named(server: FakeGeminiServer) -> None:
    with pytest.raises(UnsupportedMediaError, match=r"image/gif.*ImageChunker"):
        make(server).embed([Image(make_image("GIF", (4, 4)), "image/gif")])
    assert server.requests == []


def test_gemini_embedding_001_takes_text_only(server: FakeGeminiServer) -> None:
    with pytest.raises(UnsupportedMediaError, match="does not take image"):
        make(server, model="gemini-embedding-001").embed(
            [Image(make_image("PNG", (8, 8), noise=True), "image/png")]
        )


def test_unreadable_media_is_a_clear_error(server: FakeGeminiServer) -> None:
    broken = Video(b"\x00\x00\x00\x18ftypmp42" + b"\x00junk" * 50, "video/mp4")
    with pytest.raises(UnsupportedMediaError, match="cannot read its duration"):
        make(server).embed([broken])
    with pytest.raises(UnsupportedMediaError, match="cannot read its pages"):
        make(server).embed([Pdf(b"%PDF-1.4\nnot really a pdf")])


def test_check_validates_without_sending(server: FakeGeminiServer) -> None:
    embedder = make(server)
    embedder.check(["fine", Text("also fine", title="t")])
    with pytest.raises(InputLimitError):
        embedder.check(
            [
                Content(
                    [
                        Image(make_image("PNG", (8, 8), noise=True, seed=i), "image/png")
                        for i in range(7)
                    ]
                )
            ]
        )
    assert server.requests == []


def test_the_server_enforces_the_same_limits_when_the_client_does_not(
    server: FakeGeminiServer,
) -> None:
    """A client without pre-checks (the raw SDK) meets the same limits, from the server."""
    from google.genai import errors, types

    client = server.client()
    blob = types.Part(
        inline_data=types.Blob(data=make_image("PNG", (8, 8), noise=True), mime_type="image/png")
    )
    with pytest.raises(errors.ClientError) as info:
        client.models.embed_content(
            model="gemini-embedding-2", contents=[types.Content(parts=[blob] * 7)]
        )
    assert info.value.code == 400
    assert "at most 6 images" in str(info.value.message)
    too_many = [types.Content(parts=[types.Part(text=f"t{i}")]) for i in range(101)]
    with pytest.raises(errors.ClientError) as info:
        client.models.embed_content(model="gemini-embedding-2", contents=too_many)
    assert info.value.message == (
        "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
    )
