"""Search results that point back into the files: a line in a terminal, a table in Jupyter.

>>> from mmembed.results import Result
>>> from mmembed.protocols import TimeSpan
>>> from mmembed.content import Modality
>>> r = Result(score=0.81, source="lecture3.mp4", modality=Modality.VIDEO,
...            span=TimeSpan(720, 750), uri="lecture3.mp4#t=720,750", preview="")
>>> print(r)
0.810  lecture3.mp4  12:00–12:30  video
"""

from __future__ import annotations

import base64
import html
import io
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from mmembed._files import printable
from mmembed.content import Modality
from mmembed.protocols import PageSpan, Span, TextSpan, TimeSpan

__all__ = ["Result", "Results", "Signal"]

_THUMB_PX = 120


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """How one ranking found a result.

    Attributes:
        name: ``"vector"`` (similarity of the vectors) or ``"keyword"`` (BM25 over the text).
        rank: the result's place in that ranking, 1 for the first.
        score: its score there: cosine similarity, or BM25 (higher is better for both).
    """

    name: str
    rank: int
    score: float

    def __str__(self) -> str:
        return f"{self.name[0]}{self.rank}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One search result.

    Attributes:
        score: how well it matches (higher is better): the cosine similarity in a vector search,
            BM25 in a keyword search, the fused score of both in a hybrid search (see
            :attr:`signals` for each ranking's own rank and score).
        source: the file, relative to the working directory when it lies below it.
        modality: what kind of chunk matched.
        span: where in the file (seconds, pages or characters); ``None`` for a whole file.
        uri: a media-fragment link to the spot (``deck.pdf#page=7``, ``talk.mp4#t=30,60``).
        preview: a short text preview of the chunk (empty for media without text).
        chunk_id: the id of the chunk in the index.
        matches: when results are grouped by source, every matching chunk of this source, best
            first (this result is the first); otherwise empty.
        signals: the rankings that found it, each with its rank and score there (one for a
            vector or keyword search, one or two for a hybrid one).
        metadata: the metadata given to :meth:`Index.add` for its file.
        ranges: when results are grouped by source, the spans of its matches with overlapping
            or touching ones merged (a keyframe inside a segment is one range), the range of
            the best match first; otherwise empty.
    """

    score: float
    source: str
    modality: Modality
    span: Span | None
    uri: str
    preview: str = ""
    chunk_id: str = ""
    matches: tuple[Result, ...] = field(default=(), repr=False)
    signals: tuple[Signal, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @property
    def found_by(self) -> str:
        """The rankings that found it and its rank in each, short: ``v1 k3``."""
        return " ".join(str(s) for s in self.signals)

    ranges: tuple[Span, ...] = field(default=(), repr=False)

    @property
    def range_uris(self) -> tuple[str, ...]:
        """A media-fragment link for each of :attr:`ranges` (``lecture17.mp4#t=1380,1410``)."""
        return tuple(f"{self.source}#{span.fragment}" for span in self.ranges)

    @property
    def location(self) -> str:
        """The span as people read it: ``12:00–12:30``, ``p. 7``, ``chars 0–120``, or ``""``.

        A grouped result reads as its ranges: ``23:00–23:30, 41:10–41:40``.
        """
        if self.ranges:
            return ", ".join(str(span) for span in self.ranges)
        return "" if self.span is None else str(self.span)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the span as ``{"type": "time" | "pages" | "text", ...}``)."""
        out: dict[str, Any] = {
            "score": round(float(self.score), 6),
            "source": self.source,
            "modality": self.modality.value,
            "span": _span_dict(self.span),
            "uri": self.uri,
            "preview": self.preview,
            "chunk_id": self.chunk_id,
            "signals": {s.name: {"rank": s.rank, "score": round(s.score, 6)} for s in self.signals},
            "metadata": dict(self.metadata),
        }
        if self.matches:
            out["matches"] = [m.to_dict() for m in self.matches]
        if self.ranges:
            out["ranges"] = [
                {"span": _span_dict(span), "uri": uri}
                for span, uri in zip(self.ranges, self.range_uris, strict=True)
            ]
        return out

    def __str__(self) -> str:
        parts = [f"{self.score:.3f}", self.source]
        if self.location:
            parts.append(self.location)
        parts.append(self.modality.value)
        if self.preview:
            parts.append(repr(_clip(self.preview, 60)))
        return "  ".join(parts)


def _span_dict(span: Span | None) -> dict[str, Any] | None:
    if span is None:
        return None
    if isinstance(span, TimeSpan):
        return {"type": "time", "start": span.start, "end": span.end}
    if isinstance(span, PageSpan):
        return {"type": "pages", "first": span.first, "last": span.last}
    return {"type": "text", "start": span.start, "end": span.end}


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"


class Results(Sequence[Result]):
    """The results of one search, best first: a list that prints as a table.

    ``str(results)`` is a plain-text table sized to the terminal; in Jupyter the results render as
    an HTML table with thumbnails for images and video frames, time ranges and page numbers.
    """

    __slots__ = ("_items", "query")

    def __init__(self, items: Sequence[Result], *, query: str = "") -> None:
        self._items = tuple(items)
        self.query = query

    @overload
    def __getitem__(self, i: int) -> Result: ...
    @overload
    def __getitem__(self, i: slice) -> Results: ...
    def __getitem__(self, i: int | slice) -> Result | Results:
        if isinstance(i, slice):
            return Results(self._items[i], query=self.query)
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Results):
            return self._items == other._items
        if isinstance(other, (list, tuple)):
            return list(self._items) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dicts(self) -> list[dict[str, Any]]:
        """JSON-ready dicts, best first."""
        return [r.to_dict() for r in self._items]

    def __repr__(self) -> str:
        return f"<Results {len(self)} for {self.query!r}>\n{self.table()}"

    def __str__(self) -> str:
        return self.table()

    def table(self, width: int | None = None) -> str:
        """A plain-text table, one row each: rank, score, source, location, modality, the rank in
        each ranking that found it (``v1 k3``: first by vector, third by keyword), preview."""
        if not self._items:
            return "no results"
        width = width or shutil.get_terminal_size((120, 20)).columns
        rows = []
        for i, r in enumerate(self._items, 1):
            rows.append(
                (
                    str(i),
                    f"{r.score:.3f}",
                    printable(r.source),
                    printable(r.location),
                    r.modality.value,
                    r.found_by,
                    printable(r.preview),
                )
            )
        head = ("#", "score", "source", "location", "modality", "found", "preview")
        fixed = [max(len(row[c]) for row in [*rows, head]) for c in range(6)]
        # paths stay whole (they are what people copy); the preview takes what is left
        room = max(24, width - sum(fixed) - 2 * 6)
        lines = []
        for row in [head, *rows]:
            cells = [
                row[0].rjust(fixed[0]),
                row[1].rjust(fixed[1]),
                *(row[c].ljust(fixed[c]) for c in range(2, 6)),
                _clip(row[6], room),
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self._items:
            return "<p><em>no results</em></p>"
        out = [
            "<table>",
            "<thead><tr><th>#</th><th>score</th><th></th><th>source</th><th>location</th>"
            "<th>preview</th></tr></thead><tbody>",
        ]
        for i, r in enumerate(self._items, 1):
            thumb = _thumbnail_html(r)
            out.append(
                "<tr>"
                f"<td>{i}</td><td>{r.score:.3f}</td><td>{thumb}</td>"
                f"<td><a href='{html.escape(r.uri, quote=True)}'>{html.escape(r.source)}</a>"
                f"<br><small>{html.escape(r.modality.value)}</small></td>"
                f"<td>{html.escape(_location_long(r))}</td>"
                f"<td>{html.escape(_clip(r.preview, 200))}</td>"
                "</tr>"
            )
        out.append("</tbody></table>")
        return "".join(out)


def _location_long(r: Result) -> str:
    if isinstance(r.span, PageSpan):
        return (
            f"page {r.span.first}" if r.span.pages == 1 else f"pages {r.span.first}–{r.span.last}"
        )
    if isinstance(r.span, TimeSpan):
        return str(r.span)
    if isinstance(r.span, TextSpan):
        return str(r.span)
    return ""


def _thumbnail_html(r: Result) -> str:
    png = None
    try:
        if r.modality is Modality.IMAGE:
            png = _image_thumbnail(Path(r.source))
        elif r.modality is Modality.VIDEO:
            start = r.span.start if isinstance(r.span, TimeSpan) else 0.0
            png = _video_thumbnail(Path(r.source), start)
    except Exception:  # a missing thumbnail must never break the display
        png = None
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' style='max-width:{_THUMB_PX}px'>"


def _image_thumbnail(path: Path) -> bytes | None:
    from PIL import Image as PILImage  # Pillow is a core dependency, loaded late

    if not path.is_file():
        return None
    with PILImage.open(path) as img:
        img.thumbnail((_THUMB_PX, _THUMB_PX))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()


def _video_thumbnail(path: Path, start: float) -> bytes | None:
    """The first frame at or after ``start`` seconds, or ``None`` without PyAV."""
    try:
        import av  # optional (extra "video")
    except ImportError:
        return None
    if not path.is_file():
        return None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.time_base is not None and start > 0:
            container.seek(int(start / stream.time_base), stream=stream, any_frame=False)
        for frame in container.decode(stream):
            if (frame.time or 0.0) + 1e-3 < start:
                continue
            img = frame.to_image()
            img.thumbnail((_THUMB_PX, _THUMB_PX))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return buf.getvalue()
    return None
