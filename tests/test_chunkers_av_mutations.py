"""Corrupted MP4, WAV and MP3 files give valid chunks or mmembed errors: never a crash or a hang.

The variants are chunked in batches inside one isolated process each (``isolate=False`` within
it), which keeps the run to seconds. A batch whose process dies (a native crash) is replayed one
variant per isolated process, where a crash must surface as a ``ChunkingError``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from mmembed import Chunk, MMEmbedError
from mmembed.chunkers._sandbox import isolated
from mmembed.chunkers.audio import AudioChunker
from mmembed.chunkers.video import VideoChunker
from mmembed.content import Audio, Video
from mmembed.protocols import TimeSpan
from mmembed.testing.media import make_audio, make_video

VARIANTS = 56
BATCH = 14


def mutate(data: bytes, seed: int) -> bytes:
    """One corrupted copy of ``data``: truncations, bit flips, splices, zeroed headers."""
    rnd = random.Random(seed)
    kind = seed % 6
    b = bytearray(data)
    if kind == 0:  # truncation, often inside the header or the first frame
        return bytes(b[: rnd.choice([0, 8, 44, 100, 406, 1000, rnd.randrange(len(b))])])
    if kind == 1:  # scattered bit flips
        for _ in range(rnd.randint(1, 40)):
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
        return bytes(b)
    if kind == 2:  # zeroed header
        n = rnd.randint(4, 256)
        b[:n] = bytes(n)
        return bytes(b)
    if kind == 3:  # a splice: a block moved elsewhere
        i, j = sorted(rnd.randrange(len(b)) for _ in range(2))
        k = rnd.randrange(len(b))
        return bytes(b[:k] + b[i:j] + b[k:])
    if kind == 4:  # random bytes over a stretch near the start (box sizes, fmt chunk)
        i = rnd.randrange(min(len(b), 4096))
        n = rnd.randint(1, 64)
        b[i : i + n] = bytes(rnd.randrange(256) for _ in range(n))
        return bytes(b)
    # kind 5: big numbers written into the header (sizes, counts, rates)
    for _ in range(rnd.randint(1, 6)):
        i = rnd.randrange(min(len(b), 512))
        b[i : i + 4] = rnd.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00"])
    return bytes(b)


def _check(chunk: Chunk) -> None:
    assert isinstance(chunk.span, TimeSpan)
    assert chunk.span.duration <= 30.0 + 1e-6
    assert chunk.content.nbytes > 0  # type: ignore[union-attr]


def run_variants(kind: str, variants: list[bytes]) -> Iterator[str]:
    """Chunk each variant in this process; yield ``ok``, the mmembed error's class, or a leak."""
    for data in variants:
        try:
            if kind == "video":
                chunker = VideoChunker(isolate=False, frames_per_segment=1)
                part: Video | Audio = Video(data, "video/mp4")
                chunks = list(chunker.chunk(part))
            else:
                mime = "audio/mpeg" if kind == "mp3" else "audio/wav"
                achunker = AudioChunker(isolate=False, window_seconds=8, overlap_seconds=1)
                chunks = list(achunker.chunk(Audio(data, mime)))
            for chunk in chunks:
                _check(chunk)
            yield "ok"
        except MMEmbedError as exc:
            yield type(exc).__name__
        except Exception as exc:  # a leak is reported, not raised, so the batch goes on
            yield f"LEAK {type(exc).__name__}: {exc}"


def outcomes(kind: str, variants: list[bytes]) -> list[str]:
    results: list[str] = []
    for i in range(0, len(variants), BATCH):
        batch = variants[i : i + BATCH]
        got: list[str] = []
        try:
            got.extend(isolated(run_variants, kind, batch, timeout=60, name=f"{kind} batch"))
        except MMEmbedError:
            # The batch process died (a native crash): replay each remaining variant alone in
            # the real, isolated chunker, where that must be an mmembed error.
            for data in batch[len(got) :]:
                try:
                    if kind == "video":
                        list(VideoChunker(timeout=60).chunk(Video(data, "video/mp4")))
                    else:
                        mime = "audio/mpeg" if kind == "mp3" else "audio/wav"
                        list(AudioChunker(window_seconds=8).chunk(Audio(data, mime)))
                    got.append("ok")
                except MMEmbedError as exc:
                    got.append(type(exc).__name__)
        results.extend(got)
    return results


@pytest.fixture(scope="module")
def originals() -> dict[str, bytes]:
    video = make_video(seconds=12, fps=5, width=64, height=48, gop=10)
    wav = make_audio(seconds=10, sample_rate=8000)
    mp3 = make_audio("MP3", seconds=10, sample_rate=16000)
    assert video
    assert wav
    assert mp3
    return {"video": video, "wav": wav, "mp3": mp3}


@pytest.mark.parametrize("kind", ["video", "wav", "mp3"])
def test_corrupted_files_give_chunks_or_mmembed_errors(
    originals: dict[str, bytes], kind: str
) -> None:
    variants = [mutate(originals[kind], seed) for seed in range(VARIANTS)]
    results = outcomes(kind, variants)
    assert len(results) == VARIANTS
    leaks = [r for r in results if r.startswith("LEAK")]
    assert not leaks, leaks
    # the corruption is real: many variants fail, and some survive it
    assert results.count("ok") < VARIANTS
    assert any(r != "ok" for r in results)


def test_the_pristine_files_chunk(originals: dict[str, bytes]) -> None:
    for kind in ("video", "wav", "mp3"):
        assert outcomes(kind, [originals[kind]]) == ["ok"]


def test_a_file_truncated_in_its_first_frame_is_a_chunking_error() -> None:
    # PyAV #2344: a faststart MP4 cut inside its first frame crashed the decoder. Our own
    # segments are faststart, so cut one of them short.
    from mmembed import ChunkingError

    video = make_video(seconds=4, fps=5, width=64, height=48, gop=10, audio=False)
    assert video is not None
    (segment,) = VideoChunker().chunk(Video(video, "video/mp4"))
    blob = segment.content.read_bytes()  # type: ignore[union-attr]
    assert blob[4:8] == b"ftyp"
    for cut in (406, len(blob) // 3):
        with pytest.raises(ChunkingError):
            list(VideoChunker(frames_per_segment=1).chunk(Video(blob[:cut], "video/mp4")))


def test_the_sandbox_survives_a_hard_crash() -> None:
    # What the replay path relies on: a worker that dies by a signal is an mmembed error.
    with pytest.raises(MMEmbedError):
        list(isolated(_segfault, name="crash"))


def _segfault() -> Iterator[bytes]:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)
    yield b""
