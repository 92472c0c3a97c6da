"""What each embedding model accepts: the one place in mmembed where a limit is written.

The embedder's pre-checks, the chunkers' defaults and :class:`~mmembed.testing.FakeGeminiServer`
all read these values. When a provider changes a limit, one line here changes.

>>> from mmembed.limits import limits_for
>>> limits_for("gemini-embedding-2").max_video_seconds
120.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from mmembed.content import Modality

__all__ = [
    "GEMINI_EMBEDDING_001",
    "GEMINI_EMBEDDING_2",
    "GEMINI_EMBEDDING_2_PREVIEW",
    "ModelLimits",
    "estimate_tokens",
    "limits_for",
]

_MB = 1024 * 1024


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
