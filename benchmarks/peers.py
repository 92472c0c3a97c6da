"""What the frameworks' own Gemini embedding classes send and get back, against FakeGeminiServer.

Three claims, each checked by what reaches the server and what comes back to the caller:

1. **fused**: N texts given as a list come back as N vectors (one ``Content`` per text), or as
   fewer (the texts become parts of one ``Content``, and the service answers one vector).
2. **task**: how a query is told apart from a document for ``gemini-embedding-2``, which reads
   the task from a text prefix (``task: search result | query: ...``) and ignores the
   ``taskType`` field: prefix, ``taskType`` only, or nothing.
3. **over 100**: 150 texts in one call either work (split into calls of at most 100) or fail
   with the service's 400 ("at most 100 requests can be in one batch").

Each peer runs in a child process of the interpreter it is installed in (``--python``; peers
that pin an older google-genai than mmembed cannot share its environment), pointed at the
fake server by the SDK's environment variables. The fake answers one vector per ``Content``,
as the service does; it ignores ``taskType`` (so does the model) and records it.

Run: ``python benchmarks/peers.py`` (``--quick`` for fewer texts, ``--python PATH`` to add
another environment's peers, ``--json`` for machine-readable rows). Peers that are not
installed in an interpreter are listed as such.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gemini-embedding-2"
DOCS = ["cats purr on warm laps", "rockets fly to orbit", "dogs bark at the mailman"]
QUERY = "which animal purrs?"
KEY = "peer-probe-key"

# peer -> (distribution whose version is reported, the module that must import)
PEERS: dict[str, tuple[str, str]] = {
    "langchain-google-genai": ("langchain-google-genai", "langchain_google_genai"),
    "llama-index-embeddings-google-genai": (
        "llama-index-embeddings-google-genai",
        "llama_index.embeddings.google_genai",
    ),
    "chromadb GoogleGeminiEmbeddingFunction": ("chromadb", "google.genai"),
    "chromadb GoogleGenerativeAiEmbeddingFunction": ("chromadb", "google.generativeai"),
    # the reference row: mmembed's own LangChain adapter over GeminiEmbedder
    "mmembed LangChainEmbeddings": ("mmembed", "mmembed.integrations.langchain"),
}
SDKS = ("google-genai", "google-generativeai")
_NOTES: list[str] = []  # what a child saw on the way, reported with its result


# ---------------------------------------------------------------- the child: one peer, one step


def _peer_model(peer: str, base_url: str) -> tuple[Any, Any, Any]:
    """(embed documents, embed one query) callables for ``peer``, as its docs show them."""
    if peer == "langchain-google-genai":
        from langchain_google_genai import GoogleGenerativeAIEmbeddings

        lc = GoogleGenerativeAIEmbeddings(model=MODEL)
        return lc, lc.embed_documents, lc.embed_query
    if peer == "llama-index-embeddings-google-genai":
        from llama_index.embeddings.google_genai import GoogleGenAIEmbedding

        li = GoogleGenAIEmbedding(model_name=MODEL)
        return li, li.get_text_embedding_batch, li.get_query_embedding
    if peer == "chromadb GoogleGeminiEmbeddingFunction":
        from chromadb.utils.embedding_functions import GoogleGeminiEmbeddingFunction

        ef = GoogleGeminiEmbeddingFunction(model_name=MODEL)
        return ef, ef, lambda text: ef.embed_query([text])[0]
    if peer == "chromadb GoogleGenerativeAiEmbeddingFunction":
        import google.generativeai as genai
        from chromadb.utils.embedding_functions import GoogleGenerativeAiEmbeddingFunction

        try:
            ef = GoogleGenerativeAiEmbeddingFunction(model_name=MODEL)
        except ValueError as exc:
            # chromadb 1.5 passes client_options={"headers": ...}, which google-generativeai
            # 0.8 refuses: the constructor fails. Note it, then measure what __call__ does.
            _NOTES.append(f"constructor fails: {exc}")
            ef = GoogleGenerativeAiEmbeddingFunction.__new__(GoogleGenerativeAiEmbeddingFunction)
            ef.model_name, ef.task_type, ef.dimension = MODEL, "RETRIEVAL_DOCUMENT", None
            ef._genai = genai
        # the old SDK speaks gRPC to Google's host unless told otherwise; REST reaches the fake
        genai.configure(api_key=KEY, transport="rest", client_options={"api_endpoint": base_url})
        return ef, ef, lambda text: ef.embed_query([text])[0]
    if peer == "mmembed LangChainEmbeddings":
        from mmembed.integrations.langchain import LangChainEmbeddings

        mm = LangChainEmbeddings(model=MODEL)
        return mm, mm.embed_documents, mm.embed_query
    raise SystemExit(f"unknown peer {peer!r}")


STEPS = ("documents", "query", "batch")


def probe(peer: str, n: int) -> None:
    """Run the steps of one peer in this process, one JSON line each as it finishes.

    The parent reads the server's log at each line, then lets the next step start: a step's
    calls have all been answered (and so recorded) before its line is printed.
    """
    from importlib.metadata import PackageNotFoundError, version

    dist, module = PEERS[peer]
    head: dict[str, Any] = {"peer": peer}
    try:
        __import__(module)
        head["version"] = version(dist)
    except (ImportError, PackageNotFoundError) as exc:
        print(json.dumps({**head, "installed": False, "why": f"{type(exc).__name__}: {exc}"}))
        return
    head["installed"] = True
    for sdk in SDKS:
        with contextlib.suppress(PackageNotFoundError):
            head[sdk] = version(sdk)
    made: Any = None
    for step in STEPS:
        out = {**head, "step": step}
        try:
            if made is None:
                made = _peer_model(peer, os.environ["GOOGLE_GEMINI_BASE_URL"])
            _, documents, query = made
            if step == "documents":
                out["vectors"] = len(documents(list(DOCS)))
            elif step == "query":
                out["vectors"] = 1 if len(query(QUERY)) else 0
            else:
                out["vectors"] = len(documents([f"note number {i}" for i in range(n)]))
        except Exception as exc:  # what the peer raises is the finding
            out["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if _NOTES:
            out["notes"] = list(_NOTES)
        print(json.dumps(out), flush=True)
        sys.stdin.readline()  # the parent has read the server's log: next step


# ---------------------------------------------------------------- the parent: server and table


def _texts(request: Any) -> list[str]:
    return [p.get("text", "") for c in request.contents for p in (c or {}).get("parts") or []]


# the REST transport of google-generativeai sends enums as numbers
_TASK_NUMBERS = {
    "1": "RETRIEVAL_QUERY",
    "2": "RETRIEVAL_DOCUMENT",
    "3": "SEMANTIC_SIMILARITY",
    "4": "CLASSIFICATION",
    "5": "CLUSTERING",
    "6": "QUESTION_ANSWERING",
    "7": "FACT_VERIFICATION",
    "8": "CODE_RETRIEVAL_QUERY",
}


def _task_fields(request: Any) -> set[str]:
    found = set()
    body = request.body if isinstance(request.body, dict) else {}
    for r in body.get("requests") or [body]:
        config = r.get("embedContentConfig") or r.get("embed_content_config") or {}
        for where in (r, config):
            value = where.get("taskType") or where.get("task_type")
            if value:
                found.add(_TASK_NUMBERS.get(str(value), str(value)))
    return found


def _step_row(got: dict[str, Any], count: int, sent: list[Any]) -> dict[str, Any]:
    return {
        "inputs": count,
        "vectors": got.get("vectors"),
        "error": got.get("error"),
        "calls": len(sent),
        "contents": sum(r.items for r in sent),
        "largest_call": max((r.items for r in sent), default=0),
        "statuses": sorted({r.status for r in sent}),
        "texts": [t for r in sent for t in _texts(r)][:4],
        "task_type": sorted(set().union(*(_task_fields(r) for r in sent))),
    }


def measure(python: str, peer: str, n: int) -> dict[str, Any]:
    """The three claims for one peer in one interpreter."""
    from mmembed.testing import FakeGeminiServer

    row: dict[str, Any] = {"peer": peer, "python": python}
    counts = {"documents": len(DOCS), "query": 1, "batch": n}
    with FakeGeminiServer(api_key=KEY) as server:
        env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY",)}
        env |= server.env(api_key=KEY, api_version="v1beta")
        env["GOOGLE_API_KEY"] = KEY  # some peers read only this one
        env["ANONYMIZED_TELEMETRY"] = "False"
        if python != sys.executable:
            env.pop("PYTHONPATH", None)  # another environment: only its own packages
        command = [python, str(Path(__file__).resolve()), "--probe", peer, "--n", str(n)]
        seen = 0
        with subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdin is not None
            for line in child.stdout:
                got = json.loads(line)
                if not got.get("installed", False):
                    child.wait(timeout=60)
                    return {**row, "installed": False, "why": got.get("why", "")}
                for key in ("version", *SDKS, "notes"):
                    if key in got:
                        row[key] = got[key]
                sent = server.embed_requests
                row[got["step"]] = _step_row(got, counts[got["step"]], sent[seen:])
                seen = len(sent)
                child.stdin.write("next\n")
                child.stdin.flush()
            stderr = child.stderr.read() if child.stderr else ""
            child.wait(timeout=300)
        missing = [s for s in STEPS if s not in row]
        if missing:
            raise SystemExit(f"{peer} in {python} stopped before {missing}: {stderr[-2000:]}")
    row["installed"] = True
    return row


def verdicts(row: dict[str, Any]) -> dict[str, str]:
    """One sentence per claim, from what was measured."""
    docs, query, batch = row["documents"], row["query"], row["batch"]
    if docs["error"]:
        fused = f"error: {docs['error']}"
    elif docs["vectors"] == docs["inputs"] and docs["contents"] == docs["inputs"]:
        fused = f"no: {docs['inputs']} texts → {docs['vectors']} vectors"
    else:
        fused = (
            f"YES: {docs['inputs']} texts → {docs['vectors']} vector(s) "
            f"({docs['contents']} content(s) sent)"
        )
    prefixed = any(t.startswith("task: ") for t in query["texts"])
    if query["error"]:
        task = f"error: {query['error']}"
    elif prefixed:
        task = "no: the query carries the task prefix"
    elif query["task_type"]:
        task = f"YES: taskType={','.join(query['task_type'])} only, no prefix"
    else:
        task = "YES: no task at all (query sent like a document)"
    if batch["error"]:
        status = "YES (400)" if 400 in batch["statuses"] else "error"
        over = f"{status}: {batch['error'][:120]}"
    elif batch["vectors"] == batch["inputs"]:
        over = (
            f"no: {batch['inputs']} texts in {batch['calls']} calls "
            f"(largest {batch['largest_call']})"
        )
    else:
        over = (
            f"no 400, but fused: {batch['inputs']} texts → {batch['vectors']} vectors in "
            f"{batch['calls']} calls"
        )
    return {"fused": fused, "task": task, "over 100": over}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="101 texts for the batch claim")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PATH",
        help="also run the peers installed in this interpreter (repeatable)",
    )
    parser.add_argument("--peer", action="append", choices=sorted(PEERS), help="only these")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines")
    parser.add_argument("--probe", choices=sorted(PEERS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=150, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.probe, args.n)
        return 0

    sys.path.insert(0, str(ROOT))
    n = 101 if args.quick else 150
    rows = []
    for python in [sys.executable, *args.python]:
        for peer in args.peer or sorted(PEERS):
            row = measure(python, peer, n)
            if row["installed"]:
                row["verdicts"] = verdicts(row)
            rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"model {MODEL}; {len(DOCS)} texts, 1 query, {n} texts; FakeGeminiServer\n")
    print("| peer | version | SDK | N texts → vectors | query task | over 100 items |")
    print("|---|---|---|---|---|---|")
    missing = [r["peer"] for r in rows if not r["installed"] and r["python"] == sys.executable]
    for row in rows:
        if not row["installed"]:
            continue
        sdk = ", ".join(f"{s} {row[s]}" for s in SDKS if s in row)
        v = row["verdicts"]
        notes = "".join(f" ({note})" for note in row.get("notes", []))
        print(
            f"| {row['peer']}{notes} | {row['version']} | {sdk} | {v['fused']} | {v['task']} | "
            f"{v['over 100']} |"
        )
    if missing:
        print(f"\nnot installed here (add an environment with --python): {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
