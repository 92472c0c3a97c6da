"""Turning a chunker's ``source`` argument into something a decoder in another process can open."""

from __future__ import annotations

import os
from pathlib import Path

from mmembed.chunkers._common import source_name
from mmembed.content import Content, Media, Part, Text, load
from mmembed.errors import ConfigurationError, UnsupportedMediaError

__all__ = ["media_source"]


def media_source(
    source: Part | str | os.PathLike[str], *, accept: tuple[type[Media], ...], chunker: str
) -> tuple[str | bytes, str]:
    """Resolve ``source`` to ``(path or bytes, name)``; the name is what chunks cite as source.

    A path is kept as a path (decoders read it by seeking; nothing is loaded here); the name is
    :func:`~mmembed.chunkers._common.source_name`'s.

    Raises:
        ConfigurationError: the path does not exist.
        UnsupportedMediaError: the source is not of a type in ``accept``.
    """
    if isinstance(source, Content):
        raise ConfigurationError(f"{chunker} takes one part or a path, not a Content")
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ConfigurationError(f"{chunker}: {path} does not exist or is not a regular file")
        part: Part = load(path)
    elif isinstance(source, (Text, Media)):
        part = source
    else:
        raise ConfigurationError(
            f"{chunker}.chunk() takes a path or a media part, got {type(source).__name__}"
        )
    if not isinstance(part, accept):
        kinds = " or ".join(t.__name__.lower() for t in accept)
        what = part.mime_type if isinstance(part, Media) else "text"
        raise UnsupportedMediaError(
            f"{name}: {chunker} takes {kinds}, but this is {what}; use mmembed.chunk() to "
            "pick the chunker from the file's type"
        )
    assert isinstance(part, Media)
    data: str | bytes = str(part.path) if part.path is not None else part.read_bytes()
    return data, name
