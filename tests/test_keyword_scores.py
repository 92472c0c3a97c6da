"""The in-memory keyword ranking: its scores are FTS5's bm25(), and a long-lived one stays equal
to one read afresh while the index changes (added, replaced and removed files, a compacted
change log, many changes at once)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mmembed import _catalog, _keywords
from mmembed._catalog import NAME_WEIGHT, Catalog
from mmembed._keywords import KeywordIndex
from mmembed.index import Index
from mmembed.testing import FakeEmbedder

WORDS = [
    "cycle",
    "mitochondria",
    "glucose",
    "pyruvate",
    "enzyme",
    "membrane",
    "protein",
    "carbon",
    "oxygen",
    "water",
    "light",
    "photosynthesis",
    "chlorophyll",
    "cell",
    "nucleus",
    "ribosome",
    "energy",
    "electron",
    "transport",
    "gradient",
]


def write_notes(folder: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(exist_ok=True)
    for i in range(count):
        paragraphs = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(3)
        ]
        name = f"{rng.choice(WORDS)}-{i}.md"  # some words are in the names too
        (folder / name).write_text("\n\n".join(paragraphs))


def fts5_bm25(
    catalog: Catalog, words: list[str], k: int, where: str = ""
) -> list[tuple[str, float]]:
    """FTS5's own ranking of the same words (each its own phrase), as the reference."""
    match = " OR ".join(f'"{w}"' for w in words)
    rows = catalog._q(
        f"SELECT chunk_id, -bm25(chunk_text, 0.0, {NAME_WEIGHT}, 1.0) AS s FROM chunk_text "
        f"WHERE chunk_text MATCH ? {where} ORDER BY s DESC, rowid LIMIT ?",
        (match, k),
    ).fetchall()
    return [(str(r[0]), float(r[1])) for r in rows]


def same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    """Equal rankings: the same scores in order, the same chunks for each score."""
    assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-9, abs=1e-12)
    by_score_a = sorted((round(s, 9), i) for i, s in a)
    by_score_b = sorted((round(s, 9), i) for i, s in b)
    if len(a) == len(b) and by_score_a != by_score_b:
        # a tie cut at the k-th place may keep different chunks; the scores still agree
        assert by_score_a[1:] == by_score_b[1:] or by_score_a[:-1] == by_score_b[:-1]


QUERIES = [
    ["mitochondria"],
    ["glucose", "enzyme"],
    ["electron", "transport", "gradient", "membrane"],
    ["cell"],
    ["cycle", "light", "water", "oxygen", "carbon", "protein"],
    ["nosuchword"],
]


def test_scores_are_fts5_bm25_names_weighted(tmp_path: Path) -> None:
    write_notes(tmp_path / "notes", 40, seed=1)
    (tmp_path / "notes" / "zygote-facts.md").write_text("cell cell cell")
    (tmp_path / "notes" / "other.md").write_text("a zygote is a cell")
    with Index(tmp_path / "ix", embedder=FakeEmbedder(16)) as index:
        index.add(tmp_path / "notes")
    catalog = Catalog(tmp_path / "ix" / "catalog.sqlite")
    keywords = KeywordIndex(catalog)
    for words in [*QUERIES, ["zygote"]]:
        mine = keywords.hits(words, 15)
        same(mine, fts5_bm25(catalog, words, 15))
        if words not in (["nosuchword"], ["zygote"]):
            assert len(mine) == 15
    # a word in the name counts more than once in the text
    top = keywords.hits(["zygote"], 5)
    assert [catalog.chunks([i])[i].path.rsplit("/", 1)[1] for i, _ in top] == [
        "zygote-facts.md",
        "other.md",
    ]
    # words that become one term count once ("cycles" and "cycle" are both "cycl")
    assert keywords.hits(["cycles", "cycle"], 10) == keywords.hits(["cycle"], 10)
    assert keywords.hits([], 10) == []
    catalog.close()


def test_a_filter_ranks_only_the_chunks_it_keeps(tmp_path: Path) -> None:
    write_notes(tmp_path / "notes", 30, seed=2)
    with Index(tmp_path / "ix", embedder=FakeEmbedder(16)) as index:
        index.add(tmp_path / "notes")
    catalog = Catalog(tmp_path / "ix" / "catalog.sqlite")
    keywords = KeywordIndex(catalog)
    within = ("c.path LIKE ?", ["%/cell-%"])
    mine = keywords.hits(["energy", "cell"], 50, within)
    assert mine
    assert all("/cell-" in catalog.chunks([i])[i].path for i, _ in mine)
    ids = catalog.chunk_ids_where(within)
    kept = ",".join(f"'{i}'" for i in ids)
    same(mine, fts5_bm25(catalog, ["energy", "cell"], 50, f"AND chunk_id IN ({kept})"))
    catalog.close()


def test_a_long_lived_ranking_stays_equal_to_a_fresh_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = tmp_path / "notes"
    write_notes(notes, 20, seed=3)
    ix = tmp_path / "ix"
    index = Index(ix, embedder=FakeEmbedder(16))
    index.add(notes)
    reader = Catalog(ix / "catalog.sqlite")  # another connection, as another process would
    live = KeywordIndex(reader)

    def check() -> None:
        fresh = KeywordIndex(reader)
        for words in QUERIES:
            expected = fts5_bm25(reader, words, 10)
            same(live.hits(words, 10), expected)
            same(fresh.hits(words, 10), expected)

    check()
    files = sorted(notes.iterdir())
    files[0].write_text("mitochondria " * 5)  # replaced
    files[1].unlink()  # removed
    write_notes(notes / "more", 3, seed=4)  # added
    index.add(notes)
    check()
    assert len(live._segments) == 2  # the changes came as a segment of their own
    # a change log compacted past the ranking's state: read afresh
    files[2].write_text("glucose glucose enzyme")
    index.add(notes)
    monkeypatch.setattr(_catalog, "LOG_KEPT", 0)
    index._catalog.compact(index._catalog.last_seq())
    assert index._catalog.oldest_logged_seq() > live._seq
    check()
    assert len(live._segments) == 1
    # many changes at once (here: more than a quarter of the chunks): read afresh too
    monkeypatch.setattr(_keywords, "_REBUILD_MIN", 0)
    index.add(notes)
    for path in sorted(notes.glob("*.md"))[3:]:
        path.write_text(path.read_text() + " light")
    index.add(notes)
    check()
    assert len(live._segments) == 1
    index.close()
    reader.close()
