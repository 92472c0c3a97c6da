"""What isolation costs: per-file overhead of the decoder sandbox, and what it protects.

Prints medians (ms per file) for:

- a trivial generator: in-process, through the sandbox, and through a fresh
  ``multiprocessing`` process per file (spawn and forkserver: the obvious alternatives);
- real chunking of PDFs (14 and 140 pages) and a 1600 x 1200 JPEG, in-process and sandboxed:
  the fixed cost of a process matters less the more work a file takes.

Ratios are against the in-process run measured in the same process.

    python benchmarks/sandbox.py            # full run
    python benchmarks/sandbox.py --quick    # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmembed import Image, Pdf
from mmembed.chunkers import ImageChunker, PdfChunker
from mmembed.chunkers._sandbox import isolated
from tests._sandbox_targets import count  # a generator in an importable module


def _drain(queue: Any) -> None:
    for item in count(3):
        queue.put(item)
    queue.put(None)


def _per_process(method: str) -> Callable[[], None]:
    ctx = multiprocessing.get_context(method)

    def run() -> None:
        queue = ctx.Queue()
        proc = ctx.Process(target=_drain, args=(queue,))
        proc.start()
        while queue.get() is not None:
            pass
        proc.join()

    return run


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up (starts the sandbox helper, imports plugins)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _fixtures(quick: bool) -> tuple[bytes, bytes, bytes]:
    from mmembed.testing.media import make_image, make_pdf

    big = make_pdf(14 if quick else 140)
    return make_pdf(14, image=True), big, make_image("JPEG", (1600, 1200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, fast")
    args = parser.parse_args()
    repeat = 3 if args.quick else 25

    pdf, big_pdf, jpeg = _fixtures(args.quick)
    rows: list[tuple[str, str, float, float]] = []

    inline = _median_ms(lambda: list(isolated(count, 3, isolate=False)), repeat)
    rows.append(("trivial generator", "in-process", inline, float("nan")))
    # For the trivial job the sandbox itself is the baseline: the rows below show what a
    # process per file costs with the standard library instead.
    base = _median_ms(lambda: list(isolated(count, 3)), repeat)
    rows.append(("trivial generator", "sandbox (mmembed)", base, 1.0))
    methods = ["forkserver", "spawn"]
    for method in methods if not args.quick else []:
        ms = _median_ms(_per_process(method), max(3, repeat // 5))
        rows.append(("trivial generator", f"multiprocessing {method}", ms, ms / base))

    for label, make in (
        ("14-page PDF -> 3 PDFs", lambda iso: list(PdfChunker(isolate=iso).chunk(Pdf(pdf)))),
        (
            "140-page PDF -> 24 PDFs" if not args.quick else "14-page PDF, no images",
            lambda iso: list(PdfChunker(isolate=iso).chunk(Pdf(big_pdf))),
        ),
        (
            "14-page PDF + text",
            lambda iso: list(PdfChunker(isolate=iso, page_text=True).chunk(Pdf(pdf))),
        ),
        ("1600x1200 JPEG", lambda iso: list(ImageChunker(isolate=iso).chunk(Image(jpeg)))),
        (
            "1600x1200 JPEG -> 512 px",
            lambda iso: list(ImageChunker(isolate=iso, max_side=512).chunk(Image(jpeg))),
        ),
    ):
        base = _median_ms(lambda make=make: make(False), repeat)
        rows.append((label, "in-process", base, 1.0))
        ms = _median_ms(lambda make=make: make(True), repeat)
        rows.append((label, "sandbox (mmembed)", ms, ms / base))

    print(f"median of {repeat} runs, ms per file; ratio to the first row of its workload")
    print("(the sandbox for the trivial job, in-process for real files)")
    print(f"{'workload':<26} {'how':<28} {'ms':>9} {'ratio':>8}")
    for workload, how, ms, ratio in rows:
        shown = "" if ratio != ratio else f"{ratio:.1f}x"  # NaN: no ratio
        print(f"{workload:<26} {how:<28} {ms:>9.2f} {shown:>8}")


if __name__ == "__main__":
    main()
