"""VideoChunker on real H.264 videos generated here: remux and re-encode, spans, limits."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmembed import Chunk, ChunkingError, ConfigurationError, UnsupportedMediaError
from mmembed.chunkers.video import VideoChunker
from mmembed.content import Image, Video
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits
from mmembed.protocols import Chunker, TimeSpan
from mmembed.testing.contracts.chunker import ChunkerContract, Source
from mmembed.testing.media import make_audio, make_video

av = pytest.importorskip("av")

FPS = 10
SECONDS = 65.0
GOP_SECONDS = 2.0


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    files = {
        "gop": d / "gop2s.mp4",  # a keyframe every 2 s: remuxable
        "sparse": d / "sparse.mp4",  # keyframes at 0 and 40 s: must be re-encoded
        "short": d / "short.mov",  # 8 s, QuickTime container
        "mkv": d / "clip.mkv",
    }
    make_video(seconds=SECONDS, fps=FPS, gop=int(GOP_SECONDS * FPS), path=files["gop"])
    make_video(seconds=SECONDS, fps=FPS, gop=400, path=files["sparse"])
    make_video(seconds=8, fps=FPS, gop=20, container="mov", path=files["short"])
    make_video(seconds=35, fps=FPS, gop=20, container="matroska", audio=False, path=files["mkv"])
    files["wav"] = d / "tone.wav"
    make_audio(seconds=3, path=files["wav"])
    return files


def decoded(chunk: Chunk) -> list[Any]:
    """Every video frame of a chunk's MP4, decoded."""
    assert isinstance(chunk.content, Video)
    with av.open(io.BytesIO(chunk.content.read_bytes())) as c:
        return list(c.decode(video=0))


def shade_second(chunk: Chunk) -> int:
    """The second of the source video shown by the chunk's first frame (the square's shade)."""
    with av.open(io.BytesIO(chunk.content.read_bytes())) as c:  # type: ignore[union-attr]
        frame = next(iter(c.decode(video=0)))
        img = frame.to_ndarray(format="rgb24")
        i = round(frame.time * FPS + chunk.span.start * FPS)  # type: ignore[union-attr]
    x = (i * 3) % (img.shape[1] - 16)
    value = int(np.median(img[32:44, x + 2 : x + 14, 0]))
    # shade = (second * 37) % 256: find the second whose shade is closest
    return min(range(int(SECONDS) + 1), key=lambda s: abs((s * 37) % 256 - value))


def check_contiguous(chunks: list[Chunk], duration: float) -> list[TimeSpan]:
    spans = [c.span for c in chunks]
    assert all(isinstance(s, TimeSpan) for s in spans)
    ts: list[TimeSpan] = spans  # type: ignore[assignment]
    assert ts[0].start == pytest.approx(0, abs=1e-6)
    assert ts[-1].end == pytest.approx(duration, abs=1 / FPS)
    for a, b in itertools.pairwise(ts):
        assert b.start <= a.end + 1e-6, "no gap"
    return ts


class TestVideoChunkerContract(ChunkerContract):
    span_type = TimeSpan

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        return VideoChunker(limits=limits)

    @pytest.fixture
    def sources(self, media: dict[str, Path]) -> list[Source]:
        return [str(media["gop"]), media["short"], Video(media["mkv"].read_bytes(), "")]

    @pytest.fixture
    def bad_sources(self, media: dict[str, Path], tmp_path: Path) -> list[Source]:
        truncated = tmp_path / "truncated.mp4"
        truncated.write_bytes(media["gop"].read_bytes()[:5000])
        return [str(media["wav"]), str(truncated), Video(b"\x00" * 64, "video/mp4")]

    def bounds(self, source: Source) -> float | None:
        part = source if isinstance(source, Video) else Video.from_path(source)
        assert isinstance(part, Video)
        with part.open() as f, av.open(f) as c:
            return float(c.duration) / 1_000_000


def test_remux_cuts_at_keyframes_within_bounds(media: dict[str, Path]) -> None:
    chunks = list(VideoChunker().chunk(media["gop"]))
    spans = check_contiguous(chunks, SECONDS)
    assert [c.metadata["mode"] for c in chunks] == ["remux"] * len(chunks)
    assert len(chunks) == 3  # 65 s in the fewest segments of at most 30 s
    for chunk, span in zip(chunks, spans, strict=True):
        assert 15 <= span.duration <= 30
        assert span.start % GOP_SECONDS == pytest.approx(0, abs=1e-6), "starts at a keyframe"
        frames = decoded(chunk)
        # decodes to within one GOP of its span (here: exactly, the cuts are keyframes)
        assert abs(len(frames) / FPS - span.duration) <= GOP_SECONDS
        assert len(frames) == round(span.duration * FPS)
        assert shade_second(chunk) == int(span.start)
        assert chunk.content.read_bytes()[4:8] == b"ftyp"
        assert b"moov" in chunk.content.read_bytes()[:4096], "faststart: index first"


def test_sparse_keyframes_are_reencoded_to_the_frame(media: dict[str, Path]) -> None:
    chunks = list(VideoChunker().chunk(str(media["sparse"])))
    spans = check_contiguous(chunks, SECONDS)
    assert {c.metadata["mode"] for c in chunks} == {"reencode"}
    for chunk, span in zip(chunks, spans, strict=True):
        assert 15 <= span.duration <= 30 + 1e-6
        frames = decoded(chunk)
        assert abs(len(frames) / FPS - span.duration) <= 1 / FPS + 1e-6  # within one frame
        assert shade_second(chunk) == int(span.start + 1e-6)
    for a, b in itertools.pairwise(spans):
        assert b.start == pytest.approx(a.end, abs=1 / FPS + 1e-6)


def test_remux_only_refuses_sparse_keyframes(media: dict[str, Path]) -> None:
    with pytest.raises(ChunkingError, match=r"keyframes are up to 40\.0 s apart"):
        list(VideoChunker(mode="remux").chunk(media["sparse"]))


def test_reencode_mode_reencodes_even_when_remux_would_do(media: dict[str, Path]) -> None:
    chunks = list(VideoChunker(mode="reencode", max_height=64).chunk(media["gop"]))
    assert {c.metadata["mode"] for c in chunks} == {"reencode"}
    with av.open(io.BytesIO(chunks[0].content.read_bytes())) as c:  # type: ignore[union-attr]
        assert c.streams.video[0].codec_context.height == 64
        assert c.streams.audio[0].codec_context.name == "aac"


def test_overlap_is_at_least_the_declared_one(media: dict[str, Path]) -> None:
    chunks = list(VideoChunker(overlap_seconds=3).chunk(media["gop"]))
    spans = check_contiguous(chunks, SECONDS)
    for a, b in itertools.pairwise(spans):
        assert 3 - 1e-6 <= a.end - b.start < 3 + GOP_SECONDS


def test_segments_follow_the_models_limit() -> None:
    limits = replace(GEMINI_EMBEDDING_2, max_video_seconds=20.0)
    chunker = VideoChunker(limits=limits)
    assert chunker.segment_seconds == 20.0
    with pytest.raises(ConfigurationError, match="limit"):
        VideoChunker(limits=limits, segment_seconds=25)


def test_segments_under_a_small_limit(media: dict[str, Path]) -> None:
    limits = replace(GEMINI_EMBEDDING_2, max_video_seconds=12.0)
    chunks = list(VideoChunker(limits=limits).chunk(media["gop"]))
    spans = check_contiguous(chunks, SECONDS)
    assert all(6 <= s.duration <= 12 for s in spans)


def test_short_video_is_one_segment(media: dict[str, Path]) -> None:
    (chunk,) = VideoChunker().chunk(media["short"])
    assert chunk.span == TimeSpan(0.0, 8.0)
    assert chunk.content.mime_type == "video/mp4"
    assert chunk.uri == f"{media['short']}#t=0,8"


def test_sampled_frames_are_jpegs_inside_the_span(media: dict[str, Path]) -> None:
    chunks = list(VideoChunker(frames_per_segment=3, frame_max_side=64).chunk(media["gop"]))
    for chunk in chunks:
        frames = chunk.metadata["frames"]
        times = chunk.metadata["frame_times"]
        assert len(frames) == len(times) == 3
        assert all(isinstance(f, Image) and f.mime_type == "image/jpeg" for f in frames)
        assert all(f.read_bytes()[:2] == b"\xff\xd8" for f in frames)
        span = chunk.span
        assert isinstance(span, TimeSpan)
        assert all(span.start <= t < span.end for t in times)
        assert list(times) == sorted(times)


def test_in_memory_video_is_named_by_size(media: dict[str, Path]) -> None:
    data = media["short"].read_bytes()
    (chunk,) = VideoChunker().chunk(Video(data))
    assert chunk.source == f"<{len(data)} bytes>"


def test_audio_is_not_a_video(media: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedMediaError, match="takes video"):
        list(VideoChunker().chunk(media["wav"]))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"segment_seconds": 200}, "segment_seconds"),
        ({"segment_seconds": 0}, "segment_seconds"),
        ({"overlap_seconds": 16}, "overlap_seconds"),
        ({"overlap_seconds": -1}, "overlap_seconds"),
        ({"min_segment_seconds": 20}, "min_segment_seconds"),
        ({"mode": "copy"}, "mode"),
        ({"frames_per_segment": -1}, "frames_per_segment"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        VideoChunker(**options)


def test_a_model_without_video_is_refused() -> None:
    from mmembed.limits import GEMINI_EMBEDDING_001

    with pytest.raises(ConfigurationError, match="does not take video"):
        VideoChunker(limits=GEMINI_EMBEDDING_001)


def test_reencode_of_a_short_clip_keeps_video_and_audio(media: dict[str, Path]) -> None:
    # The demuxer hands out an audio packet first here: every output stream must exist before
    # the first packet is written.
    (chunk,) = VideoChunker(mode="reencode").chunk(media["short"])
    assert chunk.span == TimeSpan(0.0, 8.0)
    with av.open(io.BytesIO(chunk.content.read_bytes())) as c:  # type: ignore[union-attr]
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert sum(1 for _ in c.decode(video=0)) == 8 * FPS
        audio = c.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(8.0, abs=0.1)


@pytest.mark.parametrize("mode", ["remux", "reencode"])
def test_audio_that_ends_early_is_handled(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "early.mp4"
    make_video(seconds=40, fps=5, gop=10, audio_seconds=6, path=path)
    chunks = list(VideoChunker(mode=mode).chunk(path))  # type: ignore[arg-type]
    check_contiguous(chunks, 40)
    with av.open(io.BytesIO(chunks[0].content.read_bytes())) as c:  # type: ignore[union-attr]
        assert any(p.stream.type == "audio" and p.size for p in c.demux())
    with av.open(io.BytesIO(chunks[-1].content.read_bytes())) as c:  # type: ignore[union-attr]
        assert not any(p.stream.type == "audio" and p.size for p in c.demux())
        assert len(c.streams.video) == 1


@settings(max_examples=12, deadline=None)
@given(
    limit=st.floats(8.0, 120.0),
    frac=st.floats(0.2, 1.0),
    overlap=st.floats(0.0, 3.0),
)
def test_real_segments_cover_the_video_and_fit(
    media: dict[str, Path], limit: float, frac: float, overlap: float
) -> None:
    limits = replace(GEMINI_EMBEDDING_2, max_video_seconds=limit)
    seg = max(6.0, limit * frac)
    chunker = VideoChunker(
        limits=limits, segment_seconds=seg, overlap_seconds=overlap, isolate=False
    )
    chunks = list(chunker.chunk(media["gop"]))
    spans = check_contiguous(chunks, SECONDS)
    for a, b in itertools.pairwise(spans):
        assert a.end - b.start >= overlap - 1e-6
    for chunk, span in zip(chunks, spans, strict=True):
        assert span.duration <= seg + 1e-6 <= limit + 1e-6
        if len(chunks) > 1:
            assert span.duration >= chunker.min_segment_seconds - 1e-6
        with av.open(io.BytesIO(chunk.content.read_bytes())) as c:  # type: ignore[union-attr]
            assert float(c.duration) / 1e6 <= limit + 0.1


def test_reencoded_spans_never_pass_the_limit(media: dict[str, Path]) -> None:
    # 65 s in seven equal segments would cut at 9.2857 s, between two frames at 10 fps; the
    # frame that starts before the cut would end after it, past the limit.
    limit = 65 / 7
    limits = replace(GEMINI_EMBEDDING_2, max_video_seconds=limit)
    chunker = VideoChunker(limits=limits, mode="reencode", max_height=32)
    for chunk in chunker.chunk(media["sparse"]):
        assert isinstance(chunk.span, TimeSpan)
        assert chunk.span.duration <= limit
        assert len(decoded(chunk)) / FPS <= limit


@pytest.mark.parametrize("mode", ["auto", "reencode"])
def test_a_slideshow_at_one_frame_per_second(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "slides.mp4"
    make_video(seconds=70, fps=1, gop=5, audio=False, path=path)
    chunks = list(VideoChunker(mode=mode).chunk(path))  # type: ignore[arg-type]
    spans = check_contiguous(chunks, 70)
    assert all(15 <= s.duration <= 30 for s in spans)
    for chunk, span in zip(chunks, spans, strict=True):
        assert len(decoded(chunk)) == round(span.duration)
