"""The work of ``mmembed search``, shared by the command and its resident helper (``_daemon``).

A search is described by a plain JSON-ready *request* (what to look for, ``k``, the filter, the
output form), so the same request runs in the command's own process or in a helper that keeps
the index and the model loaded. :func:`run` returns what to print as an :class:`Outcome`;
everything the user must fix is a :class:`SearchFailure` with a message that names the file or
the query and the fix.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmembed.content import Modality, Part, Text, as_content, load
from mmembed.errors import (
    ConfigurationError,
    MMEmbedError,
    ProviderError,
    RateLimitError,
    UnsupportedMediaError,
)

if TYPE_CHECKING:
    from mmembed.index import Index

__all__ = [
    "SEARCH_RETRY",
    "Outcome",
    "SearchFailure",
    "close",
    "gemini_hint",
    "key_is_set",
    "open_for_search",
    "run",
]

#: A search is interactive: it gives up on a busy service after about ten seconds (indexing
#: keeps the embedder's own, longer budget).
SEARCH_RETRY: Mapping[str, float] = {"max_retry_seconds": 10.0, "retry_max_delay": 4.0}

# the longest query text taken from a PDF read as text (the local models truncate far sooner)
_PDF_QUERY_CHARS = 4000

_KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


class SearchFailure(MMEmbedError):
    """A search the user must change; ``code`` is the command's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a search prints: ``stdout`` as it is, each notice on its own stderr line."""

    code: int
    stdout: str
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what the helper sends back)."""
        return {"code": self.code, "stdout": self.stdout, "notices": list(self.notices)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        """The outcome a helper sent back."""
        return cls(int(data["code"]), str(data["stdout"]), [str(n) for n in data["notices"]])


def key_is_set() -> bool:
    """Whether a Gemini API key is in the environment (or Vertex AI is configured)."""
    return any(os.environ.get(k) for k in _KEY_VARIABLES) or os.environ.get(
        "GOOGLE_GENAI_USE_VERTEXAI", ""
    ).lower() in ("1", "true")


def gemini_hint(index_dir: str, what: str = "them") -> str:
    """How to reach Gemini from an index made with a local model, true to the environment.

    The index keeps the model it was made with, so a key alone changes nothing: a new index
    directory does.
    """
    new = f"{index_dir.rstrip('/')}-gemini"
    if key_is_set():
        return (
            f"GEMINI_API_KEY is set, but an index keeps the model it was made with; to include "
            f"{what}, make a Gemini index in a new directory: mmembed index FOLDER --index {new}"
        )
    return (
        f"to include {what}, set GEMINI_API_KEY and make a Gemini index in a new directory: "
        f"mmembed index FOLDER --index {new}"
    )


def open_for_search(path: str | os.PathLike[str], *, embedder: Any = None) -> Index:
    """The index at ``path`` with the embedder a search uses: its own, with a short retry budget.

    ``embedder`` reuses an embedder already built for this index (the helper's warm model);
    one that no longer matches the index is dropped and the index's own is built.
    """
    from mmembed._index_config import read_json
    from mmembed.errors import IncompatibleIndexError
    from mmembed.index import Index

    if embedder is not None:
        try:
            return Index(path, embedder=embedder)
        except IncompatibleIndexError:
            pass  # the index was made again with another model meanwhile
    config = read_json(Path(path) / "config.json") or {}
    spec = (config.get("embedder") or {}).get("spec")
    if isinstance(spec, Mapping) and spec.get("kind") == "gemini":
        from mmembed.registry import build_embedder

        options = dict(spec)
        for name, cap in SEARCH_RETRY.items():
            options[name] = min(float(options.get(name, cap)), cap)
        return Index(path, embedder=build_embedder(options))
    return Index(path)


def close(index: Index) -> None:
    """Close the index and the embedder built for it (its connections, its model)."""
    index.close()
    embedder = getattr(index, "_embedder_obj", None)
    closer = getattr(embedder, "close", None)
    if callable(closer):
        closer()


def run(index: Index, request: Mapping[str, Any], *, index_dir: str) -> Outcome:
    """Run one search request against ``index``; relative paths are read from the current
    directory, results are shown relative to it.

    Raises:
        SearchFailure: something the user must change (the message says what).
        MMEmbedError: the embedding service or the index failed.
    """
    notices: list[str] = []
    query = _query(index, request, notices, index_dir=index_dir)
    kwargs = dict(request.get("search") or {})
    try:
        results = index.search(query, **kwargs)
    except UnsupportedMediaError as exc:
        text = _named(exc, request)
        if text == str(exc):
            text = f"{_described(request)}: {text}"
        raise SearchFailure(text, 2) from exc
    except (RateLimitError, ProviderError) as exc:
        if not (isinstance(exc, RateLimitError) or exc.retryable):
            raise _renamed(exc, request) from exc
        raise SearchFailure(
            f"{_named(exc, request)} A search gives up after "
            f"{SEARCH_RETRY['max_retry_seconds']:.0f} s of retries (indexing waits longer); try "
            "again in a minute",
            5,
        ) from exc
    except MMEmbedError as exc:
        raise _renamed(exc, request) from exc
    modalities = (kwargs.get("where") or {}).get("modality")
    if modalities and len(results) < int(kwargs.get("k", 10)):
        notices += _missing_modalities(index, modalities, index_dir)
    if request.get("json"):
        out = json.dumps(results.to_dicts(), indent=2, ensure_ascii=False) + "\n"
    else:
        out = results.table(int(request.get("width") or 0) or None) + "\n"
    return Outcome(0, out, notices)


def _named(exc: BaseException, request: Mapping[str, Any]) -> str:
    """The message with "item 0" (the one query) replaced by what the user searched with."""
    described = _described(request)
    return re.sub(r"\bitem 0( \([^)]*\))?", lambda _: described, str(exc))


def _renamed(exc: MMEmbedError, request: Mapping[str, Any]) -> MMEmbedError:
    text = _named(exc, request)
    if text == str(exc):
        return exc
    try:
        return type(exc)(text)
    except TypeError:  # an error class with another signature keeps its own words
        return exc


def _described(request: Mapping[str, Any]) -> str:
    file = request.get("file")
    if file:
        return f"--{request.get('modality')} {file}"
    return f"the query {str(request.get('text', ''))[:60]!r}"


def _query(
    index: Index, request: Mapping[str, Any], notices: list[str], *, index_dir: str
) -> str | Part:
    file = request.get("file")
    if not file:
        return str(request["text"])
    wanted = str(request["modality"])
    part = _load(file, wanted, inferred=bool(request.get("inferred")))
    if request.get("inferred"):
        notices.append(f"searching with the {part.modality.value} {file} (a file, not text)")
    accepted = index.embedder.modalities
    if part.modality in accepted:
        return part
    model = index.info()["embedder"]["model"]
    takes = ", ".join(sorted(m.value for m in accepted))
    if part.modality is Modality.PDF and Modality.TEXT in accepted:
        text = _pdf_text(part, file)
        notices.append(f"{model} reads PDFs as text: searching with the text of {file}")
        return text
    raise SearchFailure(
        f"{file}: this index was made with {model}, which takes {takes}, not "
        f"{part.modality.value}; {gemini_hint(index_dir, part.modality.value + ' queries')}",
        2,
    )


def _load(file: str, wanted: str, *, inferred: bool) -> Part:
    try:
        part = load(file)
    except ConfigurationError as exc:
        raise SearchFailure(f"--{wanted} {file}: no such file", 2) from exc
    except UnsupportedMediaError as exc:
        raise SearchFailure(f"--{wanted} {file}: {exc}", 2) from exc
    found = part.modality.value
    if found != wanted and not inferred:
        hint = f"; use --{found} {file}" if found != "text" else "; pass text as the query"
        raise SearchFailure(f"--{wanted} {file}: the file is {found}, not {wanted}{hint}", 2)
    return part


def _pdf_text(part: Part, file: str) -> Text:
    from mmembed.chunkers import PdfChunker

    pieces: list[str] = []
    size = 0
    for chunk in PdfChunker(mode="text").chunk(part):
        for piece in as_content(chunk.content).parts:
            if isinstance(piece, Text):
                pieces.append(piece.text)
                size += len(piece.text)
        if size >= _PDF_QUERY_CHARS:
            break
    text = "\n".join(pieces).strip()[:_PDF_QUERY_CHARS]
    if not text:
        raise SearchFailure(
            f"--pdf {file}: the PDF has no text to search with (a scan?); this index's model "
            "reads PDFs as text only",
            2,
        )
    return Text(text)


def _missing_modalities(index: Index, wanted: Any, index_dir: str) -> list[str]:
    info = index.info()
    held = info["chunks_by_modality"]
    model = info["embedder"]["model"]
    accepted = index.embedder.modalities
    notes = []
    for name in [wanted] if isinstance(wanted, str) else list(wanted):
        if held.get(name):
            continue
        modality = Modality(name)
        readable = modality in accepted or (modality is Modality.PDF and Modality.TEXT in accepted)
        if readable:
            notes.append(f"the index holds no {name} chunks")
        else:
            takes = ", ".join(sorted(m.value for m in accepted))
            notes.append(
                f"the index holds no {name} chunks: {model} takes {takes}, so {name} files "
                f"were skipped when indexing; {gemini_hint(index_dir, name + ' files')}"
            )
    return notes
