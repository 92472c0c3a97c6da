"""LlamaIndex adapter: any mmembed embedder as a LlamaIndex (multimodal) embedding model.

Install with ``pip install "mmembed[llamaindex]"``; importing this module without
``llama-index-core`` raises :class:`~mmembed.errors.MissingDependencyError` with that line.

:class:`LlamaIndexEmbedding` is a ``MultiModalEmbedding``: text *and* images, so it works for
``VectorStoreIndex`` as well as ``MultiModalVectorStoreIndex``. Each batch LlamaIndex hands over
becomes one embedder call that returns exactly one vector per item, in order (also for images and
in async code, where LlamaIndex's default image path can reorder results)::

    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from mmembed.integrations.llamaindex import LlamaIndexEmbedding

    embed_model = LlamaIndexEmbedding(model="gemini-embedding-2", dimensions=768)
    index = VectorStoreIndex([TextNode(text="cats purr")], embed_model=embed_model)
    index.as_retriever(similarity_top_k=1).retrieve("kittens")

Everything this module touches in llama-index-core works offline: text splitting uses the
tokenizer files llama-index-core ships with, and nothing here asks ``Settings`` for a default
(OpenAI) model.
"""

from __future__ import annotations

from mmembed._optional import import_optional

import_optional("llama_index.core", extra="llamaindex", purpose="mmembed.integrations.llamaindex")

import io  # noqa: E402
import os  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from llama_index.core.base.embeddings.base import Embedding  # noqa: E402
from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.embeddings import MultiModalEmbedding  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from mmembed.content import Embeddable, Image, Part, Task, load  # noqa: E402
from mmembed.errors import ConfigurationError, UnsupportedMediaError  # noqa: E402
from mmembed.integrations._common import (  # noqa: E402
    DEFAULT_MODEL,
    ClosesOwnEmbedder,
    api_key_or_env,
    build_gemini,
    check_embedder,
    gemini_option_names,
    refuse_parameters_with_embedder,
    refuse_unknown_arguments,
    rows_as_floats,
)
from mmembed.protocols import Embedder  # noqa: E402

__all__ = ["LlamaIndexEmbedding"]

# the explicit parameters, so that a misspelt one is matched against them too
_ACCEPTED = frozenset(
    {
        "embedder",
        "model",
        "model_name",
        "dimensions",
        "api_key",
        "query_task",
        "document_task",
        "embed_batch_size",
        "gemini_options",
    }
)
_HINTS = {
    # GoogleGenAIEmbedding's (llama-index-embeddings-google-genai) names
    "embedding_config": "dimensions= (and query_task= / document_task= for the task)",
    "vertexai_config": "gemini_options={'vertexai': True}",
    "http_options": "gemini_options={'client': ...}",
    "retries": "gemini_options={'max_retries': ...}",
    "timeout": "gemini_options={'timeout': ...}",
}
# What LlamaIndex calls an image: a path or a file-like object; mmembed parts and bytes too.
ImageInput = str | os.PathLike[str] | io.BytesIO | bytes | Image


class LlamaIndexEmbedding(ClosesOwnEmbedder, MultiModalEmbedding):
    """A LlamaIndex ``MultiModalEmbedding`` backed by any mmembed embedder.

    Query embeddings use ``query_task``; text and image embeddings use ``document_task``.

    LlamaIndex's own names work as they do for its other embedding models: ``model_name`` (the
    same as ``model``) and ``embed_batch_size``, so ``LlamaIndexEmbedding.from_dict(e.to_dict())``
    rebuilds a Gemini model too. Any other unknown name fails here, at construction, with the
    name it most likely meant (``output_dimensionality`` → ``dimensions``).

    Args:
        embedder: the mmembed embedder to use; leave it out to build a ``GeminiEmbedder`` (on
            first use) from ``model``, ``dimensions`` and ``api_key``.
        model: Gemini model id (default ``"gemini-embedding-2"``); only without ``embedder``.
        model_name: LlamaIndex's name for ``model``; give one of the two.
        dimensions: Gemini output size; only without ``embedder``.
        api_key: Gemini API key; defaults to ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``.
        query_task: task for queries (``Task.QUERY``, ``Task.QUESTION_ANSWERING``, ...).
        document_task: task for texts and images that get indexed.
        embed_batch_size: items per embedder call (the embedder splits further if it must).
        gemini_options: further ``GeminiEmbedder`` keyword options (``timeout``,
            ``max_retries``, ``client``...).
        **kwargs: LlamaIndex ``BaseEmbedding`` fields (``callback_manager``, ``num_workers``...).

    Raises:
        ConfigurationError: an unknown argument, one setting under two names, or Gemini
            parameters next to a ready embedder.
    """

    dimensions: int | None = Field(default=None, description="Output vector width.")
    api_key: SecretStr | None = Field(default=None, exclude=True)
    query_task: Task = Field(default=Task.QUERY)
    document_task: Task = Field(default=Task.DOCUMENT)

    _embedder: Embedder | None = PrivateAttr(default=None)
    _gemini_options: dict[str, Any] = PrivateAttr(default_factory=dict)
    _owns_embedder: bool = PrivateAttr(default=False)

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | None = None,
        model_name: str | None = None,
        dimensions: int | None = None,
        api_key: str | SecretStr | None = None,
        query_task: Task = Task.QUERY,
        document_task: Task = Task.DOCUMENT,
        embed_batch_size: int = 100,
        gemini_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        refuse_unknown_arguments(
            "LlamaIndexEmbedding",
            kwargs,
            _ACCEPTED | set(MultiModalEmbedding.model_fields),
            hints=_HINTS,
        )
        refuse_unknown_arguments(
            "LlamaIndexEmbedding's gemini_options",
            gemini_options or {},
            gemini_option_names() - {"dimensions", "api_key"},  # arguments of their own here
        )
        if model is not None and model_name is not None:
            raise ConfigurationError(
                "LlamaIndexEmbedding got both model and model_name, which are the same setting: "
                "give one"
            )
        model = model if model is not None else model_name
        if embedder is not None:
            refuse_parameters_with_embedder(
                "LlamaIndexEmbedding",
                model=model,
                dimensions=dimensions,
                api_key=api_key,
                gemini_options=gemini_options,
            )
            checked = check_embedder(embedder, who="LlamaIndexEmbedding")
            model_name = checked.model
            dimensions = checked.dimensions
        else:
            checked = None
            model_name = model or DEFAULT_MODEL
            api_key = api_key_or_env(api_key)
        # our own fields go through a dict: mypy sees only the base class's __init__
        fields: dict[str, Any] = {
            "dimensions": dimensions,
            "api_key": api_key,
            "query_task": Task(query_task),
            "document_task": Task(document_task),
        }
        super().__init__(
            model_name=model_name, embed_batch_size=embed_batch_size, **fields, **kwargs
        )
        self._embedder = checked
        self._owns_embedder = checked is None
        self._gemini_options = dict(gemini_options or {})

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex records when it serialises the model."""
        return "MMEmbedEmbedding"

    @property
    def embedder(self) -> Embedder:
        """The mmembed embedder (for Gemini parameters, created on first use)."""
        if self._embedder is None:
            self._embedder = build_gemini(
                model=self.model_name,
                dimensions=self.dimensions,
                api_key=self.api_key,
                options=self._gemini_options,
            )
        return self._embedder

    # -- the calls LlamaIndex makes -------------------------------------------------------------

    def _embed(self, items: Sequence[Embeddable], task: Task) -> list[Embedding]:
        matrix = self.embedder.embed(list(items), task=task)
        return rows_as_floats(matrix, len(items), model=self.model_name)

    async def _aembed(self, items: Sequence[Embeddable], task: Task) -> list[Embedding]:
        matrix = await self.embedder.aembed(list(items), task=task)
        return rows_as_floats(matrix, len(items), model=self.model_name)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query], self.query_task)[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._aembed([query], self.query_task))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text], self.document_task)[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aembed([text], self.document_task))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(texts, self.document_task)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._aembed(texts, self.document_task)

    def _get_image_embedding(self, img_file_path: ImageInput) -> Embedding:
        return self._embed([_image(img_file_path)], self.document_task)[0]

    async def _aget_image_embedding(self, img_file_path: ImageInput) -> Embedding:
        return (await self._aembed([_image(img_file_path)], self.document_task))[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageInput]) -> list[Embedding]:  # type: ignore[override]
        return self._embed([_image(p) for p in img_file_paths], self.document_task)

    async def _aget_image_embeddings(  # type: ignore[override]
        self, img_file_paths: list[ImageInput]
    ) -> list[Embedding]:
        # one call for the batch keeps the order (gathering single calls need not)
        return await self._aembed([_image(p) for p in img_file_paths], self.document_task)

    def get_embedding_for(self, item: Embeddable, *, task: Task | None = None) -> Embedding:
        """One vector for any mmembed item (audio, video, PDF, :class:`Content`...).

        LlamaIndex itself only speaks text and images; use this for the other modalities.
        """
        return self._embed([item], task or self.document_task)[0]


def _image(value: ImageInput) -> Image:
    """An :class:`Image` from what LlamaIndex passes: a path or a file-like object."""
    if isinstance(value, Image):
        return value
    part: Part
    try:
        if isinstance(value, io.BytesIO):
            part = load(value.getvalue())
        elif isinstance(value, bytes):
            part = load(value)
        elif isinstance(value, str | os.PathLike):
            path = Path(value)
            if not path.is_file():
                raise ConfigurationError(
                    f"image {str(value)!r} is not a file: pass a path to an image file, bytes "
                    "or a BytesIO (URLs are not fetched)"
                )
            part = load(path)
        else:
            raise ConfigurationError(
                f"an image must be a path, bytes, BytesIO or mmembed Image, got "
                f"{type(value).__name__}"
            )
    except UnsupportedMediaError as exc:
        raise UnsupportedMediaError(f"not an image: {exc}") from exc
    if not isinstance(part, Image):
        raise UnsupportedMediaError(
            f"expected an image but found {part.modality.value}: pass image files to the image "
            "methods"
        )
    return part
