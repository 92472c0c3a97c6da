"""How long a clip runs and how many pages a PDF has, read from headers without decoding.

The embedder checks items against the model's limits before sending anything, and the fake
server enforces the same limits, so both need these numbers. Reading them never decodes media:
libsndfile reads the header of WAV/MP3/FLAC/OGG, PyAV reads the container's index for everything
else, and pypdf reads the page tree. Whatever the bytes, the answer is a number, ``None`` (the
container does not say), or an :class:`~mmembed.errors.UnsupportedMediaError` naming the file.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

from mmembed._optional import import_optional
from mmembed.content import Audio, Pdf, Video
from mmembed.errors import UnsupportedMediaError

__all__ = ["duration_seconds", "pdf_page_count"]

# libsndfile reads these by header alone; everything else goes through PyAV
_SOUNDFILE_TYPES = frozenset(
    {
        "audio/wav",
        "audio/x-wav",
        "audio/mpeg",
        "audio/mp3",
        "audio/flac",
        "audio/ogg",
        "audio/aiff",
    }
)


def duration_seconds(part: Audio | Video) -> float | None:
    """The running time of an audio or video clip, or ``None`` when the container omits it.

    Raises:
        UnsupportedMediaError: the bytes cannot be read as the declared type.
        MissingDependencyError: PyAV is needed for this format and is not installed.
    """
    if isinstance(part, Audio) and part.mime_type in _SOUNDFILE_TYPES:
        found = _soundfile_duration(part)
        if found is not None:
            return found
    return _av_duration(part)


def _soundfile_duration(part: Audio) -> float | None:
    import soundfile

    try:
        with part.open() as f:
            info = soundfile.info(f)
    except Exception:  # libsndfile refuses: let PyAV try before calling the bytes unreadable
        return None
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    return float(info.frames) / float(info.samplerate)


def _av_duration(part: Audio | Video) -> float | None:
    av = import_optional("av", extra="video", purpose=f"reading the duration of {part.name}")
    try:
        source: Any = str(part.path) if part.path is not None else io.BytesIO(part.read_bytes())
        with av.open(source, metadata_errors="ignore") as container:
            if container.duration is not None and container.duration > 0:
                return float(container.duration) / 1_000_000.0  # AV_TIME_BASE
            best = 0.0
            for stream in container.streams:
                if stream.duration is not None and stream.time_base is not None:
                    best = max(best, float(stream.duration * stream.time_base))
            return best if best > 0 and math.isfinite(best) else None
    except Exception as exc:  # any decoder failure means "cannot read these bytes"
        raise UnsupportedMediaError(
            f"{type(part).__name__} {part.name}: cannot read its duration "
            f"({type(exc).__name__}: {exc}); the file may be truncated or not really "
            f"{part.mime_type}"
        ) from exc


def pdf_page_count(part: Pdf) -> int | None:
    """The number of pages in a PDF, or ``None`` when the page tree does not say.

    Raises:
        UnsupportedMediaError: the bytes are not a readable PDF (encrypted ones included).
        MissingDependencyError: pypdf is not installed.
    """
    pypdf = import_optional("pypdf", extra="pdf", purpose=f"counting the pages of {part.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns on every slightly odd file
            source: Any = part.path if part.path is not None else io.BytesIO(part.read_bytes())
            reader = pypdf.PdfReader(source, strict=False)
            if reader.is_encrypted:
                try:
                    reader.decrypt("")
                except Exception:
                    raise UnsupportedMediaError(
                        f"PDF {part.name} is encrypted; decrypt it before embedding"
                    ) from None
            return len(reader.pages)
    except UnsupportedMediaError:
        raise
    except Exception as exc:  # pypdf leaks AttributeError/TypeError on hostile input
        raise UnsupportedMediaError(
            f"PDF {part.name}: cannot read its pages ({type(exc).__name__}: {exc}); "
            "the file may be damaged"
        ) from exc
