"""The installed distribution's version (the package metadata is the one source)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("mmembed")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
