"""LangChain adapters: mmembed embedders as ``Embeddings``, mmembed stores as ``VectorStore``.

Install with ``pip install "mmembed[langchain]"``; importing this module without ``langchain-core``
raises :class:`~mmembed.errors.MissingDependencyError` with that line.

Unlike LangChain's own Gemini class, :class:`LangChainEmbeddings` always returns one vector per
input (never one fused vector for a list), sends documents and queries with the task the model
actually uses (text prefixes for ``gemini-embedding-2``), batches and retries inside the embedder,
and takes images, audio, video and PDFs as well as strings::

    from mmembed.integrations.langchain import LangChainEmbeddings, LangChainVectorStore
    from mmembed.stores.qdrant import QdrantStore

    embeddings = LangChainEmbeddings(model="gemini-embedding-2", dimensions=768)
    store = LangChainVectorStore(QdrantStore(768), embeddings)
    store.add_texts(["cats purr", "rockets fly"], metadatas=[{"topic": "cats"}, {"topic": "space"}])
    store.similarity_search("kittens", k=1, filter={"topic": "cats"})
"""

from __future__ import annotations

from mmembed._optional import import_optional

import_optional("langchain_core", extra="langchain", purpose="mmembed.integrations.langchain")

import os  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterable, Mapping, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from langchain_core.vectorstores.utils import maximal_marginal_relevance  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from mmembed.content import Embeddable, Image, Task, load  # noqa: E402
from mmembed.errors import ConfigurationError  # noqa: E402
from mmembed.integrations._common import (  # noqa: E402
    DEFAULT_MODEL,
    ClosesOwnEmbedder,
    api_key_or_env,
    build_gemini,
    check_embedder,
    gemini_option_names,
    refuse_parameters_with_embedder,
    refuse_unknown_arguments,
    rows_as_floats,
    task_from_gemini_name,
)
from mmembed.protocols import Embedder  # noqa: E402
from mmembed.protocols import VectorStore as MMVectorStore  # noqa: E402

__all__ = ["LangChainEmbeddings", "LangChainVectorStore"]


class LangChainEmbeddings(ClosesOwnEmbedder, Embeddings):
    """A LangChain ``Embeddings`` backed by any mmembed :class:`~mmembed.protocols.Embedder`.

    Build it from an embedder (``LangChainEmbeddings(FakeEmbedder(64))``) or from Gemini model
    parameters (``LangChainEmbeddings(model="gemini-embedding-2", dimensions=768)``); the latter
    creates a :class:`~mmembed.embedders.gemini.GeminiEmbedder` on first use.

    ``embed_documents`` embeds with ``document_task`` and ``embed_query`` with ``query_task``;
    the async methods call the embedder's native ``aembed``. Every result is a list of Python
    floats, one list per input. Inputs may be strings or any mmembed part
    (:class:`~mmembed.content.Image`, ...) or :class:`~mmembed.content.Content`.

    The names ``langchain-google-genai``'s ``GoogleGenerativeAIEmbeddings`` users already write
    work too: ``google_api_key`` (its name for ``api_key``), ``output_dimensionality`` (for
    ``dimensions``) and ``task_type`` (a Gemini task name such as ``"SEMANTIC_SIMILARITY"``,
    used for documents and queries alike, as there). Any other name fails here, at
    construction, with the name it most likely meant.

    Args:
        embedder: the mmembed embedder to use. Leave it out to use Gemini.
        model: Gemini model id (default ``"gemini-embedding-2"``); only without ``embedder``.
        dimensions: Gemini output size (128–3072); only without ``embedder``.
        api_key: Gemini API key; defaults to ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``.
        query_task: the task for ``embed_query`` (e.g. ``Task.QUESTION_ANSWERING``).
        document_task: the task for ``embed_documents``.
        **gemini_options: further ``GeminiEmbedder`` keyword options (``client=``, ...), or the
            ``GoogleGenerativeAIEmbeddings`` names above.

    Raises:
        ConfigurationError: both an embedder and Gemini parameters were given, an argument is
            unknown, or one thing was given under two names.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | None = None,
        dimensions: int | None = None,
        api_key: str | SecretStr | None = None,
        query_task: Task = Task.QUERY,
        document_task: Task = Task.DOCUMENT,
        **gemini_options: Any,
    ) -> None:
        refuse_unknown_arguments(
            "LangChainEmbeddings",
            gemini_options,
            {*_LANGCHAIN_NAMES, *gemini_option_names(), "model", "query_task", "document_task"},
            hints=_HINTS,
        )
        if "google_api_key" in gemini_options:
            api_key = _one_of("api_key", api_key, "google_api_key", gemini_options)
        if "output_dimensionality" in gemini_options:
            dimensions = _one_of("dimensions", dimensions, "output_dimensionality", gemini_options)
        task_type = gemini_options.pop("task_type", None)
        if task_type is not None:
            if query_task is not Task.QUERY or document_task is not Task.DOCUMENT:
                raise ConfigurationError(
                    "LangChainEmbeddings got task_type and query_task/document_task: task_type "
                    "sets both; give one or the other"
                )
            query_task = document_task = task_from_gemini_name(task_type, who="LangChainEmbeddings")
        if embedder is not None:
            refuse_parameters_with_embedder(
                "LangChainEmbeddings",
                model=model,
                dimensions=dimensions,
                api_key=api_key,
                **gemini_options,
            )
            self._embedder: Embedder | None = check_embedder(embedder, who="LangChainEmbeddings")
            self.api_key: SecretStr | None = None
        else:
            self._embedder = None
            self.api_key = api_key_or_env(api_key)
        self._owns_embedder = embedder is None
        self.model = embedder.model if embedder is not None else (model or DEFAULT_MODEL)
        self._dimensions = dimensions
        self._gemini_options = gemini_options
        self.query_task = Task(query_task)
        self.document_task = Task(document_task)

    @property
    def embedder(self) -> Embedder:
        """The mmembed embedder (for Gemini parameters, created on first use)."""
        if self._embedder is None:
            self._embedder = build_gemini(
                model=self.model,
                dimensions=self._dimensions,
                api_key=self.api_key,
                options=self._gemini_options,
            )
        return self._embedder

    @property
    def dimensions(self) -> int:
        """The width of every vector."""
        if self._embedder is None and self._dimensions is not None:
            return self._dimensions
        return self.embedder.dimensions

    def embed_documents(self, texts: Sequence[Embeddable]) -> list[list[float]]:
        """One vector per item, embedded as documents."""
        items = _items(texts)
        matrix = self.embedder.embed(items, task=self.document_task)
        return rows_as_floats(matrix, len(items), model=self.model)

    def embed_query(self, text: Embeddable) -> list[float]:
        """One vector for a query (a string, or an image/audio/... part for cross-modal search)."""
        matrix = self.embedder.embed([text], task=self.query_task)
        return rows_as_floats(matrix, 1, model=self.model)[0]

    async def aembed_documents(self, texts: Sequence[Embeddable]) -> list[list[float]]:
        """Async twin of :meth:`embed_documents` (native, not a thread)."""
        items = _items(texts)
        matrix = await self.embedder.aembed(items, task=self.document_task)
        return rows_as_floats(matrix, len(items), model=self.model)

    async def aembed_query(self, text: Embeddable) -> list[float]:
        """Async twin of :meth:`embed_query` (native, not a thread)."""
        matrix = await self.embedder.aembed([text], task=self.query_task)
        return rows_as_floats(matrix, 1, model=self.model)[0]

    def embed_image(self, uris: Sequence[str | os.PathLike[str]]) -> list[list[float]]:
        """One document vector per image file (the method LangChain's multimodal stores call)."""
        images: list[Embeddable] = []
        for uri in uris:
            part = load(Path(uri))
            if not isinstance(part, Image):
                raise ConfigurationError(f"{uri} is not an image (found {part.modality.value})")
            images.append(part)
        return self.embed_documents(images)

    def __repr__(self) -> str:
        # never the key: reprs end up in notebooks and logs
        inner = repr(self._embedder) if self._embedder is not None else f"model={self.model!r}"
        return f"LangChainEmbeddings({inner})"


# GoogleGenerativeAIEmbeddings' names that mean what an mmembed name means
_LANGCHAIN_NAMES = frozenset({"google_api_key", "output_dimensionality", "task_type"})
# and what to use for the ones that have no direct twin here
_HINTS = {
    "base_url": "client= (a google.genai.Client made with http_options=HttpOptions(base_url=...))",
    "client_args": "client= (a google.genai.Client configured as you need)",
    "additional_headers": "client= (a google.genai.Client configured as you need)",
    "request_options": "timeout=",
}


def _one_of(name: str, value: Any, alias: str, options: dict[str, Any]) -> Any:
    """The value given as ``name`` or under LangChain's ``alias`` (popped), never both."""
    aliased = options.pop(alias)
    if value is not None and aliased is not None:
        raise ConfigurationError(
            f"LangChainEmbeddings got both {name} and {alias}, which are the same setting: give one"
        )
    return aliased if value is None else value


def _items(texts: Sequence[Embeddable] | Iterable[Embeddable]) -> list[Embeddable]:
    if isinstance(texts, str):
        raise ConfigurationError(
            "embed_documents takes a list of texts, not one string: use embed_query or wrap it"
        )
    return list(texts)


class LangChainVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over any mmembed :class:`~mmembed.protocols.VectorStore`.

    Each document's text and LangChain id are kept in the store's metadata under ``text_key`` and
    ``id_key`` (and removed again from the documents returned). ``filter`` in the search methods
    is the mmembed ``where``: ``{"topic": "cats"}`` or ``{"topic": ["cats", "dogs"]}``. Scores
    from ``similarity_search_with_score`` are cosine similarities; relevance scores map them to
    0..1.

    Args:
        store: the mmembed store (``QdrantStore``, ``InMemoryStore``, ``FaissStore``...).
        embedding: a LangChain ``Embeddings`` or an mmembed embedder (wrapped automatically).
        text_key: metadata key for the page content.
        id_key: metadata key for the document id.
    """

    def __init__(
        self,
        store: MMVectorStore,
        embedding: Embeddings | Embedder,
        *,
        text_key: str = "page_content",
        id_key: str = "lc_id",
    ) -> None:
        for name in ("add", "search", "delete", "dimensions"):
            if not hasattr(store, name):
                raise ConfigurationError(
                    f"LangChainVectorStore needs an mmembed VectorStore; {type(store).__name__} "
                    f"lacks {name}"
                )
        if not isinstance(embedding, Embeddings):
            embedding = LangChainEmbeddings(check_embedder(embedding, who="LangChainVectorStore"))
        if isinstance(embedding, LangChainEmbeddings) and embedding.dimensions != store.dimensions:
            raise ConfigurationError(
                f"the embedder makes {embedding.dimensions}-dimensional vectors but the store "
                f"holds {store.dimensions}: create the store with the embedder's dimensions"
            )
        if text_key == id_key:
            raise ConfigurationError("text_key and id_key must differ")
        self.store = store
        self._embedding = embedding
        self.text_key = text_key
        self.id_key = id_key

    @property
    def embeddings(self) -> Embeddings:
        """The LangChain embeddings used for texts and queries."""
        return self._embedding

    # -- writing ---------------------------------------------------------------------------------

    def _records(
        self,
        texts: list[str],
        metadatas: Sequence[Mapping[str, Any]] | None,
        ids: Sequence[str | None] | None,
    ) -> tuple[list[str], list[dict[str, Any]]]:
        if metadatas is not None and len(metadatas) != len(texts):
            raise ConfigurationError(
                f"got {len(texts)} texts but {len(metadatas)} metadatas: pass one per text"
            )
        if ids is not None and len(ids) != len(texts):
            raise ConfigurationError(
                f"got {len(texts)} texts but {len(ids)} ids: pass one per text"
            )
        out_ids = [
            (i if i else uuid.uuid4().hex)
            for i in (ids if ids is not None else [None] * len(texts))
        ]
        records = []
        for n, text in enumerate(texts):
            meta = dict(metadatas[n]) if metadatas is not None else {}
            for key in (self.text_key, self.id_key):
                if key in meta:
                    raise ConfigurationError(
                        f"metadata key {key!r} is reserved by LangChainVectorStore (document "
                        f"{out_ids[n]!r}): rename it, or pass text_key=/id_key= to choose others"
                    )
            meta[self.text_key] = text
            meta[self.id_key] = out_ids[n]
            records.append(meta)
        return out_ids, records

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` as documents and upsert them; returns their ids (new ones are uuid4)."""
        texts = list(texts)
        out_ids, records = self._records(texts, metadatas, ids)
        if not texts:
            return []
        vectors = self._embedding.embed_documents(texts)
        self.store.add(out_ids, np.asarray(vectors, dtype=np.float32), records)
        return out_ids

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts`: the embedding call is awaited natively."""
        texts = list(texts)
        out_ids, records = self._records(texts, metadatas, ids)
        if not texts:
            return []
        vectors = await self._embedding.aembed_documents(texts)
        self.store.add(out_ids, np.asarray(vectors, dtype=np.float32), records)
        return out_ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id; unknown ids are ignored. Returns ``True``."""
        if ids is None:
            raise ConfigurationError(
                "LangChainVectorStore.delete needs the ids to delete (deleting everything is not "
                "supported through the mmembed store protocol)"
            )
        self.store.delete(list(ids))
        return True

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | Embedder,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: MMVectorStore | None = None,
        **kwargs: Any,
    ) -> LangChainVectorStore:
        """A store filled with ``texts``.

        Args:
            texts: the texts to embed and add.
            embedding: LangChain embeddings (or an mmembed embedder).
            metadatas: one metadata dict per text.
            ids: one id per text (uuid4 hex when missing).
            store: the mmembed store to fill; by default a new in-memory one of the embedding's
                width (an ``InMemoryStore``).
            **kwargs: ``text_key`` / ``id_key`` for the constructor.
        """
        if store is None:
            if isinstance(embedding, LangChainEmbeddings):
                width = embedding.dimensions
            elif not isinstance(embedding, Embeddings):
                width = check_embedder(embedding, who="LangChainVectorStore").dimensions
            else:
                width = len(embedding.embed_query("dimension probe"))
            store = _default_store(width)
        vs = cls(store, embedding, **kwargs)
        vs.add_texts(texts, metadatas, ids=ids)
        return vs

    # -- reading ---------------------------------------------------------------------------------

    def _document(self, id_: str, metadata: Mapping[str, Any]) -> Document:
        meta = dict(metadata)
        text = meta.pop(self.text_key, "")
        doc_id = meta.pop(self.id_key, id_)
        return Document(page_content=str(text), metadata=meta, id=str(doc_id))

    def similarity_search_with_score_by_vector(
        self,
        embedding: Sequence[float],
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """The ``k`` documents nearest to a vector, with their cosine similarity."""
        hits = self.store.search(np.asarray(embedding, dtype=np.float32), k, where=filter)
        return [(self._document(h.id, h.metadata), float(h.score)) for h in hits]

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The ``k`` documents nearest to a vector."""
        pairs = self.similarity_search_with_score_by_vector(embedding, k, filter)
        return [doc for doc, _ in pairs]

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """The ``k`` documents nearest to ``query``, with their cosine similarity."""
        vector = self._embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter)

    def similarity_search(
        self,
        query: str,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The ``k`` documents nearest to ``query``."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter)]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`: the query embedding is awaited natively."""
        vector = await self._embedding.aembed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter)

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search`."""
        pairs = await self.asimilarity_search_with_score(query, k, filter)
        return [doc for doc, _ in pairs]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: Sequence[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents near a vector and diverse among themselves (maximal marginal
        relevance over the ``fetch_k`` nearest). Needs a store with ``get`` (every mmembed store
        has one) to read back the candidates' vectors."""
        get = getattr(self.store, "get", None)
        if not callable(get):
            raise ConfigurationError(
                f"max marginal relevance search needs the stored vectors, and "
                f"{type(self.store).__name__} has no get(ids) to read them: use similarity_search"
            )
        hits = self.store.search(
            np.asarray(embedding, dtype=np.float32), max(fetch_k, k), where=filter
        )
        if not hits:
            return []
        records = {r.id: r for r in get([h.id for h in hits])}
        hits = [h for h in hits if h.id in records]
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32),
            [np.asarray(records[h.id].vector, dtype=np.float64).tolist() for h in hits],
            lambda_mult=lambda_mult,
            k=min(k, len(hits)),
        )
        return [self._document(hits[i].id, hits[i].metadata) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search_by_vector` for a query text."""
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter)

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search`: the query embedding is awaited."""
        vector = await self._embedding.aembed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter)

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents with these ids (missing ids are skipped)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        get = getattr(self.store, "get", None)
        if callable(get):  # InMemoryStore, FaissStore and QdrantStore look ids up directly
            return [self._document(r.id, r.metadata) for r in get(wanted)]
        # The minimal store protocol has no lookup by id, but every store filters: ask for these
        # ids with any probe vector; the filter applies before top-k, so all of them come back.
        probe = np.full(self.store.dimensions, 1.0, dtype=np.float32)
        hits = self.store.search(probe, len(wanted), where={self.id_key: wanted})
        found = {h.id: self._document(h.id, h.metadata) for h in hits}
        return [found[i] for i in wanted if i in found]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # scores are cosine similarities in [-1, 1]; LangChain's relevance is 0 (worst) .. 1
        return _cosine_to_relevance


def _cosine_to_relevance(score: float) -> float:
    # float32 rounding can put an exact match a hair above 1
    return min(1.0, max(0.0, (score + 1.0) / 2.0))


def _default_store(dimensions: int) -> MMVectorStore:
    from mmembed.stores.memory import InMemoryStore

    return InMemoryStore(dimensions)
