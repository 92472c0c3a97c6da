"""Make any image the model can take: upright, not too big, PNG or JPEG; refuse bombs.

>>> from mmembed.chunkers import ImageChunker
>>> (chunk,) = ImageChunker(max_side=1024).chunk("holiday.webp")  # doctest: +SKIP
>>> chunk.content.mime_type, chunk.metadata["width"]                 # doctest: +SKIP
('image/jpeg', 1024)

Decoding runs in the decoder sandbox by default (Pillow's C plugins have had memory-safety bugs);
the pixel limit is checked from the header, before any pixel is decoded, and is set per call:
Pillow's global ``Image.MAX_IMAGE_PIXELS`` is never changed in the caller's process.
"""

from __future__ import annotations

import importlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Literal

from mmembed._optional import import_optional
from mmembed.chunkers._common import SandboxedChunker, resolve_source
from mmembed.content import Image, Modality, Part
from mmembed.errors import ChunkingError, ConfigurationError, UnsupportedMediaError
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits
from mmembed.protocols import Chunk

__all__ = ["ImageChunker"]

#: Longest side of the images the chunker hands on, by default.
DEFAULT_MAX_SIDE = 3072
#: Pillow's own default warning threshold (about 89.5 megapixels): a 24-bit image that big
#: decodes to 256 MiB. Anything larger is refused unless the caller raises ``max_pixels``.
DEFAULT_MAX_PIXELS = 89_478_485

# Formats Pillow may use to open a file (camera MPO files open through JPEG). Anything else
# (EPS, FITS, PSD, McIdas, ...) is never handed to its plugin: those parsers are rarely needed
# and have had the most advisories.
_PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "AVIF", "ICO")
_PLUGINS = tuple(
    f"PIL.{name}ImagePlugin"
    for name in ("Png", "Jpeg", "WebP", "Gif", "Bmp", "Tiff", "Avif", "Ico")
)
_HEIF_MIME = frozenset({"image/heic", "image/heif"})
# Sources that are lossy already re-encode as JPEG; lossless ones as PNG (unless told).
_LOSSY = frozenset({"JPEG", "MPO", "HEIF", "AVIF", "WEBP-LOSSY"})


def _webp_is_lossy(head: bytes) -> bool:
    """Whether a WebP file holds lossy (VP8) rather than lossless (VP8L) image data."""
    body = head[12:]
    return b"VP8 " in body and b"VP8L" not in body


@dataclass(frozen=True, slots=True)
class _Options:
    name: str
    mime_type: str
    max_side: int
    max_pixels: int
    output: Literal["auto", "png", "jpeg"]
    jpeg_quality: int
    accepted: frozenset[str]
    max_bytes: int
    in_worker: bool


def _open(fp: BinaryIO, options: _Options) -> tuple[Any, str]:
    """Open the image lazily (header only) and return it with its format name."""
    from PIL import Image as PILImage

    if options.mime_type in _HEIF_MIME:
        heif = import_optional("pillow_heif", extra="heif", purpose="ImageChunker (HEIC/HEIF)")
        # Opening through pillow_heif directly registers nothing in Pillow: no global change.
        heif_file = heif.open_heif(fp, convert_hdr_to_8bit=True)
        width, height = heif_file.size
        _check_pixels(width, height, options)
        return heif_file.to_pillow(), "HEIF"
    # Register only the allowed plugins (Image.init() would import all forty of them).
    for module in _PLUGINS:
        try:
            importlib.import_module(module)
        except ImportError:  # e.g. a Pillow built without AVIF
            continue
    formats = [f for f in _PILLOW_FORMATS if f in PILImage.OPEN]
    im = PILImage.open(fp, formats=formats)
    return im, str(im.format)


def _check_pixels(width: int, height: int, options: _Options) -> None:
    if width <= 0 or height <= 0:
        raise ChunkingError(f"{options.name}: the image claims a size of {width} × {height}")
    if width * height > options.max_pixels:
        raise ChunkingError(
            f"{options.name}: {width} × {height} = {width * height:,} pixels is over the limit "
            f"of {options.max_pixels:,} pixels, so it was not decoded (it may be a "
            "decompression bomb); pass max_pixels= to ImageChunker if the image is genuine"
        )


def _has_alpha(im: Any) -> bool:
    return bool(im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info)


def _encode(im: Any, fmt: Literal["png", "jpeg"], quality: int) -> tuple[bytes, str]:
    from PIL import Image as PILImage

    out = io.BytesIO()
    if fmt == "png":
        if im.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16"):
            im = im.convert("RGBA" if _has_alpha(im) else "RGB")
        im.save(out, format="PNG")
        return out.getvalue(), "image/png"
    if _has_alpha(im):
        # JPEG has no alpha: lay the image on white, as viewers show transparency.
        rgba = im.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        im = background
    elif im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    im.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue(), "image/jpeg"


def _decode(fp: BinaryIO, options: _Options, original: bytes | Path) -> Chunk:
    from PIL import Image as PILImage
    from PIL import ImageOps

    head = fp.read(4096)
    fp.seek(0)
    im, fmt = _open(fp, options)
    if fmt == "WEBP" and _webp_is_lossy(head):
        fmt = "WEBP-LOSSY"
    with im:
        width, height = im.size
        _check_pixels(width, height, options)
        too_big = max(width, height) > options.max_side
        if too_big:
            # JPEG can decode straight at a fraction of the size: far less memory and time.
            im.draft(im.mode, (options.max_side, options.max_side))
        if getattr(im, "is_animated", False):
            im.seek(0)  # the first frame stands for an animation
        # Decode before anything else reads the file (getexif() may load it, and a damaged
        # image must fail here rather than be passed on).
        im.load()
        try:
            orientation = int(im.getexif().get(0x0112, 1))
        except Exception:  # a damaged EXIF block should not cost the picture
            orientation = 1
        mime = PILImage.MIME.get(fmt, f"image/{fmt.lower()}")
        passthrough = (
            fmt in ("PNG", "JPEG")
            and mime in options.accepted
            and not too_big
            and orientation in (0, 1)
            and options.output == "auto"
        )
        if passthrough:
            data = original.read_bytes() if isinstance(original, Path) else original
            if len(data) <= options.max_bytes:
                return _chunk(Image(data, mime), options, im.size, (width, height), fmt, False)
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception:  # an unreadable orientation: keep the pixels as stored
            upright = im.copy()
        upright.thumbnail((options.max_side, options.max_side), PILImage.Resampling.LANCZOS)
        target: Literal["png", "jpeg"]
        if options.output != "auto":
            target = options.output
        elif _has_alpha(upright) or fmt not in _LOSSY:
            target = "png"
        else:
            target = "jpeg"
        if f"image/{target}" not in options.accepted:
            target = "png" if target == "jpeg" else "jpeg"
        data, mime = _encode(upright, target, options.jpeg_quality)
        if len(data) > options.max_bytes and target == "png":
            data, mime = _encode(upright, "jpeg", options.jpeg_quality)
        if len(data) > options.max_bytes:
            raise ChunkingError(
                f"{options.name}: even re-encoded the image is {len(data)} bytes, over the "
                f"model's {options.max_bytes} bytes; pass a smaller max_side"
            )
        return _chunk(Image(data, mime), options, upright.size, (width, height), fmt, True)


def _chunk(
    image: Image,
    options: _Options,
    size: tuple[int, int],
    original_size: tuple[int, int],
    fmt: str,
    converted: bool,
) -> Chunk:
    return Chunk(
        content=image,
        source=options.name,
        metadata=MappingProxyType(
            {
                "width": size[0],
                "height": size[1],
                "original_width": original_size[0],
                "original_height": original_size[1],
                "original_format": fmt.split("-")[0],
                "converted": converted,
            }
        ),
    )


def image_chunks(data: bytes | Path, options: _Options) -> Iterator[Chunk]:
    """The one chunk of an image (module-level so the sandbox can run it)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if options.in_worker:
        # This process is ours alone: make Pillow's own bomb check match the caller's limit
        # and let it fail fast instead of warning.
        PILImage.MAX_IMAGE_PIXELS = options.max_pixels
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
    try:
        if isinstance(data, Path):
            with data.open("rb") as fp:
                yield _decode(fp, options, data)
        else:
            yield _decode(io.BytesIO(data), options, data)
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ChunkingError(
            f"{options.name}: the image is over the limit of {options.max_pixels:,} pixels "
            f"({exc}), so it was not decoded (it may be a decompression bomb); pass "
            "max_pixels= to ImageChunker if the image is genuine"
        ) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(
            f"{options.name}: Pillow cannot read this image ({options.mime_type}); convert it "
            "to PNG or JPEG"
        ) from exc


class ImageChunker(SandboxedChunker):
    """One chunk per image, upright, at most ``max_side`` pixels on its longest side.

    PNG and JPEG images that need no change are passed on byte for byte. Others are converted:
    WebP, GIF (first frame), BMP, TIFF, AVIF, ICO and HEIC/HEIF (with the ``heif`` extra) become
    PNG when lossless or transparent, JPEG when the source was lossy. EXIF orientation is
    applied. The chunk's span is ``None`` (a whole item); its metadata holds ``width``,
    ``height``, ``original_width``, ``original_height``, ``original_format`` and ``converted``.

    Args:
        limits: the model's limits (accepted formats, bytes per item).
        max_side: the longest side, in pixels, of the images handed on.
        max_pixels: images with more pixels than this (from the header) are refused before
            decoding, as decompression bombs; the default is Pillow's (about 89.5 MP).
        output: ``"auto"``, or force ``"png"`` or ``"jpeg"`` for converted images.
        jpeg_quality: JPEG quality for converted images.
        isolate: decode in a separate process (default) so a hostile file cannot crash or
            exhaust this one; ``False`` is faster for trusted files.
        timeout: seconds allowed per image when isolated.
        memory_mb: address-space limit of the isolated process.
    """

    def __init__(
        self,
        *,
        limits: ModelLimits | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        output: Literal["auto", "png", "jpeg"] = "auto",
        jpeg_quality: int = 90,
        isolate: bool = True,
        timeout: float = 60.0,
        memory_mb: int | None = 2048,
    ) -> None:
        self.limits = limits if limits is not None else GEMINI_EMBEDDING_2
        if Modality.IMAGE not in self.limits.modalities:
            raise ConfigurationError(f"{self.limits.model} takes no images")
        if max_side < 16:
            raise ConfigurationError(f"max_side must be at least 16 pixels, got {max_side}")
        if max_pixels < 1:
            raise ConfigurationError(f"max_pixels must be positive, got {max_pixels}")
        if output not in ("auto", "png", "jpeg"):
            raise ConfigurationError(f"output must be 'auto', 'png' or 'jpeg', got {output!r}")
        if not 1 <= jpeg_quality <= 100:
            raise ConfigurationError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.output: Literal["auto", "png", "jpeg"] = output
        self.jpeg_quality = jpeg_quality
        self.isolate = isolate
        self.timeout = timeout
        self.memory_mb = memory_mb

    def __repr__(self) -> str:
        return (
            f"ImageChunker(max_side={self.max_side}, output={self.output!r}, "
            f"model={self.limits.model!r})"
        )

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        """Yield the one chunk of ``source`` (an :class:`~mmembed.Image` or a path to one).

        Raises (while iterating):
            ChunkingError: the image is damaged, hostile, or over ``max_pixels``.
            UnsupportedMediaError: the source is not an image, or of a format Pillow lacks.
        """
        part, name = resolve_source(source, Modality.IMAGE, "ImageChunker")
        assert isinstance(part, Image)
        if part.mime_type in _HEIF_MIME:
            import_optional("pillow_heif", extra="heif", purpose="ImageChunker (HEIC/HEIF)")
        options = _Options(
            name=name,
            mime_type=part.mime_type,
            max_side=self.max_side,
            max_pixels=self.max_pixels,
            output=self.output,
            jpeg_quality=self.jpeg_quality,
            accepted=self.limits.image_mime_types,
            max_bytes=self.limits.max_inline_bytes,
            # Without fork there is no worker, and the caller's Pillow settings stay untouched.
            in_worker=self.isolate and hasattr(os, "fork"),
        )
        yield from self._isolated(
            image_chunks,
            part.data,
            options,
            name=name,
            preload=("PIL.Image", "PIL.ImageOps", *_PLUGINS),
        )
