"""What each store costs on one machine: FaissStore, QdrantStore (local mode), MilvusStore (Lite).

For ``N`` random unit vectors of ``D`` dimensions (100,000 x 768 by default), each store is built
in a fresh process and measured there:

- **add**: wall time of ``store.add`` for every vector (in batches of 10,000, as an index adds),
  and vectors per second;
- **search p50**: median latency of one ``search(query, k=10)``, over 100 queries;
- **batch**: wall time of one ``search_batch`` of 100 queries;
- **memory**: resident memory the store added, its own process and any it started (Milvus Lite
  runs a server process; Qdrant's local mode and FAISS live in the caller's);
- **disk**: bytes on disk once the store holds everything (FaissStore after ``save``; Qdrant
  and Milvus write as they go);
- **top-1 agrees**: how many of the queries' best hits are the exact nearest neighbour
  (numpy), so a fast but wrong store shows.

Ratios are against FaissStore measured in the same run. Run from the repository root::

    python benchmarks/stores_compare.py            # 100k x 768 (several minutes)
    python benchmarks/stores_compare.py --quick    # 2,000 x 64, seconds

A store whose extra is not installed is reported as such and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

K = 10
BATCH = 10_000
STORES = {
    "faiss": "FaissStore (Flat, in memory, saved)",
    "qdrant-memory": "QdrantStore (local mode, in memory)",
    "qdrant": "QdrantStore (local mode, on disk)",
    "milvus": "MilvusStore (Milvus Lite file)",
}


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def rss(proc: Any) -> int:
    """Resident bytes of ``proc`` and every process it started."""
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(Exception):  # a child that just ended
            total += child.memory_info().rss
    return int(total)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(kind: str, n: int, d: int, queries: int) -> dict[str, Any]:
    """Build one store and measure it (runs in a process of its own), in a folder removed after."""
    work = Path(tempfile.mkdtemp(prefix=f"stores-{kind}-"))
    try:
        return _measure(kind, n, d, queries, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(kind: str, n: int, d: int, queries: int, work: Path) -> dict[str, Any]:
    import psutil

    vectors = unit_rows(n, d, seed=1)
    qs = unit_rows(queries, d, seed=2)
    ids = [f"doc-{i}" for i in range(n)]
    exact = np.argmax(qs @ vectors.T, axis=1)
    from mmembed.stores import FaissStore, MilvusStore, QdrantStore

    me = psutil.Process()
    before = rss(me)  # the data and the libraries are not the store's
    if kind == "faiss":
        store: Any = FaissStore(d, index="Flat")
    elif kind.startswith("qdrant"):
        store = QdrantStore(d, ":memory:" if kind == "qdrant-memory" else str(work / "qdrant"))
    else:
        store = MilvusStore(d, str(work / "vectors.db"))
    start = time.perf_counter()
    for i in range(0, n, BATCH):
        rows = range(i, min(i + BATCH, n))
        store.add(ids[i : i + BATCH], vectors[i : i + BATCH], [{"n": j} for j in rows])
    add = time.perf_counter() - start
    assert len(store) == n
    store.search(qs[0], k=K)  # warm-up
    store.search_batch(qs[:2], k=K)
    latencies = []
    top1 = 0
    for i, query in enumerate(qs):
        t = time.perf_counter()
        hits = store.search(query, k=K)
        latencies.append(time.perf_counter() - t)
        top1 += hits[0].id == ids[exact[i]]
    t = time.perf_counter()
    store.search_batch(qs, k=K)
    batch = time.perf_counter() - t
    memory = rss(me) - before
    if kind == "faiss":
        store.save(work / "faiss")
    else:
        store.close()
    return {
        "kind": kind,
        "add_s": add,
        "p50_ms": statistics.median(latencies) * 1e3,
        "batch_ms": batch * 1e3,
        "memory_mb": memory / 1e6,
        "disk_mb": du(work) / 1e6,
        "top1": top1,
        "queries": queries,
    }


def run_child(kind: str, n: int, d: int, queries: int) -> dict[str, Any] | str:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "-n", str(n), "-d", str(d), "-q", str(queries)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return tail[:120]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _ratios(result: dict[str, Any], base: dict[str, Any]) -> Any:
    def ratio(key: str) -> str:
        return "" if result is base else f" ({result[key] / max(base[key], 1e-9):.1f}x)"

    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 x 64, 20 queries")
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("-d", type=int, default=768)
    parser.add_argument("-q", type=int, default=100)
    parser.add_argument("--child", choices=sorted(STORES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.d, args.q = 2_000, 64, 20
    if args.child:
        print(json.dumps(measure(args.child, args.n, args.d, args.q)))
        return

    print(f"# stores: {args.n:,} x {args.d} float32 unit vectors, k={K}, {args.q} queries")
    print(
        f"{dt.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    print()
    print("| store | add | vectors/s | search p50 | batch of q | memory | disk | top-1 exact |")
    print("|---|---|---|---|---|---|---|---|")
    base: dict[str, Any] | None = None
    for kind, name in STORES.items():
        result = run_child(kind, args.n, args.d, args.q)
        if isinstance(result, str):
            print(f"| {name} | not measured: {result} | | | | | | |")
            continue
        base = base or result
        ratio = _ratios(result, base)
        print(
            f"| {name} | {result['add_s']:.2f} s{ratio('add_s')} | {args.n / result['add_s']:,.0f} "
            f"| {result['p50_ms']:.2f} ms{ratio('p50_ms')} | {result['batch_ms']:.1f} ms"
            f"{ratio('batch_ms')} | {result['memory_mb']:,.0f} MB | {result['disk_mb']:,.0f} MB "
            f"| {result['top1']}/{result['queries']} |"
        )
    print()
    print("Ratios are against FaissStore in this run; memory is what the store added (its server ")
    print("process included), disk what it left in its folder.")


if __name__ == "__main__":
    main()
