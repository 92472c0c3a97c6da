"""The HTTP side of the fake server: routing each request, faults, latency, the reply."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from mmembed.testing._fake_gemini._batches import RawBytes
from mmembed.testing._fake_gemini._wire import (
    _EMBED_PATH,
    _FILE_PATH,
    _UPLOAD_SESSION,
    _UPLOAD_START,
    RecordedRequest,
    _ApiError,
    _encode,
    _Fault,
    _fault_error,
    _plain,
    _Values,
    count_items,
)

if TYPE_CHECKING:
    from mmembed.testing._fake_gemini._server import FakeGeminiServer

__all__ = ["_HTTPServer", "_Handler"]


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
                    fake._record(
                        self._recorded(method, path, endpoint, model, body, headers, 0, len(raw))
                    )
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                delay = fake._latency_for(body) + (
                    fault.seconds if fault and fault.kind == "slow" else 0
                )
                fake._enter_call()
                try:
                    if fault is not None and fault.kind == "error":
                        raise _fault_error(fault)
                    wait = fake._admit(arrived)
                    if wait is not None:
                        raise _fault_error(_Fault("error", 1, status=429, retry_delay=wait))
                    fake._check_key(headers, query)
                    if fake._refuses(body):
                        raise _ApiError(400, "Request contains an invalid argument.")
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
            elif _looks_like_batch(path):
                fake._check_key(headers, query)
                served = fake._serve_batch(method, path, body)
                if served is None:
                    raise _ApiError(404, f"The requested URL {path} was not found on this server.")
                endpoint, answer = served
            else:
                raise _ApiError(404, f"The requested URL {path} was not found on this server.")
        except _ApiError as err:
            status, answer = err.code, err.body()
        except Exception as exc:  # a bug in the fake must still answer like a server
            status = 500
            answer = _ApiError(500, f"fake server error: {type(exc).__name__}: {exc}").body()
        recorded_body = None if _UPLOAD_SESSION.match(path) else body
        fake._record(
            self._recorded(method, path, endpoint, model, recorded_body, headers, status, len(raw))
        )
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
        size: int,
    ) -> RecordedRequest:
        shown = {k: ("***" if k == "x-goog-api-key" else v) for k, v in headers.items()}
        return RecordedRequest(
            method=method,
            path=path,
            endpoint=endpoint,
            model=model,
            body=body if self.fake.keep_bodies else None,
            headers=MappingProxyType(shown),
            api_key_sent="x-goog-api-key" in headers,
            status=status,
            size=size,
            item_count=count_items(endpoint, body),
        )

    def _send(self, status: int, answer: Any, extra: Mapping[str, str]) -> None:
        raw = isinstance(answer, RawBytes)
        payload = answer.data if isinstance(answer, RawBytes) else _encode(answer).encode()
        try:
            self.send_response(status)
            kind = "application/octet-stream" if raw else "application/json; charset=UTF-8"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to do


def _looks_like_batch(path: str) -> bool:
    return ":asyncBatchEmbedContent" in path or "/batches" in path or path.endswith(":download")
