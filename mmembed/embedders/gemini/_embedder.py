"""GeminiEmbedder: its options, its properties, and how one ``embed`` runs.

An ``embed`` prepares every item (:mod:`._items`), groups them into calls, and sends each call
as the steps of :meth:`GeminiEmbedder._send` (uploads, the request, the call, under the retry
policy), several at once (:mod:`._pool`: worker threads for :meth:`~GeminiEmbedder.embed`, event
loop tasks for :meth:`~GeminiEmbedder.aembed`); each reply is read (:mod:`._reply`) into its rows,
put back in input order, and counted (:mod:`._usage`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from numpy.typing import NDArray

from mmembed._bases import Closeable
from mmembed.cache import EmbeddingCache, Saver, aembed_through_cache, embed_through_cache
from mmembed.content import Embeddable, Modality, Task, as_items, as_task
from mmembed.embedders.gemini._errors import Failure, Redactor, from_exception, name_item
from mmembed.embedders.gemini._files import Uploads, upload_steps
from mmembed.embedders.gemini._items import Item, batches, prepare
from mmembed.embedders.gemini._pool import send_all, send_all_async
from mmembed.embedders.gemini._reply import Answer, parse, rows
from mmembed.embedders.gemini._retry import Call, RetryPolicy, Steps, Work, retrying
from mmembed.embedders.gemini._tasks import task_scheme
from mmembed.embedders.gemini._transport import open_transport
from mmembed.embedders.gemini._usage import EmbeddingUsage, Tally, usage_of
from mmembed.errors import ConfigurationError, ProviderError
from mmembed.limits import ModelLimits, estimate_tokens, limits_for

if TYPE_CHECKING:
    from google import genai

__all__ = ["GeminiEmbedder"]

logger = logging.getLogger("mmembed.gemini")

# the options a spec may carry besides kind, model and dimensions: plain JSON, never a secret
_SPEC_OPTIONS = (
    "vertexai",
    "timeout",
    "max_retries",
    "max_retry_seconds",
    "retry_initial_delay",
    "retry_max_delay",
    "concurrency",
    "batch_size",
    "cache",
    "inline_bytes_limit",
    "file_wait_seconds",
)


class GeminiEmbedder(Closeable):
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
        given: object = model  # typed as str, but callers pass anything
        if not isinstance(given, str) or not given.strip():
            raise ConfigurationError(f"model must be a non-empty model id, got {model!r}")
        self._model = model.removeprefix("models/")
        self._limits = lim = limits_for(self._model)
        self._dimensions = _int_option(
            "dimensions",
            dimensions,
            lim.min_dimensions,
            lim.max_dimensions,
            f"{self._model} makes vectors of {lim.min_dimensions} to {lim.max_dimensions} "
            "dimensions; 768, 1536 and 3072 are recommended",
        )
        for name, seconds in (
            ("timeout", timeout),
            ("max_retry_seconds", max_retry_seconds),
            ("retry_initial_delay", retry_initial_delay),
            ("retry_max_delay", retry_max_delay),
            ("file_wait_seconds", file_wait_seconds),
        ):
            _positive(name, seconds)
        self._policy = RetryPolicy(
            max_retries=_int_option("max_retries", max_retries, 0, 1000, "use 0 to never retry"),
            max_seconds=float(max_retry_seconds),
            initial_delay=float(retry_initial_delay),
            max_delay=float(retry_max_delay),
        )
        self._concurrency = _int_option("concurrency", concurrency, 1, 1024, "")
        batch_limit = _int_option(
            "batch_size",
            lim.max_items_per_call if batch_size is None else batch_size,
            1,
            lim.max_items_per_call,
            f"{self._model} takes at most {lim.max_items_per_call} items per call",
        )
        self._inline_limit = _int_option(
            "inline_bytes_limit",
            lim.max_inline_bytes if inline_bytes_limit is None else inline_bytes_limit,
            1,
            lim.max_inline_bytes,
            "items over it go through the Files API",
        )
        self._timeout = float(timeout)
        self._file_wait = float(file_wait_seconds)
        self._cache = (
            cache if isinstance(cache, EmbeddingCache) or cache is None else EmbeddingCache(cache)
        )
        self._transport = open_transport(
            client,
            api_key=api_key,
            vertexai=vertexai,
            model=self._model,
            dimensions=self._dimensions,
            timeout=self._timeout,
            limits=lim,
        )
        self._redact = Redactor(self._transport.secrets)
        self._vertex = self._transport.vertexai
        self._batch_size = 1 if self._vertex else batch_limit
        self._spec_options = _spec_options(
            vertexai=vertexai if vertexai is not None else (True if self._vertex else None),
            timeout=self._timeout,
            max_retries=self._policy.max_retries,
            max_retry_seconds=self._policy.max_seconds,
            retry_initial_delay=self._policy.initial_delay,
            retry_max_delay=self._policy.max_delay,
            concurrency=self._concurrency,
            batch_size=None if batch_size is None else batch_limit,
            cache=None if self._cache is None else self._cache.path,
            inline_bytes_limit=None if inline_bytes_limit is None else self._inline_limit,
            file_wait_seconds=self._file_wait,
        )
        self._lock = threading.Lock()
        self._usage = EmbeddingUsage()
        self._last_usage = EmbeddingUsage()
        self._uploads = Uploads()

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
    def max_input_tokens(self) -> int:
        """How many tokens of one item the model reads (``limits.max_tokens``); a longer item
        is refused before it is sent, never cut off."""
        return self._limits.max_tokens

    def count_tokens(self, text: str) -> int:
        """The tokens ``text`` is counted as against :attr:`max_input_tokens`: the same high
        estimate the checks use (:func:`mmembed.limits.estimate_tokens`)."""
        return estimate_tokens(text)

    @property
    def concurrency(self) -> int:
        """Calls sent at once (an index embeds this many rounds at once)."""
        return self._concurrency

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
        return MappingProxyType(
            {
                "backend": "gemini",
                "model": self._model,
                "dimensions": self._dimensions,
                "normalized": True,
                "task_style": self._limits.task_style,
                "tasks": task_scheme(self._limits),
            }
        )

    # ---------------------------------------------------------------- spec

    def to_spec(self) -> dict[str, Any]:
        """What this embedder is, as plain JSON: see :mod:`mmembed.registry`.

        ``kind``, ``model`` and ``dimensions``, and every option that differs from its default
        and is plain JSON (the cache as its path). Never the API key or the client: a rebuilt
        embedder reads its key from the environment.

        >>> from mmembed.testing import FakeGeminiServer
        >>> with FakeGeminiServer() as server:
        ...     GeminiEmbedder(dimensions=768, timeout=30, client=server.client()).to_spec()
        {'kind': 'gemini', 'model': 'gemini-embedding-2', 'dimensions': 768, 'timeout': 30.0}
        """
        return {
            "kind": "gemini",
            "model": self._model,
            "dimensions": self._dimensions,
            **self._spec_options,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """The embedder a :meth:`to_spec` describes, its key and client from the environment.

        Raises:
            ConfigurationError: the spec has a key this embedder does not take, or is not of
                kind ``"gemini"``; an option is out of range.
        """
        if spec.get("kind", "gemini") != "gemini":
            raise ConfigurationError(f"not a gemini spec (kind {spec.get('kind')!r})")
        allowed = {"kind", "model", "dimensions", *_SPEC_OPTIONS}
        unknown = sorted(str(k) for k in spec if k not in allowed)
        if unknown:
            raise ConfigurationError(
                f"a gemini spec does not take {', '.join(map(repr, unknown))}; it takes "
                f"{', '.join(sorted(allowed))} (the API key and the client come from the "
                "environment, never from a spec)"
            )
        return cls(**{k: v for k, v in spec.items() if k != "kind"})

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
        return self.embed_each(items, task=task)

    def embed_each(
        self,
        items: Sequence[Embeddable],
        *,
        task: Task = Task.DOCUMENT,
        on_rows: Saver | None = None,
    ) -> NDArray[np.float32]:
        """:meth:`embed`, handing each call's rows to ``on_rows(positions, rows)`` as its reply
        arrives (positions in ``items``), before the other calls are done.

        A cache in front of the embedder keeps each reply at once this way, so a call that
        fails later (or a killed process) does not cost the calls already answered again.
        ``GeminiEmbedder(cache=...)`` does this with its own cache.
        """
        task = as_task(task)
        items = as_items(items)
        tally = Tally()
        try:
            if self._cache is not None:
                out, hits = embed_through_cache(
                    self._cache,
                    items,
                    model=self._model,
                    dimensions=self._dimensions,
                    task=task,
                    compute=lambda todo, save: self._embed_sync(todo, task, tally, save),
                )
                tally.cached += hits
                if on_rows is not None:
                    on_rows(range(len(items)), out)
            else:
                out = self._embed_sync(items, task, tally, on_rows)
        finally:
            self._record(tally)  # the calls answered are paid for, even when one failed
        return out

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`, on the SDK's native async client."""
        task = as_task(task)
        items = as_items(items)
        tally = Tally()
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
        self._prepare(as_items(items), as_task(task))

    def close(self) -> None:
        """Close the HTTP client if this embedder created it."""
        self._transport.close()

    async def aclose(self) -> None:
        """Close the async HTTP client if this embedder created it."""
        await self._transport.aclose()

    def __repr__(self) -> str:
        backend = "vertexai" if self._vertex else "gemini-api"
        return (
            f"GeminiEmbedder(model={self._model!r}, dimensions={self._dimensions}, "
            f"backend={backend!r})"
        )

    # ---------------------------------------------------------------- one call

    def _prepare(self, items: list[Embeddable], task: Task) -> list[Item]:
        return prepare(
            items,
            task,
            self._limits,
            inline_bytes_limit=self._inline_limit,
            files_api=not self._vertex,
        )

    def _calls(self, prepared: list[Item]) -> list[list[Item]]:
        return batches(prepared, batch_size=self._batch_size, inline_bytes_limit=self._inline_limit)

    def _send(self, batch: list[Item], task: Task) -> Steps[Answer | str]:
        """The steps of one call: its uploads, its request, the call itself.

        The reply is read by the caller (:meth:`_store`), so that a worker's next call goes out
        while the last reply is read.
        """
        try:
            uploaded = yield from self._upload(batch)
            build = partial(self._transport.request, batch, uploaded, task)
            # reading media files and base64 belong off the event loop
            request = (yield Work(build)) if any(it.inline_bytes for it in batch) else build()
            reply: Answer | str = yield from self._retry(self._transport.embed(request), len(batch))
            return reply
        except ProviderError as err:
            named = name_item(err, [it.index for it in batch])
            if named is err:
                raise
            raise named from err

    def _upload(self, batch: list[Item]) -> Steps[dict[str, tuple[str, str]]]:
        """The steps that upload the media of ``batch`` that go through the Files API."""
        return upload_steps(
            [it for it in batch if it.upload],
            transport=self._transport,
            uploads=self._uploads,
            retry=self._retry,
            wait_seconds=self._file_wait,
            redact=self._redact,
        )

    def _retry(self, call: Call, n_items: int) -> Steps[Any]:
        return retrying(call, self._policy, self._translate, n_items)

    def _translate(self, exc: Exception) -> Failure:
        return from_exception(exc, model=self._model, timeout=self._timeout, redact=self._redact)

    def _store(
        self,
        out: NDArray[np.float32],
        batch: list[Item],
        reply: Answer | str,
        *,
        tally: Tally,
        on_rows: Saver | None = None,
    ) -> None:
        answer = parse(reply, model=self._model) if isinstance(reply, str) else reply
        indexes = [item.index for item in batch]
        out[indexes] = rows(answer, indexes, dimensions=self._dimensions, model=self._model)
        tally.add(usage_of(batch, answer, self._limits))
        if on_rows is not None:
            on_rows(indexes, out[indexes])

    def _record(self, tally: Tally) -> None:
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

    # ---------------------------------------------------------------- sync and async

    def _embed_sync(
        self, items: list[Embeddable], task: Task, tally: Tally, on_rows: Saver | None = None
    ) -> NDArray[np.float32]:
        prepared = self._prepare(items, task)
        out = np.empty((len(items), self._dimensions), dtype=np.float32)
        if prepared:
            send_all(
                self._calls(prepared),
                partial(self._send, task=task),
                partial(self._store, out, tally=tally, on_rows=on_rows),
                concurrency=self._concurrency,
            )
        return out

    async def _embed_async(
        self, items: list[Embeddable], task: Task, tally: Tally
    ) -> NDArray[np.float32]:
        await self._transport.guard_loop()
        # probing durations and page counts reads files: keep it off the event loop
        prepared = await asyncio.to_thread(self._prepare, items, task)
        out = np.empty((len(items), self._dimensions), dtype=np.float32)
        if prepared:
            await send_all_async(
                self._calls(prepared),
                partial(self._send, task=task),
                partial(self._store, out, tally=tally),
                concurrency=self._concurrency,
            )
        return out


# -------------------------------------------------------------------- options


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


@functools.cache
def _defaults() -> Mapping[str, Any]:
    """The constructor's defaults, read from its signature (the one place they are written)."""
    params = inspect.signature(GeminiEmbedder.__init__).parameters
    return MappingProxyType({name: params[name].default for name in _SPEC_OPTIONS})


def _spec_options(**values: Any) -> dict[str, Any]:
    defaults = _defaults()
    return {name: values[name] for name in _SPEC_OPTIONS if values[name] != defaults[name]}
