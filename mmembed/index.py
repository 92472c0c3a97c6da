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

from mmembed._bases import Closeable
from mmembed._batch import BatchJob
from mmembed._batch_run import BatchReport
from mmembed._catalog import Catalog
from mmembed._choose_embedder import choose_embedder
from mmembed._files import SQLITE_SIDECARS, refuse_links
from mmembed._index_config import (
    CONFIG_VERSION,
    Chunkers,
    check_chunking,
    check_embedder,
    chunking_entry,
    embedder_entry,
    read_config,
    rebuild_embedder,
    token_budget,
)
from mmembed._index_search import search_index
from mmembed._index_store import StoreKeeper
from mmembed._ingest import FileProblem, IndexProgress, IndexReport, Ingest, IngestContext
from mmembed._lock import WriterLock
from mmembed._search import (
    KeywordReader,
    SearchMode,
)
from mmembed._walk import Selection
from mmembed._where import check_add_metadata
from mmembed.content import Embeddable
from mmembed.errors import (
    ConfigurationError,
    IndexLockedError,
)
from mmembed.limits import ModelLimits
from mmembed.protocols import Embedder, VectorStore
from mmembed.results import Results
from mmembed.stores._validate import check_positive_int

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
        _check_given(embedder, store)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigurationError(f"{self.path} exists and is not an index directory")
        self._batch_size = batch_size
        config = read_config(self.path)
        self._new = config is None

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
        stored = (config or {}).get("chunking")
        given = chunk_options is not None or chunker is not None
        chunking = chunking_entry(stored, chunk_options, chunker, limits_name)
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
        self._text_known: tuple[int, bool] | None = None
        self._closed = False
        self._keeper = StoreKeeper(
            self.path, self._dimensions, self._catalog, self._config, new=self._new
        )
        self._keeper.start(store)
        if self._new:
            with self._lock:
                self._keeper.save()

    @property
    def _store(self) -> VectorStore:
        """The store as it is (not brought up to date: see :attr:`store`)."""
        return self._keeper.store

    @_store.setter
    def _store(self, store: VectorStore) -> None:
        self._keeper.store = store

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
            self._keeper.catch_up()
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
        _check_run(max_cost, batch=batch, wait=wait, resubmit=resubmit)
        started = time.perf_counter()

        def one_pass(context: IngestContext, first: bool) -> IndexReport:
            self._keeper.catch_up()
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
                    self._keeper.catch_up()
                    self._keeper.save()
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
            self._keeper.catch_up()
            for p in paths:
                target = os.path.abspath(p)
                for f in self._catalog.files(under=target):
                    self._catalog.remove_file(f.path)
                    if f.status == "indexed":
                        removed.append(f.path)
            self._keeper.catch_up()
            self._keeper.save()
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
        return search_index(
            query,
            k,
            where=where,
            group=group,
            mode=mode,
            catalog=self._catalog,
            keywords=self._keywords,
            embedder=lambda: self._embed_with,
            catch_up=self._keeper.catch_up,
            store=lambda: self._store,
            has_text=self._has_text,
        )

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


def _check_given(embedder: object, store: object) -> None:
    """An embedder and a store passed to :class:`Index` have what the index calls."""
    for name, value, needs in (
        ("embedder", embedder, ("embed", "dimensions", "model")),
        ("store", store, ("add", "search", "delete", "dimensions")),
    ):
        if value is not None and not all(hasattr(value, attr) for attr in needs):
            raise ConfigurationError(
                f"{name} takes an mmembed {name} object (with {', '.join(needs)}), got "
                f"{type(value).__name__}; build one with mmembed.registry.build_{name}(...)"
            )


def _check_run(max_cost: object, *, batch: bool, wait: bool, resubmit: bool) -> None:
    """The options of an :meth:`Index.add` run that go together."""
    cost: object = max_cost
    if cost is not None and (
        isinstance(cost, bool) or not isinstance(cost, (int, float)) or not cost >= 0
    ):
        raise ConfigurationError(f"max_cost must be a number of dollars >= 0, got {max_cost}")
    if (wait or resubmit) and not batch:
        raise ConfigurationError("wait and resubmit go with batch=True (the Batch API)")


def _path_arg(value: object, where: str) -> str | os.PathLike[str]:
    """A path argument, or a :class:`ConfigurationError` naming what was given instead."""
    if isinstance(value, (str, os.PathLike)) and str(value) and "\0" not in str(value):
        return value
    raise ConfigurationError(
        f"{where} takes file or folder paths (str or pathlib.Path), got {value!r}"
    )
