"""Batch mode (``Index.add(batch=True)``, ``mmembed index --batch``, ``mmembed jobs``) with the
real google-genai SDK against FakeGeminiServer's Batch API."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mmembed._batch
import mmembed.embedders.gemini._batch
from mmembed import Content, Image, Index
from mmembed._batch import JobBook
from mmembed.cli import ExitCode, main
from mmembed.content import Part, Text
from mmembed.embedders.gemini import GeminiEmbedder
from mmembed.embedders.gemini._batch import BatchClient
from mmembed.errors import ConfigurationError, InputLimitError
from mmembed.protocols import Chunk
from mmembed.testing import FakeEmbedder, FakeGeminiServer
from mmembed.testing.media import make_audio, make_image, make_pdf

ROOT = Path(__file__).resolve().parent.parent
DIMS = 128


def gemini(server: FakeGeminiServer) -> GeminiEmbedder:
    return GeminiEmbedder(dimensions=DIMS, client=server.client())


def notes(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note{i}.txt").write_text(f"note {i} about topic{i}, cells and word{i}")
    return folder


def vectors(index_dir: Path) -> dict[str, np.ndarray]:
    db = sqlite3.connect(index_dir / "catalog.sqlite")
    rows = db.execute("SELECT id, vector FROM chunks").fetchall()
    db.close()
    return {str(i): np.frombuffer(v, dtype="<f4") for i, v in rows}


def test_a_2000_item_mixed_run_gives_the_interactive_vectors_at_half_the_price(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(20):  # distinct lines: every chunk is an item of its own
        lines = [f"Line {k} of text {i}: step {k * 7 + i} of the cycle." for k in range(240)]
        (folder / f"text{i:02d}.md").write_text("\n".join(lines))
    for i in range(24):
        (folder / f"image{i:02d}.png").write_bytes(make_image("PNG", (40, 40), seed=i, noise=True))
    for i in range(3):
        make_pdf(4, path=folder / f"deck{i}.pdf")
    (folder / "chime.wav").write_bytes(make_audio(seconds=2.0, sample_rate=8000))
    options = {"text": {"size": 120, "overlap": 0, "unit": "chars"}}
    # several jobs; those that carry media go as an uploaded JSONL file, the others inline
    monkeypatch.setattr(mmembed._batch, "JOB_ITEMS", 800)
    monkeypatch.setattr(mmembed.embedders.gemini._batch, "INLINE_JOB_BYTES", 2_000)
    with FakeGeminiServer(keep_bodies=False) as server:
        with Index(tmp_path / "now", embedder=gemini(server), chunk_options=options) as now:
            interactive = now.add(folder)
        assert interactive.ok
        assert interactive.chunks >= 2000
        calls_before = server.usage.calls
        items = server.usage.items
        assert items >= 2000
        with Index(tmp_path / "later", embedder=gemini(server), chunk_options=options) as later:
            batch = later.add(folder, batch=True, wait=True, poll_seconds=0.05)
            assert later.add(folder, batch=True).unchanged  # nothing left to do
        usage = server.usage
    assert batch.ok
    assert batch.pending == ()
    assert sorted(batch.added) == sorted(interactive.added)
    assert batch.chunks == interactive.chunks
    # nothing interactive, every item exactly once, in several jobs
    assert usage.calls == calls_before
    assert usage.batch_items == items
    assert server.batch_creations == batch.calls == len(batch.submitted) >= 3
    assert any(server.batch_items(name) for name in batch.submitted)
    kinds = {r.endpoint for r in server.requests}
    assert {"batches.create", "batches.get", "files.upload", "files.download"} <= kinds
    # the same vectors, chunk by chunk
    want, got = vectors(tmp_path / "now"), vectors(tmp_path / "later")
    assert want.keys() == got.keys()
    for key, vector in want.items():
        np.testing.assert_allclose(got[key], vector, atol=1e-6)
    # the reported cost is the batch price: half of the interactive one
    assert interactive.cost_usd
    assert batch.cost_usd
    assert batch.cost_usd == pytest.approx(interactive.cost_usd / 2, rel=0.02)
    assert batch.cost_usd == pytest.approx(usage.batch_cost_usd, rel=0.02)
    # per modality, at the batch price
    assert set(batch.cost_by_modality) == {"text", "image", "pdf", "audio"}
    assert sum(usd for _, usd in batch.cost_by_modality.values()) == pytest.approx(batch.cost_usd)
    assert "batch price of the results collected: audio" in str(batch)
    assert (
        batch.to_dict()["cost_by_modality"]["text"]["tokens"] == batch.cost_by_modality["text"][0]
    )


def test_a_run_returns_at_once_and_the_next_one_collects(tmp_path: Path) -> None:
    folder = notes(tmp_path / "notes")
    with FakeGeminiServer(batch_turnaround=0.6) as server:
        with Index(tmp_path / "ix", embedder=gemini(server)) as index:
            first = index.add(folder, batch=True)
            assert first.added == ()
            assert len(first.pending) == 6
            assert first.failed == ()
            assert index.info()["failed_files"] == 0  # waiting is not failing
            [job] = first.jobs
            assert job.state == "PENDING"
            assert "again" in job.advice
            assert "waiting" in str(first)
            # before the job ends, a second run submits nothing more
            second = index.add(folder, batch=True)
            assert second.submitted == ()
            assert len(second.pending) == 6
            time.sleep(0.7)
            jobs = index.jobs()
            assert [j.state for j in jobs] == ["SUCCEEDED"]
            assert jobs[0].collected
            assert jobs[0].cost_usd > 0
            third = index.add(folder, batch=True)
            assert len(third.added) == 6
            assert third.pending == ()
            assert len(index) == 6
            assert index.search("topic3", k=1)[0].source.endswith("note3.txt")
        assert server.batch_creations == 1


def test_three_failed_items_are_resubmitted_exactly(tmp_path: Path) -> None:
    folder = notes(tmp_path / "notes", n=20)
    with FakeGeminiServer() as server:
        server.fail_batch_items([3, 10, 17], message="Internal error encountered.")
        with Index(tmp_path / "ix", embedder=gemini(server)) as index:
            first = index.add(folder, batch=True)
            second = index.add(folder, batch=True)
            [job] = [j for j in second.jobs if j.name == first.submitted[0]]
            assert job.failed_items == 3
            assert "Internal error" in job.message
            assert len(second.added) == 17
            assert len(second.pending) == 3
            [again] = second.submitted
            assert server.batch_items(again) == 3
            # exactly the items that failed
            book = JobBook(index._catalog.path)
            by_name = {j.name: j.id for j in book.jobs()}
            hashes = [h for h, _, _ in book.items(by_name[first.submitted[0]])]
            assert [h for h, _, _ in book.items(by_name[again])] == [hashes[i] for i in (3, 10, 17)]
            third = index.add(folder, batch=True)
            assert len(third.added) == 3
            assert len(index) == 20
        assert server.batch_creations == 2
        assert server.usage.batch_items == 20


def test_an_expired_job_is_reported_with_what_to_do_and_resubmitted_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = notes(tmp_path / "notes", n=4)
    ix = tmp_path / "ix"
    with FakeGeminiServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        server.end_next_batch("EXPIRED")
        with Index(ix, embedder=gemini(server)) as index:
            index.add(folder, batch=True)
            report = index.add(folder, batch=True)
            assert report.submitted == ()  # its items are not resubmitted unasked
            assert len(report.pending) == 4
            [job] = report.jobs
            assert job.state == "EXPIRED"
            assert "--resubmit" in job.advice
            assert "mmembed index DIR" in job.advice
        assert main(["jobs", "--index", str(ix)]) == ExitCode.OK
        out = capsys.readouterr().out
        assert "EXPIRED, 4 items" in out
        assert "--resubmit" in out
        assert main(["jobs", "--index", str(ix), "--json"]) == ExitCode.OK
        [shown] = json.loads(capsys.readouterr().out)
        assert shown["state"] == "EXPIRED"
        assert "--resubmit" in shown["advice"]
        with Index(ix, embedder=gemini(server)) as index:
            again = index.add(folder, batch=True, resubmit=True, wait=True, poll_seconds=0.05)
            assert len(again.added) == 4
            assert [j.state for j in index.jobs()] == ["EXPIRED", "SUCCEEDED"]
            assert all(j.collected for j in index.jobs())
        assert server.batch_creations == 2


def test_a_crash_between_creating_a_job_and_recording_it_does_not_resubmit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = notes(tmp_path / "notes")

    def crash(self: JobBook, job_id: str, name: str) -> None:
        raise KeyboardInterrupt

    with FakeGeminiServer() as server:
        with Index(tmp_path / "ix", embedder=gemini(server)) as index:
            with monkeypatch.context() as patch:
                patch.setattr(JobBook, "created", crash)
                with pytest.raises(KeyboardInterrupt):
                    index.add(folder, batch=True)
            assert server.batch_creations == 1
            [job] = JobBook(index._catalog.path).jobs()
            assert job.state == "SUBMITTING"
            assert job.name is None
            report = index.add(folder, batch=True)
            assert len(report.added) == 6  # found by its id, collected
        assert server.batch_creations == 1


def test_a_job_the_service_never_created_frees_its_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = notes(tmp_path / "notes")

    def refused(self: BatchClient, items: object, *, task: object, job_id: str) -> str:
        raise KeyboardInterrupt

    with FakeGeminiServer() as server:
        with Index(tmp_path / "ix", embedder=gemini(server)) as index:
            with monkeypatch.context() as patch:
                patch.setattr(BatchClient, "submit", refused)
                with pytest.raises(KeyboardInterrupt):
                    index.add(folder, batch=True)
            assert server.batch_creations == 0
            report = index.add(folder, batch=True, wait=True, poll_seconds=0.05)
            assert len(report.added) == 6
            assert [j.state for j in index.jobs()] == ["SUCCEEDED"]
        assert server.batch_creations == 1


def _cli_env(server: FakeGeminiServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_API_KEY"}
    env.update(server.env())
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_kill_9_after_submitting_then_a_restart_collects_without_resubmitting(
    tmp_path: Path,
) -> None:
    folder = notes(tmp_path / "notes", n=12)
    ix = tmp_path / "ix"
    with FakeGeminiServer(batch_turnaround=4.0) as server:
        env = _cli_env(server)
        cmd = [sys.executable, "-m", "mmembed", "index", str(folder), "--index", str(ix)]
        waiting = [*cmd, "--batch", "--wait", "--poll", "0.1", "--json"]
        proc = subprocess.Popen(
            waiting, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while server.batch_creations < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert server.batch_creations == 1
        [name] = server.batch_states()
        assert server.batch_states()[name] in ("PENDING", "RUNNING")  # killed while it ran

        done = subprocess.run(
            waiting, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["batch"] is True
        assert len(report["added"]) == 12
        assert report["pending"] == []
        assert report["submitted"] == []
        assert server.batch_creations == 1  # collected, not submitted again
        assert server.usage.batch_items == 12
        assert server.usage.calls == 0
        info = subprocess.run(
            [sys.executable, "-m", "mmembed", "info", "--index", str(ix), "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(info.stdout)["chunks"] == 12


class SevenImages:
    """A chunker that puts seven images in one item: over the model's six per item."""

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        assert isinstance(source, Image)
        yield Chunk(Content([source] * 7), "x")


def test_bad_input_is_refused_before_any_job_with_the_interactive_message(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "a.png").write_bytes(make_image("PNG", (32, 32), seed=1))
    with FakeGeminiServer() as server:
        with Index(tmp_path / "now", embedder=gemini(server), chunker=SevenImages()) as index:
            interactive = index.add(folder)
        with Index(tmp_path / "batch", embedder=gemini(server), chunker=SevenImages()) as index:
            batch = index.add(folder, batch=True, wait=True, poll_seconds=0.05)
        [wanted] = interactive.failed
        [got] = batch.failed
        assert got.reason == wanted.reason
        assert "6" in got.reason
        assert batch.submitted == ()
        assert batch.pending == ()
        assert server.batch_creations == 0
        client = BatchClient(gemini(server))
        with pytest.raises(InputLimitError, match="chunk"):
            client.submit([Text("word " * 40_000)], task=mmembed.Task.DOCUMENT, job_id="x")
        assert server.batch_creations == 0


def test_batch_mode_needs_gemini_on_the_developer_api(tmp_path: Path) -> None:
    folder = notes(tmp_path / "notes", n=1)
    with Index(tmp_path / "fake", embedder=FakeEmbedder(16)) as index:
        with pytest.raises(ConfigurationError, match="Batch API"):
            index.add(folder, batch=True)
        with pytest.raises(ConfigurationError, match="batch=True"):
            index.add(folder, wait=True)
    with FakeGeminiServer() as server:
        vertex = GeminiEmbedder(dimensions=DIMS, client=server.client(vertexai=True), batch_size=1)
        with pytest.raises(ConfigurationError, match="Developer API"):
            BatchClient(vertex)
        nocache = Index(tmp_path / "nocache", embedder=gemini(server), cache=False)
        with nocache, pytest.raises(ConfigurationError, match="cache"):
            nocache.add(folder, batch=True)
        assert server.batch_creations == 0


def test_the_dry_run_shows_the_batch_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = notes(tmp_path / "notes")
    (folder / "pic.png").write_bytes(make_image("PNG", (32, 32), seed=2))
    with FakeGeminiServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        with Index(tmp_path / "ix", embedder=gemini(server)) as index:
            now = index.add(folder, dry_run=True)
            later = index.add(folder, dry_run=True, batch=True)
        assert now.cost_usd
        assert later.cost_usd
        assert later.cost_usd == pytest.approx(now.cost_usd / 2)
        for a, b in zip(now.plan, later.plan, strict=True):
            assert a.label == b.label
            assert b.cost_usd == pytest.approx((a.cost_usd or 0) / 2)
        ix = str(tmp_path / "cli")
        assert main(["index", str(folder), "--index", ix, "--dry-run", "--json"]) == 0
        full = json.loads(capsys.readouterr().out)["cost_usd"]
        assert main(["index", str(folder), "--index", ix, "--dry-run", "--batch", "--json"]) == 0
        half = json.loads(capsys.readouterr().out)["cost_usd"]
        assert half == pytest.approx(full / 2, rel=1e-3)
        assert server.batch_creations == 0


def test_the_cli_submits_returns_and_collects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = notes(tmp_path / "notes", n=3)
    ix = str(tmp_path / "ix")
    with FakeGeminiServer(batch_turnaround=0.5) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        assert main(["index", str(folder), "--index", ix, "--wait"]) == ExitCode.USAGE
        assert "--batch" in capsys.readouterr().err
        code = main(["index", str(folder), "--index", ix, "--batch", "--dimensions", "128"])
        assert code == ExitCode.OK
        out = capsys.readouterr().out
        assert "3 files waiting for results; 1 jobs submitted" in out
        assert "PENDING" in out
        assert main(["jobs", "--index", ix, "--no-refresh"]) == ExitCode.OK
        assert "PENDING, 3 items" in capsys.readouterr().out
        code = main(["index", str(folder), "--index", ix, "--batch", "--wait", "--poll", "0.05"])
        assert code == ExitCode.OK
        out, err = capsys.readouterr()
        assert out.startswith("added 3")
        assert "batch jobs: 1 pending" in err or "batch jobs: 1 running" in err
        assert server.batch_creations == 1
        assert server.usage.calls == 0


def test_media_are_submitted_during_the_pass_so_memory_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(5):
        (folder / f"p{i}.png").write_bytes(make_image("PNG", (32, 32), seed=i, noise=True))
    (folder / "copy.png").write_bytes((folder / "p0.png").read_bytes())  # the same item twice
    monkeypatch.setattr(mmembed._batch, "JOB_BYTES", 1)  # every round's media: a job at once
    with FakeGeminiServer() as server:
        with Index(tmp_path / "ix", embedder=gemini(server), batch_size=1) as index:
            report = index.add(folder, batch=True, wait=True, poll_seconds=0.05)
        assert len(report.added) == 6
        assert server.batch_creations == 5  # one job a round, the copy in none
        assert sum(server.batch_items(name) for name in report.submitted) == 5
        assert server.usage.batch_items == 5


def test_media_too_large_to_send_inline_are_uploaded_first(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.png").write_bytes(make_image("PNG", (64, 64), seed=i, noise=True))
    with FakeGeminiServer() as server:

        def small(server: FakeGeminiServer) -> GeminiEmbedder:
            return GeminiEmbedder(dimensions=DIMS, client=server.client(), inline_bytes_limit=2000)

        with Index(tmp_path / "now", embedder=small(server)) as index:
            assert len(index.add(folder).added) == 3
        uploads = len(server.uploaded_files)
        assert uploads == 3
        with Index(tmp_path / "later", embedder=small(server)) as index:
            report = index.add(folder, batch=True, wait=True, poll_seconds=0.05)
        assert len(report.added) == 3
        assert len(server.uploaded_files) == uploads + 3  # uploaded again by this embedder
    want, got = vectors(tmp_path / "now"), vectors(tmp_path / "later")
    assert want.keys() == got.keys()
    for key, vector in want.items():
        np.testing.assert_allclose(got[key], vector, atol=1e-6)


def test_a_job_the_service_forgot_is_reported_failed(tmp_path: Path) -> None:
    folder = notes(tmp_path / "notes", n=2)
    with (
        FakeGeminiServer(batch_turnaround=30) as server,
        Index(tmp_path / "ix", embedder=gemini(server)) as index,
    ):
        [name] = index.add(folder, batch=True).submitted
        server.client().batches.delete(name=name)  # gone from the service
        [job] = index.jobs()
        assert job.state == "FAILED"
        assert "no longer knows" in job.message
        assert "--resubmit" in job.advice
        again = index.add(folder, batch=True, resubmit=True)
        assert len(again.submitted) == 1
        assert again.submitted[0] != name
