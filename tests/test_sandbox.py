"""The sandbox turns crashes, hangs, memory blow-ups and errors in a decoder into ChunkingError."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmembed import Chunk, ChunkingError, ConfigurationError, InputLimitError, PageSpan
from mmembed.chunkers import _sandbox
from mmembed.chunkers._sandbox import isolated
from tests import _sandbox_targets as targets


def _gone(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` no longer exists (exited and reaped) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def test_streams_items_in_order_from_another_process() -> None:
    assert list(isolated(targets.count, 5, name="five")) == [0, 1, 2, 3, 4]
    pid = next(isolated(targets.pid_then, "nothing"))
    assert pid != os.getpid()


def test_nothing_runs_until_the_first_item_is_wanted(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    it = isolated(targets.touch_then_count, str(marker))
    time.sleep(0.2)
    assert not marker.exists()
    assert next(it) == 1
    assert marker.read_text() == "started"


def test_the_worker_never_runs_ahead_of_the_consumer(tmp_path: Path) -> None:
    log = tmp_path / "log"
    it = isolated(targets.counted, 10, str(log))
    assert next(it) == 0
    time.sleep(0.3)
    assert log.read_text().split() == ["0"]
    assert next(it) == 1
    time.sleep(0.1)
    assert log.read_text().split() == ["0", "1"]
    assert list(it) == list(range(2, 10))


@pytest.mark.parametrize(("action", "signal_name"), [("segfault", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_native_crash_becomes_a_chunking_error(action: str, signal_name: str) -> None:
    it = isolated(targets.pid_then, action, name="evil.mp4")
    pid = next(it)
    with pytest.raises(ChunkingError, match=f"evil.mp4.*{signal_name}"):
        next(it)
    assert _gone(pid)


def test_a_nonzero_exit_is_reported() -> None:
    it = isolated(targets.pid_then, "exit", name="x.wav")
    next(it)
    with pytest.raises(ChunkingError, match=r"x.wav.*status 3"):
        next(it)


def test_a_hang_is_stopped_at_the_timeout_and_the_worker_killed() -> None:
    it = isolated(targets.pid_then, "hang", name="loop.pdf", timeout=0.5)
    pid = next(it)
    started = time.monotonic()
    with pytest.raises(ChunkingError, match=r"loop.pdf.*longer than 0.5 s"):
        next(it)
    assert time.monotonic() - started < 5
    assert _gone(pid)


def test_a_memory_blow_up_hits_the_limit() -> None:
    it = isolated(targets.pid_then, "memory", name="bomb.png", memory_mb=512)
    next(it)
    with pytest.raises(ChunkingError, match=r"bomb.png.*memory limit of 512 MB"):
        next(it)


def test_an_mmembed_error_comes_back_as_itself() -> None:
    it = isolated(targets.pid_then, "limit-error", name="deck.pdf")
    next(it)
    with pytest.raises(InputLimitError, match="too many pages") as info:
        next(it)
    assert info.value.index == 3
    assert info.value.limit == "pdf_pages"


def test_any_other_exception_becomes_a_chunking_error_naming_the_file() -> None:
    it = isolated(targets.pid_then, "value-error", name="photo.jpg")
    next(it)
    with pytest.raises(ChunkingError, match=r"photo.jpg.*ValueError: bad header at byte 7"):
        next(it)
    with pytest.raises(ChunkingError, match=r"doc.pdf.*OSError: cannot open the thing"):
        list(isolated(targets.fails_at_start, name="doc.pdf"))


def test_stopping_early_stops_the_worker_and_lets_it_clean_up(tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    it = isolated(targets.pid_then, "forever", str(marker))
    pid = next(it)
    assert next(it) == 0
    it.close()  # type: ignore[attr-defined]
    assert _gone(pid)
    assert marker.read_text() == "closed"


def test_chunks_with_metadata_cross_the_process_boundary() -> None:
    (chunk,) = isolated(targets.chunks, name="deck.pdf")
    assert isinstance(chunk, Chunk)
    assert chunk.span == PageSpan(1, 6)
    assert dict(chunk.metadata) == {"text": ["a", "b"]}
    assert chunk.uri == "deck.pdf#page=1"


def test_in_process_mode_translates_errors_the_same_way() -> None:
    assert list(isolated(targets.count, 3, isolate=False)) == [0, 1, 2]
    it = isolated(targets.pid_then, "value-error", name="photo.jpg", isolate=False)
    assert next(it) == os.getpid()
    with pytest.raises(ChunkingError, match=r"photo.jpg.*ValueError"):
        next(it)
    it = isolated(targets.pid_then, "limit-error", isolate=False)
    next(it)
    with pytest.raises(InputLimitError):
        next(it)


def _local_generator() -> Iterator[int]:
    yield 1


def test_functions_that_cannot_be_sent_are_refused_clearly() -> None:
    def inner() -> Iterator[int]:
        yield 1

    with pytest.raises(ConfigurationError, match="top level of an importable module"):
        isolated(inner)
    with pytest.raises(ConfigurationError, match="cannot be sent"):
        isolated(targets.count, lambda: 3)
    with pytest.raises(ConfigurationError):
        isolated(targets.count, 3, timeout=0)


def test_the_helper_is_restarted_when_it_died() -> None:
    assert list(isolated(targets.count, 2)) == [0, 1]
    proc = _sandbox._helper._proc
    assert proc is not None
    proc.kill()
    proc.wait()
    assert list(isolated(targets.count, 2)) == [0, 1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses PR_SET_PDEATHSIG")
def test_workers_die_with_their_helper() -> None:
    it = isolated(targets.pid_then, "hang", name="stuck.mp4", timeout=30)
    pid = next(it)
    proc = _sandbox._helper._proc
    assert proc is not None
    proc.kill()
    assert _gone(pid)
    with pytest.raises(ChunkingError, match=r"stuck\.mp4"):
        next(it)


def test_a_job_costs_milliseconds_once_the_helper_runs() -> None:
    list(isolated(targets.count, 1))
    started = time.perf_counter()
    for _ in range(5):
        list(isolated(targets.count, 1))
    # Generous bound for a loaded CI machine; measured ~6 ms per job on 2 cores.
    assert (time.perf_counter() - started) / 5 < 0.5


def test_a_script_without_a_main_guard_works(tmp_path: Path) -> None:
    # multiprocessing's spawn and forkserver would re-run this script in every child.
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from mmembed.chunkers._sandbox import isolated\n"
        "from tests._sandbox_targets import count\n"
        "print('ran', flush=True)\n"
        "print(list(isolated(count, 3)))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split("\n")[:2] == ["ran", "[0, 1, 2]"]


def test_the_worker_sees_the_callers_directory_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    list(isolated(targets.count, 1))  # the helper is running, started elsewhere
    (tmp_path / "here.txt").write_text("found")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMEMBED_TEST_MARK", "set later")
    assert list(isolated(targets.read_relative, "here.txt")) == ["found", "set later"]


def test_jobs_from_several_threads_run_side_by_side() -> None:
    results: dict[int, list[int]] = {}

    def run(n: int) -> None:
        results[n] = list(isolated(targets.count, n))

    threads = [threading.Thread(target=run, args=(n,)) for n in (20, 30, 40, 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {n: list(range(n)) for n in (20, 30, 40, 50)}
