"""A local stand-in for the Gemini embedding API, for the real google-genai SDK to talk to.

It serves ``batchEmbedContents`` and ``embedContent`` (Gemini Developer API and Vertex AI paths)
and the Files API upload flow on 127.0.0.1, enforces the limits in :mod:`mmembed.limits` with
Google's error bodies, returns deterministic vectors, injects faults on request, and records every
request. Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

from mmembed._media_info import duration_seconds, pdf_page_count
from mmembed.content import Audio, Modality, Pdf, Video, modality_of
from mmembed.errors import ConfigurationError, MMEmbedError
from mmembed.limits import ModelLimits, estimate_tokens, limits_for, media_tokens
from mmembed.testing._vectors import fake_vector

if TYPE_CHECKING:
    from google import genai

__all__ = ["FakeGeminiServer", "RecordedRequest"]

_EMBED_PATH = re.compile(
    r"^/(?P<version>[^/]+)/(?:.*/)?models/(?P<model>[^/:]+):(?P<method>batchEmbedContents|embedContent)$"
)
_UPLOAD_START = re.compile(r"^/upload/(?P<version>[^/]+)/files$")
_UPLOAD_SESSION = re.compile(r"^/upload-session/(?P<session>[0-9a-f]+)$")
_FILE_PATH = re.compile(r"^/(?P<version>[^/]+)/files/(?P<id>[A-Za-z0-9_-]+)$")
_FILE_URI = re.compile(r"/files/(?P<id>[A-Za-z0-9_-]+)$")
# the documented task prefixes, stripped so a query and its document share their words
_PREFIX = re.compile(r"^\s*(?:task:[^|]*\|\s*query:\s?|title:[^|]*\|\s*text:\s?)", re.IGNORECASE)
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGE = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    502: "Bad gateway.",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
# The service's tokenizer, as the fake counts text: about four characters a token (English).
# Media are counted at the rates in mmembed.limits (media_tokens), like the index's estimates.
_CHARS_PER_TEXT_TOKEN = 4
# rendered vectors kept for repeated content (a benchmark re-sends the same texts)
_RENDER_CACHE = 50_000


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received.

    Attributes:
        method: ``"POST"``, ``"GET"``...
        path: the URL path (query string removed).
        endpoint: ``"batchEmbedContents"``, ``"embedContent"``, ``"files.upload"``,
            ``"files.get"``, ``"files.delete"`` or ``"other"``.
        model: the model id in the path, for embedding calls.
        body: the parsed JSON body (``None`` for uploads of raw bytes).
        headers: request headers with the API key masked.
        api_key_sent: whether an API key came with the request.
        status: the HTTP status answered (0 when the connection was dropped).
    """

    method: str
    path: str
    endpoint: str
    model: str | None
    body: Any
    headers: Mapping[str, str]
    api_key_sent: bool
    status: int

    @property
    def items(self) -> int:
        """How many contents (vectors) the request asked for."""
        if self.endpoint == "batchEmbedContents" and isinstance(self.body, dict):
            reqs = self.body.get("requests")
            return len(reqs) if isinstance(reqs, list) else 0
        return 1 if self.endpoint == "embedContent" else 0

    @property
    def contents(self) -> list[Any]:
        """The ``content`` objects of an embedding request, in order."""
        if not isinstance(self.body, dict):
            return []
        if self.endpoint == "batchEmbedContents":
            return [r.get("content") for r in self.body.get("requests") or []]
        if self.endpoint == "embedContent":
            return [self.body.get("content")]
        return []


@dataclass(slots=True)
class _Fault:
    kind: Literal["error", "drop", "slow", "tamper"]
    remaining: int
    status: int = 503
    retry_delay: float | None = None
    message: str | None = None
    seconds: float = 0.0
    tamper: Callable[[dict[str, Any]], dict[str, Any] | str] | None = None
    quota_id: str = "EmbedContentRequestsPerMinutePerProjectPerModel"


@dataclass(slots=True)
class _StoredFile:
    id: str
    mime_type: str
    display_name: str
    data: bytearray = field(default_factory=bytearray)
    size: int = 0
    polls_left: int = 0
    done: bool = False
    version: str = "v1"


class _ApiError(Exception):
    def __init__(self, code: int, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "status": _STATUS.get(self.code, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


class FakeGeminiServer:
    """A Gemini embedding API on 127.0.0.1 for offline tests of code that uses google-genai.

    Identical content always gives the identical vector (whatever the key casing or base64
    alphabet it was sent in, inline or uploaded); texts that share words get a higher cosine than
    unrelated ones; the documented task prefixes are ignored, so a query and its matching
    document are close. Limits come from :func:`mmembed.limits.limits_for` and violations get
    Google's error body shape (``{"error": {"code", "message", "status", "details"}}``).

    Args:
        api_key: the only key accepted; ``None`` accepts any non-empty key.
        host: the interface to listen on (loopback only).
        port: the port; 0 picks a free one.
        latency: seconds every embedding call takes, from its arrival to the answer (the fake's
            own work happens within that time, as a remote service's would).
        file_processing_polls: how many ``files.get`` calls see a new upload as PROCESSING
            before it turns ACTIVE.
        usage_metadata: include ``usageMetadata`` (token counts) in embedding responses.
        reject_task_type: answer 400 when ``taskType`` is sent to a model that takes task
            prefixes instead (Gemini Embedding 2); by default it is recorded and ignored.

    >>> with FakeGeminiServer() as server:
    ...     client = server.client()
    ...     from google.genai import types
    ...     response = client.models.embed_content(
    ...         model="gemini-embedding-2",
    ...         contents=[types.Content(parts=[types.Part(text="hello")])],
    ...         config=types.EmbedContentConfig(output_dimensionality=128),
    ...     )
    ...     len(response.embeddings[0].values), len(server.requests)
    (128, 1)
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        file_processing_polls: int = 0,
        usage_metadata: bool = True,
        reject_task_type: bool = False,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigurationError(f"FakeGeminiServer listens on loopback only, got {host!r}")
        self._api_key = api_key
        self._host = host
        self._port = port
        self.latency = float(latency)
        self.file_processing_polls = int(file_processing_polls)
        self.usage_metadata = usage_metadata
        self.reject_task_type = reject_task_type
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._files: dict[str, _StoredFile] = {}
        self._sessions: dict[str, _StoredFile] = {}
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._clients: list[Any] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._rendered: dict[tuple[Any, ...], _Values] = {}

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeGeminiServer:
        """Start serving in a background thread (idempotent); returns ``self``."""
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        httpd = _HTTPServer((self._host, self._port), handler)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        clients, self._clients = self._clients, []
        for made in clients:  # their pooled sockets point at a server that is gone
            with contextlib.suppress(Exception):
                made.close()
        with self._lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGeminiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: what the SDK's ``base_url`` should be."""
        if self._httpd is None:
            raise MMEmbedError("FakeGeminiServer is not running: call start() or use `with`")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def env(self, api_key: str = "fake-key", *, api_version: str = "v1") -> dict[str, str]:
        """Environment variables that point the SDK (in any process) at this server.

        ``GOOGLE_API_KEY`` takes precedence over ``GEMINI_API_KEY`` in the SDK: unset it in the
        child environment if it is set in yours.
        """
        return {
            "GOOGLE_GEMINI_BASE_URL": self.base_url,
            "GEMINI_API_KEY": api_key,
            "GOOGLE_GENAI_API_VERSION": api_version,
        }

    def client(
        self, api_key: str = "fake-key", *, api_version: str | None = None, vertexai: bool = False
    ) -> genai.Client:
        """A ``google.genai.Client`` pointed at this server (kept alive as long as the server)."""
        from google import genai
        from google.genai import types

        options = types.HttpOptions(base_url=self.base_url, api_version=api_version)
        made = genai.Client(api_key=api_key, vertexai=vertexai, http_options=options)
        self._clients.append(made)  # a collected Client closes its transport
        return made

    # ---------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def embed_requests(self) -> list[RecordedRequest]:
        """The embedding calls among :attr:`requests`."""
        return [r for r in self.requests if r.endpoint in ("batchEmbedContents", "embedContent")]

    @property
    def uploaded_files(self) -> dict[str, bytes]:
        """The finished uploads, by file name (``files/…``)."""
        with self._lock:
            return {f"files/{f.id}": bytes(f.data) for f in self._files.values() if f.done}

    def reset(self) -> None:
        """Forget recorded requests and pending faults (uploaded files stay)."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._max_in_flight = self._in_flight

    # ---------------------------------------------------------------- faults

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        retry_delay: float | None = None,
        message: str | None = None,
        quota_id: str | None = None,
    ) -> None:
        """Answer the next ``count`` embedding calls with an HTTP error.

        Args:
            status: the HTTP status (429, 500, 503...).
            retry_delay: seconds put in a ``google.rpc.RetryInfo`` detail, as Google does on 429.
            message: the error message; Google's usual one for the status by default.
            quota_id: on 429, the ``quotaId`` of the ``google.rpc.QuotaFailure`` detail (a
                per-minute quota by default; ``"...PerDay..."`` for a daily one).
        """
        fault = _Fault("error", count, status=status, retry_delay=retry_delay, message=message)
        if quota_id is not None:
            fault.quota_id = quota_id
        self._queue(fault)

    def rate_limit_next(self, count: int = 1, *, retry_delay: float | None = 1.0) -> None:
        """Answer the next ``count`` embedding calls with 429 RESOURCE_EXHAUSTED."""
        self.fail_next(count, status=429, retry_delay=retry_delay)

    def drop_next(self, count: int = 1) -> None:
        """Close the connection without answering on the next ``count`` embedding calls."""
        self._queue(_Fault("drop", count))

    def slow_next(self, count: int = 1, *, seconds: float) -> None:
        """Delay the next ``count`` embedding calls by ``seconds`` (to trip client timeouts)."""
        self._queue(_Fault("slow", count, seconds=seconds))

    def tamper_next(
        self, count: int = 1, *, transform: Callable[[dict[str, Any]], dict[str, Any] | str]
    ) -> None:
        """Pass the next ``count`` successful embedding answers through ``transform``.

        For testing how a client copes with a malformed reply: fewer vectors than asked, the
        wrong width, vectors that are not unit length... A ``str`` returned by ``transform`` is
        sent as the body verbatim, so a reply can also be broken or unusual JSON text.

        >>> server = FakeGeminiServer()
        >>> server.tamper_next(transform=lambda answer: {"embeddings": []})
        """
        self._queue(_Fault("tamper", count, tamper=transform))

    @property
    def max_concurrent(self) -> int:
        """The most embedding calls that were being served at the same moment."""
        with self._lock:
            return self._max_in_flight

    def _enter_call(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave_call(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _queue(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ConfigurationError(f"count must be at least 1, got {fault.remaining}")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.pop(0)
            return fault

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # ---------------------------------------------------------------- embedding

    def _embed(self, model: str, method: str, body: Any) -> dict[str, Any]:
        limits = limits_for(model)
        if not re.match(r"^(gemini-embedding|text-embedding|embedding-)", model):
            raise _ApiError(
                404,
                f"models/{model} is not found for API version v1, or is not supported for "
                "embedContent. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        if not isinstance(body, dict):
            raise _ApiError(400, "Invalid JSON payload received. Expected an object.")
        requests: Any = [body]
        if method != "embedContent":
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests:
                raise _ApiError(400, "* BatchEmbedContentsRequest.requests: must not be empty")
            if len(requests) > limits.max_items_per_call:
                raise _ApiError(
                    400,
                    f"* BatchEmbedContentsRequest.requests: at most "
                    f"{limits.max_items_per_call} requests can be in one batch",
                )
        inline_total = 0
        vectors: list[_Values] = []
        usage: dict[str, int] = {}
        for j, req in enumerate(requests):
            where = "" if method == "embedContent" else f"requests[{j}]."
            vec, inline, tokens = self._one(limits, req, where)
            inline_total += inline
            vectors.append(vec)
            for name, n in tokens.items():
                usage[name] = usage.get(name, 0) + n
        if inline_total > limits.max_inline_bytes:
            raise _ApiError(
                400, f"Request payload size exceeds the limit: {limits.max_inline_bytes} bytes."
            )
        out: dict[str, Any]
        if method == "embedContent":
            out = {"embedding": {"values": vectors[0]}}
        else:
            out = {"embeddings": [{"values": v} for v in vectors]}
        if self.usage_metadata:
            total = sum(usage.values())
            out["usageMetadata"] = {
                "promptTokenCount": total,
                "totalTokenCount": total,
                "promptTokensDetails": [
                    {"modality": name, "tokenCount": n} for name, n in sorted(usage.items())
                ],
            }
        return out

    def _one(
        self, limits: ModelLimits, req: Any, where: str
    ) -> tuple[_Values, int, dict[str, int]]:
        if not isinstance(req, dict) or not isinstance(req.get("content"), dict):
            raise _ApiError(400, f"* {where}content: required field is missing")
        config = req.get("embedContentConfig") or req.get("embed_content_config") or {}
        dims_raw = _get(req, "output_dimensionality")
        if dims_raw is None and isinstance(config, dict):
            dims_raw = _get(config, "output_dimensionality")
        dims = limits.default_dimensions if dims_raw is None else dims_raw
        if not isinstance(dims, int) or not limits.min_dimensions <= dims <= limits.max_dimensions:
            raise _ApiError(
                400,
                f"* {where}output_dimensionality: must be between {limits.min_dimensions} and "
                f"{limits.max_dimensions}, got {dims_raw!r}",
            )
        task_type = _get(req, "task_type") or (
            _get(config, "task_type") if isinstance(config, dict) else None
        )
        if task_type and limits.task_style == "prefix" and self.reject_task_type:
            raise _ApiError(
                400,
                f"* {where}task_type: is not supported by {limits.model}; put the task in the "
                "text as an instruction instead",
            )
        parts = req["content"].get("parts")
        if not isinstance(parts, list) or not parts:
            raise _ApiError(400, f"* {where}content.parts: must not be empty")
        texts: list[str] = []
        blobs: list[bytes] = []
        counts: dict[Modality, int] = {}
        tokens: dict[str, int] = {}
        inline = 0
        text_tokens = 0
        for p, part in enumerate(parts):
            here = f"{where}content.parts[{p}]"
            if not isinstance(part, dict):
                raise _ApiError(400, f"Invalid value at '{here}': expected an object")
            if "text" in part:
                text = part["text"]
                if not isinstance(text, str):
                    raise _ApiError(400, f"Invalid value at '{here}.text' (TYPE_STRING)")
                text_tokens += estimate_tokens(text)
                texts.append(_PREFIX.sub("", text, count=1))
                n = max(1, math.ceil(len(text) / _CHARS_PER_TEXT_TOKEN))
                tokens["TEXT"] = tokens.get("TEXT", 0) + n
                continue
            inline_data = _get(part, "inline_data")
            file_data = _get(part, "file_data")
            if isinstance(inline_data, dict):
                mime = str(_get(inline_data, "mime_type") or "")
                raw = inline_data.get("data")
                data = _b64decode(raw, f"{here}.inline_data.data")
                inline += len(raw) if isinstance(raw, str) else 0
            elif isinstance(file_data, dict):
                mime = str(_get(file_data, "mime_type") or "")
                data = self._file_bytes(str(_get(file_data, "file_uri") or ""))
            else:
                raise _ApiError(
                    400, f"Invalid value at '{here}': expected text, inline_data or file_data"
                )
            modality = modality_of(mime)
            if modality is None or modality not in limits.modalities:
                raise _ApiError(400, f"* {here}: Unsupported MIME type: {mime or '(none)'}")
            if mime not in limits.mime_types(modality):
                raise _ApiError(400, f"* {here}: Unsupported MIME type: {mime}")
            counts[modality] = counts.get(modality, 0) + 1
            name, n = self._media_tokens(limits, modality, mime, data, here)
            tokens[name] = tokens.get(name, 0) + n
            blobs.append(data)
        for modality, most, noun in (
            (Modality.IMAGE, limits.max_images_per_item, "images"),
            (Modality.AUDIO, limits.max_audio_per_item, "audio files"),
            (Modality.VIDEO, limits.max_video_per_item, "video files"),
            (Modality.PDF, limits.max_pdf_per_item, "PDF files"),
        ):
            if counts.get(modality, 0) > most:
                raise _ApiError(
                    400,
                    f"* {where}content: at most {most} {noun} are allowed per content, got "
                    f"{counts[modality]}",
                )
        if text_tokens > limits.max_tokens:
            raise _ApiError(
                400,
                f"The input token count ({text_tokens}) exceeds the maximum number of tokens "
                f"allowed ({limits.max_tokens}).",
            )
        key = (tuple(texts), tuple(hashlib.sha256(b).digest() for b in blobs), dims)
        values = self._rendered.get(key)
        if values is None:
            # rendering floats as JSON is the slow part of an answer: do it once per content.
            # The shortest float32 form ("0.012773247") is what Google sends, half the length of
            # a float64 repr, and reads back to exactly the same float32
            vector = fake_vector(texts, blobs, dims)
            values = _Values("[" + ",".join(vector.astype(str).tolist()) + "]")
            if len(self._rendered) >= _RENDER_CACHE:
                self._rendered.clear()
            self._rendered[key] = values
        return values, inline, tokens

    def _media_tokens(
        self, limits: ModelLimits, modality: Modality, mime: str, data: bytes, here: str
    ) -> tuple[str, int]:
        try:
            if modality is Modality.AUDIO or modality is Modality.VIDEO:
                part = Audio(data, mime) if modality is Modality.AUDIO else Video(data, mime)
                seconds = duration_seconds(part) or 0.0
                most = (
                    limits.max_audio_seconds
                    if modality is Modality.AUDIO
                    else limits.max_video_seconds
                )
                if seconds > most + 1e-6:
                    raise _ApiError(
                        400,
                        f"* {here}: {modality.value} duration {seconds:.1f}s exceeds the "
                        f"maximum of {most:g}s",
                    )
                name = "AUDIO" if modality is Modality.AUDIO else "VIDEO"
                return name, media_tokens(modality, limits, seconds=seconds)
            if modality is Modality.PDF:
                pages = pdf_page_count(Pdf(data)) or 1
                if pages > limits.max_pdf_pages:
                    raise _ApiError(
                        400,
                        f"* {here}: the document has {pages} pages; at most "
                        f"{limits.max_pdf_pages} pages are supported",
                    )
                return "DOCUMENT", media_tokens(modality, limits, pages=pages)
        except MMEmbedError as exc:
            raise _ApiError(400, f"* {here}: Unable to process input media: {exc}") from None
        return "IMAGE", media_tokens(modality, limits)

    def _file_bytes(self, uri: str) -> bytes:
        m = _FILE_URI.search(uri)
        with self._lock:
            stored = self._files.get(m.group("id")) if m else None
        if stored is None or not stored.done:
            raise _ApiError(
                403,
                f"You do not have permission to access the File {uri} or it may not exist.",
            )
        if stored.polls_left > 0:
            raise _ApiError(
                400, f"The File {stored.id} is not in an ACTIVE state and usage is not allowed."
            )
        return bytes(stored.data)

    # ---------------------------------------------------------------- files API

    def _file_json(self, f: _StoredFile, version: str) -> dict[str, Any]:
        state = "PROCESSING" if f.polls_left > 0 else "ACTIVE"
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return {
            "name": f"files/{f.id}",
            "displayName": f.display_name,
            "mimeType": f.mime_type,
            "sizeBytes": str(f.size),
            "createTime": now,
            "updateTime": now,
            "expirationTime": time.strftime(
                "%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 48 * 3600)
            ),
            "uri": f"{self.base_url}/{version}/files/{f.id}",
            "state": state,
            "source": "UPLOADED",
        }

    def _start_upload(
        self, headers: Mapping[str, str], body: Any, version: str
    ) -> tuple[str, _StoredFile]:
        meta = body.get("file", {}) if isinstance(body, dict) else {}
        mime = str(
            headers.get("x-goog-upload-header-content-type") or _get(meta, "mime_type") or ""
        )
        size = int(headers.get("x-goog-upload-header-content-length") or 0)
        with self._lock:
            file_id = f"fake{next(self._ids):06d}"
            session = f"{next(self._ids):08x}"
            stored = _StoredFile(
                id=file_id,
                mime_type=mime,
                display_name=str(_get(meta, "display_name") or ""),
                size=size,
                polls_left=self.file_processing_polls,
                version=version,
            )
            self._sessions[session] = stored
        return session, stored

    def _finish_upload(self, stored: _StoredFile) -> None:
        with self._lock:
            stored.done = True
            stored.size = len(stored.data)
            self._files[stored.id] = stored

    def _get_file(self, file_id: str, version: str) -> dict[str, Any]:
        with self._lock:
            stored = self._files.get(file_id)
            if stored is None:
                raise _ApiError(
                    403,
                    f"You do not have permission to access the File {file_id} or it may not exist.",
                )
            answer = self._file_json(stored, version)
            if stored.polls_left > 0:
                stored.polls_left -= 1
        return answer

    def _delete_file(self, file_id: str) -> None:
        with self._lock:
            if self._files.pop(file_id, None) is None:
                raise _ApiError(
                    403,
                    f"You do not have permission to access the File {file_id} or it may not exist.",
                )

    def _check_key(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> None:
        key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        if not key:
            raise _ApiError(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if self._api_key is not None and key != self._api_key:
            raise _ApiError(
                400,
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "stopped"
        return f"FakeGeminiServer({where})"


def _get(obj: Mapping[str, Any], snake: str) -> Any:
    """A field by its snake_case or camelCase name (Google's JSON parser takes both)."""
    if snake in obj:
        return obj[snake]
    head, *rest = snake.split("_")
    return obj.get(head + "".join(w.title() for w in rest))


def _b64decode(raw: Any, where: str) -> bytes:
    """Standard or URL-safe base64, padded or not, as Google's proto3 JSON parser accepts."""
    if not isinstance(raw, str):
        raise _ApiError(400, f"Invalid value at '{where}' (TYPE_BYTES), expected a string")
    text = raw.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        shown = raw[:20] + ("…" if len(raw) > 20 else "")
        raise _ApiError(
            400, f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{shown}\""
        ) from None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # many clients opening connections at once: the default backlog of 5 drops some of their
    # handshakes, which the kernel retries a second later
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGeminiServer  # set on the bound subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as Google's front end does
    # headers and body go out in two writes: with Nagle's algorithm the second waits for the
    # client's delayed ACK (40 ms on Linux) whenever the reply is small
    disable_nagle_algorithm = True
    timeout = 60

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.fake._lock:
                self.fake._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read .requests; stderr stays quiet

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        arrived = time.monotonic()
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.fake
        endpoint, model = "other", None
        body: Any = None
        status = 200
        extra: dict[str, str] = {}
        answer: Any = {}
        try:
            if m := _EMBED_PATH.match(path):
                endpoint, model = m.group("method"), m.group("model")
            elif _UPLOAD_START.match(path) or _UPLOAD_SESSION.match(path):
                endpoint = "files.upload"
            elif _FILE_PATH.match(path):
                endpoint = "files.get" if method == "GET" else "files.delete"
            if not _UPLOAD_SESSION.match(path) and raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise _ApiError(400, "Invalid JSON payload received.") from None
            fault = None
            if endpoint in ("batchEmbedContents", "embedContent") and method == "POST":
                fault = fake._take_fault()
                if fault is not None and fault.kind == "drop":
                    fake._record(self._recorded(method, path, endpoint, model, body, headers, 0))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                delay = fake.latency + (fault.seconds if fault and fault.kind == "slow" else 0)
                fake._enter_call()
                try:
                    if fault is not None and fault.kind == "error":
                        raise _fault_error(fault)
                    fake._check_key(headers, query)
                    assert model is not None
                    answer = fake._embed(model, endpoint, body)
                    if fault is not None and fault.tamper is not None:
                        answer = fault.tamper(_plain(answer))
                        if isinstance(answer, str):
                            answer = _Values(answer)  # sent verbatim: malformed JSON on purpose
                finally:
                    # the answer (or error) leaves `delay` after the request arrived
                    remaining = arrived + delay - time.monotonic()
                    if remaining > 0:
                        time.sleep(remaining)
                    fake._leave_call()
            elif (m := _UPLOAD_START.match(path)) and method == "POST":
                fake._check_key(headers, query)
                session, _ = fake._start_upload(headers, body, m.group("version"))
                extra["x-goog-upload-url"] = f"{fake.base_url}/upload-session/{session}"
                extra["x-goog-upload-status"] = "active"
                answer = {}
            elif (m := _UPLOAD_SESSION.match(path)) and method == "POST":
                with fake._lock:
                    stored = fake._sessions.get(m.group("session"))
                if stored is None:
                    raise _ApiError(404, "Upload session not found.")
                offset = int(headers.get("x-goog-upload-offset") or 0)
                if offset != len(stored.data):
                    raise _ApiError(400, f"Invalid upload offset {offset}.")
                stored.data += raw
                command = headers.get("x-goog-upload-command", "")
                if "finalize" in command:
                    fake._finish_upload(stored)
                    with fake._lock:
                        fake._sessions.pop(m.group("session"), None)
                    extra["x-goog-upload-status"] = "final"
                    answer = {"file": fake._file_json(stored, stored.version)}
                else:
                    extra["x-goog-upload-status"] = "active"
                    answer = {}
            elif (m := _FILE_PATH.match(path)) and method in ("GET", "DELETE"):
                fake._check_key(headers, query)
                if method == "GET":
                    answer = fake._get_file(m.group("id"), m.group("version"))
                else:
                    fake._delete_file(m.group("id"))
                    answer = {}
            else:
                raise _ApiError(404, f"The requested URL {path} was not found on this server.")
        except _ApiError as err:
            status, answer = err.code, err.body()
        except Exception as exc:  # a bug in the fake must still answer like a server
            status = 500
            answer = _ApiError(500, f"fake server error: {type(exc).__name__}: {exc}").body()
        recorded_body = None if _UPLOAD_SESSION.match(path) else body
        fake._record(self._recorded(method, path, endpoint, model, recorded_body, headers, status))
        self._send(status, answer, extra)

    def _recorded(
        self,
        method: str,
        path: str,
        endpoint: str,
        model: str | None,
        body: Any,
        headers: Mapping[str, str],
        status: int,
    ) -> RecordedRequest:
        shown = {k: ("***" if k == "x-goog-api-key" else v) for k, v in headers.items()}
        return RecordedRequest(
            method=method,
            path=path,
            endpoint=endpoint,
            model=model,
            body=body,
            headers=MappingProxyType(shown),
            api_key_sent="x-goog-api-key" in headers,
            status=status,
        )

    def _send(self, status: int, answer: Any, extra: Mapping[str, str]) -> None:
        payload = _encode(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to do


class _Values:
    """A vector already rendered as a JSON array."""

    __slots__ = ("json",)

    def __init__(self, text: str) -> None:
        self.json = text


def _plain(answer: Any) -> Any:
    """The answer with rendered vectors turned back into lists (for ``tamper_next``)."""
    if isinstance(answer, _Values):
        return json.loads(answer.json)
    if isinstance(answer, dict):
        return {k: _plain(v) for k, v in answer.items()}
    if isinstance(answer, list):
        return [_plain(v) for v in answer]
    return answer


def _encode(answer: Any) -> str:
    """JSON text of an answer, splicing in pre-rendered vectors."""
    if isinstance(answer, dict):
        items = [f"{json.dumps(k)}:{_encode(v)}" for k, v in answer.items()]
        return "{" + ",".join(items) + "}"
    if isinstance(answer, list):
        return "[" + ",".join(_encode(v) for v in answer) + "]"
    if isinstance(answer, _Values):
        return answer.json
    return json.dumps(answer, separators=(",", ":"))


def _fault_error(fault: _Fault) -> _ApiError:
    details: list[dict[str, Any]] = []
    if fault.status == 429:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/embed_content_requests",
                        "quotaId": fault.quota_id,
                    }
                ],
            }
        )
    if fault.retry_delay is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{fault.retry_delay:g}s",
            }
        )
    message = fault.message or _DEFAULT_MESSAGE.get(fault.status, "Request failed.")
    return _ApiError(fault.status, message, details)
