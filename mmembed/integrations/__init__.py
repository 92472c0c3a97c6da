"""Adapters that plug mmembed into other frameworks (each an optional extra).

Importing this package never needs any framework; each module imports its own lazily and raises
:class:`~mmembed.errors.MissingDependencyError` with the ``pip install`` line when it is missing.

- :mod:`mmembed.integrations.langchain` (extra ``langchain``): ``LangChainEmbeddings`` and
  ``LangChainVectorStore``.
- :mod:`mmembed.integrations.llamaindex` (extra ``llamaindex``): ``LlamaIndexEmbedding``, a
  multimodal (text and image) LlamaIndex embedding model.
- :mod:`mmembed.integrations.chroma` (extra ``chroma``): ``ChromaEmbeddingFunction``; imports
  nothing from chromadb itself.
"""
