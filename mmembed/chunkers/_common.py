"""Helpers every chunker shares: turning a source into a part, naming it, and running the
decoding of media in the sandbox."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mmembed.content import Content, Media, Modality, Part, Text, load
from mmembed.errors import ConfigurationError, UnsupportedMediaError
from mmembed.protocols import Chunk

__all__ = ["SandboxedChunker", "resolve_source", "source_name"]

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


class SandboxedChunker:
    """A media chunker whose decoding runs through
    :func:`~mmembed.chunkers._sandbox.isolated` with its own ``isolate``, ``timeout`` and
    ``memory_mb``."""

    isolate: bool
    timeout: float
    memory_mb: int | None

    def _isolated(
        self,
        decode: Callable[..., Iterator[Chunk]],
        *args: Any,
        name: str,
        preload: Sequence[str],
        read_ahead: bool = True,
    ) -> Iterator[Chunk]:
        """``decode(*args)`` in the sandbox; with ``read_ahead`` (the default) the child cuts
        the next chunk while this one is embedded."""
        from mmembed.chunkers._sandbox import isolated

        return isolated(
            decode,
            *args,
            timeout=self.timeout,
            memory_mb=self.memory_mb,
            name=name,
            isolate=self.isolate,
            preload=preload,
            read_ahead=read_ahead,
        )
