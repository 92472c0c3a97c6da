"""The Batch API of the fake server: embedding jobs, their states, inline results and result files.

The shapes are the Developer API's (see docs/testing.md): ``POST
/{version}/models/{model}:asyncBatchEmbedContent`` with ``{"batch": {"displayName",
"inputConfig": {"requests": {"requests": [{"request": {...}}]}} | {"fileName": "files/…"}}}``
answers a long-running operation ``{"name": "batches/…", "metadata": {"state":
"BATCH_STATE_PENDING", …}}``; ``GET /{version}/batches/{id}`` reports the state and, once
``done``, ``metadata.output``: ``{"inlinedResponses": {"inlinedResponses": [{"response":
{"embedding": {"values"}, "tokenCount"}} | {"error": {"code", "message"}}]}}`` for inline
requests, ``{"responsesFile": "files/…"}`` for a file (JSONL, one ``{"key", "response"}`` or
``{"key", "error"}`` a line, downloaded from ``/{version}/files/{id}:download?alt=media``).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mmembed.errors import ConfigurationError
from mmembed.limits import limits_for
from mmembed.testing._fake_gemini._embedding import EmbeddingEndpoints
from mmembed.testing._fake_gemini._wire import _ApiError, _encode, _get, _StoredFile

__all__ = ["BatchEndpoints", "RawBytes"]

_CREATE = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):asyncBatchEmbedContent$")
_JOB = re.compile(r"^/(?P<version>[^/]+)/batches/(?P<id>[A-Za-z0-9_-]+)(?P<cancel>:cancel)?$")
_LIST = re.compile(r"^/(?P<version>[^/]+)/batches$")
_DOWNLOAD = re.compile(r"^(?:/download)?/(?P<version>[^/]+)/files/(?P<id>[A-Za-z0-9_-]+):download$")
_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")


class RawBytes:
    """An answer sent as bytes, not JSON (a downloaded file)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


@dataclass(slots=True)
class _Job:
    id: str
    model: str
    display_name: str
    created: float
    turnaround: float
    requests: list[Any]
    keys: list[str]
    from_file: bool
    fail_items: frozenset[int] = frozenset()
    end: str = ""  # a forced end state: FAILED, EXPIRED, CANCELLED
    message: str = ""  # the job's error when it ends without results
    item_message: str = ""  # the error of each item in ``fail_items``
    results: list[dict[str, Any]] | None = None
    responses_file: str = ""
    create_time: str = field(default_factory=lambda: _stamp(time.time()))


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t))


class BatchEndpoints(EmbeddingEndpoints):
    """``asyncBatchEmbedContent``, ``batches.get/list/cancel/delete`` and result-file downloads.

    Items of a job are checked and answered one by one as ``batchEmbedContents`` answers them
    (the same limits, vectors and token counts); a bad item fails alone, inside a job that
    succeeds. Their tokens are billed apart from interactive calls, at the batch price.
    """

    _files: dict[str, _StoredFile]
    _ids: itertools.count[int]
    batch_turnaround: float
    _batch_jobs: dict[str, _Job]
    _batch_next: dict[str, Any]
    _batch_created: int
    _batch_billed: dict[str, dict[str, int]]
    _batch_compute: threading.Lock  # one job's results are computed once

    def _bill_batch(self, model: str, items: int, tokens: dict[str, int]) -> None:
        with self._lock:
            bill = self._batch_billed.setdefault(model, {})
            bill["#items"] = bill.get("#items", 0) + items
            for name, n in tokens.items():
                bill[name] = bill.get(name, 0) + n

    # ---------------------------------------------------------------- knobs

    def fail_batch_items(self, positions: list[int], *, message: str | None = None) -> None:
        """Make the items at ``positions`` of the next batch job fail inside a job that succeeds.

        Each gets ``{"error": {"code": 400, "message": ...}}`` in place of its embedding, as the
        service reports a bad item of a batch.
        """
        if any(p < 0 for p in positions):
            raise ConfigurationError(f"item positions must be >= 0, got {positions}")
        with self._lock:
            self._batch_next["fail_items"] = frozenset(positions)
            self._batch_next["item_message"] = message or "Request contains an invalid argument."

    def end_next_batch(self, state: str, *, message: str | None = None) -> None:
        """End the next batch job in ``state`` (``"FAILED"``, ``"EXPIRED"`` or ``"CANCELLED"``)
        when its turnaround has passed, without results."""
        if state not in ("FAILED", "EXPIRED", "CANCELLED"):
            raise ConfigurationError(f"state must be FAILED, EXPIRED or CANCELLED, got {state!r}")
        with self._lock:
            self._batch_next["end"] = state
            self._batch_next["message"] = message or f"the batch job is {state.lower()}"

    @property
    def batch_creations(self) -> int:
        """How many batch jobs were created (accepted ``asyncBatchEmbedContent`` calls)."""
        with self._lock:
            return self._batch_created

    def batch_states(self) -> dict[str, str]:
        """Every batch job's state now, by name (``batches/…``)."""
        with self._lock:
            jobs = list(self._batch_jobs.values())
        return {f"batches/{j.id}": self._state(j) for j in jobs}

    def batch_items(self, name: str) -> int:
        """How many items the batch job ``name`` (``batches/…``) holds."""
        with self._lock:
            job = self._batch_jobs.get(name.removeprefix("batches/"))
        if job is None:
            raise ConfigurationError(f"no batch job {name}")
        return len(job.requests)

    # ---------------------------------------------------------------- routing

    def _serve_batch(self, method: str, path: str, body: Any) -> tuple[str, Any] | None:
        """Answer a Batch API request, or ``None`` when ``path`` is not one."""
        if (m := _CREATE.match(path)) and method == "POST":
            return "batches.create", self._create_job(m.group("model"), body)
        if (m := _JOB.match(path)) and method == "DELETE" and not m.group("cancel"):
            self._job(m.group("id"))
            with self._lock:
                self._batch_jobs.pop(m.group("id"), None)
            return "batches.delete", {}
        if (m := _JOB.match(path)) and method in ("GET", "POST"):
            job = self._job(m.group("id"))
            if m.group("cancel"):
                with self._lock:
                    if self._state(job) in ("PENDING", "RUNNING"):
                        job.end, job.message = "CANCELLED", "cancelled by the user"
                        job.turnaround = 0.0
                return "batches.cancel", {}
            return "batches.get", self._operation(job)
        if _LIST.match(path) and method == "GET":
            with self._lock:
                jobs = list(self._batch_jobs.values())
            return "batches.list", {"operations": [self._operation(j) for j in jobs]}
        if (m := _DOWNLOAD.match(path)) and method == "GET":
            with self._lock:
                stored = self._files.get(m.group("id"))
            if stored is None or not stored.done:
                raise _ApiError(404, f"File {m.group('id')} not found.")
            return "files.download", RawBytes(bytes(stored.data))
        return None

    # ---------------------------------------------------------------- jobs

    def _create_job(self, model: str, body: Any) -> dict[str, Any]:
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise _ApiError(400, "* batch: required field is missing")
        source = _get(batch, "input_config")
        if not isinstance(source, dict):
            raise _ApiError(400, "* batch.input_config: required field is missing")
        keys: list[str] = []
        from_file = False
        file_name = _get(source, "file_name")
        if isinstance(file_name, str):
            requests, keys = self._read_input_file(file_name)
            from_file = True
        else:
            wrapped = source.get("requests")
            inner = wrapped.get("requests") if isinstance(wrapped, dict) else None
            if not isinstance(inner, list) or not inner:
                raise _ApiError(400, "* batch.input_config.requests.requests: must not be empty")
            requests = [r.get("request") if isinstance(r, dict) else None for r in inner]
            keys = [str(i) for i in range(len(requests))]
        limits_for(model)  # an unknown model id still gets the default limits, as elsewhere
        with self._lock:
            nxt, self._batch_next = self._batch_next, {}
            job = _Job(
                id=f"fakebatch{next(self._ids):06d}",
                model=model,
                display_name=str(_get(batch, "display_name") or ""),
                created=time.monotonic(),
                turnaround=self.batch_turnaround,
                requests=requests,
                keys=keys,
                from_file=from_file,
                fail_items=nxt.get("fail_items", frozenset()),
                end=nxt.get("end", ""),
                message=nxt.get("message", ""),
                item_message=nxt.get("item_message", ""),
            )
            self._batch_jobs[job.id] = job
            self._batch_created += 1
        return self._operation(job)

    def _read_input_file(self, name: str) -> tuple[list[Any], list[str]]:
        with self._lock:
            stored = self._files.get(name.removeprefix("files/"))
        if stored is None or not stored.done:
            raise _ApiError(404, f"File {name} not found.")
        requests: list[Any] = []
        keys: list[str] = []
        for n, line in enumerate(bytes(stored.data).decode("utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise _ApiError(400, f"line {n + 1} of {name} is not JSON") from None
            if not isinstance(row, dict):
                raise _ApiError(400, f"line {n + 1} of {name} is not a JSON object")
            keys.append(str(row.get("key", n)))
            requests.append(row.get("request"))
        if not requests:
            raise _ApiError(400, f"{name} holds no requests")
        return requests, keys

    def _job(self, job_id: str) -> _Job:
        with self._lock:
            job = self._batch_jobs.get(job_id)
        if job is None:
            raise _ApiError(404, f"Batch batches/{job_id} not found.")
        return job

    def _state(self, job: _Job) -> str:
        age = time.monotonic() - job.created
        if age < job.turnaround / 2:
            return "PENDING"
        if age < job.turnaround:
            return "RUNNING"
        return job.end or "SUCCEEDED"

    def _operation(self, job: _Job) -> dict[str, Any]:
        state = self._state(job)
        name = f"batches/{job.id}"
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch",
            "name": name,
            "model": f"models/{job.model}",
            "displayName": job.display_name,
            "createTime": job.create_time,
            "updateTime": _stamp(time.time()),
            "state": f"BATCH_STATE_{state}",
            "batchStats": {"requestCount": str(len(job.requests))},
        }
        answer: dict[str, Any] = {"name": name, "metadata": metadata}
        if state in ("PENDING", "RUNNING"):
            return answer
        answer["done"] = True
        metadata["endTime"] = metadata["updateTime"]
        if state != "SUCCEEDED":
            answer["error"] = {"code": 400 if state == "FAILED" else 499, "message": job.message}
            return answer
        results = self._results(job)
        failed = sum(1 for r in results if "error" in r)
        metadata["batchStats"].update(
            successfulRequestCount=str(len(results) - failed), failedRequestCount=str(failed)
        )
        if job.from_file:
            metadata["output"] = {"responsesFile": job.responses_file}
        else:
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": results}}
        answer["response"] = {"@type": metadata["@type"] + "Output", **metadata["output"]}
        return answer

    def _results(self, job: _Job) -> list[dict[str, Any]]:
        """The job's per-item answers, computed (and billed) once, when it first reports
        success."""
        with self._batch_compute:
            if job.results is None:
                job.results = self._compute(job)
            return job.results

    def _compute(self, job: _Job) -> list[dict[str, Any]]:
        limits = limits_for(job.model)
        results: list[dict[str, Any]] = []
        billed: dict[str, int] = {}
        answered = 0
        for i, req in enumerate(job.requests):
            if i in job.fail_items:
                results.append({"error": {"code": 400, "message": job.item_message}})
                continue
            try:
                vec, _, tokens = self._one(limits, req, f"requests[{i}].")
            except _ApiError as err:
                results.append({"error": {"code": err.code, "message": err.message}})
                continue
            answered += 1
            for k, n in tokens.items():
                billed[k] = billed.get(k, 0) + n
            results.append(
                {
                    "response": {
                        "embedding": {"values": vec},
                        "tokenCount": str(sum(tokens.values())),
                    }
                }
            )
        self._bill_batch(limits.model, answered, billed)
        if job.from_file:
            lines = []
            for key, result in zip(job.keys, results, strict=True):
                lines.append(_encode({"key": key, **result}))
            with self._lock:
                file_id = f"fake{next(self._ids):06d}"
                data = bytearray("\n".join(lines).encode() + b"\n")
                self._files[file_id] = _StoredFile(
                    id=file_id,
                    mime_type="application/jsonl",
                    display_name=f"{job.id}-responses",
                    size=len(data),
                    polls_left=0,
                    version="v1beta",
                    data=data,
                    done=True,
                )
            job.responses_file = f"files/{file_id}"
        return results
