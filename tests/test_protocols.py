from __future__ import annotations

import pytest

from mmembed import (
    Chunk,
    ConfigurationError,
    Hit,
    Image,
    Modality,
    PageSpan,
    Text,
    TextSpan,
    TimeSpan,
)
from mmembed.content import Content
from mmembed.testing.media import make_image


def test_spans_make_media_fragments() -> None:
    assert Chunk(Text("x"), "lecture3.mp4", TimeSpan(720, 750)).uri == "lecture3.mp4#t=720,750"
    assert Chunk(Text("x"), "a.mp4", TimeSpan(1.5, 31.25)).uri == "a.mp4#t=1.5,31.25"
    assert Chunk(Text("x"), "deck.pdf", PageSpan(7, 12)).uri == "deck.pdf#page=7"
    assert Chunk(Text("x"), "notes.md", TextSpan(100, 250)).uri == "notes.md#char=100,250"
    assert Chunk(Text("x"), "photo.png").uri == "photo.png"
    assert Chunk(Text("x"), "a.mp4", TimeSpan(0, 1), uri="custom").uri == "custom"


def test_span_strings_are_human() -> None:
    assert str(TimeSpan(720, 750)) == "12:00–12:30"
    assert str(TimeSpan(3725.5, 3755)) == "1:02:05.5–1:02:35"
    assert str(PageSpan(7, 7)) == "p. 7"
    assert str(PageSpan(7, 12)) == "pp. 7–12"
    assert PageSpan(7, 12).pages == 6
    assert TimeSpan(1, 4).duration == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: TimeSpan(5, 4),
        lambda: TimeSpan(-1, 4),
        lambda: PageSpan(0, 3),
        lambda: PageSpan(4, 3),
        lambda: TextSpan(3, 2),
    ],
)
def test_spans_validate(make: object) -> None:
    with pytest.raises(ConfigurationError):
        make()  # type: ignore[operator]


def test_chunk_modality() -> None:
    img = Image(make_image())
    assert Chunk(img, "a.png").modality is Modality.IMAGE
    assert Chunk(Content(["caption", img]), "a.png").modality is Modality.IMAGE
    assert Chunk(Content(["a", "b"]), "a.txt").modality is Modality.TEXT


def test_hit_is_a_value() -> None:
    assert Hit("a", 0.5) == Hit("a", 0.5, {})
    assert dict(Hit("a", 0.5).metadata) == {}
