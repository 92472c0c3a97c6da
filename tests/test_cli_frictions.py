"""A new user's first hour with ``mmembed``: each friction found once, and kept from coming back."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mmembed import Modality
from mmembed._cli_output import plain_reason
from mmembed.cli import ExitCode, main
from mmembed.content import Audio, load
from mmembed.index import Index
from mmembed.testing import FakeEmbedder, FakeGeminiServer
from mmembed.testing.media import make_image, make_pdf

ROOT = Path(__file__).resolve().parent.parent
TEXT_ONLY = frozenset({Modality.TEXT})


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def env_without_keys(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(PYTHONPATH=str(ROOT), MMEMBED_HELPER="off", **extra)
    return env


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "krebs.md").write_text("The Krebs cycle runs in the mitochondria.")
    (root / "rome.md").write_text("Rome was built on seven hills by the Tiber.")
    for i in range(5):
        (root / f"photo{i}.png").write_bytes(make_image("PNG", (24, 24), noise=True, seed=i))
    return root


@pytest.fixture
def text_index(tmp_path: Path, folder: Path) -> str:
    """An index whose model takes text only, like the offline model (images are skipped)."""
    ix = tmp_path / "ix"
    index = Index(ix, embedder=FakeEmbedder(32, model="text-model", modalities=TEXT_ONLY))
    index.add(folder)
    index.close()
    return str(ix)


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(key, raising=False)


# -- 2: hints true to the environment ---------------------------------------------------------


def test_with_a_key_set_the_skip_hint_says_to_make_a_gemini_index(
    text_index: str,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "set-already")
    code, out, err = run(capsys, "index", str(folder), "--index", text_index)
    assert code == ExitCode.OK
    assert "set GEMINI_API_KEY" not in err + out
    assert "GEMINI_API_KEY is set" in err
    assert f"mmembed index FOLDER --index {text_index}-gemini" in err


def test_without_a_key_the_skip_hint_says_to_set_it_and_make_a_new_index(
    text_index: str, folder: Path, no_key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "index", str(folder), "--index", text_index)
    assert code == ExitCode.OK
    assert "set GEMINI_API_KEY and make a Gemini index in a new directory" in err


def test_an_image_query_on_a_text_index_names_the_file_and_how_to_get_gemini(
    text_index: str,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "set-already")
    photo = str(folder / "photo0.png")
    code, _, err = run(capsys, "search", "--image", photo, "--index", text_index)
    assert code == ExitCode.USAGE
    assert photo in err
    assert "item 0" not in err
    assert "set GEMINI_API_KEY" not in err
    assert "GEMINI_API_KEY is set" in err


def test_dimensions_on_an_existing_index_says_it_keeps_its_model(
    text_index: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "index", str(folder), "--index", text_index, "--dimensions", "768")
    assert code == ExitCode.INDEX
    assert "keeps it" in err
    assert "--index NEW_DIR --dimensions 768" in err
    assert "set GEMINI_API_KEY" not in err


# -- 3: a reader that goes away ----------------------------------------------------------------


@pytest.mark.parametrize("command", [["info"], ["search", "--json", "Krebs"]])
def test_a_closed_pipe_is_quiet_and_not_a_setup_error(text_index: str, command: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmembed.cli", *command, "--index", text_index],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_without_keys(),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == ExitCode.BROKEN_PIPE
    assert err == ""


# -- 4: skip lists -------------------------------------------------------------------------------


def test_skipped_files_are_grouped_on_stderr_and_quiet_with_q(
    text_index: str, folder: Path, no_key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "index", str(folder), "--index", text_index)
    assert code == ExitCode.OK
    assert out.count("\n") == 1
    assert "skipped 5" in out
    assert "skipped 5 files (" in err
    assert "and 2 more" in err
    assert err.count("photo") == 3  # not one line per file
    code, out, err = run(capsys, "index", str(folder), "--index", text_index, "-q")
    assert code == ExitCode.OK
    assert err == ""
    assert out.count("\n") == 1
    code, out, _ = run(capsys, "index", str(folder), "--index", text_index, "--json")
    assert len(json.loads(out)["skipped"]) == 5  # JSON keeps every file


# -- 5: failure reasons and WAV containers -------------------------------------------------------


def test_failure_reasons_on_the_terminal_hold_no_python_internals() -> None:
    internal = (
        "cannot cut this audio (AttributeError: 'NoneType' object has no attribute "
        "'sample_rate'); the file is probably corrupt — re-encode it or skip it"
    )
    assert plain_reason(internal) == (
        "cannot cut this audio; the file is probably corrupt — re-encode it or skip it"
    )
    ffmpeg = (
        "cannot cut this video (InvalidDataError: [Errno 1094995529] Invalid data found when "
        "processing input); the file is probably corrupt"
    )
    assert plain_reason(ffmpeg) == (
        "cannot cut this video (Invalid data found when processing input); the file is "
        "probably corrupt"
    )


def test_a_damaged_file_fails_with_its_name_and_a_plain_reason(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = folder / "broken.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(range(256)) * 4)
    ix = str(tmp_path / "full")
    Index(ix, embedder=FakeEmbedder(16)).close()
    code, out, _ = run(capsys, "index", str(folder), "--index", ix)
    assert code == ExitCode.PARTIAL
    line = next(line for line in out.splitlines() if "failed: " in line)
    assert str(bad) in line or "broken.wav" in line
    assert "Error" not in line
    assert "Errno" not in line
    assert " object at 0x" not in line


@pytest.mark.parametrize(
    ("container", "fmt", "endian"), [("RIFX", "WAV", "BIG"), ("RF64", "RF64", "FILE")]
)
def test_rifx_and_rf64_wav_read_like_any_wav(
    tmp_path: Path, container: str, fmt: str, endian: str, capsys: pytest.CaptureFixture[str]
) -> None:
    buf = io.BytesIO()
    tone = np.sin(np.linspace(0, 400, 16000)).astype(np.float32)
    soundfile.write(buf, tone, 8000, format=fmt, endian=endian)
    data = buf.getvalue()
    assert data[:4] == container.encode()
    root = tmp_path / "sounds"
    root.mkdir()
    (root / "tone.wav").write_bytes(data)
    part = load(root / "tone.wav")
    assert isinstance(part, Audio)
    assert part.mime_type == "audio/wav"
    ix = str(tmp_path / "ix")
    Index(ix, embedder=FakeEmbedder(16)).close()
    code, out, err = run(capsys, "index", str(root), "--index", ix, "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert [Path(p).name for p in report["added"]] == ["tone.wav"]


# -- 6: a path that does not exist ---------------------------------------------------------------


def test_indexing_a_missing_folder_creates_nothing(
    tmp_path: Path, no_key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = tmp_path / "ix"
    code, _, err = run(capsys, "index", str(tmp_path / "no-such-dir"), "--index", str(ix))
    assert code == ExitCode.USAGE
    assert "no-such-dir: no such file or folder" in err
    assert not ix.exists()


# -- 7: searching with files ---------------------------------------------------------------------


def test_a_media_file_as_the_query_searches_with_the_file(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = str(tmp_path / "full")
    index = Index(ix, embedder=FakeEmbedder(32))
    index.add(folder)
    index.close()
    photo = str(folder / "photo3.png")
    code, out, err = run(capsys, "search", photo, "--index", ix, "--json", "-k", "1")
    assert code == ExitCode.OK
    assert json.loads(out)[0]["source"].endswith("photo3.png")  # the image itself, not its name
    assert f"searching with the image {photo}" in err


def test_pdf_query_on_a_text_index_searches_with_the_pdf_text(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = tmp_path / "query.pdf"
    pdf.write_bytes(make_pdf(["The Krebs cycle runs in the mitochondria."]))
    ix = str(tmp_path / "ix")
    index = Index(ix, embedder=FakeEmbedder(32, model="text-model", modalities=TEXT_ONLY))
    index.add(folder)
    index.close()
    code, out, err = run(capsys, "search", "--pdf", str(pdf), "--index", ix, "--json", "-k", "1")
    assert code == ExitCode.OK, err
    assert json.loads(out)[0]["source"].endswith("krebs.md")
    assert "reads PDFs as text" in err


def test_modality_filter_on_an_index_without_it_says_why(
    text_index: str, no_key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "search", "seven hills", "--modality", "image", "--index", text_index
    )
    assert code == ExitCode.OK
    assert out.strip() == "no results"
    assert "holds no image chunks" in err
    assert "were skipped when indexing" in err


# -- 8: Ctrl-C and an overloaded service ---------------------------------------------------------


def test_ctrl_c_during_a_run_exits_130_with_the_resume_message(
    tmp_path: Path, folder: Path
) -> None:
    with FakeGeminiServer() as server:
        server.slow_next(20, seconds=3.0)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mmembed.cli",
                "index",
                str(folder),
                "--index",
                str(tmp_path / "ix"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env_without_keys(), **server.env()},
        )
        deadline = time.monotonic() + 60
        # a call is being served (the log records a call when it is answered: too late)
        while not server.max_concurrent and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert b"interrupted; finished files are kept" in err
    assert b"Traceback" not in err


def test_a_search_gives_up_on_a_busy_service_within_its_short_budget(
    tmp_path: Path,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeGeminiServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        ix = str(tmp_path / "ix")
        assert main(["index", str(folder), "--index", ix, "-q"]) == ExitCode.OK
        capsys.readouterr()
        server.rate_limit_next(1000, retry_delay=2.0)
        started = time.monotonic()
        code, _, err = run(capsys, "search", "a fresh question", "--index", ix)
        took = time.monotonic() - started
    assert code == ExitCode.EMBEDDING
    assert took < 30  # indexing would keep trying for minutes
    assert "gives up after 10 s of retries" in err
    assert "item 0" not in err


# -- 9: help and usage ---------------------------------------------------------------------------


def test_version_help_and_subcommand_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("mmembed ")
    with pytest.raises(SystemExit):
        main(["remove", "--help"])
    assert "indexed files, or folders" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--no-such-flag", "x"])
    assert exit_.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: mmembed search ")
    assert "unrecognized arguments: --no-such-flag" in err
