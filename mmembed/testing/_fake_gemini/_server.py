"""A local stand-in for the Gemini embedding API, for the real google-genai SDK to talk to.

It serves ``batchEmbedContents`` and ``embedContent`` (Gemini Developer API and Vertex AI paths)
and the Files API upload flow on 127.0.0.1, enforces the limits in :mod:`mmembed.limits` with
Google's error bodies, returns deterministic vectors, injects faults on request, and records every
request. Nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mmembed.content import Modality
from mmembed.errors import ConfigurationError, MMEmbedError
from mmembed.limits import cost_usd, limits_for
from mmembed.testing._fake_gemini._batches import BatchEndpoints
from mmembed.testing._fake_gemini._files import FilesEndpoints
from mmembed.testing._fake_gemini._http import _Handler, _HTTPServer
from mmembed.testing._fake_gemini._wire import (
    RecordedRequest,
    _Fault,
    _StoredFile,
    _Values,
    body_modalities,
    texts_in,
)

if TYPE_CHECKING:
    from google import genai

__all__ = ["FakeGeminiServer", "FakeGeminiUsage"]

# the service's modality names in usageMetadata.promptTokensDetails
_SERVICE_MODALITY = {
    "TEXT": Modality.TEXT,
    "IMAGE": Modality.IMAGE,
    "AUDIO": Modality.AUDIO,
    "VIDEO": Modality.VIDEO,
    "DOCUMENT": Modality.PDF,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeGeminiUsage:
    """What a :class:`FakeGeminiServer` billed: see :attr:`FakeGeminiServer.usage`.

    Attributes:
        calls: embedding calls answered with vectors.
        items: vectors returned.
        requests: embedding requests received, refused ones (429, 400...) included.
        bytes_received: request bytes received, uploads included.
        rate_limited: calls refused with 429 for ``requests_per_minute``.
        tokens_by_modality: input tokens billed, by modality.
        cost_usd: the price of those tokens at the model's list prices.
        batch_items: items answered inside Batch API jobs (not counted in ``items``).
        batch_tokens_by_modality: their input tokens, by modality.
        batch_cost_usd: their price at the Batch API's rate (half the list price).
    """

    calls: int = 0
    items: int = 0
    requests: int = 0
    bytes_received: int = 0
    rate_limited: int = 0
    tokens_by_modality: Mapping[Modality, int] = field(default_factory=lambda: MappingProxyType({}))
    cost_usd: float = 0.0
    batch_items: int = 0
    batch_tokens_by_modality: Mapping[Modality, int] = field(
        default_factory=lambda: MappingProxyType({})
    )
    batch_cost_usd: float = 0.0


class FakeGeminiServer(BatchEndpoints, FilesEndpoints):
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
        latency_by_modality: seconds an embedding call takes by the modality of its parts
            (``{"text": 0.1, "video": 2.0}``); a call with several modalities takes the longest
            of theirs, and a modality not named takes ``latency``.
        requests_per_minute: answer embedding calls past this many in the last 60 s with 429
            RESOURCE_EXHAUSTED and a ``RetryInfo`` delay saying when a slot frees, as Google's
            per-minute quota does; ``None`` for no limit. Refused calls do not count.
        max_inline_bytes: the most inline (base64) media bytes one request may carry, answered
            400 above it; the model's :attr:`~mmembed.limits.ModelLimits.max_inline_bytes` by
            default. Larger media must come through the Files API.
        keep_bodies: keep each request's parsed body in :attr:`requests`; ``False`` keeps only
            sizes and item counts, so a long benchmark does not hold every byte it was sent.
        batch_turnaround: seconds a Batch API job takes from its creation to its end (PENDING
            for the first half, RUNNING for the second); see :meth:`fail_batch_items`,
            :meth:`end_next_batch` and :attr:`batch_creations`.

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
        latency_by_modality: Mapping[str, float] | None = None,
        requests_per_minute: int | None = None,
        max_inline_bytes: int | None = None,
        keep_bodies: bool = True,
        batch_turnaround: float = 0.0,
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
        known = {m.value for m in Modality}
        unknown = sorted(set(latency_by_modality or {}) - known)
        if unknown:
            raise ConfigurationError(
                f"latency_by_modality takes the modalities {', '.join(sorted(known))}; got "
                f"{', '.join(unknown)}"
            )
        self.latency_by_modality = {k: float(v) for k, v in (latency_by_modality or {}).items()}
        if requests_per_minute is not None and requests_per_minute < 1:
            raise ConfigurationError(
                f"requests_per_minute must be at least 1 (or None), got {requests_per_minute}"
            )
        self.requests_per_minute = requests_per_minute
        if max_inline_bytes is not None and max_inline_bytes < 1:
            raise ConfigurationError(f"max_inline_bytes must be positive, got {max_inline_bytes}")
        self.max_inline_bytes = max_inline_bytes
        self.keep_bodies = keep_bodies
        if not batch_turnaround >= 0:
            raise ConfigurationError(
                f"batch_turnaround must be >= 0 seconds, got {batch_turnaround}"
            )
        self.batch_turnaround = float(batch_turnaround)
        self._batch_jobs = {}
        self._batch_next = {}
        self._batch_created = 0
        self._batch_billed = {}
        self._batch_compute = threading.Lock()
        self._admitted: deque[float] = deque()  # arrival times of calls let in, last 60 s
        self._rate_limited = 0
        self._billed: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._refused: list[str] = []
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
        """Forget recorded requests, pending faults and refusals, what was billed and the quota's
        window (uploaded files stay)."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._refused.clear()
            self._billed.clear()
            self._batch_billed.clear()
            self._rate_limited = 0
            self._admitted.clear()
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

    def refuse_text(self, marker: str) -> None:
        """Answer 400 INVALID_ARGUMENT to every embedding call with a text that contains
        ``marker``, every time: an input the service will not take (until :meth:`reset`)."""
        if not marker:
            raise ConfigurationError("refuse_text needs a non-empty marker")
        with self._lock:
            self._refused.append(marker)

    def _refuses(self, body: Any) -> bool:
        with self._lock:
            markers = list(self._refused)
        return bool(markers) and any(m in text for text in texts_in(body) for m in markers)

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

    @property
    def usage(self) -> FakeGeminiUsage:
        """What the embedding calls answered so far were billed, as Google would count them.

        Tokens are the ones reported in each answer's ``usageMetadata`` (text at about four
        characters a token, media at the rates in :mod:`mmembed.limits`), priced with
        :func:`mmembed.limits.cost_usd` for the model of each call.
        """
        with self._lock:
            billed = {m: dict(b) for m, b in self._billed.items()}
            batch_billed = {m: dict(b) for m, b in self._batch_billed.items()}
            requests = list(self._requests)
            limited = self._rate_limited
        tokens: dict[Modality, int] = {}
        calls = items = 0
        cost = 0.0
        for model, bill in billed.items():
            calls += bill.pop("#calls", 0)
            items += bill.pop("#items", 0)
            by = {_SERVICE_MODALITY.get(name, Modality.TEXT): n for name, n in bill.items()}
            for modality, n in by.items():
                tokens[modality] = tokens.get(modality, 0) + n
            cost += cost_usd(by, limits_for(model))
        batch_tokens: dict[Modality, int] = {}
        batch_items = 0
        batch_cost = 0.0
        for model, bill in batch_billed.items():
            batch_items += bill.pop("#items", 0)
            by = {_SERVICE_MODALITY.get(name, Modality.TEXT): n for name, n in bill.items()}
            for modality, n in by.items():
                batch_tokens[modality] = batch_tokens.get(modality, 0) + n
            batch_cost += cost_usd(by, limits_for(model), batch=True)
        embed = [r for r in requests if r.endpoint in ("batchEmbedContents", "embedContent")]
        return FakeGeminiUsage(
            calls=calls,
            items=items,
            requests=len(embed),
            bytes_received=sum(r.size for r in requests),
            rate_limited=limited,
            tokens_by_modality=MappingProxyType(tokens),
            cost_usd=cost,
            batch_items=batch_items,
            batch_tokens_by_modality=MappingProxyType(batch_tokens),
            batch_cost_usd=batch_cost,
        )

    def _latency_for(self, body: Any) -> float:
        """Seconds an embedding call with this body takes (the longest of its modalities')."""
        if not self.latency_by_modality:
            return self.latency
        found = body_modalities(body) or {"text"}
        return max(self.latency_by_modality.get(m, self.latency) for m in found)

    def _admit(self, now: float) -> float | None:
        """Let a call in under ``requests_per_minute``, or the seconds until a slot frees."""
        most = self.requests_per_minute
        if most is None:
            return None
        with self._lock:
            window = self._admitted
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) < most:
                window.append(now)
                return None
            self._rate_limited += 1
            return max(0.001, window[0] + 60.0 - now)

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

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "stopped"
        return f"FakeGeminiServer({where})"
