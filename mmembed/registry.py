"""Backends by name: one lazy registry and one plain spec for embedders and stores.

A *spec* is a plain JSON-ready dict that says what an object is and how to build it again,
with no secrets and no live objects in it. Its ``"kind"`` names a registered class; wrappers
nest the spec of what they wrap::

    {"kind": "matryoshka", "dimensions": 256,
     "embedder": {"kind": "gemini", "model": "gemini-embedding-2", "dimensions": 3072}}

An index records the spec of its embedder and its store, so ``Index(path)`` alone can open it
again; the Chroma adapter stores it in a collection's configuration for the same reason.

Kinds map to ``"module:Class"`` strings, imported on first use (``import mmembed`` stays fast),
with the ``pip install`` line when the extra behind a kind is missing. A package registers its
own kinds with an entry point in the group ``mmembed.embedders`` or ``mmembed.stores``::

    # pyproject.toml of a third-party package
    [project.entry-points."mmembed.embedders"]
    my-model = "my_package.embedders:MyEmbedder"

or at run time with :func:`register_embedder` / :func:`register_store`. A registered class
describes itself with ``to_spec()`` and is built again with the class method
``from_spec(spec)``; the :class:`Specified` protocol spells this out.

>>> from mmembed import Matryoshka
>>> from mmembed.registry import build_embedder, to_spec
>>> from mmembed.testing import FakeEmbedder
>>> spec = to_spec(Matryoshka(FakeEmbedder(dimensions=64), 16))
>>> spec["kind"], spec["embedder"]["kind"]
('matryoshka', 'fake')
>>> build_embedder(spec).dimensions
16
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal, Protocol, Self, runtime_checkable

from mmembed.errors import ConfigurationError, MissingDependencyError

__all__ = [
    "ENTRY_POINT_GROUPS",
    "Specified",
    "build_embedder",
    "build_store",
    "embedder_class",
    "known_embedders",
    "known_stores",
    "register_embedder",
    "register_store",
    "spec_options",
    "store_class",
    "to_spec",
]

Group = Literal["embedder", "store"]

#: The entry point group a third-party package registers its kinds under.
ENTRY_POINT_GROUPS: Mapping[Group, str] = {
    "embedder": "mmembed.embedders",
    "store": "mmembed.stores",
}


@runtime_checkable
class Specified(Protocol):
    """What a registered embedder or store implements so it can be saved and rebuilt."""

    def to_spec(self) -> dict[str, Any]:
        """A plain JSON-ready dict with ``"kind"`` and what :meth:`from_spec` needs; no secrets."""
        ...

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build the object again from :meth:`to_spec` output."""
        ...


@dataclass(frozen=True, slots=True)
class _Entry:
    target: str | type  # "module:Class", or the class itself
    extra: str | None  # the mmembed extra that installs what the module imports


_BUILTIN: dict[Group, dict[str, _Entry]] = {
    "embedder": {
        "gemini": _Entry("mmembed.embedders.gemini:GeminiEmbedder", None),
        "local": _Entry("mmembed.embedders.local:SentenceTransformerEmbedder", "local"),
        "static": _Entry("mmembed.embedders.static:StaticEmbedder", "light"),
        "matryoshka": _Entry("mmembed.matryoshka:Matryoshka", None),
        "cached": _Entry("mmembed.cache:CachedEmbedder", None),
        "fake": _Entry("mmembed.testing:FakeEmbedder", None),
    },
    "store": {
        "memory": _Entry("mmembed.stores.memory:InMemoryStore", None),
        "faiss": _Entry("mmembed.stores.faiss:FaissStore", None),
        "qdrant": _Entry("mmembed.stores.qdrant:QdrantStore", "qdrant"),
    },
}
_registry: dict[Group, dict[str, _Entry]] = {g: dict(e) for g, e in _BUILTIN.items()}
_entry_points_read: set[Group] = set()
_lock = threading.Lock()


def register_embedder(
    kind: str, target: str | type, *, extra: str | None = None, replace: bool = False
) -> None:
    """Register an embedder class under ``kind`` (``"module:Class"`` is imported on first use).

    Args:
        kind: the short name that specs use.
        target: the class, or ``"module:Class"``.
        extra: the mmembed extra to suggest when the module cannot be imported.
        replace: allow replacing an existing kind.

    Raises:
        ConfigurationError: ``kind`` is taken (and ``replace`` is false) or malformed.
    """
    _register("embedder", kind, target, extra=extra, replace=replace)


def register_store(
    kind: str, target: str | type, *, extra: str | None = None, replace: bool = False
) -> None:
    """Register a vector store class under ``kind``; see :func:`register_embedder`."""
    _register("store", kind, target, extra=extra, replace=replace)


def known_embedders() -> list[str]:
    """The embedder kinds available: built in, registered, and from entry points."""
    return _known("embedder")


def known_stores() -> list[str]:
    """The store kinds available: built in, registered, and from entry points."""
    return _known("store")


def embedder_class(kind: str) -> type:
    """The class registered as embedder ``kind``, imported now.

    Raises:
        ConfigurationError: no such kind (the message lists the known ones).
        MissingDependencyError: the kind's module needs an extra that is not installed.
    """
    return _class("embedder", kind)


def store_class(kind: str) -> type:
    """The class registered as store ``kind``, imported now; see :func:`embedder_class`."""
    return _class("store", kind)


def to_spec(obj: object) -> dict[str, Any]:
    """The spec of an embedder or store: what it is and how to build it again.

    Raises:
        ConfigurationError: the object cannot describe itself (no ``to_spec()`` method, or one
            that returns something that is not a plain JSON object with a ``"kind"``).
    """
    method = getattr(obj, "to_spec", None)
    if not callable(method):
        raise ConfigurationError(
            f"{type(obj).__qualname__} cannot describe itself, so it cannot be rebuilt from a "
            "saved index: give it to_spec() and from_spec() and register its kind (see "
            "mmembed.registry), or pass the same object again when reopening"
        )
    spec = method()
    return _checked_spec(spec, f"{type(obj).__qualname__}.to_spec()")


def build_embedder(spec: Mapping[str, Any]) -> Any:
    """Build an embedder from its spec (nested specs are built by the wrapper's ``from_spec``).

    Raises:
        ConfigurationError: the spec is malformed or names an unknown kind.
        MissingDependencyError: the kind needs an extra that is not installed.
    """
    return _build("embedder", spec)


def build_store(spec: Mapping[str, Any]) -> Any:
    """Build an empty vector store from its spec; see :func:`build_embedder`."""
    return _build("store", spec)


def spec_options(
    spec: Mapping[str, Any],
    kind: str,
    *,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> dict[str, Any]:
    """The options of a spec (every key but ``"kind"``), checked against what ``kind`` takes.

    For ``from_spec`` implementations: a missing required key or an unknown key raises
    :class:`ConfigurationError` naming it, so a misspelt option never passes silently.
    """
    spec = _checked_spec(spec, f"a {kind!r} spec")
    if spec["kind"] != kind:
        raise ConfigurationError(f"a {kind!r} spec was expected, got kind {spec['kind']!r}")
    options = {k: v for k, v in spec.items() if k != "kind"}
    missing = [k for k in required if k not in options]
    unknown = sorted(set(options) - set(required) - set(optional))
    if missing or unknown:
        takes = ", ".join([*required, *optional]) or "nothing"
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise ConfigurationError(
            f"bad {kind!r} spec ({'; '.join(problems)}): it takes {takes}: {_short(spec)}"
        )
    return options


def kind_of_target(group: Group, target: str) -> str | None:
    """The kind registered for a ``"module:Class"`` string (to read older index files)."""
    for kind, entry in _entries(group).items():
        if entry.target == target:
            return kind
    return None


# -- internals ------------------------------------------------------------------------------


def _register(
    group: Group, kind: str, target: str | type, *, extra: str | None, replace: bool
) -> None:
    if not kind or kind != kind.strip():
        raise ConfigurationError(f"a {group} kind must be a non-empty name, got {kind!r}")
    if isinstance(target, str):
        module, sep, name = target.partition(":")
        if not sep or not module or not name:
            raise ConfigurationError(
                f"register a {group} as 'module:Class' or as the class itself, got {target!r}"
            )
    elif not isinstance(target, type):
        raise ConfigurationError(f"register a {group} class, got {type(target).__name__}")
    with _lock:
        entries = _entries_locked(group)
        if kind in entries and not replace and entries[kind].target != target:
            raise ConfigurationError(
                f"the {group} kind {kind!r} is already registered ({_target_name(entries[kind])}); "
                "pass replace=True to replace it"
            )
        entries[kind] = _Entry(target, extra)


def _known(group: Group) -> list[str]:
    return sorted(_entries(group))


def _entries(group: Group) -> dict[str, _Entry]:
    with _lock:
        return dict(_entries_locked(group))


def _entries_locked(group: Group) -> dict[str, _Entry]:
    entries = _registry[group]
    if group not in _entry_points_read:
        _entry_points_read.add(group)
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUPS[group]):
            # what is registered in code wins over what an installed package declares
            entries.setdefault(ep.name, _Entry(ep.value, None))
    return entries


def _class(group: Group, kind: str) -> type:
    if not isinstance(kind, str):
        raise ConfigurationError(f"a {group} kind is a name, got {type(kind).__name__}")
    entry = _entries(group).get(kind)
    if entry is None:
        raise ConfigurationError(
            f"unknown {group} kind {kind!r}; known: {', '.join(_known(group))}. A third-party "
            f"{group} is registered by installing its package (entry point group "
            f"{ENTRY_POINT_GROUPS[group]!r}) or with mmembed.registry.register_{group}()"
        )
    if isinstance(entry.target, type):
        return entry.target
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if isinstance(exc, MissingDependencyError):
            raise
        hint = (
            f'install it with: pip install "mmembed[{entry.extra}]"'
            if entry.extra
            else "install the package that provides it"
        )
        err = MissingDependencyError(
            f"the {group} kind {kind!r} needs {module_name}, which cannot be imported ({exc}); "
            f"{hint}"
        )
        err.name = exc.name
        raise err from exc
    found: object = module
    for part in attr.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, type):
        raise ConfigurationError(
            f"the {group} kind {kind!r} is registered as {entry.target}, which is not a class"
        )
    return found


def _build(group: Group, spec: Mapping[str, Any]) -> Any:
    spec = _checked_spec(spec, f"a {group} spec")
    cls = _class(group, spec["kind"])
    from_spec = getattr(cls, "from_spec", None)
    if not callable(from_spec):
        raise ConfigurationError(
            f"the {group} kind {spec['kind']!r} ({cls.__qualname__}) has no from_spec(), so it "
            "cannot be rebuilt; pass the object itself instead"
        )
    try:
        return from_spec(spec)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(
            f"cannot build the {group} kind {spec['kind']!r} from {_short(spec)}: {exc}"
        ) from exc


def _checked_spec(spec: object, what: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"{what} must be a dict with a 'kind', got {type(spec).__name__}")
    kind = spec.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigurationError(f"{what} has no 'kind' name: {_short(spec)}")
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what} is not plain JSON ({exc}): {_short(spec)}") from exc
    return dict(spec)


def _short(spec: object) -> str:
    text = repr(spec)
    return text if len(text) <= 200 else text[:197] + "..."


def _target_name(entry: _Entry) -> str:
    target = entry.target
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
