"""One column of a frame, prepared once and converted to JSON values slice by slice.

Dtypes are inspected and missing-cell masks computed once per column; each slice then
becomes Python values in one numpy/pandas pass (timestamps through ``datetime_as_string``,
Arrow text straight from Arrow memory, categories through their converted categories).
Cells with no JSON form raise :class:`~recocora.errors.ValidationError` naming row and
column: typed columns on construction, object columns when their slice is converted.

>>> import pandas as pd
>>> column = Column(pd.Series([1.5, None, 2.0]), "currentBalance", pd.RangeIndex(3))
>>> column.values(0, 3)
([1.5, nan, 2.0], [1])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from ._json_values import (
    INFINITE,
    PLAIN,
    Unsendable,
    arrow_text,
    convert,
    is_missing,
    json_problem,
    plain_mask,
    plain_problem,
)
from ._validation import column_problem, failure_frame, validation_error
from .errors import ValidationError

__all__ = ["Column"]

_DATETIME_UNITS = ("s", "ms", "us", "ns")
_CELL_ADVICE = "Fix these cells (validating the frame first reports them before anything is sent)."


class Column:
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
                self.raise_for(
                    infinite.tolist(), self._values[infinite].tolist(), [INFINITE] * len(infinite)
                )
        elif arrow_text(dtype):
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
        bad = plain_mask(self._values)
        if bad is not None:
            where = np.flatnonzero(bad)
            values = self._values[where].tolist()
            self.raise_for(where.tolist(), values, [str(plain_problem(v)) for v in values])

    def _convert_one(self, value: Any, position: int | None) -> Any:
        try:
            return None if is_missing(value) else convert(value)
        except Unsendable as exc:
            if position is None:
                raise ValidationError(
                    f"Column {self.name!r} has a category with no JSON form: {exc}.",
                    failure_frame([column_problem(self.name, "json", str(exc))]),
                ) from None
            raise

    def raise_for(
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
        if kinds <= PLAIN:
            return cells, missing
        skip = set(missing)
        try:
            out = [
                v if type(v) in PLAIN or i in skip else convert(v) for i, v in enumerate(cells)
            ]
        except Unsendable:
            found = [(i, v, json_problem(v)) for i, v in enumerate(cells) if i not in skip]
            bad = [(a + i, v, r) for i, v, r in found if r is not None]
            self.raise_for([p for p, _, _ in bad], [v for _, v, _ in bad], [r for _, _, r in bad])
        empties = [i for i, v in enumerate(out) if type(v) is dict and not v and i not in skip]
        if empties:
            missing = sorted(skip.union(empties))
        return out, missing


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
