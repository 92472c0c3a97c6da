"""Chunkers: cut files into pieces the model accepts, each pointing back to where it came from.

- :class:`TextChunker`: windows of tokens or characters, with overlap, as exact character spans.
- :class:`PdfChunker`: standalone PDFs of up to six pages (or their text), with page spans.
- :class:`ImageChunker`: one upright, right-sized PNG or JPEG per image.
- :class:`AudioChunker`: windows of seconds with overlap, as WAV or MP3, with time spans.
- :class:`VideoChunker`: standalone MP4 segments, with time spans.
- :func:`chunk`: picks the chunker from the sniffed type, with defaults from a model's limits.

>>> import mmembed
>>> for c in mmembed.chunkers.chunk("lecture.pdf"):  # doctest: +SKIP
...     print(c.uri)                                   # lecture.pdf#page=1, #page=7, ...

Decoding of untrusted media runs in a sandboxed child process, so a crash, a hang or a memory
blow-up fails one file with a :class:`~mmembed.errors.ChunkingError`, not the caller.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmembed._optional import lazy_attributes
from mmembed._sniff import describe
from mmembed.chunkers.image import ImageChunker
from mmembed.chunkers.pdf import PdfChunker
from mmembed.chunkers.text import TextChunker
from mmembed.content import Content, Media, Modality, Part, Text, sniff_file
from mmembed.errors import ConfigurationError, UnsupportedMediaError
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits
from mmembed.protocols import Chunk, Chunker

if TYPE_CHECKING:  # imported lazily at run time (PyAV and friends load on first use)
    from mmembed.chunkers.audio import AudioChunker
    from mmembed.chunkers.video import VideoChunker

__all__ = [
    "AudioChunker",
    "ImageChunker",
    "PdfChunker",
    "TextChunker",
    "VideoChunker",
    "chunk",
    "chunker_for",
]

# Chunkers whose modules load heavy media libraries are imported on first use.
_LAZY = {
    "AudioChunker": "mmembed.chunkers.audio",
    "VideoChunker": "mmembed.chunkers.video",
}

_BY_MODALITY: dict[Modality, str] = {
    Modality.TEXT: "TextChunker",
    Modality.PDF: "PdfChunker",
    Modality.IMAGE: "ImageChunker",
    Modality.AUDIO: "AudioChunker",
    Modality.VIDEO: "VideoChunker",
}


__getattr__, __dir__ = lazy_attributes("mmembed.chunkers", _LAZY, globals())


def _chunker_class(modality: Modality) -> type[Any]:
    name = _BY_MODALITY[modality]
    cls: type[Any] = globals()[name] if name not in _LAZY else __getattr__(name)
    return cls


def _accepted_options(cls: type[Any]) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "limits"}


def _fits(value: object, hint: object) -> bool:
    """Whether ``value`` is of the simple type ``hint`` (anything else is left to the chunker)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return any(
            value == allowed and type(value) is type(allowed) for allowed in typing.get_args(hint)
        )
    if origin is collections.abc.Callable:
        return callable(value)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _check_option_types(cls: type[Any], options: Mapping[str, Any]) -> None:
    """Refuse an option whose value is not of the type the chunker's signature names (a
    ``size="x"`` is a :class:`ConfigurationError` here, not a ``TypeError`` inside)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # a hint that needs a module not loaded: the chunker checks
        hints = {}
    for key, value in options.items():
        hint = hints.get(key)
        if hint is not None and not _fits(value, hint):
            shown = getattr(hint, "__name__", None) if isinstance(hint, type) else None
            shown = shown or str(hint).replace("typing.", "").replace("NoneType", "None")
            shown = shown.replace("collections.abc.", "")
            raise ConfigurationError(
                f"{cls.__name__} option {key} takes {shown}, got {value!r} ({type(value).__name__})"
            )


def _all_options() -> set[str]:
    """Every option some chunker accepts (for catching misspelt options)."""
    names: set[str] = set()
    for modality in _BY_MODALITY:
        try:
            names |= _accepted_options(_chunker_class(modality))
        except ImportError:  # a chunker module that is not available here accepts nothing
            continue
    return names


def chunker_for(
    modality: Modality | str,
    *,
    limits: ModelLimits | None = None,
    **options: Any,
) -> Chunker:
    """The chunker for ``modality``, configured from ``limits`` and ``options``.

    ``options`` may mix the options of several chunkers (as an index passes one set of options
    for every file): each chunker takes the ones it knows. Options for one modality only can be
    given as a dict under its name, e.g. ``pdf={"pages": 3}``. A PDF for a model that takes no
    PDFs gets a :class:`PdfChunker` in text mode.

    Raises:
        ConfigurationError: an option that no chunker knows, or a bad value.
        UnsupportedMediaError: the model does not take this modality at all.
    """
    modality = Modality(modality)
    limits = limits if limits is not None else GEMINI_EMBEDDING_2
    per_modality: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if key in {m.value for m in Modality}:
            if not isinstance(value, Mapping):
                raise ConfigurationError(
                    f"the {key!r} option takes a dict of {key} chunker options, got "
                    f"{type(value).__name__}"
                )
            if key == modality.value:
                per_modality.update(value)
        else:
            flat[key] = value
    cls = _chunker_class(modality)
    accepted = _accepted_options(cls)
    unknown = set(flat) - _all_options()
    if unknown:
        raise ConfigurationError(
            f"unknown chunker option(s): {', '.join(sorted(unknown))}; see "
            "help(mmembed.chunkers) for each chunker's options"
        )
    wrong = set(per_modality) - accepted
    if wrong:
        raise ConfigurationError(
            f"{cls.__name__} has no option(s) {', '.join(sorted(wrong))}; it takes "
            f"{', '.join(sorted(accepted))}"
        )
    kwargs = {k: v for k, v in flat.items() if k in accepted}
    kwargs.update(per_modality)
    if modality not in limits.modalities:
        if modality is Modality.PDF and Modality.TEXT in limits.modalities:
            kwargs.setdefault("mode", "text")
        else:
            raise UnsupportedMediaError(
                f"{limits.model} does not take {modality.value}; use an embedder that does "
                f"(it takes {', '.join(sorted(m.value for m in limits.modalities))})"
            )
    _check_option_types(cls, kwargs)
    chunker: Chunker = cls(limits=limits, **kwargs)
    return chunker


def chunk(
    source: Part | str | os.PathLike[str],
    *,
    limits: ModelLimits | None = None,
    **options: Any,
) -> Iterator[Chunk]:
    """Cut ``source`` into chunks that fit ``limits``, with the chunker its type calls for.

    The type is sniffed from the bytes (never the file name). Defaults come from ``limits``
    (pass ``embedder.limits``), so every chunk fits the model. ``options`` go to the chunker
    (see :func:`chunker_for`), e.g. ``chunk("talk.mp4", limits=embedder.limits,
    video={"segment_seconds": 20})`` or ``chunk("notes.md", size=512)``.

    Args:
        source: a part (:class:`~mmembed.Text`, :class:`~mmembed.Pdf`, ...) or a path; a
            ``str`` is always a path.
        limits: the model's limits; Gemini Embedding 2's by default.
        **options: chunker options.

    Raises:
        ConfigurationError: the path does not exist, or an option is unknown or invalid.
        UnsupportedMediaError: the bytes are of no type mmembed can chunk, or of a type the
            model does not take.
        ChunkingError: (while iterating) the file is damaged or hostile.
    """
    if isinstance(source, Content):
        raise ConfigurationError("chunk() takes one part or a path, not a Content")
    if isinstance(source, (str, os.PathLike)):
        modality = _sniff_path(source)
    elif isinstance(source, (Text, Media)):
        modality = source.modality
    else:
        raise ConfigurationError(
            f"chunk() takes a part (Text, Image, Audio, Video, Pdf) or a path, "
            f"got {type(source).__name__}"
        )
    # The chunker gets the source as given, so Chunk.source is the caller's own path.
    return chunker_for(modality, limits=limits, **options).chunk(source)


def _sniff_path(source: str | os.PathLike[str]) -> Modality:
    path = Path(source)
    if not path.is_file():
        raise ConfigurationError(f"{os.fspath(source)}: no such file (or not a regular file)")
    head, _, modality = sniff_file(path)
    if modality is None:
        raise UnsupportedMediaError(
            f"{os.fspath(source)}: cannot chunk {describe(head)}; mmembed takes text, images, "
            "audio, video and PDFs"
        )
    return modality
