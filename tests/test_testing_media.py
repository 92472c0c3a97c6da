"""mmembed.testing.media: real, small, deterministic files of every kind, and clear errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image as PILImage

from mmembed import load
from mmembed.errors import ConfigurationError, MissingDependencyError
from mmembed.testing.media import (
    make_audio,
    make_image,
    make_pdf,
    make_text,
    make_video,
    page_heading,
)

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("av", "pypdf", "pypdfium2", "pillow_heif", "fpdf")


def test_importing_it_loads_no_media_library() -> None:
    code = (
        "import sys, mmembed.testing.media; "
        "print(sorted(m for m in ('av', 'pypdf', 'pypdfium2', 'pillow_heif', 'PIL.Image', "
        "'soundfile') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------- text


@pytest.mark.parametrize("words", [1, 7, 12, 100, 1000])
def test_text_has_exactly_the_words_asked_for(words: int) -> None:
    text = make_text(words)
    assert len(text.split()) == words
    assert text.endswith(".\n")


def test_text_is_deterministic_per_seed_and_written_to_a_path(tmp_path: Path) -> None:
    assert make_text(300) == make_text(300)
    assert make_text(300, seed=1) != make_text(300)
    assert "\n\n" in make_text(300)  # paragraphs
    path = make_text(50, seed=2, path=tmp_path / "note.md")
    assert path == tmp_path / "note.md"
    assert path.read_text(encoding="utf-8") == make_text(50, seed=2)
    with pytest.raises(ConfigurationError, match="words must be positive"):
        make_text(0)


# ----------------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("PNG", "image/png"),
        ("jpeg", "image/jpeg"),
        ("JPG", "image/jpeg"),
        ("WEBP", "image/webp"),
        ("GIF", "image/gif"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_images_of_each_format(fmt: str, mime: str) -> None:
    data = make_image(fmt, (96, 64))
    assert load(data).mime_type == mime  # type: ignore[union-attr]
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.size == (96, 64)
        # the drawing's red square, top left
        red, green, blue = im.convert("RGB").getpixel((5, 5))  # type: ignore[misc]
        assert red > 200
        assert max(green, blue) < 100


def test_noise_is_incompressible_and_seeded() -> None:
    small, big = make_image("PNG", (32, 32), noise=True), make_image("PNG", (64, 64), noise=True)
    assert len(big) > 3.5 * len(small) > 3.5 * 3 * 32 * 32 * 0.9
    assert len(make_image("PNG", (64, 64))) < len(big) / 10  # the drawing compresses
    assert make_image("PNG", noise=True, seed=1) == make_image("PNG", noise=True, seed=1)
    assert make_image("PNG", noise=True, seed=1) != make_image("PNG", noise=True, seed=2)
    assert make_image("PNG", seed=1) != make_image("PNG", seed=2)


def test_image_caption_options_and_path(tmp_path: Path) -> None:
    assert make_image("PNG", caption="Invoice 42") != make_image("PNG")
    assert len(make_image("JPEG", quality=20)) < len(make_image("JPEG", quality=95))
    path = make_image("WEBP", (40, 30), path=tmp_path / "a.webp")
    assert path.read_bytes() == make_image("WEBP", (40, 30))
    with pytest.raises(ConfigurationError, match="Pillow cannot write 'XYZ'"):
        make_image("XYZ")
    with pytest.raises(ConfigurationError, match="width must be positive"):
        make_image("PNG", (0, 10))


def test_heif_needs_the_heif_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    if "pillow_heif" in sys.modules or _installed("pillow_heif"):
        assert load(make_image("HEIF", (64, 48))).mime_type == "image/heic"  # type: ignore[union-attr]
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "mmembed\[heif\]"'):
        make_image("HEIC")


# ------------------------------------------------------------------------------------ audio


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("WAV", "audio/wav"), ("FLAC", "audio/flac"), ("OGG", "audio/ogg"), ("MP3", "audio/mpeg")],
)
def test_audio_of_each_format_has_the_length_asked_for(fmt: str, mime: str) -> None:
    data = make_audio(fmt, seconds=2.5, sample_rate=16000, channels=2)
    assert load(data).mime_type == mime  # type: ignore[union-attr]
    info = soundfile.info(io.BytesIO(data))
    assert info.samplerate == 16000
    assert info.channels == 2
    assert info.duration == pytest.approx(2.5, abs=0.06)
    samples, _ = soundfile.read(io.BytesIO(data), dtype="float32")
    loudness = np.sqrt(np.mean(samples**2, axis=0))
    assert np.all(loudness > 0.2)  # a tone in both channels, never silence


def test_long_audio_goes_to_disk_in_blocks(tmp_path: Path) -> None:
    path = make_audio("FLAC", seconds=25, sample_rate=8000, path=tmp_path / "long.flac")
    assert path == tmp_path / "long.flac"
    assert soundfile.info(str(path)).frames == 25 * 8000
    assert make_audio(seconds=0.3) == make_audio(seconds=0.3)


def test_audio_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="unknown format 'AIFF'"):
        make_audio("AIFF")
    with pytest.raises(ConfigurationError, match="seconds must be positive"):
        make_audio(seconds=0)


def test_m4a_is_aac_in_an_mp4_container() -> None:
    av = pytest.importorskip("av")
    data = make_audio("M4A", seconds=3, sample_rate=22050, channels=2)
    assert load(data).mime_type == "audio/mp4"  # type: ignore[union-attr]
    with av.open(io.BytesIO(data)) as container:
        (stream,) = container.streams
        assert stream.codec_context.name == "aac"
        assert stream.channels == 2
        assert float(container.duration / 1e6) == pytest.approx(3, abs=0.1)
    with pytest.raises(ConfigurationError, match="1 or 2 channels"):
        make_audio("M4A", channels=3)


# ------------------------------------------------------------------------------------ video


def test_video_with_and_without_a_sound_track() -> None:
    av = pytest.importorskip("av")
    data = make_video(seconds=3, fps=5, width=64, height=48, gop=5)
    assert load(data).mime_type == "video/mp4"  # type: ignore[union-attr]
    with av.open(io.BytesIO(data)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (64, 48)
        assert float(container.duration / 1e6) == pytest.approx(3, abs=0.2)
        keyframes = [p.pts for p in container.demux(video) if p.pts is not None and p.is_keyframe]
        assert len(keyframes) == 3  # one each gop frames: a fixed interval
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 15
    assert not np.array_equal(frames[0], frames[5])  # each second looks different
    silent = make_video(seconds=1, audio=False)
    with av.open(io.BytesIO(silent)) as container:
        assert [s.type for s in container.streams] == ["video"]


def test_video_containers_caption_and_path(tmp_path: Path) -> None:
    pytest.importorskip("av")
    assert load(make_video(seconds=1, container="mov")).mime_type == "video/quicktime"  # type: ignore[union-attr]
    mkv = make_video(seconds=1, container="matroska", path=tmp_path / "clip.mkv")
    assert mkv == tmp_path / "clip.mkv"
    assert load(mkv).mime_type == "video/x-matroska"  # type: ignore[union-attr]
    assert make_video(seconds=1, caption="Lesson 2") != make_video(seconds=1)
    assert make_video(seconds=1) == make_video(seconds=1)
    with pytest.raises(ConfigurationError, match="must be even"):
        make_video(width=161)
    with pytest.raises(ConfigurationError, match="no 'nosuch' muxer"):
        make_video(container="nosuch")


def test_video_and_m4a_need_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "mmembed\[video\]"'):
        make_video()
    with pytest.raises(MissingDependencyError, match=r'pip install "mmembed\[video\]"'):
        make_audio("M4A")


# -------------------------------------------------------------------------------------- PDF


def _pdf_texts(data: bytes, password: str | None = None) -> tuple[list[str], list[str]]:
    """Each page's text as pypdf and as pdfium read it."""
    pypdf = pytest.importorskip("pypdf")
    pdfium = pytest.importorskip("pypdfium2")
    reader = pypdf.PdfReader(io.BytesIO(data), password=password)
    doc = pdfium.PdfDocument(data, password=password)
    try:
        by_pdfium = [page.get_textpage().get_text_bounded() for page in doc]
    finally:
        doc.close()
    return [page.extract_text() for page in reader.pages], by_pdfium


def test_pdf_pages_carry_real_text() -> None:
    data = make_pdf(9)
    assert load(data).mime_type == "application/pdf"  # type: ignore[union-attr]
    by_pypdf, by_pdfium = _pdf_texts(data)
    assert len(by_pypdf) == len(by_pdfium) == 9
    for i, (a, b) in enumerate(zip(by_pypdf, by_pdfium, strict=True), start=1):
        assert page_heading(i) in a
        assert page_heading(i) in b
    assert "This page is about rockets." in by_pdfium[1]
    assert make_pdf(9) == make_pdf(9)


def test_pdf_of_given_page_texts_wraps_long_lines() -> None:
    long = "word " * 200
    data = make_pdf(["Title one\n- a bullet\n" + long, "Café – 10 € (and a backslash \\)"])
    by_pypdf, by_pdfium = _pdf_texts(data)
    assert by_pdfium[0].startswith("Title one\r\n- a bullet\r\nword word")
    assert by_pdfium[0].count("word") == 200
    assert "Café – 10 € (and a backslash \\)" in by_pypdf[1]
    assert make_pdf("One page") == make_pdf(["One page"])


def test_pdf_pictures_are_images_on_the_pages() -> None:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(make_pdf(3, image=True)))
    for page in reader.pages:
        (picture,) = page.images
        assert picture.image.size == (200, 120)
    assert not pypdf.PdfReader(io.BytesIO(make_pdf(1))).pages[0].images


def test_pdf_encryption() -> None:
    pypdf = pytest.importorskip("pypdf")
    pdfium = pytest.importorskip("pypdfium2")
    locked = make_pdf(2, image=True, password="secret")
    assert locked == make_pdf(2, image=True, password="secret")
    reader = pypdf.PdfReader(io.BytesIO(locked))
    assert reader.is_encrypted
    assert not reader.decrypt("wrong")
    with pytest.raises(pdfium.PdfiumError):
        pdfium.PdfDocument(locked)
    by_pypdf, by_pdfium = _pdf_texts(locked, password="secret")
    assert page_heading(2) in by_pypdf[1]
    assert page_heading(2) in by_pdfium[1]
    open_to_all = make_pdf(1, password="")
    assert b"/Encrypt" in open_to_all
    assert page_heading(1) in _pdf_texts(open_to_all)[1][0]


def test_pdf_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="at least one page"):
        make_pdf([])
    with pytest.raises(ConfigurationError, match="pages must be positive"):
        make_pdf(0)
    with pytest.raises(ConfigurationError, match="page 2 needs 60 lines"):
        make_pdf(["fits", "too long\n" + "line\n" * 59])
    path = make_pdf(2, path=tmp_path / "deck.pdf")
    assert path.read_bytes() == make_pdf(2)


def test_text_images_wav_and_pdf_need_only_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPTIONAL:
        monkeypatch.setitem(sys.modules, name, None)
    assert make_text(5)
    assert make_image("WEBP")
    assert make_audio("MP3", seconds=0.5)
    assert make_pdf(2, image=True, password="secret")


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
