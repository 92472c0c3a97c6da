"""Cut text into overlapping windows that break at paragraphs, sentences or words.

>>> from mmembed import Text
>>> from mmembed.chunkers import TextChunker
>>> chunker = TextChunker(size=12, overlap=0, unit="chars")
>>> [c.content.text for c in chunker.chunk(Text("One two. Three four five."))]
['One two.', 'Three four', 'five.']
"""

from __future__ import annotations

import codecs
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from mmembed._sniff import check_text_block
from mmembed.chunkers._common import _ARTICLE, resolve_source, source_name
from mmembed.content import Modality, Part, Text
from mmembed.errors import ConfigurationError, InputLimitError, UnsupportedMediaError
from mmembed.limits import GEMINI_EMBEDDING_2, MAX_TEXT_FILE_BYTES, ModelLimits, estimate_tokens
from mmembed.protocols import Chunk, TextSpan

__all__ = ["TextChunker", "TextWindow", "text_windows", "trimmed"]

#: Default window size in tokens: big enough for a few paragraphs of context, small enough that
#: one vector still stands for one topic (retrieval quality drops with very long chunks).
DEFAULT_TOKENS = 1024
#: Default window size when counting characters (about four characters a token in English).
DEFAULT_CHARS = 4000

# A break may fall no earlier than this fraction of the way into a window, so windows stay
# reasonably full (and an overlap below half a window always makes progress).
_MIN_FILL = 0.5

_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE = re.compile(r"(?:[.!?…][\"'»”’)\]]*\s+|[。！？]\s*)")
_WORD = re.compile(r"\s+")
# How far back a space must be for text to count as space-separated words.
_WORD_LOOKBACK = 64
# A file is read this many bytes at a time, and at least this far ahead of a window's start.
_BLOCK = 1 << 20
# Characters kept before the current window (the word look-back reaches behind it).
_KEEP_BEHIND = 4096


@dataclass(frozen=True, slots=True)
class TextWindow:
    """One window of a text: ``text[start:end]``, before surrounding whitespace is stripped."""

    start: int
    end: int


class _Measure:
    """How big a piece of text is, in the chunker's unit, and where a window may end."""

    def __init__(
        self,
        text: str,
        *,
        unit: Literal["tokens", "chars"],
        tokenizer: Callable[[str], int] | None,
    ) -> None:
        self.text = text
        self.unit = unit
        self.tokenizer = tokenizer

    def tokens(self, start: int, end: int) -> int:
        piece = self.text[start:end]
        return self.tokenizer(piece) if self.tokenizer is not None else estimate_tokens(piece)

    def size(self, start: int, end: int) -> int:
        """The size of ``text[start:end]`` in the chunker's unit."""
        return end - start if self.unit == "chars" else self.tokens(start, end)

    def fits(self, start: int, end: int, size: int, max_tokens: int) -> bool:
        if self.size(start, end) > size:
            return False
        return self.unit == "tokens" or self.tokens(start, end) <= max_tokens

    def furthest_end(self, start: int, size: int, max_tokens: int) -> int:
        """The largest ``end`` such that ``text[start:end]`` fits (at least ``start + 1``)."""
        n = len(self.text)
        if self.unit == "chars":
            hi = min(n, start + size)
            if self.tokenizer is None:
                # Every character is at least one UTF-8 byte, so this many always fit.
                hi = min(hi, start + 3 * max_tokens)
        elif self.tokenizer is None:
            hi = min(n, start + 3 * min(size, max_tokens))  # ceil(bytes / 3) tokens
        else:
            hi = start + 1
            step = max(1, size * 4)
            while hi < n and self.fits(start, min(n, hi + step), size, max_tokens):
                hi = min(n, hi + step)
                step *= 2
            hi = min(n, hi + step)
        if self.fits(start, hi, size, max_tokens):
            return hi
        # Binary search between a window that fits (one character always goes, so the window
        # always advances) and one that does not.
        lo = start + 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fits(start, mid, size, max_tokens):
                lo = mid
            else:
                hi = mid
        return lo

    def earliest_start(self, end: int, overlap: int, floor: int) -> int:
        """The smallest ``p > floor`` with ``size(text[p:end]) <= overlap``."""
        if overlap <= 0:
            return end
        if self.unit == "chars":
            return max(floor + 1, end - overlap)
        lo, hi = floor + 1, end  # hi always fits (empty)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.size(mid, end) <= overlap:
                hi = mid
            else:
                lo = mid + 1
        return hi


def _last_break(text: str, lo: int, hi: int) -> int | None:
    """The best break in ``text[lo:hi]``: the last paragraph, else sentence, else word end."""
    for pattern in (_PARAGRAPH, _SENTENCE, _WORD):
        best = None
        for match in pattern.finditer(text, lo, hi):
            if lo < match.end() <= hi:
                best = match.end()
        if best is not None:
            return best
    return None


def _word_start_at_or_after(text: str, pos: int, end: int) -> int:
    """``pos`` moved forward to the start of a word before ``end``.

    When no word starts there, the overlap would begin mid-word: in text that separates words
    with spaces that fragment only adds noise, so the overlap is dropped (``end``); in text
    without spaces (Chinese, Japanese, a long URL) ``pos`` stays.
    """
    if pos >= end or pos == 0 or text[pos - 1].isspace():
        return pos
    match = _WORD.search(text, pos, end)
    if match is not None and match.end() < end:
        return match.end()
    if _WORD.search(text, max(0, pos - _WORD_LOOKBACK), pos) is not None:
        return end
    return pos


def text_windows(
    text: str,
    *,
    size: int,
    overlap: int = 0,
    unit: Literal["tokens", "chars"] = "tokens",
    tokenizer: Callable[[str], int] | None = None,
    max_tokens: int = GEMINI_EMBEDDING_2.max_tokens,
) -> Iterator[TextWindow]:
    """The windows :class:`TextChunker` cuts ``text`` into (before stripping whitespace).

    Consecutive windows touch or overlap (no gaps); each overlap measures at most ``overlap``
    units and starts at a word when it can; every window measures at most ``size`` units and at
    most ``max_tokens`` tokens.
    """
    _check_sizes(size, overlap)
    whole = _Reader(None)
    whole.text, whole.eof = text, True
    for window, _ in _windows(whole, size, overlap, unit, tokenizer, max_tokens):
        yield window


class _Reader:
    """Text read from a file in blocks: a buffer, where it starts in the file, and its end.

    Only the text from a little before the current window on is kept, so memory stays bounded
    by a few blocks however long the file.
    """

    def __init__(self, path: str | None) -> None:
        self.text = ""
        self.base = 0  # characters dropped from the front of ``text``
        self.eof = path is None
        self._file = open(path, "rb") if path is not None else None  # noqa: SIM115
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._read = 0

    def more(self) -> None:
        """Read the next block (at the end of the file, mark ``eof``)."""
        assert self._file is not None
        block = self._file.read(_BLOCK)
        check_text_block(block, self._read, self._file.name)
        try:
            self.text += self._decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            raise UnsupportedMediaError(
                f"{self._file.name}: looks like text but is not valid UTF-8 (byte "
                f"{self._read + exc.start}); re-encode it as UTF-8"
            ) from exc
        self._read += len(block)
        if not block:
            self.eof = True
            self._file.close()

    def drop_before(self, pos: int) -> int:
        """Forget the text before ``pos`` (a buffer position); returns how far it moved."""
        cut = pos - _KEEP_BEHIND
        if cut < _BLOCK:
            return 0
        self.text = self.text[cut:]
        self.base += cut
        return cut

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _windows(
    reader: _Reader,
    size: int,
    overlap: int,
    unit: Literal["tokens", "chars"],
    tokenizer: Callable[[str], int] | None,
    max_tokens: int,
) -> Iterator[tuple[TextWindow, str]]:
    """Windows (positions in the whole text) with the buffer they index into at that moment.

    A window is decided only once the buffer reaches past its hard end (or the text ends), so
    the windows are the same as over the whole text at once.
    """
    start = 0
    ahead = _BLOCK
    while True:
        while not reader.eof and len(reader.text) - start < ahead:
            reader.more()
        text = reader.text
        n = len(text)
        if start >= n:
            return
        measure = _Measure(text, unit=unit, tokenizer=tokenizer)
        hard_end = measure.furthest_end(start, size, max_tokens)
        if hard_end >= n and not reader.eof:
            ahead *= 2  # the window may reach further than what has been read
            continue
        base = reader.base
        if hard_end >= n:
            yield TextWindow(base + start, base + n), text
            return
        lo = start + max(1, math.ceil((hard_end - start) * _MIN_FILL))
        end = _last_break(text, lo, hard_end) or hard_end
        yield TextWindow(base + start, base + end), text
        nxt = measure.earliest_start(end, overlap, start)
        nxt = _word_start_at_or_after(text, nxt, end)
        start = max(start + 1, nxt)
        start -= reader.drop_before(start)


def trimmed(text: str, window: TextWindow) -> tuple[int, int]:
    """A window's bounds without the whitespace at either end (equal when it is all space)."""
    start, end = window.start, window.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _check_sizes(size: int, overlap: int) -> None:
    for name, value in (("size", size), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{name} must be an int, got {value!r}")
    if size < 1:
        raise ConfigurationError(f"size must be at least 1, got {size}")
    if overlap < 0:
        raise ConfigurationError(f"overlap must be 0 or more, got {overlap}")
    if overlap * 2 >= size:
        raise ConfigurationError(
            f"overlap ({overlap}) must be less than half the window size ({size}); "
            "use a smaller overlap or a bigger size"
        )


class TextChunker:
    """Windows of text by tokens (or characters) with overlap, as exact spans of the original.

    Windows break at the last paragraph boundary that keeps them at least half full, else at a
    sentence end, else between words, else (one enormous word) anywhere. Each chunk's text is
    ``text[span.start:span.end]``, with the whitespace around it left out of the span.

    Args:
        limits: the model's limits; no chunk ever exceeds ``limits.max_tokens`` tokens
            (counted by ``tokenizer``, or estimated conservatively without one).
        size: the window size in ``unit`` (default 1,024 tokens or 4,000 characters, never above
            the model's token limit).
        overlap: how much consecutive windows share, in ``unit`` (default an eighth of ``size``;
            below half of it).
        unit: ``"tokens"`` or ``"chars"``.
        tokenizer: a callable giving the number of tokens in a string; the default is
            :func:`mmembed.limits.estimate_tokens`, which over-counts a little to stay safe.
        max_bytes: the largest text file read (default
            :data:`mmembed.limits.MAX_TEXT_FILE_BYTES`, 64 MiB); a larger one is refused with
            an :class:`~mmembed.errors.InputLimitError` before it is read. ``None``: no limit.
            Files are read in blocks, so memory stays bounded whatever this is.

    Example::

        chunker = TextChunker(size=512, overlap=64)
        for chunk in chunker.chunk("notes.md"):
            print(chunk.span, chunk.content.text[:40])
    """

    def __init__(
        self,
        *,
        limits: ModelLimits | None = None,
        size: int | None = None,
        overlap: int | None = None,
        unit: Literal["tokens", "chars"] = "tokens",
        tokenizer: Callable[[str], int] | None = None,
        max_bytes: int | None = MAX_TEXT_FILE_BYTES,
    ) -> None:
        given: object = max_bytes
        if given is not None and (
            isinstance(given, bool) or not isinstance(given, int) or given < 1
        ):
            raise ConfigurationError(f"max_bytes must be a positive int or None, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.limits = limits if limits is not None else GEMINI_EMBEDDING_2
        if unit not in ("tokens", "chars"):
            raise ConfigurationError(f"unit must be 'tokens' or 'chars', got {unit!r}")
        max_tokens = self.limits.max_tokens
        if size is None:
            size = min(DEFAULT_TOKENS, max_tokens) if unit == "tokens" else DEFAULT_CHARS
        elif unit == "tokens" and size > max_tokens:
            raise ConfigurationError(
                f"size={size} tokens is over {self.limits.model}'s limit of {max_tokens} "
                "tokens an item; choose a smaller size"
            )
        if overlap is None:
            overlap = size // 8
        _check_sizes(size, overlap)
        self.size = size
        self.overlap = overlap
        self.unit: Literal["tokens", "chars"] = unit
        self.tokenizer = tokenizer

    def __repr__(self) -> str:
        return (
            f"TextChunker(size={self.size}, overlap={self.overlap}, unit={self.unit!r}, "
            f"model={self.limits.model!r})"
        )

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        """Yield the windows of ``source`` (a :class:`~mmembed.Text` or a path to a text file).

        Raises:
            ConfigurationError: the path does not exist.
            UnsupportedMediaError: the source is not text (or not UTF-8).
        """
        if isinstance(source, (str, os.PathLike)):
            # a file is read in blocks as it is cut: memory stays bounded however long it is
            name = source_name(source)
            _check_text_file(source, name)
            self.check_size(source, name)
            reader = _Reader(os.fspath(source))
            title = None
        else:
            part, name = resolve_source(source, Modality.TEXT, "TextChunker")
            assert isinstance(part, Text)
            reader = _Reader(None)
            reader.text, reader.eof = part.text, True
            title = part.title
        try:
            for window, text in _windows(
                reader, self.size, self.overlap, self.unit, self.tokenizer, self.limits.max_tokens
            ):
                start, end = trimmed(
                    text, TextWindow(window.start - reader.base, window.end - reader.base)
                )
                if start == end:
                    continue
                yield Chunk(
                    content=Text(text[start:end], title=title),
                    source=name,
                    span=TextSpan(reader.base + start, reader.base + end),
                )
        finally:
            reader.close()

    def check_size(self, path: str | os.PathLike[str], name: str) -> None:
        """Refuse a file over :attr:`max_bytes` (an :class:`~mmembed.errors.InputLimitError`)."""
        size = os.stat(path).st_size
        if self.max_bytes is not None and size > self.max_bytes:
            raise InputLimitError(
                f"{name}: {_bytes(size)} of text, over the text chunker's limit of "
                f"{_bytes(self.max_bytes)} a file (a text that long is usually a log or a data "
                "dump); leave it out, split it, or raise the limit: "
                "chunk_options={'text': {'max_bytes': ...}}",
                limit="text_file_bytes",
            )


def _bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _check_text_file(path: str | os.PathLike[str], name: str) -> None:
    """Refuse a path that is not a file, or whose bytes are not text."""
    from mmembed.chunkers import _sniff_path

    modality = _sniff_path(path)
    if modality is not Modality.TEXT:
        raise UnsupportedMediaError(
            f"{name}: TextChunker takes text, but this is {_ARTICLE[modality]}; use "
            "mmembed.chunk() to pick the chunker by type"
        )
