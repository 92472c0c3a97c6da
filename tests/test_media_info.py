"""Durations and page counts read from headers, and unreadable media as mmembed errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from mmembed import Audio, Pdf, Video
from mmembed._media_info import duration_seconds, pdf_page_count
from mmembed.errors import UnsupportedMediaError
from mmembed.testing.media import make_audio, make_pdf, make_video


def test_wav_duration_bytes_and_path(tmp_path: Path) -> None:
    data = make_audio(seconds=12.5, sample_rate=2000)
    assert duration_seconds(Audio(data, "audio/wav")) == pytest.approx(12.5)
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    assert duration_seconds(Audio.from_path(path)) == pytest.approx(12.5)  # type: ignore[arg-type]


def test_flac_and_mp3_durations() -> None:
    import soundfile

    t = np.zeros(8000 * 3, dtype=np.float32)
    for fmt, mime in (("FLAC", "audio/flac"), ("MP3", "audio/mpeg")):
        buf = io.BytesIO()
        soundfile.write(buf, t, 8000, format=fmt)
        seconds = duration_seconds(Audio(buf.getvalue(), mime))
        assert seconds == pytest.approx(3.0, abs=0.1)


def test_video_duration(tmp_path: Path) -> None:
    video = Video.from_path(make_video(seconds=7, fps=1, audio=False, path=tmp_path / "v.mp4"))
    assert duration_seconds(video) == pytest.approx(7.0, abs=0.5)  # type: ignore[arg-type]
    in_memory = Video(video.read_bytes(), "video/mp4")
    assert duration_seconds(in_memory) == pytest.approx(7.0, abs=0.5)


def test_pdf_pages() -> None:
    assert pdf_page_count(Pdf(make_pdf(3))) == 3


@pytest.mark.parametrize(
    "part",
    [
        Audio(b"RIFF\x00\x00\x00\x00WAVEjunkjunk", "audio/wav"),
        Video(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 300, "video/mp4"),
    ],
)
def test_unreadable_media_is_an_unsupported_media_error(part: Audio | Video) -> None:
    with pytest.raises(UnsupportedMediaError, match="cannot read its duration"):
        duration_seconds(part)


def test_unreadable_pdf_is_an_unsupported_media_error() -> None:
    with pytest.raises(UnsupportedMediaError, match="cannot read its pages"):
        pdf_page_count(Pdf(b"%PDF-1.7\n" + b"\x00" * 64))
