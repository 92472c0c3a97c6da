"""What the framework adapters and QdrantStore cost, measured against their baselines.

Two tables, medians of repeated runs, ratios to a baseline measured in the same run:

1. Adapter overhead: embedding N texts through ``LangChainEmbeddings``, ``LlamaIndexEmbedding``
   and ``ChromaEmbeddingFunction`` versus calling the same ``FakeEmbedder`` directly (the
   adapters add list conversion and checks; a real embedder's network time dwarfs both).
2. QdrantStore in local mode (``:memory:``) versus ``InMemoryStore``: add, plain search,
   filtered search, batch search. Local mode is Qdrant's pure-Python emulation: this shows
   what tests and small data pay, not how a Qdrant server performs.

Run: ``python benchmarks/integrations.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmembed.stores import InMemoryStore
from mmembed.testing import FakeEmbedder


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(name: str, seconds: float, baseline: float) -> str:
    return f"| {name:<44} | {seconds * 1e3:>10.2f} | {seconds / baseline:>8.2f}x |"


def adapters(n: int, dimensions: int, repeats: int) -> list[str]:
    texts = [f"document number {i} about topic {i % 17}" for i in range(n)]
    fake = FakeEmbedder(dimensions)
    lines = [
        f"### Adapter overhead: {n} texts, {dimensions} dimensions (FakeEmbedder)",
        "",
        "| path | median ms | vs direct |",
        "|---|---:|---:|",
    ]
    base = median_seconds(lambda: fake.embed(texts).tolist(), repeats)
    lines.append(row("FakeEmbedder.embed(...).tolist() (baseline)", base, base))
    try:
        from mmembed.integrations.langchain import LangChainEmbeddings

        lc = LangChainEmbeddings(fake)
        lines.append(
            row(
                "LangChainEmbeddings.embed_documents",
                median_seconds(lambda: lc.embed_documents(texts), repeats),
                base,
            )
        )
    except ImportError:
        lines.append("| LangChainEmbeddings | (langchain-core not installed) | |")
    try:
        from mmembed.integrations.llamaindex import LlamaIndexEmbedding

        li = LlamaIndexEmbedding(fake, embed_batch_size=100)
        lines.append(
            row(
                "LlamaIndexEmbedding.get_text_embedding_batch",
                median_seconds(lambda: li.get_text_embedding_batch(texts), repeats),
                base,
            )
        )
    except ImportError:
        lines.append("| LlamaIndexEmbedding | (llama-index-core not installed) | |")
    from mmembed.integrations.chroma import ChromaEmbeddingFunction

    ef = ChromaEmbeddingFunction(fake)
    lines.append(
        row("ChromaEmbeddingFunction(...)", median_seconds(lambda: ef(texts), repeats), base)
    )
    return lines


def stores(n: int, dimensions: int, repeats: int) -> list[str]:
    try:
        from mmembed.stores.qdrant import QdrantStore
    except ImportError:
        return ["(qdrant-client not installed)"]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dimensions)).astype(np.float32)
    ids = [f"v{i}" for i in range(n)]
    meta = [{"modality": ["text", "image", "video"][i % 3], "page": i % 10} for i in range(n)]
    queries = rng.standard_normal((16, dimensions)).astype(np.float32)
    where = {"modality": "video", "page": [1, 2, 3]}

    def fresh_add(make: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            store = make()
            store.add(ids, vectors, meta)  # type: ignore[attr-defined]
            return store

        return run

    memory = InMemoryStore(dimensions)
    memory.add(ids, vectors, meta)
    qdrant = QdrantStore(dimensions)
    qdrant.add(ids, vectors, meta)
    lines = [
        f"### QdrantStore (local mode, :memory:) vs InMemoryStore: {n} x {dimensions}",
        "",
        "| operation | InMemoryStore ms | QdrantStore ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    cases: list[tuple[str, Callable[[], object], Callable[[], object], int]] = [
        (
            f"add {n} vectors",
            fresh_add(lambda: InMemoryStore(dimensions)),
            fresh_add(lambda: QdrantStore(dimensions)),
            max(1, repeats // 4),
        ),
        (
            "search k=10",
            lambda: memory.search(queries[0]),
            lambda: qdrant.search(queries[0]),
            repeats,
        ),
        (
            "search k=10, where modality & page any-of",
            lambda: memory.search(queries[0], where=where),
            lambda: qdrant.search(queries[0], where=where),
            repeats,
        ),
        (
            "search_batch 16 queries k=10",
            lambda: memory.search_batch(queries),
            lambda: qdrant.search_batch(queries),
            max(1, repeats // 2),
        ),
    ]
    for name, a, b, reps in cases:
        ta, tb = median_seconds(a, reps), median_seconds(b, reps)
        lines.append(f"| {name:<42} | {ta * 1e3:>10.2f} | {tb * 1e3:>10.2f} | {tb / ta:>7.1f}x |")
    qdrant.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats")
    args = parser.parse_args()
    if args.quick:
        texts, store_n, dims, repeats = 50, 300, 64, 3
    else:
        texts, store_n, dims, repeats = 1000, 5000, 768, 9
    print("\n".join(adapters(texts, dims, repeats)))
    print()
    print("\n".join(stores(store_n, dims, repeats)))


if __name__ == "__main__":
    main()
