"""What can be embedded: text, images, audio, video, PDFs, and combinations of them.

Every part is a frozen value object. Media hold either their bytes or a path to a file that is
read only when needed, so a two-hour video is never loaded into memory just to be referenced.

>>> from mmembed import Content, Image, Text
>>> item = Content([Text("A red bicycle"), Image(b"\\x89PNG\\r\\n\\x1a\\n...", "image/png")])
>>> len(item.parts)
2
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, ClassVar, TypeAlias

from mmembed._sniff import HEAD_BYTES, check_text_block, describe, sniff
from mmembed.errors import ConfigurationError, UnsupportedMediaError

__all__ = [
    "Audio",
    "Content",
    "Embeddable",
    "Image",
    "Media",
    "Modality",
    "Part",
    "Pdf",
    "Task",
    "Text",
    "as_content",
    "content_hash",
    "load",
    "main_modality",
    "modality_of",
]

_HASH_BLOCK = 1 << 20


class Modality(StrEnum):
    """The kind of a piece of content."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    PDF = "pdf"


class Task(StrEnum):
    """What an embedding is for. Each backend translates it the way its model expects.

    ``QUERY`` and ``DOCUMENT`` are the two sides of retrieval; the question-answering, fact-checking
    and code-retrieval tasks are query-side variants; the last three are symmetric.
    """

    QUERY = "query"
    DOCUMENT = "document"
    QUESTION_ANSWERING = "question_answering"
    FACT_CHECKING = "fact_checking"
    CODE_RETRIEVAL = "code_retrieval"
    CLASSIFICATION = "classification"
    CLUSTERING = "clustering"
    SIMILARITY = "similarity"


def modality_of(mime_type: str) -> Modality | None:
    """The modality a MIME type belongs to, or ``None`` when mmembed cannot embed it."""
    if mime_type == "application/pdf":
        return Modality.PDF
    if mime_type.startswith("text/"):
        return Modality.TEXT
    for prefix, modality in (
        ("image/", Modality.IMAGE),
        ("audio/", Modality.AUDIO),
        ("video/", Modality.VIDEO),
    ):
        if mime_type.startswith(prefix):
            return modality
    return None


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of text. ``title`` is used by backends that embed documents with a title."""

    text: str
    title: str | None = field(default=None, kw_only=True)

    modality: ClassVar[Modality] = Modality.TEXT

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ConfigurationError(
                f"Text needs a str, got {type(self.text).__name__}; "
                "decode bytes first or use mmembed.load() to detect the type"
            )


@dataclass(frozen=True, slots=True, repr=False)
class Media:
    """Base of the binary parts: bytes in memory, or a path read only when needed.

    Args:
        data: the raw bytes, or a path to the file holding them.
        mime_type: the IANA media type; sniffed from the bytes when left empty.
    """

    data: bytes | Path
    mime_type: str = ""

    modality: ClassVar[Modality]

    def __post_init__(self) -> None:
        data: object = self.data
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif isinstance(data, (str, os.PathLike)):
            data = Path(data)
        if not isinstance(data, (bytes, Path)):
            raise ConfigurationError(
                f"{type(self).__name__} needs bytes or a path, got {type(data).__name__}"
            )
        object.__setattr__(self, "data", data)
        if not self.mime_type:
            found = sniff(self.head())
            if found is None or modality_of(found) is not self.modality:
                raise UnsupportedMediaError(
                    f"{type(self).__name__} {self.name}: the bytes are {describe(self.head())}, "
                    f"not {self.modality.value}; pass mime_type= or use mmembed.load() to detect "
                    "the type"
                )
            object.__setattr__(self, "mime_type", found)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], mime_type: str = "") -> Media:
        """Reference a file by path; its type is sniffed from its first bytes."""
        p = Path(path)
        if not p.is_file():
            raise ConfigurationError(f"{p} is not a readable file")
        return cls(p, mime_type)

    @property
    def path(self) -> Path | None:
        """The file this part reads from, or ``None`` when it holds its bytes."""
        return self.data if isinstance(self.data, Path) else None

    @property
    def name(self) -> str:
        """A short name for messages: the file name, or the size of the in-memory bytes."""
        if isinstance(self.data, Path):
            return repr(self.data.name)
        return f"<{len(self.data)} bytes>"

    @property
    def nbytes(self) -> int:
        """Size of the content in bytes."""
        if isinstance(self.data, Path):
            return self.data.stat().st_size
        return len(self.data)

    def read_bytes(self) -> bytes:
        """The whole content as bytes (reads the file when held by path)."""
        if isinstance(self.data, Path):
            return self.data.read_bytes()
        return self.data

    def head(self, n: int = HEAD_BYTES) -> bytes:
        """The first ``n`` bytes."""
        if isinstance(self.data, Path):
            with self.data.open("rb") as f:
                return f.read(n)
        return self.data[:n]

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """A binary file object over the content, without copying in-memory bytes."""
        if isinstance(self.data, Path):
            with self.data.open("rb") as f:
                yield f
        else:
            yield io.BytesIO(self.data)

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes, streamed from disk for path-held media."""
        h = hashlib.sha256()
        if isinstance(self.data, Path):
            with self.data.open("rb") as f:
                while block := f.read(_HASH_BLOCK):
                    h.update(block)
        else:
            h.update(self.data)
        return h.hexdigest()

    def __repr__(self) -> str:
        where = f"path={str(self.data)!r}" if isinstance(self.data, Path) else self.name
        return f"{type(self).__name__}({where}, mime_type={self.mime_type!r})"


@dataclass(frozen=True, slots=True, repr=False)
class Image(Media):
    """An image (PNG and JPEG are sent as they are; other formats are converted by chunkers)."""

    modality: ClassVar[Modality] = Modality.IMAGE


@dataclass(frozen=True, slots=True, repr=False)
class Audio(Media):
    """An audio clip (WAV and MP3 are accepted by Gemini; chunkers convert the rest)."""

    modality: ClassVar[Modality] = Modality.AUDIO


@dataclass(frozen=True, slots=True, repr=False)
class Video(Media):
    """A video clip (MP4 and MOV)."""

    modality: ClassVar[Modality] = Modality.VIDEO


@dataclass(frozen=True, slots=True, repr=False)
class Pdf(Media):
    """A PDF document."""

    mime_type: str = "application/pdf"

    modality: ClassVar[Modality] = Modality.PDF


Part: TypeAlias = Text | Image | Audio | Video | Pdf


@dataclass(frozen=True, slots=True)
class Content:
    """Several parts that make ONE combined vector (an image with its caption, ...).

    A bare ``str`` among the parts is a :class:`Text`.
    """

    parts: tuple[Part, ...]

    def __init__(self, parts: Sequence[Part | str]) -> None:
        if isinstance(parts, (str, Text, Media)):
            raise ConfigurationError(
                "Content takes a list of parts, e.g. Content([Text('caption'), image])"
            )
        converted = tuple(Text(p) if isinstance(p, str) else p for p in parts)
        if not converted:
            raise ConfigurationError("Content needs at least one part")
        for p in converted:
            if not isinstance(p, (Text, Media)):
                raise ConfigurationError(
                    f"Content parts must be str, Text, Image, Audio, Video or Pdf; "
                    f"got {type(p).__name__}"
                )
        object.__setattr__(self, "parts", converted)

    @property
    def modalities(self) -> frozenset[Modality]:
        """The modalities present among the parts."""
        return frozenset(p.modality for p in self.parts)


Embeddable: TypeAlias = str | Part | Content
"""Anything an :class:`~mmembed.protocols.Embedder` accepts as one item (one vector)."""

_PART_TYPES: dict[Modality, type[Image | Audio | Video | Pdf]] = {
    Modality.IMAGE: Image,
    Modality.AUDIO: Audio,
    Modality.VIDEO: Video,
    Modality.PDF: Pdf,
}


def as_content(item: Embeddable) -> Content:
    """Normalise any :data:`Embeddable` to a :class:`Content`."""
    if isinstance(item, Content):
        return item
    if isinstance(item, str):
        return Content([Text(item)])
    if isinstance(item, (Text, Media)):
        return Content([item])
    raise ConfigurationError(
        f"cannot embed a {type(item).__name__}: pass a str, Text, Image, Audio, Video, Pdf or "
        "Content (use mmembed.load(path) for files)"
    )


def as_items(items: object) -> list[Embeddable]:
    """The items of an ``embed()`` call as a list: a sequence of items, never one item alone.

    A bare ``str``, ``bytes``, part or :class:`Content` is refused (wrap it: ``[item]``), as
    are a mapping (its keys would be embedded) and anything that is not a collection of items;
    each item itself is checked by :func:`as_content`.
    """
    if isinstance(items, (str, bytes, Text, Media, Content)):
        raise ConfigurationError(
            "embed() takes a sequence of items, e.g. embed(['some text']); got a single "
            f"{type(items).__name__}"
        )
    if isinstance(items, Mapping) or not isinstance(items, Iterable):
        raise ConfigurationError(
            "embed() takes a sequence of items, e.g. embed(['some text']); got a "
            f"{type(items).__name__}"
        )
    return list(items)


def as_task(task: object) -> Task:
    """``task`` as a :class:`Task`, or a :class:`ConfigurationError` listing the tasks."""
    try:
        return Task(task)  # type: ignore[arg-type]  # anything a caller passed
    except (ValueError, TypeError):
        names = ", ".join(t.name for t in Task)
        raise ConfigurationError(f"unknown task {task!r}; use one of Task.{{{names}}}") from None


def main_modality(item: Embeddable) -> Modality:
    """The modality an item is filed and priced under: that of its first part that is not text.

    An image with a caption is an image; an item of text parts only is text. Usage reports,
    error hints and search filters all use this one rule.

    >>> main_modality(Content(["a red bicycle", Image(b"\\x89PNG\\r\\n\\x1a\\n", "image/png")]))
    <Modality.IMAGE: 'image'>
    >>> main_modality("plain text")
    <Modality.TEXT: 'text'>
    """
    if isinstance(item, str):
        return Modality.TEXT
    for part in as_content(item).parts:
        if not isinstance(part, Text):
            return part.modality
    return Modality.TEXT


def content_hash(item: Embeddable) -> str:
    """A stable hex SHA-256 identifying the item's content (types, MIME types, bytes, text)."""
    h = hashlib.sha256()
    for part in as_content(item).parts:
        if isinstance(part, Text):
            h.update(b"text\0")
            h.update(part.title.encode() if part.title is not None else b"\1")
            h.update(b"\0")
            h.update(part.text.encode("utf-8", "surrogatepass"))
        else:
            h.update(f"{part.modality.value}\0{part.mime_type}\0".encode())
            h.update(part.sha256().encode())
        h.update(b"\0\0")
    return h.hexdigest()


def load(source: str | os.PathLike[str] | bytes) -> Part:
    """Load a file or bytes as the right part type, decided by the bytes, never the name.

    A path to a media file is referenced, not read into memory; a text file is read and decoded
    as UTF-8. A ``str`` is always a path here: wrap literal text in :class:`Text` instead.

    Raises:
        UnsupportedMediaError: the bytes are of no supported type; the message says what they are.
        ConfigurationError: the path does not exist or is not a file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        head = data[:HEAD_BYTES]
        mime, modality = _sniff_head(head)
        if modality is Modality.TEXT:
            return Text(_decode_text(data, "<bytes>"))
        if modality is None:
            raise UnsupportedMediaError(
                f"cannot embed {describe(head)}: mmembed takes text, images, audio, video and PDFs"
            )
        return _PART_TYPES[modality](data, mime or "")
    path = Path(source)
    if not path.is_file():
        raise ConfigurationError(f"{path} does not exist or is not a regular file")
    head, mime, modality = sniff_file(path)
    if modality is Modality.TEXT:
        return Text(_decode_text(path.read_bytes(), str(path)))
    if modality is None:
        raise UnsupportedMediaError(
            f"{path}: cannot embed {describe(head)}; mmembed takes text, images, audio, "
            "video and PDFs"
        )
    return _PART_TYPES[modality](path, mime or "")


def sniff_file(path: Path) -> tuple[bytes, str | None, Modality | None]:
    """The first bytes of the file at ``path``, the MIME type they show, and its modality
    (``None`` for a type or a modality mmembed does not take)."""
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    mime, modality = _sniff_head(head)
    return head, mime, modality


def _sniff_head(head: bytes) -> tuple[str | None, Modality | None]:
    mime = sniff(head)
    return mime, modality_of(mime) if mime else None


def _decode_text(data: bytes, name: str) -> str:
    check_text_block(data, 0, name)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsupportedMediaError(
            f"{name}: looks like text but is not valid UTF-8 (byte {exc.start}); "
            "re-encode it as UTF-8"
        ) from exc
