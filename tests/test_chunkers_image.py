"""ImageChunker: right-sized, upright PNG/JPEG; conversions; decompression bombs refused."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image as PILImage

from mmembed import ChunkingError, ConfigurationError, Image, UnsupportedMediaError
from mmembed.chunkers.image import ImageChunker
from mmembed.limits import GEMINI_EMBEDDING_001, ModelLimits
from mmembed.protocols import Chunker
from mmembed.testing.contracts.chunker import ChunkerContract, Source
from mmembed.testing.media import make_image, make_pdf


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` pixels but carries almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _open(image: Image) -> PILImage.Image:
    return PILImage.open(io.BytesIO(image.read_bytes()))


def _is_red(pixel: object) -> bool:
    assert isinstance(pixel, tuple)
    r, g, b = pixel[:3]
    return bool(r > 200 and g < 80 and b < 80)


def _only(chunker: ImageChunker, source: Source) -> Image:
    (chunk,) = chunker.chunk(source)
    assert isinstance(chunk.content, Image)
    return chunk.content


class TestImageChunkerContract(ChunkerContract):
    span_type = None

    @pytest.fixture
    def chunker(self, limits: ModelLimits) -> Chunker:
        return ImageChunker(limits=limits)

    @pytest.fixture
    def sources(self, tmp_path: Path) -> list[Source]:
        png = tmp_path / "shapes.png"
        png.write_bytes(make_image("PNG"))
        wide = tmp_path / "wide.webp"
        wide.write_bytes(make_image("WEBP", (3200, 200)))
        return [str(png), wide, Image(make_image("JPEG")), Image(make_image("GIF"))]

    @pytest.fixture
    def bad_sources(self, tmp_path: Path) -> list[Source]:
        truncated = tmp_path / "truncated.png"
        truncated.write_bytes(make_image("PNG", (300, 300))[:400])
        bomb = tmp_path / "bomb.png"
        bomb.write_bytes(png_header_only(20_000, 10_000))
        pdf = tmp_path / "really-a-pdf.png"
        pdf.write_bytes(make_pdf(1))
        empty = tmp_path / "empty.jpg"
        empty.write_bytes(b"")
        return [str(truncated), str(bomb), str(pdf), str(empty)]


def test_png_and_jpeg_that_fit_are_passed_on_byte_for_byte() -> None:
    for fmt in ("PNG", "JPEG"):
        data = make_image(fmt, (640, 480))
        (chunk,) = ImageChunker().chunk(Image(data))
        assert isinstance(chunk.content, Image)
        assert chunk.content.read_bytes() == data
        assert chunk.metadata["converted"] is False
        assert chunk.span is None


def test_big_images_are_downscaled_keeping_the_aspect_ratio() -> None:
    image = _only(ImageChunker(), Image(make_image("PNG", (4000, 1000))))
    with _open(image) as im:
        assert im.size == (3072, 768)
    image = _only(ImageChunker(max_side=500), Image(make_image("JPEG", (1200, 1800))))
    assert image.mime_type == "image/jpeg"
    with _open(image) as im:
        assert im.size == (333, 500)


@pytest.mark.parametrize(
    ("fmt", "save", "expected"),
    [
        ("WEBP", {}, "image/jpeg"),  # lossy stays lossy
        ("WEBP", {"lossless": True}, "image/png"),
        ("BMP", {}, "image/png"),
        ("TIFF", {}, "image/png"),
        ("GIF", {}, "image/png"),
    ],
)
def test_formats_the_api_refuses_are_converted(
    fmt: str, save: dict[str, object], expected: str
) -> None:
    chunk = next(iter(ImageChunker().chunk(Image(make_image(fmt, (300, 200), **save)))))
    assert isinstance(chunk.content, Image)
    assert chunk.content.mime_type == expected
    assert chunk.metadata["original_format"] == fmt
    with _open(chunk.content) as im:
        assert im.format == expected.split("/")[1].upper()
        assert im.size == (300, 200)
        # The red square of the drawing survives the conversion.
        assert _is_red(im.convert("RGB").getpixel((10, 10)))


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [PILImage.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    image = _only(ImageChunker(), Image(out.getvalue()))
    with _open(image) as im:
        assert im.convert("RGB").getpixel((5, 5)) == (255, 0, 0)


def test_heic_is_converted_when_pillow_heif_is_installed() -> None:
    pytest.importorskip("pillow_heif")
    image = _only(ImageChunker(), Image(make_image("HEIF", (240, 160), quality=90)))
    assert image.mime_type == "image/jpeg"
    with _open(image) as im:
        assert im.size == (240, 160)


def test_exif_orientation_is_applied() -> None:
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    jpeg = make_image("JPEG", (200, 100), exif=exif.tobytes())
    chunk = next(iter(ImageChunker().chunk(Image(jpeg))))
    assert isinstance(chunk.content, Image)
    assert chunk.metadata["converted"] is True
    with _open(chunk.content) as shown:
        assert shown.size == (100, 200)
        # The red square, top-left in the stored pixels, is top-right once upright.
        assert _is_red(shown.convert("RGB").getpixel((90, 10)))


def test_transparency_is_kept_as_png_or_flattened_on_white_for_jpeg() -> None:
    im = PILImage.new("RGBA", (50, 50), (0, 0, 0, 0))
    out = io.BytesIO()
    im.save(out, format="WEBP", lossless=True)
    png = _only(ImageChunker(), Image(out.getvalue()))
    with _open(png) as shown:
        assert shown.mode == "RGBA"
        assert shown.getpixel((1, 1))[3] == 0  # type: ignore[index]
    jpeg = _only(ImageChunker(output="jpeg"), Image(out.getvalue()))
    with _open(jpeg) as shown:
        assert shown.format == "JPEG"
        assert shown.getpixel((1, 1)) == pytest.approx((255, 255, 255), abs=3)


def test_cmyk_jpeg_becomes_rgb() -> None:
    out = io.BytesIO()
    PILImage.new("CMYK", (4000, 100), (0, 255, 255, 0)).save(out, format="JPEG")
    image = _only(ImageChunker(), Image(out.getvalue()))
    with _open(image) as im:
        assert im.mode == "RGB"
        assert im.width == 3072


@pytest.mark.parametrize("isolate", [True, False])
@pytest.mark.parametrize(("width", "height"), [(20_000, 10_000), (10_000, 10_000)])
def test_decompression_bombs_are_refused_without_touching_pillows_global(
    isolate: bool, width: int, height: int
) -> None:
    before = PILImage.MAX_IMAGE_PIXELS
    with pytest.raises(ChunkingError, match="decompression bomb"):
        list(ImageChunker(isolate=isolate).chunk(Image(png_header_only(width, height))))
    assert before == PILImage.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("isolate", [True, False])
def test_the_pixel_limit_is_set_per_chunker(isolate: bool) -> None:
    data = make_image("PNG", (320, 200))
    with pytest.raises(ChunkingError, match="over the limit of 10,000 pixels"):
        list(ImageChunker(max_pixels=10_000, isolate=isolate).chunk(Image(data)))
    assert len(list(ImageChunker(isolate=isolate).chunk(Image(data)))) == 1


def test_damage_is_a_chunking_error_and_other_types_are_refused(tmp_path: Path) -> None:
    data = make_image("JPEG", (400, 300))
    path = tmp_path / "photo.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ChunkingError, match=r"photo\.jpg"):
        list(ImageChunker().chunk(path))
    path = tmp_path / "doc.png"
    path.write_bytes(make_pdf(1))
    with pytest.raises(UnsupportedMediaError, match="ImageChunker takes an image"):
        list(ImageChunker().chunk(path))


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="takes no images"):
        ImageChunker(limits=GEMINI_EMBEDDING_001)
    with pytest.raises(ConfigurationError):
        ImageChunker(max_side=4)
    with pytest.raises(ConfigurationError):
        ImageChunker(output="gif")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ImageChunker(jpeg_quality=0)


@pytest.mark.parametrize("isolate", [True, False])
def test_formats_outside_the_allow_list_never_reach_their_plugin(isolate: bool) -> None:
    # A Photoshop header: Pillow has a PSD plugin, but mmembed never hands files to it.
    psd = b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 64, 64, 8, 3) + b"\x00" * 64
    part = Image(psd, "image/vnd.adobe.photoshop")
    with PILImage.open(io.BytesIO(psd)) as im:
        assert im.format == "PSD"  # Pillow alone would open it
    with pytest.raises(UnsupportedMediaError, match="convert it to PNG or JPEG"):
        list(ImageChunker(isolate=isolate).chunk(part))
