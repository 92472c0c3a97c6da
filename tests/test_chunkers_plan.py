"""Properties of the time planners behind AudioChunker and VideoChunker (pure functions)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmembed.chunkers._plan import plan_even, plan_frames, plan_keyframes, plan_windows
from mmembed.chunkers.audio import _Windower

EPS = 1e-6


@given(
    total=st.integers(0, 50_000),
    window=st.integers(1, 5_000),
    data=st.data(),
)
def test_windows_cover_the_input_with_the_declared_overlap(
    total: int, window: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, window - 1))
    spans = plan_windows(total, window, overlap)
    if total == 0:
        assert spans == []
        return
    assert spans[0][0] == 0
    assert spans[-1][1] == total
    for start, end in spans:
        assert 0 <= start < end <= total
        assert end - start == min(window, total)  # every window full length: no tiny tail
    for (s0, e0), (s1, e1) in itertools.pairwise(spans):
        assert s0 < s1
        assert e0 < e1
        assert s1 <= e0, "no gap"
        shared = e0 - s1
        if (s1, e1) == spans[-1]:
            assert shared >= overlap  # the last window is moved back to end at the input's end
        else:
            assert shared == overlap


@pytest.mark.parametrize(("total", "window", "overlap"), [(10, 0, 0), (10, 5, 5), (10, 5, -1)])
def test_windows_reject_impossible_settings(total: int, window: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(total, window, overlap)


@given(
    duration=st.floats(0.01, 10_000),
    max_len=st.floats(1, 120),
    overlap_frac=st.floats(0, 0.9),
)
def test_even_segments_cover_the_input_and_fit(
    duration: float, max_len: float, overlap_frac: float
) -> None:
    overlap = max_len * overlap_frac
    spans = plan_even(duration, max_len, overlap)
    assert spans[0][0] == 0
    assert spans[-1][1] == duration
    lengths = [e - s for s, e in spans]
    assert all(length <= max_len + EPS for length in lengths)
    if len(spans) > 1:
        # equal lengths, none shorter than half the longest allowed (no tiny tail)
        assert max(lengths) - min(lengths) < 1e-6 * max(1.0, duration)
        assert min(lengths) > (max_len + overlap) / 2 - EPS
    for (_, e0), (s1, _) in itertools.pairwise(spans):
        assert e0 - s1 == pytest.approx(overlap, abs=1e-6 * max(1.0, duration))


@st.composite
def keyframe_cases(draw: st.DrawFn) -> tuple[list[float], float, float, float, float]:
    max_len = draw(st.floats(4, 60))
    min_len = draw(st.floats(0.5, 1.0)) * max_len / 2
    overlap = draw(st.floats(0, 0.8)) * min_len
    duration = draw(st.floats(0.5, 40 * max_len))
    gaps = draw(st.lists(st.floats(0.05, max_len * 1.2), min_size=0, max_size=300))
    keyframes = [0.0]
    for gap in gaps:
        if keyframes[-1] + gap >= duration:
            break
        keyframes.append(keyframes[-1] + gap)
    return keyframes, duration, min_len, max_len, overlap


@given(keyframe_cases())
def test_keyframe_plans_start_at_keyframes_and_respect_the_bounds(
    case: tuple[list[float], float, float, float, float],
) -> None:
    keyframes, duration, min_len, max_len, overlap = case
    spans = plan_keyframes(keyframes, duration, min_len=min_len, max_len=max_len, overlap=overlap)
    if duration <= max_len:
        assert spans == [(0.0, duration)]
        return
    if spans is None:
        return  # checked for feasibility below on regular grids
    kf = {round(k, 6) for k in keyframes}
    assert spans[0][0] == 0.0
    assert spans[-1][1] == duration
    for start, end in spans:
        assert round(start, 6) in kf
        assert end == duration or round(end, 6) in kf
        assert min_len - EPS <= end - start <= max_len + EPS
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s0 < s1 <= e0 - overlap + EPS, "no gap, and at least the declared overlap"


@given(
    gop=st.floats(0.2, 5.0),
    duration=st.floats(40, 2_000),
    overlap=st.floats(0, 5),
)
def test_a_regular_keyframe_grid_always_has_a_plan(
    gop: float, duration: float, overlap: float
) -> None:
    # Just over 30 s only a cut in [15, D - 15] works, which a wide GOP can miss; from 40 s on
    # every window of cut points is at least 10 s wide.
    keyframes = list(np.arange(0, duration, gop))
    spans = plan_keyframes(keyframes, duration, min_len=15, max_len=30, overlap=overlap)
    assert spans is not None
    assert all(15 - EPS <= e - s <= 30 + EPS for s, e in spans)


def test_sparse_keyframes_have_no_plan() -> None:
    assert plan_keyframes([0.0, 40.0], 65.0, min_len=15, max_len=30) is None


def test_plans_prefer_fewer_then_even_segments() -> None:
    keyframes = [float(k) for k in range(0, 95, 2)]
    spans = plan_keyframes(keyframes, 95.0, min_len=15, max_len=30)
    assert spans is not None
    assert len(spans) == 4
    assert [round(e - s) for s, e in spans] == [24, 24, 24, 23]


def test_dense_keyframes_are_thinned_and_still_planned() -> None:
    # All-intra video: a keyframe at every frame of two hours at 30 fps.
    keyframes = [i / 30 for i in range(2 * 3600 * 30)]
    spans = plan_keyframes(keyframes, 7200.0, min_len=15, max_len=30)
    assert spans is not None
    assert len(spans) == 240


@given(
    total=st.integers(0, 20_000),
    window=st.integers(1, 3_000),
    data=st.data(),
)
def test_the_streaming_windower_cuts_like_the_planner(
    total: int, window: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, window - 1))
    sizes = data.draw(st.lists(st.integers(1, 4_000), min_size=1, max_size=50))
    signal = np.arange(total, dtype=np.float32).reshape(-1, 1)
    windower = _Windower(window, window - overlap, 1)
    got: list[tuple[int, int]] = []
    pos = 0
    i = 0
    while pos < total:
        n = sizes[i % len(sizes)]
        windower.push(signal[pos : pos + n])
        pos += n
        i += 1
        for start, samples in windower.ready():
            assert np.array_equal(samples[:, 0], signal[start : start + len(samples), 0])
            got.append((start, start + len(samples)))
    for start, samples in windower.finish():
        assert np.array_equal(samples[:, 0], signal[start : start + len(samples), 0])
        got.append((start, start + len(samples)))
    assert got == plan_windows(total, window, overlap)


@given(
    total=st.integers(0, 200_000),
    max_len=st.integers(1, 3_600),
    data=st.data(),
)
def test_frame_plans_cover_the_input_and_fit(total: int, max_len: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, max_len - 1))
    spans = plan_frames(total, max_len, overlap)
    if total == 0:
        assert spans == []
        return
    assert spans[0][0] == 0
    assert spans[-1][1] == total
    lengths = [e - s for s, e in spans]
    assert all(0 < n <= max_len for n in lengths)
    assert max(lengths) - min(lengths) <= 1, "even lengths: no tiny tail"
    # the fewest segments: one fewer could not cover the input
    n = len(spans)
    assert n == 1 or (n - 1) * max_len - (n - 2) * overlap < total
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s0 < s1
        assert e0 - s1 == overlap
