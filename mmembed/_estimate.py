"""The plan of an :meth:`Index.add` before anything is paid: chunks, calls and cost per line.

A dry run and the budget guard (``max_cost``) read no media beyond their headers: a clip's
length (libsndfile, PyAV's container index), a PDF's page count (pypdf), a text file's size. The
built-in chunkers' settings turn those into chunk counts and token counts, priced with the one
cost table in :mod:`mmembed.limits` (:func:`~mmembed.limits.media_tokens`,
:func:`~mmembed.limits.estimate_tokens`, :func:`~mmembed.limits.cost_usd`). A chunker mmembed
does not know is run instead, and its chunks are counted one by one.

The plan has one line per modality, and one per video strategy: ``video segments`` (MP4
segments, billed per sampled frame) and ``video keyframes`` (scene changes as images).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from mmembed._media_info import duration_seconds, pdf_page_count
from mmembed.content import Audio, Embeddable, Modality, Part, Pdf, Video
from mmembed.errors import MMEmbedError
from mmembed.limits import (
    ModelLimits,
    cost_usd,
    estimate_item_tokens,
    estimate_tokens,
    media_tokens,
)
from mmembed.protocols import Chunker

__all__ = ["PlanLine", "Planner"]

# base64 grows media by 4/3 in a request body
_B64 = 4 / 3
# what a task prefix adds to each text chunk ("title: none | text: "), in tokens
_PREFIX_TOKENS = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanLine:
    """One line of a plan: what one modality (or video strategy) will cost.

    Attributes:
        label: ``"text"``, ``"image"``, ``"pdf"``, ``"audio"``, ``"video segments"`` or
            ``"video keyframes"``.
        files: files on this line.
        chunks: chunks to embed (items, one vector each).
        calls: embedding API calls, at most the model's items a call and its inline bytes.
        tokens: input tokens at the rates in :mod:`mmembed.limits`.
        cost_usd: their price, or ``None`` when the model publishes no prices (a local one).
        media_seconds: seconds of audio or video on this line.
    """

    label: str
    files: int
    chunks: int
    calls: int
    tokens: int
    cost_usd: float | None
    media_seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "label": self.label,
            "files": self.files,
            "chunks": self.chunks,
            "calls": self.calls,
            "tokens": self.tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "media_seconds": round(self.media_seconds, 3),
        }


@dataclass(slots=True)
class _Line:
    files: int = 0
    chunks: int = 0
    calls: float = 0.0
    media_seconds: float = 0.0
    tokens: dict[Modality, int] = field(default_factory=dict)


class Planner:
    """Adds files up into plan lines, from headers where the chunker is a built-in one."""

    def __init__(self, limits: ModelLimits | None, *, batch: bool = False) -> None:
        self.limits = limits
        self.batch = batch  # priced at the Batch API's rate
        self._lines: dict[str, _Line] = {}

    # -- files ------------------------------------------------------------------------------

    def add_file(self, part: Part, chunker: Chunker, *, size: int) -> bool:
        """Plan one file from its headers; ``False`` when the chunker is not a built-in one."""
        from mmembed.chunkers.image import ImageChunker
        from mmembed.chunkers.pdf import PdfChunker
        from mmembed.chunkers.text import TextChunker

        if isinstance(chunker, TextChunker):
            self._text(chunker, size)
        elif isinstance(chunker, ImageChunker):
            self._add("image", 1, {Modality.IMAGE: self._rate(Modality.IMAGE)}, item_bytes=size)
        elif isinstance(chunker, PdfChunker) and isinstance(part, Pdf):
            self._pdf(part, chunker, size)
        elif type(chunker).__name__ == "AudioChunker" and isinstance(part, (Audio, Video)):
            self._audio(part, chunker)
        elif type(chunker).__name__ == "VideoChunker" and isinstance(part, Video):
            self._video(part, chunker, size)
        else:
            return False
        return True

    def add_chunk(self, label: str, item: Embeddable, *, first: bool) -> None:
        """Count one chunk a chunker made (for chunkers mmembed cannot plan from headers)."""
        tokens = estimate_item_tokens(item, self.limits) if self.limits is not None else {}
        line = self._lines.setdefault(label, _Line())
        line.files += 1 if first else 0
        line.chunks += 1
        per_call = self.limits.max_items_per_call if self.limits is not None else 1
        line.calls += 1 / per_call
        for modality, n in tokens.items():
            line.tokens[modality] = line.tokens.get(modality, 0) + n

    # -- the plan -------------------------------------------------------------------------------

    def lines(self) -> tuple[PlanLine, ...]:
        """The plan, one line per modality or video strategy, in a fixed order."""
        order = ["text", "pdf", "image", "audio", "video segments", "video keyframes"]
        out = []
        for label in sorted(self._lines, key=lambda k: (order.index(k) if k in order else 99, k)):
            line = self._lines[label]
            out.append(
                PlanLine(
                    label=label,
                    files=line.files,
                    chunks=line.chunks,
                    calls=math.ceil(line.calls - 1e-9),
                    tokens=sum(line.tokens.values()),
                    cost_usd=cost_usd(line.tokens, self.limits, batch=self.batch)
                    if self.limits is not None
                    else None,
                    media_seconds=line.media_seconds,
                )
            )
        return tuple(out)

    def total_calls(self) -> int:
        """API calls for the whole plan: rounds mix modalities, so lines share calls."""
        return math.ceil(sum(line.calls for line in self._lines.values()) - 1e-9)

    # -- per chunker -----------------------------------------------------------------------------

    def _rate(self, modality: Modality, **kw: float | int | None) -> int:
        if self.limits is None:
            return 0
        return media_tokens(modality, self.limits, **kw)  # type: ignore[arg-type]

    def _add(
        self,
        label: str,
        chunks: int,
        tokens: dict[Modality, int],
        *,
        item_bytes: float = 0.0,
        seconds: float = 0.0,
        times: int | None = None,
    ) -> None:
        """Add ``chunks`` chunks (``times`` of them cost ``tokens`` each; all by default)."""
        line = self._lines.setdefault(label, _Line())
        line.files += 1
        line.chunks += chunks
        line.media_seconds += seconds
        for modality, n in tokens.items():
            line.tokens[modality] = line.tokens.get(modality, 0) + n * (
                chunks if times is None else times
            )
        line.calls += chunks / self._per_call(item_bytes)

    def _per_call(self, item_bytes: float) -> int:
        if self.limits is None:
            return 1
        most = self.limits.max_items_per_call
        if item_bytes > 0:
            fits = int(self.limits.max_inline_bytes // (item_bytes * _B64))
            most = max(1, min(most, fits))
        return most

    def _text(self, chunker: object, size: int) -> None:
        unit = getattr(chunker, "unit", "tokens")
        window = int(getattr(chunker, "size", 1024))
        overlap = int(getattr(chunker, "overlap", 0))
        tokens = max(1, math.ceil(size / 3))  # estimate_tokens: a token per three bytes
        length = tokens if unit == "tokens" else size
        step = max(1, window - overlap)
        chunks = max(1, math.ceil(max(0, length - overlap) / step))
        shared = (chunks - 1) * (overlap if unit == "tokens" else estimate_tokens("x" * overlap))
        per_chunk = _PREFIX_TOKENS * chunks
        self._add(
            "text",
            chunks,
            {Modality.TEXT: tokens + shared + per_chunk},
            times=1,
        )

    def _pdf(self, part: Pdf, chunker: object, size: int) -> None:
        pages = _cheap(pdf_page_count, part) or 1
        per = int(getattr(chunker, "pages", 6))
        overlap = int(getattr(chunker, "overlap", 0))
        chunks = 1 if pages <= per else math.ceil((pages - overlap) / (per - overlap))
        if getattr(chunker, "mode", "pdf") == "text":
            # text of the pages: unknown without reading them; a PDF's bytes bound it
            self._add("pdf", chunks, {Modality.TEXT: math.ceil(size / 3)}, times=1)
            return
        billed_pages = pages + (chunks - 1) * overlap
        self._add(
            "pdf",
            chunks,
            {Modality.PDF: self._rate(Modality.PDF, pages=billed_pages)},
            times=1,
            item_bytes=size * min(1.0, per / pages),
        )

    def _audio(self, part: Audio | Video, chunker: object) -> None:
        seconds = _cheap(duration_seconds, part) or 0.0
        window = float(getattr(chunker, "window_seconds", 180.0))
        overlap = float(getattr(chunker, "overlap_seconds", 0.0))
        rate = int(getattr(chunker, "sample_rate", 16000))
        channels = 1 if getattr(chunker, "mono", True) else 2
        windows = _count_windows(seconds, window, overlap)
        length = min(window, seconds) if seconds > 0 else window
        bytes_per = length * rate * 2 * channels + 44
        if getattr(chunker, "format", "wav") == "mp3":
            bytes_per = length * 16_000  # 128 kb/s
        self._add(
            "audio",
            windows,
            {Modality.AUDIO: self._rate(Modality.AUDIO, seconds=length)},
            item_bytes=bytes_per,
            seconds=seconds,
        )

    def _video(self, part: Video, chunker: object, size: int) -> None:
        from mmembed.chunkers._plan import plan_even

        seconds = _cheap(duration_seconds, part) or 0.0
        strategy = str(getattr(chunker, "strategy", "segments"))
        if strategy in ("segments", "both"):
            seg = float(getattr(chunker, "segment_seconds", 30.0))
            overlap = float(getattr(chunker, "overlap_seconds", 0.0))
            plan = plan_even(seconds, seg, overlap) if seconds > 0 else [(0.0, seg)]
            tokens = sum(self._rate(Modality.VIDEO, seconds=b - a) for a, b in plan)
            per_second = size / seconds if seconds > 0 else size
            self._add(
                "video segments",
                len(plan),
                {Modality.VIDEO: tokens},
                times=1,
                item_bytes=per_second * (seconds / len(plan) if seconds > 0 else 1),
                seconds=seconds,
            )
        if strategy in ("keyframes", "both"):
            typical = float(getattr(chunker, "TYPICAL_KEYFRAME_SECONDS", 60.0))
            images = max(1, math.ceil(seconds / typical)) if seconds > 0 else 1
            self._add(
                "video keyframes",
                images,
                {Modality.IMAGE: self._rate(Modality.IMAGE)},
                item_bytes=30_000,
                seconds=seconds,
            )


def _count_windows(seconds: float, window: float, overlap: float) -> int:
    if seconds <= window:
        return 1
    return math.ceil((seconds - window) / (window - overlap)) + 1


def _cheap(read: object, part: object) -> float | int | None:
    try:
        value = read(part)  # type: ignore[operator]
    except (MMEmbedError, OSError):  # an estimate only: an unreadable header counts as typical
        return None
    return value if isinstance(value, (int, float)) else None


def file_size(path: str) -> int:
    """The size of a file in bytes (0 when it cannot be read)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
