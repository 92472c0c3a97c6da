"""The Gemini Batch API for embeddings: submit items as a job, ask about it, read its results.

Half the interactive price, a turnaround of up to a day, no per-minute quota: the way to index a
whole archive. Only the Gemini Developer API has it (``asyncBatchEmbedContent``); on Vertex AI
the SDK refuses ``batches.create_embeddings``. Items are checked exactly as
:meth:`GeminiEmbedder.embed` checks them (the same :class:`~mmembed.errors.InputLimitError`),
media too large to send inline are uploaded through the Files API first, and a job's requests
go inline when they are small and as an uploaded JSONL file when they are not. Results are read
with the interactive path's reply check (:func:`._reply.rows`): one finite vector of the right
width per item, L2-normalised, or that item's error.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mmembed.content import Embeddable, Task, as_items
from mmembed.embedders.gemini._reply import Answer, rows
from mmembed.embedders.gemini._retry import Call, run_sync
from mmembed.embedders.gemini._tasks import task_type
from mmembed.embedders.gemini._transport import sdk_contents
from mmembed.errors import ConfigurationError, MMEmbedError, ProviderError

if TYPE_CHECKING:
    from mmembed.embedders.gemini._embedder import GeminiEmbedder

__all__ = ["ACTIVE_STATES", "BatchClient", "JobReply", "new_job_id"]

#: Requests above this many base64 bytes go to a job as an uploaded JSONL file, not inline
#: (Google's documented bound for an inline batch request is 20 MB).
INLINE_JOB_BYTES = 16 << 20
#: The states of a job that may still give results.
ACTIVE_STATES = frozenset({"PENDING", "RUNNING"})


def new_job_id() -> str:
    """A fresh id for a job, sent as its display name so it can be found after a crash."""
    return f"mmembed-{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobReply:
    """What the service says about one job.

    ``state`` is ``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``CANCELLED`` or
    ``EXPIRED``; ``results`` (when it succeeded) holds per item, in order, its unit vector or the
    reason it failed; ``tokens`` its input tokens (0 when not reported or failed).
    """

    name: str
    state: str
    message: str = ""
    results: tuple[NDArray[np.float32] | str, ...] = ()
    tokens: tuple[int, ...] = ()


class BatchClient:
    """The Batch API through a :class:`GeminiEmbedder`'s client, model, width and checks."""

    def __init__(self, embedder: GeminiEmbedder) -> None:
        if embedder.vertexai:
            raise ConfigurationError(
                "the Batch API for embeddings is on the Gemini Developer API only; Vertex AI "
                "has no asyncBatchEmbedContent. Use an API key (GEMINI_API_KEY) instead of "
                "Vertex AI for batch mode, or index interactively"
            )
        self._embedder = embedder
        self._transport = embedder._transport
        self._client: Any = self._transport._client
        self._model = embedder.model
        self._dimensions = embedder.dimensions

    def check(self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT) -> None:
        """Refuse ``items`` as :meth:`GeminiEmbedder.embed` would, sending nothing."""
        self._embedder.check(items, task=task)

    def submit(self, items: Sequence[Embeddable], *, task: Task, job_id: str) -> str:
        """Create one job embedding ``items``; returns its name (``batches/…``).

        ``job_id`` is sent as the job's display name: :meth:`find` finds the job by it when the
        process died between creating the job and recording its name.
        """
        from google.genai import types

        emb = self._embedder
        prepared = emb._prepare(as_items(items), task)
        uploaded = run_sync(emb._upload(prepared))
        contents = sdk_contents(types, prepared, uploaded)
        kind = task_type(task, emb.limits)
        config = types.EmbedContentConfig(output_dimensionality=self._dimensions, task_type=kind)
        if sum(it.inline_bytes for it in prepared) <= INLINE_JOB_BYTES:
            src: Any = types.EmbeddingsBatchJobSource(
                inlined_requests=types.EmbedContentBatch(contents=contents, config=config)
            )
        else:
            src = {"file_name": self._upload_requests(contents, kind, job_id)}
        job = self._call(
            lambda: self._client.batches.create_embeddings(
                model=self._model, src=src, config={"display_name": job_id}
            )
        )
        return str(job.name)

    def _upload_requests(self, contents: list[Any], kind: str | None, job_id: str) -> str:
        """The requests as a JSONL file in the Files API; returns its name."""
        buffer = io.BytesIO()
        for i, content in enumerate(contents):
            request: dict[str, Any] = {
                "content": content.model_dump(mode="json", exclude_none=True),
                "output_dimensionality": self._dimensions,
            }
            if kind is not None:
                request["task_type"] = kind
            line = json.dumps({"key": str(i), "request": request}, separators=(",", ":"))
            buffer.write(line.encode() + b"\n")
        config = {"mime_type": "application/jsonl", "display_name": job_id}

        def upload() -> Any:
            buffer.seek(0)
            return self._client.files.upload(file=buffer, config=config)

        return str(self._call(upload).name)

    def find(self, job_id: str) -> str | None:
        """The name of the job created with ``job_id`` as display name, if the service has it."""
        for job in self._call(lambda: list(self._client.batches.list())):
            if job.display_name == job_id:
                return str(job.name)
        return None

    def get(self, name: str) -> JobReply:
        """The job's state, and its results once it succeeded."""
        job = self._call(lambda: self._client.batches.get(name=name))
        state = str(getattr(job.state, "value", job.state) or "").removeprefix("JOB_STATE_")
        error = getattr(job, "error", None)
        message = str(getattr(error, "message", "") or "") if error is not None else ""
        if state != "SUCCEEDED":
            return JobReply(name=name, state=state, message=message)
        dest = job.dest
        if dest is None:
            raise ProviderError(f"{self._model} batch job {name} succeeded without results")
        raw: list[tuple[Any, str, int]]
        if dest.file_name:
            data = self._call(lambda: self._client.files.download(file=dest.file_name))
            raw = _from_file(bytes(data))
        else:
            raw = _from_inline(dest.inlined_embed_content_responses or dest.inlined_responses or [])
        results: list[NDArray[np.float32] | str] = []
        for i, (values, reason, _) in enumerate(raw):
            if values is None:
                results.append(reason or "no embedding returned")
                continue
            answer = Answer(vectors=[values], prompt_tokens=None, tokens_by_modality=[])
            try:
                vector = rows(answer, [i], dimensions=self._dimensions, model=self._model)[0]
            except ProviderError as exc:
                results.append(str(exc))
                continue
            results.append(vector)
        return JobReply(
            name=name,
            state=state,
            message=message,
            results=tuple(results),
            tokens=tuple(n for _, _, n in raw),
        )

    def cancel(self, name: str) -> None:
        """Ask the service to cancel the job."""
        self._call(lambda: self._client.batches.cancel(name=name))

    def _call(self, run: Callable[[], Any]) -> Any:
        """One request under the embedder's retry policy, its errors translated."""

        def quiet() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the SDK marks the Batch API experimental
                return run()

        async def arun() -> Any:
            return await asyncio.to_thread(quiet)

        try:
            return run_sync(self._embedder._retry(Call(quiet, arun), 1))
        except MMEmbedError:
            raise
        except Exception as exc:  # the SDK refusing a request before sending it
            raise self._embedder._translate(exc).error from exc


def _from_inline(responses: Sequence[Any]) -> list[tuple[Any, str, int]]:
    """(values, error message, tokens) per inline response, in order."""
    out: list[tuple[Any, str, int]] = []
    for r in responses:
        error = getattr(r, "error", None)
        response = getattr(r, "response", None)
        embedding = getattr(response, "embedding", None)
        values = getattr(embedding, "values", None)
        if error is not None or values is None:
            out.append((None, str(getattr(error, "message", "") or ""), 0))
        else:
            out.append((values, "", int(getattr(response, "token_count", 0) or 0)))
    return out


def _from_file(data: bytes) -> list[tuple[Any, str, int]]:
    """(values, error message, tokens) per line of a responses file, in the order of its keys."""
    keyed: list[tuple[int, tuple[Any, str, int]]] = []
    for n, line in enumerate(data.decode("utf-8").splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        key = int(row["key"]) if str(row.get("key", "")).isdigit() else n
        response = row.get("response") or {}
        values = (response.get("embedding") or {}).get("values")
        if values is None:
            message = str((row.get("error") or response.get("error") or {}).get("message", ""))
            keyed.append((key, (None, message, 0)))
        else:
            tokens = int(response.get("tokenCount", response.get("token_count", 0)) or 0)
            keyed.append((key, (values, "", tokens)))
    keyed.sort(key=lambda kv: kv[0])
    return [v for _, v in keyed]
