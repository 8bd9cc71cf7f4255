"""The JSON form of one value, and which values have none.

- A missing value (``None``, ``NaN``, ``pd.NA``, ``NaT``) is no value: :func:`is_missing`.
- numpy and pandas scalars become plain JSON types: integers → ``int``, floats → ``float``,
  ``bool``, ``Decimal`` → number, timestamps → ISO 8601 strings (time-zone aware ones in UTC
  with a ``Z``), dates → ``YYYY-MM-DD``; lists, tuples and arrays become lists; dicts become
  objects with their missing values left out.
- Infinite floats, missing values inside lists, integers beyond 64 bits, text with broken
  UTF-16, and values with no JSON form (durations, periods, arbitrary objects) cannot be
  sent: :func:`json_problem` says why, :func:`unsendable_mask` finds them in a whole column
  (one vectorised test for typed columns).

Rows are assembled from these values by ``recocora._wire``; validators use the masks to
report such cells before anything is sent.

>>> json_problem(float("inf"))
'infinite numbers cannot be sent; replace them or leave the cell empty'
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from ._compat import STR_DTYPE, is_arrow_text_storage

__all__ = [
    "INFINITE",
    "PLAIN",
    "Unsendable",
    "arrow_text",
    "arrow_text_as_str",
    "convert",
    "is_missing",
    "json_problem",
    "plain_mask",
    "plain_problem",
    "unencodable_mask",
    "unsendable_mask",
]


#: Types a cell can hold that already are their own JSON form.
PLAIN: frozenset[type] = frozenset({str, int, bool})
INFINITE = "infinite numbers cannot be sent; replace them or leave the cell empty"
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


def plain_problem(value: Any) -> str | None:
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


def plain_mask(values: np.ndarray) -> np.ndarray | None:
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
    bad = np.fromiter((plain_problem(v) is not None for v in cells), dtype=bool,
                      count=len(cells))
    return bad if bad.any() else None


class Unsendable(Exception):
    """A value has no JSON form; the text says why and what to do (internal: callers
    turn it into a :class:`~recocora.errors.ValidationError` naming row and column)."""


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


def convert(value: Any) -> Any:
    """JSON form of one non-missing value; raises Unsendable when there is none."""
    kind = type(value)
    if kind in PLAIN:
        if kind is not bool:
            problem = plain_problem(value)
            if problem is not None:
                raise Unsendable(problem)
        return value
    if kind is float:
        if math.isinf(value):
            raise Unsendable(INFINITE)
        return value
    if kind is dict or isinstance(value, Mapping):
        return _convert_mapping(value)
    if kind is list or kind is tuple or isinstance(value, list | tuple | np.ndarray):
        return _convert_list(value)
    if isinstance(value, np.generic):
        if isinstance(value, np.datetime64):
            if np.isnat(value):
                raise Unsendable("missing values (NaT) cannot stand inside a list")
            return convert(pd.Timestamp(value))
        if isinstance(value, np.timedelta64 | np.complexfloating | np.void):
            raise Unsendable(
                f"{kind.__name__} values cannot be sent as JSON; convert them to numbers or text"
            )
        return convert(value.item())
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
        return convert(float(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise Unsendable("non-finite Decimal values cannot be sent")
        return int(value) if value == value.to_integral_value() else float(value)
    if is_missing(value):
        raise Unsendable(_MISSING_IN_LIST)
    raise Unsendable(
        f"{kind.__name__} values cannot be sent as JSON; convert them to text, numbers, "
        "lists or dicts first"
    )


def _convert_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise Unsendable(
                f"object keys must be text, found {key!r} ({type(key).__name__}); "
                "use string keys in dict cells"
            )
        if is_missing(item):
            continue
        converted = convert(item)
        if type(converted) is dict and not converted:
            continue
        out[str(key)] = converted
    return out


def _convert_list(value: Iterable[Any]) -> list[Any]:
    out = []
    for item in value:
        if is_missing(item):
            raise Unsendable(_MISSING_IN_LIST)
        out.append(convert(item))
    return out


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
        convert(value)
    except Unsendable as exc:
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
    found = plain_mask(values)
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
        found = plain_mask(series.to_numpy(dtype=object))
        return found if found is not None else np.zeros(n, dtype=bool)
    if (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_integer_dtype(dtype)
        or isinstance(dtype, pd.StringDtype)
        or arrow_text(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    ):
        return np.zeros(n, dtype=bool)
    if not pd.api.types.is_object_dtype(dtype):
        return np.asarray(series.notna().to_numpy(), dtype=bool)
    values = series.to_numpy(dtype=object)
    if set(map(type, values)) <= PLAIN:
        found = plain_mask(values)
        return found if found is not None else np.zeros(n, dtype=bool)
    return np.fromiter((json_problem(v) is not None for v in values), dtype=bool, count=n)


def arrow_text_as_str(series: pd.Series) -> pd.Series:
    """``series`` with pandas' ``str`` dtype when it holds text as ``pd.ArrowDtype``
    (``read_csv(dtype_backend="pyarrow")``, ``read_parquet``), else ``series`` itself, so
    that such columns are checked as the text they are. Arrow to Arrow, no Python strings.

    >>> import pyarrow as pa
    >>> arrow_text_as_str(pd.Series(["a"], dtype=pd.ArrowDtype(pa.string()))).dtype == STR_DTYPE
    True
    """
    if isinstance(series.dtype, pd.ArrowDtype) and arrow_text(series.dtype):
        return series.astype(STR_DTYPE)
    return series


def arrow_text(dtype: Any) -> bool:
    """Text held by Arrow: pandas' ``str`` / ``string[pyarrow]`` or ``ArrowDtype(pa.string())``."""
    if isinstance(dtype, pd.StringDtype):
        return is_arrow_text_storage(dtype)
    if isinstance(dtype, pd.ArrowDtype):
        return str(dtype.pyarrow_dtype) in ("string", "large_string")
    return False
