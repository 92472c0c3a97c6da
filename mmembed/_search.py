"""How :meth:`Index.search` ranks: by vector, by keyword, or both fused; one result per chunk.

- **vector**: cosine similarity between the query's vector and the chunks' (the store).
- **keyword**: BM25 over the chunks' text, file names and titles (the catalog's FTS5 table,
  scored in memory by :class:`~mmembed._keywords.KeywordIndex`).
- **hybrid**: both rankings, fused by a weighted sum of their scores scaled to 0..1 (:func:`fuse`).
  The weight was chosen by measurement (``benchmarks/search.py``; the numbers are in
  ``docs/search.md``).

A chunk may have more than one vector, each with its own span (a PDF part and its pages): the
hits whose spans nest inside each other in one file are one result, shown at the best-matching
innermost span (:func:`merge_nested`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from mmembed._catalog import Catalog
from mmembed._keywords import KeywordIndex
from mmembed._threads import worker_pool
from mmembed._walk import display_path
from mmembed._where import Filter
from mmembed.content import Content, Embeddable, Modality, Text
from mmembed.errors import ConfigurationError
from mmembed.protocols import PageSpan, Span, TextSpan, TimeSpan, VectorStore
from mmembed.results import Result, Signal

__all__ = [
    "CANDIDATES",
    "VECTOR_WEIGHT",
    "KeywordReader",
    "SearchMode",
    "choose_mode",
    "fuse",
    "keyword_words",
    "merge_nested",
    "vector_candidates",
]

SearchMode = Literal["hybrid", "vector", "keyword"]

#: Hybrid search scores a chunk VECTOR_WEIGHT * v + (1 - VECTOR_WEIGHT) * k, where v and k are
#: its cosine and BM25 scaled to 0..1 over each ranking's candidates for the query (min-max;
#: 0 where a ranking did not find it). Chosen on the evaluation's dev questions
#: (``benchmarks/search.py --tune``; docs/search.md has the numbers).
VECTOR_WEIGHT = 0.45
#: How many candidates each ranking hands to the fusion (at least; more for a big ``k``).
CANDIDATES = 50
# Filters that leave at most this many chunks are scored exactly from the catalog's vectors.
_EXACT_MAX = 2048

# English words too common to tell documents apart; dropped from keyword queries (a query made
# only of them keeps them).
_STOPWORDS = frozenset(
    {
        "a",
        "about",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "do",
        "does",
        "did",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    }
)
_WORD = re.compile(r"\w+")
_MAX_TERMS = 32


def choose_mode(mode: str | None, *, text_query: bool, has_text: Callable[[], bool]) -> SearchMode:
    """The mode a search runs in: ``mode`` when given (and possible), else the default.

    The default is hybrid for a text query when the index has text, vector otherwise.
    """
    if mode is None:
        return "hybrid" if text_query and has_text() else "vector"
    if mode not in get_args(SearchMode):
        raise ConfigurationError(f"mode must be 'hybrid', 'vector' or 'keyword', got {mode!r}")
    if mode != "vector" and not text_query:
        raise ConfigurationError(
            f"a {mode} search needs a text query; images, audio, video and PDFs are searched "
            "by their vectors: leave mode out or use mode='vector'"
        )
    return mode  # type: ignore[return-value]


def keyword_words(text: str) -> list[str]:
    """The words of ``text`` a keyword search looks for (any of them), common English words
    left out; none when the text has no word at all (only punctuation)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    telling = [w for w in words if w not in _STOPWORDS] or words
    return telling[:_MAX_TERMS]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A chunk some ranking found: its id, fused score and the signals behind it."""

    id: str
    score: float
    signals: tuple[Signal, ...]


def fuse(
    vector: Sequence[tuple[str, float]],
    keyword: Sequence[tuple[str, float]],
    *,
    vector_weight: float = VECTOR_WEIGHT,
) -> list[Candidate]:
    """Fuse two rankings (best first) into one, best first: a weighted sum of their scores,
    each scaled to 0..1 over its own candidates (see :data:`VECTOR_WEIGHT`)."""
    fused: dict[str, float] = {}
    signals: dict[str, list[Signal]] = {}
    best: dict[str, int] = {}  # the best rank some ranking gave each chunk
    for name, ranking, weight in (
        ("vector", vector, vector_weight),
        ("keyword", keyword, 1.0 - vector_weight),
    ):
        if not ranking:
            continue
        top, bottom = ranking[0][1], ranking[-1][1]
        spread = top - bottom
        for rank, (chunk_id, score) in enumerate(ranking, 1):
            scaled = (score - bottom) / spread if spread > 0 else 1.0
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * scaled
            signals.setdefault(chunk_id, []).append(Signal(name=name, rank=rank, score=score))
            best[chunk_id] = min(best.get(chunk_id, rank), rank)
    # ties (say, the last of both lists) go to the chunk some ranking put higher
    order = sorted(fused, key=lambda i: (-fused[i], best[i]))
    return [Candidate(i, fused[i], tuple(signals[i])) for i in order]


def single(ranking: Sequence[tuple[str, float]], name: str) -> list[Candidate]:
    """One ranking as candidates: its own scores, its own order."""
    return [
        Candidate(i, score, (Signal(name=name, rank=rank, score=score),))
        for rank, (i, score) in enumerate(ranking, 1)
    ]


class KeywordReader:
    """Keyword queries on a catalog connection and a thread of their own, so that a hybrid
    search runs its keyword side while the query is embedded and the vectors are searched
    (SQLite, the model and BLAS all let go of the GIL while they work). The postings stay in
    memory between searches (:class:`~mmembed._keywords.KeywordIndex`)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool: ThreadPoolExecutor | None = None
        self._catalog: Catalog | None = None
        self._index: KeywordIndex | None = None

    def submit(
        self, words: Sequence[str], k: int, within: tuple[str, list[Any]] | None
    ) -> Future[list[tuple[str, float]]]:
        """Start a keyword query; its future gives (chunk id, BM25 score), best first."""
        if self._pool is None:
            self._pool = worker_pool(1, "mmembed-keywords")
        return self._pool.submit(self._hits, words, k, within)

    def _hits(
        self, words: Sequence[str], k: int, within: tuple[str, list[Any]] | None
    ) -> list[tuple[str, float]]:
        if self._index is None:  # made in the worker thread, the only one that uses it
            self._catalog = Catalog(self._path)
            self._index = KeywordIndex(self._catalog)
        return self._index.hits(words, k, within)

    def close(self) -> None:
        if self._pool is None:
            return
        catalog, self._catalog, self._index = self._catalog, None, None
        if catalog is not None:
            self._pool.submit(catalog.close).result()
        self._pool.shutdown()
        self._pool = None


def vector_candidates(
    store: VectorStore,
    catalog: Catalog,
    vector: np.ndarray[Any, Any],
    n: int,
    filt: Filter | None,
) -> list[tuple[str, float]]:
    """The ``n`` chunks nearest ``vector`` that pass ``filt``: (chunk id, cosine)."""
    if filt is None or filt.store_only:
        hits = store.search(vector, n, where=filt.store if filt else None)
        return [(h.id, float(h.score)) for h in hits]
    allowed = set(catalog.chunk_ids_where(filt.sql))
    if not allowed:
        return []
    if len(allowed) <= _EXACT_MAX:
        # few chunks: score them all, exactly, from the catalog's copy of their vectors
        found = catalog.chunk_vectors(sorted(allowed))
        if not found:
            return []
        ids = list(found)
        matrix = np.stack([found[i][1] for i in ids]).astype(np.float32)
        query = np.asarray(vector, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(query))
        scores = matrix @ query / np.where(norms > 0, norms, 1.0)
        best = np.argsort(-scores, kind="stable")[:n]
        return [(ids[i], float(scores[i])) for i in best]
    # many: ask the store for more and more until enough of them pass
    fetch = n * 4
    while True:
        hits = store.search(vector, fetch, where=filt.store)
        kept = [(h.id, float(h.score)) for h in hits if h.id in allowed]
        if len(kept) >= n or len(hits) < fetch:
            return kept[:n]
        fetch *= 4


# -- one result per chunk --------------------------------------------------------------------


def merge_nested(results: Sequence[Result]) -> list[Result]:
    """One result for hits of one file whose spans nest (a PDF part and its pages).

    Results come best first. A result whose span nests with an earlier one's (either inside the
    other, or the same span) joins it: the merged result keeps the best score, shows the
    best-scoring innermost span (a page rather than its part) and lists every ranking's best
    rank among its members.
    """
    groups: list[list[Result]] = []
    by_source: dict[str, list[list[Result]]] = {}
    for result in results:
        mine = by_source.setdefault(result.source, [])
        for group in mine:
            if any(_nest(m.span, result.span) for m in group):
                group.append(result)
                break
        else:
            mine.append([result])
            groups.append(mine[-1])
    return [_merged(g) if len(g) > 1 else g[0] for g in groups]


def _nest(a: Span | None, b: Span | None) -> bool:
    if a is None or b is None or type(a) is not type(b):
        return False
    lo_a, hi_a = _bounds(a)
    lo_b, hi_b = _bounds(b)
    return (lo_a <= lo_b and hi_b <= hi_a) or (lo_b <= lo_a and hi_a <= hi_b)


def _bounds(span: Span) -> tuple[float, float]:
    if isinstance(span, PageSpan):
        return span.first, span.last
    if isinstance(span, (TimeSpan, TextSpan)):
        return span.start, span.end
    raise TypeError(span)


def _merged(group: list[Result]) -> Result:
    def inner(r: Result) -> bool:
        return not any(
            o is not r and _nest(o.span, r.span) and _width(o.span) < _width(r.span) for o in group
        )

    shown = next(r for r in group if inner(r))  # results come best first
    best: dict[str, Signal] = {}
    for member in group:
        for s in member.signals:
            if s.name not in best or s.rank < best[s.name].rank:
                best[s.name] = s
    return replace(
        shown,
        score=group[0].score,
        preview=shown.preview or group[0].preview,
        signals=tuple(sorted(best.values(), key=lambda s: s.name != "vector")),
    )


def _width(span: Span | None) -> float:
    if span is None:
        return float("inf")
    lo, hi = _bounds(span)
    return hi - lo


# -- queries and results ---------------------------------------------------------------------


def is_text(query: Embeddable) -> bool:
    """Whether a query is text only (a string, a Text, or a Content of Text parts)."""
    if isinstance(query, (str, Text)):
        return True
    return isinstance(query, Content) and all(isinstance(p, Text) for p in query.parts)


def query_text(query: Embeddable) -> str:
    """The words of a text query, for the keyword side."""
    if isinstance(query, str):
        return query
    parts = query.parts if isinstance(query, Content) else (query,)
    return " ".join(p.text for p in parts if isinstance(p, Text))


def results_of(catalog: Catalog, candidates: Sequence[Candidate]) -> list[Result]:
    """The results for ranked candidates, from their catalog records (gone ones left out)."""
    records = catalog.chunks([c.id for c in candidates])
    metadata = catalog.file_metadata({r.path for r in records.values()})
    cwd = Path.cwd()
    results = []
    for candidate in candidates:
        rec = records.get(candidate.id)
        if rec is None:
            continue  # removed between the store snapshot and now
        source = display_path(rec.path, cwd=cwd)
        uri = source if rec.span is None else f"{source}#{rec.span.fragment}"
        results.append(
            Result(
                score=candidate.score,
                source=source,
                modality=Modality(rec.modality),
                span=rec.span,
                uri=uri,
                preview=rec.preview,
                chunk_id=rec.id,
                signals=candidate.signals,
                metadata=metadata.get(rec.path, {}),
            )
        )
    return results
