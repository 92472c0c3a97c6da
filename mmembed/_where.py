"""The ``where`` of :meth:`Index.search`: a filter on every field a result shows.

The index's ``where`` names the fields of its results and the metadata given to
:meth:`Index.add`, and becomes one SQL condition on the catalog's chunks (``c``) and files
(``f``), so the vector side and the keyword side of a search filter alike. The value shapes are
checked by the stores' own :func:`~mmembed.stores._validate.check_where` (a value, or a list
meaning any of them); what each field means is written here:

========================  ==========================================================================
``source``                a file, a folder (everything below it) or a glob (``lectures/*.mp4``;
                          ``*`` crosses folders), as typed: relative to the working directory
``modality``              ``text``, ``image``, ``audio``, ``video`` or ``pdf``
``type``                  the file's extension: ``pdf``, ``.md``
``page``                  a page number (chunks whose pages include it), a ``range``, or ``"3-5"``
``time``                  seconds or ``"1:30"`` (chunks that hold that instant), or a range:
                          ``(60, 120)``, ``"1:00-2:00"`` (chunks that overlap it)
``modified_after``,       the file's modification time: a ``datetime``, a ``date``, an ISO string
``modified_before``       (``"2024-05-01"``) or seconds since the epoch
any other key             the metadata given to ``Index.add(..., metadata=...)``
========================  ==========================================================================

An unknown key is a :class:`~mmembed.errors.ConfigurationError` that lists the known ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mmembed.content import Modality
from mmembed.errors import ConfigurationError

if TYPE_CHECKING:
    from mmembed.stores._validate import Scalar

# The stores' checks are imported when a filter is read, not with this module: the command line
# reads FIELDS in a process that must stay light (it may hand the search to a helper).

__all__ = ["FIELDS", "Filter", "check_add_metadata", "resolve_where"]

#: The fields every index can filter on, besides the user metadata given at ``add``.
FIELDS = ("source", "modality", "type", "page", "time", "modified_after", "modified_before")

_GLOB = re.compile(r"[*?\[]")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_RANGE = re.compile(r"^\s*([^-\s][^-]*?)\s*-\s*([^-\s][^-]*?)\s*$")


class _Catalog(Protocol):
    def metadata_keys(self) -> set[str]: ...
    def files_with_metadata(self) -> Iterable[tuple[str, dict[str, Any]]]: ...


@dataclass(frozen=True, slots=True)
class Filter:
    """A checked ``where``.

    Attributes:
        store: the part the vector store filters itself (``{"modality": [...]}``), or ``None``.
        sql: the whole filter as a condition on ``c`` (chunks) and ``f`` (files), with its
            parameters.
        store_only: whether ``store`` says it all, so the vector store needs no help.
    """

    store: dict[str, Any] | None
    sql: tuple[str, list[Any]]
    store_only: bool


def check_add_metadata(metadata: object) -> dict[str, Any]:
    """The metadata given to ``Index.add``, checked: JSON values under keys no field uses."""
    from mmembed.stores._validate import clean_metadata

    if not isinstance(metadata, Mapping):
        raise ConfigurationError(
            f"metadata takes a dict, like {{'course': 'biology'}}; got {type(metadata).__name__}"
        )
    taken = sorted(str(k) for k in metadata if k in FIELDS)
    if taken:
        raise ConfigurationError(
            f"metadata key {taken[0]!r} is the name of a built-in filter ({', '.join(FIELDS)}); "
            "rename it"
        )
    return clean_metadata(metadata, "add()")


def resolve_where(
    where: Mapping[str, Any] | None, catalog: _Catalog, *, cwd: str | None = None
) -> Filter | None:
    """Check ``where`` and translate it; ``None`` when it filters nothing."""
    from mmembed.stores._filters import matches
    from mmembed.stores._validate import check_where

    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise ConfigurationError(
            "where takes a dict of fields to values, like {'modality': 'pdf', 'page': 3}; got "
            f"{type(where).__name__}"
        )
    unknown = [k for k in where if k not in FIELDS]
    user_keys: set[str] = set()
    if unknown:
        user_keys = catalog.metadata_keys()
        missing = sorted(str(k) for k in unknown if k not in user_keys)
        if missing:
            given = f" and the metadata given to add(): {', '.join(sorted(user_keys))}"
            raise ConfigurationError(
                f"unknown where key {missing[0]!r}; the known keys are {', '.join(FIELDS)}"
                + (given if user_keys else " (and any key of metadata given to add())")
            )
    terms = check_where({k: _plain(k, v) for k, v in where.items()})
    if terms is None:
        return None
    base = cwd if cwd is not None else os.getcwd()
    conditions: list[str] = []
    params: list[Any] = []
    store: dict[str, Any] | None = None
    user_terms = []
    for key, values in terms:
        if key == "modality":
            modalities = [_modality(v) for v in values]
            store = {"modality": modalities}
            conditions.append("c.modality IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(modalities))
        elif key in FIELDS:
            sql, args = _FIELD_SQL[key](values, base) if values else ("0", [])
            conditions.append(sql)
            params += args
        else:
            user_terms.append((key, values))
    if user_terms:
        paths = [p for p, meta in catalog.files_with_metadata() if matches(meta, tuple(user_terms))]
        conditions.append("f.path IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(paths))
    return Filter(
        store=store,
        sql=(" AND ".join(f"({c})" for c in conditions), params),
        store_only=[k for k, _ in terms] == ["modality"],
    )


# -- the fields --------------------------------------------------------------------------------


def _plain(key: str, value: Any) -> Any:
    """Values check_where cannot take as they are, made plain: ranges, dates."""
    if isinstance(value, range):
        if key != "page":
            raise ConfigurationError(f"where[{key!r}]: a range is for pages; got {value!r}")
        return [f"{value.start}-{value.stop - 1}"] if value.step == 1 and len(value) else []
    if isinstance(value, (dt.date, dt.datetime)):
        return _epoch(value, key)
    if (
        key == "time"
        and isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return f"{value[0]}-{value[1]}"  # a (start, end) pair is one range
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(key, v) for v in value]
    return value


def _modality(value: Scalar) -> str:
    try:
        return Modality(str(value)).value
    except ValueError:
        raise ConfigurationError(
            f"where['modality'] is {value!r}; it takes {', '.join(m.value for m in Modality)}"
        ) from None


def _source(values: tuple[Scalar, ...], base: str) -> tuple[str, list[Any]]:
    parts: list[str] = []
    args: list[Any] = []
    for value in values:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"where['source'] takes paths or globs; got {value!r}")
        path = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
        if _GLOB.search(value):
            parts.append("f.path GLOB ?")
            args.append(path)
        else:
            below = path.rstrip(os.sep) + os.sep
            parts.append("f.path = ? OR substr(f.path, 1, ?) = ?")
            args += [path, len(below), below]
    return " OR ".join(f"({p})" for p in parts), args


def _type(values: tuple[Scalar, ...], _base: str) -> tuple[str, list[Any]]:
    parts, args = [], []
    for value in values:
        if not isinstance(value, str) or not value.strip(". "):
            raise ConfigurationError(
                f"where['type'] takes file extensions, like 'pdf' or '.md'; got {value!r}"
            )
        suffix = "." + value.strip().lstrip(".").lower()
        parts.append("lower(substr(f.path, -?)) = ?")
        args += [len(suffix), suffix]
    return " OR ".join(parts), args


def _page(values: tuple[Scalar, ...], _base: str) -> tuple[str, list[Any]]:
    parts, args = [], []
    for value in values:
        first, last = _span_value("page", value, _page_number)
        parts.append("c.span_kind = 'page' AND c.span_a <= ? AND c.span_b >= ?")
        args += [last, first]
    return " OR ".join(f"({p})" for p in parts), args


def _time(values: tuple[Scalar, ...], _base: str) -> tuple[str, list[Any]]:
    parts, args = [], []
    for value in values:
        start, end = _span_value("time", value, _seconds)
        if start == end:  # an instant: the chunks that hold it
            parts.append("c.span_kind = 'time' AND c.span_a <= ? AND c.span_b > ?")
        else:  # a range: the chunks that overlap it
            parts.append("c.span_kind = 'time' AND c.span_a < ? AND c.span_b > ?")
        args += [end, start]
    return " OR ".join(f"({p})" for p in parts), args


def _modified(op: str) -> Any:
    def build(values: tuple[Scalar, ...], _base: str) -> tuple[str, list[Any]]:
        key = "modified_after" if op == ">=" else "modified_before"
        if len(values) != 1:
            raise ConfigurationError(f"where[{key!r}] takes one time, got {len(values)}")
        return f"f.mtime_ns {op} ?", [int(_epoch(values[0], key) * 1e9)]

    return build


_FIELD_SQL = {
    "source": _source,
    "type": _type,
    "page": _page,
    "time": _time,
    "modified_after": _modified(">="),
    "modified_before": _modified("<"),
}


# -- values ------------------------------------------------------------------------------------


def _span_value(key: str, value: Scalar, number: Any) -> tuple[float, float]:
    """One value of ``page`` or ``time``: a number, or a ``"first-last"`` range."""
    if isinstance(value, str):
        found = _RANGE.match(value)
        if found:
            first, last = number(key, found.group(1)), number(key, found.group(2))
            if last < first:
                raise ConfigurationError(f"where[{key!r}]: {value!r} ends before it starts")
            return first, last
    one = number(key, value)
    return one, one


def _page_number(key: str, value: Scalar) -> int:
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isdigit():
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int) or text < 1:
        raise ConfigurationError(
            f"where[{key!r}] takes page numbers from 1 (12, [1, 2], range(3, 6) or '3-5'); "
            f"got {value!r}"
        )
    return text


def _seconds(key: str, value: Scalar) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        clock = _CLOCK.match(text)
        if clock:
            hours, minutes, seconds = clock.groups()
            return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            if seconds >= 0:
                return seconds
    raise ConfigurationError(
        f"where[{key!r}] takes seconds (90), a clock time ('1:30') or a range ((60, 120) or "
        f"'1:00-2:00'); got {value!r}"
    )


def _epoch(value: object, key: str) -> float:
    """A time as seconds since the epoch (naive dates and times are local)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = dt.datetime.fromisoformat(value.strip())
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day).timestamp()
    raise ConfigurationError(
        f"where[{key!r}] takes a datetime, a date, an ISO date ('2024-05-01') or seconds since "
        f"the epoch; got {value!r}"
    )
