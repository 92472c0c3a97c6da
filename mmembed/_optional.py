"""One way to import an optional dependency, with one kind of error when it is missing."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from mmembed.errors import MissingDependencyError

__all__ = ["import_optional", "lazy_attributes", "quiet_logger"]


def import_optional(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` with the install line.

    Args:
        module: the dotted module name, e.g. ``"av"``.
        extra: the mmembed extra that installs it, e.g. ``"video"``.
        purpose: what needs it, for the message (``"VideoChunker"``).
    """
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        err = MissingDependencyError(
            f"{purpose} needs the optional package {root!r}, which is not installed. "
            f'Install it with: pip install "mmembed[{extra}]"'
        )
        err.name = root
        raise err from exc
    quiet_logger(module.split(".")[0])
    return imported


def quiet_logger(name: str) -> None:
    """Keep a dependency's log warnings off stderr ("incorrect startxref pointer", ...) unless
    the application configures logging: a :class:`logging.NullHandler` stops Python's last-resort
    printing, and records still propagate to the handlers the application sets up."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def lazy_attributes(
    module: str, lazy: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` (PEP 562) for names imported on first use.

    Args:
        module: the module's name, for the error on an unknown attribute.
        lazy: each lazy name and the module it is imported from.
        namespace: the module's ``globals()``, where each name is kept once imported.
    """

    def __getattr__(name: str) -> Any:
        source = lazy.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
