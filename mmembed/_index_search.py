"""One :meth:`Index.search`: the query checked, both rankings read from one committed state of
the catalog, fused, nested hits merged, and results gathered per file when asked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._catalog import Catalog
from mmembed._search import (
    CANDIDATES,
    KeywordReader,
    SearchMode,
    choose_mode,
    fuse,
    is_text,
    keyword_words,
    merge_nested,
    query_text,
    results_of,
    single,
    vector_candidates,
)
from mmembed._where import resolve_where
from mmembed.content import Embeddable, Task
from mmembed.errors import ConfigurationError
from mmembed.protocols import Embedder, PageSpan, Span, TextSpan, TimeSpan, VectorStore
from mmembed.results import Result, Results
from mmembed.stores._validate import check_k

__all__ = ["search_index"]


def search_index(
    query: Embeddable,
    k: int,
    *,
    where: Mapping[str, Any] | None,
    group: bool,
    mode: SearchMode | None,
    catalog: Catalog,
    keywords: KeywordReader,
    embedder: Callable[[], Embedder],
    catch_up: Callable[[], None],
    store: Callable[[], VectorStore],
    has_text: Callable[[], bool],
) -> Results:
    """The ``k`` results of :meth:`Index.search`; ``embedder`` is called only when the query is
    embedded, ``catch_up`` brings the store to the catalog's newest commit before ``store()``
    is searched."""
    k = check_k(k)
    if not isinstance(group, bool):
        raise ConfigurationError(f"group takes True or False, got {group!r}")
    if isinstance(query, str) and not query.strip():
        raise ConfigurationError("the query is empty; pass some text, or a file with --image")
    text = is_text(query)
    chosen = choose_mode(mode, text_query=text, has_text=has_text)
    filt = resolve_where(where, catalog)
    # more results than asked for: nested hits merge, groups gather several chunks; and
    # more candidates than that from each ranking, for the fusion
    wanted = k * (5 if group else 3)
    depth = max(CANDIDATES, wanted)
    vector_hits: list[tuple[str, float]] = []
    keyword_hits: list[tuple[str, float]] = []
    words = keyword_words(query_text(query)) if chosen != "vector" else []
    within = filt.sql if filt is not None else None
    vector: NDArray[np.float32] | None = None
    # the keyword side runs while the query is embedded and the vectors searched
    pending = keywords.submit(words, depth, within) if words else None
    if chosen != "keyword":
        task = Task.QUERY if text else Task.DOCUMENT
        vector = embedder().embed([query], task=task)[0]
    # the store is brought to one committed state of the catalog, and the hits are read
    # from that same state: a writer committing meanwhile is seen by the next search, never
    # half by this one (hits it removed or replaced are not dropped from these results)
    with catalog.reading():
        if vector is not None:
            catch_up()
            vector_hits = vector_candidates(store(), catalog, vector, depth, filt)
        keyword_hits = pending.result() if pending is not None else []
        if chosen == "hybrid":
            candidates = fuse(vector_hits, keyword_hits)
        else:
            candidates = single(vector_hits or keyword_hits, chosen)
        results = merge_nested(results_of(catalog, candidates[:wanted]))
    if group:
        results = _group(results)
    return Results(results[:k], query=query if isinstance(query, str) else repr(query))


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
