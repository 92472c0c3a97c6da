"""The course at full size: 50 hours of lectures, decks and recordings, indexed and searched.

Generates a course once (cached under ``benchmarks/out/``): lectures (low-resolution video with a
tone track and slides that change every few minutes; one known diagram shown in three of them
at known times), 60-page slide decks (the same diagram on known pages) and audio-only
recordings. Full size is 50 one-hour lectures, 50 decks and 50 hours of audio; ``--scale`` runs a
fraction (at least three of each, so the diagram has its three lectures).

Each video strategy indexes the course in a fresh child process through the real google-genai
SDK against a FakeGeminiServer (its own process) configured like the real service: media calls
slower than text, the inline request-size limit (the Files API above it) and a requests-per-
minute quota answered with 429 and a retry delay. For each strategy it prints wall time, time
spent chunking and waiting on the service, API calls, bytes sent, 429s met, the dry run's
estimated cost next to the cost the server billed, the peak RSS of the indexing process tree
(its decoder processes included), the index size on disk, and search latency (p50/p95 over 200
text and image queries, the query's embedding call timed apart).

The segments strategy also runs its chunkers alone over the course, to set the wall time against
the larger of (chunking alone, the quota's floor). ``--kill`` kills a run with SIGKILL at three
random moments, runs it to the end, and checks the result against an uninterrupted run.

    python benchmarks/course.py                  # full size: about an hour on 2 cores
    python benchmarks/course.py --scale 0.1      # a tenth
    python benchmarks/course.py --scale 0.002 --strategies keyframes --kill   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"

FULL_COUNT = 50  # lectures, decks and recordings at full size
FULL_SECONDS = 3600.0  # one lecture, one recording
DECK_PAGES = 60
DIAGRAM_PAGES = (17, 44)


# ------------------------------------------------------------------------------ the course


def course_shape(scale: float) -> tuple[int, float]:
    """How many of each kind, and how long each lecture and recording is, at ``scale``."""
    count = max(3, min(FULL_COUNT, round(FULL_COUNT * scale)))
    seconds = max(60.0, FULL_COUNT * FULL_SECONDS * scale / count)
    return count, round(seconds, 1)


def _slide_plan(seconds: float, rng: random.Random) -> list[float]:
    """Slide start times: a change every 2–5 minutes (a twelfth of a short lecture)."""
    low, high = (120.0, 300.0) if seconds >= 1800 else (seconds / 16, seconds / 8)
    times = [0.0]
    while True:
        nxt = times[-1] + round(rng.uniform(low, high), 1)
        if nxt > seconds - low / 2:
            return times
        times.append(nxt)


def _diagram() -> bytes:
    from mmembed.testing.media import make_image

    return make_image("PNG", (192, 108), caption="the diagram", seed=7)


def _make_lecture(job: tuple[str, float, list[tuple[float, str | bytes]]]) -> str:
    from mmembed.testing.media import make_lecture

    path, seconds, slides = job
    tmp = Path(path + ".part")
    make_lecture(slides, seconds=seconds, path=tmp)
    tmp.rename(path)
    return path


def make_course(scale: float, root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The course at ``scale`` (generated once) and its manifest of planted diagrams."""
    count, seconds = course_shape(scale)
    root = root or OUT / f"course-{count}x{int(seconds)}s"
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        return root, json.loads(manifest_path.read_text())
    from mmembed.testing.media import make_audio, make_pdf

    print(f"generating the course in {root} (once)…", file=sys.stderr, flush=True)
    for sub in ("lectures", "decks", "recordings"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    diagram = _diagram()
    planted_in = sorted({0, count // 2, count - 1})
    jobs = []
    planted_lectures = []
    for i in range(count):
        starts = _slide_plan(seconds, rng)
        slides: list[tuple[float, str | bytes]] = [
            (t, f"Lesson {i + 1}, slide {k + 1}") for k, t in enumerate(starts)
        ]
        if i in planted_in:
            k = max(1, round(len(slides) * (0.3 + 0.2 * planted_in.index(i))))
            k = min(k, len(slides) - 1)
            end = starts[k + 1] if k + 1 < len(starts) else seconds
            slides[k] = (starts[k], diagram)
            planted_lectures.append(
                {"file": f"lectures/lecture{i + 1:02d}.mp4", "start": starts[k], "end": end}
            )
        path = root / "lectures" / f"lecture{i + 1:02d}.mp4"
        if not path.exists():
            jobs.append((str(path), seconds, slides))
    with mp.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as pool:
        for done in pool.imap_unordered(_make_lecture, jobs):
            print(f"  {Path(done).name}", file=sys.stderr, flush=True)
    planted_pages = []
    for i in range(count):
        pages = set(DIAGRAM_PAGES) if i in planted_in else set()
        texts = [
            f"Lesson {i + 1}, slide {p}\nNotes on part {p} of lesson {i + 1}: "
            + " ".join(rng.choice(_WORDS) for _ in range(40))
            for p in range(1, DECK_PAGES + 1)
        ]
        make_pdf(texts, image=pages, path=root / "decks" / f"deck{i + 1:02d}.pdf")
        for page in sorted(pages):
            planted_pages.append({"file": f"decks/deck{i + 1:02d}.pdf", "page": page})
        rec = root / "recordings" / f"recording{i + 1:02d}.wav"
        if not rec.exists():
            make_audio(
                "WAV", seconds=seconds, sample_rate=16000, seed=i, path=rec.with_suffix(".part")
            )
            rec.with_suffix(".part").rename(rec)
    manifest = {
        "scale": scale,
        "count": count,
        "seconds": seconds,
        "lectures": planted_lectures,
        "pages": planted_pages,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return root, manifest


_WORDS = [
    "cell",
    "energy",
    "membrane",
    "gradient",
    "enzyme",
    "protein",
    "glucose",
    "oxygen",
    "carbon",
    "cycle",
    "light",
    "water",
    "reaction",
    "catalyst",
    "neuron",
    "synapse",
    "tissue",
    "species",
    "evolution",
    "genome",
    "lipid",
    "acid",
]


# ------------------------------------------------------------------------------ the service

SERVICE = {
    "latency": 0.2,  # a text call
    "latency_by_modality": {"image": 1.0, "audio": 1.0, "video": 1.0, "pdf": 1.0},
    "requests_per_minute": 150,
}
MODEL = "gemini-embedding-2"
DIMENSIONS = 768


def _serve(conn: Any, rpm: int) -> None:
    from mmembed.testing import FakeGeminiServer

    service = {**SERVICE, "requests_per_minute": rpm}
    with FakeGeminiServer(keep_bodies=False, **service) as server:  # type: ignore[arg-type]
        conn.send(server.base_url)
        while True:
            command = conn.recv()
            if command == "stop":
                break
            if command == "reset":  # a fresh quota window and bill for the next strategy
                server.reset()
            u = server.usage
            conn.send(
                {
                    "calls": u.calls,
                    "items": u.items,
                    "requests": u.requests,
                    "bytes": u.bytes_received,
                    "rate_limited": u.rate_limited,
                    "cost_usd": u.cost_usd,
                }
            )


class Service:
    """The fake service in its own process (its JSON work never competes for our GIL)."""

    def __init__(self, rpm: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.rpm = rpm
        self.proc = ctx.Process(target=_serve, args=(child, rpm), daemon=True)
        self.proc.start()
        self.base_url = self.conn.recv()

    def usage(self, *, reset: bool = False) -> dict[str, Any]:
        self.conn.send("reset" if reset else "usage")
        return dict(self.conn.recv())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "GOOGLE_API_KEY"}
        env.update(
            {
                "GOOGLE_GEMINI_BASE_URL": self.base_url,
                "GEMINI_API_KEY": "fake-key",
                "GOOGLE_GENAI_API_VERSION": "v1",
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)


# ------------------------------------------------------------------------------ child tasks


def _index(ix: str, strategy: str) -> Any:
    from mmembed.embedders.gemini import GeminiEmbedder
    from mmembed.index import Index

    return Index(
        ix,
        embedder=GeminiEmbedder(MODEL, dimensions=DIMENSIONS),
        chunk_options={"video": {"strategy": strategy}},
    )


def task_index(course: str, ix: str, strategy: str, dry: bool) -> dict[str, Any]:
    index = _index(ix, strategy)
    report = index.add(course, dry_run=dry, respect_ignore=False)
    index.close()
    out = report.to_dict()
    out.pop("added", None)
    out.pop("unchanged", None)
    return out


def task_chunk(course: str, strategy: str) -> dict[str, Any]:
    """The index's chunkers alone over the course (nothing embedded): chunking's own time."""
    import time

    from mmembed._index_config import Chunkers
    from mmembed.content import load
    from mmembed.limits import limits_for

    started = time.perf_counter()
    chunkers = Chunkers({"video": {"strategy": strategy}}, limits=limits_for(MODEL))
    count = 0
    for path in sorted(Path(course).rglob("*")):
        if path.is_file() and path.suffix in (".mp4", ".wav", ".pdf"):
            part = load(path)
            for _chunk in chunkers.for_part(part.modality).chunk(part):
                count += 1
    return {"seconds": time.perf_counter() - started, "chunks": count}


def task_search(course: str, ix: str, strategy: str, manifest: dict[str, Any]) -> dict[str, Any]:
    import statistics
    import time

    from mmembed.content import Modality, Pdf, Video
    from mmembed.protocols import PageSpan, TimeSpan

    index = _index(ix, strategy)
    topics = _WORDS
    texts = [f"which lesson explains {topics[i % len(topics)]} and part {i}" for i in range(100)]
    # image queries: keyframes of the planted lectures (and pages), and other slides
    chunker = index._chunkers.for_part(Modality.VIDEO)
    planted: list[tuple[Any, str, Any]] = []  # (query, file, where it must be)
    images = []
    for lec in manifest["lectures"]:
        path = Path(course) / lec["file"]
        for chunk in chunker.chunk(Video.from_path(path)):
            span = chunk.span
            assert isinstance(span, TimeSpan)
            if len(images) < 100:
                images.append(chunk.content)
            if span.start <= lec["start"] + 1.0 and span.end > lec["start"] + 1.0:
                planted.append((chunk.content, lec["file"], lec["start"]))
    pdf = index._chunkers.for_part(Modality.PDF)
    for page in manifest["pages"]:
        for chunk in pdf.chunk(Pdf.from_path(Path(course) / page["file"])):
            span = chunk.span
            assert isinstance(span, PageSpan)
            if span.first <= page["page"] <= span.last:
                planted.append((chunk.content, page["file"], page["page"]))
    queries = texts + (images * 100)[: 200 - len(texts)]
    embed_ms, search_ms, text_ms = [], [], []
    for q in queries:  # first: the embedding call alone (a miss, then in the cache)
        start = time.perf_counter()
        index._embed_with.embed([q], task=index_task(q))
        embed_ms.append((time.perf_counter() - start) * 1000)
    for q in queries:  # then search with the vector known (a cache hit)
        start = time.perf_counter()
        index.search(q, k=10)
        ms = (time.perf_counter() - start) * 1000
        search_ms.append(ms)
        if isinstance(q, str):
            text_ms.append(ms)
    found = 0
    checks = []
    for q, file, where in planted:
        results = index.search(q, k=5, group=True)
        top = results[0]
        ok = top.source.endswith(file) and any(
            (isinstance(r, TimeSpan) and r.start <= where + 1.0 < r.end)
            or (isinstance(r, PageSpan) and r.first <= where <= r.last)
            for r in top.ranges
        )
        found += ok
        checks.append(f"{file} {where:g}: {top.location} {'ok' if ok else 'MISSED'}")
    index.close()

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]

    return {
        "queries": len(queries),
        "embed_p50_ms": pct(embed_ms, 50),
        "embed_p95_ms": pct(embed_ms, 95),
        "search_p50_ms": pct(search_ms, 50),
        "search_p95_ms": pct(search_ms, 95),
        "text_search_p95_ms": pct(text_ms, 95),
        "planted": len(planted),
        "planted_found": found,
        "checks": checks,
    }


def index_task(query: Any) -> Any:
    from mmembed.content import Task

    return Task.QUERY if isinstance(query, str) else Task.DOCUMENT


# ------------------------------------------------------------------------------ measuring


def run_child(
    args: list[str], env: dict[str, str], kill_after: float | None = None
) -> dict[str, Any]:
    """Run a task in a fresh process; its JSON answer, wall time and the tree's peak RSS."""
    import subprocess
    import time

    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--task", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        if kill_after is not None and time.perf_counter() - started > kill_after:
            proc.kill()
            proc.wait()
            return {"killed": True, "wall": time.perf_counter() - started}
        rss = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                rss += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peak = max(peak, rss)
        time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"task {args[0]} failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall"] = wall
    result["peak_rss_mb"] = peak / 2**20
    return result


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(
    strategy: str, course: Path, manifest: dict[str, Any], service: Service, work: Path
) -> dict[str, Any]:
    import shutil

    ix = work / f"ix-{strategy}"
    shutil.rmtree(ix, ignore_errors=True)
    env = service.env()
    print(f"[{strategy}] dry run…", file=sys.stderr, flush=True)
    dry = run_child(["index", str(course), str(ix) + "-dry", strategy, "1"], env)
    shutil.rmtree(str(ix) + "-dry", ignore_errors=True)
    row: dict[str, Any] = {"strategy": strategy, "plan": dry["plan"], "estimate": dry["cost_usd"]}
    if strategy == "segments":
        print(f"[{strategy}] chunking alone…", file=sys.stderr, flush=True)
        row["chunk_alone"] = run_child(["chunk", str(course), strategy], env)["seconds"]
    before = service.usage(reset=True)
    print(f"[{strategy}] indexing…", file=sys.stderr, flush=True)
    run = run_child(["index", str(course), str(ix), strategy, "0"], env)
    after = service.usage()
    billed = {k: after[k] - before[k] for k in after}
    row.update(
        wall=run["wall"],
        seconds=run["seconds"],
        chunk_s=run["chunk_seconds"],
        wait_s=run["wait_seconds"],
        calls=billed["calls"],
        requests=billed["requests"],
        bytes=billed["bytes"],
        rate_limited=billed["rate_limited"],
        billed=billed["cost_usd"],
        reported=run["cost_usd"],
        chunks=run["chunks"],
        failed=run["failed"],
        rss=run["peak_rss_mb"],
        disk=dir_size(ix),
        # a per-minute quota lets a minute's calls go at once: C calls need ceil(C / rpm) - 1
        # full minutes of waiting at least
        floor=max(0, math.ceil(billed["calls"] / service.rpm) - 1) * 60.0,
    )
    print(f"[{strategy}] searching…", file=sys.stderr, flush=True)
    row["search"] = run_child(["search", str(course), str(ix), strategy, json.dumps(manifest)], env)
    return row


def kill_check(course: Path, service: Service, work: Path, strategy: str, seed: int) -> str:
    """Kill a run with SIGKILL at three random moments, finish it, compare with a clean run."""
    import shutil
    import sqlite3

    env = service.env()
    ref, killed = work / "ix-ref", work / "ix-killed"
    for d in (ref, killed):
        shutil.rmtree(d, ignore_errors=True)
    before = service.usage()
    clean = run_child(["index", str(course), str(ref), strategy, "0"], env)
    ref_items = service.usage()["items"] - before["items"]
    rng = random.Random(seed)
    before = service.usage()
    kills = []
    for _ in range(3):
        at = rng.uniform(0.15, 0.8) * clean["wall"]
        kills.append(round(at, 1))
        run_child(["index", str(course), str(killed), strategy, "0"], env, kill_after=at)
    run_child(["index", str(course), str(killed), strategy, "0"], env)
    items = service.usage()["items"] - before["items"]

    def content(ix: Path) -> tuple[list[tuple[Any, ...]], dict[str, bytes]]:
        db = sqlite3.connect(ix / "catalog.sqlite")
        files = db.execute("select path, chunks, status from files order by path").fetchall()
        vecs = dict(db.execute("select id, vector from chunks").fetchall())
        db.close()
        return files, vecs

    (rf, rv), (kf, kv) = content(ref), content(killed)
    once = len({f[0] for f in kf}) == len(kf) and [f[0] for f in kf] == [f[0] for f in rf]
    same = rf == kf and rv == kv
    extra = items - ref_items
    return (
        f"kill -9 at {kills} s, then a full run: every file exactly once: {once}; index identical "
        f"to an uninterrupted run: {same}; items sent {items} vs {ref_items} uninterrupted "
        f"({extra} sent twice: calls in flight at the kills, at most 3 × batch_size = 768)"
    )


def table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("strategy", lambda r: r["strategy"]),
        ("wall s", lambda r: f"{r['wall']:.0f}"),
        ("chunking s", lambda r: f"{r['chunk_s']:.0f}"),
        ("waiting s", lambda r: f"{r['wait_s']:.0f}"),
        ("calls", lambda r: f"{r['calls']:,}"),
        ("MB sent", lambda r: f"{r['bytes'] / 1e6:,.0f}"),
        ("429s", lambda r: f"{r['rate_limited']:,}"),
        ("estimate $", lambda r: f"{r['estimate']:,.2f}"),
        ("billed $", lambda r: f"{r['billed']:,.2f}"),
        ("peak RSS MB", lambda r: f"{r['rss']:,.0f}"),
        ("index MB", lambda r: f"{r['disk'] / 1e6:,.0f}"),
        (
            "embed p50/p95 ms",
            lambda r: f"{r['search']['embed_p50_ms']:.0f}/{r['search']['embed_p95_ms']:.0f}",
        ),
        (
            "search p50/p95 ms",
            lambda r: f"{r['search']['search_p50_ms']:.1f}/{r['search']['search_p95_ms']:.1f}",
        ),
    ]
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f(r) for _, f in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full course")
    parser.add_argument("--generate-only", action="store_true", help="only make the course")
    parser.add_argument(
        "--strategies", default="segments,keyframes,both", help="video strategies to run"
    )
    parser.add_argument("--kill", action="store_true", help="also the kill -9 check")
    parser.add_argument("--kill-scale", type=float, default=None, help="scale of the kill check")
    parser.add_argument(
        "--rpm",
        type=int,
        default=int(SERVICE["requests_per_minute"]),
        help="the quota",  # type: ignore[call-overload]
    )
    parser.add_argument("--task", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.task:
        name, *rest = args.task
        if name == "index":
            result = task_index(rest[0], rest[1], rest[2], rest[3] == "1")
        elif name == "chunk":
            result = task_chunk(rest[0], rest[1])
        else:
            result = task_search(rest[0], rest[1], rest[2], json.loads(rest[3]))
        print(json.dumps(result))
        return 0
    import datetime
    import platform

    root, manifest = make_course(args.scale)
    if args.generate_only:
        print(root)
        return 0
    work = OUT / "work"
    work.mkdir(parents=True, exist_ok=True)
    service = Service(args.rpm)
    rows = []
    notes = []
    try:
        for strategy in args.strategies.split(","):
            row = measure(strategy, root, manifest, service, work)
            rows.append(row)
            search = row["search"]
            notes.append(
                f"{strategy}: {row['chunks']:,} chunks, {len(row['failed'])} failed; plan "
                + ", ".join(
                    f"{p['label']} {p['chunks']:,} chunks ${p['cost_usd']:,.2f}"
                    for p in row["plan"]
                )
                + f"; reported ${row['reported']:,.2f}; planted keyframes and pages found "
                f"{search['planted_found']}/{search['planted']}"
            )
            notes += [f"    {c}" for c in search["checks"]]
        if args.kill:
            k_root, _ = make_course(args.kill_scale if args.kill_scale is not None else args.scale)
            notes.append(kill_check(k_root, service, work, args.strategies.split(",")[0], 7))
    finally:
        service.close()
    count, seconds = course_shape(args.scale)
    print(
        f"course: {count} lectures × {seconds / 60:.0f} min, {count} decks × {DECK_PAGES} pages, "
        f"{count} recordings × {seconds / 60:.0f} min; {datetime.date.today()}, "
        f"{platform.machine()} × {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"service: text calls {SERVICE['latency']} s, media calls 1.0 s, "
        f"{args.rpm} requests a minute, 20 MB inline"
    )
    print(table(rows))
    print()
    for row in rows:
        s = row["search"]
        verdicts = [
            f"text search p95 {s['text_search_p95_ms']:.1f} ms (target < 50): "
            + ("met" if s["text_search_p95_ms"] < 50 else "MISSED"),
            f"peak RSS {row['rss']:.0f} MB (target < 1024): "
            + ("met" if row["rss"] < 1024 else "MISSED"),
            f"estimate ${row['estimate']:,.2f} vs billed ${row['billed']:,.2f} "
            f"({(row['estimate'] / max(row['billed'], 1e-9) - 1) * 100:+.1f} %, target ±10 %): "
            + (
                "met"
                if row["billed"] and abs(row["estimate"] / row["billed"] - 1) <= 0.10
                else "MISSED"
            ),
        ]
        if row["strategy"] == "keyframes":
            verdicts.append(
                f"wall {row['wall'] / 60:.1f} min (target < 15 min): "
                + ("met" if row["wall"] < 900 else "MISSED")
            )
        if "chunk_alone" in row:
            bound = max(row["chunk_alone"], row["floor"])
            verdicts.append(
                f"wall {row['wall']:.0f} s = {row['wall'] / bound:.2f}× max(chunking alone "
                f"{row['chunk_alone']:.0f} s, quota floor {row['floor']:.0f} s) (target ≤ 1.3×): "
                + ("met" if row["wall"] <= 1.3 * bound else "MISSED")
            )
        print(f"{row['strategy']}: " + "; ".join(verdicts))
    print()
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
