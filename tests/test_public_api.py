from __future__ import annotations

import subprocess
import sys

import pytest

import mmembed
from mmembed import errors


def test_all_is_sorted_and_resolves() -> None:
    assert mmembed.__all__ == sorted(mmembed.__all__)
    for name in mmembed.__all__:
        assert getattr(mmembed, name) is not None, name


def test_every_error_is_exported_and_rooted() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.MMEmbedError)
        assert getattr(mmembed, name) is cls


def test_errors_are_also_the_matching_builtins() -> None:
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.UnsupportedMediaError, ValueError)
    assert issubclass(errors.InputLimitError, ValueError)
    assert issubclass(errors.DimensionMismatchError, ValueError)
    assert issubclass(errors.RateLimitError, errors.EmbeddingError)
    assert issubclass(errors.CorruptStoreError, errors.StoreError)


def test_import_is_light() -> None:
    """`import mmembed` must not load the heavy dependencies."""
    code = (
        "import sys, mmembed; "
        "heavy = [m for m in ('google.genai', 'faiss', 'av', 'torch', 'pypdf', 'pypdfium2') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_missing_dependency_message() -> None:
    from mmembed._optional import import_optional

    with pytest.raises(
        errors.MissingDependencyError, match=r'pip install "mmembed\[video\]"'
    ) as info:
        import_optional("surely_not_installed_pkg", extra="video", purpose="VideoChunker")
    assert info.value.name == "surely_not_installed_pkg"
