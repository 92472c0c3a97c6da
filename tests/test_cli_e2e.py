"""The ``mmembed`` command end to end, against FakeGeminiServer through the SDK's environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmembed._lock import WriterLock
from mmembed.cli import ExitCode, main
from mmembed.testing import FakeGeminiServer
from mmembed.testing.media import make_audio, make_image

ROOT = Path(__file__).resolve().parent.parent

NOTES = {
    "krebs.md": "The Krebs cycle runs in the mitochondria and releases carbon dioxide.",
    "photosynthesis.md": "Photosynthesis in the chloroplast captures light to build sugar.",
    "logistics.txt": "The midterm exam is on Friday in the main lecture hall.",
}


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    for name, text in NOTES.items():
        (root / name).write_text(text)
    (root / "diagram.png").write_bytes(make_image("PNG", (48, 48), noise=True, seed=3))
    (root / "other.png").write_bytes(make_image("PNG", (48, 48), noise=True, seed=4))
    (root / "chime.wav").write_bytes(make_audio(seconds=1.0, sample_rate=8000))
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_reindex_change_delete(
    tmp_path: Path, course: Path, server: FakeGeminiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = str(tmp_path / "ix")
    code, out, err = run(capsys, "index", str(course), "--index", ix, "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)  # --json: only JSON on stdout
    assert len(report["added"]) == 6
    assert report["failed"] == []
    assert report["calls"] == len(server.embed_requests) >= 1
    assert "using Gemini" in err

    code, out, _ = run(
        capsys, "search", "where does the Krebs cycle run?", "--index", ix, "--json", "-k", "3"
    )
    assert code == ExitCode.OK
    hits = json.loads(out)
    assert len(hits) == 3
    assert hits[0]["source"].endswith("krebs.md")
    assert {"score", "source", "span", "uri"} <= hits[0].keys()

    code, out, _ = run(
        capsys, "search", "--image", str(course / "diagram.png"), "--index", ix, "--json", "-k", "1"
    )
    assert code == ExitCode.OK
    hit = json.loads(out)[0]
    assert hit["source"].endswith("diagram.png")
    assert hit["modality"] == "image"
    assert hit["score"] == pytest.approx(1.0, abs=1e-4)

    # nothing changed: no embedding request at all
    before = len(server.embed_requests)
    code, out, _ = run(capsys, "index", str(course), "--index", ix, "--json")
    assert code == ExitCode.OK
    again = json.loads(out)
    assert len(again["unchanged"]) == 6
    assert again["added"] == []
    assert again["calls"] == 0
    assert len(server.embed_requests) == before

    # one changed file, one deleted: only the changed one is embedded
    (course / "logistics.txt").write_text("Office hours moved to Thursday afternoon.")
    (course / "other.png").unlink()
    code, out, _ = run(capsys, "index", str(course), "--index", ix, "--json")
    changed = json.loads(out)
    assert [Path(p).name for p in changed["replaced"]] == ["logistics.txt"]
    assert [Path(p).name for p in changed["removed"]] == ["other.png"]
    assert sum(r.items for r in server.embed_requests[before:]) == 1

    code, out, _ = run(capsys, "search", "office hours Thursday", "--index", ix, "--json")
    sources = [Path(h["source"]).name for h in json.loads(out)]
    assert sources[0] == "logistics.txt"
    assert "other.png" not in sources

    code, out, _ = run(capsys, "info", "--index", ix, "--json")
    info = json.loads(out)
    assert info["files"] == 5
    assert info["chunks"] >= 5

    code, out, _ = run(capsys, "remove", str(course / "krebs.md"), "--index", ix)
    assert code == ExitCode.OK
    assert "removed" in out
    code, out, _ = run(capsys, "search", "Krebs cycle", "--index", ix, "--json")
    assert all(not h["source"].endswith("krebs.md") for h in json.loads(out))
    assert (course / "krebs.md").exists()


def test_plain_output_is_a_table(
    tmp_path: Path, course: Path, server: FakeGeminiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = str(tmp_path / "ix")
    assert run(capsys, "index", str(course), "--index", ix)[0] == ExitCode.OK
    code, out, _ = run(capsys, "search", "Krebs", "cycle", "--index", ix, "-k", "2")
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["#", "score", "source"]
    assert len(lines) == 3
    assert "krebs.md" in lines[1]
    _code, out, _ = run(capsys, "info", "--index", ix)
    assert "files      6" in out


def test_dry_run_counts_and_writes_nothing(
    tmp_path: Path, course: Path, server: FakeGeminiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = tmp_path / "ix"
    code, out, _ = run(capsys, "index", str(course), "--index", str(ix), "--dry-run", "--json")
    assert code == ExitCode.OK
    plan = json.loads(out)
    assert plan["dry_run"] is True
    assert len(plan["added"]) == 6
    assert plan["chunks"] >= 6
    assert plan["calls"] == 1
    assert plan["cost_usd"] > 0
    assert not ix.exists()
    assert server.embed_requests == []


def test_exit_codes_and_one_line_errors(
    tmp_path: Path, course: Path, server: FakeGeminiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = str(tmp_path / "ix")
    code, _, err = run(capsys, "search", "anything", "--index", ix)
    assert code == ExitCode.INDEX
    assert err.count("\n") == 1
    assert "mmembed index" in err

    with pytest.raises(SystemExit) as usage:
        main(["search", "-k", "many"])
    assert usage.value.code == ExitCode.USAGE
    capsys.readouterr()

    assert run(capsys, "index", str(course), "--index", ix)[0] == ExitCode.OK
    code, _, err = run(capsys, "search", "--image", str(course / "krebs.md"), "--index", ix)
    assert code == ExitCode.USAGE
    assert "not image" in err

    code, _, err = run(capsys, "index", str(course), "--index", ix, "--dimensions", "256")
    assert code == ExitCode.INDEX
    assert "dimensions" in err

    with WriterLock(Path(ix) / "lock"):
        code, _, err = run(capsys, "index", str(course), "--index", ix)
    assert code == ExitCode.LOCKED
    assert "another mmembed process" in err

    code, _, err = run(capsys, "remove", str(tmp_path / "nope.md"), "--index", ix)
    assert code == ExitCode.PARTIAL


def test_bad_key_is_one_clear_line(
    tmp_path: Path,
    course: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeGeminiServer(api_key="the-right-key") as fake:
        for key, value in fake.env(api_key="a-wrong-key").items():
            monkeypatch.setenv(key, value)
        code, _, err = run(capsys, "index", str(course), "--index", str(tmp_path / "ix"))
    assert code == ExitCode.EMBEDDING
    assert err.strip().count("\n") <= 1
    assert "a-wrong-key" not in err
    assert "Traceback" not in err


def test_no_embedder_says_what_to_do(
    tmp_path: Path, course: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "index",
        str(course),
        "--index",
        str(tmp_path / "ix"),
        "--model",
        "no-such-local-model",
    )
    assert code == ExitCode.SETUP
    assert "GEMINI_API_KEY" in err
    assert 'pip install "mmembed[local]"' in err


def _cli_env(server: FakeGeminiServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY",)}
    env.update(server.env())
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_kill_9_mid_run_then_resume_keeps_every_file_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    n = 40
    for i in range(n):
        (folder / f"note{i:02d}.txt").write_text(f"note number {i} about topic{i} and word{i}")
    ix = tmp_path / "ix"
    with FakeGeminiServer(latency=0.25) as server:
        env = _cli_env(server)
        cmd = [
            sys.executable,
            "-m",
            "mmembed",
            "index",
            str(folder),
            "--index",
            str(ix),
            "--batch-size",
            "4",
            "--json",
        ]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while len(server.embed_requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        first_items = sum(r.items for r in server.embed_requests)
        assert first_items < n  # really killed mid-run

        server.latency = 0.0
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert 0 < len(report["added"]) < n
        assert len(report["added"]) + len(report["unchanged"]) == n
        # vectors that came back before the kill are not paid for again
        assert sum(r.items for r in server.embed_requests) <= n + 4

        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        code, out, _ = run(capsys, "info", "--index", str(ix), "--json")
        assert code == ExitCode.OK
        counts = json.loads(out)
        assert counts["files"] == n
        assert counts["chunks"] == n

        code, out, _ = run(
            capsys, "search", "anything", "--index", str(ix), "--json", "-k", str(2 * n)
        )
        assert code == ExitCode.OK
        sources = [h["source"] for h in json.loads(out)]
        assert len(sources) == n
        assert len(set(sources)) == n  # every file present exactly once


def test_the_shipped_examples_with_gemini_every_modality(
    tmp_path: Path, server: FakeGeminiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = ROOT / "examples"
    ix = str(tmp_path / "ix")
    code, out, err = run(capsys, "index", str(examples), "--index", ix, "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert len(report["added"]) == 8
    assert report["skipped"] == []
    assert report["failed"] == []

    code, out, _ = run(capsys, "info", "--index", ix, "--json")
    by_modality = json.loads(out)["chunks_by_modality"]
    assert set(by_modality) == {"text", "pdf", "image", "audio", "video"}

    # the fake server's media vectors come from the bytes, and chunks are re-encoded, so only
    # the image (sent as it is) is its own nearest neighbour; the others are checked by kind
    for flag, name, modality, kind in (
        ("--video", "lecture-clip.mp4", "video", "time"),
        ("--audio", "lecture-intro.wav", "audio", "time"),
        ("--pdf", "slides.pdf", "pdf", "pages"),
        ("--image", "krebs-cycle-diagram.png", "image", None),
    ):
        code, out, _ = run(
            capsys,
            "search",
            flag,
            str(examples / name),
            "--index",
            ix,
            "--json",
            "-k",
            "1",
            "--modality",
            modality,
        )
        assert code == ExitCode.OK
        top = json.loads(out)[0]
        assert top["source"].endswith(name)
        assert (top["span"] or {}).get("type") == kind
        if kind == "time":
            assert "#t=0," in top["uri"]
    code, out, _ = run(
        capsys,
        "search",
        "--image",
        str(examples / "krebs-cycle-diagram.png"),
        "--index",
        ix,
        "--json",
        "-k",
        "1",
    )
    assert json.loads(out)[0]["source"].endswith("krebs-cycle-diagram.png")


def test_video_results_show_a_frame_in_jupyter() -> None:
    from mmembed import Modality, TimeSpan
    from mmembed.results import Result, Results

    clip = ROOT / "examples" / "lecture-clip.mp4"
    result = Result(
        score=0.9,
        source=str(clip),
        modality=Modality.VIDEO,
        span=TimeSpan(1, 3),
        uri=f"{clip}#t=1,3",
    )
    html = Results([result])._repr_html_()
    assert "data:image/png;base64," in html
    assert "0:01–0:03" in html
