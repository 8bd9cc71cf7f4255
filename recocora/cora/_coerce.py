"""Columns renamed to Cora fields and normalised where a value has one obvious meaning.

:func:`prepare` is the first step of the validation (the schema's checks are the second): it
never refuses anything, it only converts what the field's kind in the catalogue makes
unambiguous, and leaves the rest for the checks to report:

- ``id`` (``externalId``): whole numbers (``123.0``, ``np.int64(123)``) become ``"123"``, text
  is stripped.
- ``text``: whole numbers become text (``bucket`` ``7`` → ``"7"``). Not ``code`` fields (zip,
  SSN): a number there has usually lost its leading zeros already.
- ``date``: timestamps and dates at midnight become ``YYYY-MM-DD``.

>>> prepare(pd.DataFrame({"bucket": [7, 8]})).to_dict("list")
{'bucket': ['7', '8']}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from .._compat import STR_DTYPE
from .._json_values import arrow_text_as_str
from ..errors import ConfigError
from ._fields import field_of

__all__ = ["EXACT_INT", "object_array", "prepare", "text_series"]

EXACT_INT = 2**53
"""Beyond this a float no longer holds every whole number exactly."""


def _whole_numbers_to_text(series: pd.Series, *, strip: bool) -> pd.Series:
    """Whole numbers → decimal text; text stripped if asked; anything else left as is."""
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        return series.str.strip() if strip else series
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return series
    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
        dtype = series.dtype
    present = ~np.asarray(series.isna().to_numpy(), dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        wide = "uint64" if dtype.kind == "u" else "int64"
        whole = present
        text = series.to_numpy(dtype=wide, na_value=0).astype(str)
    elif pd.api.types.is_float_dtype(dtype):
        numbers = series.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(numbers) & (np.abs(numbers) < EXACT_INT) & (numbers % 1 == 0)
        text = np.where(whole, numbers, 0).astype(np.int64).astype(str)
    elif pd.api.types.is_object_dtype(dtype):
        values = series.to_numpy(dtype=object)
        if not strip and not any(
            issubclass(k, int | float | np.number) and not issubclass(k, bool | np.bool_)
            for k in set(map(type, values))
        ):
            return series
        return text_series(object_array(_id_text(v, strip) for v in values), series)
    else:
        return series
    out = series.to_numpy(dtype=object).copy()
    out[whole] = text[whole]
    return text_series(out, series)


def _id_text(value: Any, strip: bool) -> Any:
    if isinstance(value, str):
        return value.strip() if strip else value
    if isinstance(value, bool | np.bool_):
        return value
    if isinstance(value, int | np.integer):
        return str(int(value))
    if (
        isinstance(value, float | np.floating)
        and np.isfinite(value)
        and value % 1 == 0
        and abs(value) < EXACT_INT
    ):
        return str(int(value))
    return value


def object_array(items: Iterable[Any]) -> np.ndarray:
    """A 1-D object array; unlike np.array, never turns list or tuple cells into a 2nd axis."""
    cells = list(items)
    return np.fromiter(cells, dtype=object, count=len(cells))


def text_series(values: np.ndarray, like: pd.Series) -> pd.Series:
    """A Series of ``values`` with ``like``'s index and name; ``str`` dtype when all text."""
    if infer_dtype(values, skipna=True) in ("string", "empty"):
        try:
            text: pd.Series = pd.Series(values, index=like.index, name=like.name,
                                        dtype=STR_DTYPE)
        except UnicodeEncodeError:
            pass  # broken UTF-16 cannot be str dtype; left as objects for validation to report
        else:
            return text
    mixed: pd.Series = pd.Series(values, index=like.index, name=like.name, dtype=object)
    return mixed


def _dates_to_text(series: pd.Series) -> pd.Series:
    """Timestamps and dates at midnight → ``YYYY-MM-DD``; anything else left as is."""
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        local = series.dt.tz_localize(None) if isinstance(dtype, pd.DatetimeTZDtype) else series
        midnight = np.asarray((local == local.dt.normalize()).to_numpy(), dtype=bool)
        out = local.to_numpy(dtype=object)
        days = np.datetime_as_string(local.to_numpy(), unit="D")
        out[midnight] = days[midnight]
        out[np.asarray(local.isna().to_numpy(), dtype=bool)] = None
        return text_series(out, series)
    if not pd.api.types.is_object_dtype(dtype):
        return series
    values = series.to_numpy(dtype=object)
    if not any(isinstance(v, dt.date | np.datetime64) for v in values):
        return series
    return text_series(object_array(_date_text(v) for v in values), series)


def _date_text(value: Any) -> Any:
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        value = pd.Timestamp(value)
    if isinstance(value, dt.datetime):
        if value.hour == value.minute == value.second == value.microsecond == 0:
            return value.strftime("%Y-%m-%d")
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def prepare(df: pd.DataFrame, columns: Mapping[Any, str] | None = None) -> pd.DataFrame:
    """A copy of ``df`` renamed to Cora fields and normalised; ``df`` is not modified.

    - ``columns`` renames ``{your column: field}``; naming a column the frame does not have
      raises :class:`~recocora.errors.ConfigError`.
    - ``externalId``: whole numbers (``123.0``, ``np.int64(123)``) become ``"123"``, text is
      stripped; anything else is left for :func:`validate` to report.
    - Other text fields: whole numbers become text (not ``zip``/``ssn``/``last4SSN``).
    - ``person.birthdate``: timestamps and dates at midnight become ``YYYY-MM-DD``.

    >>> prepare(pd.DataFrame({"id_": [7, 8], "bucket": [1, 2]}),
    ...         columns={"id_": "externalId"}).to_dict("list")
    {'externalId': ['7', '8'], 'bucket': ['1', '2']}
    """
    if columns:
        absent = [name for name in columns if name not in df.columns]
        if absent:
            raise ConfigError(
                f"columns= renames {absent!r}, which the frame does not have "
                f"(its columns: {[str(c) for c in df.columns]!r})."
            )
        out: pd.DataFrame = df.rename(columns=dict(columns))
    else:
        out = df.copy(deep=False)
    for position, name in enumerate(out.columns):
        column = out.iloc[:, position]
        as_text = arrow_text_as_str(column)
        if as_text is not column:
            out.isetitem(position, as_text.array)
        field = field_of(name) if isinstance(name, str) else None
        kind = field.kind if field is not None else None
        if kind == "id":
            _put(out, position, _whole_numbers_to_text(out.iloc[:, position], strip=True))
        elif kind == "text":
            _put(out, position, _whole_numbers_to_text(out.iloc[:, position], strip=False))
        elif kind == "date":
            _put(out, position, _dates_to_text(out.iloc[:, position]))
    return out


def _put(out: pd.DataFrame, position: int, column: pd.Series) -> None:
    try:
        out.isetitem(position, column.array)
    except UnicodeEncodeError:
        # Text with broken UTF-16 cannot become a str column: kept as objects, it reaches
        # the checks that report the cell instead of failing here.
        out.isetitem(position, column.astype(object))  # type: ignore[arg-type]

