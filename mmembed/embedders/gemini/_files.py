"""Media too large to send inline: uploaded through the Files API, polled until ACTIVE.

Written once as steps (see :mod:`._retry`) for the sync and the async path. The same bytes are
uploaded once per embedder: :class:`Uploads` remembers them by SHA-256.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from mmembed.content import Media
from mmembed.embedders.gemini._items import Item
from mmembed.embedders.gemini._retry import Call, Sleep, Steps, Work
from mmembed.embedders.gemini._transport import Transport
from mmembed.errors import ProviderError

__all__ = ["Uploads", "upload_steps"]

# polls of a PROCESSING file: the first wait, doubled each time up to the last
_FIRST_POLL = 0.2
_LAST_POLL = 5.0


class Uploads:
    """The files an embedder has uploaded: sha256 of the bytes -> (file uri, mime type)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, tuple[str, str]] = {}

    def get(self, sha: str) -> tuple[str, str] | None:
        with self._lock:
            return self._done.get(sha)

    def put(self, sha: str, ref: tuple[str, str]) -> None:
        with self._lock:
            self._done[sha] = ref


def upload_steps(
    items: Sequence[Item],
    *,
    transport: Transport,
    uploads: Uploads,
    retry: Callable[[Call, int], Steps[Any]],
    wait_seconds: float,
    redact: Callable[[str], str],
) -> Steps[dict[str, tuple[str, str]]]:
    """Upload the media of ``items`` not uploaded yet; returns every one's (uri, mime type).

    ``retry(call, n_items)`` gives the steps of ``call`` under the embedder's retry policy.
    """
    found: dict[str, tuple[str, str]] = {}
    for item in items:
        for part in item.parts:
            if not isinstance(part, Media):
                continue
            sha: str = yield Work(part.sha256)
            if sha in found:
                continue
            known = uploads.get(sha)
            if known is None:
                config = {"mime_type": part.mime_type, "display_name": f"mmembed-{sha[:16]}"}
                file = yield from retry(transport.upload(part, config), 1)
                deadline = time.monotonic() + wait_seconds
                delay = _FIRST_POLL
                while _file_state(file) == "PROCESSING":
                    if time.monotonic() > deadline:
                        raise ProviderError(
                            f"uploaded {part.name} was still PROCESSING after {wait_seconds:g} s; "
                            "raise file_wait_seconds or try again later",
                            retryable=True,
                        )
                    yield Sleep(delay)
                    delay = min(delay * 2, _LAST_POLL)
                    file = yield from retry(transport.get_file(file.name or ""), 1)
                known = _file_ref(part, file, redact)
                uploads.put(sha, known)
            found[sha] = known
    return found


def _file_state(file: Any) -> str:
    state = getattr(file, "state", None)
    return str(getattr(state, "value", state) or "ACTIVE")


def _file_ref(part: Media, file: Any, redact: Callable[[str], str]) -> tuple[str, str]:
    state = _file_state(file)
    if state != "ACTIVE" or not file.uri:
        detail = redact(str(getattr(file, "error", None) or ""))
        raise ProviderError(
            f"the Files API could not process {part.name} (state {state}"
            f"{': ' + detail if detail else ''}); check that the file is a valid "
            f"{part.mime_type}"
        )
    return str(file.uri), str(file.mime_type or part.mime_type)
