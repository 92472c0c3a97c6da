"""The course scene: video strategies, the dry run's plan, the budget guard, grouped results
with their ranges, audio windows copied without resampling, commits as files finish."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from mmembed import Audio, BudgetExceededError, Image, Video
from mmembed.chunkers.audio import AudioChunker
from mmembed.chunkers.video import VideoChunker
from mmembed.cli import ExitCode, main
from mmembed.embedders.gemini import GeminiEmbedder
from mmembed.errors import ConfigurationError
from mmembed.index import Index
from mmembed.protocols import TimeSpan
from mmembed.testing import FakeEmbedder, FakeGeminiServer
from mmembed.testing.media import make_audio, make_image, make_lecture, make_pdf

ROOT = Path(__file__).resolve().parent.parent
CHANGES = (23.4, 47.0)


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lecture")
    diagram = make_image("PNG", (96, 54), caption="diagram")
    return make_lecture(
        [(0.0, "Slide one"), (CHANGES[0], diagram), (CHANGES[1], "Slide three")],
        seconds=70,
        path=folder / "lecture.mp4",
    )


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as s:
        yield s


def gemini(server: FakeGeminiServer) -> GeminiEmbedder:
    return GeminiEmbedder(dimensions=128, client=server.client())


def test_keyframes_are_one_image_per_slide_with_the_span_it_is_on_screen(lecture: Path) -> None:
    chunks = list(VideoChunker(strategy="keyframes").chunk(lecture))
    assert [c.metadata["kind"] for c in chunks] == ["keyframe"] * 3
    spans = [c.span for c in chunks]
    assert all(isinstance(s, TimeSpan) for s in spans)
    starts = [s.start for s in spans if isinstance(s, TimeSpan)]
    assert starts[0] == 0
    for found, planted in zip(starts[1:], CHANGES, strict=True):
        assert planted <= found <= planted + 1.0  # found within one search step
    ends = [s.end for s in spans if isinstance(s, TimeSpan)]
    assert ends[:-1] == starts[1:]  # scenes touch: the whole video is covered
    assert ends[-1] == pytest.approx(70, abs=0.3)
    assert all(isinstance(c.content, Image) and c.content.mime_type == "image/jpeg" for c in chunks)


def test_a_static_slide_with_a_moving_speaker_is_one_keyframe(tmp_path: Path) -> None:
    path = make_lecture([(0.0, "Only slide")], seconds=60, path=tmp_path / "static.mp4")
    chunks = list(VideoChunker(strategy="keyframes", keyframe_min_seconds=0).chunk(path))
    assert len(chunks) == 1
    span = chunks[0].span
    assert isinstance(span, TimeSpan)
    assert span.start == 0.0
    assert span.end == pytest.approx(60, abs=0.3)


def _text_slide(lines: list[str]) -> bytes:
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    im = PILImage.new("RGB", (192, 108), (250, 250, 250))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=9)
    for i, line in enumerate(lines):
        draw.text((8, 14 + i * 11), line, fill=(20, 20, 20), font=font)
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def test_slides_of_one_template_that_differ_only_in_their_text_are_told_apart(
    tmp_path: Path,
) -> None:
    first = _text_slide(["Photosynthesis", "- light reactions", "- Calvin cycle", "- ATP"])
    second = _text_slide(["Respiration", "- glycolysis", "- Krebs cycle", "- 36 ATP"])
    path = make_lecture([(0.0, first), (30.2, second)], seconds=60, path=tmp_path / "t.mp4")
    spans = [c.span for c in VideoChunker(strategy="keyframes").chunk(path)]
    starts = [s.start for s in spans if isinstance(s, TimeSpan)]
    assert len(starts) == 2
    assert 30.2 <= starts[1] <= 31.2


def test_both_strategies_give_segments_then_keyframes(lecture: Path) -> None:
    kinds = [c.metadata["kind"] for c in VideoChunker(strategy="both").chunk(lecture)]
    assert kinds[0] == "segment"
    assert kinds[-3:] == ["keyframe"] * 3
    assert kinds == sorted(kinds, key=lambda k: k == "keyframe")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"strategy": "scenes"}, "strategy"),
        ({"keyframe_threshold": 0}, "keyframe_threshold"),
        ({"keyframe_step_seconds": 0}, "keyframe_min_seconds"),
    ],
)
def test_bad_keyframe_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        VideoChunker(**options)


def course(root: Path, lecture: Path) -> Path:
    root.mkdir()
    (root / "lecture.mp4").write_bytes(lecture.read_bytes())
    make_pdf(12, image={7}, path=root / "deck.pdf")
    make_audio("WAV", seconds=200, sample_rate=16000, path=root / "talk.wav")
    (root / "notes.md").write_text("The Krebs cycle runs in the mitochondria.\n" * 40)
    return root


def test_the_dry_run_plans_each_modality_and_strategy_from_headers(
    tmp_path: Path, lecture: Path, server: FakeGeminiServer
) -> None:
    folder = course(tmp_path / "course", lecture)
    index = Index(
        tmp_path / "ix", embedder=gemini(server), chunk_options={"video": {"strategy": "both"}}
    )
    report = index.add(folder, dry_run=True)
    lines = {line.label: line for line in report.plan}
    assert set(lines) == {"text", "pdf", "audio", "video segments", "video keyframes"}
    assert lines["pdf"].chunks == 2  # 12 pages, 6 a part
    assert lines["audio"].chunks == 2  # 200 s in windows of 180 s
    assert lines["video segments"].chunks == 3  # 70 s in segments of at most 30 s
    assert lines["video segments"].media_seconds == pytest.approx(70, abs=0.5)
    assert report.cost_usd == pytest.approx(sum(line.cost_usd or 0 for line in report.plan))
    assert "video segments" in str(report)
    assert server.embed_requests == []
    assert len(index) == 0
    # the plan is close to what the service then bills (the keyframe count is a guess)
    index.add(folder)
    billed = server.usage.cost_usd
    planned = sum(line.cost_usd or 0 for line in report.plan if line.label != "video keyframes")
    keyframes = lines["video keyframes"].cost_usd or 0
    assert planned == pytest.approx(billed, rel=0.1, abs=keyframes + 1e-4)


def test_a_run_over_budget_is_refused_with_the_estimate_and_sends_nothing(
    tmp_path: Path, lecture: Path, server: FakeGeminiServer
) -> None:
    folder = course(tmp_path / "course", lecture)
    index = Index(tmp_path / "ix", embedder=gemini(server))
    with pytest.raises(BudgetExceededError, match="over max_cost") as caught:
        index.add(folder, max_cost=0.001)
    assert caught.value.estimate_usd > 0.001
    assert f"${caught.value.estimate_usd:,.2f}" in str(caught.value)
    assert server.embed_requests == []
    assert len(index) == 0
    report = index.add(folder, max_cost=100)
    assert len(report.added) == 4
    with pytest.raises(ConfigurationError):
        index.add(folder, max_cost=-1)


def test_the_cli_budget_guard_exits_7_and_the_strategy_is_chosen_per_index(
    tmp_path: Path,
    lecture: Path,
    server: FakeGeminiServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    folder = course(tmp_path / "course", lecture)
    ix = str(tmp_path / "ix")
    args = ["index", str(folder), "--index", ix, "--video-strategy", "keyframes"]
    assert main([*args, "--max-cost", "0.0001"]) == ExitCode.BUDGET
    assert "over max_cost" in capsys.readouterr().err
    assert server.embed_requests == []
    assert main([*args, "--json"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["index", str(folder), "--index", ix, "--video-strategy", "segments"]) == (
        ExitCode.INDEX
    )
    capsys.readouterr()
    assert main(["search", "--image", str(tmp_path / "q.png"), "--index", ix]) == ExitCode.USAGE
    capsys.readouterr()
    frames = list(VideoChunker(strategy="keyframes").chunk(lecture))
    query = tmp_path / "q.jpg"
    query.write_bytes(frames[1].content.read_bytes())  # type: ignore[union-attr]
    assert main(["search", "--image", str(query), "--index", ix, "--group", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]
    assert top["source"].endswith("lecture.mp4")
    assert top["modality"] == "video"
    assert top["ranges"][0]["uri"].startswith(top["source"] + "#t=")


def test_a_keyframe_and_a_segment_of_one_moment_group_into_one_range(
    tmp_path: Path, lecture: Path, server: FakeGeminiServer
) -> None:
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "lecture.mp4").write_bytes(lecture.read_bytes())
    index = Index(
        tmp_path / "ix", embedder=gemini(server), chunk_options={"video": {"strategy": "both"}}
    )
    index.add(folder)
    keyframe = [c for c in VideoChunker(strategy="keyframes").chunk(lecture)][1]
    results = index.search(keyframe.content, k=10, group=True)
    assert len(results) == 1
    top = results[0]
    assert len(top.matches) > 1
    assert top.matches[0].span == keyframe.span
    spans = [m.span for m in top.matches if isinstance(m.span, TimeSpan)]
    assert all(isinstance(r, TimeSpan) for r in top.ranges)
    covered = sum(r.duration for r in top.ranges if isinstance(r, TimeSpan))
    assert covered <= sum(s.duration for s in spans)  # overlapping spans were merged
    first = top.ranges[0]
    assert isinstance(first, TimeSpan)
    assert isinstance(keyframe.span, TimeSpan)
    assert first.start <= keyframe.span.start
    assert keyframe.span.end <= first.end
    assert top.range_uris[0] == f"{top.source}#{first.fragment}"
    assert top.location.startswith(str(first))


def test_windows_at_the_output_rate_are_copied_sample_for_sample(tmp_path: Path) -> None:
    path = make_audio("WAV", seconds=40, sample_rate=16000, path=tmp_path / "a.wav")
    source, _ = soundfile.read(path, dtype="int16")
    chunks = list(AudioChunker(window_seconds=15, overlap_seconds=2).chunk(path))
    assert len(chunks) == 3
    for chunk in chunks:
        assert isinstance(chunk.content, Audio)
        samples, rate = soundfile.read(io.BytesIO(chunk.content.read_bytes()), dtype="int16")
        assert rate == 16000
        assert isinstance(chunk.span, TimeSpan)
        start = round(chunk.span.start * 16000)
        assert np.array_equal(samples, source[start : start + len(samples)])


def test_each_file_commits_as_soon_as_its_vectors_are_in(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(6):
        (folder / f"n{i}.md").write_text(f"note {i} about topic {i}")
    seen: list[int] = []

    class Watching(FakeEmbedder):
        def embed(self, items: Any, *, task: Any = None) -> Any:  # type: ignore[override]
            # what is committed when each round goes out, read as another process would
            with sqlite3.connect(tmp_path / "ix" / "catalog.sqlite") as db:
                (n,) = db.execute("select count(*) from files where status='indexed'").fetchone()
            seen.append(n)
            return super().embed(items)

    index = Index(tmp_path / "ix", embedder=Watching(32), batch_size=1)
    index.add(folder)
    assert seen == [0, 1, 2, 3, 4, 5]


def test_a_killed_run_keeps_the_files_of_its_first_rounds(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        (folder / f"note{i:02d}.txt").write_text(f"note number {i} about topic{i}")
    ix = tmp_path / "ix"

    def committed() -> int:
        try:
            with sqlite3.connect(ix / "catalog.sqlite") as db:
                (n,) = db.execute("select count(*) from files where status='indexed'").fetchone()
        except sqlite3.Error:
            return 0
        return int(n)

    with FakeGeminiServer(latency=0.3) as service:
        env = {**service.env(), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        cmd = [sys.executable, "-m", "mmembed", "index", str(folder), "--index", str(ix)]
        proc = subprocess.Popen(
            [*cmd, "--batch-size", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while committed() == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()  # the run is young: its first files are in, most are not
        proc.wait()
    kept = len(Index(ix).files())
    assert 0 < kept < 30


def test_a_text_file_with_bad_utf8_is_skipped_before_anything_is_sent(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "ok.md").write_text("fine text")
    (folder / "bad.txt").write_bytes(b"good start " * 1000 + b"\xc3\x28 broken")
    embedder = FakeEmbedder(32)
    report = Index(tmp_path / "ix", embedder=embedder).add(folder)
    assert [Path(p.path).name for p in report.skipped] == ["bad.txt"]
    assert "UTF-8" in report.skipped[0].reason
    assert sum(len(call.items) for call in embedder.calls) == 1


def test_video_parts_in_memory_plan_like_files(lecture: Path) -> None:
    from mmembed._estimate import Planner
    from mmembed.limits import limits_for

    planner = Planner(limits_for("gemini-embedding-2"))
    video = Video(lecture.read_bytes(), "video/mp4")
    assert planner.add_file(video, VideoChunker(), size=len(video.read_bytes()))
    (line,) = planner.lines()
    assert (line.label, line.chunks) == ("video segments", 3)


@pytest.mark.parametrize(("unit", "size", "overlap"), [("tokens", 300, 40), ("chars", 900, 100)])
def test_a_text_file_is_cut_as_it_is_read_into_the_same_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unit: str, size: int, overlap: int
) -> None:
    from mmembed import Text
    from mmembed.chunkers import text as text_module
    from mmembed.chunkers.text import TextChunker
    from mmembed.testing.media import make_text

    monkeypatch.setattr(text_module, "_BLOCK", 4096)  # many blocks, windows across their seams
    monkeypatch.setattr(text_module, "_KEEP_BEHIND", 512)
    body = make_text(30_000, seed=3) + "ünïcödé " * 500 + "x" * 5000 + " end"
    path = tmp_path / "long.md"
    path.write_text("\ufeff" + body, encoding="utf-8")
    chunker = TextChunker(size=size, overlap=overlap, unit=unit)  # type: ignore[arg-type]
    streamed = list(chunker.chunk(path))
    whole = list(chunker.chunk(Text(body)))
    assert len(streamed) > 20
    assert [(c.span, c.content) for c in streamed] == [(c.span, c.content) for c in whole]
    for c in streamed:
        assert c.span is not None
        assert body[c.span.start : c.span.end] == c.content.text  # type: ignore[union-attr]
