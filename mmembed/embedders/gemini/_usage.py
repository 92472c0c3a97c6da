"""Tokens and estimated cost, per call and summed over an embedder's life."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from mmembed.content import Modality
from mmembed.embedders.gemini._items import Item
from mmembed.embedders.gemini._reply import Answer
from mmembed.limits import ModelLimits, cost_usd, estimate_tokens

__all__ = ["EmbeddingUsage", "Tally", "usage_of"]

# the service's modality names in ``promptTokensDetails``
_MEDIA_MODALITY = {
    "TEXT": Modality.TEXT,
    "MODALITY_UNSPECIFIED": Modality.TEXT,
    "IMAGE": Modality.IMAGE,
    "AUDIO": Modality.AUDIO,
    "VIDEO": Modality.VIDEO,
    "DOCUMENT": Modality.PDF,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingUsage:
    """Tokens and an estimated price, for one ``embed`` call or summed over an embedder's life.

    ``cost_usd`` is :func:`mmembed.limits.cost_usd` of the tokens, by modality (list prices from
    secondary sources): an estimate, not a bill. ``estimated`` is true when the service did not
    report token counts for some request and text tokens were estimated instead (media tokens are
    then not counted).
    """

    requests: int = 0
    items: int = 0
    cached_items: int = 0
    tokens: int = 0
    tokens_by_modality: Mapping[Modality, int] = field(default_factory=lambda: MappingProxyType({}))
    cost_usd: float = 0.0
    estimated: bool = False

    def __add__(self, other: EmbeddingUsage) -> EmbeddingUsage:
        by: dict[Modality, int] = dict(self.tokens_by_modality)
        for modality, n in other.tokens_by_modality.items():
            by[modality] = by.get(modality, 0) + n
        return EmbeddingUsage(
            requests=self.requests + other.requests,
            items=self.items + other.items,
            cached_items=self.cached_items + other.cached_items,
            tokens=self.tokens + other.tokens,
            tokens_by_modality=MappingProxyType(by),
            cost_usd=self.cost_usd + other.cost_usd,
            estimated=self.estimated or other.estimated,
        )

    def __repr__(self) -> str:
        return (
            f"EmbeddingUsage(requests={self.requests}, items={self.items}, "
            f"cached_items={self.cached_items}, tokens={self.tokens}, "
            f"cost_usd={self.cost_usd:.6f}{', estimated' if self.estimated else ''})"
        )


def usage_of(batch: Sequence[Item], answer: Answer, limits: ModelLimits) -> EmbeddingUsage:
    """The usage of one call: the service's token counts, or estimated text tokens."""
    by: dict[Modality, int] = {}
    estimated = False
    if answer.prompt_tokens is not None:
        total = answer.prompt_tokens
        for name, n in answer.tokens_by_modality:
            modality = _MEDIA_MODALITY.get(name, Modality.TEXT)
            by[modality] = by.get(modality, 0) + n
        if not by:  # a total without details: all of it under the call's main modality
            main = next((it.modality for it in batch if it.modality is not Modality.TEXT), None)
            by[main or Modality.TEXT] = total
    else:
        estimated = True
        total = sum(estimate_tokens(t) for it in batch for t in it.texts)
        by[Modality.TEXT] = total
    return EmbeddingUsage(
        requests=1,
        items=len(batch),
        tokens=total,
        tokens_by_modality=MappingProxyType(by),
        cost_usd=cost_usd(by, limits),
        estimated=estimated,
    )


class Tally:
    """Usage of one embed call, added to from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sum = EmbeddingUsage()
        self.cached = 0

    def add(self, usage: EmbeddingUsage) -> None:
        with self._lock:
            self._sum = self._sum + usage

    def total(self) -> EmbeddingUsage:
        with self._lock:
            return self._sum + EmbeddingUsage(items=self.cached, cached_items=self.cached)
