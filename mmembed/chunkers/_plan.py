"""Where to cut time-based media: pure functions, no decoding, easy to test exhaustively.

Three planners:

- :func:`plan_windows` — fixed-length windows on an integer grid (audio sample frames): every
  window is exactly ``window`` long (or the whole input when shorter), consecutive windows overlap
  by exactly ``overlap`` except the last pair, where the last window is moved back to end at the
  input's end instead of leaving a tiny tail.
- :func:`plan_even` — equal segments cut anywhere; :func:`plan_frames` — the same on a grid of
  whole frames (video that is re-encoded).
- :func:`plan_keyframes` — segments that start at keyframes (video that is remuxed without
  re-encoding), each within ``[min_len, max_len]``, or ``None`` when the keyframes allow no plan.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

__all__ = ["iter_windows", "plan_even", "plan_frames", "plan_keyframes", "plan_windows"]

# Float slack for comparing times that went through a time base and back.
_EPS = 1e-6


def plan_windows(total: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Cut ``[0, total)`` into windows of ``window`` units that overlap by ``overlap``.

    Args:
        total: length of the input (e.g. sample frames).
        window: length of each window, > ``overlap``.
        overlap: units shared by consecutive windows, >= 0.

    Returns:
        ``(start, end)`` pairs, sorted, covering ``[0, total)`` without gaps. An empty input gives
        no windows; an input no longer than ``window`` gives one window, the whole input.
    """
    return list(iter_windows(total, window, overlap))


def iter_windows(total: int, window: int, overlap: int) -> Iterator[tuple[int, int]]:
    """:func:`plan_windows`, one window at a time (a header may claim an absurd length)."""
    if window <= 0 or overlap < 0 or overlap >= window:
        raise ValueError(f"need 0 <= overlap < window, got window={window}, overlap={overlap}")
    if total <= 0:
        return
    if total <= window:
        yield (0, total)
        return
    hop = window - overlap
    for s in range(0, total - window, hop):
        yield (s, s + window)
    # The last window ends at the input's end: it overlaps its neighbour by more than `overlap`
    # rather than being a short tail that carries too little to embed well.
    yield (total - window, total)


def plan_even(duration: float, max_len: float, overlap: float) -> list[tuple[float, float]]:
    """Cut ``[0, duration]`` into the fewest equal segments of at most ``max_len`` seconds.

    Consecutive segments overlap by exactly ``overlap``; the last one ends at ``duration``.
    Each segment is longer than ``(max_len + overlap) / 2`` unless the whole input is shorter.
    """
    if max_len <= 0 or overlap < 0 or overlap >= max_len:
        raise ValueError(f"need 0 <= overlap < max_len, got max_len={max_len}, overlap={overlap}")
    if duration <= 0:
        return []
    if duration <= max_len + _EPS:
        return [(0.0, duration)]
    n = max(1, math.ceil((duration - overlap) / (max_len - overlap) - _EPS))
    length = (duration + (n - 1) * overlap) / n
    stride = length - overlap
    spans = [(i * stride, i * stride + length) for i in range(n)]
    spans[-1] = (spans[-1][0], duration)
    return spans


def plan_frames(total: int, max_len: int, overlap: int) -> list[tuple[int, int]]:
    """:func:`plan_even` on a grid of whole frames: ``(first, end)`` frame indices, end exclusive.

    The fewest segments of at most ``max_len`` frames, lengths differing by at most one frame,
    consecutive segments sharing exactly ``overlap`` frames, the last one ending at ``total``.
    """
    if max_len <= 0 or overlap < 0 or overlap >= max_len:
        raise ValueError(f"need 0 <= overlap < max_len, got max_len={max_len}, overlap={overlap}")
    if total <= 0:
        return []
    if total <= max_len:
        return [(0, total)]
    n = -(-(total - overlap) // (max_len - overlap))
    # Split [0, total - overlap) evenly, then stretch each part `overlap` frames to the right.
    cuts = [round(i * (total - overlap) / n) for i in range(n + 1)]
    return [(cuts[i], cuts[i + 1] + overlap) for i in range(n)]


def plan_keyframes(
    keyframes: Sequence[float],
    duration: float,
    *,
    min_len: float,
    max_len: float,
    overlap: float = 0.0,
) -> list[tuple[float, float]] | None:
    """Plan segments that start at keyframes, so they can be cut without re-encoding.

    Every segment starts at a keyframe and ends at a keyframe (or at ``duration``, the last one);
    each lasts between ``min_len`` and ``max_len`` seconds; each next segment starts at the latest
    keyframe at or before ``overlap`` seconds before the previous end (so the overlap is at least
    ``overlap``, and there is never a gap). Among the plans with the fewest segments, the one with
    the most even lengths wins.

    Args:
        keyframes: keyframe times in seconds (any order; the first is where the video starts).
        duration: where the video ends.
        min_len: shortest allowed segment.
        max_len: longest allowed segment.
        overlap: the least time consecutive segments share.

    Returns:
        ``(start, end)`` pairs, or ``None`` when the keyframes are too sparse for the bounds.
        A video no longer than ``max_len`` is one segment whatever its length.
    """
    kfs = sorted({round(k, 6) for k in keyframes if 0 <= k < duration})
    if not kfs:
        return None
    start0 = kfs[0]
    if duration - start0 <= max_len + _EPS:
        return [(start0, duration)]
    kfs = _thin(kfs, max_len / 200)
    ideal = plan_even(duration - start0, max_len, overlap)[0]
    ideal_len = ideal[1] - ideal[0]
    inf = (math.inf, math.inf)
    # best[i]: (segments, squared deviation) of the best plan for [kfs[i], duration]; choice[i]
    # holds the first segment's end and the index where the next segment starts (-1: last).
    best: list[tuple[float, float]] = [inf] * len(kfs)
    choice: list[tuple[float, int]] = [(0.0, -1)] * len(kfs)
    for i in range(len(kfs) - 1, -1, -1):
        s = kfs[i]
        tail = duration - s
        if min_len - _EPS <= tail <= max_len + _EPS:
            best[i] = (1, (tail - ideal_len) ** 2)
            choice[i] = (duration, -1)
        lo = bisect.bisect_left(kfs, s + min_len - _EPS)
        hi = bisect.bisect_right(kfs, s + max_len + _EPS)
        for j in range(lo, hi):
            e = kfs[j]
            nxt = bisect.bisect_right(kfs, e - overlap + _EPS) - 1
            if nxt <= i or best[nxt] == inf:
                continue
            cand = (best[nxt][0] + 1, best[nxt][1] + (e - s - ideal_len) ** 2)
            if cand < best[i]:
                best[i] = cand
                choice[i] = (e, nxt)
    if best[0] == inf:
        return None
    spans: list[tuple[float, float]] = []
    i = 0
    while True:
        end, nxt = choice[i]
        spans.append((kfs[i], end))
        if nxt < 0:
            return spans
        i = nxt


def _thin(kfs: list[float], step: float) -> list[float]:
    """Keep the first keyframe of every ``step`` seconds: all-intra video has one per frame."""
    if len(kfs) < 2000:
        return kfs
    out = [kfs[0]]
    for k in kfs[1:]:
        if k - out[-1] >= step:
            out.append(k)
    return out
