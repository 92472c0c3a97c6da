"""Error translation of the Gemini package, against error bodies recorded from Google's API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import errors as genai_errors

from mmembed.embedders.gemini._errors import (
    Redactor,
    from_answer,
    from_exception,
    is_transport_error,
    name_item,
    scrub,
)
from mmembed.errors import (
    AuthenticationError,
    EmbeddingError,
    ProviderError,
    RateLimitError,
)
from mmembed.testing import FakeGeminiServer
from tests.gemini_helpers import SENTINEL_KEY

MODEL = "gemini-embedding-2"
RECORDED = json.loads(
    (Path(__file__).parent / "data" / "gemini_error_bodies.json").read_text(encoding="utf-8")
)["cases"]

# what each recorded body must become: error class, retried, the server's delay, a message hint
EXPECTED: dict[str, tuple[type[EmbeddingError], bool, float | None, str]] = {
    "429_per_minute_with_retry_info": (RateLimitError, True, 15.0, "rate limited"),
    "429_token_quota_per_minute_with_retry_info": (RateLimitError, True, 26.0, "rate limited"),
    "429_daily_quota_among_others": (RateLimitError, False, None, "daily quota exhausted"),
    "429_help_only": (RateLimitError, True, None, "lower concurrency"),
    "429_bare": (RateLimitError, True, None, "raise your quota"),
    "400_api_key_invalid": (AuthenticationError, False, None, "API key was refused"),
    "400_api_key_not_found": (AuthenticationError, False, None, "GEMINI_API_KEY"),
    "404_embedding_model_not_found": (ProviderError, False, None, "check the model id"),
    "400_too_many_requests_in_a_batch": (ProviderError, False, None, "request refused"),
    "400_vertex_model_not_for_embed_content": (ProviderError, False, None, "request refused"),
    "503_overloaded": (ProviderError, True, None, "try again later"),
    "503_high_demand": (ProviderError, True, None, "server error"),
    "500_internal": (ProviderError, True, None, "server error"),
}


def _case(name: str) -> dict[str, Any]:
    return next(c for c in RECORDED if c["name"] == name)


def test_every_recorded_body_has_an_expectation() -> None:
    assert sorted(c["name"] for c in RECORDED) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recorded_body_becomes_the_right_error(name: str) -> None:
    case = _case(name)
    cls, retryable, delay, hint = EXPECTED[name]
    failure = from_answer(case["status"], case["body"], model=MODEL)
    err = failure.error
    assert type(err) is cls
    assert failure.retryable is retryable
    assert failure.server_delay == delay
    assert err.status_code == case["status"]
    assert hint in str(err)
    assert str(err).startswith(f"{MODEL}: ")
    assert case["body"]["error"]["message"] in str(err)  # Google's own words are kept
    assert case["body"]["error"]["status"] in str(err)


def test_a_daily_quota_still_reports_the_servers_delay() -> None:
    body = _case("429_daily_quota_among_others")["body"]
    err = from_answer(429, body, model=MODEL).error
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 47.0
    assert not err.retryable


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_sdks_exception_for_a_body_translates_the_same(name: str) -> None:
    """What the SDK raises for an answer and the answer itself give the same error."""
    case = _case(name)
    cls = genai_errors.ClientError if case["status"] < 500 else genai_errors.ServerError
    exc = cls(case["status"], case["body"], None)
    via_sdk = from_exception(exc, model=MODEL, timeout=10)
    direct = from_answer(case["status"], case["body"], model=MODEL)
    assert type(via_sdk.error) is type(direct.error)
    assert str(via_sdk.error) == str(direct.error)
    assert (via_sdk.retryable, via_sdk.server_delay) == (direct.retryable, direct.server_delay)


def test_a_body_wrapped_in_a_list_reads_as_the_sdk_reads_it() -> None:
    body = _case("503_overloaded")["body"]
    assert str(from_answer(503, [body], model=MODEL).error) == str(
        from_answer(503, body, model=MODEL).error
    )


def test_the_delay_comes_from_retry_info_in_either_form_or_from_retry_after() -> None:
    body: dict[str, Any] = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": {"seconds": 3, "nanos": 500_000_000},
                }
            ],
        }
    }
    assert from_answer(429, body, model=MODEL).server_delay == pytest.approx(3.5)
    bare = {"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}}
    assert from_answer(503, bare, model=MODEL, headers={"retry-after": "7"}).server_delay == 7.0
    assert from_answer(503, bare, model=MODEL, headers={"retry-after": "soon"}).server_delay is None
    # a request that is not retried has no delay to honour
    refused = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "no"}}
    assert from_answer(400, refused, model=MODEL, headers={"retry-after": "7"}).server_delay is None


def test_a_body_that_is_not_googles_shape_is_still_an_error() -> None:
    failure = from_answer(502, "<html>Bad Gateway</html>", model=MODEL)
    assert isinstance(failure.error, ProviderError)
    assert failure.retryable
    assert "502 : no message" in str(failure.error)


def test_the_key_is_redacted_from_messages() -> None:
    body = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": f"bad {SENTINEL_KEY}"}}
    plain = from_answer(400, body, model=MODEL)
    assert SENTINEL_KEY not in str(plain.error)  # anything shaped like a key
    secret = "a-custom-secret-key"
    body["error"]["message"] = f"bad {secret}"
    redacted = from_answer(400, body, model=MODEL, redact=Redactor([secret]))
    assert secret not in str(redacted.error)
    assert "[redacted]" in str(redacted.error)
    assert secret not in repr(Redactor([secret]))


def test_timeouts_and_failed_connections_are_retried_other_exceptions_are_not() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/models/x:batchEmbedContents")
    timeout = from_exception(
        httpx.ReadTimeout("timed out", request=request), model=MODEL, timeout=2
    )
    assert timeout.retryable
    assert "no answer within timeout=2 s" in str(timeout.error)
    refused = from_exception(httpx.ConnectError("refused", request=request), model=MODEL, timeout=2)
    assert refused.retryable
    assert "the connection failed" in str(refused.error)
    other = from_exception(RuntimeError("client has been closed"), model=MODEL, timeout=2)
    assert not other.retryable
    assert "the SDK failed (RuntimeError: client has been closed)" in str(other.error)
    assert is_transport_error(TimeoutError())
    assert not is_transport_error(ValueError())


def test_scrub_drops_the_objects_that_carry_the_key() -> None:
    request = httpx.Request("POST", "http://x", headers={"x-goog-api-key": SENTINEL_KEY})
    inner = httpx.ReadTimeout("slow", request=request)
    outer = RuntimeError("wrapped")
    outer.__cause__ = inner
    scrub(outer)
    assert SENTINEL_KEY not in repr(vars(inner))


def test_an_sdk_error_stays_attached_as_the_cause_without_the_key() -> None:
    with FakeGeminiServer() as server:
        from mmembed.embedders import GeminiEmbedder

        embedder = GeminiEmbedder(
            dimensions=128, client=server.client(api_key=SENTINEL_KEY), max_retries=0
        )
        server.fail_next(1, status=503)
        with pytest.raises(ProviderError) as info:
            embedder.embed(["x"])
    cause = info.value.__cause__
    assert isinstance(cause, genai_errors.ServerError)
    assert cause.code == 503
    assert getattr(cause, "response", None) is None  # scrubbed: it held the key in its headers


def test_name_item_only_names_what_it_can() -> None:
    err = ProviderError("* requests[5].content: bad", status_code=400)
    assert name_item(err, [1, 2]) is err  # the call had two items: no requests[5]
    server_side = ProviderError("requests[0] failed", status_code=500)
    assert name_item(server_side, [9]) is server_side
    named = name_item(ProviderError("* requests[0]: bad", status_code=400), [9])
    assert str(named).startswith("item 9 was refused: ")
    assert named.status_code == 400
