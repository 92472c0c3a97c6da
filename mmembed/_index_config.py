"""What an index was built with, and whether what it is opened with matches.

``config.json`` holds the *fingerprint* (what the vectors depend on: model, dimensions,
normalisation, tasks; and the chunk settings) and the *specs* of the embedder and the store
(how to build them again, see :mod:`mmembed.registry`). ``store.json`` names the store of the
snapshot on disk and the catalog position it holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmembed.content import Modality, Part, Text
from mmembed.errors import (
    ChunkingError,
    ConfigurationError,
    CorruptStoreError,
    IncompatibleIndexError,
    UnsupportedMediaError,
)
from mmembed.limits import ModelLimits, estimate_tokens
from mmembed.protocols import Chunk, Chunker, Embedder, TextSpan, VectorStore
from mmembed.registry import build_embedder, build_store, kind_of_target, store_class, to_spec

__all__ = [
    "CONFIG_VERSION",
    "Chunkers",
    "TokenBudget",
    "check_chunking",
    "check_config",
    "check_embedder",
    "check_store_state",
    "embedder_entry",
    "read_json",
    "rebuild_embedder",
    "store_entry",
    "store_kind",
    "token_budget",
]

CONFIG_VERSION = 1
#: The fingerprint keys an embedder must match to open an index (the spec may differ).
_FINGERPRINT = ("model", "dimensions", "normalize", "tasks")
# Older index files named their embedder by a kind alone and their store by "module:Class".
_OLD_KINDS = {"gemini", "local", "fake"}


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object written by the index, or ``None`` when the file does not exist."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise CorruptStoreError(
            f"{path} is damaged ({exc}); restore it from a backup, or index the files again "
            "into a new directory"
        ) from exc
    if not isinstance(data, dict):
        raise CorruptStoreError(
            f"{path} is not an mmembed index file; restore it from a backup, or index the files "
            "again into a new directory"
        )
    return data


def read_config(path: Path) -> dict[str, Any] | None:
    """The checked ``config.json`` of the index at ``path``; ``None`` for a new index."""
    config = read_json(path / "config.json")
    if config is not None and config.get("version") != CONFIG_VERSION:
        raise CorruptStoreError(
            f"{path} was written by another mmembed version (index format "
            f"{config.get('version')!r}); delete it and index again"
        )
    if config is not None:
        config = check_config(path, config)
    return config


def check_config(path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config.json`` of ``path`` with the shape mmembed writes, or a :class:`CorruptStoreError`
    naming the first field that is not (never a ``KeyError`` from deep inside)."""
    from mmembed.stores._validate import MAX_DIMENSIONS

    def bad(what: str) -> CorruptStoreError:
        return CorruptStoreError(
            f"{path / 'config.json'} is not what mmembed writes ({what}); restore the file from "
            "a backup, or index the files again into a new directory"
        )

    embedder = config.get("embedder")
    if not isinstance(embedder, Mapping):
        raise bad("'embedder' must be an object")
    dimensions = embedder.get("dimensions")
    if (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= MAX_DIMENSIONS
    ):
        raise bad(f"'embedder.dimensions' must be an int from 1 to {MAX_DIMENSIONS}")
    for key in ("spec", "tasks"):
        if embedder.get(key) is not None and not isinstance(embedder[key], Mapping):
            raise bad(f"'embedder.{key}' must be an object")
    chunking = config.get("chunking")
    if chunking is not None:
        if not isinstance(chunking, Mapping):
            raise bad("'chunking' must be an object")
        options = chunking.get("options", {})
        if not isinstance(options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in options.items()
        ):
            raise bad("'chunking.options' must map modalities to objects of options")
        for key in ("limits", "chunker"):
            if chunking.get(key) is not None and not isinstance(chunking[key], str):
                raise bad(f"'chunking.{key}' must be a string")
    store = config.get("store")
    if store is not None:
        if not isinstance(store, Mapping):
            raise bad("'store' must be an object")
        if store.get("spec") is not None and not isinstance(store["spec"], Mapping):
            raise bad("'store.spec' must be an object")
    return dict(config)


def check_store_state(path: Path, state: Mapping[str, Any]) -> int:
    """The catalog position ``store.json`` says the snapshot holds, once its shape is checked."""
    seq = state.get("seq", 0)
    spec = state.get("spec")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        what = "'seq' must be an int >= 0"
    elif spec is not None and not isinstance(spec, Mapping):
        what = "'spec' must be an object"
    else:
        return seq
    raise CorruptStoreError(
        f"{path / 'store.json'} is not what mmembed writes ({what}); delete store.json and "
        "store/ (the index rebuilds them from its catalog, which holds every vector)"
    )


# -- the embedder ----------------------------------------------------------------------------


def embedder_entry(embedder: Embedder) -> dict[str, Any]:
    """The ``embedder`` section of ``config.json``: fingerprint, kind and spec."""
    limits = getattr(embedder, "limits", None)
    tasks: dict[str, Any] = {}
    if isinstance(limits, ModelLimits):
        tasks["style"] = limits.task_style
    prompts = getattr(embedder, "prompts", None)
    if isinstance(prompts, Mapping):
        tasks["prompts"] = {str(k): str(v) for k, v in sorted(prompts.items())}
    try:
        spec: dict[str, Any] | None = to_spec(embedder)
    except ConfigurationError:
        spec = None  # a custom embedder: the index needs it passed again to reopen
    kind = (
        spec["kind"]
        if spec is not None
        else f"custom:{type(embedder).__module__}.{type(embedder).__qualname__}"
    )
    return {
        "kind": kind,
        "model": embedder.model,
        "dimensions": int(embedder.dimensions),
        "normalize": "l2",
        "tasks": tasks,
        "spec": spec,
    }


def rebuild_embedder(entry: Mapping[str, Any]) -> Embedder:
    """The embedder an index was built with, from its ``config.json`` entry."""
    spec = entry.get("spec")
    kind = str(entry.get("kind", ""))
    if spec is None and kind in _OLD_KINDS:
        spec = {"kind": kind, "model": entry.get("model"), "dimensions": entry.get("dimensions")}
        if kind == "local":
            del spec["dimensions"]
    if spec is None:
        raise ConfigurationError(
            f"this index was built with a custom embedder ({kind.removeprefix('custom:')}, model "
            f"{entry.get('model')!r}) that cannot describe itself; pass the same embedder again: "
            "Index(path, embedder=...)"
        )
    embedder: Embedder = build_embedder(spec)
    return embedder


def check_embedder(path: Path, stored: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Refuse an embedder whose vectors would not compare with the index's."""
    diffs = [
        f"{key} {stored.get(key)!r} (given {given.get(key)!r})"
        for key in _FINGERPRINT
        if stored.get(key) != given.get(key)
    ]
    if diffs:
        raise IncompatibleIndexError(
            f"{path} was built with another embedder: {'; '.join(diffs)}. Vectors from "
            "different embedders cannot be compared: open it without an embedder to reuse "
            "its own, or use another index directory"
        )


# -- chunking --------------------------------------------------------------------------------


# options that say which files are read, not how they are cut: an existing index takes new ones
_NOT_FINGERPRINTED = {"text": ("max_bytes",)}


def _cutting(chunking: Mapping[str, Any]) -> str:
    """The chunk settings that decide the chunks, as comparable JSON."""
    options = {
        modality: {k: v for k, v in values.items() if k not in _NOT_FINGERPRINTED.get(modality, ())}
        for modality, values in dict(chunking.get("options") or {}).items()
    }
    return json.dumps({**chunking, "options": options}, sort_keys=True, default=str)


def chunking_entry(
    stored: dict[str, Any] | None, chunk_options: object, chunker: object, limits_name: object
) -> dict[str, Any]:
    """The chunking settings of the fingerprint: the index's own (``stored``) unless options or
    a chunker are given; their options are filled in once the chunkers are built."""
    if chunk_options is not None and not isinstance(chunk_options, Mapping):
        raise ConfigurationError(
            f"chunk_options takes a dict of options per modality, e.g. {{'text': {{'size': "
            f"512}}}}; got {type(chunk_options).__name__}"
        )
    given = chunk_options is not None or chunker is not None
    chunking: dict[str, Any] = (
        stored
        if stored is not None and not given
        else {"options": {}, "limits": limits_name, "chunker": "mmembed.chunkers"}
    )
    if given or stored is None:
        chunking["chunker"] = "custom" if chunker is not None else "mmembed.chunkers"
    return chunking


def check_chunking(path: Path, stored: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Refuse chunk settings that differ from the index's (its chunks would not match)."""
    if _cutting(stored) != _cutting(given):
        raise IncompatibleIndexError(
            f"{path} was built with chunk settings {dict(stored)}, not {dict(given)}; use "
            "another index directory, or delete this one to rebuild it"
        )


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """How much of one item an embedder reads: ``max_tokens`` tokens, as ``count`` counts them."""

    max_tokens: int
    count: Callable[[str], int]


def token_budget(embedder: object) -> TokenBudget | None:
    """What an embedder says it reads: its ``max_input_tokens`` counted by its
    ``count_tokens``, else its limits' ``max_tokens`` (estimated); wrappers are looked through.
    ``None`` for an embedder that says nothing."""
    chain: list[object] = []
    found: object = embedder
    while found is not None and len(chain) < 32:
        chain.append(found)
        found = getattr(found, "embedder", None)
    for member in chain:
        most = getattr(member, "max_input_tokens", None)
        if isinstance(most, int) and not isinstance(most, bool) and most > 0:
            count = getattr(member, "count_tokens", None)
            return TokenBudget(most, count if callable(count) else estimate_tokens)
    for member in chain:
        limits = getattr(member, "limits", None)
        if isinstance(limits, ModelLimits):
            return TokenBudget(limits.max_tokens, estimate_tokens)
    return None


class Chunkers:
    """The chunker for each modality, each built (so every option checked) up front.

    Every chunk is fitted to what the embedder reads (:class:`TokenBudget`): a text chunk over
    it is cut into windows that fit, each keeping its place (a part of the text span, the same
    page or time); any other chunk over it fails its file with the reason, so nothing is cut
    off silently by the model.

    Args:
        options: per-modality chunker options, ``{"text": {"size": 512}, ...}``.
        limits: the model's limits (``None`` for a model that publishes none, such as a local
            one: chunkers then use Gemini Embedding 2's, and text sizes are counted in the
            model's own tokens, by default as many as it reads: see ``budget``).
        custom: one chunker to use for every file instead.
        budget: what the embedder reads (asked when the first file is chunked: for a local
            model this loads the model).

    Raises:
        ConfigurationError: an option a chunker does not take, or a bad value.
    """

    def __init__(
        self,
        options: Mapping[str, Mapping[str, Any]],
        *,
        limits: ModelLimits | None,
        custom: Chunker | None = None,
        budget: Callable[[], TokenBudget | None] = lambda: None,
    ) -> None:
        unknown = sorted(set(options) - {m.value for m in Modality})
        if unknown:
            raise ConfigurationError(
                f"chunk_options takes one dict of options per modality ({', '.join(Modality)}), "
                f"e.g. {{'text': {{'size': 512}}}}; got {', '.join(unknown)}"
            )
        for key, value in options.items():
            if not isinstance(value, Mapping):
                raise ConfigurationError(
                    f"chunk_options[{key!r}] must be a dict of {key} chunker options, got "
                    f"{type(value).__name__}"
                )
        self._options = {k: dict(v) for k, v in options.items()}
        self._limits = limits
        self._custom = custom
        self._ask_budget = budget
        self._budget: TokenBudget | None = None
        self._asked = False
        self._built: dict[tuple[Modality, bool], Chunker | None] = {}
        if custom is None:
            for modality in Modality:
                self._built[(modality, False)] = self._make(modality, pdf_as_text=False)
            self._built[(Modality.PDF, True)] = self._make(Modality.PDF, pdf_as_text=True)
            if self._counted_by_model:
                # checked above; built again to count with the model's tokenizer on first use
                del self._built[(Modality.TEXT, False)]

    @property
    def options(self) -> dict[str, dict[str, Any]]:
        """The options as given, sorted by modality (as the fingerprint records them)."""
        return {k: dict(self._options[k]) for k in sorted(self._options)}

    @property
    def _counted_by_model(self) -> bool:
        """Text sizes are counted in the embedder's own tokens (a model without limits)."""
        return self._limits is None and self._options.get("text", {}).get("unit") != "chars"

    def budget(self) -> TokenBudget | None:
        """What the embedder reads (asked once)."""
        if not self._asked:
            self._budget = self._ask_budget()
            self._asked = True
        return self._budget

    def for_part(self, modality: Modality, *, pdf_as_text: bool = False) -> _Fitted:
        """The chunker for a part of ``modality`` (a PDF read as text for a text-only model)."""
        if self._custom is not None:
            return _Fitted(self._custom, self.budget)
        key = (modality, pdf_as_text and modality is Modality.PDF)
        if key not in self._built:
            self._built[key] = self._make(modality, pdf_as_text=key[1], sized=True)
        chunker = self._built[key]
        if chunker is None:
            raise UnsupportedMediaError(
                f"{self._limits.model if self._limits else 'the model'} does not take "
                f"{modality.value}"
            )
        return _Fitted(chunker, self.budget)

    def _make(
        self, modality: Modality, *, pdf_as_text: bool, sized: bool = False
    ) -> Chunker | None:
        from mmembed.chunkers import chunker_for

        options = dict(self._options.get(modality.value, {}))
        if modality is Modality.TEXT and sized and self._counted_by_model:
            # windows counted with the model's own tokenizer, by default as long as it reads
            budget = self.budget()
            if budget is not None:
                options.setdefault("size", budget.max_tokens)
                options.setdefault("tokenizer", budget.count)
        if modality is Modality.PDF:
            options.setdefault("page_text", True)
            if pdf_as_text:
                # one page a chunk: a text model reads little, and page hits stay precise
                options.setdefault("mode", "text")
                options.setdefault("pages", 1)
                options.pop("page_vectors", None)  # text chunks hold one page already
        try:
            return chunker_for(modality, limits=self._limits, **{modality.value: options})
        except UnsupportedMediaError:
            # the model takes no such files (they are skipped); still check the options
            chunker_for(modality, limits=None, **{modality.value: options})
            return None


class _Fitted:
    """A chunker whose chunks are fitted to what the embedder reads (see :class:`Chunkers`)."""

    def __init__(self, chunker: Chunker, budget: Callable[[], TokenBudget | None]) -> None:
        self._chunker = chunker
        self._budget = budget

    @property
    def chunker(self) -> Chunker:
        """The chunker whose chunks are fitted (its settings plan a run)."""
        return self._chunker

    def chunk(self, source: Part | str | os.PathLike[str]) -> Iterator[Chunk]:
        budget = self._budget()
        for chunk in self._chunker.chunk(source):
            if budget is None:
                yield chunk
            else:
                yield from fit_chunk(chunk, budget)


def fit_chunk(chunk: Chunk, budget: TokenBudget) -> Iterator[Chunk]:
    """``chunk`` if the embedder reads all of it; a text chunk over the budget as windows that
    fit, each keeping its place in the file; any other chunk over it is a ChunkingError."""
    from mmembed.chunkers.text import text_windows, trimmed

    content = chunk.content
    texts = [p.text for p in getattr(content, "parts", (content,)) if isinstance(p, Text)]
    if not texts:
        yield chunk
        return
    if isinstance(content, Text):
        tokens = budget.count(content.text)
    else:
        tokens = sum(budget.count(t) for t in texts)
    if tokens <= budget.max_tokens:
        yield chunk
        return
    if not isinstance(content, Text):
        raise ChunkingError(
            f"{chunk.source}: a chunk's text is {tokens} tokens and the model reads "
            f"{budget.max_tokens}; it would be cut off, so choose smaller chunks (chunk_options)"
        )
    text = content.text
    for window in text_windows(
        text, size=budget.max_tokens, tokenizer=budget.count, max_tokens=budget.max_tokens
    ):
        start, end = trimmed(text, window)
        if start == end:
            continue
        span = chunk.span
        if isinstance(span, TextSpan):
            span = TextSpan(span.start + start, span.start + end)
        piece = Text(text[start:end], title=content.title)
        yield replace(chunk, content=piece, span=span, uri="")


# -- the store -------------------------------------------------------------------------------


def store_entry(store: VectorStore) -> dict[str, Any]:
    """How ``config.json`` and ``store.json`` name a store: its spec (``None`` if it has none)."""
    try:
        spec: dict[str, Any] | None = to_spec(store)
    except ConfigurationError:
        spec = None  # a custom store: the index needs it passed again to reopen
    return {"spec": spec}


def store_kind(entry: Mapping[str, Any]) -> str:
    """The registered kind of the store an entry names (older files name a class)."""
    spec = entry.get("spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("kind"), str):
        return str(spec["kind"])
    target = entry.get("class")
    kind = kind_of_target("store", target) if isinstance(target, str) else None
    if kind is None:
        raise ConfigurationError(
            f"this index uses a store mmembed cannot reopen by itself ({target or 'unnamed'}); "
            "pass it again: Index(path, store=...)"
        )
    return kind


def build_empty_store(entry: Mapping[str, Any], dimensions: int) -> VectorStore:
    """A new, empty store like the one an entry names."""
    spec = entry.get("spec")
    if not isinstance(spec, Mapping):
        spec = {"kind": store_kind(entry), "dimensions": dimensions}
    store: VectorStore = build_store(spec)
    return store


def load_store(entry: Mapping[str, Any], path: Path) -> VectorStore:
    """The store snapshot saved at ``path`` by the class an entry names."""
    cls = store_class(store_kind(entry))
    load = getattr(cls, "load", None)
    if not callable(load):
        raise ConfigurationError(f"the {cls.__qualname__} store cannot be loaded from files")
    store: VectorStore = load(path)
    return store
