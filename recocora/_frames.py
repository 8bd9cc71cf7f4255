"""DataFrame rows ⇄ JSON request rows, shared by the Cora and Recotap clients.

The rules every body follows:

- A column name is a field name; a dotted name is a path into objects:
  ``person.name.first`` becomes ``{"person": {"name": {"first": ...}}}``.
- A column may also hold whole objects (dicts) for an object field, e.g. ``metadata``. It
  is deep-merged with its dotted siblings (``metadata.filenumber``); where both set the same
  leaf, **the dotted column wins** (it is the more specific statement).
- A missing cell (``NaN``, ``None``, ``pd.NA``, ``NaT``) is **left out** of the row, never
  sent as ``null`` (the APIs would overwrite stored data with it). Missing values inside a
  dict cell are left out too, and an object that ends up empty is left out as a whole.
- numpy and pandas scalars become plain JSON types: integers → ``int``, floats → ``float``,
  ``bool``, ``Decimal`` → number, timestamps → ISO 8601 strings (time-zone aware ones in UTC
  with a ``Z``), dates → ``YYYY-MM-DD``; lists, tuples and arrays become lists. Infinite
  floats, missing values inside lists, and values with no JSON form (durations, periods,
  arbitrary objects) raise :class:`~recocora.errors.ValidationError` naming row and column.

Conversion runs column-wise (one numpy/pandas pass per column), then rows are assembled
from the converted columns, so building the bodies for a million rows takes about a second.
For many chunks of one frame, build one :class:`RowBuilder` and call
:meth:`RowBuilder.rows` per slice: that converts each column once per chunk and never
materialises all rows at once.

This module also holds the failure-cases frame every validator returns (columns ``index``,
``column``, ``check``, ``value``, ``message``) and the functions around it.

>>> import pandas as pd
>>> df = pd.DataFrame({"externalId": ["a1", "a2"], "metadata.filenumber": ["F1", None]})
>>> rows_for_chunk(df)
[{'externalId': 'a1', 'metadata': {'filenumber': 'F1'}}, {'externalId': 'a2'}]
>>> dumps({"accounts": rows_for_chunk(df)})[:40]
b'{"accounts":[{"externalId":"a1","metadat'
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

import numpy as np
import orjson
import pandas as pd

from .errors import ValidationError

__all__ = [
    "FAILURE_COLUMNS",
    "RowBuilder",
    "arrow_text_as_str",
    "chunk_slices",
    "dumps",
    "failure_frame",
    "failure_message",
    "is_missing",
    "json_problem",
    "object_array",
    "rows_for_chunk",
    "to_json_value",
    "unencodable_mask",
    "unsendable_mask",
    "valid_mask",
    "validation_error",
]

FAILURE_COLUMNS = ("index", "column", "check", "value", "message")

# Types a cell can hold that already are their own JSON form.
_PLAIN: frozenset[type] = frozenset({str, int, bool})
_DATETIME_UNITS = ("s", "ms", "us", "ns")
_INFINITE = "infinite numbers cannot be sent; replace them or leave the cell empty"
_CELL_ADVICE = "Fix these cells (validating the frame first reports them before anything is sent)."
_MISSING_IN_LIST = "missing values cannot stand inside a list; remove them from the list"
_BIG_INT = (
    "integers beyond 64 bits cannot be sent exactly as JSON numbers; send them as text "
    "(str) or as a float"
)
_SURROGATE = (
    "text holding unpaired surrogate characters (broken UTF-16) cannot be sent as UTF-8 "
    "JSON; fix the text (e.g. decode the source file with the right encoding)"
)
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _plain_problem(value: Any) -> str | None:
    """Why a str or int cannot go into an orjson body: too large, or broken UTF-16."""
    if type(value) is str:
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE
        return None
    if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
        return _BIG_INT
    return None


def _plain_mask(values: np.ndarray) -> np.ndarray | None:
    """True where a plain cell (str, int, bool; missing allowed) has no JSON form; ``None``
    when none has. One C-level pass in the common case of text only."""
    cells = values.tolist()
    kinds = set(map(type, cells))
    if str not in kinds and int not in kinds:
        return None
    if int not in kinds:
        try:
            "".join([v for v in cells if type(v) is str]).encode("utf-8")
            return None
        except UnicodeEncodeError:
            pass
    bad = np.fromiter((_plain_problem(v) is not None for v in cells), dtype=bool,
                      count=len(cells))
    return bad if bad.any() else None


class _Unsendable(Exception):
    """A value has no JSON form; the text says why and what to do."""


# --------------------------------------------------------------------------- values


def is_missing(value: Any) -> bool:
    """True for the scalars that mean "no value": ``None``, ``NaN``, ``pd.NA``, ``NaT``.

    Containers (lists, dicts, arrays) are never missing, even when empty.

    >>> [is_missing(v) for v in (None, float("nan"), pd.NA, pd.NaT, 0, "", [])]
    [True, True, True, True, False, False, False]
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return False


def _iso_datetime(value: _dt.datetime) -> str:
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat() + "Z"
    return value.isoformat()


def _convert(value: Any) -> Any:
    """JSON form of one non-missing value; raises _Unsendable when there is none."""
    kind = type(value)
    if kind in _PLAIN:
        if kind is not bool:
            problem = _plain_problem(value)
            if problem is not None:
                raise _Unsendable(problem)
        return value
    if kind is float:
        if math.isinf(value):
            raise _Unsendable(_INFINITE)
        return value
    if kind is dict or isinstance(value, Mapping):
        return _convert_mapping(value)
    if kind is list or kind is tuple or isinstance(value, list | tuple | np.ndarray):
        return _convert_list(value)
    if isinstance(value, np.generic):
        if isinstance(value, np.datetime64):
            if np.isnat(value):
                raise _Unsendable("missing values (NaT) cannot stand inside a list")
            return _convert(pd.Timestamp(value))
        if isinstance(value, np.timedelta64 | np.complexfloating | np.void):
            raise _Unsendable(
                f"{kind.__name__} values cannot be sent as JSON; convert them to numbers or text"
            )
        return _convert(value.item())
    if isinstance(value, pd.Timestamp):
        # Timestamp.isoformat keeps nanoseconds, which datetime.isoformat would drop.
        if value.tzinfo is not None:
            return value.tz_convert("UTC").tz_localize(None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, _dt.datetime):
        return _iso_datetime(value)
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return _convert(float(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Unsendable("non-finite Decimal values cannot be sent")
        return int(value) if value == value.to_integral_value() else float(value)
    if is_missing(value):
        raise _Unsendable(_MISSING_IN_LIST)
    raise _Unsendable(
        f"{kind.__name__} values cannot be sent as JSON; convert them to text, numbers, "
        "lists or dicts first"
    )


def _convert_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _Unsendable(
                f"object keys must be text, found {key!r} ({type(key).__name__}); "
                "use string keys in dict cells"
            )
        if is_missing(item):
            continue
        converted = _convert(item)
        if type(converted) is dict and not converted:
            continue
        out[str(key)] = converted
    return out


def _convert_list(value: Iterable[Any]) -> list[Any]:
    out = []
    for item in value:
        if is_missing(item):
            raise _Unsendable(_MISSING_IN_LIST)
        out.append(_convert(item))
    return out


def to_json_value(value: Any) -> Any:
    """The JSON form of one cell, following the module's rules.

    A missing value or a dict that ends up empty returns ``None``, meaning "leave it out".
    A value with no JSON form raises :class:`~recocora.errors.ValidationError`.

    >>> import numpy as np
    >>> to_json_value({"a": np.int64(3), "b": float("nan"), "t": pd.Timestamp("2024-05-01")})
    {'a': 3, 't': '2024-05-01T00:00:00'}
    """
    if is_missing(value):
        return None
    try:
        converted = _convert(value)
    except _Unsendable as exc:
        raise ValidationError(
            f"Cannot send {value!r}: {exc}.",
            failure_frame(
                [
                    {
                        "index": None,
                        "column": None,
                        "check": "json",
                        "value": value,
                        "message": str(exc),
                    }
                ]
            ),
        ) from None
    if type(converted) is dict and not converted:
        return None
    return converted


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be sent as JSON, or ``None`` when it can (missing counts as fine).

    >>> json_problem(float("inf"))
    'infinite numbers cannot be sent; replace them or leave the cell empty'
    >>> json_problem({"a": [1, 2]}) is None
    True
    """
    if is_missing(value):
        return None
    try:
        _convert(value)
    except _Unsendable as exc:
        return str(exc)
    return None


def unencodable_mask(series: pd.Series) -> np.ndarray:
    """True where a cell is text with broken UTF-16 (unpaired surrogates, which neither a
    pyarrow ``str`` column nor UTF-8 JSON can hold) or an integer beyond 64 bits.

    One C-level pass over the text when every cell is fine; other cells are ignored.

    >>> unencodable_mask(pd.Series(["ok", "\\ud800", 2**70, None], dtype=object)).tolist()
    [False, True, True, False]
    """
    values = series.to_numpy(dtype=object)
    found = _plain_mask(values)
    return found if found is not None else np.zeros(len(values), dtype=bool)


def unsendable_mask(series: pd.Series) -> np.ndarray:
    """Boolean array, True where a cell of ``series`` has no JSON form (see :func:`json_problem`).

    Cheap for typed columns (one vectorised test); object columns are checked per cell only
    when they hold something other than text, integers and booleans.

    >>> unsendable_mask(pd.Series([1.0, float("inf"), None])).tolist()
    [False, True, False]
    """
    dtype = series.dtype
    n = len(series)
    if isinstance(dtype, pd.CategoricalDtype):
        cats = series.cat.categories.to_series()
        bad_cats = unsendable_mask(cats)
        codes = series.cat.codes.to_numpy()
        return np.asarray((codes >= 0) & np.append(bad_cats, False)[codes], dtype=bool)
    if pd.api.types.is_float_dtype(dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        return np.asarray(np.isinf(values), dtype=bool)
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
        found = _plain_mask(series.to_numpy(dtype=object))
        return found if found is not None else np.zeros(n, dtype=bool)
    if (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_integer_dtype(dtype)
        or isinstance(dtype, pd.StringDtype)
        or _arrow_text(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    ):
        return np.zeros(n, dtype=bool)
    if not pd.api.types.is_object_dtype(dtype):
        return np.asarray(series.notna().to_numpy(), dtype=bool)
    values = series.to_numpy(dtype=object)
    if set(map(type, values)) <= _PLAIN:
        found = _plain_mask(values)
        return found if found is not None else np.zeros(n, dtype=bool)
    return np.fromiter((json_problem(v) is not None for v in values), dtype=bool, count=n)


# --------------------------------------------------------------------------- serialising


def _orjson_default(value: Any) -> Any:
    try:
        return _convert(value)
    except _Unsendable as exc:
        raise TypeError(str(exc)) from None


def dumps(obj: Any) -> bytes:
    """Serialise a request body to the exact bytes to hash, sign and send (compact UTF-8).

    Stray numpy/pandas scalars are converted on the way. Non-finite floats must not be
    passed: orjson would write them as ``null``, which Cora stores as "clear this field".
    Rows from :func:`rows_for_chunk` never hold any.

    >>> dumps({"accounts": [{"externalId": "a1"}], "dryRun": False})
    b'{"accounts":[{"externalId":"a1"}],"dryRun":false}'
    """
    return orjson.dumps(obj, default=_orjson_default)


def chunk_slices(n: int, size: int) -> Iterator[slice]:
    """Positional slices covering ``range(n)`` in order, each at most ``size`` long.

    >>> list(chunk_slices(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# --------------------------------------------------------------------------- columns


@dataclass
class _Node:
    """One path segment: the column holding this path's own value, and deeper paths."""

    column: int | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _path_tree(columns: pd.Index) -> _Node:
    root = _Node()
    problems: list[dict[str, Any]] = []
    for pos, name in enumerate(columns):
        if not isinstance(name, str):
            problems.append(
                _column_problem(
                    name,
                    "column_name",
                    (
                        f"column names must be field names (text), not {type(name).__name__}; "
                        "rename the column"
                    ),
                )
            )
            continue
        parts = name.split(".")
        if any(not part for part in parts):
            problems.append(
                _column_problem(
                    name,
                    "column_name",
                    (
                        "a dotted column name needs a field name between every pair of dots, "
                        "e.g. 'metadata.filenumber'"
                    ),
                )
            )
            continue
        node = root
        for part in parts:
            node = node.children.setdefault(part, _Node())
        if node.column is not None:
            problems.append(
                _column_problem(
                    name,
                    "duplicate_column",
                    ("two columns have this name; keep one (df.loc[:, ~df.columns.duplicated()])"),
                )
            )
            continue
        node.column = pos
    if problems:
        raise validation_error(failure_frame(problems), advice="Rename or drop these columns.")
    return root


def _column_problem(name: Any, check: str, message: str) -> dict[str, Any]:
    return {"index": None, "column": str(name), "check": check, "value": None, "message": message}


class _Column:
    """One column, prepared once for the whole frame, converted slice by slice."""

    def __init__(self, series: pd.Series, name: str, index: pd.Index) -> None:
        self.name = name
        self._index = index
        self._mask: np.ndarray | None = None
        self._suffix = ""
        self._unit = "s"
        self._kind = "plain"
        self._cats: np.ndarray | None = None
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            self._kind = "category"
            cats = series.cat.categories
            converted = np.empty(len(cats) + 1, dtype=object)
            for i, cat in enumerate(cats):
                converted[i] = self._convert_one(cat, None)
            self._cats = converted
            self._values: np.ndarray = series.cat.codes.to_numpy()
            self._mask = self._values < 0
        elif isinstance(dtype, pd.DatetimeTZDtype):
            self._kind = "datetime"
            self._suffix = "Z"
            self._values = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
            self._mask = np.isnat(self._values)
            self._unit = _shortest_unit(self._values, self._mask)
        elif pd.api.types.is_datetime64_dtype(dtype):
            self._kind = "datetime"
            self._values = series.to_numpy()
            self._mask = np.isnat(self._values)
            self._unit = _shortest_unit(self._values, self._mask)
        elif pd.api.types.is_bool_dtype(dtype):
            self._values = series.to_numpy(dtype=bool, na_value=False)
            self._mask = _mask_or_none(series)
        elif pd.api.types.is_unsigned_integer_dtype(dtype):
            self._values = series.to_numpy(dtype="uint64", na_value=0)
            self._mask = _mask_or_none(series)
        elif pd.api.types.is_integer_dtype(dtype):
            self._values = series.to_numpy(dtype="int64", na_value=0)
            self._mask = _mask_or_none(series)
        elif pd.api.types.is_float_dtype(dtype):
            self._values = series.to_numpy(dtype="float64", na_value=np.nan)
            nan = np.isnan(self._values)
            self._mask = nan if nan.any() else None
            infinite = np.flatnonzero(np.isinf(self._values))
            if len(infinite):
                self._raise_for(
                    infinite.tolist(), self._values[infinite].tolist(), [_INFINITE] * len(infinite)
                )
        elif _arrow_text(dtype):
            # Text stays in Arrow memory and becomes Python strings one slice at a time: a
            # whole column of str objects would take several times the frame's own memory.
            self._kind = "arrow"
            self._arrow: Any = series.array.__arrow_array__()
            self._values = np.empty(0, dtype=object)
            self._mask = _mask_or_none(series)
        elif isinstance(dtype, pd.StringDtype):
            self._values = series.to_numpy(dtype=object)
            self._mask = _mask_or_none(series)
            self._check_plain()
        elif pd.api.types.is_object_dtype(dtype):
            self._kind = "object"
            self._values = series.to_numpy(dtype=object)
            mask = np.asarray(pd.isna(self._values), dtype=bool)
            self._mask = mask if mask.any() else None
            self._check_plain()
        else:
            self._kind = "object"
            self._values = series.astype(object).to_numpy(dtype=object)
            mask = np.asarray(pd.isna(self._values), dtype=bool)
            self._mask = mask if mask.any() else None

    def _check_plain(self) -> None:
        """Refuse up front text and integers orjson cannot write (the fast paths skip them)."""
        bad = _plain_mask(self._values)
        if bad is not None:
            where = np.flatnonzero(bad)
            values = self._values[where].tolist()
            self._raise_for(where.tolist(), values, [str(_plain_problem(v)) for v in values])

    def _convert_one(self, value: Any, position: int | None) -> Any:
        try:
            return None if is_missing(value) else _convert(value)
        except _Unsendable as exc:
            if position is None:
                raise ValidationError(
                    f"Column {self.name!r} has a category with no JSON form: {exc}.",
                    failure_frame([_column_problem(self.name, "json", str(exc))]),
                ) from None
            raise

    def _raise_for(
        self, positions: Iterable[int], values: list[Any], reasons: list[str]
    ) -> NoReturn:
        records = [
            {
                "index": self._index[p],
                "column": self.name,
                "check": "json",
                "value": v,
                "message": r,
            }
            for p, v, r in zip(positions, values, reasons, strict=True)
        ]
        raise validation_error(failure_frame(records), advice=_CELL_ADVICE)

    def missing(self, a: int, b: int) -> list[int]:
        if self._mask is None:
            return []
        return np.flatnonzero(self._mask[a:b]).tolist()  # type: ignore[no-any-return]

    def values(self, a: int, b: int) -> tuple[list[Any], list[int]]:
        """Converted values for rows a..b and the (relative) positions to leave out."""
        missing = self.missing(a, b)
        if self._kind == "plain":
            return self._values[a:b].tolist(), missing
        if self._kind == "arrow":
            return self._arrow.slice(a, b - a).to_pylist(), missing
        if self._kind == "category":
            assert self._cats is not None
            return self._cats[self._values[a:b]].tolist(), missing
        if self._kind == "datetime":
            unit: Any = self._unit
            text = np.datetime_as_string(self._values[a:b], unit=unit)
            if self._suffix:
                text = np.char.add(text, self._suffix)
            return text.tolist(), missing
        return self._object_values(a, b, missing)

    def _object_values(self, a: int, b: int, missing: list[int]) -> tuple[list[Any], list[int]]:
        cells: list[Any] = self._values[a:b].tolist()
        kinds = set(map(type, cells))
        if kinds <= _PLAIN:
            return cells, missing
        skip = set(missing)
        try:
            out = [
                v if type(v) in _PLAIN or i in skip else _convert(v) for i, v in enumerate(cells)
            ]
        except _Unsendable:
            found = [(i, v, json_problem(v)) for i, v in enumerate(cells) if i not in skip]
            bad = [(a + i, v, r) for i, v, r in found if r is not None]
            self._raise_for([p for p, _, _ in bad], [v for _, v, _ in bad], [r for _, _, r in bad])
        empties = [i for i, v in enumerate(out) if type(v) is dict and not v and i not in skip]
        if empties:
            missing = sorted(skip.union(empties))
        return out, missing


def object_array(n: int, value: Any) -> np.ndarray:
    """An object array holding ``value`` ``n`` times, as one shared object (``np.full``
    would make ``n`` separate copies of a string).

    >>> a = object_array(3, "not_sent")
    >>> a.tolist(), a[0] is a[2]
    (['not_sent', 'not_sent', 'not_sent'], True)
    """
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def arrow_text_as_str(series: pd.Series) -> pd.Series:
    """``series`` with pandas' ``str`` dtype when it holds text as ``pd.ArrowDtype``
    (``read_csv(dtype_backend="pyarrow")``, ``read_parquet``), else ``series`` itself, so
    that such columns are checked as the text they are. Arrow to Arrow, no Python strings.

    >>> import pyarrow as pa
    >>> arrow_text_as_str(pd.Series(["a"], dtype=pd.ArrowDtype(pa.string()))).dtype == "str"
    True
    """
    if isinstance(series.dtype, pd.ArrowDtype) and _arrow_text(series.dtype):
        return series.astype("str")
    return series


def _arrow_text(dtype: Any) -> bool:
    """Text held by Arrow: pandas' ``str`` / ``string[pyarrow]`` or ``ArrowDtype(pa.string())``."""
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage == "pyarrow"
    if isinstance(dtype, pd.ArrowDtype):
        return str(dtype.pyarrow_dtype) in ("string", "large_string")
    return False


def _mask_or_none(series: pd.Series) -> np.ndarray | None:
    mask = np.asarray(series.isna().to_numpy(), dtype=bool)
    return mask if mask.any() else None


def _shortest_unit(values: np.ndarray, mask: np.ndarray) -> str:
    """The coarsest unit that prints every timestamp of the column without loss."""
    present = values[~mask]
    native = np.datetime_data(values.dtype)[0]
    for unit in _DATETIME_UNITS:
        if unit == native or bool(np.all(present.astype(f"datetime64[{unit}]") == present)):
            return unit
    return str(native)


def _exec_factory(source: str) -> Callable[[list[str]], Callable[..., dict[str, Any]]]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<recocora._frames row maker>", "exec"), namespace)
    factory: Callable[[list[str]], Callable[..., dict[str, Any]]] = namespace["factory"]
    return factory


@functools.lru_cache(maxsize=256)
def _factory(body: str, n_values: int, n_keys: int) -> Callable[..., Callable[..., dict[str, Any]]]:
    """Compile ``make(v0, …) -> <body>`` where ``body`` is a dict display over v*/k* names.

    A dict display in generated code builds rows several times faster than
    ``dict(zip(keys, values))`` level by level, which is most of the cost of serialising
    large frames. Only argument names and indices go into the source; the keys themselves
    are bound as keyword defaults, so no column name is ever evaluated as code.
    """
    args = "".join(f"v{i}, " for i in range(n_values))
    defaults = ", ".join(f"k{i}=keys[{i}]" for i in range(n_keys))
    source = (
        "def factory(keys):\n"
        f"    def make({args}*, {defaults}):\n"
        f"        return {body}\n"
        "    return make\n"
    )
    return _exec_factory(source)


def _dict_maker(keys: list[str]) -> Callable[..., dict[str, Any]]:
    """``f(v0, …, vN) -> {keys[0]: v0, …}`` for one flat level."""
    body = "{" + ", ".join(f"k{i}: v{i}" for i in range(len(keys))) + "}"
    return _factory(body, len(keys), len(keys))(keys)


@dataclass(frozen=True)
class _Plan:
    """Builds whole rows, nested objects included, with one generated call per row.

    ``leaves`` are the generated function's arguments in order: a column, or a node that
    has its own dict column *and* dotted children (built separately, then merged).
    ``objects`` lists each nested object's path and the leaves under it, deepest first:
    an object is empty on exactly the rows where every leaf under it is missing.
    """

    make: Callable[..., dict[str, Any]]
    leaves: tuple[_Node, ...]
    leaf_paths: tuple[tuple[str, ...], ...]
    objects: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]


def _plan(root: _Node) -> _Plan:
    keys: list[str] = []
    leaves: list[_Node] = []
    leaf_paths: list[tuple[str, ...]] = []
    objects: list[tuple[tuple[str, ...], tuple[int, ...]]] = []

    def display(node: _Node, path: tuple[str, ...]) -> tuple[str, list[int]]:
        items: list[str] = []
        under: list[int] = []
        for key, child in node.children.items():
            items.append(f"k{len(keys)}: ")
            keys.append(key)
            child_path = (*path, key)
            if child.children and child.column is None:
                text, child_leaves = display(child, child_path)
                objects.append((child_path, tuple(child_leaves)))
                under.extend(child_leaves)
            else:
                text = f"v{len(leaves)}"
                under.append(len(leaves))
                leaves.append(child)
                leaf_paths.append(child_path)
            items[-1] += text
        return "{" + ", ".join(items) + "}", under

    body, _ = display(root, ())
    make = _factory(body, len(leaves), len(keys))(keys)
    objects.sort(key=lambda item: -len(item[0]))
    return _Plan(make, tuple(leaves), tuple(leaf_paths), tuple(objects))


def _delete(rows: list[Any], path: tuple[str, ...], positions: Iterable[int]) -> None:
    last = path[-1]
    if len(path) == 1:
        for i in positions:
            del rows[i][last]
        return
    head = path[:-1]
    for i in positions:
        node = rows[i]
        for key in head:
            node = node[key]
        del node[last]


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        current = base.get(key)
        if type(current) is dict and type(value) is dict:
            base[key] = _deep_merge(current, value)
        else:
            base[key] = value
    return base


class RowBuilder:
    """Turns a DataFrame into JSON-ready row dicts, one slice of rows at a time.

    Column dtypes are inspected and missing-cell masks computed once, here; each call to
    :meth:`rows` converts only the requested rows. Infinite floats and malformed column
    names raise :class:`~recocora.errors.ValidationError` on construction; cells with no
    JSON form inside object columns raise it when their slice is built.

    >>> df = pd.DataFrame({"externalId": ["a", "b", "c"], "currentBalance": [1.5, None, 2.0]})
    >>> builder = RowBuilder(df)
    >>> builder.rows(slice(1, 3))
    [{'externalId': 'b'}, {'externalId': 'c', 'currentBalance': 2.0}]
    """

    def __init__(self, df: pd.DataFrame) -> None:
        self._n = len(df)
        self._index = df.index
        self._root = _path_tree(df.columns)
        self._columns = [
            _Column(df.iloc[:, pos], str(name), df.index) for pos, name in enumerate(df.columns)
        ]
        self._plan = _plan(self._root) if self._root.children else None

    def __len__(self) -> int:
        return self._n

    def rows(self, positions: slice | None = None) -> list[dict[str, Any]]:
        """Row dicts for the rows at ``positions`` (a step-1 positional slice; all by default).

        >>> RowBuilder(pd.DataFrame({"person.name.first": ["Ada", None]})).rows()
        [{'person': {'name': {'first': 'Ada'}}}, {}]
        """
        a, b, step = (positions or slice(None)).indices(self._n)
        if step != 1:
            raise ValueError("RowBuilder.rows takes a contiguous slice (step 1)")
        b = max(a, b)
        plan = self._plan
        if plan is None:
            return [{} for _ in range(b - a)]
        args: list[list[Any]] = []
        missing: list[list[int]] = []
        for leaf in plan.leaves:
            values, absent = (
                self._assemble(leaf, a, b)
                if leaf.children
                else self._columns[leaf.column].values(a, b)  # type: ignore[index]
            )
            args.append(values)
            missing.append(absent)
        rows: list[dict[str, Any]] = list(map(plan.make, *args))
        for path, absent in zip(plan.leaf_paths, missing, strict=True):
            if absent:
                _delete(rows, path, absent)
        for path, under in plan.objects:
            empty = set(missing[under[0]])
            for leaf_index in under[1:]:
                if not empty:
                    break
                empty.intersection_update(missing[leaf_index])
            if empty:
                _delete(rows, path, sorted(empty))
        return rows

    def chunks(self, size: int) -> Iterator[tuple[slice, list[dict[str, Any]]]]:
        """``(slice, rows)`` for consecutive chunks of at most ``size`` rows, in input order.

        >>> [len(rows) for _, rows in RowBuilder(pd.DataFrame({"a": range(5)})).chunks(2)]
        [2, 2, 1]
        """
        for positions in chunk_slices(self._n, size):
            yield positions, self.rows(positions)

    def _assemble(self, node: _Node, a: int, b: int) -> tuple[list[Any], list[int]]:
        if not node.children:
            assert node.column is not None
            return self._columns[node.column].values(a, b)
        keys = list(node.children)
        lists: list[list[Any]] = []
        misses: list[list[int]] = []
        for key in keys:
            values, missing = self._assemble(node.children[key], a, b)
            lists.append(values)
            misses.append(missing)
        built: list[Any] = list(map(_dict_maker(keys), *lists))
        for key, missing in zip(keys, misses, strict=True):
            for i in missing:
                del built[i][key]
        if node.column is not None:
            self._merge_own(node.column, built, a, b)
            return built, [i for i, d in enumerate(built) if type(d) is dict and not d]
        if any(not m for m in misses):
            # A child present on every row means no row's object can be empty.
            return built, []
        return built, [i for i, d in enumerate(built) if not d]

    def _merge_own(self, column: int, built: list[Any], a: int, b: int) -> None:
        """Merge a column holding whole objects with the object built from dotted columns."""
        col = self._columns[column]
        own, own_missing = col.values(a, b)
        skip = set(own_missing)
        conflicts: list[int] = []
        for i, value in enumerate(own):
            if i in skip:
                continue
            sub = built[i]
            if not sub:
                built[i] = value
            elif type(value) is dict:
                built[i] = _deep_merge(value, sub)
            else:
                conflicts.append(i)
        if conflicts:
            col._raise_for(
                [a + i for i in conflicts],
                [own[i] for i in conflicts],
                [
                    f"this row also has values under '{col.name}.…' columns, which need "
                    f"'{col.name}' to be an object (dict); leave one of them empty"
                ]
                * len(conflicts),
            )


def rows_for_chunk(df_chunk: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready row dicts for every row of ``df_chunk``, in order.

    Equivalent to ``RowBuilder(df_chunk).rows()``; for many chunks of one large frame, build
    one :class:`RowBuilder` instead.

    >>> rows_for_chunk(pd.DataFrame({"metadata": [{"a": 1}], "metadata.b": [2]}))
    [{'metadata': {'a': 1, 'b': 2}}]
    """
    return RowBuilder(df_chunk).rows()


# --------------------------------------------------------------------------- failure cases


def failure_frame(records: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """A failure-cases frame (columns ``index, column, check, value, message``).

    ``index`` holds the input row's index label, or ``None`` for a problem with a whole
    column or the whole frame (which makes every row invalid).

    >>> failure_frame().columns.tolist()
    ['index', 'column', 'check', 'value', 'message']
    """
    rows = list(records)
    frame = pd.DataFrame(
        {name: pd.Series([r.get(name) for r in rows], dtype=object) for name in FAILURE_COLUMNS}
    )
    result: pd.DataFrame = frame.reset_index(drop=True)
    return result


def valid_mask(failure_cases: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Boolean Series over ``index``: True for rows with no failure case.

    A failure whose ``index`` is ``None`` concerns a whole column or the frame, so it
    marks every row invalid.

    >>> fc = failure_frame([{"index": "b", "column": "x", "check": "c", "value": 1,
    ...                      "message": "m"}])
    >>> valid_mask(fc, pd.Index(["a", "b"])).tolist()
    [True, False]
    """
    if len(failure_cases) == 0:
        everything: pd.Series = pd.Series(True, index=index, dtype=bool)
        return everything
    labels = failure_cases["index"].tolist()
    if any(label is None for label in labels):
        nothing: pd.Series = pd.Series(False, index=index, dtype=bool)
        return nothing
    bad = index.isin(labels)
    mask: pd.Series = pd.Series(~np.asarray(bad, dtype=bool), index=index, dtype=bool)
    return mask


def failure_message(
    failure_cases: pd.DataFrame,
    *,
    advice: str = (
        "Nothing was sent. Fix these rows and try again, or pass on_invalid='skip' "
        "to send only the valid rows."
    ),
    limit: int = 10,
    subject: str = "validation",
) -> str:
    """A readable summary of a failure-cases frame: counts, the first problems, what to do.

    Each problem reads ``row <index>, column <col>: <message> (value: ...)``; a problem with
    a whole column reads ``column <col>: <message>``.

    >>> fc = failure_frame([{"index": 3, "column": "phoneNumber", "check": "e164",
    ...                      "value": "555", "message": "not E.164"}])
    >>> print(failure_message(fc, advice="Fix it."))
    1 row failed validation (1 problem):
      row 3, column phoneNumber: not E.164 (value: '555')
    Fix it.
    """
    labels = failure_cases["index"].tolist()
    n_rows = len({_hashable(label) for label in labels if label is not None})
    whole = {
        str(column)
        for label, column in zip(labels, failure_cases["column"].tolist(), strict=True)
        if label is None
    }
    n_problems = len(failure_cases)
    parts = []
    if n_rows:
        parts.append(f"{n_rows:,} row{'s' if n_rows != 1 else ''}")
    if whole:
        parts.append(f"{len(whole)} column{'s' if len(whole) != 1 else ''}")
    lines = [
        f"{' and '.join(parts) or 'Nothing'} failed {subject} "
        f"({n_problems:,} problem{'s' if n_problems != 1 else ''}):"
    ]
    groups = failure_cases.groupby(["column", "check"], dropna=False, sort=False).size()
    if len(groups) > 1:
        # Thousands of rows often share a few problems: say which, before the examples.
        ranked = groups.sort_values(ascending=False, kind="stable")
        counts = ", ".join(
            f"{key[0]} ({key[1]}) x{n:,}"  # type: ignore[index]
            for key, n in ranked.items()
        )
        lines.append(f"  by column: {counts}")
    # Show the first case of each kind of problem first, then the rest in row order.
    firsts = failure_cases.drop_duplicates(["column", "check"]).index
    order = firsts.append(failure_cases.index.difference(firsts, sort=False))
    for record in failure_cases.loc[order[:limit]].to_dict("records"):
        where = "" if record["index"] is None else f"row {record['index']}, "
        column = record["column"]
        where += "frame" if column is None else f"column {column}"
        value = record["value"]
        shown = ""
        if record["index"] is not None and not _is_missing_shown(value):
            text = repr(value)
            shown = f" (value: {text if len(text) <= 60 else text[:57] + '...'})"
        lines.append(f"  {where}: {record['message']}{shown}")
    if n_problems > limit:
        lines.append(f"  ... and {n_problems - limit:,} more (all of them are in .failure_cases)")
    lines.append(advice)
    return "\n".join(lines)


def _is_missing_shown(value: Any) -> bool:
    try:
        return is_missing(value)
    except (TypeError, ValueError):
        return False


def _hashable(label: Any) -> Hashable:
    return label if isinstance(label, Hashable) else repr(label)


def validation_error(
    failure_cases: pd.DataFrame,
    *,
    advice: str | None = None,
    subject: str = "validation",
) -> ValidationError:
    """A :class:`~recocora.errors.ValidationError` carrying ``failure_cases`` with a summary.

    >>> err = validation_error(failure_frame([{"index": 0, "column": "a", "check": "c",
    ...                                        "value": None, "message": "m"}]))
    >>> str(err).splitlines()[0]
    '1 row failed validation (1 problem):'
    """
    kwargs: dict[str, Any] = {"subject": subject}
    if advice is not None:
        kwargs["advice"] = advice
    return ValidationError(failure_message(failure_cases, **kwargs), failure_cases)
