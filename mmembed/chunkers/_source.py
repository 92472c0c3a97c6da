"""Turning a chunker's ``source`` argument into something a decoder in another process can open."""

from __future__ import annotations

import os
from pathlib import Path

from mmembed.content import Media, Part, Text, load
from mmembed.errors import ConfigurationError, UnsupportedMediaError

__all__ = ["media_source"]


def media_source(
    source: Part | str | os.PathLike[str], *, accept: tuple[type[Media], ...], chunker: str
) -> tuple[str | bytes, str]:
    """Resolve ``source`` to ``(path or bytes, name)``; the name is what chunks cite as source.

    A path is kept as a path (decoders read it by seeking; nothing is loaded here). The name is
    the path as given, or for in-memory bytes their size (``<1234 bytes>``).

    Raises:
        ConfigurationError: the path does not exist.
        UnsupportedMediaError: the source is not of a type in ``accept``.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ConfigurationError(f"{chunker}: {path} does not exist or is not a regular file")
        part: Part = load(path)
        name = os.fspath(source)
    elif isinstance(source, (Text, Media)):
        part = source
        name = str(source.path) if isinstance(source, Media) and source.path else _name(source)
    else:
        raise ConfigurationError(
            f"{chunker}.chunk() takes a path or a media part, got {type(source).__name__}"
        )
    if not isinstance(part, accept):
        kinds = " or ".join(t.__name__.lower() for t in accept)
        what = part.mime_type if isinstance(part, Media) else "text"
        raise UnsupportedMediaError(
            f"{chunker} takes {kinds}, but {_name(part)} is {what}; use mmembed.chunk() to "
            "pick the chunker from the file's type"
        )
    assert isinstance(part, Media)
    data: str | bytes = str(part.path) if part.path is not None else part.read_bytes()
    return data, name


def _name(part: Part) -> str:
    return part.name if isinstance(part, Media) else "<text>"
