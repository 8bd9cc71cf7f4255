"""The checks of each field kind, vectorised over a column, and what each failure tells the user.

Every field's kind comes from the catalogue; :func:`rules_for` answers, for one column, the
checks its cells must pass as ``(check name, test, messages)``: ``test`` takes the column and
returns a boolean Series (True: the cell is fine; missing cells are never asked about), and
``messages`` turns the failing cells into one message each, saying what to do.

The checks are at least as strict as the server (contract §1.3): a cell they let through is
never one the server refuses for its type or shape (``tests/cora/test_fields.py`` holds them
to that). Some are stricter on purpose: e-mail addresses must look like one, zip codes and SSNs
must be text (a number has lost its leading zeros), ids must be unique in the frame. Dict cells
have no vector form; they are walked with the catalogue's own walk of a JSON value, so an
object's keys are checked exactly as the server checks them.

>>> [name for name, _, _ in rules_for("externalId")]
['type', 'non_empty', 'unique']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from .._json_values import is_missing, json_problem, unsendable_mask
from .._wire import to_json_value
from ._columns import unknown_key_message
from ._fields import (
    E164,
    EMAIL,
    Field,
    expected,
    field_of,
    is_date_text,
    is_datetime_text,
    is_numeric_text,
    keys_of,
    value_problems,
)

__all__ = ["Rule", "objects", "rules_for", "text_mask"]

MessageFn = Callable[[str, np.ndarray], list[str]]
Rule = tuple[str, Callable[[pd.Series], pd.Series], MessageFn]


# --------------------------------------------------------------------------- vector tests


def objects(series: pd.Series) -> np.ndarray:
    """The cells of ``series`` as a 1-D object array."""
    return series.to_numpy(dtype=object)


def text_mask(series: pd.Series) -> np.ndarray:
    """True where a cell holds text (missing cells: whatever; pandera ignores them)."""
    n = len(series)
    if isinstance(series.dtype, pd.StringDtype):
        return np.ones(n, dtype=bool)
    if not pd.api.types.is_object_dtype(series.dtype):
        return np.zeros(n, dtype=bool)
    values = objects(series)
    if infer_dtype(values, skipna=True) == "string":
        return np.ones(n, dtype=bool)
    return np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=n)


def _present(series: pd.Series) -> np.ndarray:
    return ~np.asarray(series.isna().to_numpy(), dtype=bool)


def _match_mask(series: pd.Series, pattern: Any) -> np.ndarray:
    """True where a cell is text matching ``pattern`` in full (missing cells: False)."""
    n = len(series)
    dtype = series.dtype
    if not isinstance(dtype, pd.StringDtype) and not pd.api.types.is_object_dtype(dtype):
        return np.zeros(n, dtype=bool)
    values = objects(series)
    present = ~np.asarray(pd.isna(values), dtype=bool)
    out = np.zeros(n, dtype=bool)
    if isinstance(dtype, pd.StringDtype) or infer_dtype(values, skipna=True) == "string":
        # All text: map the compiled matcher straight over the cells, no per-cell isinstance.
        out[present] = np.fromiter(
            map(bool, map(pattern.fullmatch, values[present])), dtype=bool, count=present.sum()
        )
        return out
    match = pattern.fullmatch
    return np.fromiter(
        (isinstance(v, str) and match(v) is not None for v in values), dtype=bool, count=n
    )


def _text_passes(series: pd.Series, test: Callable[[str], bool]) -> np.ndarray:
    """True where a cell is text that passes ``test``; each distinct text is tested once."""
    ok = np.zeros(len(series), dtype=bool)
    text = text_mask(series) & _present(series)
    if text.any():
        codes, uniques = pd.factorize(objects(series)[text])
        good = np.fromiter(map(test, uniques), dtype=bool, count=len(uniques))
        ok[text] = good[codes]
    return ok


def _series(mask: np.ndarray, like: pd.Series) -> pd.Series:
    result: pd.Series = pd.Series(mask, index=like.index, dtype=bool)
    return result


def _test_text(s: pd.Series) -> pd.Series:
    return _series(text_mask(s), s)


def _test_non_empty(s: pd.Series) -> pd.Series:
    return _series(~text_mask(s) | (objects(s) != ""), s)


def _test_unique(s: pd.Series) -> pd.Series:
    text = text_mask(s) & _present(s)
    keys = pd.Series(objects(s)[text], dtype=object)
    dup = np.zeros(len(s), dtype=bool)
    dup[text] = keys.duplicated(keep=False).to_numpy()
    return _series(~dup, s)


def _test_e164(s: pd.Series) -> pd.Series:
    return _series(_match_mask(s, E164), s)


def _test_email(s: pd.Series) -> pd.Series:
    return _series(_match_mask(s, EMAIL), s)


def _test_date(s: pd.Series) -> pd.Series:
    return _series(_text_passes(s, is_date_text), s)


def _is_datetime_value(value: Any) -> bool:
    """A timestamp or date (sent as ISO text), or text the server reads as a datetime."""
    if isinstance(value, str):
        return is_datetime_text(value)
    if isinstance(value, dt.date | np.datetime64) and not is_missing(value):
        wire = to_json_value(value)
        return isinstance(wire, str) and is_datetime_text(wire)
    return False


def _test_datetime(s: pd.Series) -> pd.Series:
    ok = _text_passes(s, is_datetime_text)
    other = _present(s) & ~text_mask(s)
    if other.any():
        values = objects(s)
        ok[other] = np.fromiter(
            (_is_datetime_value(v) for v in values[other]), dtype=bool, count=int(other.sum())
        )
    return _series(ok, s)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.number | Decimal
    ):
        return False
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:
        return True  # an integer too large for a float: the JSON check reports it


def _test_number(s: pd.Series) -> pd.Series:
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _series(np.zeros(len(s), dtype=bool), s)
    if pd.api.types.is_integer_dtype(dtype):
        return _series(np.ones(len(s), dtype=bool), s)
    if pd.api.types.is_float_dtype(dtype):
        return _series(~np.isinf(s.to_numpy(dtype="float64", na_value=np.nan)), s)
    if not isinstance(dtype, pd.StringDtype) and not pd.api.types.is_object_dtype(dtype):
        return _series(np.zeros(len(s), dtype=bool), s)
    ok = _text_passes(s, is_numeric_text)
    other = _present(s) & ~text_mask(s)
    if other.any():
        ok[other] = np.fromiter(
            map(_is_number, objects(s)[other]), dtype=bool, count=int(other.sum())
        )
    return _series(ok, s)


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray) and all(isinstance(v, str) for v in value)


def _test_text_list(s: pd.Series) -> pd.Series:
    values = objects(s)
    return _series(
        np.fromiter((_is_text_list(v) for v in values), dtype=bool, count=len(values)), s
    )


def _test_text_or_object(s: pd.Series) -> pd.Series:
    values = objects(s)
    ok = text_mask(s) | np.fromiter(
        (isinstance(v, Mapping) and json_problem(v) is None for v in values),
        dtype=bool,
        count=len(values),
    )
    return _series(ok, s)


def _test_any(s: pd.Series) -> pd.Series:
    return _series(~unsendable_mask(s), s)


def _object_problem(field: Field, value: Any) -> str | None:
    """Why a cell for the object ``field`` cannot be sent, or None (missing counts as fine)."""
    if is_missing(value):
        return None
    path = field.path
    if not isinstance(value, Mapping):
        if field.closed:
            keys = keys_of(path)
            return (
                f"{path} must be a dict with keys among {', '.join(keys)}, not "
                f"{type(value).__name__}; or use dotted columns such as {path}.{keys[0]}"
            )
        return (
            f"{path} must hold dicts of key/values, not {type(value).__name__}; or use dotted "
            f"columns such as {path}.<key>"
        )
    problem = json_problem(value)
    if problem is not None:
        return f"this dict cannot be sent: {problem}"
    for found in value_problems(field, to_json_value(value)):
        if found.unknown is not None:
            return unknown_key_message(*found.unknown)
        return found.message
    return None


def _object_rule(field: Field) -> Rule:
    def test(s: pd.Series) -> pd.Series:
        values = objects(s)
        return _series(
            np.fromiter(
                (_object_problem(field, v) is None for v in values), dtype=bool, count=len(values)
            ),
            s,
        )

    def message(column: str, values: np.ndarray) -> list[str]:
        return [str(_object_problem(field, v)) for v in values]

    return ("structure" if field.closed else "object", test, message)


# --------------------------------------------------------------------------- messages


def _type_name(value: Any) -> str:
    return type(value).__name__


def _msg_const(text: str) -> MessageFn:
    return lambda column, values: [text.format(column=column)] * len(values)


def _msg_id_type(column: str, values: np.ndarray) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, float | np.floating) and not isinstance(v, bool):
            out.append(
                "an id must be text or a whole number; this number is not whole (or too large "
                "to be exact). Read the column as text: pd.read_csv(..., dtype={'"
                + column
                + "': str})"
            )
        else:
            out.append(f"an id must be text, not {_type_name(v)}")
    return out


def _msg_text(column: str, values: np.ndarray) -> list[str]:
    return [
        f"must be text, not {_type_name(v)}; whole numbers are converted automatically, "
        "other values need converting (e.g. df[col].astype(str))"
        for v in values
    ]


def _msg_code(column: str, values: np.ndarray) -> list[str]:
    return [
        (
            f"must be text, not {_type_name(v)}: numbers lose leading zeros (02134 → 2134). "
            f"Read the column as text: pd.read_csv(..., dtype={{{column!r}: str}})"
        )
        for v in values
    ]


def _msg_e164(column: str, values: np.ndarray) -> list[str]:
    return [
        (
            "not an E.164 phone number (+, country code, number, digits only, e.g. "
            f"+15555550111); convert with recocora.normalize_phone(df[{column!r}], region='US')"
            + ("" if isinstance(v, str) else f" (the cell holds {_type_name(v)}, not text)")
        )
        for v in values
    ]


def _msg_number(column: str, values: np.ndarray) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(
                "not a plain finite number; write it like 450.25 (no currency signs, thousands "
                "separators, 'inf' or 'nan')"
            )
        elif isinstance(v, bool | np.bool_):
            out.append("must be a number, not a boolean")
        elif isinstance(v, float | np.floating):
            out.append("infinite numbers cannot be sent; fix the value or leave the cell empty")
        else:
            out.append(f"must be a number, not {_type_name(v)}")
    return out


def _msg_date(column: str, values: np.ndarray) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, dt.datetime | np.datetime64):
            out.append(f"{column} must be a date, but this timestamp has a time of day")
        else:
            out.append(
                "not a real date written YYYY-MM-DD; convert with "
                f"pd.to_datetime(df[{column!r}]).dt.strftime('%Y-%m-%d')"
            )
    return out


def _msg_datetime(column: str, values: np.ndarray) -> list[str]:
    return [
        (
            f"must be {expected('datetime')}"
            + ("" if isinstance(v, str) else f", not {_type_name(v)}")
            + f"; convert with pd.to_datetime(df[{column!r}], utc=True), or leave the cell empty"
        )
        for v in values
    ]


def _msg_text_or_object(column: str, values: np.ndarray) -> list[str]:
    return [
        f"{column} must be text or a dict"
        + (
            f" that can be sent ({json_problem(v)})"
            if isinstance(v, Mapping)
            else f", not {_type_name(v)}"
        )
        for v in values
    ]


def _msg_any(column: str, values: np.ndarray) -> list[str]:
    return [f"cannot be sent: {json_problem(v)}" for v in values]


_RULES: Mapping[str, Sequence[Rule]] = MappingProxyType(
    {
        "id": (
            ("type", _test_text, _msg_id_type),
            (
                "non_empty",
                _test_non_empty,
                _msg_const("externalId is blank; every row needs a non-empty id"),
            ),
            ("unique", _test_unique, _msg_const("duplicate")),  # message built with the rows
        ),
        "text": (("type", _test_text, _msg_text),),
        "code": (("type", _test_text, _msg_code),),
        "phone": (("e164", _test_e164, _msg_e164),),
        "email": (
            (
                "email",
                _test_email,
                _msg_const(
                    "not an e-mail address (name@domain.tld); fix it or leave the cell empty"
                ),
            ),
        ),
        "number": (("number", _test_number, _msg_number),),
        "text_list": (
            (
                "string_list",
                _test_text_list,
                _msg_const(
                    "must be a list of text, e.g. ['vip', 'q3']; split a comma-separated column "
                    "with df[{column!r}].str.split(',')"
                ),
            ),
        ),
        "date": (("date", _test_date, _msg_date),),
        "datetime": (("datetime", _test_datetime, _msg_datetime),),
        "text_or_object": (("string_or_object", _test_text_or_object, _msg_text_or_object),),
        "any": (("json", _test_any, _msg_any),),
    }
)


def rules_for(column: str) -> Sequence[Rule]:
    """The checks the cells of ``column`` must pass (none for a column Cora does not take)."""
    field = field_of(column)
    if field is None:
        return ()
    if field.kind == "object":
        return (_object_rule(field),)
    return _RULES[field.kind]
