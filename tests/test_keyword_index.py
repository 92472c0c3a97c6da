"""The keyword index stays in step with the catalog: add, replace, remove, kill -9, resume; and
catalogs written before it existed (schema 1) get it when they are opened."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmembed import TextSpan
from mmembed._catalog import SCHEMA_VERSION, Catalog, ChunkRecord, FileRecord
from mmembed.errors import CorruptStoreError
from mmembed.index import Index
from mmembed.testing import FakeEmbedder, FakeGeminiServer
from mmembed.testing.media import make_image, make_pdf

ROOT = Path(__file__).resolve().parent.parent


def in_step(ix: Path) -> tuple[int, int, int]:
    """(chunks, keyword rows, rows out of step) of an index directory, read from the file."""
    catalog = Catalog(ix / "catalog.sqlite")
    try:
        missing, stray = catalog.text_consistency()
        chunks = catalog.counts()["chunks"]
        rows = catalog._q("SELECT COUNT(*) FROM chunk_text").fetchone()[0]
        return chunks, int(rows), missing + stray
    finally:
        catalog.close()


def keyword_sources(index: Index, query: str) -> list[str]:
    return [Path(r.source).name for r in index.search(query, k=20, mode="keyword")]


def test_add_replace_and_remove_keep_the_keyword_index_in_step(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "krebs.md").write_text("The Krebs cycle runs in the mitochondria.")
    (notes / "rome.md").write_text("Rome was founded on seven hills.\n\n" + "Tiber " * 1500)
    (notes / "krebs-cycle-diagram.png").write_bytes(make_image("PNG", (16, 16), seed=2))
    ix = tmp_path / "ix"
    with Index(ix, embedder=FakeEmbedder(32)) as index:
        index.add(notes)
        chunks, rows, off = in_step(ix)
        assert chunks == rows > 3
        assert off == 0
        assert keyword_sources(index, "mitochondria") == ["krebs.md"]
        # an image has no text, but its file name is in the keyword index
        assert "krebs-cycle-diagram.png" in keyword_sources(index, "diagram")

        (notes / "krebs.md").write_text("Glycolysis splits glucose in the cytoplasm.")
        assert index.add(notes).replaced == (str(notes / "krebs.md"),)
        assert in_step(ix)[2] == 0
        assert keyword_sources(index, "mitochondria") == []
        assert keyword_sources(index, "glycolysis") == ["krebs.md"]

        index.remove(notes / "rome.md")
        chunks, rows, off = in_step(ix)
        assert chunks == rows
        assert off == 0
        assert keyword_sources(index, "Tiber hills") == []

        (notes / "krebs.md").unlink()
        (notes / "rome.md").unlink()
        index.add(notes)  # gone from the folder: gone from both indexes
        assert keyword_sources(index, "glycolysis") == []
        assert in_step(ix) == (1, 1, 0)


def test_a_failed_commit_leaves_neither_index_half_written(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog._db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON chunks WHEN NEW.ord = 1 "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    record = FileRecord(
        path="/notes/a.md", size=1, mtime_ns=1, sha256="x", modality="text", status="indexed"
    )
    chunks = [
        ChunkRecord(
            id=f"c{i}",
            path=record.path,
            ord=i,
            modality="text",
            span=TextSpan(i, i + 1),
            preview="",
            content_hash="h",
            metadata={},
            text=f"words of chunk {i}",
        )
        for i in range(2)
    ]
    with pytest.raises(sqlite3.IntegrityError):
        catalog.replace_file(record, chunks, np.ones((2, 4), dtype=np.float32))
    assert catalog.counts()["chunks"] == 0
    assert catalog._q("SELECT COUNT(*) FROM chunk_text").fetchone()[0] == 0
    assert catalog.file(record.path) is None
    catalog.close()


def test_kill_9_mid_run_and_resume_keep_the_keyword_index_in_step(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    n = 30
    for i in range(n):
        (folder / f"note{i:02d}.txt").write_text(f"note {i} about topic{i}\n\n" + "word " * 50)
    ix = tmp_path / "ix"
    with FakeGeminiServer(latency=0.2) as server:
        env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "mmembed", "index", str(folder), "--index", str(ix)]
        cmd += ["--batch-size", "2", "--json"]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while len(server.embed_requests) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        chunks, rows, off = in_step(ix)
        assert 0 < chunks < n  # killed mid-run
        assert chunks == rows
        assert off == 0

        server.latency = 0.0
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert in_step(ix) == (n, n, 0)
        for key, value in server.env().items():
            os.environ[key] = value
        try:
            with Index(ix) as index:
                for i in (0, n - 1):
                    assert keyword_sources(index, f"topic{i}") == [f"note{i:02d}.txt"]
        finally:
            for key in server.env():
                os.environ.pop(key, None)


# -- catalogs from before the keyword index ------------------------------------------------------


def to_schema_1(catalog_path: Path) -> None:
    """Turn a catalog back into what mmembed wrote before schema 2."""
    db = sqlite3.connect(catalog_path)
    db.executescript(
        """
        DROP TABLE chunk_text;
        ALTER TABLE chunks DROP COLUMN text_rowid;
        ALTER TABLE files DROP COLUMN metadata;
        UPDATE meta SET value = '1' WHERE key = 'schema_version';
        """
    )
    db.commit()
    db.close()


def test_an_index_from_schema_1_gets_its_keyword_index_on_first_open(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    long_text = "Opening words about nothing much. " * 20 + "The word zeppelin comes late."
    (notes / "long.md").write_text(long_text)
    (notes / "changed.md").write_text("An airship is a zeppelin too.")
    make_pdf(["Page one", "A page about a dirigible"], path=notes / "deck.pdf")
    ix = tmp_path / "ix"
    with Index(ix, embedder=FakeEmbedder(32)) as index:
        index.add(notes)
        chunks = len(index)
    to_schema_1(ix / "catalog.sqlite")
    (notes / "changed.md").write_text("This file changed after it was indexed.")

    with Index(ix) as index:
        assert index._catalog.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert in_step(ix) == (chunks, chunks, 0)
        # a text chunk's whole text comes back from its unchanged file, past its preview;
        # a file changed since gets its preview until it is indexed again
        assert len(long_text) > 240
        assert sorted(keyword_sources(index, "zeppelin")) == ["changed.md", "long.md"]
        # a PDF chunk gets its preview (its page text begins there)
        assert keyword_sources(index, "dirigible") == ["deck.pdf"]
        # the file name is there for every chunk
        assert "changed.md" in keyword_sources(index, "changed")
        hits = index.search("zeppelin", k=3)
        assert {s.name for s in hits[0].signals} == {"vector", "keyword"}
        assert index.add(notes).replaced == (str(notes / "changed.md"),)
        assert keyword_sources(index, "airship") == []
        assert keyword_sources(index, "zeppelin") == ["long.md"]
    with Index(ix) as again:  # opening again migrates nothing
        assert in_step(ix) == (chunks, chunks, 0)
        assert again._catalog.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_a_catalog_from_a_newer_mmembed_is_refused(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    catalog.close()
    with pytest.raises(CorruptStoreError, match="upgrade mmembed"):
        Catalog(tmp_path / "catalog.sqlite")


def test_migrations_are_one_step_per_version() -> None:
    from mmembed._catalog import _MIGRATIONS

    assert sorted(_MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))
