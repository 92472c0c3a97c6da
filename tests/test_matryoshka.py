from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mmembed import ConfigurationError, Matryoshka, truncate
from mmembed.matryoshka import normalize
from mmembed.testing import FakeEmbedder

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def matrices(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    rows = draw(st.integers(0, 8))
    width = draw(st.integers(1, 40))
    arr = draw(hnp.arrays(np.float32, (rows, width), elements=finite))
    dims = draw(st.integers(1, width))
    return arr, dims


@given(matrices())
def test_truncate_keeps_a_prefix_direction_with_unit_norm(case: tuple[np.ndarray, int]) -> None:
    arr, dims = case
    before = arr.copy()
    out = truncate(arr, dims)
    np.testing.assert_array_equal(arr, before)  # input untouched
    assert out.shape == (arr.shape[0], dims)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    prefix = arr[:, :dims].astype(np.float64)
    norms = np.linalg.norm(prefix, axis=1)
    for row, p, n in zip(out, prefix, norms, strict=True):
        if n == 0:
            assert not row.any()  # zero rows stay zero, no NaN
        elif n > 1e-3:
            np.testing.assert_allclose(np.linalg.norm(row), 1.0, rtol=1e-5)
            np.testing.assert_allclose(row, p / n, atol=1e-5)


@given(hnp.arrays(np.float32, st.integers(1, 64), elements=finite))
def test_truncate_to_full_width_is_normalize_and_idempotent(vec: np.ndarray) -> None:
    once = truncate(vec, vec.shape[0])
    np.testing.assert_allclose(once, normalize(vec), atol=1e-6)
    np.testing.assert_allclose(truncate(once, vec.shape[0]), once, atol=1e-6)


def test_truncate_vector_example() -> None:
    out = truncate(np.array([3.0, 4.0, 12.0]), 2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize("dims", [0, -3, 5, 2.5, True, "2"])
def test_truncate_rejects_bad_dimensions(dims: object) -> None:
    with pytest.raises(ConfigurationError):
        truncate(np.ones((2, 4), dtype=np.float32), dims)  # type: ignore[arg-type]


def test_truncate_rejects_bad_rank() -> None:
    with pytest.raises(ConfigurationError, match="2-D"):
        truncate(np.ones((2, 2, 2)), 1)


def test_zero_rows_stay_zero() -> None:
    out = truncate(np.zeros((3, 8), dtype=np.float32), 4)
    assert not out.any()
    assert not np.isnan(out).any()


def test_wrapper_truncates_and_passes_task_through() -> None:
    base = FakeEmbedder(dimensions=64)
    small = Matryoshka(base, 16)
    assert (small.model, small.dimensions, small.modalities) == (
        base.model,
        16,
        base.modalities,
    )
    got = small.embed(["alpha", "beta"], task="query")  # type: ignore[arg-type]
    want = truncate(base.embed(["alpha", "beta"]), 16)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert base.calls[0].task == "query"


def test_wrapper_refuses_a_size_above_the_base() -> None:
    with pytest.raises(ConfigurationError, match="<= 64"):
        Matryoshka(FakeEmbedder(dimensions=64), 65)


def test_wrapper_passes_the_model_limits_through() -> None:
    from mmembed.cache import CachedEmbedder, EmbeddingCache
    from mmembed.embedders.gemini import GeminiEmbedder
    from mmembed.limits import limits_for

    gemini = GeminiEmbedder(dimensions=768, api_key="unused-key")
    assert Matryoshka(gemini, 256).limits is gemini.limits
    assert gemini.limits == limits_for("gemini-embedding-2")
    assert Matryoshka(FakeEmbedder(dimensions=8), 4).limits is None
    cached = CachedEmbedder(Matryoshka(gemini, 256), EmbeddingCache(":memory:"))
    assert cached.limits is gemini.limits
