"""What the fake server and its parts share: routes, error bodies, the request record."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
        size: the bytes of the request body.
        item_count: how many contents (vectors) an embedding request asked for (counted on
            arrival, so it is known when the server keeps no bodies).
    """

    method: str
    path: str
    endpoint: str
    model: str | None
    body: Any
    headers: Mapping[str, str]
    api_key_sent: bool
    status: int
    size: int = 0
    item_count: int = 0

    @property
    def items(self) -> int:
        """How many contents (vectors) the request asked for."""
        return self.item_count

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

    @property
    def texts(self) -> list[str]:
        """The text parts of an embedding request's contents, in order."""
        return list(texts_in(self.contents))


def texts_in(value: Any) -> Iterator[str]:
    """Every ``text`` field in a request body (or a part of one)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "text" and isinstance(inner, str):
                yield inner
            else:
                yield from texts_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from texts_in(inner)


def count_items(endpoint: str, body: Any) -> int:
    """How many contents (vectors) an embedding request body asks for."""
    if endpoint == "batchEmbedContents" and isinstance(body, dict):
        reqs = body.get("requests")
        return len(reqs) if isinstance(reqs, list) else 0
    return 1 if endpoint == "embedContent" else 0


def body_modalities(body: Any) -> set[str]:
    """The modalities (``"text"``, ``"image"``, ...) of the parts of an embedding request."""
    from mmembed.content import modality_of

    found: set[str] = set()
    requests = body.get("requests") if isinstance(body, dict) else None
    for req in requests if isinstance(requests, list) else [body]:
        content = req.get("content") if isinstance(req, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict):
                continue
            if "text" in part:
                found.add("text")
                continue
            blob = _get(part, "inline_data") or _get(part, "file_data")
            mime = _get(blob, "mime_type") if isinstance(blob, dict) else None
            modality = modality_of(str(mime or ""))
            if modality is not None:
                found.add(modality.value)
    return found


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
