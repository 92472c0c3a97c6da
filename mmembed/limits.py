"""What each embedding model accepts: the one place in mmembed where a limit is written.

The embedder's pre-checks, the chunkers' defaults, the index's dry-run estimate and
:class:`~mmembed.testing.FakeGeminiServer` all read these values. When a provider changes a limit,
a price or a token rate, one line here changes.

- :class:`ModelLimits` and :func:`limits_for`: the numbers, per model.
- :func:`check_item` and :func:`check_inline`: one item against them, before anything is sent;
  an :class:`~mmembed.errors.InputLimitError` names the item, the limit and the chunker that fixes
  it.
- :func:`estimate_tokens`, :func:`media_tokens` and :func:`estimate_item_tokens`: input tokens
  without a tokenizer; :func:`cost_usd`: the one price formula.

>>> from mmembed.limits import cost_usd, limits_for
>>> limits = limits_for("gemini-embedding-2")
>>> limits.max_video_seconds
120.0
>>> estimate_item_tokens("how do cells make energy?", limits)
{<Modality.TEXT: 'text'>: 9}
>>> round(cost_usd({Modality.TEXT: 1_000_000}, limits, batch=True), 2)
0.1
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from mmembed._media_info import duration_seconds, pdf_page_count
from mmembed.content import (
    Audio,
    Content,
    Embeddable,
    Media,
    Modality,
    Pdf,
    Text,
    Video,
    as_content,
    main_modality,
)
from mmembed.errors import (
    ConfigurationError,
    InputLimitError,
    MMEmbedError,
    UnsupportedMediaError,
)

__all__ = [
    "GEMINI_EMBEDDING_001",
    "GEMINI_EMBEDDING_2",
    "GEMINI_EMBEDDING_2_PREVIEW",
    "MAX_TEXT_FILE_BYTES",
    "TYPICAL_CLIP_SECONDS",
    "ModelLimits",
    "check_inline",
    "check_item",
    "cost_usd",
    "estimate_item_tokens",
    "estimate_tokens",
    "inline_bytes",
    "limits_for",
    "media_tokens",
]

_MB = 1024 * 1024
#: The largest text file the text chunker reads by default (64 MiB, about 16 million tokens,
#: some 16,000 chunks): a longer "text" is a log or a data dump, whose embedding costs much and
#: finds little. ``TextChunker(max_bytes=...)`` (``chunk_options={"text": {"max_bytes": ...}}``)
#: changes it; ``None`` lifts it.
MAX_TEXT_FILE_BYTES = 64 * _MB
#: The length assumed for an audio or video clip whose header does not say (estimates only).
TYPICAL_CLIP_SECONDS = 30.0
# base64 grows media by 4/3; JSON framing and the text parts are small next to that
_B64 = 4 / 3
# Which chunker fixes an item that is over a limit, for error messages.
_FIX = {
    Modality.TEXT: "split it with mmembed.chunkers.TextChunker",
    Modality.IMAGE: "embed the images as separate items, or downscale them with "
    "mmembed.chunkers.ImageChunker",
    Modality.AUDIO: "cut it into windows with mmembed.chunkers.AudioChunker",
    Modality.VIDEO: "cut it into segments with mmembed.chunkers.VideoChunker",
    Modality.PDF: "split it into page ranges with mmembed.chunkers.PdfChunker",
}
_CONVERT = {
    Modality.IMAGE: "mmembed.chunkers.ImageChunker converts other formats to PNG/JPEG",
    Modality.AUDIO: "mmembed.chunkers.AudioChunker writes windows as WAV/MP3",
    Modality.VIDEO: "re-encode it as MP4 (mmembed.chunkers.VideoChunker does)",
    Modality.PDF: "",
    Modality.TEXT: "",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLimits:
    """The documented input limits of one embedding model.

    Every per-item limit applies to one item (one vector). ``None`` for a modality's limits means
    the model does not take that modality at all (see :attr:`modalities`).
    """

    model: str
    modalities: frozenset[Modality]
    #: Items (vectors) per ``batchEmbedContents`` call.
    max_items_per_call: int = 100
    #: Tokens per item, all parts together.
    max_tokens: int = 8192
    max_images_per_item: int = 6
    image_mime_types: frozenset[str] = frozenset({"image/png", "image/jpeg"})
    max_audio_per_item: int = 1
    max_audio_seconds: float = 180.0
    audio_mime_types: frozenset[str] = frozenset({"audio/wav", "audio/mpeg"})
    max_video_per_item: int = 1
    max_video_seconds: float = 120.0
    #: Frames the model samples from a video (1 fps up to this many seconds, then uniform).
    max_video_frames: int = 32
    video_mime_types: frozenset[str] = frozenset({"video/mp4", "video/quicktime"})
    max_pdf_per_item: int = 1
    max_pdf_pages: int = 6
    pdf_mime_types: frozenset[str] = frozenset({"application/pdf"})
    #: Above this many bytes of media in one request, upload through the Files API instead.
    max_inline_bytes: int = 20 * _MB
    #: The provider's hard ceiling for one file sent by reference.
    max_file_bytes: int = 2048 * _MB
    min_dimensions: int = 128
    max_dimensions: int = 3072
    default_dimensions: int = 3072
    #: How the task is conveyed: text prefixes (Gemini Embedding 2) or the ``task_type`` field.
    task_style: Literal["prefix", "task_type"] = "prefix"
    #: Input tokens one image counts as. Google does not document embedding token counts per
    #: image, page, second or frame: these four rates are estimates, used by
    #: :func:`media_tokens` (the index's dry run) and reported by the fake server; real runs
    #: report what the service counts.
    tokens_per_image: int = 258
    #: Input tokens one PDF page counts as (an estimate, see :attr:`tokens_per_image`).
    tokens_per_pdf_page: int = 258
    #: Input tokens one second of audio counts as (an estimate).
    tokens_per_audio_second: int = 32
    #: Input tokens one sampled video frame counts as (an estimate); frames are sampled at one
    #: a second, at most :attr:`max_video_frames`.
    tokens_per_video_frame: int = 258
    #: The share of the price the Batch API takes off (0.5: half price); see :func:`cost_usd`.
    batch_discount: float = 0.5
    #: US dollars per million input tokens, by modality (secondary sources; for estimates only).
    price_per_million_tokens: MappingProxyType[Modality, float] = field(
        default_factory=lambda: MappingProxyType(
            {
                Modality.TEXT: 0.20,
                Modality.IMAGE: 0.45,
                Modality.AUDIO: 6.50,
                Modality.VIDEO: 12.00,
                Modality.PDF: 0.45,
            }
        )
    )

    def mime_types(self, modality: Modality) -> frozenset[str]:
        """The MIME types the model accepts for a modality (empty when it takes none)."""
        if modality not in self.modalities:
            return frozenset()
        return {
            Modality.TEXT: frozenset({"text/plain"}),
            Modality.IMAGE: self.image_mime_types,
            Modality.AUDIO: self.audio_mime_types,
            Modality.VIDEO: self.video_mime_types,
            Modality.PDF: self.pdf_mime_types,
        }[modality]


_ALL = frozenset(Modality)

GEMINI_EMBEDDING_2 = ModelLimits(model="gemini-embedding-2", modalities=_ALL)
GEMINI_EMBEDDING_2_PREVIEW = replace(
    GEMINI_EMBEDDING_2, model="gemini-embedding-2-preview", max_audio_seconds=80.0
)
GEMINI_EMBEDDING_001 = ModelLimits(
    model="gemini-embedding-001",
    modalities=frozenset({Modality.TEXT}),
    max_tokens=2048,
    max_images_per_item=0,
    max_audio_per_item=0,
    max_video_per_item=0,
    max_pdf_per_item=0,
    task_style="task_type",
)

_KNOWN = {
    limits.model: limits
    for limits in (GEMINI_EMBEDDING_2, GEMINI_EMBEDDING_2_PREVIEW, GEMINI_EMBEDDING_001)
}


def limits_for(model: str) -> ModelLimits:
    """The limits of ``model`` (``"models/"`` prefix allowed).

    Unknown ids of the Gemini Embedding 2 family (``gemini-embedding-2-…``) get the most recent
    family's limits; any other unknown id gets Gemini Embedding 2's, under its own name.
    """
    name = model.removeprefix("models/")
    if name in _KNOWN:
        return _KNOWN[name]
    if "preview" in name and name.startswith("gemini-embedding-2"):
        return replace(GEMINI_EMBEDDING_2_PREVIEW, model=name)
    if name.startswith(("gemini-embedding-001", "text-embedding-", "embedding-00")):
        return replace(GEMINI_EMBEDDING_001, model=name)
    return replace(GEMINI_EMBEDDING_2, model=name)


def estimate_tokens(text: str) -> int:
    """A conservative (high) estimate of the tokens in ``text``, without a tokenizer.

    One token per three UTF-8 bytes: English runs about four characters a token, so this
    overestimates it by a third, and CJK text (three bytes, about one token a character) comes
    out close to exact. Good for staying under a limit, not for billing.
    """
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 3)


# -------------------------------------------------------------------- tokens and cost


def media_tokens(
    modality: Modality,
    limits: ModelLimits,
    *,
    seconds: float | None = None,
    pages: int | None = None,
) -> int:
    """The input tokens one media part counts as, at the rates in ``limits``.

    An image is :attr:`~ModelLimits.tokens_per_image`; a PDF ``pages`` pages (the most an item
    may have when not known); audio ``seconds`` of sound; a video one frame a second, at most
    :attr:`~ModelLimits.max_video_frames`. A clip of unknown length counts as
    :data:`TYPICAL_CLIP_SECONDS`. Audio and video count at least one second.

    >>> media_tokens(Modality.VIDEO, limits_for("gemini-embedding-2"), seconds=10.5)
    2838
    """
    if modality is Modality.IMAGE:
        return limits.tokens_per_image
    if modality is Modality.PDF:
        return limits.tokens_per_pdf_page * (limits.max_pdf_pages if pages is None else pages)
    if modality is Modality.TEXT:
        raise ConfigurationError("text is counted with estimate_tokens(text), not media_tokens")
    length = TYPICAL_CLIP_SECONDS if seconds is None else seconds
    if modality is Modality.AUDIO:
        return max(1, math.ceil(length * limits.tokens_per_audio_second))
    frames = min(limits.max_video_frames, max(1, math.ceil(length)))
    return frames * limits.tokens_per_video_frame


def estimate_item_tokens(item: Embeddable, limits: ModelLimits) -> dict[Modality, int]:
    """The input tokens one item is estimated to count, by the modality of its parts.

    Text is counted with :func:`estimate_tokens` (high on purpose), media with
    :func:`media_tokens`. The length of a clip and the pages of a PDF are read from their
    headers when that is cheap and possible (libsndfile, PyAV, pypdf, never decoding); a part
    whose header cannot be read counts as a typical one. For a dry run's estimate, not a bill.
    """
    if isinstance(item, str):
        return {Modality.TEXT: estimate_tokens(item)}
    by: dict[Modality, int] = {}
    for part in as_content(item).parts:
        if isinstance(part, Text):
            n = estimate_tokens(part.text)
        elif isinstance(part, Pdf):
            n = media_tokens(Modality.PDF, limits, pages=_cheap_pages(part))
        elif isinstance(part, (Audio, Video)):
            n = media_tokens(part.modality, limits, seconds=_cheap_seconds(part))
        else:
            n = media_tokens(part.modality, limits)
        by[part.modality] = by.get(part.modality, 0) + n
    return by


def cost_usd(tokens: Mapping[Modality, int], limits: ModelLimits, *, batch: bool = False) -> float:
    """The estimated price in US dollars of ``tokens`` input tokens, by modality.

    Each modality at its :attr:`~ModelLimits.price_per_million_tokens` (a modality without a
    price at the text price); with ``batch``, less the Batch API's
    :attr:`~ModelLimits.batch_discount`. List prices from secondary sources: an estimate.
    """
    prices = limits.price_per_million_tokens
    fallback = prices.get(Modality.TEXT, 0.0)
    total = sum(n * prices.get(m, fallback) for m, n in tokens.items()) / 1e6
    return total * (1.0 - limits.batch_discount) if batch else total


def _cheap_seconds(part: Audio | Video) -> float | None:
    try:
        return duration_seconds(part)
    except (MMEmbedError, OSError):  # an estimate only: an unreadable clip counts as typical
        return None


def _cheap_pages(part: Pdf) -> int | None:
    try:
        return pdf_page_count(part)
    except (MMEmbedError, OSError):
        return None


# -------------------------------------------------------------------- item checks


def check_item(
    item: Embeddable,
    limits: ModelLimits,
    *,
    index: int = 0,
    texts: Sequence[str] | None = None,
) -> Content:
    """Check one item against every per-item limit of the model, before anything is sent.

    In order, part by part: a modality the model takes, an accepted MIME type, the size of a
    file, the running time of a clip and the pages of a PDF (read from headers); then the parts
    of each kind per item, and the token budget of all the text.

    Args:
        item: the item (one vector).
        limits: the model's limits.
        index: the item's position in the caller's input, named in errors.
        texts: the item's text parts as they will be sent (with a task prefix, say), in
            order; by default the parts' own text. The token budget is counted on these.

    Returns:
        The item as a :class:`~mmembed.content.Content`.

    Raises:
        ConfigurationError: ``item`` is not something mmembed embeds.
        UnsupportedMediaError: a modality or MIME type the model does not take, or media whose
            header cannot be read.
        InputLimitError: over a limit; ``err.index`` and ``err.limit`` say which, the message
            names the chunker that fixes it.
        MissingDependencyError: reading a video's length needs PyAV, a PDF's pages pypdf.

    >>> from mmembed import Content, Image
    >>> check_item(Content(["a"] + [Image(b"\\x89PNG\\r\\n\\x1a\\n", "image/png")] * 7),
    ...            limits_for("gemini-embedding-2"), index=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mmembed.errors.InputLimitError: item 3 (Content of 8 parts): has 7 images, but ...
    """
    try:
        content = as_content(item)
    except ConfigurationError as exc:
        raise ConfigurationError(f"item {index}: {exc}") from None
    label = _describe(index, content)
    model = limits.model
    counts: dict[Modality, int] = {}
    for part in content.parts:
        modality = part.modality
        counts[modality] = counts.get(modality, 0) + 1
        if modality not in limits.modalities:
            takes = ", ".join(sorted(m.value for m in limits.modalities))
            raise UnsupportedMediaError(
                f"{label}: {model} does not take {modality.value} (it takes {takes}); "
                "use gemini-embedding-2 for multimodal items"
            )
        if isinstance(part, Media):
            _check_media(part, limits, index, label)
    per_item = {
        Modality.IMAGE: (limits.max_images_per_item, "images"),
        Modality.AUDIO: (limits.max_audio_per_item, "audio clips"),
        Modality.VIDEO: (limits.max_video_per_item, "videos"),
        Modality.PDF: (limits.max_pdf_per_item, "PDFs"),
    }
    for modality, (most, noun) in per_item.items():
        n = counts.get(modality, 0)
        if n > most:
            raise InputLimitError(
                f"{label}: has {n} {noun}, but {model} takes at most {most} per item; "
                f"split it into several items ({_FIX[modality]})",
                index=index,
                limit=f"{modality.value}_per_item",
            )
    if texts is None:
        texts = [p.text for p in content.parts if isinstance(p, Text)]
    tokens = sum(estimate_tokens(t) for t in texts)
    if tokens > limits.max_tokens:
        raise InputLimitError(
            f"{label}: its text is about {tokens} tokens, over the {limits.max_tokens}-token "
            f"limit of {model}; {_FIX[Modality.TEXT]}",
            index=index,
            limit="tokens",
        )
    return content


def inline_bytes(content: Content) -> int:
    """The bytes an item's media add to a request body when sent inline (base64: 4/3 of them)."""
    return math.ceil(sum(p.nbytes for p in content.parts if isinstance(p, Media)) * _B64)


def check_inline(
    content: Content,
    limits: ModelLimits,
    *,
    index: int = 0,
    inline_bytes_limit: int | None = None,
    files_api: bool = True,
) -> bool:
    """Whether an item's media must go through the Files API rather than inline.

    They must when :func:`inline_bytes` is over ``inline_bytes_limit`` (by default the model's
    :attr:`~ModelLimits.max_inline_bytes`).

    Raises:
        InputLimitError: they must, and ``files_api`` is false (Vertex AI, where there is no
            Files API upload); the message names the chunker that makes the item smaller.
    """
    most = limits.max_inline_bytes if inline_bytes_limit is None else inline_bytes_limit
    upload = inline_bytes(content) > most
    if upload and not files_api:
        media_bytes = sum(p.nbytes for p in content.parts if isinstance(p, Media))
        raise InputLimitError(
            f"{_describe(index, content)}: {media_bytes / 2**20:.1f} MiB of media is too large "
            "to send inline and Vertex AI has no Files API upload here; "
            f"{_FIX[main_modality(content)]}",
            index=index,
            limit="inline_bytes",
        )
    return upload


def _check_media(part: Media, limits: ModelLimits, index: int, label: str) -> None:
    modality = part.modality
    model = limits.model
    allowed = limits.mime_types(modality)
    if part.mime_type not in allowed:
        hint = _CONVERT[modality]
        raise UnsupportedMediaError(
            f"{label}: {part.mime_type} is not accepted by {model} (it takes "
            f"{', '.join(sorted(allowed))}){'; ' + hint if hint else ''}"
        )
    size = part.nbytes
    if size > limits.max_file_bytes:
        raise InputLimitError(
            f"{label}: {type(part).__name__} {part.name} is {size / 2**20:.0f} MiB, over "
            f"the {limits.max_file_bytes / 2**20:.0f} MiB a file may have; {_FIX[modality]}",
            index=index,
            limit="file_bytes",
        )
    if isinstance(part, (Audio, Video)):
        seconds = duration_seconds(part)
        most = limits.max_audio_seconds if isinstance(part, Audio) else limits.max_video_seconds
        if seconds is not None and seconds > most + 1e-6:
            raise InputLimitError(
                f"{label}: {type(part).__name__} {part.name} runs {seconds:.1f} s, over the "
                f"{most:g} s {model} takes; {_FIX[modality]}",
                index=index,
                limit=f"{modality.value}_seconds",
            )
    elif isinstance(part, Pdf):
        pages = pdf_page_count(part)
        if pages is not None and pages > limits.max_pdf_pages:
            raise InputLimitError(
                f"{label}: PDF {part.name} has {pages} pages, over the "
                f"{limits.max_pdf_pages} pages {model} takes per item; {_FIX[Modality.PDF]}",
                index=index,
                limit="pdf_pages",
            )


def _describe(index: int, content: Content) -> str:
    if len(content.parts) == 1:
        part = content.parts[0]
        if isinstance(part, Text):
            return f"item {index} (text of {len(part.text)} characters)"
        return f"item {index} ({type(part).__name__} {part.name})"
    return f"item {index} (Content of {len(content.parts)} parts)"
