"""mmembed.limits on its own: item checks, token estimates per modality and the cost formula."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from mmembed import Audio, Content, Image, Modality, Pdf, Text, Video
from mmembed.content import Embeddable, main_modality
from mmembed.errors import ConfigurationError, InputLimitError, UnsupportedMediaError
from mmembed.limits import (
    GEMINI_EMBEDDING_001,
    TYPICAL_CLIP_SECONDS,
    check_inline,
    check_item,
    cost_usd,
    estimate_item_tokens,
    estimate_tokens,
    inline_bytes,
    limits_for,
    media_tokens,
)
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_audio, make_image, make_pdf, make_video

LIMITS = limits_for("gemini-embedding-2")


def image(seed: int = 0) -> Image:
    return Image(make_image("PNG", (8, 8), noise=True, seed=seed), "image/png")


# -------------------------------------------------------------------- main modality


def test_the_main_modality_is_the_first_part_that_is_not_text() -> None:
    assert main_modality("words") is Modality.TEXT
    assert main_modality(Text("words")) is Modality.TEXT
    assert main_modality(image()) is Modality.IMAGE
    assert main_modality(
        Content(["caption", image(), Audio(make_audio(seconds=1, sample_rate=2000), "audio/wav")])
    ) is (Modality.IMAGE)
    assert main_modality(Content([Text("a"), Text("b")])) is Modality.TEXT
    with pytest.raises(ConfigurationError):
        main_modality(42)  # type: ignore[arg-type]


# -------------------------------------------------------------------- item checks


def test_check_item_returns_the_content_of_a_sound_item() -> None:
    item = Content(["caption", image()])
    assert check_item(item, LIMITS) is item
    assert check_item("text", LIMITS).parts == (Text("text"),)


def test_each_limit_names_the_item_the_limit_and_the_chunker() -> None:
    cases: list[tuple[Embeddable, str, str]] = [
        (Content([image(i) for i in range(7)]), "image_per_item", "ImageChunker"),
        (
            Audio(make_audio(seconds=181, sample_rate=2000), "audio/wav"),
            "audio_seconds",
            "AudioChunker",
        ),
        (Pdf(make_pdf(7)), "pdf_pages", "PdfChunker"),
        ("word " * 6000, "tokens", "TextChunker"),
        (
            Content(
                [
                    Audio(make_audio(seconds=1, sample_rate=2000), "audio/wav"),
                    Audio(make_audio(seconds=1, sample_rate=2000), "audio/wav"),
                ]
            ),
            "audio_per_item",
            "AudioChunker",
        ),
    ]
    for item, limit, chunker in cases:
        with pytest.raises(InputLimitError, match=chunker) as info:
            check_item(item, LIMITS, index=4)
        assert info.value.index == 4
        assert info.value.limit == limit
        assert str(info.value).startswith("item 4 (")


def test_a_file_over_the_size_limit_is_refused_before_it_is_read() -> None:
    tiny = replace(LIMITS, max_file_bytes=100)
    with pytest.raises(InputLimitError, match="a file may have") as info:
        check_item(Video(b"\x00" * 200, "video/mp4"), tiny)  # never probed: not a real video
    assert info.value.limit == "file_bytes"


def test_the_token_budget_counts_the_texts_as_sent() -> None:
    text = "x" * (3 * LIMITS.max_tokens)  # exactly at the budget
    check_item(text, LIMITS)
    with pytest.raises(InputLimitError, match="tokens"):
        check_item(text, LIMITS, texts=["task: search result | query: " + text])


def test_types_and_formats_the_model_does_not_take() -> None:
    with pytest.raises(UnsupportedMediaError, match=r"image/gif.*ImageChunker"):
        check_item(Image(make_image("GIF", (4, 4)), "image/gif"), LIMITS)
    with pytest.raises(UnsupportedMediaError, match="does not take image"):
        check_item(image(), GEMINI_EMBEDDING_001)
    with pytest.raises(ConfigurationError, match="item 2: cannot embed a int"):
        check_item(7, LIMITS, index=2)  # type: ignore[arg-type]


def test_inline_media_and_the_files_api() -> None:
    item = Content(["caption", image()])
    size = inline_bytes(item)
    assert size == math.ceil(image().nbytes * 4 / 3)
    assert inline_bytes(Content(["text only"])) == 0
    assert check_inline(item, LIMITS) is False
    assert check_inline(item, LIMITS, inline_bytes_limit=size) is False
    assert check_inline(item, LIMITS, inline_bytes_limit=size - 1) is True
    with pytest.raises(InputLimitError, match=r"Files API.*ImageChunker") as info:
        check_inline(item, LIMITS, index=3, inline_bytes_limit=size - 1, files_api=False)
    assert (info.value.index, info.value.limit) == (3, "inline_bytes")


# -------------------------------------------------------------------- tokens and cost


def test_media_tokens_follow_the_rates_of_the_model() -> None:
    assert media_tokens(Modality.IMAGE, LIMITS) == LIMITS.tokens_per_image
    assert media_tokens(Modality.PDF, LIMITS, pages=2) == 2 * LIMITS.tokens_per_pdf_page
    assert media_tokens(Modality.PDF, LIMITS) == LIMITS.max_pdf_pages * LIMITS.tokens_per_pdf_page
    assert media_tokens(Modality.AUDIO, LIMITS, seconds=2.5) == math.ceil(
        2.5 * LIMITS.tokens_per_audio_second
    )
    assert media_tokens(Modality.AUDIO, LIMITS, seconds=0.0) == 1
    assert media_tokens(Modality.VIDEO, LIMITS, seconds=4.2) == 5 * LIMITS.tokens_per_video_frame
    assert media_tokens(Modality.VIDEO, LIMITS, seconds=600) == (
        LIMITS.max_video_frames * LIMITS.tokens_per_video_frame
    )
    assert media_tokens(Modality.AUDIO, LIMITS) == math.ceil(
        TYPICAL_CLIP_SECONDS * LIMITS.tokens_per_audio_second
    )
    doubled = replace(LIMITS, tokens_per_image=2 * LIMITS.tokens_per_image)
    assert media_tokens(Modality.IMAGE, doubled) == 2 * LIMITS.tokens_per_image
    with pytest.raises(ConfigurationError, match="estimate_tokens"):
        media_tokens(Modality.TEXT, LIMITS)


def test_item_tokens_are_estimated_by_the_modality_of_each_part(tmp_path: Path) -> None:
    clip = Audio(make_audio(seconds=3, sample_rate=2000), "audio/wav")
    video = Video(
        make_video(seconds=4, fps=1, width=16, height=16, audio=False, path=tmp_path / "v.mp4"),
        "video/mp4",
    )
    item = Content(["a caption", image(), clip])
    assert estimate_item_tokens(item, LIMITS) == {
        Modality.TEXT: estimate_tokens("a caption"),
        Modality.IMAGE: LIMITS.tokens_per_image,
        Modality.AUDIO: 3 * LIMITS.tokens_per_audio_second,  # its length read from the header
    }
    assert estimate_item_tokens(video, LIMITS) == {
        Modality.VIDEO: 4 * LIMITS.tokens_per_video_frame
    }
    assert estimate_item_tokens(Pdf(make_pdf(2)), LIMITS) == {
        Modality.PDF: 2 * LIMITS.tokens_per_pdf_page
    }
    assert estimate_item_tokens("plain", LIMITS) == {Modality.TEXT: estimate_tokens("plain")}


def test_an_unreadable_part_counts_as_a_typical_one() -> None:
    broken_audio = Audio(b"RIFF\x00\x00\x00\x00WAVEjunk", "audio/wav")
    broken_pdf = Pdf(b"%PDF-1.4\nnot really a pdf")
    assert estimate_item_tokens(broken_audio, LIMITS) == {
        Modality.AUDIO: media_tokens(Modality.AUDIO, LIMITS)
    }
    assert estimate_item_tokens(broken_pdf, LIMITS) == {
        Modality.PDF: media_tokens(Modality.PDF, LIMITS)
    }


def test_one_cost_formula_with_the_batch_discount() -> None:
    prices = LIMITS.price_per_million_tokens
    tokens = {Modality.TEXT: 1_000_000, Modality.VIDEO: 500_000}
    full = cost_usd(tokens, LIMITS)
    assert full == pytest.approx(prices[Modality.TEXT] + prices[Modality.VIDEO] / 2)
    assert cost_usd(tokens, LIMITS, batch=True) == pytest.approx(full * (1 - LIMITS.batch_discount))
    assert LIMITS.batch_discount == 0.5  # the Batch API is half price
    # a modality without a price of its own is priced as text
    unpriced = replace(LIMITS, price_per_million_tokens=MappingProxyType({Modality.TEXT: 1.0}))
    assert cost_usd({Modality.AUDIO: 2_000_000}, unpriced) == pytest.approx(2.0)
    assert cost_usd({}, LIMITS) == 0.0


def test_the_fake_server_reports_media_tokens_at_the_same_rates() -> None:
    from mmembed.embedders import GeminiEmbedder

    with FakeGeminiServer() as server:
        embedder = GeminiEmbedder(dimensions=128, client=server.client())
        embedder.embed(
            [image(), Audio(make_audio(seconds=3, sample_rate=2000), "audio/wav"), Pdf(make_pdf(2))]
        )
        by = embedder.last_usage.tokens_by_modality
    assert by[Modality.IMAGE] == media_tokens(Modality.IMAGE, LIMITS)
    assert by[Modality.AUDIO] == media_tokens(Modality.AUDIO, LIMITS, seconds=3.0)
    assert by[Modality.PDF] == media_tokens(Modality.PDF, LIMITS, pages=2)
    assert embedder.last_usage.cost_usd == pytest.approx(cost_usd(by, LIMITS))
