"""How a :class:`~mmembed.content.Task` reaches the model: a text prefix, or ``task_type``.

Gemini Embedding 2 takes the task as Google's documented prefix around the text;
gemini-embedding-001 takes it in the ``task_type`` request field.

>>> apply_task("how do cells make energy?", Task.QUERY)
'task: search result | query: how do cells make energy?'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mmembed.content import Content, Task, Text
from mmembed.limits import ModelLimits

__all__ = ["TASK_PREFIXES", "TASK_TYPES", "apply_task"]

#: How Gemini Embedding 2 is told the task: a template around the text (Google's documented
#: prefixes). ``{title}`` is the :class:`~mmembed.content.Text` title, or ``none``.
TASK_PREFIXES: Mapping[Task, str] = MappingProxyType(
    {
        Task.QUERY: "task: search result | query: {text}",
        Task.DOCUMENT: "title: {title} | text: {text}",
        Task.QUESTION_ANSWERING: "task: question answering | query: {text}",
        Task.FACT_CHECKING: "task: fact checking | query: {text}",
        Task.CODE_RETRIEVAL: "task: code retrieval | query: {text}",
        Task.CLASSIFICATION: "task: classification | query: {text}",
        Task.CLUSTERING: "task: clustering | query: {text}",
        Task.SIMILARITY: "task: sentence similarity | query: {text}",
    }
)

#: How gemini-embedding-001 is told the task: the ``task_type`` request field.
TASK_TYPES: Mapping[Task, str] = MappingProxyType(
    {
        Task.QUERY: "RETRIEVAL_QUERY",
        Task.DOCUMENT: "RETRIEVAL_DOCUMENT",
        Task.QUESTION_ANSWERING: "QUESTION_ANSWERING",
        Task.FACT_CHECKING: "FACT_VERIFICATION",
        Task.CODE_RETRIEVAL: "CODE_RETRIEVAL_QUERY",
        Task.CLASSIFICATION: "CLASSIFICATION",
        Task.CLUSTERING: "CLUSTERING",
        Task.SIMILARITY: "SEMANTIC_SIMILARITY",
    }
)


def apply_task(text: str, task: Task, *, title: str | None = None) -> str:
    """The text Gemini Embedding 2 should see for ``task`` (the documented prefix added).

    >>> apply_task("how do cells make energy?", Task.QUERY)
    'task: search result | query: how do cells make energy?'
    >>> apply_task("Mitochondria make ATP.", Task.DOCUMENT, title="Biology")
    'title: Biology | text: Mitochondria make ATP.'
    """
    return TASK_PREFIXES[Task(task)].format(text=text, title=title or "none")


def prefix_template(task: Task, limits: ModelLimits) -> str | None:
    """The prefix template of ``task`` when the model takes prefixes, else ``None``."""
    return TASK_PREFIXES[task] if limits.task_style == "prefix" else None


def task_type(task: Task, limits: ModelLimits) -> str | None:
    """The ``task_type`` field of ``task`` when the model takes one, else ``None``."""
    return TASK_TYPES[task] if limits.task_style == "task_type" else None


def task_texts(content: Content, task: Task, limits: ModelLimits) -> list[str]:
    """The text parts of ``content`` as they are sent: the first one carries the prefix.

    The documented prefixes frame one text; an item without text (a bare image) is sent as is,
    since Google documents them for text only.
    """
    texts = [p.text for p in content.parts if isinstance(p, Text)]
    if texts and limits.task_style == "prefix":
        first = next(p for p in content.parts if isinstance(p, Text))
        texts[0] = apply_task(texts[0], task, title=first.title)
    return texts


def task_scheme(limits: ModelLimits) -> dict[Task, str]:
    """Every task as the model is told it (for an embedder's fingerprint)."""
    return dict(TASK_PREFIXES if limits.task_style == "prefix" else TASK_TYPES)
