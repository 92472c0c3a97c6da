"""The keyword ranking: BM25 over the catalog's keyword index, scored in memory.

The catalog keeps every chunk's text in an SQLite FTS5 table, written in the same transactions
as the chunks. FTS5 can rank it too (``bm25()``), but it computes that for every row holding any
query word, about 1.5 µs a row: tens of milliseconds a query once an index has 100,000 chunks
and the question has a common word. Here the postings (which chunk holds which term, how often)
are read once from FTS5's own vocabulary into numpy arrays and kept in step with the catalog
through its change log; a query is then a few array operations per term.

The scores are FTS5's ``bm25()`` (k1 = 1.2, b = 0.75, a word in the name weighted
:data:`~mmembed._catalog.NAME_WEIGHT`), computed the same way: the tests check them against
FTS5's to the sixth digit. The terms are FTS5's (its tokenizer, stems and all); a query word
that becomes the same term as another counts once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmembed._catalog import NAME_WEIGHT, Catalog

__all__ = ["KeywordIndex"]

K1 = 1.2
B = 0.75
# Changes are added as a segment of their own while they are few; more than this share of the
# index (or this many chunks) changed since the last reading is read afresh.
_REBUILD_SHARE = 0.25
_REBUILD_MIN = 5_000
_MAX_SEGMENTS = 32
_MAX_STEMS = 50_000  # query words whose terms are remembered


@dataclass(slots=True)
class _Segment:
    """Postings of some chunks, term by term: ``slots[starts[i]:starts[i + 1]]`` hold term i,
    ``weights`` how often (a match in the name counting NAME_WEIGHT). ``parts`` is each
    posting's BM25 part before the term's weight (0 for a chunk no longer there), ``held`` how
    many chunks still there hold each term: both set by :meth:`KeywordIndex._measure`."""

    terms: dict[str, int]
    starts: NDArray[np.int64]
    slots: NDArray[np.int32]
    weights: NDArray[np.float64]
    parts: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    held: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class KeywordIndex:
    """The keyword ranking of one catalog (used from one thread, on that catalog's connection).

    Every chunk of the keyword index has a slot: its chunk id, its FTS5 rowid, its length in
    terms and whether it is still there.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._seq = -1
        self._stems: dict[str, list[str]] = {}
        self._clear()

    def hits(
        self, words: Sequence[str], k: int, within: tuple[str, Sequence[Any]] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best chunks holding any of ``words``: (chunk id, BM25), best first.

        ``within`` is a SQL condition on ``c`` (chunks) and ``f`` (files) with its parameters,
        as :mod:`mmembed._where` builds; only chunks meeting it are ranked.
        """
        catalog = self._catalog
        with catalog.reading():  # the postings and the filter from one state
            self._catch_up()
            new = [w for w in dict.fromkeys(words) if w not in self._stems]
            if len(self._stems) + len(new) > _MAX_STEMS:
                self._stems.clear()
            if new:
                self._stems.update(zip(new, catalog.stems(new), strict=True))
            allowed = None if within is None else catalog.keyword_rowids_where(within)
        terms = list(dict.fromkeys(t for w in words for t in self._stems[w]))
        live = len(self._slot_of)
        if not terms or not live:
            return []
        scores = np.zeros(len(self._ids), dtype=np.float64)
        for term in terms:
            found = [(s, i) for s in self._segments if (i := s.terms.get(term)) is not None]
            held = sum(int(s.held[i]) for s, i in found)  # chunks still there holding it
            if not held:
                continue
            idf = max(math.log((live - held + 0.5) / (held + 0.5)), 1e-6)
            for segment, i in found:
                lo, hi = int(segment.starts[i]), int(segment.starts[i + 1])
                scores[segment.slots[lo:hi]] += idf * segment.parts[lo:hi]
        if allowed is not None:
            scores[~np.isin(self._rowids, np.asarray(allowed, dtype=np.int64))] = 0.0
        hit = np.flatnonzero(scores > 0)  # every term adds more than 0 to a chunk holding it
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        best = hit[np.lexsort((hit, -scores[hit]))]
        return [(self._ids[int(s)], float(scores[s])) for s in best]

    # -- keeping in step with the catalog ----------------------------------------------------

    def _catch_up(self) -> None:
        """Bring the postings to the catalog's newest commit (inside a read transaction)."""
        catalog = self._catalog
        seq = catalog.last_seq()
        if seq == self._seq:
            return
        if self._seq < 0 or catalog.oldest_logged_seq() > self._seq:
            self._read_all(seq)
            return
        changed, newest = catalog.changed_since(self._seq)
        gone = len(self._ids) - len(self._slot_of)  # slots of chunks removed earlier
        limit = max(_REBUILD_MIN, _REBUILD_SHARE * len(self._slot_of))
        if len(changed) + gone > limit or len(self._segments) >= _MAX_SEGMENTS:
            self._read_all(seq)
            return
        for chunk_id in changed:
            slot = self._slot_of.pop(chunk_id, None)
            if slot is not None:
                self._alive[slot] = False
        self._add(catalog.keyword_rows(changed), fresh=False)
        self._seq = newest
        self._measure()

    def _clear(self) -> None:
        """No slots and no postings."""
        self._segments: list[_Segment] = []
        self._ids: list[str] = []
        self._rowids = np.zeros(0, dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._slot_of: dict[str, int] = {}

    def _read_all(self, seq: int) -> None:
        self._clear()
        self._add(self._catalog.keyword_slots(), fresh=True)
        self._seq = seq
        self._measure()

    def _measure(self) -> None:
        """Each posting's BM25 part (it depends on the average length of the chunks there)
        and how many chunks still there hold each term."""
        live = len(self._slot_of)
        average = float(self._lengths[self._alive].sum()) / live if live else 0.0
        ratio = self._lengths / average if average > 0 else np.zeros_like(self._lengths)
        norm = K1 * (1.0 - B + B * ratio)
        for segment in self._segments:
            alive = self._alive[segment.slots]
            w = segment.weights
            segment.parts = np.where(alive, w * (K1 + 1.0) / (w + norm[segment.slots]), 0.0)
            segment.held = np.diff(np.r_[0, np.cumsum(alive, dtype=np.int64)][segment.starts])

    def _add(self, rows: Sequence[tuple[int, str]], *, fresh: bool) -> None:
        """Give the keyword-index rows ``rows`` (rowid, chunk id) slots and their postings."""
        if not rows:
            return
        first = len(self._ids)
        rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        order = np.argsort(rowids, kind="stable")
        rowids = rowids[order]
        ids = [rows[int(i)][1] for i in order]
        terms, counts_text, codes_text = self._catalog.keyword_postings(
            None if fresh else rowids.tolist()
        )
        counts = np.fromstring(counts_text, dtype=np.int64, sep=" ")
        codes = np.fromstring(codes_text, dtype=np.int64, sep=" ")
        # the rows FTS5 tokenized are those listed (read in the same transaction)
        where = np.searchsorted(rowids, codes >> 1)
        slots = where + first
        weights = np.where(codes & 1, NAME_WEIGHT, 1.0)
        # occurrences come term by term, chunk by chunk within a term: one posting per run
        key = np.repeat(np.arange(len(terms), dtype=np.int64), counts) * len(rowids) + where
        if not np.all(key[1:] >= key[:-1]):
            order = np.argsort(key, kind="stable")
            key, slots, weights = key[order], slots[order], weights[order]
        runs = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
        per_term = np.bincount(key[runs] // len(rowids), minlength=len(terms))
        self._segments.append(
            _Segment(
                terms={t: i for i, t in enumerate(terms)},
                starts=np.r_[0, np.cumsum(per_term)].astype(np.int64),
                slots=slots[runs].astype(np.int32),
                weights=np.add.reduceat(weights, runs) if len(key) else weights,
            )
        )
        lengths = np.bincount(where, minlength=len(rowids)).astype(np.float64)
        self._ids.extend(ids)
        self._slot_of.update((chunk_id, first + i) for i, chunk_id in enumerate(ids))
        self._rowids = np.concatenate([self._rowids, rowids])
        self._lengths = np.concatenate([self._lengths, lengths])
        self._alive = np.concatenate([self._alive, np.ones(len(rowids), dtype=bool)])
