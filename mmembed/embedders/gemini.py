"""Gemini Embedding 2 (and gemini-embedding-001) through the google-genai SDK, done right.

What this module guarantees, each point a trap the popular frameworks fall into:

- one content per item, so N items always give N vectors (a bare list of strings gives ONE fused
  vector on gemini-embedding-2), checked on every response together with the width;
- at most ``limits.max_items_per_call`` items per call, several calls in flight at once, rows in
  input order;
- every item checked against :func:`mmembed.limits.limits_for` before anything is sent;
- the task as the documented text prefix for Gemini Embedding 2, as ``task_type`` for 001;
- retries with backoff and jitter on 429, 5xx, timeouts and dropped connections, waiting at least
  as long as the server's ``RetryInfo`` asks, bounded in attempts and in total time;
- SDK and HTTP errors translated once into :mod:`mmembed.errors`, with the API key scrubbed from
  every object that would carry it;
- media too large to send inline uploaded through the Files API;
- tokens and an estimated cost counted per call and cumulatively.

google-genai is imported when an embedder is created, never by ``import mmembed``.

>>> from mmembed.testing import FakeGeminiServer
>>> with FakeGeminiServer() as server:
...     embedder = GeminiEmbedder(dimensions=768, client=server.client())
...     embedder.embed(["a red bicycle", "a blue car"]).shape
(2, 768)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import json
import logging
import math
import os
import random
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from mmembed._media_info import duration_seconds, pdf_page_count
from mmembed.cache import EmbeddingCache, aembed_through_cache, embed_through_cache
from mmembed.content import (
    Audio,
    Content,
    Embeddable,
    Media,
    Modality,
    Pdf,
    Task,
    Text,
    Video,
    as_content,
)
from mmembed.errors import (
    AuthenticationError,
    ConfigurationError,
    EmbeddingError,
    InputLimitError,
    MissingDependencyError,
    ProviderError,
    RateLimitError,
    UnsupportedMediaError,
)
from mmembed.limits import ModelLimits, estimate_tokens, limits_for
from mmembed.matryoshka import normalize

if TYPE_CHECKING:
    from google import genai
    from google.genai import types as genai_types

__all__ = [
    "TASK_PREFIXES",
    "TASK_TYPES",
    "EmbeddingUsage",
    "GeminiEmbedder",
    "apply_task",
]

logger = logging.getLogger("mmembed.gemini")

T = TypeVar("T")

#: How Gemini Embedding 2 is told the task: a template around the text (Google's documented
#: prefixes). ``{title}`` is the :class:`~mmembed.content.Text` title, or ``none``.
TASK_PREFIXES: Mapping[Task, str] = MappingProxyType(
    {
        Task.QUERY: "task: search result | query: {text}",
        Task.DOCUMENT: "title: {title} | text: {text}",
        Task.QUESTION_ANSWERING: "task: question answering | query: {text}",
        Task.FACT_CHECKING: "task: fact checking | query: {text}",
        Task.CODE_RETRIEVAL: "task: code retrieval | query: {text}",
        Task.CLASSIFICATION: "task: classification | query: {text}",
        Task.CLUSTERING: "task: clustering | query: {text}",
        Task.SIMILARITY: "task: sentence similarity | query: {text}",
    }
)

#: How gemini-embedding-001 is told the task: the ``task_type`` request field.
TASK_TYPES: Mapping[Task, str] = MappingProxyType(
    {
        Task.QUERY: "RETRIEVAL_QUERY",
        Task.DOCUMENT: "RETRIEVAL_DOCUMENT",
        Task.QUESTION_ANSWERING: "QUESTION_ANSWERING",
        Task.FACT_CHECKING: "FACT_VERIFICATION",
        Task.CODE_RETRIEVAL: "CODE_RETRIEVAL_QUERY",
        Task.CLASSIFICATION: "CLASSIFICATION",
        Task.CLUSTERING: "CLUSTERING",
        Task.SIMILARITY: "SEMANTIC_SIMILARITY",
    }
)

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
_MEDIA_MODALITY = {
    "TEXT": Modality.TEXT,
    "MODALITY_UNSPECIFIED": Modality.TEXT,
    "IMAGE": Modality.IMAGE,
    "AUDIO": Modality.AUDIO,
    "VIDEO": Modality.VIDEO,
    "DOCUMENT": Modality.PDF,
}
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_KEY_PATTERN = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
_REQUEST_INDEX = re.compile(r"\brequests\[(\d+)\]")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*s\s*$")
# base64 grows media by 4/3; JSON framing and the text parts are small next to that
_B64 = 4 / 3


def apply_task(text: str, task: Task, *, title: str | None = None) -> str:
    """The text Gemini Embedding 2 should see for ``task`` (the documented prefix added).

    >>> apply_task("how do cells make energy?", Task.QUERY)
    'task: search result | query: how do cells make energy?'
    >>> apply_task("Mitochondria make ATP.", Task.DOCUMENT, title="Biology")
    'title: Biology | text: Mitochondria make ATP.'
    """
    return TASK_PREFIXES[Task(task)].format(text=text, title=title or "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingUsage:
    """Tokens and an estimated price, for one ``embed`` call or summed over an embedder's life.

    ``cost_usd`` uses :attr:`mmembed.limits.ModelLimits.price_per_million_tokens` (list prices from
    secondary sources): an estimate, not a bill. ``estimated`` is true when the service did not
    report token counts for some request and text tokens were estimated instead (media tokens are
    then not counted).
    """

    requests: int = 0
    items: int = 0
    cached_items: int = 0
    tokens: int = 0
    tokens_by_modality: Mapping[Modality, int] = field(default_factory=lambda: MappingProxyType({}))
    cost_usd: float = 0.0
    estimated: bool = False

    def __add__(self, other: EmbeddingUsage) -> EmbeddingUsage:
        by: dict[Modality, int] = dict(self.tokens_by_modality)
        for modality, n in other.tokens_by_modality.items():
            by[modality] = by.get(modality, 0) + n
        return EmbeddingUsage(
            requests=self.requests + other.requests,
            items=self.items + other.items,
            cached_items=self.cached_items + other.cached_items,
            tokens=self.tokens + other.tokens,
            tokens_by_modality=MappingProxyType(by),
            cost_usd=self.cost_usd + other.cost_usd,
            estimated=self.estimated or other.estimated,
        )

    def __repr__(self) -> str:
        return (
            f"EmbeddingUsage(requests={self.requests}, items={self.items}, "
            f"cached_items={self.cached_items}, tokens={self.tokens}, "
            f"cost_usd={self.cost_usd:.6f}{', estimated' if self.estimated else ''})"
        )


@dataclass(slots=True)
class _Item:
    """One checked item, ready to become a ``types.Content``."""

    index: int
    parts: Sequence[Text | Media]  # a Text part's text is taken from ``texts``, in order
    texts: list[str]  # the text parts as sent (task prefix applied)
    inline_bytes: int  # base64 bytes it adds to a request body when sent inline
    upload: bool  # its media go through the Files API


class _Cancelled(Exception):
    """A call not sent because another one of the same ``embed`` failed."""


# the parts of an item given as a bare str: one text part, whose text is in ``_Item.texts``
_BARE_TEXT: tuple[Text | Media, ...] = (Text(""),)


@dataclass(slots=True)
class _Answer:
    """One call's reply, whichever path produced it."""

    vectors: list[Any]
    prompt_tokens: int | None
    tokens_by_modality: list[tuple[str, int]]


def _from_response(response: Any) -> _Answer:
    vectors = [e.values for e in response.embeddings or []]
    meta = response.usage_metadata
    if meta is None or meta.prompt_token_count is None:
        return _Answer(vectors=vectors, prompt_tokens=None, tokens_by_modality=[])
    details = [
        (str(getattr(d.modality, "value", d.modality) or "TEXT"), int(d.token_count or 0))
        for d in meta.prompt_tokens_details or []
    ]
    return _Answer(
        vectors=vectors, prompt_tokens=int(meta.prompt_token_count), tokens_by_modality=details
    )


@dataclass(slots=True)
class _Failure:
    error: EmbeddingError
    retryable: bool
    server_delay: float | None


class _Redactor:
    """Removes the API key from text; its repr never shows the key."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _KEY_PATTERN.sub("[redacted]", text)

    def __repr__(self) -> str:
        return "_Redactor(***)"


class GeminiEmbedder:
    """An :class:`~mmembed.protocols.Embedder` for Google's Gemini embedding models.

    Args:
        model: the model id (``"gemini-embedding-2"``, ``"gemini-embedding-2-preview"``,
            ``"gemini-embedding-001"``, or any other; limits come from
            :func:`mmembed.limits.limits_for`).
        dimensions: the vector width, sent as ``output_dimensionality``; rows are always
            L2-normalised here whatever the service returns.
        api_key: the key; by default the SDK reads ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``.
        client: a ``google.genai.Client`` to use instead of creating one (a test client from
            :meth:`mmembed.testing.FakeGeminiServer.client`, a Vertex client...).
        vertexai: force the Vertex AI backend on or off; by default the SDK's environment
            (``GOOGLE_GENAI_USE_VERTEXAI``, ``GOOGLE_CLOUD_PROJECT``...) decides.
        timeout: seconds one HTTP request may take before it is abandoned and retried.
        max_retries: retries after the first attempt of one call.
        max_retry_seconds: total time one call may spend retrying; a server asking to wait
            longer than what is left ends the call with :class:`RateLimitError` at once.
        retry_initial_delay: first backoff in seconds (doubled each retry, with jitter).
        retry_max_delay: cap on one backoff.
        concurrency: calls in flight at once for large inputs (threads for :meth:`embed`, tasks
            for :meth:`aembed`).
        batch_size: items per call, at most the model's ``max_items_per_call``; forced to 1 on
            Vertex AI, which takes one content per request.
        cache: an :class:`~mmembed.cache.EmbeddingCache` or a path to one; items found there are
            not sent.
        inline_bytes_limit: media bytes (after base64) one request may carry inline; items over
            it go through the Files API. Defaults to the model's ``max_inline_bytes``.
        file_wait_seconds: how long to wait for an uploaded file to become ACTIVE.

    Raises:
        ConfigurationError: an option is out of range.
        AuthenticationError: no API key or credentials were found.
    """

    def __init__(
        self,
        model: str = "gemini-embedding-2",
        *,
        dimensions: int = 3072,
        api_key: str | None = None,
        client: genai.Client | None = None,
        vertexai: bool | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        max_retry_seconds: float = 300.0,
        retry_initial_delay: float = 1.0,
        retry_max_delay: float = 60.0,
        concurrency: int = 8,
        batch_size: int | None = None,
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
        inline_bytes_limit: int | None = None,
        file_wait_seconds: float = 600.0,
    ) -> None:
        if not _is_str(model) or not model.strip():
            raise ConfigurationError(f"model must be a non-empty model id, got {model!r}")
        self._model = model.removeprefix("models/")
        self._limits = limits_for(self._model)
        lim = self._limits
        self._dimensions = _int_option(
            "dimensions",
            dimensions,
            lim.min_dimensions,
            lim.max_dimensions,
            f"{self._model} makes vectors of {lim.min_dimensions} to {lim.max_dimensions} "
            "dimensions; 768, 1536 and 3072 are recommended",
        )
        _positive("timeout", timeout)
        _positive("max_retry_seconds", max_retry_seconds)
        _positive("retry_initial_delay", retry_initial_delay)
        _positive("retry_max_delay", retry_max_delay)
        _positive("file_wait_seconds", file_wait_seconds)
        max_retries = _int_option("max_retries", max_retries, 0, 1000, "use 0 to never retry")
        concurrency = _int_option("concurrency", concurrency, 1, 1024, "")
        batch_size = _int_option(
            "batch_size",
            lim.max_items_per_call if batch_size is None else batch_size,
            1,
            lim.max_items_per_call,
            f"{self._model} takes at most {lim.max_items_per_call} items per call",
        )
        inline_bytes_limit = _int_option(
            "inline_bytes_limit",
            lim.max_inline_bytes if inline_bytes_limit is None else inline_bytes_limit,
            1,
            lim.max_inline_bytes,
            "items over it go through the Files API",
        )
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._max_retry_seconds = float(max_retry_seconds)
        self._retry_initial_delay = float(retry_initial_delay)
        self._retry_max_delay = float(retry_max_delay)
        self._concurrency = concurrency
        self._inline_limit = int(inline_bytes_limit)
        self._file_wait = float(file_wait_seconds)
        self._cache = (
            cache if isinstance(cache, EmbeddingCache) or cache is None else EmbeddingCache(cache)
        )

        genai, types = _import_genai()
        self._types = types
        self._owns_client = client is None
        if client is None:
            client = _make_client(genai, types, api_key=api_key, vertexai=vertexai)
        self._client = client
        api_client = getattr(client, "_api_client", None)
        self._redact = _Redactor([api_key or "", str(getattr(api_client, "api_key", "") or "")])
        self._vertex = bool(getattr(client, "vertexai", False))
        self._batch_size = 1 if self._vertex else batch_size
        self._http_options = types.HttpOptions(timeout=math.ceil(self._timeout * 1000))
        # The SDK validates every vector of a reply with pydantic, which costs more CPU than
        # the round trip itself for 100 items; on the Developer API the body is built and the
        # reply parsed here, through the SDK's own transport (auth, base URL, env, timeouts).
        api_client = getattr(client, "_api_client", None)
        self._raw = (
            not self._vertex
            and callable(getattr(api_client, "request", None))
            and callable(getattr(api_client, "async_request", None))
        )

        self._lock = threading.Lock()
        self._usage = EmbeddingUsage()
        self._last_usage = EmbeddingUsage()
        self._uploads: dict[str, tuple[str, str]] = {}  # sha256 -> (file uri, mime type)
        self._guards: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()

    # ---------------------------------------------------------------- properties

    @property
    def model(self) -> str:
        """The model id."""
        return self._model

    @property
    def dimensions(self) -> int:
        """The width of every vector."""
        return self._dimensions

    @property
    def modalities(self) -> frozenset[Modality]:
        """What the model accepts."""
        return self._limits.modalities

    @property
    def limits(self) -> ModelLimits:
        """The model's documented limits (what every item is checked against)."""
        return self._limits

    @property
    def vertexai(self) -> bool:
        """Whether requests go to Vertex AI rather than the Gemini Developer API."""
        return self._vertex

    @property
    def cache(self) -> EmbeddingCache | None:
        """The embedding cache in front of the service, if any."""
        return self._cache

    @property
    def usage(self) -> EmbeddingUsage:
        """Tokens and estimated cost summed over every call so far."""
        with self._lock:
            return self._usage

    @property
    def last_usage(self) -> EmbeddingUsage:
        """Tokens and estimated cost of the most recent :meth:`embed` or :meth:`aembed`."""
        with self._lock:
            return self._last_usage

    @property
    def fingerprint(self) -> Mapping[str, Any]:
        """What determines the vectors, for an index to detect an incompatible embedder."""
        task_style = self._limits.task_style
        return MappingProxyType(
            {
                "backend": "gemini",
                "model": self._model,
                "dimensions": self._dimensions,
                "normalized": True,
                "task_style": task_style,
                "tasks": dict(TASK_PREFIXES if task_style == "prefix" else TASK_TYPES),
            }
        )

    # ---------------------------------------------------------------- public API

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Embed ``items``: one unit float32 row each, in input order.

        Raises:
            InputLimitError: an item is over the model's limits (nothing was sent).
            UnsupportedMediaError: an item holds a type or format the model does not take.
            RateLimitError, AuthenticationError, ProviderError: the service failed.
        """
        task = _task(task)
        items = _as_list(items)
        tally = _Tally()
        if self._cache is not None:
            out, hits = embed_through_cache(
                self._cache,
                items,
                model=self._model,
                dimensions=self._dimensions,
                task=task,
                compute=lambda todo: self._embed_sync(todo, task, tally),
            )
            tally.cached += hits
        else:
            out = self._embed_sync(items, task, tally)
        self._record(tally)
        return out

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`, on the SDK's native async client."""
        task = _task(task)
        items = _as_list(items)
        tally = _Tally()
        if self._cache is not None:
            out, hits = await aembed_through_cache(
                self._cache,
                items,
                model=self._model,
                dimensions=self._dimensions,
                task=task,
                compute=lambda todo: self._embed_async(todo, task, tally),
            )
            tally.cached += hits
        else:
            out = await self._embed_async(items, task, tally)
        self._record(tally)
        return out

    def check(self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT) -> None:
        """Check ``items`` against the model's limits without sending anything.

        Raises:
            InputLimitError, UnsupportedMediaError: as :meth:`embed` would, before any request.
        """
        self._prepare(_as_list(items), _task(task))

    def close(self) -> None:
        """Close the HTTP client if this embedder created it."""
        if self._owns_client:
            self._client.close()

    async def aclose(self) -> None:
        """Close the async HTTP client if this embedder created it."""
        if self._owns_client:
            await self._client.aio.aclose()

    def __enter__(self) -> GeminiEmbedder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        backend = "vertexai" if self._vertex else "gemini-api"
        return (
            f"GeminiEmbedder(model={self._model!r}, dimensions={self._dimensions}, "
            f"backend={backend!r})"
        )

    # ---------------------------------------------------------------- preparation

    def _prepare(self, items: list[Embeddable], task: Task) -> list[_Item]:
        # a bare str (the bulk of most workloads) is checked here without building a Content:
        # text is a modality of every model, so only its length can be over a limit
        template = TASK_PREFIXES[task] if self._limits.task_style == "prefix" else None
        most = self._limits.max_tokens
        prepared: list[_Item] = []
        for i, item in enumerate(items):
            if type(item) is str:
                text = item if template is None else template.format(text=item, title="none")
                if estimate_tokens(text) <= most:
                    prepared.append(_Item(i, _BARE_TEXT, [text], 0, False))
                    continue
            prepared.append(self._check_item(i, item, task))  # the full checks and messages
        return prepared

    def _check_item(self, index: int, item: Embeddable, task: Task) -> _Item:
        lim = self._limits
        try:
            content = as_content(item)
        except ConfigurationError as exc:
            raise ConfigurationError(f"item {index}: {exc}") from None
        label = _describe(index, content)
        counts: dict[Modality, int] = {}
        texts: list[str] = []
        media_bytes = 0
        first_text = True
        for part in content.parts:
            modality = part.modality
            counts[modality] = counts.get(modality, 0) + 1
            if modality not in lim.modalities:
                takes = ", ".join(sorted(m.value for m in lim.modalities))
                raise UnsupportedMediaError(
                    f"{label}: {self._model} does not take {modality.value} (it takes {takes}); "
                    "use gemini-embedding-2 for multimodal items"
                )
            if isinstance(part, Text):
                text = part.text
                if lim.task_style == "prefix" and first_text:
                    # the documented prefixes frame one text; the first text part carries it
                    text = apply_task(text, task, title=part.title)
                    first_text = False
                texts.append(text)
                continue
            assert isinstance(part, Media)
            allowed = lim.mime_types(modality)
            if part.mime_type not in allowed:
                hint = _CONVERT[modality]
                raise UnsupportedMediaError(
                    f"{label}: {part.mime_type} is not accepted by {self._model} (it takes "
                    f"{', '.join(sorted(allowed))}){'; ' + hint if hint else ''}"
                )
            size = part.nbytes
            if size > lim.max_file_bytes:
                raise InputLimitError(
                    f"{label}: {type(part).__name__} {part.name} is {size / 2**20:.0f} MiB, over "
                    f"the {lim.max_file_bytes / 2**20:.0f} MiB a file may have; "
                    f"{_FIX[modality]}",
                    index=index,
                    limit="file_bytes",
                )
            media_bytes += size
            self._check_media(index, label, part)
        per_item = {
            Modality.IMAGE: (lim.max_images_per_item, "images"),
            Modality.AUDIO: (lim.max_audio_per_item, "audio clips"),
            Modality.VIDEO: (lim.max_video_per_item, "videos"),
            Modality.PDF: (lim.max_pdf_per_item, "PDFs"),
        }
        for modality, (most, noun) in per_item.items():
            n = counts.get(modality, 0)
            if n > most:
                raise InputLimitError(
                    f"{label}: has {n} {noun}, but {self._model} takes at most {most} per item; "
                    f"split it into several items ({_FIX[modality]})",
                    index=index,
                    limit=f"{modality.value}_per_item",
                )
        tokens = sum(estimate_tokens(t) for t in texts)
        if tokens > lim.max_tokens:
            raise InputLimitError(
                f"{label}: its text is about {tokens} tokens, over the {lim.max_tokens}-token "
                f"limit of {self._model}; {_FIX[Modality.TEXT]}",
                index=index,
                limit="tokens",
            )
        inline = math.ceil(media_bytes * _B64)
        upload = inline > self._inline_limit
        if upload and self._vertex:
            raise InputLimitError(
                f"{label}: {media_bytes / 2**20:.1f} MiB of media is too large to send inline "
                f"and Vertex AI has no Files API upload here; {_FIX[_main_modality(content)]}",
                index=index,
                limit="inline_bytes",
            )
        return _Item(
            index=index,
            parts=content.parts,
            texts=texts,
            inline_bytes=0 if upload else inline,
            upload=upload,
        )

    def _check_media(self, index: int, label: str, part: Media) -> None:
        lim = self._limits
        if isinstance(part, (Audio, Video)):
            seconds = duration_seconds(part)
            most = lim.max_audio_seconds if isinstance(part, Audio) else lim.max_video_seconds
            if seconds is not None and seconds > most + 1e-6:
                modality = part.modality
                raise InputLimitError(
                    f"{label}: {type(part).__name__} {part.name} runs {seconds:.1f} s, over the "
                    f"{most:g} s {self._model} takes; {_FIX[modality]}",
                    index=index,
                    limit=f"{modality.value}_seconds",
                )
        elif isinstance(part, Pdf):
            pages = pdf_page_count(part)
            if pages is not None and pages > lim.max_pdf_pages:
                raise InputLimitError(
                    f"{label}: PDF {part.name} has {pages} pages, over the "
                    f"{lim.max_pdf_pages} pages {self._model} takes per item; "
                    f"{_FIX[Modality.PDF]}",
                    index=index,
                    limit="pdf_pages",
                )

    def _batches(self, items: list[_Item]) -> list[list[_Item]]:
        batches: list[list[_Item]] = []
        current: list[_Item] = []
        size = 0
        for item in items:
            if current and (
                len(current) >= self._batch_size or size + item.inline_bytes > self._inline_limit
            ):
                batches.append(current)
                current, size = [], 0
            current.append(item)
            size += item.inline_bytes
        if current:
            batches.append(current)
        return batches

    def _config(self, task: Task) -> genai_types.EmbedContentConfig:
        types = self._types
        task_type = TASK_TYPES[task] if self._limits.task_style == "task_type" else None
        config: genai_types.EmbedContentConfig = types.EmbedContentConfig(
            output_dimensionality=self._dimensions,
            task_type=task_type,
            http_options=types.HttpOptions(timeout=math.ceil(self._timeout * 1000)),
        )
        return config

    def _content(self, item: _Item, uploaded: Mapping[str, tuple[str, str]]) -> genai_types.Content:
        types = self._types
        parts: list[genai_types.Part] = []
        text_iter = iter(item.texts)
        for part in item.parts:
            if isinstance(part, Text):
                parts.append(types.Part(text=next(text_iter)))
            elif item.upload:
                uri, mime = uploaded[part.sha256()]
                parts.append(types.Part(file_data=types.FileData(file_uri=uri, mime_type=mime)))
            else:
                parts.append(
                    types.Part(
                        inline_data=types.Blob(data=part.read_bytes(), mime_type=part.mime_type)
                    )
                )
        content: genai_types.Content = types.Content(parts=parts)
        return content

    # ---------------------------------------------------------------- sync path

    def _embed_sync(
        self, items: list[Embeddable], task: Task, tally: _Tally
    ) -> NDArray[np.float32]:
        prepared = self._prepare(items, task)
        out = np.empty((len(items), self._dimensions), dtype=np.float32)
        if not prepared:
            return out
        config = self._config(task)
        batches = self._batches(prepared)
        failed = threading.Event()  # set when one call fails: the others stop retrying

        def send(batch: list[_Item]) -> _Answer | str:
            if failed.is_set():
                raise _Cancelled
            try:
                return self._send_sync(batch, task, config, failed)
            except BaseException:
                failed.set()
                raise

        def store(batch: list[_Item], reply: _Answer | str) -> None:
            answer = self._parse(reply) if isinstance(reply, str) else reply
            self._store(out, batch, answer, tally)

        if len(batches) == 1 or self._concurrency == 1:
            for batch in batches:
                store(batch, send(batch))
            return out
        pool = ThreadPoolExecutor(
            max_workers=min(self._concurrency, len(batches)), thread_name_prefix="mmembed-gemini"
        )
        try:
            futures = [pool.submit(send, b) for b in batches]
            batch_of = dict(zip(futures, batches, strict=True))
            for fut in as_completed(futures):
                if fut.exception() is None:
                    store(batch_of[fut], fut.result())
                    continue
                # the calls in flight end at their current attempt; then the first real
                # failure (translated already) is raised, not a call skipped for it
                failed.set()
                pool.shutdown(wait=True, cancel_futures=True)
                for f in futures:
                    if f.done() and not f.cancelled():
                        error = f.exception()
                        if error is not None and not isinstance(error, _Cancelled):
                            f.result()
                fut.result()
        except BaseException:
            failed.set()
            raise
        finally:
            # on failure, calls not started yet are dropped; calls in flight end at their
            # current attempt because `failed` is set
            pool.shutdown(wait=True, cancel_futures=True)
        return out

    def _send_sync(
        self,
        batch: list[_Item],
        task: Task,
        config: genai_types.EmbedContentConfig,
        stop: threading.Event,
    ) -> _Answer | str:
        """One call's reply; reading it is left to the caller, so that a worker's next call goes
        out while the last reply is read."""
        try:
            uploaded = self._upload_sync([it for it in batch if it.upload], stop)
            if self._raw:
                body = self._request_body(batch, uploaded, task)
                return self._retry_sync(lambda: self._post_sync(body), len(batch), stop)
            contents = [self._content(it, uploaded) for it in batch]
            response = self._retry_sync(
                lambda: self._client.models.embed_content(
                    model=self._model, contents=contents, config=config
                ),
                len(batch),
                stop,
            )
            return _from_response(response)
        except ProviderError as err:
            raise _name_item(err, batch) from err

    def _retry_sync(
        self, send: Callable[[], T], n_items: int, stop: threading.Event | None = None
    ) -> T:
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                return send()
            except Exception as exc:
                attempt += 1
                delay = self._next_delay(exc, attempt, start, n_items)
                if stop is not None and stop.wait(delay):
                    # another call of this embed failed: its error is the one reported
                    raise self._classify(exc).error from exc
                if stop is None:
                    time.sleep(delay)

    def _upload_sync(
        self, items: list[_Item], stop: threading.Event | None = None
    ) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        for item in items:
            for part in item.parts:
                if isinstance(part, Media):
                    sha = part.sha256()
                    if sha not in found:
                        found[sha] = self._upload_one_sync(part, sha, stop)
        return found

    def _upload_one_sync(
        self, part: Media, sha: str, stop: threading.Event | None = None
    ) -> tuple[str, str]:
        with self._lock:
            known = self._uploads.get(sha)
        if known is not None:
            return known
        config = {"mime_type": part.mime_type, "display_name": f"mmembed-{sha[:16]}"}
        with part.open() as f:
            file = self._retry_sync(
                lambda: self._client.files.upload(file=f, config=config),  # type: ignore[arg-type]
                1,
                stop,
            )
        deadline = time.monotonic() + self._file_wait
        delay = 0.2
        while _file_state(file) == "PROCESSING":
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"uploaded {part.name} was still PROCESSING after {self._file_wait:g} s; "
                    "raise file_wait_seconds or try again later",
                    retryable=True,
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            file = self._retry_sync(partial(self._client.files.get, name=file.name or ""), 1, stop)
        result = self._file_ref(part, file)
        with self._lock:
            self._uploads[sha] = result
        return result

    # ---------------------------------------------------------------- async path

    async def _embed_async(
        self, items: list[Embeddable], task: Task, tally: _Tally
    ) -> NDArray[np.float32]:
        await self._guard_loop()
        # probing durations and page counts reads files: keep it off the event loop
        prepared = await asyncio.to_thread(self._prepare, items, task)
        out = np.empty((len(items), self._dimensions), dtype=np.float32)
        if not prepared:
            return out
        config = self._config(task)
        batches = self._batches(prepared)
        gate = asyncio.Semaphore(self._concurrency)

        async def run(batch: list[_Item]) -> None:
            async with gate:
                reply = await self._send_async(batch, task, config)
            # the next call (let in by the gate) goes out before this reply is read
            await asyncio.sleep(0)
            answer = self._parse(reply) if isinstance(reply, str) else reply
            self._store(out, batch, answer, tally)

        tasks = [asyncio.ensure_future(run(b)) for b in batches]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return out

    async def _send_async(
        self, batch: list[_Item], task: Task, config: genai_types.EmbedContentConfig
    ) -> _Answer | str:
        """Async twin of :meth:`_send_sync`."""
        try:
            uploaded = await self._upload_async([it for it in batch if it.upload])
            if self._raw:
                if any(it.inline_bytes for it in batch):
                    # reading media files and base64 belong off the event loop
                    body = await asyncio.to_thread(self._request_body, batch, uploaded, task)
                else:
                    body = self._request_body(batch, uploaded, task)
                return await self._retry_async(lambda: self._post_async(body), len(batch))
            contents = await asyncio.to_thread(
                lambda: [self._content(it, uploaded) for it in batch]
            )
            response = await self._retry_async(
                lambda: self._client.aio.models.embed_content(
                    model=self._model, contents=contents, config=config
                ),
                len(batch),
            )
            return _from_response(response)
        except ProviderError as err:
            raise _name_item(err, batch) from err

    async def _guard_loop(self) -> None:
        """Close this loop's connection pool when the loop shuts down.

        The SDK keeps one async connection pool per event loop and never closes the pool of a
        loop that has finished, so every ``asyncio.run(embedder.aembed(...))`` would leave open
        sockets behind. An async generator started in the loop is finalised by
        ``loop.shutdown_asyncgens()`` (which ``asyncio.run`` calls), and its ``finally`` closes
        that loop's pool while the loop can still run it.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop in self._guards:
                return
            guard = _close_pool_at_shutdown(self._client)
            self._guards[loop] = guard
        await guard.__anext__()

    async def _retry_async(self, send: Callable[[], Awaitable[T]], n_items: int) -> T:
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                return await send()
            except Exception as exc:
                attempt += 1
                delay = self._next_delay(exc, attempt, start, n_items)
            await asyncio.sleep(delay)

    async def _upload_async(self, items: list[_Item]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        for item in items:
            for part in item.parts:
                if isinstance(part, Media):
                    sha = await asyncio.to_thread(part.sha256)
                    if sha not in found:
                        found[sha] = await self._upload_one_async(part, sha)
        return found

    async def _upload_one_async(self, part: Media, sha: str) -> tuple[str, str]:
        with self._lock:
            known = self._uploads.get(sha)
        if known is not None:
            return known
        config = {"mime_type": part.mime_type, "display_name": f"mmembed-{sha[:16]}"}
        source: Any = str(part.path) if part.path is not None else io.BytesIO(part.read_bytes())
        file = await self._retry_async(
            lambda: self._client.aio.files.upload(file=source, config=config),  # type: ignore[arg-type]
            1,
        )
        deadline = time.monotonic() + self._file_wait
        delay = 0.2
        while _file_state(file) == "PROCESSING":
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"uploaded {part.name} was still PROCESSING after {self._file_wait:g} s; "
                    "raise file_wait_seconds or try again later",
                    retryable=True,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            file = await self._retry_async(
                partial(self._client.aio.files.get, name=file.name or ""), 1
            )
        result = self._file_ref(part, file)
        with self._lock:
            self._uploads[sha] = result
        return result

    # ---------------------------------------------------------------- shared

    def _file_ref(self, part: Media, file: genai_types.File) -> tuple[str, str]:
        state = _file_state(file)
        if state != "ACTIVE" or not file.uri:
            detail = self._redact(str(getattr(file, "error", None) or ""))
            raise ProviderError(
                f"the Files API could not process {part.name} (state {state}"
                f"{': ' + detail if detail else ''}); check that the file is a valid "
                f"{part.mime_type}"
            )
        return file.uri, file.mime_type or part.mime_type

    def _store(
        self,
        out: NDArray[np.float32],
        batch: list[_Item],
        answer: _Answer,
        tally: _Tally,
    ) -> None:
        vectors = answer.vectors
        if len(vectors) != len(batch):
            raise ProviderError(
                f"{self._model} returned {len(vectors)} vectors for {len(batch)} items; "
                "nothing from this call was used. This is a service fault: try again"
            )
        try:
            rows = np.array(vectors, dtype=np.float32)  # one conversion when the reply is sound
        except (TypeError, ValueError):
            rows = np.empty(0, dtype=np.float32)
        if rows.shape != (len(batch), self._dimensions):
            self._reject_rows(vectors, batch)
        if not np.all(np.isfinite(rows)):
            raise ProviderError(
                f"{self._model} returned non-finite values; nothing from this call was used"
            )
        rows = normalize(rows)
        if np.any(np.einsum("ij,ij->i", rows, rows) == 0):
            raise ProviderError(f"{self._model} returned an all-zero vector; try again")
        out[[item.index for item in batch]] = rows
        tally.add(self._usage_of(batch, answer))

    def _reject_rows(self, vectors: list[Any], batch: list[_Item]) -> None:
        """Raise the error that says which vector of a reply is malformed."""
        rows = np.empty((len(batch), self._dimensions), dtype=np.float32)
        for row, values in enumerate(vectors):
            if not isinstance(values, list) or len(values) != self._dimensions:
                got = len(values) if isinstance(values, list) else type(values).__name__
                raise ProviderError(
                    f"{self._model} returned a vector of {got} values for item "
                    f"{batch[row].index}, expected {self._dimensions}; nothing from this call "
                    "was used"
                )
            try:
                rows[row] = values
            except (TypeError, ValueError):
                raise ProviderError(
                    f"{self._model} returned a vector that is not numbers for item "
                    f"{batch[row].index}; nothing from this call was used"
                ) from None
        raise ProviderError(  # every row converts on its own, but not all of them together
            f"{self._model} returned vectors of mixed shapes; nothing from this call was used"
        )

    def _usage_of(self, batch: list[_Item], answer: _Answer) -> EmbeddingUsage:
        by: dict[Modality, int] = {}
        estimated = False
        total = 0
        if answer.prompt_tokens is not None:
            total = answer.prompt_tokens
            for name, n in answer.tokens_by_modality:
                modality = _MEDIA_MODALITY.get(name, Modality.TEXT)
                by[modality] = by.get(modality, 0) + n
            if not by:
                by[_main_modality_of_batch(batch)] = total
        else:
            estimated = True
            total = sum(estimate_tokens(t) for it in batch for t in it.texts)
            by[Modality.TEXT] = total
        prices = self._limits.price_per_million_tokens
        cost = sum(n * prices.get(m, prices.get(Modality.TEXT, 0.0)) for m, n in by.items()) / 1e6
        return EmbeddingUsage(
            requests=1,
            items=len(batch),
            tokens=total,
            tokens_by_modality=MappingProxyType(by),
            cost_usd=cost,
            estimated=estimated,
        )

    # ---------------------------------------------------------------- raw JSON path

    def _request_body(
        self, batch: list[_Item], uploaded: Mapping[str, tuple[str, str]], task: Task
    ) -> dict[str, Any]:
        """The ``batchEmbedContents`` body, exactly as the SDK would build it."""
        model = f"models/{self._model}"
        task_type = TASK_TYPES[task] if self._limits.task_style == "task_type" else None
        requests: list[dict[str, Any]] = []
        for item in batch:
            parts: list[dict[str, Any]] = []
            text_iter = iter(item.texts)
            for part in item.parts:
                if isinstance(part, Text):
                    parts.append({"text": next(text_iter)})
                elif item.upload:
                    uri, mime = uploaded[part.sha256()]
                    parts.append({"file_data": {"file_uri": uri, "mime_type": mime}})
                else:
                    data = base64.urlsafe_b64encode(part.read_bytes()).decode("ascii")
                    parts.append({"inline_data": {"data": data, "mime_type": part.mime_type}})
            request: dict[str, Any] = {
                "content": {"parts": parts},
                "outputDimensionality": self._dimensions,
                "model": model,
            }
            if task_type is not None:
                request["taskType"] = task_type
            requests.append(request)
        return {"requests": requests}

    def _post_sync(self, body: dict[str, Any]) -> str:
        response = self._client._api_client.request(
            "post", f"models/{self._model}:batchEmbedContents", body, self._http_options
        )
        return str(response.body or "")

    async def _post_async(self, body: dict[str, Any]) -> str:
        response = await self._client._api_client.async_request(
            "post", f"models/{self._model}:batchEmbedContents", body, self._http_options
        )
        return str(response.body or "")

    def _parse(self, raw: str) -> _Answer:
        try:
            data = _json_loads()(raw) if raw else {}
        except ValueError:
            raise ProviderError(
                f"{self._model} answered with something that is not JSON "
                f"({len(raw)} characters); try again"
            ) from None
        if not isinstance(data, dict):
            raise ProviderError(f"{self._model} answered with unexpected JSON; try again")
        embeddings = data.get("embeddings") or []
        if not isinstance(embeddings, list):
            embeddings = []
        vectors = [e.get("values") if isinstance(e, dict) else None for e in embeddings]
        usage = data.get("usageMetadata")
        prompt_tokens: int | None = None
        details: list[tuple[str, int]] = []
        if isinstance(usage, dict) and isinstance(usage.get("promptTokenCount"), int):
            prompt_tokens = int(usage["promptTokenCount"])
            for d in usage.get("promptTokensDetails") or []:
                if isinstance(d, dict):
                    details.append((str(d.get("modality", "TEXT")), int(d.get("tokenCount", 0))))
        return _Answer(vectors=vectors, prompt_tokens=prompt_tokens, tokens_by_modality=details)

    def _record(self, tally: _Tally) -> None:
        call = tally.total()
        with self._lock:
            self._last_usage = call
            self._usage = self._usage + call
        if call.requests:
            logger.debug(
                "gemini %s: %d requests, %d items (%d cached), %d tokens, ~$%.6f",
                self._model,
                call.requests,
                call.items,
                call.cached_items,
                call.tokens,
                call.cost_usd,
            )

    def _next_delay(self, exc: Exception, attempt: int, start: float, n_items: int) -> float:
        """How long to wait before the next attempt, or raise the translated error."""
        failure = self._classify(exc)
        if not failure.retryable:
            raise failure.error from exc
        backoff = min(self._retry_max_delay, self._retry_initial_delay * 2.0 ** (attempt - 1))
        delay = backoff / 2 + random.uniform(0, backoff / 2)
        if failure.server_delay is not None:
            # never earlier than the server asked, and spread out so workers do not stampede
            delay = max(delay, failure.server_delay * (1 + random.uniform(0, 0.1)))
        elapsed = time.monotonic() - start
        left = self._max_retry_seconds - elapsed
        if attempt > self._max_retries or delay > left:
            why = (
                f"after {attempt} attempts in {elapsed:.1f} s"
                if attempt > self._max_retries
                else f"the next retry (in {delay:.1f} s) would pass max_retry_seconds="
                f"{self._max_retry_seconds:g}"
            )
            err = failure.error
            final = type(err)(f"{err} — gave up {why}", status_code=err.status_code, retryable=True)
            if isinstance(err, RateLimitError) and isinstance(final, RateLimitError):
                final.retry_after = err.retry_after
            raise final from exc
        logger.warning(
            "%s on a call of %d items; retry %d of %d in %.2f s",
            failure.error,
            n_items,
            attempt,
            self._max_retries,
            delay,
        )
        return delay

    def _classify(self, exc: Exception) -> _Failure:
        """Translate an SDK or transport exception (once), scrubbing the key from it."""
        from google.genai import errors as genai_errors

        server_delay: float | None = None
        if isinstance(exc, genai_errors.APIError):
            code = int(exc.code or 0)
            body = exc.details if isinstance(exc.details, dict) else {}
            server_delay = _retry_delay(body, getattr(exc, "response", None))
            _scrub(exc)
            status = exc.status or ""
            message = self._redact(str(exc.message or "")).strip() or "no message"
            summary = f"{code} {status}: {message}"
            if code == 429:
                if _daily_quota(body):
                    return _Failure(
                        RateLimitError(
                            f"{self._model}: daily quota exhausted ({summary}); wait until the "
                            "quota resets or raise it in Google AI Studio",
                            status_code=code,
                            retry_after=server_delay,
                        ),
                        False,
                        None,
                    )
                return _Failure(
                    RateLimitError(
                        f"{self._model}: rate limited ({summary}); lower concurrency or "
                        "raise your quota",
                        status_code=code,
                        retryable=True,
                        retry_after=server_delay,
                    ),
                    True,
                    server_delay,
                )
            if code in (401, 403) or _bad_key(body, message):
                return _Failure(
                    AuthenticationError(
                        f"{self._model}: the API key was refused ({summary}); check "
                        "GEMINI_API_KEY / GOOGLE_API_KEY or the api_key argument",
                        status_code=code,
                    ),
                    False,
                    None,
                )
            if code == 404:
                return _Failure(
                    ProviderError(
                        f"{self._model}: not found ({summary}); check the model id and "
                        "GOOGLE_GENAI_API_VERSION",
                        status_code=code,
                    ),
                    False,
                    None,
                )
            retryable = code in _RETRYABLE_STATUS
            what = "server error" if code >= 500 else "request refused"
            hint = "try again later" if retryable else "fix the request as the message says"
            return _Failure(
                ProviderError(
                    f"{self._model}: {what} ({summary}); {hint}",
                    status_code=code,
                    retryable=retryable,
                ),
                retryable,
                server_delay if retryable else None,
            )
        _scrub(exc)
        name = type(exc).__name__
        text = self._redact(str(exc)).strip()
        if _is_transport_error(exc):
            timeout = "Timeout" in name or isinstance(exc, (TimeoutError, asyncio.TimeoutError))
            what = (
                f"no answer within timeout={self._timeout:g} s"
                if timeout
                else "the connection failed"
            )
            return _Failure(
                ProviderError(
                    f"{self._model}: {what} ({name}{': ' + text if text else ''}); check the "
                    "network, or raise timeout=",
                    retryable=True,
                ),
                True,
                None,
            )
        return _Failure(
            ProviderError(
                f"{self._model}: the SDK failed ({name}{': ' + text if text else ''})",
            ),
            False,
            None,
        )


async def _close_pool_at_shutdown(client: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        # private SDK structure (google-genai 3.x): an aiohttp session per loop when aiohttp is
        # installed, otherwise per-loop inner httpx clients
        loop = asyncio.get_running_loop()
        api = getattr(client, "_api_client", None)
        sessions = getattr(api, "_aiohttp_sessions", None)
        if isinstance(sessions, dict):
            session = sessions.pop(loop, None)
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.close()
        outer = getattr(api, "_async_httpx_client", None)
        pools = getattr(outer, "_loop_clients", None)
        lock = getattr(outer, "_loop_clients_lock", None)
        if isinstance(pools, dict) and lock is not None:
            with lock:
                inner = pools.pop(loop, None)
            if inner is not None:
                with contextlib.suppress(Exception):
                    await inner.aclose()


class _Tally:
    """Usage of one embed call, added to from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sum = EmbeddingUsage()
        self.cached = 0

    def add(self, usage: EmbeddingUsage) -> None:
        with self._lock:
            self._sum = self._sum + usage

    def total(self) -> EmbeddingUsage:
        with self._lock:
            return self._sum + EmbeddingUsage(items=self.cached, cached_items=self.cached)


# -------------------------------------------------------------------- helpers


def _import_genai() -> tuple[Any, Any]:
    try:
        from google import genai
        from google.genai import types
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError(
            'GeminiEmbedder needs google-genai: pip install "google-genai>=3.4,<4"'
        ) from exc
    return genai, types


def _make_client(genai: Any, types: Any, *, api_key: str | None, vertexai: bool | None) -> Any:
    kwargs: dict[str, Any] = {}
    if api_key is not None:
        if not _is_str(api_key) or not api_key.strip():
            raise ConfigurationError("api_key must be a non-empty string (or None for the env)")
        kwargs["api_key"] = api_key
    if vertexai is not None:
        kwargs["vertexai"] = vertexai
    redact = _Redactor([api_key or ""])
    try:
        return genai.Client(http_options=types.HttpOptions(), **kwargs)
    except ValueError as exc:
        text = redact(str(exc))
        if "API key" in text or "Project or API key" in text:
            raise AuthenticationError(
                "no Gemini API key found: set GEMINI_API_KEY (or GOOGLE_API_KEY), pass "
                "api_key=..., or configure Vertex AI (GOOGLE_GENAI_USE_VERTEXAI, "
                "GOOGLE_CLOUD_PROJECT, GOOGLE_CLOUD_LOCATION)"
            ) from None
        raise ConfigurationError(f"cannot create the Gemini client: {text}") from None
    except Exception as exc:  # google.auth errors when Vertex credentials are missing
        raise AuthenticationError(
            f"cannot create the Gemini client ({type(exc).__name__}: {redact(str(exc))}); "
            "check your credentials"
        ) from None


@functools.cache
def _json_loads() -> Callable[[str], Any]:
    """The JSON reader for replies: orjson when it is installed, else the standard library.

    Reading the reply's float arrays is most of the client's work per call; orjson reads them
    about four times faster than ``json`` (``pip install "mmembed[fast]"``). Both reject a reply
    that is not JSON with a ``ValueError``.
    """
    try:
        import orjson
    except ImportError:
        return json.loads
    loads: Callable[[str], Any] = orjson.loads  # typed here even where orjson is not
    return loads


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def _int_option(name: str, value: object, low: int, high: int, hint: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not low <= int(value) <= high
    ):
        raise ConfigurationError(
            f"{name} must be an int from {low} to {high}, got {value!r}"
            + (f"; {hint}" if hint else "")
        )
    return int(value)


def _task(task: Task | str) -> Task:
    try:
        return Task(task)
    except ValueError:
        names = ", ".join(t.name for t in Task)
        raise ConfigurationError(f"unknown task {task!r}; use one of Task.{{{names}}}") from None


def _as_list(items: Sequence[Embeddable]) -> list[Embeddable]:
    if isinstance(items, (str, bytes, Text, Media, Content)):
        raise ConfigurationError(
            "embed() takes a sequence of items, e.g. embed(['some text']); got a single "
            f"{type(items).__name__}"
        )
    return list(items)


def _name_item(err: ProviderError, batch: list[_Item]) -> ProviderError:
    """``err`` with the item a refused call's ``requests[j]`` points at named in its message."""
    found = _REQUEST_INDEX.search(str(err))
    if err.status_code != 400 or found is None or int(found.group(1)) >= len(batch):
        return err
    index = batch[int(found.group(1))].index
    return ProviderError(
        f"item {index} was refused: {err}", status_code=err.status_code, retryable=err.retryable
    )


def _describe(index: int, content: Content) -> str:
    if len(content.parts) == 1:
        part = content.parts[0]
        if isinstance(part, Text):
            return f"item {index} (text of {len(part.text)} characters)"
        return f"item {index} ({type(part).__name__} {part.name})"
    return f"item {index} (Content of {len(content.parts)} parts)"


def _main_modality(content: Content) -> Modality:
    media = [p.modality for p in content.parts if not isinstance(p, Text)]
    return media[0] if media else Modality.TEXT


def _main_modality_of_batch(batch: list[_Item]) -> Modality:
    for item in batch:
        for part in item.parts:
            if not isinstance(part, Text):
                return part.modality
    return Modality.TEXT


def _file_state(file: Any) -> str:
    state = getattr(file, "state", None)
    return str(getattr(state, "value", state) or "ACTIVE")


def _details(body: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    if isinstance(details, list):
        for d in details:
            if isinstance(d, Mapping):
                yield d


def _retry_delay(body: Mapping[str, Any], response: Any) -> float | None:
    """The wait the server asked for: ``RetryInfo.retryDelay`` in the body, or Retry-After."""
    for d in _details(body):
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            raw = d.get("retryDelay")
            if isinstance(raw, str) and (m := _DURATION.match(raw)):
                return float(m.group(1))
            if isinstance(raw, Mapping):
                seconds = float(raw.get("seconds", 0)) + float(raw.get("nanos", 0)) / 1e9
                return seconds
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            value = headers.get("retry-after")
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            return None
    return None


def _daily_quota(body: Mapping[str, Any]) -> bool:
    for d in _details(body):
        if str(d.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for v in d.get("violations") or []:
                if isinstance(v, Mapping) and "PerDay" in str(v.get("quotaId", "")):
                    return True
    return False


def _bad_key(body: Mapping[str, Any], message: str) -> bool:
    for d in _details(body):
        if d.get("reason") in ("API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED"):
            return True
    return "API key not valid" in message or "API key expired" in message


_TRANSPORT_ROOTS = frozenset({"httpx", "httpx2", "httpcore", "aiohttp", "requests", "urllib3"})


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    for cls in type(exc).__mro__:
        if (cls.__module__ or "").split(".")[0] in _TRANSPORT_ROOTS and cls.__name__ not in (
            "InvalidURL",
            "UnsupportedProtocol",
            "LocalProtocolError",
        ):
            return True
    return False


def _scrub(exc: BaseException) -> None:
    """Drop the objects through which SDK and HTTP errors carry the API key.

    ``APIError.response.request.headers`` holds ``x-goog-api-key``; httpx errors keep the request
    too. The cause stays attached for debugging, without them.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for attr in ("response", "_response", "request", "_request"):
            if attr in getattr(current, "__dict__", {}):
                try:
                    setattr(current, attr, None)
                except Exception:  # a read-only property: drop the backing field instead
                    current.__dict__[attr] = None
        current = current.__cause__ or current.__context__
