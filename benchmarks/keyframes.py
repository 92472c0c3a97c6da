"""Finding slide changes in a lecture: mmembed's keyframe method against PySceneDetect.

Generates one lecture (``make_lecture``: 192×108 at 5 fps, keyframes every 10 s, never at a
change; a slide change every 2–5 minutes at known times, two in three of them between slides
of one white template that differ only in their text; a speaker moving in a corner) and
times each method on it, counting the planted changes found within ``--tolerance`` seconds
(recall) and the changes reported where none was planted (false alarms).

- ``mmembed``: ``VideoChunker(strategy="keyframes")`` (intra frames only, refined within one
  keyframe interval), in its sandboxed decoder process as the index runs it.
- ``PySceneDetect``: ``detect(path, ContentDetector())`` and ``AdaptiveDetector()``, which decode
  every frame (skipped with a note when ``scenedetect`` is not importable; it is not an mmembed
  dependency).

    python benchmarks/keyframes.py               # a one-hour lecture
    python benchmarks/keyframes.py --minutes 10  # a short one
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def planted_lecture(folder: Path, seconds: float) -> tuple[Path, list[float]]:
    from mmembed.testing.media import make_image, make_lecture

    rng = random.Random(5)
    starts = [0.0]
    while starts[-1] + 300 < seconds:
        starts.append(round(starts[-1] + rng.uniform(120, 300), 1))
    # title cards, then runs of slides of one template that differ only in their text
    slides: list[tuple[float, str | bytes]] = [
        (t, f"Slide {k + 1}" if k % 3 == 0 else text_slide(k, rng)) for k, t in enumerate(starts)
    ]
    if len(slides) > 2:
        slides[2] = (starts[2], make_image("PNG", (192, 108), caption="the diagram"))
    path = make_lecture(slides, seconds=seconds, path=folder / "lecture.mp4")
    return path, starts[1:]


def text_slide(k: int, rng: random.Random) -> bytes:
    """A white slide with a title and four bullet lines in black (one template for all)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    words = [
        "cell",
        "energy",
        "membrane",
        "enzyme",
        "glucose",
        "oxygen",
        "carbon",
        "light",
        "water",
        "neuron",
    ]
    im = Image.new("RGB", (192, 108), (250, 250, 250))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=9)
    lines = [f"Part {k}"] + [f"- {' '.join(rng.sample(words, 3))}" for _ in range(4)]
    for i, line in enumerate(lines):
        draw.text((8, 12 + i * 11), line, fill=(20, 20, 20), font=font)
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def score(found: list[float], planted: list[float], tolerance: float) -> tuple[int, int]:
    hits = sum(any(abs(f - p) <= tolerance for f in found) for p in planted)
    alarms = sum(not any(abs(f - p) <= tolerance for p in planted) for f in found)
    return hits, alarms


def with_mmembed(path: Path) -> list[float]:
    from mmembed.chunkers.video import VideoChunker

    spans = [c.span for c in VideoChunker(strategy="keyframes").chunk(path)]
    return [s.start for s in spans[1:] if s is not None and hasattr(s, "start")]


def with_scenedetect(detector: str) -> Callable[[Path], list[float]]:
    def run(path: Path) -> list[float]:
        import scenedetect

        made = getattr(scenedetect, detector)()
        scenes = scenedetect.detect(str(path), made)
        return [start.get_seconds() for start, _ in scenes[1:]]

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--tolerance", type=float, default=1.5, help="seconds")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    methods: list[tuple[str, Callable[[Path], list[float]]]] = [("mmembed (PyAV)", with_mmembed)]
    try:
        import scenedetect

        version = scenedetect.__version__
        methods += [
            (f"PySceneDetect {version} ContentDetector", with_scenedetect("ContentDetector")),
            (f"PySceneDetect {version} AdaptiveDetector", with_scenedetect("AdaptiveDetector")),
        ]
    except ImportError:
        print("(scenedetect is not installed: PySceneDetect rows skipped)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        path, planted = planted_lecture(Path(tmp), seconds)
        rows = []
        for name, method in methods:
            start = time.perf_counter()
            found = method(path)
            wall = time.perf_counter() - start
            hits, alarms = score(found, planted, args.tolerance)
            rows.append((name, wall, seconds / wall, hits, len(planted), alarms))
    found = f"planted changes found (±{args.tolerance:g} s)"
    print(f"| method | wall s | speed | {found} | false alarms |")
    print("|---|---|---|---|---|")
    for name, wall, speed, hits, total, alarms in rows:
        print(f"| {name} | {wall:.1f} | {speed:,.0f}× real time | {hits}/{total} | {alarms} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
