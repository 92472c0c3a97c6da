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
            planted_lectures.append({"file": f"lectures/lecture{i + 1:02d}.mp4", "start": starts[k], "end": end})
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
            make_audio("WAV", seconds=seconds, sample_rate=16000, path=rec.with_suffix(".part"))
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


_WORDS = (
    "cell energy membrane gradient enzyme protein glucose oxygen carbon cycle light water "
    "reaction catalyst neuron synapse tissue species evolution genome ribosome lipid acid"
).split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full course")
    parser.add_argument("--generate-only", action="store_true", help="only make the course")
    args = parser.parse_args(argv)
    root, manifest = make_course(args.scale)
    print(root, json.dumps(manifest)[:200])
    return 0


if __name__ == "__main__":
    sys.exit(main())
