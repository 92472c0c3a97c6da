"""FakeGeminiServer's Batch API, driven by the real google-genai SDK: job creation, the states
a job goes through, results inline or in a file to download, per-item errors inside a job that
succeeds, jobs that end failed, expired or cancelled, and what was billed."""

from __future__ import annotations

import io
import json
import time
import warnings
from typing import Any

import numpy as np
import pytest

from mmembed.content import Modality
from mmembed.errors import ConfigurationError
from mmembed.testing import FakeGeminiServer

MODEL = "gemini-embedding-2"


def contents(*texts: str) -> list[Any]:
    from google.genai import types

    return [types.Content(parts=[types.Part(text=t)]) for t in texts]


def create_inline(server: FakeGeminiServer, *texts: str, dimensions: int = 128) -> Any:
    from google.genai import types

    client = server.client()
    src = types.EmbeddingsBatchJobSource(
        inlined_requests=types.EmbedContentBatch(
            contents=contents(*texts),
            config=types.EmbedContentConfig(output_dimensionality=dimensions),
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK marks create_embeddings experimental
        return client.batches.create_embeddings(model=MODEL, src=src, config={"display_name": "t"})


def interactive(server: FakeGeminiServer, *texts: str) -> list[list[float]]:
    from google.genai import types

    reply = server.client().models.embed_content(
        model=MODEL,
        contents=contents(*texts),
        config=types.EmbedContentConfig(output_dimensionality=128),
    )
    return [e.values for e in reply.embeddings]


def test_a_job_goes_pending_running_succeeded_with_inline_results() -> None:
    with FakeGeminiServer(batch_turnaround=0.6) as server:
        job = create_inline(server, "alpha", "beta")
        assert job.name.startswith("batches/")
        assert job.state.name == "JOB_STATE_PENDING"
        assert job.display_name == "t"
        client = server.client()
        time.sleep(0.35)
        assert client.batches.get(name=job.name).state.name == "JOB_STATE_RUNNING"
        time.sleep(0.35)
        done = client.batches.get(name=job.name)
        assert done.state.name == "JOB_STATE_SUCCEEDED"
        got = done.dest.inlined_embed_content_responses
        assert [len(r.response.embedding.values) for r in got] == [128, 128]
        # the same vectors as the interactive endpoint, in order
        want = interactive(server, "alpha", "beta")
        for row, expected in zip(got, want, strict=True):
            assert np.allclose(row.response.embedding.values, expected)
        assert server.batch_creations == 1
        assert server.batch_states() == {job.name: "SUCCEEDED"}
        assert server.batch_items(job.name) == 2


def test_failed_items_are_errors_inside_a_job_that_succeeds() -> None:
    with FakeGeminiServer() as server:
        server.fail_batch_items([0, 2], message="bad item")
        job = create_inline(server, "a", "b", "c")
        done = server.client().batches.get(name=job.name)
        assert done.state.name == "JOB_STATE_SUCCEEDED"
        rows = done.dest.inlined_embed_content_responses
        assert [(r.error is not None, r.response is not None) for r in rows] == [
            (True, False),
            (False, True),
            (True, False),
        ]
        assert rows[0].error.message == "bad item"
        # the knob applies to one job only
        again = create_inline(server, "a", "b", "c")
        rows = server.client().batches.get(name=again.name).dest.inlined_embed_content_responses
        assert all(r.response is not None for r in rows)


def test_an_item_over_the_limits_fails_alone() -> None:
    with FakeGeminiServer() as server:
        job = create_inline(server, "fine", "x " * 40_000)
        rows = server.client().batches.get(name=job.name).dest.inlined_embed_content_responses
        assert rows[0].response is not None
        assert "exceeds the maximum number of tokens" in rows[1].error.message


def test_a_file_of_requests_gets_a_results_file_to_download() -> None:
    with FakeGeminiServer() as server:
        client = server.client()
        lines = [
            json.dumps({"key": f"k{i}", "request": {"content": {"parts": [{"text": t}]}}})
            for i, t in enumerate(["one", "two"])
        ]
        uploaded = client.files.upload(
            file=io.BytesIO("\n".join(lines).encode()), config={"mime_type": "application/jsonl"}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            job = client.batches.create_embeddings(model=MODEL, src={"file_name": uploaded.name})
        done = client.batches.get(name=job.name)
        assert done.state.name == "JOB_STATE_SUCCEEDED"
        assert done.dest.file_name
        assert done.dest.inlined_embed_content_responses is None
        rows = [json.loads(x) for x in client.files.download(file=done.dest.file_name).splitlines()]
        assert [r["key"] for r in rows] == ["k0", "k1"]
        assert len(rows[0]["response"]["embedding"]["values"]) == 3072  # the model's default


@pytest.mark.parametrize("state", ["FAILED", "EXPIRED", "CANCELLED"])
def test_a_job_can_end_without_results(state: str) -> None:
    with FakeGeminiServer() as server:
        server.end_next_batch(state)
        job = create_inline(server, "a")
        done = server.client().batches.get(name=job.name)
        assert done.state.name == f"JOB_STATE_{state}"
        assert done.dest is None
        assert server.usage.batch_items == 0


def test_cancel_a_pending_job_and_list_jobs() -> None:
    with FakeGeminiServer(batch_turnaround=30) as server:
        job = create_inline(server, "a")
        client = server.client()
        client.batches.cancel(name=job.name)
        assert client.batches.get(name=job.name).state.name == "JOB_STATE_CANCELLED"
        assert [j.name for j in client.batches.list()] == [job.name]


def test_batch_items_are_billed_apart_at_half_price() -> None:
    with FakeGeminiServer() as server:
        interactive(server, "the same words here")
        job = create_inline(server, "the same words here")
        server.client().batches.get(name=job.name)
        usage = server.usage
        assert usage.items == 1
        assert usage.batch_items == 1
        assert usage.batch_tokens_by_modality == {
            Modality.TEXT: usage.tokens_by_modality[Modality.TEXT]
        }
        assert usage.batch_cost_usd == pytest.approx(usage.cost_usd / 2)


def test_unknown_jobs_and_bad_knobs() -> None:
    from google.genai import errors

    with FakeGeminiServer() as server:
        with pytest.raises(errors.ClientError) as caught:
            server.client().batches.get(name="batches/nope")
        assert caught.value.code == 404
        with pytest.raises(ConfigurationError):
            server.end_next_batch("SUCCEEDED")
        with pytest.raises(ConfigurationError):
            server.fail_batch_items([-1])
    with pytest.raises(ConfigurationError):
        FakeGeminiServer(batch_turnaround=-1)


def test_item_failures_and_an_end_state_can_be_asked_of_one_job() -> None:
    with FakeGeminiServer() as server:
        server.fail_batch_items([0], message="bad item")
        server.end_next_batch("FAILED", message="quota for batch jobs exceeded")
        job = create_inline(server, "a", "b")
        done = server.client().batches.get(name=job.name)
        assert done.state.name == "JOB_STATE_FAILED"
        assert done.error is None or "quota" in str(done.error)
        states = server.batch_states()
        assert states[job.name] == "FAILED"
