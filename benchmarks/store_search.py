"""Store search speed next to raw numpy / FAISS and the machine's own limits, in one run.

For each thread count (1, 2 and all cores; each in a subprocess started with ``OMP_NUM_THREADS``
and ``OPENBLAS_NUM_THREADS`` set, since BLAS and OpenMP fix their thread pools at import) it
prints, for 100k x 768 random unit vectors (k = 10) and batches of 1, 8, 32, 128 and 1000
queries:

- the limits measured on that many threads: the bandwidth floor of one query (the matrix's bytes
  / the rate at which numpy reads the same bytes, the matrix split into one block per thread)
  and the GEMM rate (a float32 matrix product of the batch's shape, and of 1000 x 65536 x d);
- the raw kernels: numpy (GEMV or GEMM, then ``argpartition``), FAISS (``faiss.knn``, the
  kernel of ``IndexFlatIP``; for batches also with its BLAS threshold at 0), FAISS's scan on
  one row block per thread, and numpy's GEMM with FAISS's heaps;
- ``InMemoryStore`` and ``FaissStore("Flat")``, each as a ratio to the fastest raw kernel of
  its row, to the floor (one query) and to the GEMM rate (batches);

then a summary against the targets, and the Matryoshka funnel (``FaissStore(3072,
funnel_dimensions=256)``, its first pass exact over the prefix (``Flat``) or through an
``HNSW32`` graph on it) on Matryoshka-like vectors: speed-up over exact flat search at 3072 and
recall@10, for single queries and batches.

Run from the repository root::

    python benchmarks/store_search.py            # the full run (about half an hour)
    python benchmarks/store_search.py --quick    # a small smoke run (seconds)

The machine may be shared. Each kernel is timed in turns with the others (a fresh random order
each round, a short pause before each call so that one kernel's spinning BLAS or OpenMP threads
do not slow the next), medians are reported (best in brackets), each round waits up to a few
seconds for other processes to leave the CPUs idle, and the load average and the CPU share other
processes took during the rounds are printed with each table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmembed.stores import FaissStore, InMemoryStore

K = 10
RAW = (
    "numpy",
    "FAISS knn",
    "FAISS knn, BLAS",
    "FAISS scan, row blocks",
    "numpy GEMM + FAISS heaps",
)
STORES = ("InMemoryStore", "FaissStore")


# -- timing on a shared machine ------------------------------------------------------------------


def _cpu_ticks() -> tuple[int, int] | None:
    """Busy ticks of the whole machine and of this process (``None`` off Linux)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        with open("/proc/self/stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system irq softirq steal
    return busy, int(own[11]) + int(own[12])


class Foreign:
    """CPU cores other processes used while a measurement ran."""

    def __init__(self) -> None:
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = _cpu_ticks()
        self._wall = time.perf_counter()

    def cores(self) -> float:
        now = _cpu_ticks()
        if now is None or self._start is None:
            return 0.0
        wall = max(time.perf_counter() - self._wall, 1e-9)
        return max(0.0, (now[0] - self._start[0] - (now[1] - self._start[1])) / self._hz / wall)


def wait_quiet(limit: float) -> None:
    """Wait (at most ``limit`` seconds) until other processes use under a third of a core."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        probe = Foreign()
        time.sleep(0.25)
        if probe.cores() < 0.33:
            return


class Timer:
    """Times several paths in turns so that each sees the same machine (see the module doc)."""

    def __init__(self, *, gap: float, quiet: float) -> None:
        self.gap, self.quiet = gap, quiet
        self.foreign: list[float] = []

    def run(
        self, paths: dict[str, Callable[[], Any]], reps: int, budget: float
    ) -> dict[str, tuple[float, float]]:
        start = time.perf_counter()
        for fn in paths.values():  # warm-up (page cache, thread pools)
            time.sleep(self.gap)
            fn()
        round_time = time.perf_counter() - start
        reps = max(1, min(reps, int(budget / max(round_time, 1e-9))))
        times: dict[str, list[float]] = {name: [] for name in paths}
        names = list(paths)
        shuffle = np.random.default_rng(0)
        for _ in range(reps):
            if self.quiet:
                wait_quiet(self.quiet)
            foreign = Foreign()
            for j in shuffle.permutation(len(names)).tolist():
                time.sleep(self.gap)
                begin = time.perf_counter()
                paths[names[j]]()
                times[names[j]].append(time.perf_counter() - begin)
            self.foreign.append(foreign.cores())
        return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def load() -> str:
    return "load avg " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def fmt_ms(t: tuple[float, float]) -> str:
    return f"{t[0] * 1e3:.2f} ({t[1] * 1e3:.2f})"


# -- the machine's limits ------------------------------------------------------------------------


def read_rate(timer: Timer, matrix: np.ndarray, pool: ThreadPoolExecutor, threads: int) -> float:
    """Bytes/s at which numpy streams ``matrix``: the better of two reductions (sum and max),
    one row block per thread (numpy releases the GIL)."""
    blocks = np.array_split(matrix.reshape(-1), threads)

    def reduce(kernel: Any) -> Callable[[], Any]:
        return lambda: [f.result() for f in [pool.submit(kernel, b) for b in blocks]]

    paths = {"sum": reduce(np.add.reduce), "max": reduce(np.maximum.reduce)}
    times = timer.run(paths, 15, budget=20.0)
    return matrix.nbytes / min(t[0] for t in times.values())


def gemm_seconds(timer: Timer, queries: np.ndarray, matrix: np.ndarray, reps: int) -> float:
    """Median seconds of the bare float32 product ``queries @ matrix.T`` on numpy's BLAS: the
    faster of one call into a reused buffer and 1024-row blocks into a reused block (faster
    for small batches)."""
    nq, n = queries.shape[0], matrix.shape[0]
    out = np.empty((nq, n), dtype=np.float32)
    block = np.empty((nq, min(n, 1024)), dtype=np.float32)

    def blocks() -> None:
        for lo in range(0, n, 1024):
            hi = min(n, lo + 1024)
            np.matmul(queries, matrix[lo:hi].T, out=block[:, : hi - lo])

    paths = {"whole": lambda: np.matmul(queries, matrix.T, out=out), "blocks": blocks}
    return min(t[0] for t in timer.run(paths, reps, 20.0).values())


# -- raw kernels, written out plainly --------------------------------------------------------------


def unit_rows(x: np.ndarray) -> np.ndarray:
    faiss.normalize_L2(x)
    return x


def numpy_raw(matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """One GEMV (one query) or one GEMM, then ``argpartition`` and a sort of the k best."""
    scores = (matrix @ queries[0])[None, :] if queries.shape[0] == 1 else queries @ matrix.T
    top = np.argpartition(scores, scores.shape[1] - K, axis=1)[:, -K:]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)


def faiss_raw(matrix: np.ndarray, queries: np.ndarray) -> Any:
    return faiss.knn(queries, matrix, K, metric=faiss.METRIC_INNER_PRODUCT)


def faiss_blas_raw(matrix: np.ndarray, queries: np.ndarray) -> Any:
    """``faiss.knn`` on FAISS's BLAS whatever the batch size (it scans query by query below
    ``distance_compute_blas_threshold``)."""
    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 0
    try:
        return faiss_raw(matrix, queries)
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


def scan_raw(matrix: np.ndarray, queries: np.ndarray, pool: ThreadPoolExecutor, parts: int) -> Any:
    """FAISS's scan (``knn_inner_product``) on one row block per thread, the results merged."""
    nq, d = queries.shape

    def part(block: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.empty((nq, K), dtype=np.float32)
        labels = np.empty((nq, K), dtype=np.int64)
        faiss.knn_inner_product(
            faiss.swig_ptr(queries), faiss.swig_ptr(block), d, nq, block.shape[0], K,
            faiss.swig_ptr(scores), faiss.swig_ptr(labels),
        )  # fmt: skip
        return scores, labels + offset

    step = -(-matrix.shape[0] // parts)
    futures = [
        pool.submit(part, matrix[lo : lo + step], lo) for lo in range(0, matrix.shape[0], step)
    ]
    results = [f.result() for f in futures]
    scores = np.concatenate([r[0] for r in results], axis=1)
    labels = np.concatenate([r[1] for r in results], axis=1)
    order = np.argsort(-scores, axis=1)[:, :K]
    return np.take_along_axis(labels, order, axis=1)


def gemm_heaps_raw(matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """numpy GEMM into one reused 64 MB score block, FAISS heaps for the top-k."""
    nq, n = queries.shape[0], matrix.shape[0]
    scores = np.empty((nq, K), dtype=np.float32)
    labels = np.empty((nq, K), dtype=np.int64)
    heaps = faiss.float_minheap_array_t()
    heaps.k, heaps.nh = K, nq
    heaps.val, heaps.ids = faiss.swig_ptr(scores), faiss.swig_ptr(labels)
    heaps.heapify()
    rows = max(1024, (1 << 24) // nq)
    buffer = np.empty(nq * min(n, rows), dtype=np.float32)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = buffer[: nq * (stop - start)].reshape(nq, stop - start)
        np.matmul(queries, matrix[start:stop].T, out=block)
        heaps.addn(stop - start, faiss.swig_ptr(block), start, 0, nq)
    heaps.reorder()
    return labels


# -- one thread count (a worker process) -----------------------------------------------------------


def exact_section(
    n: int, d: int, batches: list[int], threads: int, quick: bool
) -> tuple[list[str], dict[str, Any]]:
    timer = Timer(gap=0.0 if quick else 0.1, quiet=0.0 if quick else 5.0)
    rng = np.random.default_rng(d)
    data = unit_rows(rng.standard_normal((n, d), dtype=np.float32))
    queries = unit_rows(rng.standard_normal((max(batches), d), dtype=np.float32))
    ids = [str(i) for i in range(n)]
    memory = InMemoryStore(d)
    memory.add(ids, data)
    del data
    gc.collect()
    flat = FaissStore(d)
    flat.add(ids, memory.vectors)
    matrix = memory.vectors  # the raw kernels scan the very same array
    pool = ThreadPoolExecutor(threads, initializer=faiss.omp_set_num_threads, initargs=(1,))

    peak_rows = min(n, 65536)
    peak_queries = queries[: min(1000, queries.shape[0])]

    def limits() -> tuple[float, float]:
        """The floor of one query (s) and the peak GEMM rate (FLOP/s), measured now."""
        floor = matrix.nbytes / read_rate(timer, matrix, pool, threads)
        peak = 2.0 * peak_queries.shape[0] * peak_rows * d
        return floor, peak / gemm_seconds(
            timer, peak_queries, matrix[:peak_rows], 3 if quick else 7
        )

    before = limits()
    measured = []
    for nq in batches:
        q = np.ascontiguousarray(queries[:nq])
        want = numpy_raw(matrix, q[:1])[0, 0]  # sanity: every path finds the same top hit
        assert memory.search(q[0], 1)[0].id == flat.search(q[0], 1)[0].id == str(want)
        paths: dict[str, Callable[[], Any]] = {
            "numpy": lambda q=q: numpy_raw(matrix, q),
            "FAISS knn": lambda q=q: faiss_raw(matrix, q),
        }
        if nq > 1:
            paths["FAISS knn, BLAS"] = lambda q=q: faiss_blas_raw(matrix, q)
        if nq <= 32:  # it reads the matrix once per query: far behind for larger batches
            paths["FAISS scan, row blocks"] = lambda q=q: scan_raw(matrix, q, pool, threads)
        if nq > 1:
            paths["numpy GEMM + FAISS heaps"] = lambda q=q: gemm_heaps_raw(matrix, q)
            paths["InMemoryStore"] = lambda q=q: memory.search_batch(q, K)
            paths["FaissStore"] = lambda q=q: flat.search_batch(q, K)
        else:
            paths["InMemoryStore"] = lambda q=q: memory.search(q[0], K)
            paths["FaissStore"] = lambda q=q: flat.search(q[0], K)
        reps = 3 if quick else {1: 40, 8: 25, 32: 15, 128: 9}.get(nq, 5)
        times = timer.run(paths, reps, budget=5.0 if quick else 90.0)
        gemm = gemm_seconds(timer, q, matrix, 2 if quick else 7) if nq > 1 else None
        measured.append((nq, times, gemm))
    # the load of a shared machine drifts: the limits are measured before and after, the
    # better of the two kept
    after = limits()
    floor, peak = min(before[0], after[0]), max(before[1], after[1])

    table = [
        f"\n## {threads} thread{'s' if threads > 1 else ''} (OMP_NUM_THREADS={threads}, "
        f"OPENBLAS_NUM_THREADS={threads}) [{load()}]",
        f"{n:,} x {d} float32 ({matrix.nbytes / 1e9:.2f} GB), k={K}. The floor of one query: "
        f"{floor * 1e3:.2f} ms (numpy reads {matrix.nbytes / floor / 1e9:.1f} GB/s); GEMM "
        f"{peak_queries.shape[0]} x {peak_rows} x {d}: {peak / 1e9:.0f} GFLOP/s",
        "",
        "| batch | path | ms median (best) | x fastest raw | x floor | GFLOP/s | % of GEMM "
        "| % of peak GEMM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    result: dict[str, Any] = {"threads": threads, "floor": floor, "peak": peak, "rows": []}
    for nq, times, gemm in measured:
        fastest = min((name for name in times if name in RAW), key=lambda p: times[p][0])
        flops = 2.0 * nq * n * d
        for name, t in times.items():
            row = {"batch": nq, "path": name, "ms": t[0] * 1e3, "fastest": fastest}
            row["x_fastest"] = t[0] / times[fastest][0]
            cells = [f"{row['x_fastest']:.2f}x"]
            if gemm is None:
                row["x_floor"] = t[0] / floor
                cells += [f"{row['x_floor']:.2f}x", "", "", ""]
            else:
                row["gemm"], row["peak"] = gemm / t[0], flops / t[0] / peak
                cells += ["", f"{flops / t[0] / 1e9:.0f}", f"{row['gemm']:.0%}"]
                cells += [f"{row['peak']:.0%}"]
            result["rows"].append(row)
            table.append(f"| {nq} | {name} | {fmt_ms(t)} | " + " | ".join(cells) + " |")
    foreign = statistics.median(timer.foreign) if timer.foreign else 0.0
    result["foreign"], result["load"] = foreign, os.getloadavg()[0]
    table.append(f"\nother processes used {foreign:.2f} cores (median over the rounds) [{load()}]")
    pool.shutdown()
    return table, result


def summary(results: list[dict[str, Any]], n: int, d: int) -> list[str]:
    """Stores against the fastest raw kernel of their run, and the targets."""
    out = [
        f"\n## Summary: {n:,} x {d}, k={K}, the stores against the fastest raw kernel",
        "",
        "| threads | batch | fastest raw kernel | ms | InMemoryStore | FaissStore "
        "| stores vs floor (one query) or GEMM |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = {"ratio": 0.0, "floor": float("nan"), "gemm": 1.0}
    for result in results:
        by_batch: dict[int, dict[str, dict[str, Any]]] = {}
        for row in result["rows"]:
            by_batch.setdefault(row["batch"], {})[row["path"]] = row
        for nq, rows in by_batch.items():
            fastest = rows[rows["InMemoryStore"]["fastest"]]
            stores = [rows[name] for name in STORES]
            worst["ratio"] = max(worst["ratio"], *(r["x_fastest"] for r in stores))
            if nq == 1:
                limit = max(r["x_floor"] for r in stores)
                versus = f"{limit:.2f}x floor"
                if result["threads"] == 2:
                    worst["floor"] = limit
            else:
                limit = min(r["gemm"] for r in stores)
                versus = f"{limit:.0%} of GEMM ({min(r['peak'] for r in stores):.0%} of peak)"
                if nq >= 32:
                    worst["gemm"] = min(worst["gemm"], limit)
            out.append(
                f"| {result['threads']} | {nq} | {fastest['path']} | {fastest['ms']:.2f} | "
                + " | ".join(f"{r['x_fastest']:.2f}x" for r in stores)
                + f" | {versus} |"
            )
    out += [
        "",
        f"targets: every store <= 1.15x the fastest raw kernel: worst {worst['ratio']:.2f}x; "
        f"one query on 2 threads <= 1.3x the floor: {worst['floor']:.2f}x; batches of 32 and "
        f"more >= 80% of the GEMM rate: worst {worst['gemm']:.0%}",
    ]
    return out


def matryoshka_like(n: int, d: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """x = s * (c_k + e), s_i = (i + 1) ** -0.5, K clusters, unit rows (built in slabs);
    the first 256 of 3072 dimensions carry ~70% of the energy."""
    rng = np.random.default_rng(seed)
    scale = ((np.arange(d) + 1.0) ** -0.5).astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 20000):
        hi = min(n, lo + 20000)
        block = rng.standard_normal((hi - lo, d), dtype=np.float32)
        block += centres[rng.integers(centres.shape[0], size=hi - lo)]
        block *= scale
        out[lo:hi] = block
    return unit_rows(out)


def funnel_section(n: int, nq: int, quick: bool) -> list[str]:
    d, prefix, shortlist = 3072, 256, 200
    # ~250 vectors per cluster whatever the size, as in the anchors measured on 500k x 3072
    centres = np.random.default_rng(1).standard_normal((max(40, n // 250), d), dtype=np.float32)
    # the first pass exact over the whole prefix (Flat), or through an HNSW graph on it
    stores = {
        "Flat": FaissStore(d, funnel_dimensions=prefix, funnel_candidates=shortlist),
        "HNSW32": FaissStore(
            d, index="HNSW32", funnel_dimensions=prefix, funnel_candidates=shortlist
        ),
    }
    build: dict[str, float] = dict.fromkeys(stores, 0.0)
    for lo in range(0, n, 50000):  # build in slabs to keep memory near one copy
        hi = min(n, lo + 50000)
        ids, slab = [str(i) for i in range(lo, hi)], matryoshka_like(hi - lo, d, 10 + lo, centres)
        for name, store in stores.items():
            start = time.perf_counter()
            store.add(ids, slab)
            build[name] += time.perf_counter() - start
    queries = matryoshka_like(nq, d, 7, centres)
    flat, hnsw = stores["Flat"], stores["HNSW32"]
    matrix = flat.vectors

    # the exact references: the faster raw kernel for single queries, numpy's GEMM with FAISS's
    # heaps for batches; the exact batch result is also the ground truth for recall
    timer = Timer(gap=0.0 if quick else 0.05, quiet=0.0 if quick else 5.0)
    single_reps = min(3 if quick else 30, nq)
    pick = iter(range(1 << 30))

    def one(fn: Callable[[np.ndarray], Any]) -> Callable[[], Any]:
        return lambda: fn(queries[next(pick) % single_reps][None, :])

    single = timer.run(
        {
            "numpy": one(lambda q: numpy_raw(matrix, q)),
            "FAISS": one(lambda q: faiss_raw(matrix, q)),
            "Flat": one(lambda q: flat.search(q[0], K)),
            "HNSW32": one(lambda q: hnsw.search(q[0], K)),
        },
        single_reps,
        budget=60.0,
    )
    flat_single = min(single["numpy"], single["FAISS"])
    batch = timer.run(
        {
            "exact": lambda: gemm_heaps_raw(matrix, queries),
            "Flat": lambda: flat.search_batch(queries, K),
            "HNSW32": lambda: hnsw.search_batch(queries, K),
            "prefix": lambda: flat.search_batch(queries, K, dimensions=prefix),
        },
        1 if quick else 3,
        budget=120.0,
    )
    flat_batch = batch["exact"]
    truth = gemm_heaps_raw(matrix, queries)

    def recall(results: list[list[Any]], rows: np.ndarray) -> float:
        found = sum(
            len({int(h.id) for h in hits} & set(row.tolist()))
            for hits, row in zip(results, rows, strict=True)
        )
        return found / (K * len(results))

    out = [
        f"\n### Funnel {d} -> {prefix} (shortlist {shortlist}, exact rerank), {n:,} "
        f"Matryoshka-like vectors ({matrix.nbytes / 1e9:.2f} GB), k={K} [{load()}]",
        "",
        "| path | ms median (best) | speed-up vs exact flat 3072 | recall@10 |",
        "|---|---|---|---|",
        f"| exact flat 3072, single (faster raw kernel) | {fmt_ms(flat_single)} | 1.00x | 1.000 |",
    ]
    judged = min(nq, 200)  # recall of single queries over more queries than were timed
    for name, store in stores.items():
        hits = [store.search(queries[i], K) for i in range(judged)]
        out.append(
            f"| funnel, {name} first pass, single | {fmt_ms(single[name])} | "
            f"{flat_single[0] / single[name][0]:.1f}x | {recall(hits, truth[:judged]):.3f} |"
        )
    out.append(
        f"| exact flat 3072, batch of {nq} (numpy GEMM + FAISS heaps) | {fmt_ms(flat_batch)} "
        "| 1.00x | 1.000 |"
    )
    for name, store in stores.items():
        out.append(
            f"| funnel, {name} first pass, batch of {nq} | {fmt_ms(batch[name])} | "
            f"{flat_batch[0] / batch[name][0]:.1f}x | "
            f"{recall(store.search_batch(queries, K), truth):.3f} |"
        )
    prefix_hits = flat.search_batch(queries, K, dimensions=prefix)
    out += [
        f"| 256-d prefix alone (no rerank), batch | {fmt_ms(batch['prefix'])} | "
        f"{flat_batch[0] / batch['prefix'][0]:.1f}x | {recall(prefix_hits, truth):.3f} |",
        "",
        "building the stores (not timed above): "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in build.items()),
    ]
    return out


def kernels() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed: BLAS kernels unknown"
    parts = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
        f"x{i.get('num_threads')}"
        for i in threadpool_info()
    ]
    return "; ".join(parts)


def run_worker(threads: int, argv: list[str]) -> dict[str, Any]:
    """This script again in a process of its own, its thread pools sized by the environment."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", str(threads)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    result: dict[str, Any] = {}
    for line in proc.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
        else:
            print(line, end="", flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"the {threads}-thread run failed (exit status {proc.returncode})")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument(
        "--threads",
        default=None,
        help="thread counts, comma-separated (default: 1, 2 and all cores)",
    )
    parser.add_argument("--size", type=int, default=None, help="vectors (100000)")
    parser.add_argument("--dimensions", type=int, default=768, help="their width (768)")
    parser.add_argument(
        "--funnel-size", type=int, default=None, help="vectors in the funnel section (250000)"
    )
    parser.add_argument("--funnel-only", action="store_true", help="skip the exact sections")
    parser.add_argument("--no-funnel", action="store_true", help="skip the funnel section")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.size or (5_000 if args.quick else 100_000)
    batches = [1, 8, 32, 128] if args.quick else [1, 8, 32, 128, 1000]
    if args.worker is not None:
        lines, result = exact_section(n, args.dimensions, batches, args.worker, args.quick)
        print("\n".join(lines), flush=True)
        print("RESULT " + json.dumps(result), flush=True)
        return

    print("# store_search" + (" --quick" if args.quick else ""))
    print(
        f"numpy {np.__version__}, faiss {faiss.__version__}, {os.cpu_count()} CPUs, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} [{load()}]"
    )
    print(f"BLAS and OpenMP: {kernels()}")
    if not args.funnel_only:
        cores = os.cpu_count() or 1
        counts = sorted({1, min(2, cores), cores})
        if args.threads:
            counts = [int(x) for x in args.threads.split(",")]
        forward = ["--size", str(n), "--dimensions", str(args.dimensions)]
        forward += ["--quick"] if args.quick else []
        results = [run_worker(threads, forward) for threads in counts]
        print("\n".join(summary(results, n, args.dimensions)), flush=True)
    if not args.no_funnel:
        funnel_n = args.funnel_size or (4_000 if args.quick else 250_000)
        print("\n".join(funnel_section(funnel_n, 50 if args.quick else 1000, args.quick)))
    print(f"\n[finished, {load()}]")


if __name__ == "__main__":
    main()
