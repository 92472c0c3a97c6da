"""Reading a file for a run: the file as a part (text checked as it is streamed), a chunk's
text and plain metadata, and how paths and reasons are shown in the report."""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mmembed._sniff import check_text_block
from mmembed._walk import display_path
from mmembed.content import Content, Modality, Part, Text, load
from mmembed.errors import UnsupportedMediaError
from mmembed.protocols import Chunk

if TYPE_CHECKING:
    from mmembed.chunkers.text import TextChunker

__all__ = ["chunk_text", "open_part", "plain_metadata", "reason", "show"]


def open_part(path: str, *, streamed: TextChunker | None) -> Part | None:
    """The file as a part, by its bytes; ``None`` for a text file the text chunker streams.

    A streamed text file is checked here, block by block, to be within the chunker's size limit,
    UTF-8 and free of NUL bytes, so a file that is not is skipped before any of it is sent.
    """
    if streamed is not None:
        from mmembed._sniff import HEAD_BYTES, sniff
        from mmembed.content import modality_of

        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
        mime = sniff(head)
        if mime and modality_of(mime) is Modality.TEXT:
            streamed.check_size(path, path)
            check_utf8(path)
            return None
    return load(path)


def check_utf8(path: str) -> None:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            check_text_block(block, offset, path)
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise UnsupportedMediaError(
                    f"{path}: looks like text but is not valid UTF-8 (byte {offset + exc.start}); "
                    "re-encode it as UTF-8"
                ) from exc
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise UnsupportedMediaError(
                f"{path}: looks like text but ends inside a UTF-8 character; re-encode it as UTF-8"
            ) from exc


def show(path: str) -> str:
    return display_path(path)


def reason(exc: BaseException, path: str) -> str:
    text = str(exc) or type(exc).__name__
    # messages often start with the path; the report already shows it
    for prefix in (path, show(path), os.path.basename(path)):
        if text.startswith(prefix + ": "):
            return text[len(prefix) + 2 :]
    return text


def chunk_text(chunk: Chunk) -> str:
    """A chunk's whole text: its text parts, else the page text, transcript or caption."""
    content = chunk.content
    texts: list[str] = []
    parts = content.parts if isinstance(content, Content) else (content,)
    for part in parts:
        if isinstance(part, Text):
            texts.append(part.text)
    if not texts:
        for key in ("text", "page_text", "transcript", "caption"):
            value = chunk.metadata.get(key)
            if isinstance(value, (tuple, list)):
                value = " ".join(v for v in value if isinstance(v, str))
            if isinstance(value, str) and value.strip():
                texts.append(value)
                break
    return "\n\n".join(texts)


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the JSON-friendly scalars of a chunk's metadata (no bytes, no frames)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            if isinstance(value, str) and len(value) > 2000:
                value = value[:2000]
            out[str(key)] = value
    return out
