"""CLI latency: ``mmembed search`` from process start to printed results, per embedder.

For each option (the offline all-MiniLM-L6-v2, the light static model, and Gemini against
FakeGeminiServer on 127.0.0.1 through the real SDK) it builds an index of about 10,000 text
chunks, then runs ``python -m mmembed.cli search ...`` as a shell would, each time with a new
question (so no answer comes from the embedding cache):

- ``in-process``: ``MMEMBED_HELPER=off``, the baseline: every run loads the index and the model;
- ``helper``: the default: the first run starts the index's resident helper, later runs ask it.

It prints the first run and the median (p50) of the next runs for both, and the ratio. The
target: the helper's p50 under 1 s offline, and under 1 s plus the API round trip (printed,
measured in-process on a warm embedder) with Gemini.

::

    python benchmarks/cli_latency.py            # 10,000 chunks, p50 over 20 runs
    python benchmarks/cli_latency.py --quick    # 300 chunks, 3 runs: a smoke run
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (  # noqa: SIM905
    "cell energy mitochondria membrane protein enzyme cycle light sugar carbon oxygen water "
    "lecture slide exam river city empire hill bridge market grain harbour ship road wall"
).split()


def make_notes(root: Path, chunks: int) -> None:
    """Files of ~200-character paragraphs: with 200-character chunks, one chunk each."""
    per_file = 100
    root.mkdir()
    n = 0
    for f in range(max(1, chunks // per_file)):
        paras = []
        for _ in range(min(per_file, chunks - n)):
            words = [WORDS[(n * 7 + j * 3) % len(WORDS)] for j in range(28)]
            paras.append(f"Note {n}: " + " ".join(words) + ".")
            n += 1
        (root / f"notes-{f:04d}.md").write_text("\n\n".join(paras))


def build(ix: Path, notes: Path, embedder: Any) -> int:
    from mmembed.index import Index

    index = Index(
        ix, embedder=embedder, chunk_options={"text": {"size": 200, "unit": "chars", "overlap": 0}}
    )
    index.add(notes)
    count = len(index)
    index.close()
    return count


def helper_pid(ix: Path) -> int | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(ix / "search.sock"))
        except OSError:
            return None
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[0])


def stop_helper(ix: Path) -> None:
    pid = helper_pid(ix)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def one_search(ix: Path, question: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mmembed.cli", "search", question, "--index", str(ix), "-k", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    took = time.perf_counter() - started
    if done.returncode != 0 or "score" not in done.stdout:
        raise SystemExit(f"search failed ({done.returncode}): {done.stderr.strip()}")
    return took


def series(ix: Path, env: dict[str, str], runs: int, tag: str) -> tuple[float, float]:
    """(first run, p50 of the next ``runs``): a new question each time."""
    stop_helper(ix)
    first = one_search(ix, f"{tag} question 0 about the mitochondria", env)
    rest = [
        one_search(ix, f"{tag} question {i} about the harbour and its ships", env)
        for i in range(1, runs + 1)
    ]
    return first, statistics.median(rest)


def options(server: Any) -> list[tuple[str, Callable[[], Any], dict[str, str]]]:
    from mmembed.embedders.local import SentenceTransformerEmbedder, local_model_available
    from mmembed.embedders.static import StaticEmbedder, static_model_available

    offline = {"GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""}
    found: list[tuple[str, Callable[[], Any], dict[str, str]]] = []
    if local_model_available():
        found.append(("all-MiniLM-L6-v2", SentenceTransformerEmbedder, offline))
    if static_model_available():
        found.append(("tokenlearn-static-model", StaticEmbedder, offline))

    def gemini() -> Any:
        from mmembed.embedders.gemini import GeminiEmbedder

        return GeminiEmbedder(dimensions=768)

    found.append(("gemini (fake server)", gemini, server.env()))
    return found


def round_trip(server: Any, runs: int) -> float:
    """p50 of one query's embedding call, in-process on a warm embedder: the API's share."""
    from mmembed.content import Task
    from mmembed.embedders.gemini import GeminiEmbedder

    embedder = GeminiEmbedder(dimensions=768, client=server.client())
    embedder.embed(["warm up"], task=Task.QUERY)
    times = []
    for i in range(runs):
        started = time.perf_counter()
        embedder.embed([f"round trip {i}"], task=Task.QUERY)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 chunks, 3 runs")
    parser.add_argument("--chunks", type=int, default=None, help="chunks in each index (10000)")
    parser.add_argument("--runs", type=int, default=None, help="runs after the first (20)")
    args = parser.parse_args()
    chunks = args.chunks or (300 if args.quick else 10_000)
    runs = args.runs or (3 if args.quick else 20)

    from mmembed.testing import FakeGeminiServer

    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "MMEMBED_HELPER_IDLE": "120"}
    with FakeGeminiServer() as server, tempfile.TemporaryDirectory() as tmp:
        notes = Path(tmp) / "notes"
        make_notes(notes, chunks)
        print(f"mmembed search: process start to printed results; p50 over {runs} runs")
        print(
            f"fake server round trip (one query, warm, in-process): {round_trip(server, 20):.3f} s"
        )
        head = f"{'option':<24}{'chunks':>7}{'in-process first':>18}{'p50':>7}"
        print(f"{head}{'helper first':>14}{'p50':>7}{'p50 ratio':>11}")
        for name, make, extra in options(server):
            env = {**base_env, **extra}
            saved = {k: os.environ.get(k) for k in extra}
            os.environ.update(extra)
            try:
                ix = Path(tmp) / name.split()[0]
                count = build(ix, notes, make())
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            try:
                alone = series(ix, {**env, "MMEMBED_HELPER": "off"}, runs, "alone")
                helped = series(ix, {**env, "MMEMBED_HELPER": "on"}, runs, "helped")
            finally:
                stop_helper(ix)
            ratio = alone[1] / helped[1]
            print(
                f"{name:<24}{count:>7}{alone[0]:>16.2f} s{alone[1]:>5.2f} s"
                f"{helped[0]:>12.2f} s{helped[1]:>5.2f} s{ratio:>10.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
