"""A run under attack: hostile index folders, API faults, odd file names, paid work.

Each test reproduces a way a run went wrong (a write through a planted link, files dropped
from a run, a file name that blocked a folder, answered items sent again) and checks it holds
now. Everything runs against the real google-genai SDK and FakeGeminiServer on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mmembed import GeminiEmbedder, Index
from mmembed.cache import CachedEmbedder, EmbeddingCache
from mmembed.cli import ExitCode, main
from mmembed.errors import AuthenticationError, EmbeddingError, RateLimitError
from mmembed.index import IndexProgress
from mmembed.testing import FakeGeminiServer

DAILY = "GenerateRequestsPerDayPerProjectPerModel"


def notes(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"note{i:03d}.txt"
        path.write_text(f"note {i}: a paragraph about topic {i * 7} and nothing else\n")
        paths.append(path)
    return paths


def fast_gemini(**kw: object) -> GeminiEmbedder:
    options: dict[str, object] = {
        "max_retries": 1,
        "retry_initial_delay": 0.01,
        "retry_max_delay": 0.02,
        **kw,
    }
    return GeminiEmbedder(**options)  # type: ignore[arg-type]


def catalog_status(index_dir: Path) -> dict[str, str]:
    db = sqlite3.connect(index_dir / "catalog.sqlite")
    try:
        return dict(db.execute("SELECT path, status FROM files").fetchall())
    finally:
        db.close()


# -- 2. no file silently dropped from a run --------------------------------------------------------

FAULTS = {
    "403": (AuthenticationError, {"status": 403}),
    "401": (AuthenticationError, {"status": 401}),
    "daily-429": (RateLimitError, {"status": 429, "quota_id": DAILY}),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("after_files", [0, 100])
def test_a_key_or_quota_failure_stops_the_run_and_says_what_is_left(
    tmp_path: Path, server: FakeGeminiServer, fault: str, after_files: int
) -> None:
    error, knobs = FAULTS[fault]
    files = notes(tmp_path / "notes", 300)
    index = Index(tmp_path / "ix", embedder=fast_gemini(), batch_size=50)

    armed: list[int] = []

    def progress(event: IndexProgress) -> None:
        if event.files_done >= after_files and not armed:
            armed.append(1)
            server.fail_next(**knobs)  # type: ignore[arg-type]

    with pytest.raises(error) as caught:
        index.add(tmp_path / "notes", progress=progress)
    status = catalog_status(tmp_path / "ix")
    # nothing recorded as failed for the key's or the quota's sake; what is left is said
    assert set(status.values()) <= {"indexed"}
    left = 300 - len(status)
    assert f"{left} of 300 files left to do" in str(caught.value)
    assert "run the same command again" in str(caught.value)
    # the next run finishes the job
    report = index.add(tmp_path / "notes")
    assert not report.failed
    assert len(report.added) + len(report.unchanged) == 300
    assert len(report.added) == left
    assert set(catalog_status(tmp_path / "ix")) == {str(p) for p in files}
    index.close()


def test_a_429_storm_with_small_rounds_drops_no_file(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    files = notes(tmp_path / "notes", 300)
    index = Index(tmp_path / "ix", embedder=fast_gemini(), batch_size=50)
    storm: list[int] = []

    def progress(event: IndexProgress) -> None:
        if event.files_done >= 100 and not storm:
            storm.append(1)
            server.rate_limit_next(40, retry_delay=0.01)

    with pytest.raises(RateLimitError) as caught:
        index.add(tmp_path / "notes", progress=progress)
    status = catalog_status(tmp_path / "ix")
    assert set(status.values()) == {"indexed"}
    assert 100 <= len(status) < 300
    assert f"{300 - len(status)} of 300 files left to do" in str(caught.value)
    server.reset()
    report = index.add(tmp_path / "notes")
    assert (len(report.added), len(report.unchanged), report.failed) == (
        300 - len(status),
        len(status),
        (),
    )
    assert set(catalog_status(tmp_path / "ix")) == {str(p) for p in files}
    index.close()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_cli_exits_5_on_a_key_or_quota_stop_and_a_rerun_finishes(
    tmp_path: Path,
    server: FakeGeminiServer,
    capsys: pytest.CaptureFixture[str],
    fault: str,
) -> None:
    notes(tmp_path / "notes", 300)
    ix = str(tmp_path / "ix")
    args = ["index", str(tmp_path / "notes"), "--index", ix, "--batch-size", "50"]
    server.fail_next(**FAULTS[fault][1])  # type: ignore[arg-type]
    assert main(args) == ExitCode.EMBEDDING
    err = capsys.readouterr().err
    assert "300 of 300 files left to do" in err
    assert "Traceback" not in err
    assert main(args) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("added 300, replaced 0, unchanged 0, removed 0, failed 0, skipped 0")
    assert issubclass(FAULTS[fault][0], EmbeddingError)


# -- 1. nothing in an index folder is followed for writing ----------------------------------------

PLANTED = [
    "lock",
    "store/LOCK",
    "catalog.sqlite",
    "catalog.sqlite-wal",
    "catalog.sqlite-shm",
    "cache.sqlite",
    "cache.sqlite-wal",
    "store",
    "config.json",
    "store.json",
]


def snapshot(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def victim_for(name: str, outside: Path, original: Path) -> Path:
    """Something outside the index for a link planted at ``name`` to point at."""
    outside.mkdir(exist_ok=True)
    if name == "store":
        target = outside / "elsewhere"
        target.mkdir()
        (target / "keep.txt").write_text("precious")
    elif name.endswith(".sqlite"):
        target = outside / "other.sqlite"
        db = sqlite3.connect(target)
        db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
        db.execute("INSERT INTO accounts (owner) VALUES ('someone')")
        db.commit()
        db.close()
    elif name.endswith(".json"):
        target = outside / "copy.json"
        target.write_bytes(original.read_bytes())  # a valid file: only writing would show
    else:
        target = outside / "victim.txt"
        target.write_text("precious\n")
    return target


@pytest.mark.parametrize("name", PLANTED)
def test_a_link_planted_in_the_index_is_never_written_through(
    tmp_path: Path, server: FakeGeminiServer, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    notes(tmp_path / "notes", 3)
    ix = tmp_path / "ix"
    args = ["index", str(tmp_path / "notes"), "--index", str(ix)]
    assert main(args) == ExitCode.OK
    planted = ix / name
    victim = victim_for(name, tmp_path / "outside", planted)
    if planted.is_dir():
        import shutil

        shutil.rmtree(planted)
    else:
        planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    before = snapshot(victim)
    (tmp_path / "notes" / "new.txt").write_text("a new note to index")
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    assert snapshot(victim) == before  # nothing written through the link
    assert not list((tmp_path / "outside").glob("*-wal"))
    assert "Traceback" not in err
    if name.endswith(".json"):
        # replaced, never followed: the index works on, with a file of its own there
        assert code == ExitCode.OK
    else:
        assert code == ExitCode.INDEX
        assert "symbolic link" in err
        assert planted.is_symlink()


def test_close_lets_go_of_the_cache_so_sqlite_leaves_nothing_behind(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    notes(tmp_path / "notes", 3)
    index = Index(tmp_path / "ix", embedder=fast_gemini())
    index.add(tmp_path / "notes")
    index.close()
    # a connection left open keeps the -wal and -shm files (and whatever is planted there)
    leftovers = sorted(p.name for p in (tmp_path / "ix").glob("*.sqlite-*"))
    assert leftovers == []


def test_a_foreign_sqlite_database_is_refused_not_adopted(
    tmp_path: Path, server: FakeGeminiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    notes(tmp_path / "notes", 3)
    ix = tmp_path / "ix"
    ix.mkdir()
    foreign = victim_for("catalog.sqlite", tmp_path, ix)
    (ix / "catalog.sqlite").write_bytes(foreign.read_bytes())
    before = (ix / "catalog.sqlite").read_bytes()
    index_args = ["index", str(tmp_path / "notes"), "--index", str(ix)]
    assert main(index_args) == ExitCode.INDEX
    err = capsys.readouterr().err
    assert "did not write" in err
    assert "accounts" in err
    assert (ix / "catalog.sqlite").read_bytes() == before
    assert not (ix / "catalog.sqlite-wal").exists()


# -- 3. odd file names: indexed or skipped with a reason, printed safely --------------------------

ODD_OK = ["plain.txt", "new\nline.txt", "\u202eevil.txt", "\x1b[31mred.txt", "tab\there.txt"]


def odd_folder(root: Path) -> Path:
    folder = root / "odd"
    folder.mkdir()
    for i, name in enumerate(ODD_OK):
        (folder / name).write_text(f"odd name number {i}")
    raw = os.fsencode(folder)
    with open(raw + b"/\xff.txt", "wb") as fh:
        fh.write(b"a file whose name is not UTF-8")
    os.mkdir(raw + b"/dir\xfe")
    with open(raw + b"/dir\xfe/inside.txt", "wb") as fh:
        fh.write(b"a file in a folder whose name is not UTF-8")
    return folder


def mmembed_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The command as a user runs it: strict UTF-8 output, nothing captured in-process."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "MMEMBED_HELPER": "off"}
    return subprocess.run(
        [sys.executable, "-m", "mmembed", *args], capture_output=True, env=env, timeout=120
    )


def assert_safe_terminal_text(data: bytes) -> str:
    text = data.decode("utf-8")  # strict: nothing but UTF-8 was written
    assert "Traceback" not in text
    for ch in ("\u202e", "\x1b", "\t", "\r"):
        assert ch not in text
    return text


def test_odd_file_names_never_block_a_folder_nor_break_the_terminal(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    folder = odd_folder(tmp_path)
    ix = str(tmp_path / "ix")
    done = mmembed_cli("index", str(folder), "--index", ix)
    assert done.returncode == ExitCode.OK, done.stderr
    out = assert_safe_terminal_text(done.stdout)
    err = assert_safe_terminal_text(done.stderr)
    assert out.startswith("added 5, replaced 0, unchanged 0, removed 0, failed 0, skipped 2")
    assert "\\xff.txt" in err
    assert "dir\\xfe" in err
    assert "not valid UTF-8" in err
    # the catalog holds the five names as they are, and nothing it cannot store
    assert sorted(catalog_status(tmp_path / "ix")) == sorted(str(folder / n) for n in ODD_OK)
    # a re-run is not blocked either
    again = mmembed_cli("index", str(folder), "--index", ix)
    assert again.returncode == ExitCode.OK
    assert assert_safe_terminal_text(again.stdout).startswith(
        "added 0, replaced 0, unchanged 5, removed 0, failed 0, skipped 2"
    )
    # every odd name is one escaped line of the search table
    found = mmembed_cli("search", "odd name number", "--index", ix, "-k", "10")
    assert found.returncode == ExitCode.OK
    table = assert_safe_terminal_text(found.stdout).splitlines()
    assert len(table) == 1 + 5
    assert any("new\\nline.txt" in line for line in table)
    assert any("\\u202eevil.txt" in line for line in table)
    assert any("\\x1b[31mred.txt" in line for line in table)
    # --json keeps the names exactly: the bytes come back through os.fsencode
    data = mmembed_cli("index", str(folder), "--index", ix, "--json")
    report = json.loads(data.stdout)
    skipped = {os.fsencode(p["path"]) for p in report["skipped"]}
    assert skipped == {os.fsencode(folder) + b"/\xff.txt", os.fsencode(folder) + b"/dir\xfe"}
    removed = mmembed_cli("remove", str(folder / "new\nline.txt"), "--index", ix)
    assert removed.returncode == ExitCode.OK
    assert assert_safe_terminal_text(removed.stdout).strip().endswith("new\\nline.txt")


def test_a_name_that_is_not_utf8_given_by_name_is_skipped_with_its_reason(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    folder = odd_folder(tmp_path)
    index = Index(tmp_path / "ix", embedder=fast_gemini())
    bad = os.fsdecode(os.fsencode(folder) + b"/\xff.txt")
    report = index.add(bad)
    assert [p.path for p in report.skipped] == [bad]
    assert "not valid UTF-8" in report.skipped[0].reason
    assert index.remove(bad) == []
    assert len(index.search("odd", where={"source": bad})) == 0
    index.close()


# -- 4. answered work is never paid for again ------------------------------------------------------


def answered(server: FakeGeminiServer) -> Counter[str]:
    """How many times each text was answered (paid for)."""
    return Counter(t for r in server.embed_requests if r.status == 200 for t in r.texts)


def small_calls() -> GeminiEmbedder:
    # ten items per call, four calls at once: one round of 100 chunks is ten calls
    return fast_gemini(batch_size=10, concurrency=4)


def test_each_reply_is_in_the_cache_as_soon_as_it_arrives(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    embedder = CachedEmbedder(small_calls(), cache)
    server.slow_next(1, seconds=4.0)
    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (embedder.embed([f"text {i}" for i in range(100)]), done.set())
    )
    worker.start()
    deadline = time.monotonic() + 3.0
    while len(cache) < 90 and time.monotonic() < deadline:
        time.sleep(0.05)
    kept_while_one_call_was_slow = len(cache)
    assert not done.is_set()  # the slow call is still out
    worker.join()
    assert kept_while_one_call_was_slow == 90
    assert len(cache) == 100


def test_a_run_killed_while_one_call_is_slow_does_not_pay_the_answered_calls_again(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    notes(tmp_path / "notes", 100)
    ix = tmp_path / "ix"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from mmembed import GeminiEmbedder, Index\n"
            "embedder = GeminiEmbedder(batch_size=10, concurrency=4)\n"
            "Index(sys.argv[1], embedder=embedder).add(sys.argv[2])\n",
            str(ix),
            str(tmp_path / "notes"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server.slow_next(1, seconds=6.0)
        deadline = time.monotonic() + 30.0
        while sum(answered(server).values()) < 90 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the last reply reaches the child
        assert sum(answered(server).values()) == 90
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    paid = answered(server)
    server.reset()
    index = Index(ix, embedder=small_calls())
    report = index.add(tmp_path / "notes")
    index.close()
    assert len(report.added) == 100
    again = answered(server)
    assert sum(again.values()) == 10  # only the items of the call that never answered
    assert not set(again) & set(paid)


def test_one_refused_call_of_a_round_repays_nothing(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    notes(tmp_path / "notes", 100)
    index = Index(tmp_path / "ix", embedder=small_calls())
    server.fail_next(1, status=400)
    report = index.add(tmp_path / "notes")
    index.close()
    assert (len(report.added), report.failed) == (100, ())
    paid = answered(server)
    assert len(paid) == 100
    assert max(paid.values()) == 1  # no answered item was sent again


def test_a_bad_item_is_found_by_halving_not_by_one_call_per_file(
    tmp_path: Path, server: FakeGeminiServer
) -> None:
    notes(tmp_path / "notes", 100)
    (tmp_path / "notes" / "note037.txt").write_text("POISON: the service refuses this one")
    server.refuse_text("POISON")
    index = Index(tmp_path / "ix", embedder=small_calls())
    report = index.add(tmp_path / "notes")
    index.close()
    assert len(report.added) == 99
    assert [p.path for p in report.failed] == [str(tmp_path / "notes" / "note037.txt")]
    assert "invalid argument" in report.failed[0].reason
    paid = answered(server)
    assert len(paid) == 99
    assert max(paid.values()) == 1
    # ten calls for the round, then about two per halving (log2 100 = 7 halvings)
    assert len(server.embed_requests) <= 40
