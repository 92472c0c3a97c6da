"""Small real media files for the audio and video tests, generated in well under a second each.

Also used by ``benchmarks/chunking.py`` (which makes long, large ones), so nothing here depends
on pytest.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np


def make_video(
    path: Path | None = None,
    *,
    seconds: float = 60.0,
    fps: int = 10,
    width: int = 160,
    height: int = 96,
    gop: int | None = 20,
    audio: bool = True,
    codec: str = "libx264",
    container: str = "mp4",
    preset: str = "ultrafast",
    crf: int = 30,
    audio_seconds: float | None = None,
) -> bytes | None:
    """Encode a synthetic video: a moving square on a gradient, plus a 440 Hz tone.

    Args:
        path: where to write the file; ``None`` returns the bytes instead.
        seconds: length of the video.
        fps: frames per second.
        width: frame width in pixels.
        height: frame height in pixels.
        gop: frames between keyframes (fixed, no scene-cut keyframes); ``None`` lets x264 choose
            (at most 250 frames).
        audio: add an AAC tone track.
        codec: the video encoder (``libx264`` or ``mpeg4``).
        container: the muxer name (``mp4``, ``mov``, ``matroska``).
        preset: the x264 preset.
        crf: the x264 quality.
        audio_seconds: length of the tone track when it should differ from the video's.
    """
    import av

    target: Path | io.BytesIO = path if path is not None else io.BytesIO()
    out = av.open(target, "w", format=container)
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        params = "scenecut=0" if gop is None else f"keyint={gop}:min-keyint={gop}:scenecut=0"
        vs.options = {"preset": preset, "crf": str(crf), "x264-params": params}
    elif gop is not None:
        vs.codec_context.gop_size = gop
    aus = None
    sr = 16000
    if audio:
        aus = out.add_stream("aac", rate=sr, layout="mono")
    n = round(seconds * fps)
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    base = np.empty((height, width, 3), np.uint8)
    base[..., 0] = ramp
    base[..., 1] = ramp[::-1]
    base[..., 2] = 96
    for i in range(n):
        img = base.copy()
        x = (i * 3) % max(1, width - 16)
        # a shade that changes every second makes each second's frames tell apart
        img[30:46, x : x + 16] = (i // fps * 37) % 256
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, fps)
        out.mux(vs.encode(frame))
    out.mux(vs.encode(None))
    if aus is not None:
        total = round((seconds if audio_seconds is None else audio_seconds) * sr)
        t = np.arange(total, dtype=np.float32) / sr
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        step = 1024
        for start in range(0, total, step):
            block = tone[start : start + step].reshape(1, -1)
            af = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
            af.sample_rate = sr
            af.pts = start
            af.time_base = Fraction(1, sr)
            out.mux(aus.encode(af))
        out.mux(aus.encode(None))
    out.close()
    if isinstance(target, io.BytesIO):
        return target.getvalue()
    return None


def tone(seconds: float, sr: int = 16000, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A float32 sine of ``seconds`` whose frequency rises slowly, shape ``(frames, channels)``."""
    t = np.arange(round(seconds * sr), dtype=np.float64) / sr
    sweep = 0.4 * np.sin(2 * np.pi * (freq * t + 2.0 * t * t))
    data = np.repeat(sweep[:, None], channels, axis=1).astype(np.float32)
    return data


def make_audio(
    path: Path | None = None,
    *,
    seconds: float = 20.0,
    sr: int = 16000,
    channels: int = 1,
    format: str = "WAV",
) -> bytes | None:
    """Write a tone with soundfile (``WAV``, ``FLAC``, ``OGG``, ``MP3``), in blocks."""
    import soundfile as sf

    target: Path | io.BytesIO = path if path is not None else io.BytesIO()
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[format]
    with sf.SoundFile(
        target, "w", samplerate=sr, channels=channels, format=format, subtype=subtype
    ) as f:
        block = sr * 10  # libvorbis crashes on one write of more than ~2M frames
        total = round(seconds * sr)
        for start in range(0, total, block):
            n = min(block, total - start)
            f.write(tone(n / sr, sr, channels, freq=440.0 + start / sr))
    if isinstance(target, io.BytesIO):
        return target.getvalue()
    return None


def make_m4a(path: Path | None = None, *, seconds: float = 20.0, sr: int = 44100) -> bytes | None:
    """Encode a tone as AAC in an M4A (ipod) container with PyAV."""
    import av

    target: Path | io.BytesIO = path if path is not None else io.BytesIO()
    out = av.open(target, "w", format="ipod")
    st = out.add_stream("aac", rate=sr, layout="mono")
    data = tone(seconds, sr)[:, 0]
    for start in range(0, len(data), 1024):
        block = data[start : start + 1024].reshape(1, -1)
        af = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
        af.sample_rate = sr
        af.pts = start
        af.time_base = Fraction(1, sr)
        out.mux(st.encode(af))
    out.mux(st.encode(None))
    out.close()
    if isinstance(target, io.BytesIO):
        return target.getvalue()
    return None
