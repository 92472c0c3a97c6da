"""The embedding endpoints of the fake server: checking a request and answering it."""

from __future__ import annotations

import hashlib
import math
import re
import threading
from typing import Any

from mmembed._media_info import duration_seconds, pdf_page_count
from mmembed.content import Audio, Modality, Pdf, Video, modality_of
from mmembed.errors import MMEmbedError
from mmembed.limits import ModelLimits, estimate_tokens, limits_for, media_tokens
from mmembed.testing._fake_gemini._wire import (
    _CHARS_PER_TEXT_TOKEN,
    _FILE_URI,
    _PREFIX,
    _RENDER_CACHE,
    _ApiError,
    _b64decode,
    _get,
    _StoredFile,
    _Values,
)
from mmembed.testing._vectors import fake_vector

__all__ = ["EmbeddingEndpoints"]


class EmbeddingEndpoints:
    """``batchEmbedContents`` and ``embedContent``: limits, token counts, vectors."""

    _lock: threading.Lock
    _files: dict[str, _StoredFile]
    _rendered: dict[tuple[Any, ...], _Values]
    usage_metadata: bool
    reject_task_type: bool
    max_inline_bytes: int | None
    _billed: dict[str, dict[str, int]]

    def _bill(self, model: str, items: int, tokens: dict[str, int]) -> None:
        """Count an answered call: its items and its tokens by the service's modality names."""
        with self._lock:
            bill = self._billed.setdefault(model, {})
            bill["#calls"] = bill.get("#calls", 0) + 1
            bill["#items"] = bill.get("#items", 0) + items
            for name, n in tokens.items():
                bill[name] = bill.get(name, 0) + n

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
        most = limits.max_inline_bytes if self.max_inline_bytes is None else self.max_inline_bytes
        if inline_total > most:
            raise _ApiError(400, f"Request payload size exceeds the limit: {most} bytes.")
        out: dict[str, Any]
        if method == "embedContent":
            out = {"embedding": {"values": vectors[0]}}
        else:
            out = {"embeddings": [{"values": v} for v in vectors]}
        self._bill(limits.model, len(vectors), usage)
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
