"""Sending rounds for a run: chunks gathered into rounds of one call's worth, embedded on
worker threads within a bound on what is in flight, and the vectors that come back applied to
their files; a round that fails is halved until the file at fault is found."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mmembed._catalog import ChunkRecord
from mmembed._checks import check_rows
from mmembed._ingest_read import reason
from mmembed._threads import wait_first, worker_pool
from mmembed.content import Content, Embeddable, Modality, Task, Text
from mmembed.errors import (
    AuthenticationError,
    EmbeddingError,
    InputLimitError,
    RateLimitError,
    UnsupportedMediaError,
)
from mmembed.protocols import Embedder

if TYPE_CHECKING:
    from mmembed._ingest import IngestContext

__all__ = ["Pending", "Rounds", "embed_round"]

# media bytes in one round: about what one request may carry inline (20 MB after base64)
_ROUND_BYTES = 15 << 20
# media bytes in all the rounds in flight together: memory stays bounded whatever the input
# (each byte is held about four times on its way out: raw, base64, the JSON body, the socket)
_IN_FLIGHT_BYTES = 48 << 20


@dataclass(slots=True)
class Pending:
    """A file being indexed: its chunks, and their vectors as rounds come back."""

    path: str
    stat: os.stat_result
    sha256: str
    modality: Modality
    existed: bool
    records: list[ChunkRecord] = field(default_factory=list)
    vectors: list[NDArray[np.float32] | None] = field(default_factory=list)
    missing: int = 0  # vectors not back yet
    chunked: bool = False  # every chunk has been cut and queued
    error: str = ""


@dataclass(slots=True)
class _Round:
    """Chunks of one or more files, embedded together in one ``embed`` call."""

    entries: list[tuple[Pending, int]] = field(default_factory=list)
    items: list[Embeddable] = field(default_factory=list)
    nbytes: int = 0


class Rounds:
    """The rounds of one run: the one being filled on the calling thread and those in flight.

    Rounds go to worker threads, as many at once as the embedder sends calls at once, within a
    bound on the media bytes and the chunks in flight. ``on_collected`` runs after every
    collection, so the files the returned rounds complete are committed at once.
    """

    def __init__(self, ctx: IngestContext, on_collected: Callable[[], None]) -> None:
        self.ctx = ctx
        self.on_collected = on_collected
        self.round = _Round()
        self.in_flight: dict[Future[Any], _Round] = {}
        self.in_flight_bytes = 0
        self.in_flight_items = 0
        self.pool: ThreadPoolExecutor | None = None
        self.lanes = 1
        self.wait_seconds = 0.0

    def queue(self, pending: Pending, ord_: int, content: Embeddable) -> None:
        """Add one chunk of a file to the round being filled; send the round when it is full."""
        self.round.entries.append((pending, ord_))
        self.round.items.append(content)
        self.round.nbytes += _nbytes(content)
        if len(self.round.items) >= self._round_items() or self.round.nbytes >= _ROUND_BYTES:
            self.send()

    def _round_items(self) -> int:
        per_call = self.ctx.limits.max_items_per_call if self.ctx.limits else self.ctx.batch_size
        return max(1, min(self.ctx.batch_size, per_call))

    def drop(self, pending: Pending) -> None:
        """Take a file's chunks out of the round being filled (the file failed)."""
        keep = [i for i, (p, _) in enumerate(self.round.entries) if p is not pending]
        if len(keep) == len(self.round.entries):
            return
        self.round = _Round(
            entries=[self.round.entries[i] for i in keep],
            items=[self.round.items[i] for i in keep],
            nbytes=sum(_nbytes(self.round.items[i]) for i in keep),
        )

    def send(self) -> None:
        """Send the round being filled, once there is room in flight."""
        current, self.round = self.round, _Round()
        if not current.items:
            return
        if self.pool is None:  # the embedder is built only once something needs embedding
            _map_large_buffers()
            self.lanes = _lanes(self.ctx.embedder)
            self.pool = worker_pool(self.lanes, "mmembed-ingest")
        # bounded: calls at once, media bytes, and chunks (what a killed run can lose)
        while self.in_flight and (
            len(self.in_flight) >= self.lanes
            or self.in_flight_bytes + current.nbytes > _IN_FLIGHT_BYTES
            or self.in_flight_items + len(current.items) > self.ctx.batch_size
        ):
            self.collect(block=True)
        future = self.pool.submit(embed_round, self.ctx, current.entries, current.items)
        self.in_flight[future] = _Round(entries=current.entries, nbytes=current.nbytes)
        self.in_flight_bytes += current.nbytes
        self.in_flight_items += len(current.entries)

    def collect(self, *, block: bool, final: bool = False) -> None:
        """Apply the rounds that came back and commit the files they complete.

        ``block`` waits for at least one round; ``final`` (the run is ending, perhaps on an
        error) keeps what succeeded and raises nothing.
        """
        if block and self.in_flight:
            started = time.perf_counter()
            wait_first(self.in_flight)
            self.wait_seconds += time.perf_counter() - started
        for future in [f for f in self.in_flight if f.done()]:
            sent = self.in_flight.pop(future)
            self.in_flight_bytes -= sent.nbytes
            self.in_flight_items -= len(sent.entries)
            if final and (future.cancelled() or future.exception() is not None):
                continue
            vectors, errors = future.result()
            for j, (pending, ord_) in enumerate(sent.entries):
                why = errors.get(id(pending))
                if why is not None:
                    pending.error = pending.error or why
                elif vectors[j] is not None and pending.vectors[ord_] is None:
                    pending.vectors[ord_] = vectors[j]
                    pending.missing -= 1
            _release_freed_memory()
        self.on_collected()

    def shutdown(self) -> None:
        """Let the calls already sent finish; send nothing more."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def embed_round(
    ctx: IngestContext, entries: list[tuple[Pending, int]], items: list[Embeddable]
) -> tuple[list[NDArray[np.float32] | None], dict[int, str]]:
    """Embed one round (in a worker thread): a vector per item, or a reason per file."""
    try:
        vectors = ctx.embedder().embed(items, task=Task.DOCUMENT)
        rows = check_rows(vectors, len(items), ctx.dimensions, who=ctx.model)
        return list(rows), {}
    except (AuthenticationError, RateLimitError):
        raise  # every other file would fail the same way: stop, keeping what is committed
    except (EmbeddingError, InputLimitError, UnsupportedMediaError) as exc:
        files = {id(p): p for p, _ in entries}
        if len(files) == 1:
            return [None] * len(items), {id(entries[0][0]): reason(exc, entries[0][0].path)}
    # find the culprit: embed each half of the round's files, and halve again where a half
    # fails; a bad file is found in about 2*log2(files) calls, and the replies that came
    # back are in the cache, so no answered item is paid for again
    order = list(dict.fromkeys(id(p) for p, _ in entries))
    first = set(order[: len(order) // 2])
    out: list[NDArray[np.float32] | None] = [None] * len(items)
    errors: dict[int, str] = {}
    for in_first in (True, False):
        positions = [j for j, (p, _) in enumerate(entries) if (id(p) in first) == in_first]
        got, bad = embed_round(ctx, [entries[j] for j in positions], [items[j] for j in positions])
        errors.update(bad)
        for j, vector in zip(positions, got, strict=True):
            out[j] = vector
    return out, errors


_trimmed_at = 0.0
# glibc's mallopt option for the size from which blocks are mapped on their own
_M_MMAP_THRESHOLD = -3


def _release_freed_memory() -> None:
    """Give memory freed by the rounds back to the system, at most once a second.

    A round's media pass through several large buffers (bytes, base64, the request body) on
    worker threads; glibc keeps what they free in per-thread arenas, so without this the
    process's memory settles at several rounds' worth per thread. ``malloc_trim`` returns it.
    """
    global _trimmed_at
    now = time.monotonic()
    if now - _trimmed_at < 1.0:
        return
    _trimmed_at = now
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _map_large_buffers() -> None:
    """Have glibc map every buffer of 1 MiB or more on its own, and unmap it when freed.

    By default glibc raises that threshold each time such a buffer is freed (up to 32 MiB),
    after which media buffers come from the per-thread heaps and stay there: measured on the
    course benchmark, the indexing process kept hundreds of MB more. A fixed threshold keeps
    memory at what is in use. Process-wide, and harmless to everything else (large buffers
    cost one ``mmap`` each).
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


@functools.cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return None
    return libc


def _lanes(embedder: Callable[[], Embedder]) -> int:
    """Rounds in flight at once: as many calls as the embedder sends at once (1 if unknown)."""
    found: object = embedder()
    while found is not None:
        lanes = getattr(found, "concurrency", None)
        if isinstance(lanes, int) and lanes > 0:
            return lanes
        found = getattr(found, "embedder", None)  # look through wrappers
    return 1


def _nbytes(item: Embeddable) -> int:
    parts = item.parts if isinstance(item, Content) else (item,)
    total = 0
    for part in parts:
        if isinstance(part, str):
            total += len(part)
        elif isinstance(part, Text):
            total += len(part.text)
        elif part.path is None:
            total += part.nbytes
    return total
