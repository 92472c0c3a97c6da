"""Helpers every chunker shares: turning a source into a part, and naming it."""

from __future__ import annotations

import os
from pathlib import Path

from mmembed.content import Content, Media, Modality, Part, Text, load
from mmembed.errors import ConfigurationError, UnsupportedMediaError

__all__ = ["resolve_source", "source_name"]

_ARTICLE = {
    Modality.TEXT: "text",
    Modality.IMAGE: "an image",
    Modality.AUDIO: "audio",
    Modality.VIDEO: "a video",
    Modality.PDF: "a PDF",
}


def source_name(source: Part | str | os.PathLike[str]) -> str:
    """What ``Chunk.source`` says for ``source``.

    A path is given back as it was given (as a ``str``); a part held by path gives its path; a
    part held in memory gives its name (``<1234 bytes>``), and text gives ``<text>``.
    """
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Media):
        return str(source.path) if source.path is not None else source.name
    if isinstance(source, Text):
        return "<text>"
    raise ConfigurationError(
        f"a chunker takes a part (Text, Image, Audio, Video, Pdf) or a path, "
        f"got {type(source).__name__}"
    )


def resolve_source(
    source: Part | str | os.PathLike[str], modality: Modality, chunker: str
) -> tuple[Part, str]:
    """The part behind ``source`` (loaded and sniffed when it is a path) and its name.

    Raises:
        ConfigurationError: ``source`` is neither a part nor a path, or the path is not a file.
        UnsupportedMediaError: the source is of another modality than the chunker handles.
    """
    name = source_name(source)
    if isinstance(source, Content):
        raise ConfigurationError(
            f"{chunker} takes one part or a path, not a Content of several parts"
        )
    part: Part
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ConfigurationError(f"{name}: no such file (or not a regular file)")
        part = load(path)
    else:
        part = source
    if part.modality is not modality:
        raise UnsupportedMediaError(
            f"{name}: {chunker} takes {_ARTICLE[modality]}, but this is "
            f"{_ARTICLE[part.modality]}; use mmembed.chunk() to pick the chunker by type"
        )
    return part, name
