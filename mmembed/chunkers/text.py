"""Cut text into overlapping windows that break at paragraphs, sentences or words.

>>> from mmembed import Text
>>> from mmembed.chunkers import TextChunker
>>> chunker = TextChunker(size=12, overlap=0, unit="chars")
>>> [c.content.text for c in chunker.chunk(Text("One two. Three four five."))]
['One two.', 'Three four', 'five.']
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from mmembed.chunkers._common import resolve_source
from mmembed.content import Modality, Part, Text
from mmembed.errors import ConfigurationError
from mmembed.limits import GEMINI_EMBEDDING_2, ModelLimits, estimate_tokens
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
    measure = _Measure(text, unit=unit, tokenizer=tokenizer)
    start = 0
    n = len(text)
    while start < n:
        hard_end = measure.furthest_end(start, size, max_tokens)
        if hard_end >= n:
            yield TextWindow(start, n)
            return
        lo = start + max(1, math.ceil((hard_end - start) * _MIN_FILL))
        end = _last_break(text, lo, hard_end) or hard_end
        yield TextWindow(start, end)
        nxt = measure.earliest_start(end, overlap, start)
        nxt = _word_start_at_or_after(text, nxt, end)
        start = max(start + 1, nxt)


def trimmed(text: str, window: TextWindow) -> tuple[int, int]:
    """A window's bounds without the whitespace at either end (equal when it is all space)."""
    start, end = window.start, window.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _check_sizes(size: int, overlap: int) -> None:
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
    ) -> None:
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
        part, name = resolve_source(source, Modality.TEXT, "TextChunker")
        assert isinstance(part, Text)
        text = part.text
        for window in text_windows(
            text,
            size=self.size,
            overlap=self.overlap,
            unit=self.unit,
            tokenizer=self.tokenizer,
            max_tokens=self.limits.max_tokens,
        ):
            start, end = trimmed(text, window)
            if start == end:
                continue
            yield Chunk(
                content=Text(text[start:end], title=part.title),
                source=name,
                span=TextSpan(start, end),
            )
