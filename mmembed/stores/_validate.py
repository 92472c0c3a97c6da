"""One set of checks for what a store is given: ids, vectors, metadata, ``where``, ``k``, sizes.

Every store calls these (:class:`~mmembed.stores.InMemoryStore`,
:class:`~mmembed.stores.FaissStore`, :class:`~mmembed.stores.QdrantStore`), so the same bad input
gets the same error with the same message, whichever store meets it. All of them raise
:class:`~mmembed.errors.ConfigurationError`, except a vector of the wrong width:
:class:`~mmembed.errors.DimensionMismatchError`. The rules:

- **ids** are strings. An id being added must be non-empty and valid Unicode text (no lone
  surrogates, which JSON cannot write); ``delete`` and ``get`` take any strings, since unknown
  ids are ignored there. A bare string is refused (wrap it: ``[id]``).
- **vectors** are a 2-D array of numbers, one row per id (a 1-D vector for a single id), each row
  ``dimensions`` wide, every value finite and within float32's range. Any memory layout works
  (Fortran order, strided views). Object, string or complex arrays are refused, not guessed at.
  Rows are stored L2-normalised however large or small their values (``[1e30] * 8`` is fine).
- **metadata** is one mapping per id (or ``None``) of string keys to JSON values: ``str``,
  ``int``, finite ``float``, ``bool``, ``None``, and lists or mappings of them (numpy scalars are
  converted), nested at most :data:`MAX_METADATA_DEPTH` levels. The key :data:`RESERVED_KEY` is
  reserved.
- **where** is a mapping of top-level metadata keys to a value (equality) or a list of values
  (any of them). A metadata value that is a list matches when any of its items does. Operators
  such as ``{"$gt": 1}`` are not supported and are refused, never silently matched against.
- **k** and **dimensions** are positive ints (numpy integers too, ``bool`` and strings not);
  dimensions are at most :data:`MAX_DIMENSIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmembed.errors import ConfigurationError, DimensionMismatchError
from mmembed.matryoshka import _row_norms, _unit_rows

__all__ = [
    "MAX_DIMENSIONS",
    "MAX_METADATA_DEPTH",
    "RESERVED_KEY",
    "Terms",
    "check_dimensions",
    "check_ids",
    "check_k",
    "check_metadata",
    "check_positive_int",
    "check_queries",
    "check_spec",
    "check_vectors",
    "check_where",
    "clean_metadata",
]

#: The widest vectors a store accepts (Gemini's are 3072; the widest common models 4096-8192).
MAX_DIMENSIONS = 65_536
#: How deeply metadata may nest lists and mappings.
MAX_METADATA_DEPTH = 32
#: The metadata key every store reserves (Qdrant keeps the mmembed id under it).
RESERVED_KEY = "_mmembed_id"

Scalar: TypeAlias = str | int | float | bool | None
Terms: TypeAlias = tuple[tuple[str, tuple[Scalar, ...]], ...]
"""A checked ``where``: (key, the values any of which matches) for every key, all to match."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)


# -- numbers ------------------------------------------------------------------------------------


def check_positive_int(value: object, what: str) -> int:
    """``value`` as an int, or :class:`ConfigurationError` unless it is an int (or numpy
    integer) of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigurationError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def check_k(k: object) -> int:
    """How many hits a search returns at most: a positive int."""
    return check_positive_int(k, "k")


def check_dimensions(value: object, *, what: str = "dimensions") -> int:
    """A vector width: a positive int of at most :data:`MAX_DIMENSIONS`."""
    width = check_positive_int(value, what)
    if width > MAX_DIMENSIONS:
        raise ConfigurationError(
            f"{what} is {width}, more than the {MAX_DIMENSIONS:,} a store holds; embed with "
            "fewer dimensions or truncate the vectors (mmembed.truncate)"
        )
    return width


# -- ids ----------------------------------------------------------------------------------------


def check_ids(ids: object, *, adding: bool) -> list[str]:
    """The ids as a list of strings; when ``adding``, each non-empty and valid Unicode."""
    if isinstance(ids, (str, bytes)):
        raise ConfigurationError("ids must be a list of strings; wrap a single id as [id]")
    if not isinstance(ids, Iterable):
        raise ConfigurationError(f"ids must be a list of strings, got {type(ids).__name__}")
    out = list(ids)
    for position, item in enumerate(out):
        if not isinstance(item, str):
            raise ConfigurationError(
                f"ids must be strings, got {item!r} ({type(item).__name__}) at position {position}"
            )
        if adding and not (item and item.isascii()):  # the usual id needs no further look
            if not item:
                raise ConfigurationError(
                    f"ids must be non-empty strings; the id at position {position} is empty"
                )
            _check_text(item, f"id {item!r}")
    return out


def _check_text(text: str, what: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"{what} is not valid Unicode text (it holds a lone surrogate, as undecodable file "
            "names do), which JSON cannot store; convert it first, e.g. with "
            "os.fsencode(name).decode('utf-8', 'backslashreplace')"
        ) from None


# -- vectors ------------------------------------------------------------------------------------


def _as_float32(data: ArrayLike, what: str) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """``data`` as a float32 array (no copy when it already is one), and the array it came from."""
    try:
        raw = np.asarray(data)
    except (TypeError, ValueError) as exc:  # ragged rows, unconvertible objects
        raise ConfigurationError(
            f"{what} must be a rectangular array of numbers (every row as wide): {exc}"
        ) from None
    if raw.dtype.kind not in "biuf":
        got = f"dtype {raw.dtype}" if raw.ndim else repr(data)[:60]
        raise ConfigurationError(
            f"{what} must be an array of numbers, got {got}; convert it first, e.g. "
            f"np.asarray({what}, dtype=np.float32)"
        )
    if raw.dtype == np.float32:
        return raw, raw
    with np.errstate(over="ignore"):  # float64 values beyond float32's range: reported below
        return raw.astype(np.float32), raw


def _check_finite(
    matrix: NDArray[np.float32], raw: NDArray[Any], norms: NDArray[np.float32], what: str
) -> None:
    """Refuse rows holding NaN or infinity. The float32 row norms say which rows to look at: a
    NaN or an infinity anywhere in a row makes its norm NaN or infinite."""
    if np.isfinite(norms.sum()):  # one reduction in the usual case
        return
    suspects = np.flatnonzero(~np.isfinite(norms))
    bad = suspects[~np.isfinite(matrix[suspects]).all(axis=1)]
    if not bad.size:
        return  # finite values whose squares overflow: normalised in float64 later
    row = int(bad[0])
    hold = "holds" if what == "query" else "hold"
    if np.isfinite(raw.reshape(matrix.shape)[row]).all():  # finite until cast to float32
        raise ConfigurationError(
            f"{what} {hold} values too large for float32 (row {row}, beyond ±{_FLOAT32_MAX:.1e}); "
            "scale them down: only their direction matters"
        )
    raise ConfigurationError(
        f"{what} {hold} NaN or infinity (row {row}); check the embedder output"
    )


def check_vectors(
    data: ArrayLike, *, width: int, count: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Check the vectors given to ``add`` for ``count`` ids.

    Returns:
        The vectors as float32 (the caller's own array when it already is one: read, never
        write it) in ``count`` rows, and their float32 row norms for :func:`_unit_rows`.
    """
    matrix, raw = _as_float32(data, "vectors")
    if matrix.ndim == 1 and count == 1:
        matrix = matrix[None, :]
    elif matrix.ndim == 1 and matrix.size == 0 and count == 0:
        matrix = matrix.reshape(0, width)
    if matrix.ndim != 2:
        raise ConfigurationError(
            f"vectors must be a 2-D array with one row per id, got shape {matrix.shape}"
        )
    if matrix.shape[1] != width:
        raise DimensionMismatchError(
            f"this store holds {width}-dimensional vectors, got {matrix.shape[1]}; use an "
            f"embedder with dimensions={width} or truncate the vectors (mmembed.truncate)"
        )
    if matrix.shape[0] != count:
        raise ConfigurationError(
            f"got {count} ids but {matrix.shape[0]} vectors: pass one vector per id"
        )
    norms = _row_norms(matrix)
    _check_finite(matrix, raw, norms, "vectors")
    return matrix, norms


def check_queries(
    data: ArrayLike, *, width: int, prefix: int | None = None, single: bool
) -> NDArray[np.float32]:
    """Check search queries and return them as a new C-ordered float32 array of unit rows.

    Args:
        data: one vector (``single``; a 2-D array of one row is taken too) or a 2-D batch.
        width: the store's width.
        prefix: the Matryoshka prefix searched at, if any: queries may be this wide too, and
            are cut to it.
        single: whether ``data`` is one query.
    """
    what = "query" if single else "queries"
    matrix, raw = _as_float32(data, what)
    if single:
        if matrix.ndim == 2 and matrix.shape[0] == 1:
            matrix, raw = matrix[0], raw.reshape(matrix.shape)[0]
        if matrix.ndim != 1:
            raise ConfigurationError(
                f"search takes one query vector, got shape {matrix.shape}; use search_batch "
                "for several queries"
            )
        matrix = matrix[None, :]
    elif matrix.ndim != 2:
        raise ConfigurationError(
            f"search_batch takes a 2-D array of queries, got shape {matrix.shape}"
        )
    target = prefix or width
    if matrix.shape[1] not in (width, target):
        raise DimensionMismatchError(
            f"the {what} {'has' if single else 'have'} {matrix.shape[1]} dimensions but the "
            f"store holds {width}" + (f" (searching at {target})" if prefix else "") + "; embed "
            "the query with the same dimensions as the stored vectors"
        )
    out = np.array(matrix[:, :target], dtype=np.float32, order="C")
    norms = _row_norms(out)
    # NaN beyond the prefix is refused too
    _check_finite(matrix, raw, norms if out.shape == matrix.shape else _row_norms(matrix), what)
    if out.shape[0] and not norms.min() > 0 and not out.any(axis=1).all():
        raise ConfigurationError(
            "a query vector is all zeros, so it has no direction to compare; embed a "
            "non-empty query"
        )
    return _unit_rows(out, norms=norms)


# -- metadata -----------------------------------------------------------------------------------


def check_metadata(metadata: object, ids: list[str]) -> list[dict[str, Any]]:
    """One cleaned metadata dict per id (``None`` means no metadata for any of them)."""
    if metadata is None:
        return [{} for _ in ids]
    if isinstance(metadata, (Mapping, str, bytes)) or not isinstance(metadata, Iterable):
        raise ConfigurationError(
            f"metadata must be a list with one mapping per id, got {type(metadata).__name__}"
            + ("; wrap a single mapping as [metadata]" if isinstance(metadata, Mapping) else "")
        )
    entries = list(metadata)
    if len(entries) != len(ids):
        raise ConfigurationError(
            f"got {len(ids)} ids but {len(entries)} metadata entries: pass one per id"
        )
    return [clean_metadata(entry, item_id) for entry, item_id in zip(entries, ids, strict=True)]


def clean_metadata(metadata: object, item_id: str) -> dict[str, Any]:
    """Check one item's metadata and return a private JSON-ready copy."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ConfigurationError(
            f"metadata for {item_id!r} must be a mapping, got {type(metadata).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"metadata keys must be strings; {item_id!r} has {key!r}")
        if key == RESERVED_KEY:
            raise ConfigurationError(
                f"metadata key {RESERVED_KEY!r} is reserved by mmembed's stores; rename it "
                f"(id {item_id!r})"
            )
        where = f"{key!r} of {item_id!r}"
        _check_text(key, f"metadata key {where}")
        out[key] = _clean_value(value, where, 1)
    return out


def _clean_value(value: Any, where: str, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _check_text(value, f"metadata {where}")
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(
                f"metadata {where} is {value}, which JSON cannot store; use None or a string"
            )
        return value
    if isinstance(value, (list, tuple, Mapping)) and depth >= MAX_METADATA_DEPTH:
        raise ConfigurationError(
            f"metadata {where} nests lists or mappings more than {MAX_METADATA_DEPTH} levels "
            "deep; flatten it"
        )
    if isinstance(value, (list, tuple)):
        return [_clean_value(item, where, depth + 1) for item in value]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigurationError(f"metadata {where} has a non-string key {key!r}")
            _check_text(key, f"a key in metadata {where}")
            out[key] = _clean_value(item, where, depth + 1)
        return out
    raise ConfigurationError(
        f"metadata {where} is a {type(value).__name__}; stores keep JSON values only (str, int, "
        "float, bool, None, and lists or dicts of them): convert it first, e.g. a date to an "
        "ISO string"
    )


# -- where --------------------------------------------------------------------------------------


def check_where(where: object) -> Terms | None:
    """The checked filter, or ``None`` for no filter (``None`` or an empty mapping)."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise ConfigurationError(
            "where must be a mapping of metadata keys to values, like {'modality': 'image'}, "
            f"got {type(where).__name__}"
        )
    terms = []
    for key, wanted in where.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"where keys must be strings, got {key!r}")
        if not key or any(c in key for c in ".[]"):
            raise ConfigurationError(
                f"where key {key!r}: a filter names a top-level metadata key, non-empty and "
                "without '.', '[' or ']' (some stores read those as paths into nested metadata)"
            )
        if isinstance(wanted, Mapping):
            raise ConfigurationError(
                f"where[{key!r}] is a mapping; operators such as {{'$gt': 1}} are not "
                f"supported: give a value ({{{key!r}: 1}}) or a list of values "
                f"({{{key!r}: [1, 2]}}), and filter ranges on the hits yourself"
            )
        options = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        terms.append((key, tuple(_filter_value(option, key) for option in options)))
    return tuple(terms) or None


def _filter_value(value: Any, key: str) -> Scalar:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(f"where[{key!r}] is {value}, which no stored value equals")
        return value
    raise ConfigurationError(
        f"where[{key!r}] must be a str, int, float, bool or None, or a list of them; got "
        f"{type(value).__name__}"
    )


# -- specs --------------------------------------------------------------------------------------


def check_spec(spec: object, *, kind: str, keys: Collection[str]) -> dict[str, Any]:
    """A store spec of ``kind`` with ``dimensions`` and no keys beyond ``keys``."""
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"a store spec is a mapping, got {type(spec).__name__}")
    if spec.get("kind") != kind:
        raise ConfigurationError(
            f"this is the {kind!r} store; the spec names kind {spec.get('kind')!r}"
        )
    known = {"kind", "dimensions", *keys}
    unknown = sorted(str(key) for key in spec if key not in known)
    if unknown:
        raise ConfigurationError(
            f"unknown keys in the {kind!r} store spec: {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known))}"
        )
    if "dimensions" not in spec:
        raise ConfigurationError(f"the {kind!r} store spec lacks 'dimensions'")
    return dict(spec)
