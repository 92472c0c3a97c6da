"""SDK and HTTP failures translated into :mod:`mmembed.errors`, once, with the key scrubbed.

Everything here is a pure function of what the service answered (the HTTP status, the JSON error
body, a Retry-After header) or of the exception the SDK or its HTTP library raised; the tests
feed it error bodies recorded from Google's API.

==========================================  =========================  =========
answer                                      error                      retried
==========================================  =========================  =========
429 with a per-day ``QuotaFailure``         ``RateLimitError``         no
429 otherwise                               ``RateLimitError``         yes
401, 403, or an ``API_KEY_INVALID`` reason  ``AuthenticationError``    no
404                                         ``ProviderError``          no
408, 500, 502, 503, 504                     ``ProviderError``          yes
other 4xx and 5xx                           ``ProviderError``          no
timeout, dropped or refused connection      ``ProviderError``          yes
anything else the SDK raises                ``ProviderError``          no
==========================================  =========================  =========

>>> body = {"error": {"code": 503, "message": "Overloaded.", "status": "UNAVAILABLE"}}
>>> failure = from_answer(503, body, model="gemini-embedding-2")
>>> failure.retryable, str(failure.error)
(True, 'gemini-embedding-2: server error (503 UNAVAILABLE: Overloaded.); try again later')
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmembed.errors import (
    AuthenticationError,
    EmbeddingError,
    ProviderError,
    RateLimitError,
)

__all__ = ["Failure", "Redactor", "from_answer", "from_exception", "name_item", "scrub"]

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_KEY_PATTERN = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
_REQUEST_INDEX = re.compile(r"\brequests\[(\d+)\]")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*s\s*$")
_TRANSPORT_ROOTS = frozenset({"httpx", "httpx2", "httpcore", "aiohttp", "requests", "urllib3"})


@dataclass(slots=True)
class Failure:
    """A failed attempt, translated: the error to raise, and whether (and when) to retry."""

    error: EmbeddingError
    retryable: bool
    server_delay: float | None  # seconds the server asked to wait before a retry


class Redactor:
    """Removes the API key from text; its repr never shows the key."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _KEY_PATTERN.sub("[redacted]", text)

    def __repr__(self) -> str:
        return "Redactor(***)"


# what is redacted when no key is known: anything shaped like a Google API key
_KEYS_ONLY = Redactor()


def from_answer(
    code: int,
    body: Any,
    *,
    model: str,
    headers: Mapping[str, str] | None = None,
    redact: Callable[[str], str] = _KEYS_ONLY,
) -> Failure:
    """The failure an HTTP error answer means: its status ``code`` and JSON ``body``.

    ``body`` is Google's error body (``{"error": {"code", "message", "status", "details"}}``,
    or a list holding one); ``headers`` may carry ``Retry-After``.
    """
    if isinstance(body, list) and len(body) == 1:
        body = body[0]  # as the SDK reads it
    body = body if isinstance(body, Mapping) else {}
    error = body.get("error", {})
    error = error if isinstance(error, Mapping) else {}
    status = str(body.get("status", error.get("status")) or "")
    raw_message = body.get("message", error.get("message"))
    server_delay = _retry_delay(body, headers)
    message = redact(str(raw_message or "")).strip() or "no message"
    summary = f"{code} {status}: {message}"
    if code == 429:
        if _daily_quota(body):
            return Failure(
                RateLimitError(
                    f"{model}: daily quota exhausted ({summary}); wait until the "
                    "quota resets or raise it in Google AI Studio",
                    status_code=code,
                    retry_after=server_delay,
                ),
                False,
                None,
            )
        return Failure(
            RateLimitError(
                f"{model}: rate limited ({summary}); lower concurrency or raise your quota",
                status_code=code,
                retryable=True,
                retry_after=server_delay,
            ),
            True,
            server_delay,
        )
    if code in (401, 403) or _bad_key(body, message):
        return Failure(
            AuthenticationError(
                f"{model}: the API key was refused ({summary}); check "
                "GEMINI_API_KEY / GOOGLE_API_KEY or the api_key argument",
                status_code=code,
            ),
            False,
            None,
        )
    if code == 404:
        return Failure(
            ProviderError(
                f"{model}: not found ({summary}); check the model id and GOOGLE_GENAI_API_VERSION",
                status_code=code,
            ),
            False,
            None,
        )
    retryable = code in _RETRYABLE_STATUS
    what = "server error" if code >= 500 else "request refused"
    hint = "try again later" if retryable else "fix the request as the message says"
    return Failure(
        ProviderError(
            f"{model}: {what} ({summary}); {hint}", status_code=code, retryable=retryable
        ),
        retryable,
        server_delay if retryable else None,
    )


def from_exception(
    exc: Exception, *, model: str, timeout: float, redact: Callable[[str], str] = _KEYS_ONLY
) -> Failure:
    """The failure an exception of the SDK or its HTTP library means; scrubs the key from it.

    An ``APIError`` is read as :func:`from_answer` reads an answer; a timeout or a failed
    connection is retryable; anything else the SDK raises is not.
    """
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        failure = from_answer(
            int(exc.code or 0),
            exc.details,
            model=model,
            headers=getattr(getattr(exc, "response", None), "headers", None),
            redact=redact,
        )
        scrub(exc)
        return failure
    scrub(exc)
    name = type(exc).__name__
    text = redact(str(exc)).strip()
    if is_transport_error(exc):
        timed_out = "Timeout" in name or isinstance(exc, (TimeoutError, asyncio.TimeoutError))
        what = f"no answer within timeout={timeout:g} s" if timed_out else "the connection failed"
        return Failure(
            ProviderError(
                f"{model}: {what} ({name}{': ' + text if text else ''}); check the "
                "network, or raise timeout=",
                retryable=True,
            ),
            True,
            None,
        )
    return Failure(
        ProviderError(f"{model}: the SDK failed ({name}{': ' + text if text else ''})"),
        False,
        None,
    )


def name_item(err: ProviderError, indexes: Sequence[int]) -> ProviderError:
    """``err`` with the item a refused call's ``requests[j]`` points at named in its message.

    ``indexes`` are the positions in the caller's input of the call's items, in order.

    >>> err = ProviderError("* requests[1].content: bad", status_code=400)
    >>> str(name_item(err, [40, 41]))
    'item 41 was refused: * requests[1].content: bad'
    """
    found = _REQUEST_INDEX.search(str(err))
    if err.status_code != 400 or found is None or int(found.group(1)) >= len(indexes):
        return err
    index = indexes[int(found.group(1))]
    return ProviderError(
        f"item {index} was refused: {err}", status_code=err.status_code, retryable=err.retryable
    )


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a timeout or a failed connection (of any HTTP library the SDK uses)."""
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


def scrub(exc: BaseException) -> None:
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


def _details(body: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    if isinstance(details, list):
        for d in details:
            if isinstance(d, Mapping):
                yield d


def _retry_delay(body: Mapping[str, Any], headers: Any) -> float | None:
    """The wait the server asked for: ``RetryInfo.retryDelay`` in the body, or Retry-After."""
    for d in _details(body):
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            raw = d.get("retryDelay")
            if isinstance(raw, str) and (m := _DURATION.match(raw)):
                return float(m.group(1))
            if isinstance(raw, Mapping):
                seconds = float(raw.get("seconds", 0)) + float(raw.get("nanos", 0)) / 1e9
                return seconds
    if headers is not None:
        try:
            value = headers.get("retry-after")
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError, AttributeError):
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
