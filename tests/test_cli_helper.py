"""The resident search helper: warm answers, and never a wrong one.

Each test runs the real command in child processes, the way a shell would, with the helper
allowed (the rest of the suite turns it off), and stops every helper it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmembed import _daemon
from mmembed.index import Index
from mmembed.testing import FakeEmbedder, FakeGeminiServer

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_PEERCRED") or not Path("/proc").is_dir(), reason="Linux"
)


def helper_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update({"PYTHONPATH": str(ROOT), "MMEMBED_HELPER": "on", "MMEMBED_HELPER_IDLE": "30"})
    env.update(extra)
    return env


def search(
    ix: Path, *query: str, env: dict[str, str], importtime: bool = False
) -> tuple[int, str, str]:
    args = [sys.executable, *(["-X", "importtime"] if importtime else [])]
    proc = subprocess.run(
        [*args, "-m", "mmembed.cli", "search", *query, "--index", str(ix), "--json", "-k", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def helper_pid(ix: Path) -> int | None:
    """The pid of the process listening on the index's socket, or None."""
    path = ix / _daemon.SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return None
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[0])


def processes() -> list[tuple[int, str]]:
    """Every process's pid and command line (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append((int(entry.name), args))
    return found


def wait_gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "krebs.md").write_text("The Krebs cycle runs in the mitochondria.")
    (root / "rome.md").write_text("Rome was built on seven hills by the Tiber.")
    return root


@pytest.fixture
def ix(tmp_path: Path, notes: Path) -> Iterator[Path]:
    path = tmp_path / "ix"
    index = Index(path, embedder=FakeEmbedder(32))
    index.add(notes)
    index.close()
    yield path
    pid = helper_pid(path)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)


def top(out: str) -> str:
    return Path(json.loads(out)[0]["source"]).name


def test_later_searches_are_answered_by_the_helper_with_the_same_results(
    ix: Path, notes: Path
) -> None:
    _, alone, _ = search(ix, "Krebs cycle", env=helper_env(MMEMBED_HELPER="off"))
    code, first, err = search(ix, "Krebs cycle", env=helper_env())
    assert code == 0, err
    sock = ix / _daemon.SOCKET_NAME
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
    pid = helper_pid(ix)
    assert pid is not None
    code, second, err = search(ix, "Krebs cycle", env=helper_env(), importtime=True)
    assert code == 0
    assert json.loads(first) == json.loads(second) == json.loads(alone)
    # answered by the helper: this process never imported the index, the store or a model
    imported = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if "|" in line}
    assert "mmembed._daemon" in imported
    assert not imported & {"mmembed.index", "faiss", "mmembed.stores.faiss"}
    assert helper_pid(ix) == pid


def test_a_stale_socket_of_a_crashed_helper_is_replaced(ix: Path) -> None:
    assert search(ix, "Krebs", env=helper_env())[0] == 0
    pid = helper_pid(ix)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the socket file stays behind, nobody listens
    assert wait_gone(pid)
    assert (ix / _daemon.SOCKET_NAME).exists()
    code, out, err = search(ix, "Krebs", env=helper_env())
    assert code == 0, err
    assert top(out) == "krebs.md"
    new = helper_pid(ix)
    assert new is not None
    assert new != pid


def test_a_socket_path_that_is_a_symlink_is_never_used(ix: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.sock"
    (ix / _daemon.SOCKET_NAME).symlink_to(elsewhere)
    code, out, err = search(ix, "Krebs", env=helper_env())
    assert code == 0
    assert top(out) == "krebs.md"
    assert "is a symlink; not used" in err
    assert (ix / _daemon.SOCKET_NAME).is_symlink()
    assert not elsewhere.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_socket_owned_by_another_user_is_never_used(ix: Path) -> None:
    assert search(ix, "Krebs", env=helper_env())[0] == 0
    os.chown(ix / _daemon.SOCKET_NAME, 4242, -1, follow_symlinks=False)
    code, out, err = search(ix, "Krebs", env=helper_env())
    assert code == 0
    assert top(out) == "krebs.md"
    assert "belongs to another user" in err


def test_an_index_changed_by_another_writer_is_never_answered_stale(ix: Path, notes: Path) -> None:
    assert search(ix, "volcano", env=helper_env())[0] == 0
    pid = helper_pid(ix)
    (notes / "etna.md").write_text("Etna is an active volcano on Sicily.")
    (notes / "krebs.md").unlink()
    index = Index(ix)  # another writer: adds, removes, writes a new snapshot, compacts the log
    index.add(notes)
    index.close()
    code, out, _ = search(ix, "Etna is an active volcano on Sicily.", env=helper_env())
    assert code == 0
    hits = [Path(h["source"]).name for h in json.loads(out)]
    assert hits[0] == "etna.md"
    assert "krebs.md" not in hits
    assert helper_pid(ix) == pid  # the same helper, reopened


def test_an_index_made_again_with_another_model_is_reopened_from_scratch(
    ix: Path, notes: Path
) -> None:
    assert search(ix, "Krebs", env=helper_env())[0] == 0
    for p in sorted(ix.iterdir()):
        if p.name not in (_daemon.SOCKET_NAME, _daemon.LOCK_NAME):
            if p.is_dir():
                for q in p.rglob("*"):
                    if q.is_file():
                        q.unlink()
            else:
                p.unlink()
    index = Index(ix, embedder=FakeEmbedder(48, model="another"))
    index.add(notes)
    index.close()
    code, out, err = search(ix, "Rome was built on seven hills by the Tiber.", env=helper_env())
    assert code == 0, err
    assert top(out) == "rome.md"


def test_two_commands_at_once_start_one_helper_and_agree(ix: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mmembed.cli", "search", "Krebs", "--index", str(ix), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=helper_env(),
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    pid = helper_pid(ix)
    assert pid is not None
    helpers = [pid for pid, args in processes() if "mmembed._daemon" in args and str(ix) in args]
    assert len(helpers) == 1, helpers


def test_a_helper_of_another_mmembed_or_environment_steps_aside(ix: Path) -> None:
    assert search(ix, "Krebs", env=helper_env())[0] == 0
    pid = helper_pid(ix)
    assert pid is not None
    message = {
        "protocol": _daemon.PROTOCOL,
        "identity": "another mmembed",
        "environment": _daemon.environment(),
        "cwd": os.getcwd(),
        "request": {},
    }
    reply = _daemon._exchange(ix / _daemon.SOCKET_NAME, message)
    assert reply == {"mismatch": "another mmembed"}
    assert wait_gone(pid)  # it exits; the next command starts a helper of its own
    # a command in another environment (another key or endpoint) searches by itself
    code, out, _ = search(ix, "Krebs", env=helper_env(GEMINI_API_KEY="another-key"))
    assert code == 0
    assert top(out) == "krebs.md"


def test_an_idle_helper_exits_and_removes_its_socket(ix: Path) -> None:
    assert search(ix, "Krebs", env=helper_env(MMEMBED_HELPER_IDLE="1"))[0] == 0
    pid = helper_pid(ix)
    assert pid is not None
    assert wait_gone(pid, 30)
    assert not (ix / _daemon.SOCKET_NAME).exists()


def test_the_gemini_path_through_the_helper_against_the_fake_server(
    tmp_path: Path, notes: Path
) -> None:
    with FakeGeminiServer() as server:
        env = helper_env(**server.env())
        ix = tmp_path / "gem"
        made = subprocess.run(
            [sys.executable, "-m", "mmembed.cli", "index", str(notes), "--index", str(ix), "-q"],
            capture_output=True,
            env=env,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        try:
            for question in ("Krebs cycle", "the hills of Rome"):
                code, out, err = search(ix, question, env=env)
                assert code == 0, err
            assert top(out) == "rome.md"
            # a busy service: the helper gives up within the search's budget and says so
            server.rate_limit_next(1000, retry_delay=2.0)
            code, _, err = search(ix, "something not asked before", env=env)
            assert code == 5
            assert "gives up after 10 s" in err
        finally:
            pid = helper_pid(ix)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid)
