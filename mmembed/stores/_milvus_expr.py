"""How :class:`~mmembed.stores.MilvusStore` speaks Milvus's expression language: ids written
into string literals, and ``where`` filters as tests on hashed, typed terms (see
:mod:`mmembed.stores.milvus` for why)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mmembed.errors import ConfigurationError
from mmembed.stores._validate import Scalar, Terms

__all__ = [
    "TERMS_FIELD",
    "check_ints",
    "expression_string",
    "id_expression",
    "spellable",
    "term_token",
    "tokens",
    "where_expression",
]

#: The JSON field holding the tokens ``where`` filters match.
TERMS_FIELD = "mmembed_terms"
_INT_RANGE = (-(2**63), 2**64 - 1)  # what pymilvus's JSON encoder takes


def expression_string(text: str) -> str:
    """``text`` as a double-quoted Milvus expression string literal.

    Milvus's parser reads ``\\"`` and ``\\\\`` and takes every other character as it stands
    (its ``\\n`` or ``\\u00e9`` escapes do not give the character back), so only those two are
    escaped; a line break, which no literal can hold, is refused.
    """
    if not spellable(text):
        raise ConfigurationError(
            f"{text[:40]!r} holds a line break or a NUL character, which a Milvus expression "
            "cannot spell"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spellable(text: str) -> bool:
    """Whether an id can be written into a Milvus expression (and stored: Milvus fails on a
    primary key holding NUL)."""
    return "\n" not in text and "\r" not in text and "\x00" not in text


def term_token(key: str, value: Scalar) -> str:
    """The token :data:`TERMS_FIELD` holds for metadata ``key`` having the scalar ``value``.

    Values equal as the local stores compare them give the same token: numbers by value
    (``1`` and ``1.0`` alike, exactly, however large), booleans, strings and ``None`` apart.
    """
    if value is None:
        tag = "null"
    elif isinstance(value, bool):
        tag = f"bool:{value}"
    elif isinstance(value, int):
        tag = f"num:{value}"
    elif isinstance(value, float):
        tag = f"num:{int(value)}" if value.is_integer() else f"num:{value!r}"
    else:
        tag = f"str:{value}"
    # ASCII JSON: unambiguous, and any text (even a lone surrogate in a where) encodes
    raw = json.dumps([key, tag]).encode("ascii")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def tokens(metadata: Mapping[str, Any]) -> list[str]:
    """The tokens of every top-level scalar (and scalar list item) of ``metadata``."""
    out: dict[str, None] = {}
    for key, value in metadata.items():
        for item in value if isinstance(value, list) else (value,):
            if item is None or isinstance(item, (str, int, float)):
                out[term_token(key, item)] = None
    return list(out)


def check_ints(value: Any, where: str) -> None:
    """Refuse integers pymilvus cannot write into a JSON field."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise ConfigurationError(
                f"metadata {where} is an integer beyond 64 bits, which Milvus's JSON fields "
                "cannot hold; store it as a string"
            )
    elif isinstance(value, list):
        for item in value:
            check_ints(item, where)
    elif isinstance(value, dict):
        for item in value.values():
            check_ints(item, where)


def id_expression(ids: Sequence[str]) -> str:
    return f"id in [{', '.join(expression_string(i) for i in ids)}]"


def where_expression(terms: Terms | None) -> str | None:
    """The filter expression for checked ``where`` terms: ``""`` for none, ``None`` for a
    filter no row can match. Only hex tokens go into it, never user text."""
    if terms is None:
        return ""
    parts = []
    for key, values in terms:
        if not values:
            return None  # "any of nothing" matches no row
        # deduplicated by token: as dict keys, 1, 1.0 and True would be one value
        tokens = ", ".join(f'"{t}"' for t in dict.fromkeys(term_token(key, v) for v in values))
        parts.append(f'json_contains_any({TERMS_FIELD}["any"], [{tokens}])')
    return " and ".join(parts)
