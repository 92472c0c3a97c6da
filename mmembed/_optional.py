"""One way to import an optional dependency, with one kind of error when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from mmembed.errors import MissingDependencyError

__all__ = ["import_optional"]


def import_optional(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` with the install line.

    Args:
        module: the dotted module name, e.g. ``"av"``.
        extra: the mmembed extra that installs it, e.g. ``"video"``.
        purpose: what needs it, for the message (``"VideoChunker"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        err = MissingDependencyError(
            f"{purpose} needs the optional package {root!r}, which is not installed. "
            f'Install it with: pip install "mmembed[{extra}]"'
        )
        err.name = root
        raise err from exc
