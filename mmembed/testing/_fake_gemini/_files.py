"""The Files API of the fake server: resumable uploads, state polls, deletes; the API key check."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

from mmembed.testing._fake_gemini._wire import _ApiError, _get, _StoredFile

__all__ = ["FilesEndpoints"]


class FilesEndpoints:
    """Uploads (``files.upload``), ``files.get`` and ``files.delete``, and the key check."""

    _lock: threading.Lock
    _files: dict[str, _StoredFile]
    _sessions: dict[str, _StoredFile]
    _ids: itertools.count[int]
    _api_key: str | None
    file_processing_polls: int

    @property
    def base_url(self) -> str:
        raise NotImplementedError

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
