"""From what the caller passed to checked items, grouped into calls.

Every item is checked against the model's limits (:func:`mmembed.limits.check_item`) before
anything is sent; a bare ``str``, the bulk of most workloads, only for its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmembed.content import (
    Embeddable,
    Media,
    Modality,
    Task,
    Text,
    as_content,
    main_modality,
)
from mmembed.embedders.gemini._tasks import prefix_template, task_texts
from mmembed.errors import ConfigurationError
from mmembed.limits import ModelLimits, check_inline, check_item, estimate_tokens, inline_bytes

__all__ = ["Item", "batches", "prepare"]

# the parts of an item given as a bare str: one text part, whose text is in ``Item.texts``
_BARE_TEXT: tuple[Text | Media, ...] = (Text(""),)


@dataclass(slots=True)
class Item:
    """One checked item, ready to be sent."""

    index: int  # its position in the caller's input
    parts: Sequence[Text | Media]  # a Text part's text is taken from ``texts``, in order
    texts: list[str]  # the text parts as sent (task prefix applied)
    inline_bytes: int  # base64 bytes it adds to a request body when sent inline
    upload: bool  # its media go through the Files API
    modality: Modality  # its main modality (:func:`mmembed.content.main_modality`)


def prepare(
    items: list[Embeddable],
    task: Task,
    limits: ModelLimits,
    *,
    inline_bytes_limit: int,
    files_api: bool,
) -> list[Item]:
    """Every item checked against ``limits`` and made ready to send, in input order.

    Raises:
        InputLimitError, UnsupportedMediaError, ConfigurationError: as
            :func:`mmembed.limits.check_item` and :func:`mmembed.limits.check_inline` do.
    """
    # a bare str is checked here without building a Content: text is a modality of every
    # model, so only its length can be over a limit
    template = prefix_template(task, limits)
    most = limits.max_tokens
    prepared: list[Item] = []
    for i, item in enumerate(items):
        if type(item) is str:
            text = item if template is None else template.format(text=item, title="none")
            if estimate_tokens(text) <= most:
                prepared.append(Item(i, _BARE_TEXT, [text], 0, False, Modality.TEXT))
                continue
        prepared.append(_checked(i, item, task, limits, inline_bytes_limit, files_api))
    return prepared


def _checked(
    index: int,
    item: Embeddable,
    task: Task,
    limits: ModelLimits,
    inline_bytes_limit: int,
    files_api: bool,
) -> Item:
    try:
        content = as_content(item)
    except ConfigurationError as exc:
        raise ConfigurationError(f"item {index}: {exc}") from None
    texts = task_texts(content, task, limits)
    check_item(content, limits, index=index, texts=texts)
    upload = check_inline(
        content, limits, index=index, inline_bytes_limit=inline_bytes_limit, files_api=files_api
    )
    return Item(
        index=index,
        parts=content.parts,
        texts=texts,
        inline_bytes=0 if upload else inline_bytes(content),
        upload=upload,
        modality=main_modality(content),
    )


def batches(items: list[Item], *, batch_size: int, inline_bytes_limit: int) -> list[list[Item]]:
    """``items`` in calls of at most ``batch_size`` items and ``inline_bytes_limit`` bytes."""
    out: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for item in items:
        if current and (
            len(current) >= batch_size or size + item.inline_bytes > inline_bytes_limit
        ):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += item.inline_bytes
    if current:
        out.append(current)
    return out
