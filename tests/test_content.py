from __future__ import annotations

import pickle
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

import mmembed
from mmembed import (
    Audio,
    ConfigurationError,
    Content,
    Image,
    Modality,
    Pdf,
    Text,
    UnsupportedMediaError,
    Video,
    load,
)
from mmembed.content import as_content, content_hash
from mmembed.testing.media import make_audio, make_image, make_pdf


def mp4_header(brand: bytes) -> bytes:
    """The first box of an ISO-BMFF file with the given major brand (enough for sniffing)."""
    body = brand + b"\x00\x00\x02\x00" + brand + b"mp41"
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 64


@pytest.mark.parametrize(
    ("data", "cls", "mime"),
    [
        (make_image("PNG"), Image, "image/png"),
        (make_image("JPEG"), Image, "image/jpeg"),
        (make_image("WEBP"), Image, "image/webp"),
        (make_image("GIF"), Image, "image/gif"),
        (make_image("BMP"), Image, "image/bmp"),
        (make_audio("WAV"), Audio, "audio/wav"),
        (make_audio("FLAC"), Audio, "audio/flac"),
        (make_audio("OGG"), Audio, "audio/ogg"),
        (make_audio("MP3"), Audio, "audio/mpeg"),
        (mp4_header(b"isom"), Video, "video/mp4"),
        (mp4_header(b"avc1"), Video, "video/mp4"),
        (mp4_header(b"iso5"), Video, "video/mp4"),
        (mp4_header(b"qt  "), Video, "video/quicktime"),
        (mp4_header(b"M4A "), Audio, "audio/mp4"),
        (make_pdf(), Pdf, "application/pdf"),
    ],
)
def test_load_sniffs_the_bytes(data: bytes, cls: type, mime: str) -> None:
    part = load(data)
    assert type(part) is cls
    assert part.mime_type == mime  # type: ignore[union-attr]


def test_load_ignores_the_extension(tmp_path: Path) -> None:
    fake_text = tmp_path / "notes.txt"
    fake_text.write_bytes(make_image("PNG"))
    part = load(fake_text)
    assert isinstance(part, Image)
    assert part.path == fake_text  # referenced, not read into memory
    real_text = tmp_path / "photo.png"
    real_text.write_text("Krebs cycle – notes ✓", encoding="utf-8")
    assert load(real_text) == Text("Krebs cycle – notes ✓")


def test_load_text_bytes_and_bom() -> None:
    assert load(b"\xef\xbb\xbfhello") == Text("hello")
    assert load(b"") == Text("")


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"\x00\x01\x02\x03garbage\x00", "unknown binary data"),
        (b"MZ\x90\x00" + b"\x00" * 60, "application/x-msdownload"),
        (b"\xff\xfe\xfa\x00\x00\x10", "unknown binary data"),
    ],
)
def test_load_refuses_unsupported_bytes_naming_what_it_found(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedMediaError, match=named):
        load(data)


def test_load_refuses_a_zip_naming_it() -> None:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(UnsupportedMediaError, match="application/zip"):
        load(buf.getvalue())


def test_load_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load(tmp_path / "nope.mp4")


def test_media_sniffs_when_mime_is_omitted_and_checks_the_kind() -> None:
    assert Image(make_image("JPEG")).mime_type == "image/jpeg"
    with pytest.raises(UnsupportedMediaError, match="audio/wav"):
        Image(make_audio("WAV"))
    assert Image(b"not sniffed", "image/png").mime_type == "image/png"


def test_media_by_path_is_lazy_and_streams(tmp_path: Path) -> None:
    data = make_audio("WAV", seconds=2.0)
    p = tmp_path / "clip.wav"
    p.write_bytes(data)
    part = Audio.from_path(p)
    assert part.path == p
    assert part.nbytes == len(data)
    assert part.read_bytes() == data
    with part.open() as f:
        assert f.read(4) == b"RIFF"
    in_memory = Audio(data)
    assert in_memory.sha256() == part.sha256()
    assert content_hash(in_memory) == content_hash(part)


def test_reprs_never_dump_bytes() -> None:
    data = make_image("PNG", (64, 64))
    text = repr(Image(data))
    assert len(text) < 80
    assert "bytes" in text
    assert "image/png" in text


def test_content_groups_parts_and_validates() -> None:
    img = Image(make_image())
    item = Content(["caption", img])
    assert item.parts == (Text("caption"), img)
    assert item.modalities == {Modality.TEXT, Modality.IMAGE}
    with pytest.raises(ConfigurationError, match="at least one"):
        Content([])
    with pytest.raises(ConfigurationError, match="list of parts"):
        Content("just a string")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="got int"):
        Content([1])  # type: ignore[list-item]


def test_text_refuses_bytes() -> None:
    with pytest.raises(ConfigurationError, match="needs a str"):
        Text(b"raw")  # type: ignore[arg-type]


def test_as_content_and_hash() -> None:
    assert as_content("x") == Content([Text("x")])
    assert content_hash("x") == content_hash(Text("x"))
    assert content_hash("x") != content_hash(Text("x", title="t"))
    assert content_hash(Content(["a", "b"])) != content_hash(Content(["ab"]))
    assert content_hash(Content(["a", "b"])) != content_hash(Content(["b", "a"]))
    with pytest.raises(ConfigurationError, match="cannot embed a int"):
        as_content(3)  # type: ignore[arg-type]


def test_parts_are_frozen_values() -> None:
    t = Text("a")
    with pytest.raises(AttributeError):
        t.text = "b"  # type: ignore[misc]
    assert Text("a") == t
    assert hash(Text("a")) == hash(t)
    assert pickle.loads(pickle.dumps(t)) == t  # usable across processes


def test_top_level_exports() -> None:
    assert mmembed.load is load
    assert mmembed.Pdf(make_pdf()).mime_type == "application/pdf"
