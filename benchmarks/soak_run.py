"""Soak a run under attack and count what goes wrong (a few minutes on 2 cores).

Four areas, each a grid of cases against FakeGeminiServer through the real google-genai SDK:

- links: a symbolic link (to a file, a folder or another SQLite database outside the index)
  planted at each file of an index folder, then ``index``/``search``/``info``/``remove``; and
  foreign or garbage databases planted as the catalog or the cache;
- dropped: API faults (401, 403, a daily quota, a 429 storm, 500s, a 400, dropped connections,
  a slow call) at the start or in the middle of a 200-file run, with small and large rounds;
- names: files whose names are not UTF-8, hold line breaks, escapes, bidirectional controls,
  tabs, SQL wildcards..., through every command, text and ``--json``;
- repaid: a transient 400, an item the service always refuses, 500s, dropped connections, and a
  kill -9 while one call of a round is slow, on 30 to 250 files.

It prints, per area, the cases tried and what went wrong: tracebacks, writes outside the index,
foreign databases adopted, files dropped (in neither the report nor the catalog, with no stop
that says what is left), terminal output broken by a name, answered items paid for again.
Every "wrong" count should be 0.

    python benchmarks/soak_run.py [links dropped names repaid]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmembed import GeminiEmbedder, Index
from mmembed.cli import main
from mmembed.errors import MMEmbedError
from mmembed.index import IndexProgress
from mmembed.testing import FakeGeminiServer

DAILY = "GenerateRequestsPerDayPerProjectPerModel"


def cli(*args: str) -> tuple[int, str, str, bool]:
    """Run the command with strict UTF-8 output: (code, stdout, stderr, traceback?)."""
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="strict", write_through=True)
    crashed = False
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        except Exception:
            crashed, code = True, -1
            sys.__stderr__.write(traceback.format_exc())
    return code, out.getvalue().decode(), err.getvalue().decode(), crashed


def notes(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"n{i:03d}.txt").write_text(f"note {i} on topic {i * 13}")


def snapshot(path: Path) -> Any:
    if path.is_file():
        return path.read_bytes()
    return {str(p): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def answered(server: FakeGeminiServer) -> Counter[str]:
    return Counter(t for r in server.embed_requests if r.status == 200 for t in r.texts)


def fast(**options: Any) -> GeminiEmbedder:
    return GeminiEmbedder(max_retries=1, retry_initial_delay=0.01, retry_max_delay=0.02, **options)


def sqlite_file(path: Path, table: str) -> None:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (x)")
    db.commit()
    db.close()


# -- links ------------------------------------------------------------------------------------

PLANTED = [
    "lock",
    "store/LOCK",
    "store/CURRENT",
    "store",
    "catalog.sqlite",
    "catalog.sqlite-wal",
    "catalog.sqlite-shm",
    "catalog.sqlite-journal",
    "cache.sqlite",
    "cache.sqlite-wal",
    "cache.sqlite-shm",
    "config.json",
    "store.json",
]


def links(stats: Counter[str]) -> None:
    for name in PLANTED:
        for command in ("index", "search", "info", "remove"):
            for kind in ("file", "folder", "sqlite"):
                with tempfile.TemporaryDirectory() as tmp:
                    _planted_link(Path(tmp), name, command, kind, stats)
    for name in ("catalog.sqlite", "cache.sqlite"):
        for content in ("foreign", "garbage"):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                notes(root / "n", 2)
                (root / "ix").mkdir()
                planted = root / "ix" / name
                if content == "foreign":
                    sqlite_file(planted, "accounts")
                else:
                    planted.write_bytes(b"not a database" * 100)
                before = planted.read_bytes()
                code, _, _, crashed = cli("index", str(root / "n"), "--index", str(root / "ix"))
                stats["cases"] += 1
                stats["tracebacks"] += crashed
                stats["foreign databases adopted"] += planted.read_bytes() != before
                stats["clear errors"] += code != 0 and not crashed


def _planted_link(root: Path, name: str, command: str, kind: str, stats: Counter[str]) -> None:
    notes(root / "n", 3)
    ix = root / "ix"
    cli("index", str(root / "n"), "--index", str(ix))
    outside = root / "outside"
    outside.mkdir()
    if kind == "file":
        target = outside / "victim.txt"
        target.write_text("precious")
    elif kind == "folder":
        target = outside / "folder"
        target.mkdir()
        (target / "keep").write_text("precious")
    else:
        target = outside / "other.sqlite"
        sqlite_file(target, "accounts")
    planted = ix / name
    if planted.is_dir() and not planted.is_symlink():
        shutil.rmtree(planted)
    else:
        planted.unlink(missing_ok=True)
    planted.symlink_to(target)
    before = snapshot(outside)
    (root / "n" / "new.txt").write_text("a new note")
    args = {
        "index": ("index", str(root / "n")),
        "search": ("search", "note"),
        "info": ("info",),
        "remove": ("remove", str(root / "n" / "n000.txt")),
    }[command]
    code, _, err, crashed = cli(*args, "--index", str(ix))
    stats["cases"] += 1
    stats["tracebacks"] += crashed
    stats["writes outside the index"] += snapshot(outside) != before
    stats["clear errors"] += code != 0 and err.startswith("mmembed") and not crashed


# -- dropped ----------------------------------------------------------------------------------

FAULTS: dict[str, Callable[[FakeGeminiServer], None]] = {
    "401": lambda s: s.fail_next(1, status=401),
    "403": lambda s: s.fail_next(1, status=403),
    "daily 429": lambda s: s.fail_next(1, status=429, quota_id=DAILY),
    "429 storm": lambda s: s.rate_limit_next(30, retry_delay=0.01),
    "500s": lambda s: s.fail_next(4, status=500),
    "400": lambda s: s.fail_next(1, status=400),
    "dropped": lambda s: s.drop_next(3),
    "slow": lambda s: s.slow_next(1, seconds=0.5),
}


def dropped(stats: Counter[str], server: FakeGeminiServer) -> None:
    for inject in FAULTS.values():
        for after in (0, 60, 150):
            for batch_size in (50, 256):
                with tempfile.TemporaryDirectory() as tmp:
                    _faulty_run(Path(tmp), inject, after, batch_size, stats, server)


def _faulty_run(
    root: Path,
    inject: Callable[[FakeGeminiServer], None],
    after: int,
    batch_size: int,
    stats: Counter[str],
    server: FakeGeminiServer,
) -> None:
    notes(root / "n", 200)
    server.reset()
    index = Index(root / "ix", embedder=fast(concurrency=4), batch_size=batch_size)
    armed: list[int] = []

    def arm(event: IndexProgress) -> None:
        if event.files_done >= after and not armed:
            armed.append(1)
            inject(server)

    report, stopped, crashed = None, None, False
    try:
        report = index.add(root / "n", progress=arm)
    except MMEmbedError as exc:
        stopped = exc
    except Exception:
        crashed = True
        traceback.print_exc()
    stats["cases"] += 1
    stats["tracebacks"] += crashed
    db = sqlite3.connect(root / "ix" / "catalog.sqlite")
    catalog = {str(p) for (p,) in db.execute("SELECT path FROM files")}
    db.close()
    every = {str(p) for p in (root / "n").iterdir()}
    if report is not None:
        told = {*report.added, *report.unchanged, *(p.path for p in report.failed)}
        told |= {p.path for p in report.skipped}
        stats["files dropped"] += len(every - ({str(Path(p).absolute()) for p in told} & catalog))
    elif stopped is not None:
        left = len(every) - len(catalog)
        said = f"{left} of {len(every)} files left" in str(stopped)
        stats["clear stops"] += said
        stats["files dropped"] += 0 if said else left
        server.reset()
        again = index.add(root / "n")
        stats["files a re-run did not finish"] += (
            len(every) - len(again.added) - len(again.unchanged) - len(again.failed)
        )
    index.close()


# -- names ------------------------------------------------------------------------------------

ODD = [
    b"\xff.txt",
    b"a\xfe\xfd.md",
    b"dir\xc3/x.txt",
    b"new\nline.txt",
    b"cr\rreturn.txt",
    b"\x1b[2Jclear.txt",
    "\u202eevil.txt".encode(),
    "zero\u200bwidth.txt".encode(),
    b"tab\tx.txt",
    b"pct%_.txt",
    b"back\\slash.txt",
    b"x" * 250 + b".txt",
    b"sp ace .txt",
    "日本語.txt".encode(),
    b"\xed\xa0\x80.txt",
]


def names(stats: Counter[str]) -> None:
    for raw in ODD:
        for command in ("index", "index --json", "index FILE", "search", "search --json"):
            with tempfile.TemporaryDirectory() as tmp:
                _odd_name(os.fsencode(tmp), raw, command, stats)
        for command in ("remove", "info"):
            with tempfile.TemporaryDirectory() as tmp:
                _odd_name(os.fsencode(tmp), raw, command, stats)


def _odd_name(tmp: bytes, raw: bytes, command: str, stats: Counter[str]) -> None:
    folder = tmp + b"/n"
    os.makedirs(folder)
    with open(folder + b"/plain.txt", "w") as fh:
        fh.write("a plain note")
    odd = folder + b"/" + raw
    os.makedirs(os.path.dirname(odd), exist_ok=True)
    with open(odd, "w") as fh:
        fh.write("an oddly named note")
    ix, n, name = os.fsdecode(tmp + b"/ix"), os.fsdecode(folder), os.fsdecode(odd)
    if not command.startswith("index"):
        cli("index", n, "--index", ix)
    args = {
        "index": ("index", n),
        "index --json": ("index", n, "--json"),
        "index FILE": ("index", name),
        "search": ("search", "note"),
        "search --json": ("search", "note", "--json"),
        "remove": ("remove", name),
        "info": ("info",),
    }[command]
    code, out, err, crashed = cli(*args, "--index", ix)
    stats["cases"] += 1
    stats["tracebacks"] += crashed
    broken = False
    if command.endswith("--json"):
        json.loads(out)
    else:
        broken = any(ch in out + err for ch in ("\u202e", "\x1b", "\r", "\t"))
        if command == "search":
            broken |= any(not line[:1].isdigit() for line in out.splitlines()[1:])
    stats["terminal output broken"] += broken
    stats["folders blocked"] += code not in (0, 1)


# -- repaid -----------------------------------------------------------------------------------

_CHILD = (
    "import sys\n"
    "from mmembed import GeminiEmbedder, Index\n"
    "Index(sys.argv[1], embedder=GeminiEmbedder(batch_size=10, concurrency=4)).add(sys.argv[2])\n"
)


def repaid(stats: Counter[str], server: FakeGeminiServer) -> None:
    for case in ("400 once", "a refused item", "500s", "dropped", "kill -9 while slow"):
        for n in (30, 100, 250):
            with tempfile.TemporaryDirectory() as tmp:
                _paid_twice(Path(tmp), case, n, stats, server)


def _paid_twice(
    root: Path, case: str, n: int, stats: Counter[str], server: FakeGeminiServer
) -> None:
    notes(root / "n", n)
    server.reset()
    before: Counter[str] = Counter()
    if case == "a refused item":
        (root / "n" / "n007.txt").write_text("POISON here")
        server.refuse_text("POISON")
    elif case == "400 once":
        server.fail_next(1, status=400)
    elif case == "500s":
        server.fail_next(2, status=500)
    elif case == "dropped":
        server.drop_next(2)
    else:
        server.slow_next(1, seconds=4.0)
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root / "ix"), str(root / "n")],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while sum(answered(server).values()) < min(n, 100) - 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # the replies the server sent reach the child
        child.send_signal(signal.SIGKILL)
        child.wait()
        before = answered(server)  # what the killed run was answered (paid for)
        time.sleep(4.5)  # the slow call ends, on the server, for a client that is gone
        server.reset()
    index = Index(root / "ix", embedder=fast(batch_size=10, concurrency=4))
    crashed = False
    try:
        index.add(root / "n")
    except Exception:
        crashed = True
        traceback.print_exc()
    index.close()
    paid = before + answered(server)
    stats["cases"] += 1
    stats["tracebacks"] += crashed
    stats["answered items paid again"] += sum(v - 1 for v in paid.values() if v > 1)
    stats["calls"] += len(server.embed_requests)


def run(areas: list[str]) -> dict[str, Counter[str]]:
    results: dict[str, Counter[str]] = {}
    with FakeGeminiServer() as server:
        os.environ.update(server.env())
        os.environ["MMEMBED_HELPER"] = "off"
        for area in areas:
            stats: Counter[str] = Counter()
            if area == "links":
                links(stats)
            elif area == "dropped":
                dropped(stats, server)
            elif area == "names":
                names(stats)
            else:
                repaid(stats, server)
            results[area] = stats
    return results


if __name__ == "__main__":
    wanted = sys.argv[1:] or ["links", "dropped", "names", "repaid"]
    for area, stats in run(wanted).items():
        print(f"{area:8} " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
