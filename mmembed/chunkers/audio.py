"""Cut long audio into overlapping windows the embedding API accepts, with exact time spans.

Windows are read by seeking (soundfile: WAV, FLAC, OGG, MP3, AIFF…) or by one streaming decode
(PyAV: M4A/AAC, Opus in WebM, the audio track of a video…), so memory stays bounded by one
window however long the input. Each window is resampled with soxr and written as WAV (16-bit
PCM) or MP3; a recording already at the output's rate and channels is copied frame by frame
into WAV windows, with no resampling at all.

>>> from mmembed.chunkers import AudioChunker
>>> chunker = AudioChunker(window_seconds=30, overlap_seconds=5)
>>> for chunk in chunker.chunk("talk.m4a"):  # doctest: +SKIP
...     print(chunk.uri)
talk.m4a#t=0,30
talk.m4a#t=25,55

Decoding runs in a separate process (see :mod:`mmembed.chunkers._sandbox`), so a hostile file
costs a :class:`~mmembed.errors.ChunkingError`, never the caller's process.
"""

from __future__ import annotations

import io
import math
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mmembed._optional import import_optional
from mmembed.chunkers._common import SandboxedChunker
from mmembed.chunkers._plan import iter_windows
from mmembed.chunkers._source import media_source
from mmembed.content import Audio, Part, Video
from mmembed.errors import ChunkingError, ConfigurationError, MMEmbedError
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits
from mmembed.protocols import Chunk, TimeSpan

__all__ = ["AudioChunker"]

AudioFormat = Literal["wav", "mp3"]

_MIME = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_SF_FORMAT = {"wav": ("WAV", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
#: Frames per read and per write. libsndfile's Vorbis writer overflows its stack on one write of
#: more than ~2M frames; blocks this size also keep the resampler's buffers small.
_BLOCK = 1 << 16
Samples = NDArray[np.float32]
#: Sample rates real recordings use; anything outside is a corrupt header.
_MIN_RATE, _MAX_RATE = 1000, 768_000


@dataclass(frozen=True, slots=True, kw_only=True)
class _Job:
    """Everything the decoder process needs, as plain picklable values."""

    name: str
    window_seconds: float
    overlap_seconds: float
    format: AudioFormat
    sample_rate: int
    mono: bool
    quality: str


class AudioChunker(SandboxedChunker):
    """Cut audio (or a video's audio track) into windows that each fit one embedding.

    Args:
        limits: the embedding model's limits; windows never exceed ``limits.max_audio_seconds``
            and are written in a format the model takes. Defaults to Gemini Embedding 2's.
        window_seconds: the length of each window; defaults to the model's limit. Every window
            has this length (the last one ends at the end of the input and overlaps its
            neighbour more), except a whole input that is shorter.
        overlap_seconds: the time consecutive windows share (default 5 % of the window).
        format: ``"wav"`` (16-bit PCM) or ``"mp3"``.
        sample_rate: the output rate in Hz (Gemini resamples to 16 kHz itself, so more is waste).
        mono: mix down to one channel (otherwise keep up to two).
        quality: soxr resampling quality (``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"``, ``"VHQ"``).
        timeout: seconds the decoder may spend on one window before it is stopped.
        memory_mb: the decoder process's address-space limit in MiB.
        isolate: decode in a separate process (``False``: in this one, faster but unprotected).

    Raises:
        ConfigurationError: inconsistent lengths, a window over the model's limit, or a format
            the model does not take.
    """

    def __init__(
        self,
        *,
        limits: ModelLimits | None = None,
        window_seconds: float | None = None,
        overlap_seconds: float | None = None,
        format: AudioFormat = "wav",
        sample_rate: int = 16000,
        mono: bool = True,
        quality: str = "HQ",
        timeout: float = 120.0,
        memory_mb: int | None = 2048,
        isolate: bool = True,
    ) -> None:
        self.limits = limits if limits is not None else GEMINI_EMBEDDING_2
        cap = self.limits.max_audio_seconds
        if self.limits.max_audio_per_item < 1 or cap <= 0:
            raise ConfigurationError(f"{self.limits.model} does not take audio; pick one that does")
        window = cap if window_seconds is None else float(window_seconds)
        if not 0 < window <= cap:
            raise ConfigurationError(
                f"window_seconds must be in (0, {cap:g}] (the limit of {self.limits.model}), "
                f"got {window:g}"
            )
        overlap = round(window * 0.05, 3) if overlap_seconds is None else float(overlap_seconds)
        if not 0 <= overlap < window:
            raise ConfigurationError(
                f"overlap_seconds must be >= 0 and below window_seconds ({window:g}), "
                f"got {overlap:g}"
            )
        if format not in _MIME:
            raise ConfigurationError(f"format must be 'wav' or 'mp3', got {format!r}")
        if _MIME[format] not in self.limits.audio_mime_types:
            raise ConfigurationError(
                f"{self.limits.model} does not take {_MIME[format]}; use one of "
                f"{sorted(self.limits.audio_mime_types)}"
            )
        if not 8000 <= sample_rate <= 192000:
            raise ConfigurationError(f"sample_rate must be 8000–192000 Hz, got {sample_rate}")
        if format == "mp3" and sample_rate not in (
            8000,
            11025,
            12000,
            16000,
            22050,
            24000,
            32000,
            44100,
            48000,
        ):
            raise ConfigurationError(
                f"MP3 cannot hold {sample_rate} Hz; use 16000, 22050, 24000, 32000, 44100 or 48000"
            )
        if quality not in ("QQ", "LQ", "MQ", "HQ", "VHQ"):
            raise ConfigurationError(f"quality must be QQ, LQ, MQ, HQ or VHQ, got {quality!r}")
        self.window_seconds = window
        self.overlap_seconds = overlap
        self.format: AudioFormat = format
        self.sample_rate = sample_rate
        self.mono = mono
        self.quality = quality
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.isolate = isolate

    def __repr__(self) -> str:
        return (
            f"AudioChunker(model={self.limits.model!r}, window_seconds={self.window_seconds:g}, "
            f"overlap_seconds={self.overlap_seconds:g}, format={self.format!r}, "
            f"sample_rate={self.sample_rate})"
        )

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        """Yield the windows of ``source`` in time order, each a :class:`Chunk` of WAV/MP3.

        ``span`` is the window's :class:`TimeSpan` in seconds from the start of the input, exact
        to the source's sample; ``metadata`` has ``index``, ``sample_rate`` and ``reader``
        (``"soundfile"`` or ``"pyav"``).

        Raises:
            UnsupportedMediaError: the source is neither audio nor video.
            ChunkingError: the audio cannot be decoded (corrupt, hostile, too slow).
        """
        import_optional("soxr", extra="audio", purpose="AudioChunker")
        data, name = media_source(source, accept=(Audio, Video), chunker="AudioChunker")
        job = _Job(
            name=name,
            window_seconds=self.window_seconds,
            overlap_seconds=self.overlap_seconds,
            format=self.format,
            sample_rate=self.sample_rate,
            mono=self.mono,
            quality=self.quality,
        )
        yield from self._isolated(
            _audio_chunks, data, job, name=name, preload=("numpy", "soundfile", "soxr")
        )


# ---------------------------------------------------------------------------------------------
# Decoder side: everything below runs in the isolated process.


def _audio_chunks(data: str | bytes, job: _Job) -> Iterator[Chunk]:
    """The generator the sandbox runs: soundfile when it can read the input, PyAV otherwise."""
    soxr = import_optional("soxr", extra="audio", purpose="AudioChunker")
    try:
        opened = _open_soundfile(data)
        if opened is not None:
            with opened as f:
                yield from _soundfile_windows(soxr, f, job)
        else:
            av = import_optional("av", extra="audio", purpose="AudioChunker (for this format)")
            yield from _pyav_windows(av, soxr, data, job)
    except MMEmbedError:
        raise
    except Exception as exc:
        # The one translation boundary for libsndfile/FFmpeg/soxr errors on bad input.
        raise ChunkingError(
            f"{job.name}: cannot cut this audio ({type(exc).__name__}: {exc}); the file is "
            "probably corrupt — re-encode it or skip it"
        ) from exc


def _open_soundfile(data: str | bytes) -> Any:
    """A soundfile reader for ``data``, or ``None`` when libsndfile does not know the format."""
    import soundfile as sf

    try:
        return sf.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None


def _emit(
    job: _Job, index: int, start: int, stop: int, rate: int, blob: bytes, reader: str
) -> Chunk:
    return Chunk(
        content=Audio(blob, _MIME[job.format]),
        source=job.name,
        span=TimeSpan(start / rate, stop / rate),
        metadata=MappingProxyType(
            {"index": index, "sample_rate": job.sample_rate, "reader": reader}
        ),
    )


class _Writer:
    """Encodes one window block by block, resampling on the way."""

    def __init__(self, soxr: ModuleType, job: _Job, in_rate: int, channels: int) -> None:
        import soundfile as sf

        self._buf = io.BytesIO()
        fmt, subtype = _SF_FORMAT[job.format]
        self._out = sf.SoundFile(
            self._buf,
            "w",
            samplerate=job.sample_rate,
            channels=channels,
            format=fmt,
            subtype=subtype,
        )
        self._resampler = (
            soxr.ResampleStream(
                in_rate, job.sample_rate, channels, dtype="float32", quality=job.quality
            )
            if in_rate != job.sample_rate
            else None
        )

    def write(self, block: Samples, *, last: bool) -> None:
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block, last=last)
        for i in range(0, len(block), _BLOCK):
            self._out.write(np.clip(block[i : i + _BLOCK], -1.0, 1.0))

    def finish(self) -> bytes:
        self._out.close()
        return self._buf.getvalue()


def _wav(frames: NDArray[np.int16], rate: int) -> bytes:
    """16-bit PCM frames ``(n, channels)`` as a WAV file, header written here."""
    channels = int(frames.shape[1])
    data: bytes = np.ascontiguousarray(frames, dtype="<i2").tobytes()
    header = b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt "
    header += (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
    header += channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
    header += (rate * channels * 2).to_bytes(4, "little") + (channels * 2).to_bytes(2, "little")
    header += (16).to_bytes(2, "little") + b"data" + len(data).to_bytes(4, "little")
    return header + data


def _layout(block: Samples, mono: bool) -> Samples:
    """Mix to mono, or keep at most the first two channels (front left/right)."""
    if mono:
        mixed: Samples = block.mean(axis=1, keepdims=True, dtype=np.float32)
        return mixed
    return block[:, :2]


def _soundfile_windows(soxr: ModuleType, f: Any, job: _Job) -> Iterator[Chunk]:
    rate = int(f.samplerate)
    total = int(f.frames)
    if total <= 0 or f.channels <= 0:
        raise ChunkingError(f"{job.name}: holds no audio samples")
    _check_rate(rate, job)
    channels = 1 if job.mono else min(int(f.channels), 2)
    plan = iter_windows(total, *_window_frames(job, rate))
    # Already at the output's rate and layout: windows are copied as 16-bit frames, with no
    # resampling and no float conversion (ten times faster).
    copy = job.format == "wav" and rate == job.sample_rate and int(f.channels) == channels
    for index, (start, stop) in enumerate(plan):
        f.seek(start)
        if copy:
            frames = f.read(stop - start, dtype="int16", always_2d=True)
            if len(frames) == 0:
                if index == 0:
                    raise ChunkingError(f"{job.name}: holds no readable audio samples")
                return
            blob = _wav(frames, rate)
            yield _emit(job, index, start, start + len(frames), rate, blob, "soundfile")
            if start + len(frames) < stop:
                return  # truncated: what was there has been emitted
            continue
        writer = _Writer(soxr, job, rate, channels)
        pos = start
        while pos < stop:
            block = f.read(min(_BLOCK, stop - pos), dtype="float32", always_2d=True)
            if len(block) == 0:
                break  # the header promised more than the file holds
            pos += len(block)
            writer.write(_layout(block, job.mono), last=pos >= stop)
        if pos == start:
            if index == 0:
                raise ChunkingError(f"{job.name}: holds no readable audio samples")
            return
        if pos < stop:
            writer.write(np.zeros((0, channels), np.float32), last=True)
        yield _emit(job, index, start, pos, rate, writer.finish(), "soundfile")
        if pos < stop:
            return  # truncated: what was there has been emitted


def _pyav_windows(
    av: ModuleType, soxr: ModuleType, data: str | bytes, job: _Job
) -> Iterator[Chunk]:
    """Decode once, front to back, holding at most about one window and one hop of samples."""
    with av.open(io.BytesIO(data) if isinstance(data, bytes) else data, "r") as inp:
        if not inp.streams.audio:
            raise ChunkingError(f"{job.name}: has no audio stream")
        stream = inp.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or 0)
        src_channels = int(stream.codec_context.channels or 0)
        if src_channels <= 0:
            raise ChunkingError(f"{job.name}: the audio stream declares no channels")
        _check_rate(rate, job)
        channels = 1 if job.mono or src_channels == 1 else 2
        resampler = av.AudioResampler(
            format="flt", layout="mono" if channels == 1 else "stereo", rate=rate
        )
        window, overlap = _window_frames(job, rate)
        hop = window - overlap
        windower = _Windower(window, hop, channels)
        index = 0
        for frame in inp.decode(stream):
            for out in resampler.resample(frame):
                windower.push(out.to_ndarray().reshape(-1, channels))
            for start, samples in windower.ready():
                yield _encode(soxr, job, index, start, samples, rate, channels)
                index += 1
        for out in resampler.resample(None):
            windower.push(out.to_ndarray().reshape(-1, channels))
        for start, samples in windower.finish():
            yield _encode(soxr, job, index, start, samples, rate, channels)
            index += 1
        if index == 0:
            raise ChunkingError(f"{job.name}: holds no decodable audio samples")


def _window_frames(job: _Job, rate: int) -> tuple[int, int]:
    """Window and overlap in sample frames; the window rounds down so it never exceeds the limit."""
    window = max(1, math.floor(job.window_seconds * rate + 1e-9))
    overlap = min(round(job.overlap_seconds * rate), window - 1)
    return window, overlap


def _check_rate(rate: int, job: _Job) -> None:
    # A corrupt header can claim 1 Hz, which resampling would blow up 16,000-fold.
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise ChunkingError(
            f"{job.name}: declares a sample rate of {rate} Hz, outside {_MIN_RATE}–{_MAX_RATE} "
            "Hz; the header is probably corrupt"
        )


def _encode(
    soxr: ModuleType, job: _Job, index: int, start: int, samples: Samples, rate: int, channels: int
) -> Chunk:
    writer = _Writer(soxr, job, rate, channels)
    for i in range(0, len(samples), _BLOCK):
        writer.write(samples[i : i + _BLOCK], last=i + _BLOCK >= len(samples))
    return _emit(job, index, start, start + len(samples), rate, writer.finish(), "pyav")


class _Windower:
    """Turns a stream of sample blocks into the windows of :func:`plan_windows`.

    The total length is unknown until the stream ends, so a regular window starting at ``s`` is
    released only once more than ``s + window`` samples have arrived (then it cannot be the last
    one); at the end, the last window is the final ``window`` samples.
    """

    def __init__(self, window: int, hop: int, channels: int) -> None:
        self.window, self.hop, self.channels = window, hop, channels
        self._blocks: deque[tuple[int, Samples]] = deque()  # (absolute start, samples)
        self._received = 0
        self._next = 0  # start of the next regular window

    def push(self, block: Samples) -> None:
        if len(block):
            self._blocks.append((self._received, block.astype(np.float32, copy=False)))
            self._received += len(block)

    def _take(self, start: int, stop: int) -> Samples:
        parts = [
            b[max(0, start - s) : max(0, stop - s)]
            for s, b in self._blocks
            if s < stop and s + len(b) > start
        ]
        if not parts:
            return np.zeros((0, self.channels), np.float32)
        joined: Samples = np.concatenate(parts)
        return joined

    def _trim(self) -> None:
        # Keep what a future window may need: from the next regular start, and the final
        # `window` samples (the last window is taken from the tail).
        keep = min(self._next, self._received - self.window)
        while self._blocks and self._blocks[0][0] + len(self._blocks[0][1]) <= keep:
            self._blocks.popleft()

    def ready(self) -> Iterator[tuple[int, Samples]]:
        while self._received > self._next + self.window:
            start = self._next
            self._next += self.hop
            yield start, self._take(start, start + self.window)
        self._trim()

    def finish(self) -> Iterator[tuple[int, Samples]]:
        total = self._received
        if total == 0:
            return
        if total <= self.window:
            if self._next == 0:
                yield 0, self._take(0, total)
            return
        yield total - self.window, self._take(total - self.window, total)
