"""Write the small example course that ships in ``examples/`` (deterministic, < 1 MB).

    python tools/make_examples.py            # rewrites examples/
    python tools/make_examples.py OUT_DIR    # or somewhere else (tests use this)

The course: three lesson notes and a logistics note (Markdown/text), a four-page slide deck
(PDF), a diagram of the Krebs cycle (PNG), a short audio cue (WAV) and a short animated title
clip (MP4). The files are made by ``mmembed.testing.media``; the clip needs PyAV
(``mmembed[video]``). The script lives outside ``examples/`` so that indexing the folder indexes
only the course.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

# the tools run from a checkout, where mmembed need not be installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmembed.testing.media import make_audio, make_pdf, make_video

NOTES = {
    "01-cellular-respiration.md": """\
# Lesson 1: Cellular respiration

Cells turn the chemical energy of glucose into ATP, the molecule that powers almost every
process in the cell. Respiration happens in three stages.

## Glycolysis

In the cytoplasm, one glucose molecule is split into two molecules of pyruvate. This yields a
small amount of ATP and NADH and does not need oxygen.

## The Krebs cycle

Inside the mitochondria, pyruvate becomes acetyl-CoA, which enters the Krebs cycle (also called
the citric acid cycle). Each turn releases carbon dioxide and loads the electron carriers NADH and
FADH2. The mitochondrial matrix is where the cycle runs.

## The electron transport chain

On the inner mitochondrial membrane, the electron transport chain passes electrons to oxygen and
pumps protons. ATP synthase uses the proton gradient to make most of the cell's ATP.
""",
    "02-photosynthesis.md": """\
# Lesson 2: Photosynthesis

Plants, algae and some bacteria capture the energy of sunlight and store it in sugar.

## Light-dependent reactions

In the thylakoid membranes of the chloroplast, chlorophyll absorbs light. Water is split,
releasing oxygen, and the energy is stored in ATP and NADPH.

## The Calvin cycle

In the stroma, the enzyme RuBisCO fixes carbon dioxide from the air. ATP and NADPH from the light
reactions turn it into glucose. Photosynthesis and respiration are mirror images: one builds
sugar with light, the other burns it for ATP.
""",
    "03-dna-replication.md": """\
# Lesson 3: DNA replication

Before a cell divides it copies its genome. The double helix unwinds at the replication fork,
helped by the enzyme helicase.

DNA polymerase reads each template strand and adds complementary nucleotides: adenine pairs with
thymine, guanine with cytosine. The leading strand is copied continuously; the lagging strand is
made in short Okazaki fragments joined by ligase. Replication is semi-conservative: every new
double helix keeps one old strand.
""",
    "course-logistics.txt": """\
Course logistics

The midterm exam is on Friday of week 7 in the main lecture hall. Bring a pencil and your student
card. Office hours are on Tuesdays from 2 to 4 pm. Late homework loses ten percent per day.
Grades: homework 30 percent, midterm 30 percent, final exam 40 percent.
""",
}

SLIDES = [
    (
        "The Krebs cycle",
        [
            "Runs in the mitochondrial matrix",
            "Acetyl-CoA in, CO2 out",
            "Loads NADH and FADH2 for the electron transport chain",
        ],
    ),
    (
        "ATP synthase",
        [
            "A rotary motor in the inner membrane",
            "Driven by the proton gradient",
            "Makes most of the cell's ATP",
        ],
    ),
    (
        "Light reactions",
        [
            "Thylakoid membranes of the chloroplast",
            "Chlorophyll absorbs light",
            "Water is split and oxygen released",
        ],
    ),
    (
        "The Calvin cycle",
        ["In the stroma", "RuBisCO fixes carbon dioxide", "ATP and NADPH build glucose"],
    ),
]


def write_notes(out: Path) -> None:
    for name, text in NOTES.items():
        (out / name).write_text(text, encoding="utf-8")


def write_pdf(out: Path) -> None:
    """One slide a page: the title as the heading, then the bullets."""
    pages = [
        "\n".join([title, *(f"- {bullet}" for bullet in bullets)]) for title, bullets in SLIDES
    ]
    make_pdf(pages, path=out / "slides.pdf")


def write_diagram(out: Path) -> None:
    """A labelled cycle of arrows: the Krebs cycle as a lecture would sketch it."""
    from PIL import Image, ImageDraw

    size = 360
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    cx = cy = size // 2
    radius = 120
    labels = ["acetyl-CoA", "citrate", "isocitrate", "a-ketoglutarate", "succinate", "malate"]
    points = []
    for i, _ in enumerate(labels):
        angle = -math.pi / 2 + i * 2 * math.pi / len(labels)
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    for i, (x, y) in enumerate(points):
        nx, ny = points[(i + 1) % len(points)]
        draw.line([(x, y), (nx, ny)], fill=(200, 60, 40), width=4)
        draw.ellipse([x - 10, y - 10, x + 10, y + 10], fill=(40, 90, 200))
        draw.text((x - 30, y + 14), labels[i], fill="black")
    draw.text((cx - 35, cy - 6), "Krebs cycle", fill="black")
    img.save(out / "krebs-cycle-diagram.png", optimize=True)


def write_audio(out: Path) -> None:
    """Three seconds of a rising tone at 8 kHz (the lecture's intro cue)."""
    make_audio(seconds=3, sample_rate=8000, path=out / "lecture-intro.wav")


def write_video(out: Path) -> None:
    """Four seconds of a title card, H.264 at 10 fps, 160x120, without sound."""
    make_video(
        seconds=4,
        width=160,
        height=120,
        audio=False,
        caption="Lesson 2\nPhotosynthesis",
        path=out / "lecture-clip.mp4",
    )


def make(out: Path) -> list[Path]:
    """Write every example file into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    write_notes(out)
    write_pdf(out)
    write_diagram(out)
    write_audio(out)
    write_video(out)
    return sorted(p for p in out.iterdir() if p.is_file())


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    out = Path(argv[0]) if argv else root / "examples"
    files = make(out)
    total = sum(p.stat().st_size for p in files)
    for p in files:
        print(f"{p.stat().st_size:>8}  {p.name}")
    print(f"{total:>8}  total bytes in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
