"""Store search speed next to raw numpy / FAISS and the machine's own limits, in one run.

Prints, for 100k x 768 and 100k x 3072 random unit vectors (k = 10):

- the memory-bandwidth floor of one query (bytes scanned / large-array read rate, measured here)
  and the GEMM throughput (float32 matrix product, measured here);
- single-query and 1000-query search: raw numpy (one GEMV; two GEMV halves on two threads; a
  full GEMM), raw FAISS (``faiss.knn``, the kernel of ``IndexFlatIP``, on FAISS's bundled BLAS),
  raw numpy GEMM + FAISS heaps, ``InMemoryStore`` and ``FaissStore("Flat")``, with the store/raw
  ratio on the same kernel, the fraction of the bandwidth floor (single) and of GEMM throughput
  (batch);

and the Matryoshka funnel (``FaissStore(3072, funnel_dimensions=256)``, its first pass exact
over the prefix (``Flat``) or through an ``HNSW32`` graph on it) on Matryoshka-like vectors
(per-dimension spread decaying with the index, clustered): speed-up over the faster exact flat
search at 3072 and recall@10, for single queries and batches of 1000.

Run from the repository root::

    python benchmarks/store_search.py            # the full run (several minutes)
    python benchmarks/store_search.py --quick    # a small smoke run (seconds)

Some machines set ``OPENBLAS_CORETYPE`` to work around old OpenBLAS bugs; it slows a current
numpy. To benchmark the default kernels, unset it for this command alone:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/store_search.py``.

The machine may be shared: the load average is printed with each section, and medians are
reported (best in brackets) to damp the noise.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
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


def timed(fn: Callable[[int], Any], reps: int, budget: float = 20.0) -> tuple[float, float]:
    """Median and best wall time of ``fn(i)`` over up to ``reps`` calls after one warm-up;
    slow calls get fewer repetitions so the whole run stays within minutes."""
    start = time.perf_counter()
    fn(reps)  # warm-up (page cache, BLAS threads)
    warm = time.perf_counter() - start
    reps = max(1, min(reps, int(budget / max(warm, 1e-9))))
    times = []
    for i in range(reps):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def timed_together(
    fns: dict[str, Callable[[int], Any]], reps: int, budget: float = 60.0
) -> dict[str, tuple[float, float]]:
    """Like :func:`timed` for several paths, run in turns so that each sees the same machine
    load: on a shared machine their ratios are then far steadier. Each round runs the paths in
    a fresh random order, because a path slows the one after it: FAISS's OpenMP threads keep
    spinning for a while after a call, on the cores the next path's BLAS wants (a numpy GEMV
    right after ``faiss.knn`` measured ~40 % slower), so a fixed order would always charge that
    to the same path."""
    start = time.perf_counter()
    for fn in fns.values():
        fn(reps)  # warm-up
    warm = time.perf_counter() - start
    reps = max(1, min(reps, int(budget / max(warm, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    shuffle = np.random.default_rng(0)
    for i in range(reps):
        for j in shuffle.permutation(len(names)).tolist():
            name = names[j]
            fn = fns[name]
            begin = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - begin)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def load() -> str:
    return "load avg " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def read_rate(reps: int, nbytes: int) -> float:
    """Large-array streaming read rate in bytes/s: the best of two streaming kernels (sum and
    max), each run by two threads over halves of one array much larger than the caches."""
    data = np.ones(nbytes // 4, dtype=np.float32)
    half = data.size // 2
    pool = ThreadPoolExecutor(2)
    best = 0.0
    for kernel in (np.add.reduce, np.maximum.reduce):

        def scan(_: int, kernel: Any = kernel) -> None:
            a = pool.submit(kernel, data[:half])
            b = pool.submit(kernel, data[half:])
            a.result()
            b.result()

        median, _ = timed(scan, reps)
        best = max(best, data.nbytes / median)
    pool.shutdown()
    return best


def gemm_rate(reps: int, d: int, rows: int) -> float:
    """float32 GEMM throughput in FLOP/s, shaped like a batch search (1000 x rows x d)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, d), dtype=np.float32)
    b = rng.standard_normal((rows, d), dtype=np.float32)
    out = np.empty((1000, rows), dtype=np.float32)
    median, _ = timed(lambda _: np.matmul(a, b.T, out=out), reps)
    return 2 * 1000 * rows * d / median


def unit_rows(x: np.ndarray) -> np.ndarray:
    faiss.normalize_L2(x)
    return x


def numpy_single(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    scores = matrix @ q
    top = np.argpartition(scores, scores.size - K)[-K:]
    return top[np.argsort(-scores[top])]


_POOL = ThreadPoolExecutor(2)


def numpy_single_2t(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """GEMV split in two halves on two threads, then the same top-k."""
    half = matrix.shape[0] // 2
    out = np.empty(matrix.shape[0], dtype=np.float32)
    first = _POOL.submit(np.dot, matrix[:half], q, out[:half])
    np.dot(matrix[half:], q, out=out[half:])
    first.result()
    top = np.argpartition(out, out.size - K)[-K:]
    return top[np.argsort(-out[top])]


def gemm_heap_batch(matrix: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """numpy GEMM into one reused 64 MB score block, FAISS heaps for the top-k (FaissStore's
    kernel, written out plainly)."""
    nq, n = queries.shape[0], matrix.shape[0]
    scores = np.empty((nq, k), dtype=np.float32)
    labels = np.empty((nq, k), dtype=np.int64)
    heaps = faiss.float_minheap_array_t()
    heaps.k, heaps.nh = k, nq
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


def numpy_batch(matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ matrix.T
    top = np.argpartition(scores, scores.shape[1] - K, axis=1)[:, -K:]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)


def fmt_ms(t: tuple[float, float]) -> str:
    return f"{t[0] * 1e3:8.1f} ({t[1] * 1e3:.1f})"


def exact_section(
    n: int, d: int, nq: int, reps: int, reps_batch: int, bandwidth: float, gemm: float
) -> tuple[list[str], bool]:
    rng = np.random.default_rng(d)
    data = unit_rows(rng.standard_normal((n, d), dtype=np.float32))
    queries = unit_rows(rng.standard_normal((nq, d), dtype=np.float32))
    ids = [str(i) for i in range(n)]
    memory = InMemoryStore(d)
    memory.add(ids, data)
    del data
    gc.collect()
    flat = FaissStore(d)
    flat.add(ids, memory.vectors)
    matrix = memory.vectors  # raw baselines scan the very same array

    floor = matrix.nbytes / bandwidth
    flops = 2.0 * nq * n * d
    rows: dict[str, tuple[float, float]] = {}
    rows.update(
        timed_together(
            {
                "numpy single": lambda i: numpy_single(matrix, queries[i]),
                "numpy single, 2 threads": lambda i: numpy_single_2t(matrix, queries[i]),
                "faiss single": lambda i: faiss.knn(
                    queries[i : i + 1], matrix, K, metric=faiss.METRIC_INNER_PRODUCT
                ),
                "InMemoryStore single": lambda i: memory.search(queries[i], K),
                "FaissStore single": lambda i: flat.search(queries[i], K),
            },
            reps,
        )
    )
    rows.update(
        timed_together(
            {
                "numpy batch": lambda _: numpy_batch(matrix, queries),
                "faiss batch": lambda _: faiss.knn(
                    queries, matrix, K, metric=faiss.METRIC_INNER_PRODUCT
                ),
                "numpy GEMM + faiss heap batch": lambda _: gemm_heap_batch(matrix, queries),
                "InMemoryStore batch": lambda _: memory.search_batch(queries, K),
                "FaissStore batch": lambda _: flat.search_batch(queries, K),
            },
            reps_batch,
            budget=120.0,
        )
    )

    # sanity: every path finds the same top hit
    want = numpy_single(matrix, queries[0])[0]
    assert memory.search(queries[0], 1)[0].id == flat.search(queries[0], 1)[0].id == str(want)

    out = [
        f"\n### {n:,} x {d} float32 ({matrix.nbytes / 1e9:.2f} GB), k={K}, {nq} queries per batch"
        f" [{load()}]",
        f"bandwidth floor of one query: {floor * 1e3:.1f} ms; GEMM: {gemm / 1e9:.0f} GFLOP/s",
        "",
        "| path | ms median (best) | vs raw, same kernel | floor / time | GFLOP/s | % of GEMM |",
        "|---|---|---|---|---|---|",
    ]
    same_kernel = {
        "InMemoryStore single": "numpy single",
        "FaissStore single": "numpy single",
        "InMemoryStore batch": "numpy batch",
        "FaissStore batch": "numpy GEMM + faiss heap batch",
    }
    for name, t in rows.items():
        base = same_kernel.get(name)
        ratio = f"{t[0] / rows[base][0]:.2f}x {base}" if base else ""
        if "single" in name:
            extra = f"{floor / t[0]:.0%} ({t[0] / floor:.2f}x floor) | |"
        else:
            rate = flops / t[0]
            extra = f" | {rate / 1e9:.0f} | {rate / gemm:.0%}"
        out.append(f"| {name} | {fmt_ms(t)} | {ratio} | {extra} |")
    faiss_faster = rows["faiss batch"][0] < rows["numpy GEMM + faiss heap batch"][0]
    return out, faiss_faster


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


def funnel_section(n: int, nq: int, reps: int, reps_batch: int, faiss_faster: bool) -> list[str]:
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

    # the exact references: the faster of the raw kernels measured above, for single queries
    # and for batches; the exact batch result is also the ground truth for recall
    single_reps = min(reps, nq)
    single = timed_together(
        {
            "numpy": lambda i: numpy_single(matrix, queries[i]),
            "numpy 2t": lambda i: numpy_single_2t(matrix, queries[i]),
            "Flat": lambda i: flat.search(queries[i], K),
            "HNSW32": lambda i: hnsw.search(queries[i], K),
        },
        single_reps,
    )
    flat_single = min(single["numpy"], single["numpy 2t"])
    # the batch kernel that was faster at 100k x 3072 above (timing both here would double the
    # longest measurement of the run)
    exact_batch: Callable[[int], Any]
    if faiss_faster:

        def exact_batch(_: int) -> Any:
            return faiss.knn(queries, matrix, K, metric=faiss.METRIC_INNER_PRODUCT)
    else:

        def exact_batch(_: int) -> Any:
            return gemm_heap_batch(matrix, queries)

    batch = timed_together(
        {
            "exact": exact_batch,
            "Flat": lambda _: flat.search_batch(queries, K),
            "HNSW32": lambda _: hnsw.search_batch(queries, K),
            "prefix": lambda _: flat.search_batch(queries, K, dimensions=prefix),
        },
        reps_batch,
        budget=120.0,
    )
    flat_batch = batch["exact"]
    truth = gemm_heap_batch(matrix, queries)

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
        f"| exact flat 3072, batch of {nq} (faster raw kernel) | {fmt_ms(flat_batch)} "
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument(
        "--funnel-size", type=int, default=None, help="vectors in the funnel section (250000)"
    )
    parser.add_argument("--funnel-only", action="store_true", help="skip the exact sections")
    args = parser.parse_args(argv)
    if args.quick:
        sizes, funnel_n, nq, reps, reps_batch = [(5_000, 768), (2_000, 3072)], 4_000, 50, 3, 1
    else:
        sizes, funnel_n, nq, reps, reps_batch = (
            [(100_000, 768), (100_000, 3072)],
            250_000,
            1000,
            30,
            3,
        )
    print("# store_search" + (" --quick" if args.quick else ""))
    print(
        f"numpy {np.__version__}, faiss {faiss.__version__}, {os.cpu_count()} CPUs, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    )
    print(f"BLAS: {kernels()}")
    if args.quick:
        bandwidth, gemm = read_rate(2, 1 << 26), gemm_rate(1, 768, 4096)
    else:
        bandwidth, gemm = read_rate(5, 1 << 30), gemm_rate(3, 768, 65536)
    print(
        f"measured: large-array read {bandwidth / 1e9:.1f} GB/s (2 threads), "
        f"float32 GEMM {gemm / 1e9:.0f} GFLOP/s [{load()}]"
    )
    if args.funnel_size:
        funnel_n = args.funnel_size
    if args.funnel_only:
        sizes = []
    faiss_faster = False  # numpy GEMM + FAISS heaps won at 100k x 3072 on the machine measured
    for n, d in sizes:
        if not args.quick:
            # the load of a shared machine drifts: measure the limits again next to each section
            bandwidth, gemm = read_rate(5, 1 << 30), gemm_rate(3, 768, 65536)
        lines, faiss_faster = exact_section(n, d, nq, reps, reps_batch, bandwidth, gemm)
        print("\n".join(lines), flush=True)
    print("\n".join(funnel_section(funnel_n, nq, reps, reps_batch, faiss_faster)), flush=True)
    print(f"\n[finished, {load()}]")


if __name__ == "__main__":
    main()
