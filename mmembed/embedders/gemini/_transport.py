"""How requests reach the service, behind one small interface.

:class:`SdkTransport` goes through the SDK's public calls (``client.models.embed_content``),
which validate every float of a reply with pydantic: more CPU than the round trip itself at
100 items per call. On the Gemini Developer API :class:`RawTransport` builds the
``batchEmbedContents`` body itself (the bytes the SDK would send) and sends it through the SDK's
own transport, so authentication, base URL, API version, environment and timeouts stay the
SDK's; the reply text is read by :mod:`._reply`. Vertex AI, which takes one content per
request, always uses the public calls.

Every access to a private attribute of the SDK is in this module (google-genai 3.x):
``client._api_client`` (its ``request``/``async_request``, its ``api_key``) and the per-loop
async connection pools closed in :func:`_close_pool_at_shutdown`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from mmembed.content import Media, Task, Text
from mmembed.embedders.gemini._errors import Redactor
from mmembed.embedders.gemini._items import Item
from mmembed.embedders.gemini._reply import from_response
from mmembed.embedders.gemini._retry import Call
from mmembed.embedders.gemini._tasks import task_type
from mmembed.errors import AuthenticationError, ConfigurationError, MissingDependencyError
from mmembed.limits import ModelLimits

if TYPE_CHECKING:
    from google import genai

__all__ = ["RawTransport", "SdkTransport", "Transport", "open_transport", "sdk_contents"]

# a file already uploaded: sha256 of its bytes -> (file uri, mime type)
Uploaded = Mapping[str, tuple[str, str]]


class Transport(ABC):
    """One way of sending requests; every method returns a :class:`~._retry.Call`.

    A request is built by :meth:`request` (off the event loop when it reads media) and sent by
    :meth:`embed`, whose reply is an :class:`~._reply.Answer` or the raw reply text.
    """

    def __init__(
        self,
        client: Any,
        types: Any,
        *,
        owns_client: bool,
        secrets: tuple[str, ...],
        model: str,
        dimensions: int,
        timeout: float,
        limits: ModelLimits,
    ) -> None:
        self._client = client
        self._types = types
        self._owns_client = owns_client
        self.secrets = secrets
        self._model = model
        self._dimensions = dimensions
        self._limits = limits
        self.vertexai = bool(getattr(client, "vertexai", False))
        self._timeout_ms = math.ceil(timeout * 1000)  # the SDK's timeouts are in milliseconds
        self._lock = threading.Lock()
        self._guards: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()

    @abstractmethod
    def request(self, batch: list[Item], uploaded: Uploaded, task: Task) -> Any:
        """The request for ``batch`` in this transport's wire format."""

    @abstractmethod
    def embed(self, request: Any) -> Call:
        """Send a request built by :meth:`request`."""

    def upload(self, part: Media, config: Mapping[str, str]) -> Call:
        """Upload ``part`` through the Files API; the reply is the SDK's ``File``."""
        files, afiles = self._client.files, self._client.aio.files

        def run() -> Any:
            with part.open() as f:
                return files.upload(file=f, config=config)

        def arun() -> Any:
            source: Any = str(part.path) if part.path is not None else io.BytesIO(part.read_bytes())
            return afiles.upload(file=source, config=config)

        return Call(run, arun)

    def get_file(self, name: str) -> Call:
        """Ask the Files API about an uploaded file."""
        return Call(
            partial(self._client.files.get, name=name),
            partial(self._client.aio.files.get, name=name),
        )

    def close(self) -> None:
        """Close the HTTP client if the transport created it."""
        if self._owns_client:
            self._client.close()

    async def aclose(self) -> None:
        """Close the async HTTP client if the transport created it."""
        if self._owns_client:
            await self._client.aio.aclose()

    async def guard_loop(self) -> None:
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


class SdkTransport(Transport):
    """The SDK's public ``embed_content`` with one ``types.Content`` per item."""

    def request(self, batch: list[Item], uploaded: Uploaded, task: Task) -> Any:
        types = self._types
        contents = sdk_contents(types, batch, uploaded)
        config = types.EmbedContentConfig(
            output_dimensionality=self._dimensions,
            task_type=task_type(task, self._limits),
            http_options=types.HttpOptions(timeout=self._timeout_ms),
        )
        return contents, config

    def embed(self, request: Any) -> Call:
        contents, config = request
        models, amodels = self._client.models, self._client.aio.models
        send = partial(models.embed_content, model=self._model, contents=contents, config=config)
        asend = partial(amodels.embed_content, model=self._model, contents=contents, config=config)

        async def arun() -> Any:
            return from_response(await asend())

        return Call(lambda: from_response(send()), arun)


class RawTransport(Transport):
    """The ``batchEmbedContents`` body built here, sent through the SDK's own transport."""

    def __init__(self, client: Any, types: Any, **options: Any) -> None:
        super().__init__(client, types, **options)
        self._api = client._api_client  # private SDK structure (google-genai 3.x)
        self._path = f"models/{self._model}:batchEmbedContents"
        self._http_options = types.HttpOptions(timeout=self._timeout_ms)

    def request(self, batch: list[Item], uploaded: Uploaded, task: Task) -> Any:
        """The ``batchEmbedContents`` body, exactly as the SDK would build it."""
        model = f"models/{self._model}"
        kind = task_type(task, self._limits)
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
            if kind is not None:
                request["taskType"] = kind
            requests.append(request)
        return {"requests": requests}

    def embed(self, request: Any) -> Call:
        api, path, options = self._api, self._path, self._http_options

        def run() -> str:
            return str(api.request("post", path, request, options).body or "")

        async def arun() -> str:
            return str((await api.async_request("post", path, request, options)).body or "")

        return Call(run, arun)


def sdk_contents(types: Any, batch: list[Item], uploaded: Uploaded) -> list[Any]:
    """One ``types.Content`` per item (the SDK's public form, used by the Batch API too)."""
    contents: list[Any] = []
    for item in batch:
        parts: list[Any] = []
        text_iter = iter(item.texts)
        for part in item.parts:
            if isinstance(part, Text):
                parts.append(types.Part(text=next(text_iter)))
            elif item.upload:
                uri, mime = uploaded[part.sha256()]
                parts.append(types.Part(file_data=types.FileData(file_uri=uri, mime_type=mime)))
            else:
                blob = types.Blob(data=part.read_bytes(), mime_type=part.mime_type)
                parts.append(types.Part(inline_data=blob))
        contents.append(types.Content(parts=parts))
    return contents


def open_transport(
    client: genai.Client | None,
    *,
    api_key: str | None,
    vertexai: bool | None,
    model: str,
    dimensions: int,
    timeout: float,
    limits: ModelLimits,
) -> Transport:
    """The transport for ``client`` (one is created from the environment when it is ``None``).

    Raises:
        AuthenticationError: no API key or credentials were found.
        ConfigurationError: the client cannot be created from these options.
    """
    genai, types = import_genai()
    owns_client = client is None
    if client is None:
        client = _make_client(genai, types, api_key=api_key, vertexai=vertexai)
    api = getattr(client, "_api_client", None)
    secrets = (api_key or "", str(getattr(api, "api_key", "") or ""))
    raw = (
        not getattr(client, "vertexai", False)
        and callable(getattr(api, "request", None))
        and callable(getattr(api, "async_request", None))
    )
    cls = RawTransport if raw else SdkTransport
    return cls(
        client,
        types,
        owns_client=owns_client,
        secrets=secrets,
        model=model,
        dimensions=dimensions,
        timeout=timeout,
        limits=limits,
    )


def import_genai() -> tuple[Any, Any]:
    """``google.genai`` and its ``types``, imported now (never by ``import mmembed``)."""
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
        given: object = api_key  # typed as str, but callers pass anything
        if not isinstance(given, str) or not given.strip():
            raise ConfigurationError("api_key must be a non-empty string (or None for the env)")
        kwargs["api_key"] = api_key
    if vertexai is not None:
        kwargs["vertexai"] = vertexai
    redact = Redactor([api_key or ""])
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
