"""Ingest throughput: many short texts through GeminiEmbedder against FakeGeminiServer.

Every call to the fake server waits ``--latency`` seconds, like a round trip to Google. With at
most 100 items per call and ``--concurrency`` calls in flight, no client can finish faster than

    floor = ceil(N / 100) / concurrency × latency

The script prints mmembed's wall time (sync and async) next to that floor, and next to
LangChain's ``GoogleGenerativeAIEmbeddings.embed_documents`` on the same server in the same run
(skipped with a note when langchain-google-genai is not installed; it is not an mmembed
dependency), for 128 and 768 dimensions. Targets: mmembed ≤ 1.2× the floor and ≥ 5× faster
than LangChain. When orjson is installed (the ``fast`` extra) it also times ``embed`` with the
standard library's JSON reader at the highest concurrency, to show what orjson buys.

The floor is the formula above; when the calls do not divide evenly into rounds of
``concurrency`` (100 calls at 16 in flight take 7 rounds, not 6.25) no client can reach it.

The server runs in a child process so its JSON work does not compete with the client for the
GIL, as a real remote server would not.

    python benchmarks/ingest.py            # 10,000 texts, 50 ms per call, 3 repeats
    python benchmarks/ingest.py --quick    # 1,000 texts, 1 repeat: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "gemini-embedding-2"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    seconds: float
    floor: float | None  # None: the row is a ratio
    vectors: int | None


def _serve(conn: Connection, latency: float) -> None:
    from mmembed.testing import FakeGeminiServer

    with FakeGeminiServer(latency=latency) as server:
        conn.send(server.base_url)
        conn.recv()  # block until the parent says stop
        conn.send(len(server.embed_requests))


def _texts(n: int) -> list[str]:
    topics = ["cells", "energy", "poetry", "rivers", "markets", "engines", "music", "stars"]
    return [
        f"note {i}: a short remark about {topics[i % len(topics)]} number {i}" for i in range(n)
    ]


def _time_interleaved(
    runs: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, Any]]:
    """Median seconds and last result of each run, taking turns so load changes hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in runs}


def _arun(embedder: Any, texts: list[str]) -> Any:
    return asyncio.run(embedder.aembed(texts))


def _with_json_reader(module: Any, reader: Any, fn: Callable[[], Any]) -> Any:
    module._json_loads = lambda: json.loads
    try:
        return fn()
    finally:
        module._json_loads = reader


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times: list[float] = []
    result: Any = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _run(args: argparse.Namespace, base_url: str, dims: int) -> list[Row]:
    from google import genai
    from google.genai import types

    from mmembed.embedders import GeminiEmbedder
    from mmembed.embedders.gemini import _reply as gemini_module

    texts = _texts(args.n)
    client = genai.Client(api_key="bench-key", http_options=types.HttpOptions(base_url=base_url))
    rows: list[Row] = []
    best: float | None = None
    for concurrency in args.concurrency:
        embedder = GeminiEmbedder(MODEL, dimensions=dims, client=client, concurrency=concurrency)
        # warm: connections open, the SDK's async transport imported, every vector rendered
        embedder.embed(texts)
        asyncio.run(embedder.aembed(texts))
        calls = math.ceil(args.n / embedder.limits.max_items_per_call)
        floor = calls / concurrency * args.latency
        label = f"mmembed embed, concurrency {concurrency}"
        runs: dict[str, Callable[[], Any]] = {
            label: partial(embedder.embed, texts),
            f"mmembed aembed, concurrency {concurrency}": partial(_arun, embedder, texts),
        }
        reader = getattr(gemini_module, "_json_loads", None)
        last = concurrency == max(args.concurrency)
        if last and reader is not None and reader() is not json.loads:
            # the standard library's reader in the same run: what the `fast` extra buys
            runs[f"{label}, json reader (no orjson)"] = partial(
                _with_json_reader, gemini_module, reader, partial(embedder.embed, texts)
            )
        timed = _time_interleaved(runs, args.repeats)
        rows.append(Row(f"floor, concurrency {concurrency}", floor, floor, args.n))
        for name, (seconds, out) in timed.items():
            assert out.shape == (args.n, dims)
            rows.append(Row(name, seconds, floor, len(out)))
            if "json reader" not in name:
                best = seconds if best is None else min(best, seconds)
    try:
        from langchain_google_genai import GoogleGenerativeAIEmbeddings
    except ImportError:
        print(
            "LangChain rows skipped: pip install langchain-google-genai to compare "
            "(it is not an mmembed dependency)"
        )
        return rows
    lc = GoogleGenerativeAIEmbeddings(  # type: ignore[call-arg]
        model=MODEL,
        google_api_key="bench-key",
        base_url=base_url,
        output_dimensionality=dims,
    )
    lc.embed_documents(texts)  # the same warm-up mmembed got
    lc_s, lc_out = _time(lambda: lc.embed_documents(texts), args.repeats)
    lc_floor = math.ceil(args.n / 100) * args.latency  # it sends one call at a time
    name = "LangChain GoogleGenerativeAIEmbeddings.embed_documents"
    rows.append(Row(name, lc_s, lc_floor, len(lc_out)))
    assert best is not None
    rows.append(Row("LangChain / fastest mmembed", lc_s / best, None, None))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="texts to embed")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per call")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[2, 4, 8, 16], help="mmembed calls in flight"
    )
    parser.add_argument(
        "--dimensions", type=int, nargs="+", help="output sizes (default 128 768; 128 if --quick)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 texts, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 1_000, 1
    if not args.dimensions:
        args.dimensions = [128] if args.quick else [128, 768]

    from mmembed.embedders.gemini import _reply as gemini_module

    loads = getattr(gemini_module, "_json_loads", lambda: json.loads)()
    reader = "json" if loads is json.loads else getattr(loads, "__module__", "?")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, args.latency), daemon=True)
    proc.start()
    tables: list[tuple[int, list[Row]]] = []
    try:
        base_url = parent.recv()
        for dims in args.dimensions:
            tables.append((dims, _run(args, base_url, dims)))
    finally:
        parent.send("stop")
        served = parent.recv() if parent.poll(10) else None
        proc.join(timeout=10)

    print(
        f"\nIngest: {args.n:,} short texts, {args.latency * 1000:.0f} ms per call, median of "
        f"{args.repeats}, reply reader {reader} (server calls in total: {served})"
    )
    for dims, rows in tables:
        print(f"\n{dims} dimensions\n")
        print("| run | wall time (s) | × its floor | vectors returned |")
        print("|---|---:|---:|---:|")
        for row in rows:
            if row.floor is None:
                print(f"| **{row.name}** | | **{row.seconds:.1f}×** | |")
            else:
                print(
                    f"| {row.name} | {row.seconds:.3f} | {row.seconds / row.floor:.2f} "
                    f"| {row.vectors:,} |"
                )
    print("\ntargets: mmembed ≤ 1.2× the floor; ≥ 5× faster than LangChain")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
