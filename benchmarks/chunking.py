"""How fast the media chunkers are, and how much memory they need however long the input.

    python benchmarks/chunking.py            # 20-minute 720p video, 1-hour audio, 300-page PDF
    python benchmarks/chunking.py --quick    # a smoke run on small inputs (seconds)

Each task runs in a fresh child process (``import mmembed`` included) whose whole process tree
(the chunker's decoder processes too) is polled for resident memory; the table shows the
median wall time of ``--repeat`` runs, the real-time factor (seconds of media per second of
work) or pages per second, and the peak memory of the process tree (RSS summed over the
processes, an upper bound, and PSS, which counts shared pages once). The baseline row of each
medium is a bare pass over the same file measured in the same run (demuxing every packet,
reading every sample, opening every page), so the ratio column says what chunking costs on top
of reading. The items column counts chunks (packets, samples or pages for a baseline).

Inputs are generated once into a cache directory under the system temp dir (they are large).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
# mmembed is run from the source tree (it need not be installed).
sys.path.insert(0, str(ROOT))
CACHE = Path(tempfile.gettempdir()) / "mmembed-bench-cache"
TARGET_RSS_MB = 300
TARGET_REMUX_RTF = 100


# ------------------------------------------------------------------------------ inputs


def video_input(seconds: int) -> Path:
    """A 720p25 H.264 + AAC video: one minute encoded, then repeated by copying packets."""
    path = CACHE / f"video-720p-{seconds}s.mp4"
    if path.exists():
        return path
    import av

    from mmembed.testing.media import make_video

    print(f"generating {path.name} (once)…", file=sys.stderr, flush=True)
    base = CACHE / "video-720p-base-60s.mp4"
    if not base.exists():
        make_video(seconds=60, fps=25, width=1280, height=720, gop=50, path=base)
    tmp = path.with_suffix(".part")
    with av.open(str(base)) as src, av.open(str(tmp), "w", format="mp4") as out:
        ins = list(src.streams)
        outs = [out.add_stream_from_template(s) for s in ins]
        length = {s.index: round(60 / s.time_base) for s in ins}
        for loop in range(math.ceil(seconds / 60)):
            src.seek(0)
            for packet in src.demux():
                if packet.pts is None or packet.dts is None:
                    continue
                shift = loop * length[packet.stream.index]
                packet.pts += shift
                packet.dts += shift
                packet.stream = outs[packet.stream.index]
                out.mux(packet)
    tmp.rename(path)
    return path


def audio_input(seconds: int) -> Path:
    path = CACHE / f"audio-44k-stereo-{seconds}s.wav"
    if not path.exists():
        from mmembed.testing.media import make_audio

        print(f"generating {path.name} (once)…", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".part")
        make_audio("WAV", seconds=seconds, sample_rate=44100, channels=2, path=tmp)
        tmp.rename(path)
    return path


def m4a_input(seconds: int) -> Path:
    path = CACHE / f"audio-44k-mono-{seconds}s.m4a"
    if not path.exists():
        from mmembed.testing.media import make_audio

        print(f"generating {path.name} (once)…", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".part")
        make_audio("M4A", seconds=seconds, sample_rate=44100, path=tmp)
        tmp.rename(path)
    return path


def pdf_input(pages: int) -> Path:
    path = CACHE / f"doc-{pages}p.pdf"
    if not path.exists():
        from mmembed.testing.media import make_pdf

        lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing. " * 12
        tmp = path.with_suffix(".part")
        make_pdf(
            [f"Page {i + 1}: notes on topic {i % 17}\n{lorem}" for i in range(pages)], path=tmp
        )
        tmp.rename(path)
    return path


# ------------------------------------------------------------------------------ tasks
# Each runs in a child process: `python benchmarks/chunking.py --task NAME PATH`.


def task(name: str, path: str) -> dict[str, Any]:
    start = time.perf_counter()
    import mmembed  # noqa: F401  (counted: the import is part of what a user pays)

    count = 0
    if name == "video-remux" or name == "video-reencode":
        from mmembed.chunkers.video import VideoChunker

        mode = "remux" if name == "video-remux" else "reencode"
        chunker = VideoChunker(mode=mode, timeout=600)
        for chunk in chunker.chunk(path):
            assert chunk.metadata["mode"] == mode
            count += 1
    elif name == "video-baseline":
        import av

        with av.open(path) as c:
            for _packet in c.demux():
                count += 1
    elif name in ("audio", "audio-m4a"):
        from mmembed.chunkers.audio import AudioChunker

        for _chunk in AudioChunker(window_seconds=30, overlap_seconds=5, timeout=600).chunk(path):
            count += 1
    elif name == "audio-m4a-baseline":
        import av

        with av.open(path) as c:
            for frame in c.decode(audio=0):
                count += frame.samples
    elif name == "audio-baseline":
        import soundfile as sf

        for block in sf.blocks(path, blocksize=1 << 16, dtype="float32"):
            count += len(block)
    elif name == "pdf":
        from mmembed.chunkers.pdf import PdfChunker

        for _chunk in PdfChunker().chunk(path):
            count += 1
    elif name == "pdf-baseline":
        import pypdf

        for _page in pypdf.PdfReader(path).pages:
            count += 1
    else:
        raise SystemExit(f"unknown task {name}")
    return {"seconds": time.perf_counter() - start, "count": count}


def measure(name: str, path: Path) -> tuple[float, int, float, float]:
    """Run one task in a child; return (wall s, items, peak tree RSS MB, peak tree PSS MB).

    RSS summed over the process tree counts the pages the forked decoder processes share with
    their parent once per process: an upper bound. PSS splits shared pages between the processes
    that map them, so its sum is the memory the task really occupies.
    """
    proc = subprocess.Popen(
        [sys.executable, __file__, "--task", name, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    root = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss = pss = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                info = p.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"task {name} failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["count"], peak_rss / 2**20, peak_pss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one run each")
    parser.add_argument("--repeat", type=int, default=3, help="runs per task (median shown)")
    parser.add_argument("--task", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        print(json.dumps(task(*args.task)))
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    video_s, audio_s, pages = (60, 600, 30) if args.quick else (1200, 3600, 300)
    repeat = 1 if args.quick else args.repeat
    video, audio = video_input(video_s), audio_input(audio_s)
    rows: list[tuple[str, str, float, str, str, float, float]] = []

    def run(label: str, name: str, path: Path, size: float, unit: str, base: float) -> float:
        results = [measure(name, path) for _ in range(repeat if name != "video-reencode" else 1)]
        wall = statistics.median(r[0] for r in results)
        rss = max(r[2] for r in results)
        pss = max(r[3] for r in results)
        rate = size / wall
        ratio = f"{wall / base:.1f}×" if base else "1.0×"
        rows.append((label, f"{results[0][1]}", wall, f"{rate:,.1f} {unit}", ratio, rss, pss))
        return wall

    vb = run(
        f"video {video_s // 60} min 720p: demux only", "video-baseline", video, video_s, "× rt", 0
    )
    run("video: remux (VideoChunker)", "video-remux", video, video_s, "× rt", vb)
    run("video: re-encode (VideoChunker)", "video-reencode", video, video_s, "× rt", vb)
    ab = run(
        f"audio {audio_s // 60} min 44.1k stereo WAV: read only",
        "audio-baseline",
        audio,
        audio_s,
        "× rt",
        0,
    )
    run("audio: 30 s windows → 16k WAV (AudioChunker)", "audio", audio, audio_s, "× rt", ab)
    m4a = m4a_input(audio_s)
    mb = run(
        f"audio {audio_s // 60} min AAC M4A: decode only",
        "audio-m4a-baseline",
        m4a,
        audio_s,
        "× rt",
        0,
    )
    run("m4a: 30 s windows → 16k WAV (AudioChunker)", "audio-m4a", m4a, audio_s, "× rt", mb)
    try:
        import mmembed.chunkers.pdf  # noqa: F401
    except ImportError:
        print("(PdfChunker not on this branch: PDF rows skipped)", file=sys.stderr)
    else:
        pdf = pdf_input(pages)
        pb = run(f"pdf {pages} pages: pypdf open only", "pdf-baseline", pdf, pages, "pages/s", 0)
        run("pdf: ≤6-page parts (PdfChunker)", "pdf", pdf, pages, "pages/s", pb)

    header = ("task", "items", "wall s", "speed", "vs baseline", "peak RSS MB", "peak PSS MB")
    widths = [max(len(str(r[i])) if i != 2 else 8 for r in [*rows, header]) for i in range(7)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for label, count, wall, speed, ratio, rss, pss in rows:
        cells = (label, count, f"{wall:.2f}", speed, ratio, f"{rss:.0f}", f"{pss:.0f}")
        print(" | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    remux = next(r for r in rows if "remux" in r[0])
    rtf = video_s / remux[2]
    worst = max(r[5] for r in rows)
    print(
        f"\nremux {rtf:,.0f}× real time (target ≥ {TARGET_REMUX_RTF}×): "
        f"{'met' if rtf >= TARGET_REMUX_RTF else 'MISSED'}; peak RSS {worst:.0f} MB "
        f"(target < {TARGET_RSS_MB} MB): {'met' if worst < TARGET_RSS_MB else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
