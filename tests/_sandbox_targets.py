"""Generator functions the sandbox tests run in a child process (they must be importable)."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

from mmembed import Chunk, InputLimitError, PageSpan, Pdf


def count(n: int) -> Iterator[int]:
    yield from range(n)


def pid_then(action: str, marker: str = "") -> Iterator[int]:
    """Yield the worker's pid, then misbehave as asked."""
    yield os.getpid()
    if action == "segfault":
        ctypes.string_at(0)
    elif action == "abort":
        os.abort()
    elif action == "hang":
        time.sleep(600)
    elif action == "exit":
        os._exit(3)
    elif action == "memory":
        block = bytearray(3 * 1024**3)
        yield len(block)
    elif action == "forever":
        try:
            while True:
                yield 0
        finally:
            Path(marker).write_text("closed")
    elif action == "value-error":
        raise ValueError("bad header at byte 7")
    elif action == "limit-error":
        raise InputLimitError("too many pages", index=3, limit="pdf_pages")


def counted(n: int, log: str) -> Iterator[int]:
    """Record each item as it is produced, to show the worker does not run ahead."""
    for i in range(n):
        with open(log, "a") as f:
            f.write(f"{i}\n")
        yield i


def touch_then_count(marker: str) -> Iterator[int]:
    Path(marker).write_text("started")
    yield 1


def chunks() -> Iterator[Chunk]:
    yield Chunk(
        content=Pdf(b"%PDF-1.4 fake"),
        source="deck.pdf",
        span=PageSpan(1, 6),
        metadata=MappingProxyType({"text": ["a", "b"]}),
    )


def fails_at_start() -> Iterator[int]:
    raise OSError("cannot open the thing")
    yield 0  # type: ignore[unreachable]  # makes this a generator


def read_relative(name: str) -> Iterator[str]:
    """Read a file by a path relative to the current directory, and report an env variable."""
    yield Path(name).read_text()
    yield os.environ.get("MMEMBED_TEST_MARK", "")
