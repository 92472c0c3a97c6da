"""Cut long videos into short, standalone MP4 segments with exact time spans.

A segment is cut at keyframes by copying compressed packets (a *remux*: fast, lossless) when the
video's keyframes allow a plan in which every segment lasts between ``min_segment_seconds`` and
``segment_seconds``; otherwise the video is decoded and re-encoded with H.264, which can cut
anywhere. Duration and keyframes are read from packet headers, without decoding anything.

>>> from mmembed.chunkers import VideoChunker
>>> for chunk in VideoChunker().chunk("lecture.mp4"):  # doctest: +SKIP
...     print(chunk.uri, chunk.metadata["mode"])
lecture.mp4#t=0,24 remux

With ``strategy="keyframes"`` the chunks are images instead: one per scene (a slide changing,
a diagram appearing), each spanning the time its picture stays on screen; ``"both"`` gives
segments and keyframes. Keyframes are found by decoding only the video's own keyframes
(intra frames), comparing a small colour thumbnail of each with the current scene's, block by
block, and, where one differs, decoding that one keyframe interval to find the moment of the
change.

Decoding runs in a separate process (see :mod:`mmembed.chunkers._sandbox`), so a hostile file
costs a :class:`~mmembed.errors.ChunkingError`, never the caller's process.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Literal

from mmembed._optional import import_optional
from mmembed.chunkers._common import SandboxedChunker
from mmembed.chunkers._plan import plan_frames, plan_keyframes
from mmembed.chunkers._source import media_source
from mmembed.content import Image, Part, Video
from mmembed.errors import ChunkingError, ConfigurationError, MMEmbedError
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits
from mmembed.protocols import Chunk, TimeSpan

__all__ = ["VideoChunker"]

Mode = Literal["auto", "remux", "reencode"]
Strategy = Literal["segments", "keyframes", "both"]

#: Video codecs the embedding API decodes, which an MP4 carries as they are.
_REMUX_VIDEO = frozenset({"h264", "hevc", "av1", "vp9"})
#: Audio codecs an MP4 carries; others are dropped when remuxing (and re-encoded to AAC otherwise).
_REMUX_AUDIO = frozenset({"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"})
_EPS = 1e-6
#: How far audio and video packets of the same moment may lie apart in a file: past this, a
#: missing stream is taken as ended.
_INTERLEAVE_SECONDS = 5.0
#: The index (moov) before the data, so a segment plays while it is still arriving.
_MP4_OPTIONS = {"movflags": "+faststart"}
#: The size of the colour thumbnails scenes are compared on.
_THUMB = (64, 36)
#: How much a 4×4 block of a thumbnail must change on average (0–1) to count as changed.
_BLOCK_CHANGE = 0.03


@dataclass(frozen=True, slots=True, kw_only=True)
class _Job:
    """Everything the decoder process needs, as plain picklable values."""

    name: str
    segment_seconds: float
    min_segment_seconds: float
    overlap_seconds: float
    mode: Mode
    frames_per_segment: int
    frame_max_side: int
    max_height: int
    crf: int
    preset: str
    audio: bool
    strategy: Strategy = "segments"
    keyframe_threshold: float = 0.1
    keyframe_min_seconds: float = 5.0
    keyframe_step_seconds: float = 1.0


class VideoChunker(SandboxedChunker):
    """Cut a video into segments that each fit one embedding.

    Args:
        limits: the embedding model's limits; segments never exceed ``limits.max_video_seconds``.
            Defaults to Gemini Embedding 2's.
        segment_seconds: the longest a segment may be (default 30 s, or the model's limit when
            that is lower). Short segments keep the model's 1-frame-per-second sampling.
        min_segment_seconds: the shortest a segment may be (default half of ``segment_seconds``),
            the last one included; only a video shorter than this is a shorter segment.
        overlap_seconds: the least time consecutive segments share (remuxed segments may share a
            little more, up to one keyframe interval).
        mode: ``"auto"`` remuxes when the keyframes allow and re-encodes otherwise; ``"remux"``
            never re-encodes (raises :class:`ChunkingError` when the keyframes are too sparse or
            the codec is not one the API takes); ``"reencode"`` always re-encodes.
        frames_per_segment: also sample this many frames per segment as JPEG
            (``chunk.metadata["frames"]``, with their times in ``metadata["frame_times"]``), for
            embedders that take images but not video.
        frame_max_side: the longest side of a sampled frame, in pixels.
        max_height: re-encoded segments are scaled down to at most this height.
        crf: x264 quality of re-encoded segments (lower is better and larger).
        preset: x264 speed preset of re-encoded segments.
        audio: keep the audio track (the Gemini API ignores it; Vertex AI uses it).
        strategy: ``"segments"`` (MP4 segments, billed per sampled frame), ``"keyframes"``
            (one JPEG image per scene, with the time span it stays on screen: far cheaper, and
            what slides and diagrams need), or ``"both"``.
        keyframe_threshold: how much of the picture must change from the current scene's to
            start a new one: the fraction of the blocks of a 64×36 colour thumbnail (a 16×9
            grid) that changed. New text on a slide changes about a fifth; a speaker moving in
            a corner picture of under a tenth of the frame stays below the default.
        keyframe_min_seconds: the least time between two keyframes; a change sooner than this
            after the last one is taken once the interval has passed.
        keyframe_step_seconds: how finely the moment of a change is searched for.
        timeout: seconds the decoder may spend on one segment before it is stopped.
        memory_mb: the decoder process's address-space limit in MiB.
        isolate: decode in a separate process (``False``: in this one, faster but unprotected).

    Raises:
        ConfigurationError: inconsistent lengths, or a segment length over the model's limit.
    """

    def __init__(
        self,
        *,
        limits: ModelLimits | None = None,
        segment_seconds: float | None = None,
        min_segment_seconds: float | None = None,
        overlap_seconds: float = 0.0,
        mode: Mode = "auto",
        frames_per_segment: int = 0,
        frame_max_side: int = 768,
        max_height: int = 720,
        crf: int = 26,
        preset: str = "veryfast",
        audio: bool = True,
        strategy: Strategy = "segments",
        keyframe_threshold: float = 0.1,
        keyframe_min_seconds: float = 5.0,
        keyframe_step_seconds: float = 1.0,
        timeout: float = 120.0,
        memory_mb: int | None = 2048,
        isolate: bool = True,
    ) -> None:
        self.limits = limits if limits is not None else GEMINI_EMBEDDING_2
        cap = self.limits.max_video_seconds
        if self.limits.max_video_per_item < 1 or cap <= 0:
            raise ConfigurationError(
                f"{self.limits.model} does not take video; pick a model that does, or use "
                "frames_per_segment with an image embedder"
            )
        seg = min(30.0, cap) if segment_seconds is None else float(segment_seconds)
        low = seg / 2 if min_segment_seconds is None else float(min_segment_seconds)
        overlap = float(overlap_seconds)
        if not 0 < seg <= cap:
            raise ConfigurationError(
                f"segment_seconds must be in (0, {cap:g}] (the limit of {self.limits.model}), "
                f"got {seg:g}"
            )
        if not 0 <= overlap < low:
            raise ConfigurationError(
                f"overlap_seconds must be >= 0 and below min_segment_seconds ({low:g}), "
                f"got {overlap:g}"
            )
        if not 0 < low <= (seg + overlap) / 2:
            raise ConfigurationError(
                f"min_segment_seconds must be in (0, {(seg + overlap) / 2:g}] — at most half of "
                "segment_seconds plus the overlap, or some durations cannot be cut — got "
                f"{low:g}"
            )
        if mode not in ("auto", "remux", "reencode"):
            raise ConfigurationError(f"mode must be 'auto', 'remux' or 'reencode', got {mode!r}")
        if strategy not in ("segments", "keyframes", "both"):
            raise ConfigurationError(
                f"strategy must be 'segments', 'keyframes' or 'both', got {strategy!r}"
            )
        if not 0 < keyframe_threshold < 1:
            raise ConfigurationError(
                f"keyframe_threshold must be between 0 and 1, got {keyframe_threshold}"
            )
        if keyframe_min_seconds < 0 or keyframe_step_seconds <= 0:
            raise ConfigurationError(
                "keyframe_min_seconds must be >= 0 and keyframe_step_seconds > 0"
            )
        if frames_per_segment < 0 or frame_max_side < 16 or max_height < 16:
            raise ConfigurationError(
                "frames_per_segment must be >= 0, frame_max_side and max_height >= 16"
            )
        self.segment_seconds = seg
        self.min_segment_seconds = low
        self.overlap_seconds = overlap
        self.mode: Mode = mode
        self.frames_per_segment = frames_per_segment
        self.frame_max_side = frame_max_side
        self.max_height = max_height
        self.crf = crf
        self.preset = preset
        self.audio = audio
        self.strategy: Strategy = strategy
        self.keyframe_threshold = float(keyframe_threshold)
        self.keyframe_min_seconds = float(keyframe_min_seconds)
        self.keyframe_step_seconds = float(keyframe_step_seconds)
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.isolate = isolate

    def __repr__(self) -> str:
        return (
            f"VideoChunker(model={self.limits.model!r}, segment_seconds={self.segment_seconds:g}, "
            f"min_segment_seconds={self.min_segment_seconds:g}, "
            f"overlap_seconds={self.overlap_seconds:g}, mode={self.mode!r}, "
            f"strategy={self.strategy!r})"
        )

    #: What a dry run assumes for the keyframes strategy: a new scene about once a minute
    #: (slides change every minute or two); the most is one per ``keyframe_min_seconds``.
    TYPICAL_KEYFRAME_SECONDS = 60.0

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        """Yield the segments of ``source`` in time order, each a :class:`Chunk` of MP4 video.

        Each chunk's ``span`` is the :class:`TimeSpan` (seconds from the start of the video)
        its segment holds; ``metadata`` has ``kind`` (``"segment"``), ``mode`` (``"remux"`` or
        ``"reencode"``), ``index``, ``duration`` (of the whole video) and, when asked,
        ``frames`` and ``frame_times``.

        With the keyframes strategy, the chunks are JPEG :class:`~mmembed.Image` parts, one per
        scene, spanning the time the scene is on screen; their ``metadata`` has ``kind``
        (``"keyframe"``), ``index``, ``time`` (the moment the picture was taken) and
        ``duration``. With ``"both"``, all segments come first, then all keyframes.

        Raises:
            UnsupportedMediaError: the source is not a video.
            ChunkingError: the video cannot be decoded or cut (corrupt, hostile, too slow).
        """
        import_optional("av", extra="video", purpose="VideoChunker")
        data, name = media_source(source, accept=(Video,), chunker="VideoChunker")
        job = _Job(
            name=name,
            segment_seconds=self.segment_seconds,
            min_segment_seconds=self.min_segment_seconds,
            overlap_seconds=self.overlap_seconds,
            mode=self.mode,
            frames_per_segment=self.frames_per_segment,
            frame_max_side=self.frame_max_side,
            max_height=self.max_height,
            crf=self.crf,
            preset=self.preset,
            audio=self.audio,
            strategy=self.strategy,
            keyframe_threshold=self.keyframe_threshold,
            keyframe_min_seconds=self.keyframe_min_seconds,
            keyframe_step_seconds=self.keyframe_step_seconds,
        )
        yield from self._isolated(_video_chunks, data, job, name=name, preload=("av",))


# ---------------------------------------------------------------------------------------------
# Decoder side: everything below runs in the isolated process.


@dataclass(frozen=True, slots=True)
class _Probe:
    origin: float  # time of the first video packet: every span is relative to it
    duration: float  # seconds from origin to the end of the last video frame
    keyframes: tuple[float, ...]
    fps: float
    video_codec: str
    audio_codec: str | None


@contextmanager
def _scratch() -> Iterator[Path]:
    """A temporary file path for one segment: the MP4 muxer's faststart pass reopens its output."""
    with tempfile.TemporaryDirectory(prefix="mmembed-video-") as tmp:
        yield Path(tmp) / "segment.mp4"


def _open(av: ModuleType, data: str | bytes) -> Any:
    return av.open(io.BytesIO(data) if isinstance(data, bytes) else data, "r")


def _probe(av: ModuleType, data: str | bytes, name: str) -> _Probe:
    """Duration and keyframes from packet headers alone (nothing is decoded)."""
    with _open(av, data) as inp:
        if not inp.streams.video:
            if inp.streams.audio:
                raise ChunkingError(
                    f"{name}: has no video stream, only audio; embed it as audio instead"
                )
            raise ChunkingError(
                f"{name}: no stream could be read from it (its header, the MP4 'moov' box, is "
                "damaged, or the file is truncated); re-encode or download it again"
            )
        vs = inp.streams.video[0]
        tb = vs.time_base
        if tb is None or tb <= 0:
            raise ChunkingError(f"{name}: the video stream has no usable time base")
        rate = vs.average_rate or vs.guessed_rate or 25
        # A broken or slideshow-like rate would make the frame grid absurd: keep it in 1–1000.
        fps = min(max(float(rate) if rate else 25.0, 1.0), 1000.0)
        audio = inp.streams.audio[0].codec_context.name if inp.streams.audio else None
        keyframes: list[int] = []
        first: int | None = None
        end: int | None = None
        for packet in inp.demux(vs):
            if packet.pts is None:
                continue
            pts = int(packet.pts)
            first = pts if first is None else min(first, pts)
            stop = pts + max(int(packet.duration or 0), 0)
            end = stop if end is None else max(end, stop)
            if packet.is_keyframe:
                keyframes.append(pts)
        if first is None or end is None or not keyframes:
            raise ChunkingError(f"{name}: the video stream holds no decodable frames")
        codec = vs.codec_context.name
    origin = float(first * tb)
    duration = float(end * tb) - origin
    if duration <= 0:
        duration = 1 / fps
    return _Probe(
        origin=origin,
        duration=duration,
        keyframes=tuple(sorted(float(k * tb) - origin for k in set(keyframes))),
        fps=fps,
        video_codec=codec,
        audio_codec=audio,
    )


def _video_chunks(data: str | bytes, job: _Job) -> Iterator[Chunk]:
    """The generator the sandbox runs: probe, plan, then cut one segment at a time."""
    av = import_optional("av", extra="video", purpose="VideoChunker")
    try:
        probe = _probe(av, data, job.name)
        if job.strategy in ("segments", "both"):
            yield from _segments(av, data, probe, job)
        if job.strategy in ("keyframes", "both"):
            yield from _keyframes(av, data, probe, job)
    except MMEmbedError:
        raise
    except Exception as exc:
        # The one translation boundary for PyAV/FFmpeg errors on bad input.
        raise ChunkingError(
            f"{job.name}: cannot cut this video ({type(exc).__name__}: {exc}); the file is "
            "probably corrupt — re-encode it or skip it"
        ) from exc


def _segments(av: ModuleType, data: str | bytes, probe: _Probe, job: _Job) -> Iterator[Chunk]:
    """MP4 segments, one at a time, by remux or re-encode as the plan says."""
    plan, mode = _plan(probe, job)
    for index, (start, end) in enumerate(plan):
        if mode == "remux":
            blob, span = _remux(av, data, probe, start, end, job)
        else:
            blob, span = _reencode(av, data, probe, start, end, job)
        meta: dict[str, Any] = {
            "kind": "segment",
            "mode": mode,
            "index": index,
            "duration": round(probe.duration, 6),
        }
        if job.frames_per_segment:
            times, frames = _sample_frames(av, blob, span, job)
            meta["frame_times"] = times
            meta["frames"] = frames
        yield Chunk(
            content=Video(blob, "video/mp4"),
            source=job.name,
            span=span,
            metadata=MappingProxyType(meta),
        )


def _thumb(frame: Any) -> Any:
    """A 64×36 colour thumbnail of a frame, as floats from 0 to 1."""
    import numpy as np

    small = frame.reformat(width=_THUMB[0], height=_THUMB[1], format="rgb24").to_ndarray()
    return np.asarray(small, dtype=np.float32) / 255.0


def _differs(a: Any, b: Any, threshold: float) -> bool:
    """Whether more than ``threshold`` of the picture changed.

    The thumbnails are compared in 4×4-pixel blocks (a 16×9 grid); a block changed when its
    pixels moved by more than :data:`_BLOCK_CHANGE` on average. New text on a slide changes
    about a fifth of the blocks; a speaker moving in a small corner picture, a few.
    """
    import numpy as np

    diff = np.abs(a - b).mean(axis=2)
    rows, cols = diff.shape[0] // 4, diff.shape[1] // 4
    blocks = diff[: rows * 4, : cols * 4].reshape(rows, 4, cols, 4).mean(axis=(1, 3))
    return float(np.mean(blocks > _BLOCK_CHANGE)) > threshold


def _keyframes(av: ModuleType, data: str | bytes, probe: _Probe, job: _Job) -> Iterator[Chunk]:
    """One JPEG per scene, with the span it stays on screen.

    Only the video's keyframes are decoded; each is compared with the current scene's picture.
    When one differs (and the scene has lasted ``keyframe_min_seconds``), the interval since the
    previous keyframe is decoded in steps of ``keyframe_step_seconds`` to find when it changed.
    A scene is yielded once the next one starts (its end is known then), the last at the end.
    """
    scene_start = 0.0
    scene_thumb: Any = None
    scene_jpeg = b""
    scene_time = 0.0
    prev_time = 0.0
    index = 0
    with _open(av, data) as inp:
        vs = inp.streams.video[0]
        vs.codec_context.skip_frame = "NONKEY"
        for frame in inp.decode(vs):
            if frame.time is None:
                continue
            t = max(0.0, float(frame.time) - probe.origin)
            thumb = _thumb(frame)
            if scene_thumb is None:
                scene_thumb, scene_jpeg, scene_time = thumb, _jpeg(frame, job), t
                prev_time = t
                continue
            if t - scene_start >= job.keyframe_min_seconds and _differs(
                thumb, scene_thumb, job.keyframe_threshold
            ):
                low = max(prev_time, scene_start + job.keyframe_min_seconds)
                change = _change_time(av, data, probe, job, low, t, scene_thumb)
                yield _keyframe(job, probe, index, scene_start, change, scene_time, scene_jpeg)
                index += 1
                scene_start = change
                scene_thumb, scene_jpeg, scene_time = thumb, _jpeg(frame, job), t
            prev_time = t
    if scene_thumb is None:
        raise ChunkingError(f"{job.name}: no picture could be decoded from the video")
    yield _keyframe(job, probe, index, scene_start, probe.duration, scene_time, scene_jpeg)


def _change_time(
    av: ModuleType, data: str | bytes, probe: _Probe, job: _Job, low: float, high: float, old: Any
) -> float:
    """The first moment in ``(low, high]`` whose picture differs from ``old`` (``high`` if none).

    Decodes from the keyframe at or before ``low``, looking at one frame per step.
    """
    next_look = low + job.keyframe_step_seconds
    with _open(av, data) as inp:
        vs = inp.streams.video[0]
        inp.seek(max(0, math.floor((low + probe.origin) / vs.time_base)), stream=vs, backward=True)
        for frame in inp.decode(vs):
            if frame.time is None:
                continue
            t = float(frame.time) - probe.origin
            if t >= high - _EPS:
                break
            if t + _EPS < next_look:
                continue
            next_look = t + job.keyframe_step_seconds
            if _differs(_thumb(frame), old, job.keyframe_threshold):
                return max(low, t)
    return high


def _jpeg(frame: Any, job: _Job) -> bytes:
    pil = frame.to_image()
    pil.thumbnail((job.frame_max_side, job.frame_max_side))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _keyframe(
    job: _Job, probe: _Probe, index: int, start: float, end: float, time: float, jpeg: bytes
) -> Chunk:
    start = min(max(0.0, start), probe.duration)
    return Chunk(
        content=Image(jpeg, "image/jpeg"),
        source=job.name,
        span=TimeSpan(round(start, 6), round(max(start, min(end, probe.duration)), 6)),
        metadata=MappingProxyType(
            {
                "kind": "keyframe",
                "index": index,
                "time": round(time, 6),
                "duration": round(probe.duration, 6),
            }
        ),
    )


def _plan(probe: _Probe, job: _Job) -> tuple[list[tuple[float, float]], str]:
    remuxable = probe.video_codec in _REMUX_VIDEO
    if job.mode != "reencode" and remuxable:
        plan = plan_keyframes(
            probe.keyframes,
            probe.duration,
            min_len=job.min_segment_seconds,
            max_len=job.segment_seconds,
            overlap=job.overlap_seconds,
        )
        if plan is not None:
            return plan, "remux"
    if job.mode == "remux":
        if not remuxable:
            why = f"its codec {probe.video_codec!r} is not one the API takes"
        else:
            gaps = [b - a for a, b in zip(probe.keyframes, probe.keyframes[1:], strict=False)]
            widest = max([*gaps, probe.duration - probe.keyframes[-1]])
            why = (
                f"its keyframes are up to {widest:.1f} s apart, too sparse for segments of "
                f"{job.min_segment_seconds:g}–{job.segment_seconds:g} s"
            )
        raise ChunkingError(
            f"{job.name}: cannot be cut without re-encoding: {why}; use mode='auto' or "
            "mode='reencode'"
        )
    # A re-encoded segment holds whole frames: cut on the frame grid, so that no frame runs past
    # a cut (and no segment past the limit).
    fps = probe.fps
    total = max(1, round(probe.duration * fps))
    longest = max(1, math.floor(job.segment_seconds * fps + _EPS))
    shared = min(math.ceil(job.overlap_seconds * fps - _EPS), longest - 1)
    plan = [
        (a / fps, probe.duration if b >= total else b / fps)
        for a, b in plan_frames(total, longest, shared)
    ]
    return plan, "reencode"


def _remux(
    av: ModuleType, data: str | bytes, probe: _Probe, start: float, end: float, job: _Job
) -> tuple[bytes, TimeSpan]:
    """Copy the packets of ``[start, end)`` (keyframe times) into a new MP4, no decoding."""
    with _open(av, data) as inp, _scratch() as target:
        vin = inp.streams.video[0]
        ain = None
        if job.audio and inp.streams.audio:
            a0 = inp.streams.audio[0]
            if a0.codec_context.name in _REMUX_AUDIO:
                ain = a0
        vtb = vin.time_base
        v_off = round((start + probe.origin) / vtb)
        v_end = round((end + probe.origin) / vtb)
        a_off = round((start + probe.origin) / ain.time_base) if ain is not None else 0
        a_end = round((end + probe.origin) / ain.time_base) if ain is not None else 0
        v_slack = round(_INTERLEAVE_SECONDS / vtb)
        with av.open(str(target), "w", format="mp4", options=_MP4_OPTIONS) as out:
            vout = out.add_stream_from_template(vin)
            aout = out.add_stream_from_template(ain) if ain is not None else None
            inp.seek(v_off, stream=vin, backward=True, any_frame=False)
            streams = [vin] if ain is None else [vin, ain]
            video_done = False
            audio_done = ain is None
            first_pts: int | None = None
            last_stop = v_off
            for packet in inp.demux(streams):
                if packet.pts is None or packet.dts is None:
                    continue
                pts = int(packet.pts)
                if packet.stream.type == "video":
                    if int(packet.dts) >= v_end and pts >= v_end:
                        video_done = True
                        # Audio this far behind the video is missing, not late: stop here
                        # rather than read on to the end of the file for every segment.
                        audio_done = audio_done or int(packet.dts) >= v_end + v_slack
                    if pts < v_off or pts >= v_end:
                        if video_done and audio_done:
                            break
                        continue
                    if first_pts is None:
                        first_pts = pts
                    last_stop = max(last_stop, pts + max(int(packet.duration or 0), 0))
                    packet.pts -= v_off
                    packet.dts -= v_off
                    packet.stream = vout
                else:
                    if pts >= a_end:
                        audio_done = True
                        if video_done:
                            break
                        continue
                    if pts < a_off:
                        continue
                    packet.pts -= a_off
                    packet.dts -= a_off
                    packet.stream = aout
                out.mux(packet)
        blob = target.read_bytes()
    if first_pts is None:
        raise ChunkingError(
            f"{job.name}: no video frames between {start:.3f} s and {end:.3f} s; the file is "
            "probably truncated or corrupt"
        )
    seg_start = float(first_pts * vtb) - probe.origin
    seg_end = min(float(last_stop * vtb) - probe.origin, end)
    return blob, TimeSpan(max(seg_start, 0.0), max(seg_end, seg_start, 0.0))


def _reencode(
    av: ModuleType, data: str | bytes, probe: _Probe, start: float, end: float, job: _Job
) -> tuple[bytes, TimeSpan]:
    """Decode ``[start, end)`` and encode it as H.264 (+ AAC), cutting at the exact frames."""
    fps = Fraction(probe.fps).limit_denominator(1001)
    if fps <= 0:
        fps = Fraction(25)
    step = 1 / float(fps)
    # A frame belongs to the segment its start time falls in (half a frame's tolerance for
    # rounding in the time base).
    lo, hi = start - step / 2, end - step / 2
    first_t: float | None = None
    last_t = start
    with _open(av, data) as inp, _scratch() as target:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if job.audio and inp.streams.audio else None
        with av.open(str(target), "w", format="mp4", options=_MP4_OPTIONS) as out:
            # Every stream exists before the first packet is muxed (that writes the header).
            vout = _video_stream(out, vin, fps, job)
            aout: Any = None
            resampler: Any = None
            if ain is not None and ain.codec_context.sample_rate:
                rate = int(ain.codec_context.sample_rate)
                layout = "mono" if ain.codec_context.channels == 1 else "stereo"
                aout = out.add_stream("aac", rate=rate, layout=layout)
                aout.bit_rate = 96_000
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            next_pts = 0
            a_next = 0
            inp.seek(round((start + probe.origin) / vin.time_base), stream=vin, backward=True)
            video_done = False
            audio_done = aout is None
            streams = [vin] if aout is None else [vin, ain]
            for packet in inp.demux(streams):
                for frame in packet.decode():
                    if frame.pts is None or frame.time is None:
                        continue
                    t = float(frame.time) - probe.origin
                    if isinstance(frame, av.VideoFrame):
                        if t >= hi:
                            video_done = True
                            audio_done = audio_done or t >= end + _INTERLEAVE_SECONDS
                            continue
                        if t < lo:
                            continue
                        if first_t is None:
                            first_t = t
                        last_t = t
                        img = frame.reformat(
                            width=vout.codec_context.width,
                            height=vout.codec_context.height,
                            format="yuv420p",
                        )
                        img.pts = next_pts
                        img.time_base = 1 / fps
                        next_pts += 1
                        out.mux(vout.encode(img))
                    elif resampler is not None:
                        rate = frame.sample_rate
                        n = frame.samples
                        a = max(0, round((start - t) * rate))
                        b = min(n, round((end - t) * rate))
                        if b <= 0 or a >= n:
                            if a >= n:
                                continue
                            audio_done = True
                            continue
                        for rf in resampler.resample(frame):
                            arr = rf.to_ndarray()[:, a:b]
                            a, b = 0, b - a  # only the first resampled frame needs the offset
                            if arr.shape[1] == 0:
                                continue
                            chunk = av.AudioFrame.from_ndarray(
                                arr.copy(), format="fltp", layout=rf.layout.name
                            )
                            chunk.sample_rate = rf.sample_rate
                            chunk.pts = a_next
                            chunk.time_base = Fraction(1, rf.sample_rate)
                            a_next += arr.shape[1]
                            out.mux(aout.encode(chunk))
                if video_done and audio_done:
                    break
            if first_t is None:
                raise ChunkingError(
                    f"{job.name}: no video frames between {start:.3f} s and {end:.3f} s; the "
                    "file is probably truncated or corrupt"
                )
            out.mux(vout.encode(None))
            if aout is not None:
                out.mux(aout.encode(None))
        blob = target.read_bytes()
    assert first_t is not None
    # The frames shown from the cut to the next cut: exact on a constant frame rate, and never
    # outside the planned cut when the timestamps are irregular.
    seg_start = max(first_t, start, 0.0)
    seg_end = min(last_t + step, end)
    return blob, TimeSpan(seg_start, max(seg_end, seg_start))


def _video_stream(out: Any, vin: Any, fps: Fraction, job: _Job) -> Any:
    src_w = int(vin.codec_context.width or 0)
    src_h = int(vin.codec_context.height or 0)
    if src_w <= 0 or src_h <= 0:
        raise ChunkingError(f"{job.name}: the video stream declares no frame size")
    scale = min(1.0, job.max_height / src_h)
    # H.264 with 4:2:0 chroma needs even dimensions.
    width = max(2, int(src_w * scale) // 2 * 2)
    hgt = max(2, int(src_h * scale) // 2 * 2)
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, hgt, "yuv420p"
    stream.options = {"preset": job.preset, "crf": str(job.crf)}
    return stream


def _sample_frames(
    av: ModuleType, blob: bytes, span: TimeSpan, job: _Job
) -> tuple[tuple[float, ...], tuple[Image, ...]]:
    """``frames_per_segment`` JPEG frames spread evenly over the segment just made."""
    n = job.frames_per_segment
    length = span.duration
    wanted = [length * (k + 0.5) / n for k in range(n)]
    times: list[float] = []
    images: list[Image] = []
    with av.open(io.BytesIO(blob), "r") as seg:
        vs = seg.streams.video[0]
        for w in wanted:
            seg.seek(max(0, math.floor(w / vs.time_base)), stream=vs, backward=True)
            picked = None
            for frame in seg.decode(vs):
                if frame.time is None:
                    continue
                picked = frame
                if frame.time >= w - _EPS:
                    break
            if picked is None:
                continue
            pil = picked.to_image()
            pil.thumbnail((job.frame_max_side, job.frame_max_side))
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=85)
            times.append(round(span.start + float(picked.time), 6))
            images.append(Image(buf.getvalue(), "image/jpeg"))
    return tuple(times), tuple(images)
