"""Index benchmark: first index of a mixed tree vs re-index of the unchanged tree.

Runs the real pipeline (walk, sniff, chunk in the sandbox, GeminiEmbedder through the real
google-genai SDK, cache, catalog, FAISS store) against FakeGeminiServer on 127.0.0.1, and prints
wall time and embedding API calls for:

- the first index of N mixed files (text notes, PNG images, WAV clips, PDFs);
- a re-index of the unchanged tree (target: 0 calls, <= 5 % of the first run's time);
- a re-index after every file's modification time changed but not its content (files are
  hashed, still 0 calls);
- a re-index after 1 % of the files changed.

    python benchmarks/index.py           # 1,000 files
    python benchmarks/index.py --quick   # 40 files, a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmembed.embedders.gemini import GeminiEmbedder
from mmembed.index import Index
from mmembed.testing import FakeGeminiServer

WORDS = [
    "cell",
    "mitochondria",
    "enzyme",
    "photosynthesis",
    "chloroplast",
    "protein",
    "membrane",
    "gradient",
    "energy",
    "glucose",
    "oxygen",
    "carbon",
    "nitrogen",
    "cycle",
    "replication",
    "helix",
    "genome",
    "ribosome",
    "lipid",
    "water",
    "light",
    "sugar",
    "acid",
    "base",
    "reaction",
    "catalyst",
    "neuron",
    "synapse",
    "muscle",
    "tissue",
    "organ",
    "species",
    "evolution",
]


def make_tree(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """Write ``n`` files: 70 % text, 15 % PNG, 10 % WAV, 5 % PDF. Returns counts by kind."""
    import soundfile
    from PIL import Image

    from mmembed.testing.media import make_pdf

    rng = np.random.default_rng(seed)
    counts = {"text": 0, "image": 0, "audio": 0, "pdf": 0}
    for i in range(n):
        folder = root / f"unit{i % 10:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = rng.choice(["text", "image", "audio", "pdf"], p=[0.70, 0.15, 0.10, 0.05])
        counts[str(kind)] += 1
        if kind == "text":
            words = rng.choice(WORDS, size=int(rng.integers(80, 600)))
            (folder / f"note{i:04d}.md").write_text(f"# Note {i}\n\n" + " ".join(words))
        elif kind == "image":
            pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"figure{i:04d}.png")
        elif kind == "audio":
            t = np.arange(8000 * 2) / 8000
            tone = 0.3 * np.sin(2 * np.pi * float(rng.integers(200, 900)) * t)
            soundfile.write(folder / f"clip{i:04d}.wav", tone.astype(np.float32), 8000)
        else:
            slides = [
                f"Slide {page + 1} of deck {i}: " + " ".join(rng.choice(WORDS, 6))
                for page in range(int(rng.integers(1, 4)))
            ]
            make_pdf(slides, path=folder / f"deck{i:04d}.pdf")
    return counts


def run_once(index: Index, tree: Path, server: FakeGeminiServer) -> tuple[float, int, object]:
    before = len(server.embed_requests)
    start = time.perf_counter()
    report = index.add(tree)
    seconds = time.perf_counter() - start
    return seconds, len(server.embed_requests) - before, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 files, one repeat")
    parser.add_argument("--files", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.files or (40 if args.quick else 1000)
    repeats = 1 if args.quick else 3

    with tempfile.TemporaryDirectory(prefix="mmembed-bench-") as tmp, FakeGeminiServer() as server:
        tree = Path(tmp) / "course"
        counts = make_tree(tree, n)
        embedder = GeminiEmbedder(dimensions=768, client=server.client())
        index = Index(Path(tmp) / "ix", embedder=embedder)

        first_s, first_calls, first = run_once(index, tree, server)
        rows = [("first index", first_s, first_calls, first)]

        times, calls = [], []
        for _ in range(repeats):
            s, c, unchanged = run_once(index, tree, server)
            times.append(s)
            calls.append(c)
        rows.append(("re-index, unchanged", statistics.median(times), max(calls), unchanged))

        for path in tree.rglob("*"):
            if path.is_file():
                os.utime(path, ns=(time.time_ns(), time.time_ns()))
        s, c, touched = run_once(index, tree, server)
        rows.append(("re-index, all mtimes changed", s, c, touched))

        changed = sorted(tree.rglob("*.md"))[: max(1, n // 100)]
        for path in changed:
            path.write_text(path.read_text() + "\nAn added sentence about enzymes.")
        s, c, one_pct = run_once(index, tree, server)
        rows.append((f"re-index, {len(changed)} notes edited", s, c, one_pct))

        print(
            f"mmembed index benchmark: {n} files ({counts['text']} text, {counts['image']} PNG, "
            f"{counts['audio']} WAV, {counts['pdf']} PDF), {os.cpu_count()} CPUs, "
            f"FakeGeminiServer, dimensions 768"
        )
        print(f"chunks in the index: {len(index)}; re-index times are the median of {repeats}")
        print()
        print(f"{'run':<32} {'wall s':>8} {'API calls':>10} {'embedded':>9} {'vs first':>9}")
        for name, seconds, n_calls, report in rows:
            embedded = getattr(report, "chunks", 0)
            print(
                f"{name:<32} {seconds:>8.2f} {n_calls:>10} {embedded:>9} "
                f"{100 * seconds / first_s:>8.1f}%"
            )
        ratio = rows[1][1] / first_s
        ok = rows[1][2] == 0 and ratio <= 0.05
        print()
        print(
            f"target (re-index of the unchanged tree: 0 calls, <= 5 % of the first run): "
            f"{'met' if ok else 'NOT met'} ({rows[1][2]} calls, {100 * ratio:.1f} %)"
        )
        failed = getattr(first, "failed", ())
        if failed:
            print(f"failed files in the first run: {len(failed)}; first: {failed[0]}")
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
