"""AudioChunker on real audio generated here: every reader path, exact spans, the limits."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from mmembed import ConfigurationError, UnsupportedMediaError
from mmembed.chunkers._plan import plan_windows
from mmembed.chunkers.audio import AudioChunker
from mmembed.content import Audio, Image
from mmembed.limits import GEMINI_EMBEDDING_2, GEMINI_EMBEDDING_2_PREVIEW, ModelLimits
from mmembed.protocols import Chunker, TimeSpan
from mmembed.testing.contracts.chunker import ChunkerContract, Source
from mmembed.testing.media import make_audio, make_video

soxr = pytest.importorskip("soxr")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio")
    files = {
        "wav": d / "stereo44k.wav",
        "flac": d / "tone.flac",
        "ogg": d / "tone.ogg",
        "mp3": d / "tone.mp3",
        "m4a": d / "tone.m4a",
        "mp4": d / "video.mp4",
    }
    make_audio(seconds=47, sample_rate=44100, channels=2, path=files["wav"])
    make_audio(seconds=30, sample_rate=22050, path=files["flac"])
    make_audio(seconds=30, sample_rate=16000, path=files["ogg"])
    make_audio("MP3", seconds=30, sample_rate=16000, path=files["mp3"])
    make_audio("M4A", seconds=30, sample_rate=44100, path=files["m4a"])
    make_video(seconds=25, fps=5, gop=10, path=files["mp4"])
    return files


def wav_samples(blob: bytes) -> tuple[np.ndarray, int]:
    data, rate = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
    return data, rate


class TestAudioChunkerContract(ChunkerContract):
    span_type = TimeSpan

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        return AudioChunker(limits=limits, window_seconds=20, overlap_seconds=4)

    @pytest.fixture
    def sources(self, media: dict[str, Path]) -> list[Source]:
        return [
            str(media["wav"]),
            media["mp3"],
            Audio(media["m4a"].read_bytes()),
            str(media["mp4"]),
        ]

    @pytest.fixture
    def bad_sources(self, media: dict[str, Path], tmp_path: Path) -> list[Source]:
        truncated = tmp_path / "truncated.m4a"
        truncated.write_bytes(media["m4a"].read_bytes()[:300])
        png = tmp_path / "image.png"
        from PIL import Image as PILImage

        PILImage.new("RGB", (4, 4)).save(png)
        return [str(truncated), str(png), Audio(b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav")]

    def bounds(self, source: Source) -> float | None:
        return {".wav": 47.0, ".mp3": 30.0, ".mp4": 25.1}.get(Path(str(source)).suffix, 30.1)


@pytest.mark.parametrize("kind", ["wav", "flac", "ogg", "mp3"])
def test_soundfile_formats_follow_the_plan_exactly(media: dict[str, Path], kind: str) -> None:
    info = sf.info(str(media[kind]))
    chunks = list(AudioChunker(window_seconds=10, overlap_seconds=2).chunk(media[kind]))
    rate = info.samplerate
    expected = plan_windows(info.frames, 10 * rate, 2 * rate)
    assert [(c.span.start, c.span.end) for c in chunks] == [  # type: ignore[union-attr]
        (a / rate, b / rate) for a, b in expected
    ]
    for chunk in chunks:
        assert chunk.metadata["reader"] == "soundfile"
        assert chunk.content.mime_type == "audio/wav"
        data, out_rate = wav_samples(chunk.content.read_bytes())  # type: ignore[union-attr]
        assert out_rate == 16000
        assert data.shape[1] == 1
        span = chunk.span
        assert isinstance(span, TimeSpan)
        assert abs(len(data) - span.duration * 16000) <= 1


def test_window_content_is_the_resampled_source(media: dict[str, Path]) -> None:
    source, rate = sf.read(str(media["wav"]), dtype="float32", always_2d=True)
    chunks = list(AudioChunker(window_seconds=10, overlap_seconds=3).chunk(media["wav"]))
    for chunk in chunks[:3] + chunks[-1:]:
        span = chunk.span
        assert isinstance(span, TimeSpan)
        piece = source[round(span.start * rate) : round(span.end * rate)].mean(axis=1)
        want = soxr.resample(piece, rate, 16000)
        got, _ = wav_samples(chunk.content.read_bytes())  # type: ignore[union-attr]
        assert len(got) == len(want)
        # 16-bit output: agreement to quantisation noise, away from the edges' filter ramps
        assert np.max(np.abs(got[200:-200, 0] - want[200:-200])) < 2e-3


@pytest.mark.parametrize("kind", ["m4a", "mp4"])
def test_pyav_formats_cover_the_input(media: dict[str, Path], kind: str) -> None:
    chunks = list(AudioChunker(window_seconds=8, overlap_seconds=2).chunk(str(media[kind])))
    spans = [c.span for c in chunks]
    assert all(isinstance(s, TimeSpan) for s in spans)
    assert {c.metadata["reader"] for c in chunks} == {"pyav"}
    assert spans[0].start == 0  # type: ignore[union-attr]
    total = 30.0 if kind == "m4a" else 25.0
    assert spans[-1].end == pytest.approx(total, abs=0.05)  # type: ignore[union-attr]
    for a, b in itertools.pairwise(spans):
        assert a.end - b.start >= 2 - 1e-9  # type: ignore[union-attr]
    for chunk in chunks:
        data, _ = wav_samples(chunk.content.read_bytes())  # type: ignore[union-attr]
        assert abs(len(data) / 16000 - chunk.span.duration) < 1e-3  # type: ignore[union-attr]
        assert 0.1 < float(np.sqrt(np.mean(data**2))) < 0.5, "the tone is there"


def test_mp3_output(media: dict[str, Path]) -> None:
    chunks = list(AudioChunker(window_seconds=12, format="mp3").chunk(media["flac"]))
    for chunk in chunks:
        assert chunk.content.mime_type == "audio/mpeg"
        info = sf.info(io.BytesIO(chunk.content.read_bytes()))  # type: ignore[union-attr]
        assert info.format == "MP3"
        assert info.duration == pytest.approx(chunk.span.duration, abs=0.1)  # type: ignore[union-attr]


def test_stereo_is_kept_when_asked(media: dict[str, Path]) -> None:
    chunk = next(iter(AudioChunker(mono=False, sample_rate=22050).chunk(media["wav"])))
    data, rate = wav_samples(chunk.content.read_bytes())  # type: ignore[union-attr]
    assert (data.shape[1], rate) == (2, 22050)


def test_defaults_come_from_the_limits(media: dict[str, Path]) -> None:
    assert AudioChunker().window_seconds == GEMINI_EMBEDDING_2.max_audio_seconds
    preview = AudioChunker(limits=GEMINI_EMBEDDING_2_PREVIEW)
    assert preview.window_seconds == GEMINI_EMBEDDING_2_PREVIEW.max_audio_seconds
    small = replace(GEMINI_EMBEDDING_2, max_audio_seconds=12.0)
    chunks = list(AudioChunker(limits=small).chunk(media["wav"]))
    # 47 s in 12 s windows with the default 5 % (0.6 s) overlap: 0, 11.4, 22.8, 34.2, then 35–47
    assert [c.span.start for c in chunks] == pytest.approx([0, 11.4, 22.8, 34.2, 35])  # type: ignore[union-attr]
    assert all(c.span.duration <= 12.0 for c in chunks)  # type: ignore[union-attr]


def test_a_short_file_is_one_window(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    make_audio(seconds=1.5, sample_rate=8000, path=path)
    (chunk,) = AudioChunker().chunk(path)
    assert chunk.span == TimeSpan(0.0, 1.5)
    assert chunk.uri == f"{path}#t=0,1.5"


def test_an_empty_file_is_a_chunking_error(tmp_path: Path) -> None:
    from mmembed import ChunkingError

    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ChunkingError, match="no audio samples"):
        list(AudioChunker().chunk(path))


def test_an_image_is_not_audio(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(buf, format="PNG")
    with pytest.raises(UnsupportedMediaError, match="takes audio or video"):
        list(AudioChunker().chunk(Image(buf.getvalue())))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"window_seconds": 500}, "window_seconds"),
        ({"window_seconds": 10, "overlap_seconds": 10}, "overlap_seconds"),
        ({"format": "ogg"}, "format"),
        ({"sample_rate": 100}, "sample_rate"),
        ({"format": "mp3", "sample_rate": 17000}, "MP3"),
        ({"quality": "best"}, "quality"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        AudioChunker(**options)


def test_a_format_the_model_refuses_is_refused() -> None:
    wav_only = replace(GEMINI_EMBEDDING_2, audio_mime_types=frozenset({"audio/wav"}))
    with pytest.raises(ConfigurationError, match="does not take audio/mpeg"):
        AudioChunker(limits=wav_only, format="mp3")


def test_an_implausible_sample_rate_is_refused(tmp_path: Path) -> None:
    from mmembed import ChunkingError

    blob = bytearray(make_audio(seconds=2, sample_rate=8000) or b"")
    assert blob[24:28] == (8000).to_bytes(4, "little")
    blob[24:28] = (1).to_bytes(4, "little")  # the fmt chunk's sample rate
    path = tmp_path / "one-hertz.wav"
    path.write_bytes(bytes(blob))
    with pytest.raises(ChunkingError, match="sample rate of 1 Hz"):
        list(AudioChunker().chunk(path))


@settings(max_examples=25, deadline=None)
@given(
    seconds=st.floats(0.05, 12.0),
    window=st.floats(0.5, 5.0),
    overlap_frac=st.floats(0.0, 0.9),
    rate=st.sampled_from([8000, 11025, 22050]),
)
def test_real_windows_cover_the_input_and_fit(
    seconds: float, window: float, overlap_frac: float, rate: int
) -> None:
    limits = replace(GEMINI_EMBEDDING_2, max_audio_seconds=window)
    overlap = round(window * overlap_frac, 3)
    blob = make_audio(seconds=seconds, sample_rate=rate)
    assert blob is not None
    total = sf.info(io.BytesIO(blob)).frames
    chunker = AudioChunker(limits=limits, overlap_seconds=overlap, isolate=False)
    chunks = list(chunker.chunk(Audio(blob, "audio/wav")))
    spans = [c.span for c in chunks]
    assert all(isinstance(s, TimeSpan) for s in spans)
    ts: list[TimeSpan] = spans  # type: ignore[assignment]
    assert ts[0].start == 0
    assert ts[-1].end == total / rate
    for a, b in itertools.pairwise(ts):
        assert b.start <= a.end, "no gap"
        assert a.end - b.start >= round(overlap * rate) / rate - 1e-9
    for chunk, span in zip(chunks, ts, strict=True):
        assert span.duration <= limits.max_audio_seconds + 1e-9
        out = sf.info(io.BytesIO(chunk.content.read_bytes()))  # type: ignore[union-attr]
        assert out.duration <= limits.max_audio_seconds + 1e-3
        assert abs(out.duration - span.duration) <= 1 / 16000 + 1e-9
