"""Small real media files for tests: text, images, audio, video and PDFs, made on the spot.

Code that handles files is best tested on real ones, and a repository is better without binary
fixtures. Each function here makes a small valid file of one kind, in well under a second for
the defaults, with no network; the same arguments give the same bytes. It returns the file's
bytes, or writes the file to ``path=`` and returns that path (long media go straight to disk).

- :func:`make_text`: prose of an exact number of words, in paragraphs.
- :func:`make_image`: PNG, JPEG, WEBP, GIF, BMP, TIFF (anything Pillow writes), or HEIF.
- :func:`make_audio`: WAV, FLAC, OGG (Vorbis), MP3 or M4A (AAC) of a rising tone.
- :func:`make_video`: H.264 MP4, MOV or Matroska of a moving square, with or without a tone
  track.
- :func:`make_lecture`: a long, low-resolution recorded lecture: slides that change at given
  times (one may be a picture), a speaker in the corner and a tone track.
- :func:`make_pdf`: PDFs of A4 pages with real text (that pypdf and pdfium extract), optionally
  a picture on each page and password encryption.

Text, images, WAV/FLAC/OGG/MP3 and PDFs need only mmembed's own dependencies. Video and M4A need
PyAV (``pip install "mmembed[video]"``), HEIF needs ``mmembed[heif]``; without them the call
raises :class:`~mmembed.errors.MissingDependencyError` with the install line. Importing this
module imports none of them.

>>> from mmembed import load
>>> from mmembed.testing.media import make_audio, make_image, make_pdf
>>> load(make_image("JPEG", (64, 48))).mime_type
'image/jpeg'
>>> load(make_audio("FLAC", seconds=0.5)).mime_type
'audio/flac'
>>> load(make_pdf(["Sales report\\nSales grew in every region.", "Outlook\\nMore of the same."]))
Pdf(<... bytes>, mime_type='application/pdf')
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import textwrap
import zlib
from collections.abc import Collection, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from mmembed._optional import import_optional
from mmembed.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image as PILImage

__all__ = [
    "make_audio",
    "make_image",
    "make_lecture",
    "make_pdf",
    "make_text",
    "make_video",
    "page_heading",
]

StrPath = str | os.PathLike[str]

#: What generated text and PDF pages are about, in turn.
TOPICS = ("cats", "rockets", "volcanoes", "bicycles", "oceans", "violins", "glaciers", "bees")


def _deliver(data: bytes, path: StrPath | None) -> bytes | Path:
    if path is None:
        return data
    target = Path(path)
    target.write_bytes(data)
    return target


def _positive(name: str, value: float, what: str) -> None:
    if not value > 0:
        raise ConfigurationError(f"{what}: {name} must be positive, not {value!r}")


# ------------------------------------------------------------------------------------- text

_SENTENCES = (
    "This note is about {t}.",
    "Much has been written about {t}, and there is still more to learn.",
    "People who study {t} keep careful notes of what they see.",
    "A short history of {t} would fill a small book.",
    "Some facts about {t} surprise everyone who hears them for the first time.",
    "Ask ten people about {t} and you will hear ten different stories.",
)


@overload
def make_text(words: int = 100, *, seed: int = 0, path: None = None) -> str: ...
@overload
def make_text(words: int = 100, *, seed: int = 0, path: StrPath) -> Path: ...
def make_text(words: int = 100, *, seed: int = 0, path: StrPath | None = None) -> str | Path:
    """Plain English prose of exactly ``words`` words, in paragraphs of one topic each.

    Args:
        words: how many words (whitespace-separated).
        seed: another seed gives other topics and sentences.
        path: write the text there (UTF-8) and return the path, instead of returning the text.

    >>> make_text(12)
    'This note is about glaciers. People who study glaciers keep careful notes.\\n'
    """
    _positive("words", words, "make_text")
    rng = random.Random(seed)
    paragraphs: list[str] = []
    left = words
    while left > 0:
        topic = rng.choice(TOPICS)
        tokens: list[str] = []
        for _ in range(rng.randint(3, 6)):
            tokens += rng.choice(_SENTENCES).format(t=topic).split()
        tokens = tokens[:left]
        left -= len(tokens)
        paragraph = " ".join(tokens)
        paragraphs.append(paragraph if paragraph.endswith(".") else paragraph.rstrip(",") + ".")
    text = "\n\n".join(paragraphs) + "\n"
    if path is None:
        return text
    target = Path(path)
    target.write_text(text, encoding="utf-8")
    return target


# ----------------------------------------------------------------------------------- images

_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF"}


def _drawing(size: tuple[int, int], mode: str, seed: int) -> PILImage.Image:
    """A red square top left and a yellow disc bottom right: orientation and colour show."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    w, h = size
    background = ((30 + 41 * seed) % 256, (90 + 73 * seed) % 256, (160 + 17 * seed) % 256)
    im = PILImage.new(mode, size, background)
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, w // 3, h // 3), fill=(240, 40, 40))
    draw.ellipse((w // 2, h // 2, w - 1, h - 1), fill=(250, 220, 30))
    return im


def _noise(size: tuple[int, int], seed: int) -> PILImage.Image:
    import numpy as np
    from PIL import Image as PILImage

    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return PILImage.fromarray(pixels)


def _write_caption(im: PILImage.Image, caption: str) -> None:
    from PIL import ImageDraw, ImageFont

    w, h = im.size
    font = ImageFont.load_default(size=max(8, h // 10))
    ImageDraw.Draw(im).multiline_text(
        (w // 20, h // 2), caption, font=font, fill="white", stroke_width=1, stroke_fill="black"
    )


@overload
def make_image(
    format: str = "PNG",
    size: tuple[int, int] = (320, 200),
    *,
    noise: bool = False,
    seed: int = 0,
    caption: str | None = None,
    path: None = None,
    **save: Any,
) -> bytes: ...
@overload
def make_image(
    format: str = "PNG",
    size: tuple[int, int] = (320, 200),
    *,
    noise: bool = False,
    seed: int = 0,
    caption: str | None = None,
    path: StrPath,
    **save: Any,
) -> Path: ...
def make_image(
    format: str = "PNG",
    size: tuple[int, int] = (320, 200),
    *,
    noise: bool = False,
    seed: int = 0,
    caption: str | None = None,
    path: StrPath | None = None,
    **save: Any,
) -> bytes | Path:
    """An image: a drawing (a red square top left, a yellow disc bottom right) or noise.

    Args:
        format: any format Pillow writes (``PNG``, ``JPEG``, ``WEBP``, ``GIF``, ``BMP``,
            ``TIFF``, ...), or ``HEIF`` (needs ``mmembed[heif]``). PNG and WEBP drawings have an
            alpha channel.
        size: width and height in pixels.
        noise: random RGB pixels instead of the drawing: incompressible, so the file's size
            follows its area.
        seed: another seed gives another background colour, or other noise.
        caption: text written across the middle of the picture.
        path: write the file there and return the path, instead of returning the bytes.
        save: options for the encoder, e.g. ``quality=80``, ``lossless=True``, ``exif=...``.

    >>> from PIL import Image
    >>> Image.open(io.BytesIO(make_image("WEBP", (64, 48)))).size
    (64, 48)
    """
    from PIL import Image as PILImage

    fmt = _ALIASES.get(format.upper(), format.upper())
    _positive("width", size[0], "make_image")
    _positive("height", size[1], "make_image")
    if noise:
        im = _noise(size, seed)
    else:
        im = _drawing(size, "RGBA" if fmt in ("PNG", "WEBP") else "RGB", seed)
    if caption:
        _write_caption(im, caption)
    out = io.BytesIO()
    if fmt == "HEIF":
        heif = import_optional("pillow_heif", extra="heif", purpose="make_image('HEIF')")
        heif.from_pillow(im).save(out, **save)
    else:
        PILImage.init()
        if fmt not in PILImage.SAVE:
            raise ConfigurationError(
                f"make_image: Pillow cannot write {format!r}; use one of "
                f"{', '.join(sorted(PILImage.SAVE))}, or HEIF"
            )
        im.save(out, format=fmt, **save)
    return _deliver(out.getvalue(), path)


# ------------------------------------------------------------------------------------ audio

# soundfile's format and subtype for each audio format it writes
_SUBTYPES = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}
_LAYOUTS = {1: "mono", 2: "stereo"}


def _tone(start: int, frames: int, rate: int, channels: int, seed: int = 0) -> NDArray[np.float32]:
    """Samples ``start`` to ``start + frames`` of a tone rising from 440 Hz, ``(frames, ch)``.

    Another ``seed`` starts the tone a little higher, so recordings differ.
    """
    import numpy as np

    t = (start + np.arange(frames, dtype=np.float64)) / rate
    wave = 0.4 * np.sin(2 * np.pi * ((440.0 + 7.0 * seed) * t + 2.0 * t * t))
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def _mux_tone(out: Any, stream: Any, seconds: float, rate: int, channels: int) -> None:
    """Encode ``seconds`` of the tone into a PyAV AAC ``stream`` of ``out``, in small frames."""
    import numpy as np

    av = import_optional("av", extra="video", purpose="make_audio('M4A') and make_video")
    total = round(seconds * rate)
    for start in range(0, total, 1024):
        block = _tone(start, min(1024, total - start), rate, channels)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block.T), format="fltp", layout=_LAYOUTS[channels]
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


@overload
def make_audio(
    format: str = "WAV",
    *,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    channels: int = 1,
    seed: int = 0,
    path: None = None,
) -> bytes: ...
@overload
def make_audio(
    format: str = "WAV",
    *,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    channels: int = 1,
    seed: int = 0,
    path: StrPath,
) -> Path: ...
def make_audio(
    format: str = "WAV",
    *,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    channels: int = 1,
    seed: int = 0,
    path: StrPath | None = None,
) -> bytes | Path:
    """A tone rising slowly from 440 Hz (never silent), written in blocks however long.

    Args:
        format: ``WAV`` (16-bit PCM), ``FLAC``, ``OGG`` (Vorbis), ``MP3`` or ``M4A`` (AAC,
            needs ``mmembed[video]``).
        seconds: length of the recording.
        sample_rate: samples per second (a low rate keeps a long WAV small).
        channels: 1 or 2 for M4A, 1 or more for the others.
        seed: another seed gives another tone (WAV, FLAC, OGG and MP3).
        path: write the file there and return the path, instead of returning the bytes.

    >>> import soundfile
    >>> soundfile.info(io.BytesIO(make_audio(seconds=2.5, sample_rate=8000))).duration
    2.5
    """
    fmt = format.upper()
    _positive("seconds", seconds, "make_audio")
    _positive("sample_rate", sample_rate, "make_audio")
    _positive("channels", channels, "make_audio")
    target: Path | io.BytesIO = Path(path) if path is not None else io.BytesIO()
    if fmt == "M4A":
        av = import_optional("av", extra="video", purpose="make_audio('M4A')")
        if channels not in _LAYOUTS:
            raise ConfigurationError(f"make_audio: M4A takes 1 or 2 channels, not {channels}")
        with av.open(target, "w", format="ipod") as out:
            stream = out.add_stream("aac", rate=sample_rate, layout=_LAYOUTS[channels])
            _mux_tone(out, stream, seconds, sample_rate, channels)
    elif fmt in _SUBTYPES:
        import soundfile

        total = round(seconds * sample_rate)
        with soundfile.SoundFile(
            target, "w", sample_rate, channels, _SUBTYPES[fmt], format=fmt
        ) as f:
            block = sample_rate * 10  # libvorbis crashes on one write of more than ~2M frames
            for start in range(0, total, block):
                f.write(_tone(start, min(block, total - start), sample_rate, channels, seed))
    else:
        raise ConfigurationError(
            f"make_audio: unknown format {format!r}; use WAV, FLAC, OGG, MP3 or M4A"
        )
    return target.getvalue() if isinstance(target, io.BytesIO) else target


# ------------------------------------------------------------------------------------ video


@overload
def make_video(
    *,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 160,
    height: int = 96,
    gop: int = 20,
    audio: bool = True,
    audio_seconds: float | None = None,
    container: str = "mp4",
    caption: str | None = None,
    path: None = None,
) -> bytes: ...
@overload
def make_video(
    *,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 160,
    height: int = 96,
    gop: int = 20,
    audio: bool = True,
    audio_seconds: float | None = None,
    container: str = "mp4",
    caption: str | None = None,
    path: StrPath,
) -> Path: ...
def make_video(
    *,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 160,
    height: int = 96,
    gop: int = 20,
    audio: bool = True,
    audio_seconds: float | None = None,
    container: str = "mp4",
    caption: str | None = None,
    path: StrPath | None = None,
) -> bytes | Path:
    """H.264 video of a square moving over a gradient, with an AAC tone track (needs PyAV).

    The square's shade changes every second, so frames of different seconds differ.

    Args:
        seconds: length of the video.
        fps: frames per second.
        width: frame width in pixels (even).
        height: frame height in pixels (even).
        gop: frames from one keyframe to the next (fixed; no keyframes at scene cuts).
        audio: add the tone track (``make_audio``'s tone, mono, 16 kHz).
        audio_seconds: length of the tone track when it should differ from the video's.
        container: ``mp4``, ``mov`` or ``matroska`` (any muxer FFmpeg has that takes H.264).
        caption: text written across the middle of every frame.
        path: write the file there and return the path, instead of returning the bytes.
    """
    av = import_optional("av", extra="video", purpose="make_video")
    import numpy as np

    _positive("seconds", seconds, "make_video")
    _positive("fps", fps, "make_video")
    _positive("gop", gop, "make_video")
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ConfigurationError(
            f"make_video: width and height must be even and at least 2, not {width}x{height}"
        )
    if container not in av.formats_available:
        raise ConfigurationError(f"make_video: FFmpeg has no {container!r} muxer; use mp4")
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    base = np.empty((height, width, 3), np.uint8)
    base[..., 0] = ramp
    base[..., 1] = ramp[::-1]
    base[..., 2] = 96
    if caption:
        from PIL import Image as PILImage

        card = PILImage.fromarray(base)
        _write_caption(card, caption)
        base = np.asarray(card).copy()
    side = min(16, width // 2, height // 2)
    top = min(30, height - side)
    target: Path | io.BytesIO = Path(path) if path is not None else io.BytesIO()
    with av.open(target, "w", format=container) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {
            "preset": "ultrafast",
            "crf": "30",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        tone = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(round(seconds * fps)):
            img = base.copy()
            x = (i * 3) % max(1, width - side)
            img[top : top + side, x : x + side] = (i // fps * 37) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if tone is not None:
            _mux_tone(out, tone, seconds if audio_seconds is None else audio_seconds, 16000, 1)
    return target.getvalue() if isinstance(target, io.BytesIO) else target


def _slide(size: tuple[int, int], slide: str | bytes) -> NDArray[np.uint8]:
    """A slide as RGB pixels: a title card for text, or a picture (PNG/JPEG bytes) scaled in."""
    import numpy as np
    from PIL import Image as PILImage

    h = size[1]
    if isinstance(slide, bytes):
        with PILImage.open(io.BytesIO(slide)) as picture:
            card = picture.convert("RGB").resize(size)
    else:
        seed = zlib.crc32(slide.encode())
        shade = (40 + seed % 160, 40 + (seed >> 8) % 160, 40 + (seed >> 16) % 160)
        card = PILImage.new("RGB", size, shade)
        _write_caption(card, slide)
    pixels = np.asarray(card, dtype=np.uint8).copy()
    pixels[: max(2, h // 12)] = 255  # a white title bar, as slides have
    return pixels


@overload
def make_lecture(
    slides: Sequence[tuple[float, str | bytes]],
    *,
    seconds: float,
    fps: int = 5,
    width: int = 192,
    height: int = 108,
    gop_seconds: float = 10.0,
    path: None = None,
) -> bytes: ...
@overload
def make_lecture(
    slides: Sequence[tuple[float, str | bytes]],
    *,
    seconds: float,
    fps: int = 5,
    width: int = 192,
    height: int = 108,
    gop_seconds: float = 10.0,
    path: StrPath,
) -> Path: ...
def make_lecture(
    slides: Sequence[tuple[float, str | bytes]],
    *,
    seconds: float,
    fps: int = 5,
    width: int = 192,
    height: int = 108,
    gop_seconds: float = 10.0,
    path: StrPath | None = None,
) -> bytes | Path:
    """A recorded lecture: slides that change at given times, a speaker in the corner, a tone.

    The picture is the current slide with a small "speaker" (a block that moves every frame)
    in the bottom-right corner, so consecutive frames always differ a little while the slide
    stays; the sound is :func:`make_audio`'s tone (AAC, 16 kHz mono). Keyframes come at a fixed
    interval, never at slide changes (like a screen recorder's), so a change falls between them.
    An hour at the defaults takes a few seconds and about 25 MB (needs PyAV).

    Args:
        slides: ``(start second, slide)`` in time order, the first at 0; a slide is a title
            (drawn as a card) or a picture's PNG/JPEG bytes (scaled to the frame).
        seconds: length of the lecture.
        fps: frames per second.
        width: frame width in pixels (even).
        height: frame height in pixels (even).
        gop_seconds: seconds from one keyframe to the next.
        path: write the file there and return the path, instead of returning the bytes.
    """
    av = import_optional("av", extra="video", purpose="make_lecture")
    _positive("seconds", seconds, "make_lecture")
    _positive("fps", fps, "make_lecture")
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ConfigurationError(
            f"make_lecture: width and height must be even and at least 32, not {width}x{height}"
        )
    starts = [float(s) for s, _ in slides]
    if not slides or starts[0] != 0 or starts != sorted(starts):
        raise ConfigurationError("make_lecture: give slides in time order, the first at 0 s")
    cards = [_slide((width, height), slide) for _, slide in slides]
    side = max(4, height // 6)
    top, left = height - side - 2, width - side - 2
    target: Path | io.BytesIO = Path(path) if path is not None else io.BytesIO()
    gop = max(1, round(gop_seconds * fps))
    with av.open(target, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {
            "preset": "ultrafast",
            "crf": "32",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        tone = out.add_stream("aac", rate=16000, layout="mono")
        current = 0
        for i in range(round(seconds * fps)):
            t = i / fps
            while current + 1 < len(starts) and starts[current + 1] <= t:
                current += 1
            img = cards[current].copy()
            wobble = (i % 7) - 3
            img[top : top + side, left + wobble : left + wobble + side // 2] = (i * 37) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        _loop_tone(out, tone, seconds)
    return target.getvalue() if isinstance(target, io.BytesIO) else target


def _loop_tone(out: Any, stream: Any, seconds: float) -> None:
    """``seconds`` of the tone as AAC: 160 packets encoded once, then copied with new times.

    Encoding AAC runs at about 60 times real time; copying packets, thousands of times.
    """
    import numpy as np

    av = import_optional("av", extra="video", purpose="make_lecture")
    rate, per = 16000, 1024
    encoded: list[tuple[bytes, int, int]] = []
    loop = 160 * per  # samples in one copy (10.24 s at 16 kHz)
    for start in range(0, loop, per):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(_tone(start, per, rate, 1).T), format="fltp", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        encoded += [(bytes(p), int(p.pts), int(p.duration or per)) for p in stream.encode(frame)]
    encoded += [(bytes(p), int(p.pts), int(p.duration or per)) for p in stream.encode(None)]
    total = round(seconds * rate)
    shift = 0
    while shift < total:
        for data, pts, duration in encoded:
            if pts < 0 or pts >= loop or shift + pts >= total:
                continue
            packet = av.Packet(data)
            packet.pts = packet.dts = shift + pts
            packet.duration = duration
            packet.time_base = Fraction(1, rate)
            packet.stream = stream
            out.mux(packet)
        shift += loop


# -------------------------------------------------------------------------------------- PDF

_A4 = (595.28, 841.89)  # points
_MARGIN = 56.69  # 20 mm
_HEADING_PT, _BODY_PT, _LEADING = 16, 11, 14
_WRAP = 80  # characters of 11-point Helvetica that fit between the margins, with room to spare
_PICTURE_PX, _PICTURE_PT = (200, 120), (170.0, 102.0)
# the padding string of the PDF standard security handler (ISO 32000-1, 7.6.3.3)
_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")
_PERMISSIONS = -4  # everything allowed


def page_heading(page: int) -> str:
    """The heading :func:`make_pdf` writes on ``page`` (1-based) when given a page count.

    >>> page_heading(2)
    'Page 2: all about rockets'
    """
    return f"Page {page}: all about {TOPICS[(page - 1) % len(TOPICS)]}"


def _pdf_text(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")  # the WinAnsiEncoding of the base fonts
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _page_content(number: int, text: str, picture: bool) -> bytes:
    heading, _, body = text.partition("\n")
    lines = [w for line in body.split("\n") for w in (textwrap.wrap(line, _WRAP) or [""])]
    top = _A4[1] - _MARGIN - _HEADING_PT
    room = top - _MARGIN - (_PICTURE_PT[1] + _LEADING if picture else 0)
    fits = int(room // _LEADING) - 1
    if len(lines) > fits:
        raise ConfigurationError(
            f"make_pdf: the text of page {number} needs {len(lines)} lines and a page holds "
            f"{fits}; spread it over more pages"
        )
    ops = [b"BT /F2 %d Tf %.2f %.2f Td " % (_HEADING_PT, _MARGIN, top) + _pdf_text(heading)]
    ops.append(b" Tj ET\nBT /F1 %d Tf %d TL %.2f %.2f Td" % (_BODY_PT, _LEADING, _MARGIN, top))
    for line in lines:
        ops.append(b" T* " + _pdf_text(line) + b" Tj")
    ops.append(b" ET\n")
    if picture:
        y = top - _LEADING * (len(lines) + 1) - _PICTURE_PT[1]
        ops.append(b"q %.2f 0 0 %.2f %.2f %.2f cm /Im1 Do Q\n" % (*_PICTURE_PT, _MARGIN, y))
    return b"".join(ops)


def _md5(data: bytes) -> bytes:
    # the hash the PDF format prescribes for its IDs and RC4 keys
    return hashlib.md5(data, usedforsecurity=False).digest()


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, byte in enumerate(data):
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out[n] = byte ^ s[(s[i] + s[j]) % 256]
    return bytes(out)


def _rc4_20(key: bytes, data: bytes) -> bytes:
    """RC4 with ``key``, then 19 more times with the key's bytes XORed with 1 to 19."""
    for i in range(20):
        data = _rc4(bytes(b ^ i for b in key), data)
    return data


def _security(password: str, doc_id: bytes) -> tuple[bytes, bytes]:
    """The file key and the ``/Encrypt`` dictionary of RC4-128 (revision 3) encryption."""

    def padded(secret: str) -> bytes:
        raw = secret.encode("latin-1", errors="replace")[:32]
        return raw + _PAD[: 32 - len(raw)]

    # the owner password is fixed: these files are for reading, never for guarding anything
    owner = _md5(padded("owner"))
    for _ in range(50):
        owner = _md5(owner)
    o = _rc4_20(owner, padded(password))
    key = _md5(padded(password) + o + _PERMISSIONS.to_bytes(4, "little", signed=True) + doc_id)
    for _ in range(50):
        key = _md5(key)
    u = _rc4_20(key, _md5(_PAD + doc_id)) + bytes(16)
    entry = b"<< /Filter /Standard /V 2 /R 3 /Length 128 /P %d /O <%s> /U <%s> >>" % (
        _PERMISSIONS,
        o.hex().encode(),
        u.hex().encode(),
    )
    return key, entry


@overload
def make_pdf(
    pages: int | Sequence[str] = 1,
    *,
    image: bool | Collection[int] = False,
    password: str | None = None,
    path: None = None,
) -> bytes: ...
@overload
def make_pdf(
    pages: int | Sequence[str] = 1,
    *,
    image: bool | Collection[int] = False,
    password: str | None = None,
    path: StrPath,
) -> Path: ...
def make_pdf(
    pages: int | Sequence[str] = 1,
    *,
    image: bool | Collection[int] = False,
    password: str | None = None,
    path: StrPath | None = None,
) -> bytes | Path:
    """A PDF of A4 pages with real text in Helvetica, written directly (no PDF library).

    Args:
        pages: a page count, for pages headed :func:`page_heading` with a sentence about the
            page's topic below; or the text of each page: its first line is the heading, the
            others are wrapped at 80 characters (a page holds 49 lines, 41 with a picture).
        image: put a picture (``make_image``'s drawing) under the text of every page, or of
            the pages (1-based) in a collection.
        password: encrypt the file (RC4, 128-bit) with this password to open it; ``""``
            encrypts it with an empty password, which readers open without asking.
        path: write the file there and return the path, instead of returning the bytes.
    """
    if isinstance(pages, int):
        _positive("pages", pages, "make_pdf")
        topics = [TOPICS[i % len(TOPICS)] for i in range(pages)]
        texts = [
            page_heading(i + 1) + "\n" + " ".join([f"This page is about {t}."] * 6)
            for i, t in enumerate(topics)
        ]
    else:
        texts = [pages] if isinstance(pages, str) else list(pages)
        if not texts:
            raise ConfigurationError("make_pdf: give at least one page")

    def pictured(n: int) -> bool:
        return image is True or (not isinstance(image, bool) and n in image)

    contents = [_page_content(n, text, pictured(n)) for n, text in enumerate(texts, start=1)]
    doc_id = _md5(b"".join(contents) + (password or "").encode())

    # objects: 1-2 fonts, [3 picture], then a content stream and a page per page, the page tree,
    # the catalog and [the encryption dictionary]
    drawn = any(pictured(n) for n in range(1, len(texts) + 1))
    first_page = 4 if drawn else 3
    tree = first_page + 2 * len(texts)
    key, encrypt = _security(password, doc_id) if password is not None else (b"", b"")

    def stream(number: int, head: bytes, data: bytes) -> bytes:
        if password is not None:
            salt = number.to_bytes(3, "little") + b"\x00\x00"
            data = _rc4(_md5(key + salt), data)
        return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (head, len(data), data)

    objects = [
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    resources = b"/Font << /F1 1 0 R /F2 2 0 R >>"
    if drawn:
        jpeg = io.BytesIO()
        _drawing(_PICTURE_PX, "RGB", 0).save(jpeg, format="JPEG", quality=85)
        head = b"/Type /XObject /Subtype /Image /Width %d /Height %d " % _PICTURE_PX
        head += b"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode"
        objects.append(stream(3, head, jpeg.getvalue()))
        resources += b" /XObject << /Im1 3 0 R >>"
    for content in contents:
        number = len(objects) + 1
        objects.append(stream(number, b"/Filter /FlateDecode", zlib.compress(content)))
        objects.append(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.2f %.2f] /Resources << %s >> "
            b"/Contents %d 0 R >>" % (tree, *_A4, resources, number)
        )
    kids = b" ".join(b"%d 0 R" % (first_page + 1 + 2 * i) for i in range(len(texts)))
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(texts)))
    objects.append(b"<< /Type /Catalog /Pages %d 0 R >>" % tree)
    trailer = b"/Root %d 0 R /ID [<%s> <%s>]" % (
        tree + 1,
        doc_id.hex().encode(),
        doc_id.hex().encode(),
    )
    if password is not None:
        objects.append(encrypt)
        trailer += b" /Encrypt %d 0 R" % len(objects)

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(
        b"trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    )
    return _deliver(out.getvalue(), path)
