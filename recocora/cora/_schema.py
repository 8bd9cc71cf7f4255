"""What a Cora account row may hold, checked on the whole frame before anything is sent.

Three steps, all vectorised (no Python loop per row except over cells holding dicts or
lists, which have no vector form):

1. :func:`prepare` renames columns (``columns=``) and normalises what has one obvious
   meaning: ``externalId`` ``123.0`` (a CSV read as floats) becomes ``"123"``, whole numbers
   in text fields become text (``bucket`` ``7`` → ``"7"``), and ``person.birthdate``
   timestamps become ``YYYY-MM-DD``. The input frame is never modified.
2. :func:`validate` runs a pandera schema (lazy, so every failure is collected) and returns
   a failure-cases frame: ``index`` (the input row's label, ``None`` for a problem with a
   whole column), ``column``, ``check`` (a short machine name), ``value`` and ``message``
   (what is wrong and what to do). It is empty when every row is valid.
3. :func:`valid_mask` and :func:`validation_error` turn that frame into the rows to send or
   the error to raise.

Choices worth knowing:

- Whole numbers in text fields are converted (``7`` → ``"7"``), matching what the user
  clearly meant, *except* in ``address.zip``, ``person.ssn`` and ``person.last4SSN``, where
  a number has usually lost its leading zeros already (``02134`` → ``2134``): those are
  rejected with a hint to read the column as text. Non-whole numbers in text fields are
  rejected.
- A problem with a whole column (unknown or read-only column, duplicate column name, a
  required column absent, a non-unique index) makes every row invalid: sending rows
  without that column would not be what was asked.
- ``mode="upsert"`` checks only what is wrong on any row; whether a *new* account has its
  create-only fields is the server's call (it answers ``MISSING_REQUIRED_FIELD`` per row).
  ``mode="create"`` also requires ``phoneNumber``, ``portfolioId`` and
  ``metadata.filenumber`` (from a dotted column or a ``metadata`` dict) on every row.

pandera expresses every per-column rule (one ``Column`` per known field, a regex ``Column``
per free-form object, ``strict=True`` for unknown columns; ``mode="create"`` validates a
derived ``metadata.filenumber`` column that merges the dotted column with the ``metadata``
dicts). Three checks are plain vectorised code instead, and say so here: duplicate column
names (a pandera schema cannot address two columns of one name), a non-unique index
(results are joined back to the input by index), and a non-dict value in a column whose
dotted sub-columns are set on the same row (``originalCreditor`` text plus
``originalCreditor.name``): a pandera frame-level check would report every cell of the row
rather than the one at fault.

>>> import pandas as pd
>>> df = pd.DataFrame({"File #": [101.0, 102.0], "phoneNumber": ["+15555550111", "555-0112"]})
>>> prepared = prepare(df, columns={"File #": "externalId"})
>>> prepared["externalId"].tolist()
['101', '102']
>>> validate(prepared)[["index", "column", "check"]].to_dict("records")
[{'index': 1, 'column': 'phoneNumber', 'check': 'e164'}]
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
import phonenumbers
from pandas.api.types import infer_dtype

from .._compat import STR_DTYPE
from .._json_values import (
    arrow_text_as_str,
    is_missing,
    json_problem,
    unencodable_mask,
    unsendable_mask,
)
from .._validation import (
    FAILURE_COLUMNS,
    failure_frame,
    failure_message,
    valid_mask,
    validation_error,
)
from ..errors import ConfigError

__all__ = [
    "CREATE_REQUIRED",
    "FIELDS",
    "FREE_FORM_OBJECTS",
    "READ_ONLY",
    "STRUCTURED_OBJECTS",
    "SUBFIELDS",
    "Kind",
    "check_frame",
    "failure_message",
    "field_kind",
    "normalize_phone",
    "prepare",
    "valid_mask",
    "validate",
    "validation_error",
]

Kind = Literal[
    "id",  # externalId: non-empty text, unique in the frame
    "string",  # text; whole numbers are converted to text by prepare()
    "code",  # text that may start with 0 (zip, SSN): numbers are refused
    "phone",  # E.164 text
    "email",  # text shaped like an e-mail address
    "number",  # finite number or numeric text
    "string_list",  # list of text
    "date",  # YYYY-MM-DD text (prepare() formats timestamps)
    "object",  # dict with free-form keys
    "structured",  # dict with the documented keys only
    "string_or_object",  # text, or a dict with free-form keys
    "free",  # any JSON value, under a free-form object (metadata.<anything>)
]

FIELDS: Mapping[str, Kind] = MappingProxyType(
    {
        "externalId": "id",
        "portfolioId": "string",
        "bucket": "string",
        "phoneNumber": "phone",
        "metadata": "object",
        "status": "string",
        "clientStatus": "string",
        "emailAddress": "email",
        "person": "structured",
        "address": "structured",
        "history": "object",
        "typeOfDebt": "string",
        "compliance": "object",
        "paymentRules": "object",
        "contactInfo": "object",
        "smsOptOut": "object",
        "bank": "string",
        "client": "string",
        "originalCreditor": "string_or_object",
        "currentBalance": "number",
        "tags": "string_list",
    }
)
"""Top-level fields a client may write (contract §1.3), with their kinds."""

SUBFIELDS: Mapping[str, Kind] = MappingProxyType(
    {
        "person.name": "structured",
        "person.name.first": "string",
        "person.name.last": "string",
        "person.birthdate": "date",
        "person.ssn": "code",
        "person.last4SSN": "code",
        "address.street": "string",
        "address.additionalStreet": "string",
        "address.city": "string",
        "address.state": "string",
        "address.zip": "code",
        "address.country": "string",
    }
)
"""The documented keys of the structured objects, as dotted paths."""

STRUCTURED_OBJECTS: frozenset[str] = frozenset(
    path for path, kind in {**FIELDS, **SUBFIELDS}.items() if kind == "structured"
)
"""Objects whose keys are fixed (``person``, ``person.name``, ``address``)."""

FREE_FORM_OBJECTS: frozenset[str] = frozenset(
    {
        "metadata",
        "history",
        "compliance",
        "paymentRules",
        "contactInfo",
        "smsOptOut",
        "originalCreditor",
    }
)
"""Objects whose keys are free-form: ``metadata.<anything>`` is accepted."""

READ_ONLY: frozenset[str] = frozenset(
    {
        "id",
        "organizationId",
        "status_category",
        "currentEmailAddressId",
        "emailAddressIds",
        "createdAt",
        "updatedAt",
    }
)
"""Server-managed fields; a column with one of these names is refused."""

CREATE_REQUIRED: tuple[str, ...] = ("phoneNumber", "portfolioId", "metadata.filenumber")
"""Fields every row needs with ``mode="create"`` (the server needs them for a new account)."""

_E164 = re.compile(r"\+[1-9]\d{0,14}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EXACT_INT = 2**53  # beyond this a float no longer holds every whole number exactly

_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "phone": "phoneNumber",
        "mobile": "phoneNumber",
        "email": "emailAddress",
        "balance": "currentBalance",
        "dob": "person.birthdate",
        "dateofbirth": "person.birthdate",
        "firstname": "person.name.first",
        "lastname": "person.name.last",
        "zipcode": "address.zip",
        "postalcode": "address.zip",
        "postcode": "address.zip",
        "filenumber": "metadata.filenumber",
        "portfolio": "portfolioId",
        "tag": "tags",
    }
)


# --------------------------------------------------------------------------- field lookup


def field_kind(column: str) -> Kind | None:
    """The kind of value a column must hold, or ``None`` for a column Cora does not accept.

    >>> field_kind("person.name.first"), field_kind("metadata.anything"), field_kind("nope")
    ('string', 'free', None)
    """
    if column in FIELDS:
        return FIELDS[column]
    if column in SUBFIELDS:
        return SUBFIELDS[column]
    top, dot, rest = column.partition(".")
    if dot and rest and top in FREE_FORM_OBJECTS and all(rest.split(".")):
        return "free"
    return None


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _candidates() -> dict[str, str]:
    """Normalised spelling → field path, for suggestions."""
    out: dict[str, str] = {}
    for path in (*FIELDS, *SUBFIELDS):
        if path in STRUCTURED_OBJECTS and "." in path:
            continue  # "name" alone should not point at the person.name object
        parts = path.split(".")
        out.setdefault(_norm(parts[-1]), path)
        if len(parts) > 1:
            out.setdefault(_norm(parts[-1] + parts[-2]), path)  # name.first → "firstname"
    for path in (*FIELDS, *SUBFIELDS):
        out[_norm(path)] = path
    for alias, path in _ALIASES.items():
        out.setdefault(alias, path)
    return out


_SUGGEST = _candidates()


def _suggest(column: str, within: str | None = None) -> str | None:
    """The field a user probably meant, or None."""
    pool = {
        norm: path
        for norm, path in _SUGGEST.items()
        if within is None or path.startswith(within + ".")
    }
    key = _norm(column if within is None else column[len(within) + 1 :])
    if not key:
        return None
    if key in pool:
        return pool[key]
    if within is not None:
        key = _norm(column[len(within) + 1 :].split(".")[-1])
        if key in pool:
            return pool[key]
    if len(key) >= 4:
        containing = sorted({p for n, p in pool.items() if key in n})
        if len(containing) == 1:
            return containing[0]
    close = difflib.get_close_matches(key, list(pool), n=1, cutoff=0.75)
    return pool[close[0]] if close else None


def _column_message(column: str) -> tuple[str, str]:
    """(check, message) for a column Cora does not accept."""
    if column in READ_ONLY:
        why = (
            "the organisation comes from your API key, so Cora refuses organizationId"
            if column == "organizationId"
            else f"{column} is managed by the server and read-only"
        )
        hint = (
            "; if these are your own ids, rename the column: columns={'id': 'externalId'}"
            if column == "id"
            else ""
        )
        return "read_only", f"{why}. Drop the column (df.drop(columns=[{column!r}])){hint}."
    top, dot, _ = column.partition(".")
    if dot and top in STRUCTURED_OBJECTS:
        owner = max(
            (o for o in STRUCTURED_OBJECTS if column.startswith(o + ".")), key=len, default=top
        )
        keys = [
            p[len(owner) + 1 :]
            for p in SUBFIELDS
            if p.startswith(owner + ".") and p not in STRUCTURED_OBJECTS
        ]
        guess = _suggest(column, within=owner)
        did = f"did you mean {guess!r}? " if guess else ""
        return "unknown_column", (
            f"{owner} has no key {column[len(owner) + 1 :]!r}; {did}its keys are "
            f"{', '.join(keys)}. Rename the column, or drop it."
        )
    if dot and top in FIELDS:
        return "unknown_column", (
            f"{top} is not an object field, so {column!r} cannot be sent; "
            "rename the column, or put free-form data under metadata.<key>."
        )
    if dot and top in FREE_FORM_OBJECTS:
        return "unknown_column", (
            "a dotted column name needs a key between every pair of dots, e.g. 'metadata.source'."
        )
    guess = _suggest(column)
    if guess is not None:
        return "unknown_column", (
            f"{column!r} is not a Cora account field; did you mean {guess!r}? "
            f"Rename it with columns={{{column!r}: {guess!r}}}, or drop the column."
        )
    return "unknown_column", (
        f"{column!r} is not a Cora account field. Rename it to a field "
        f"({', '.join(sorted(FIELDS))}), put it under metadata (columns={{{column!r}: "
        f"'metadata.{_norm(column) or 'key'}'}}), or drop it."
    )


# --------------------------------------------------------------------------- prepare


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
            whole = np.isfinite(numbers) & (np.abs(numbers) < _EXACT_INT) & (numbers % 1 == 0)
        text = np.where(whole, numbers, 0).astype(np.int64).astype(str)
    elif pd.api.types.is_object_dtype(dtype):
        values = series.to_numpy(dtype=object)
        if not strip and not any(
            issubclass(k, int | float | np.number) and not issubclass(k, bool | np.bool_)
            for k in set(map(type, values))
        ):
            return series
        return _text_series(_object_array(_id_text(v, strip) for v in values), series)
    else:
        return series
    out = series.to_numpy(dtype=object).copy()
    out[whole] = text[whole]
    return _text_series(out, series)


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
        and abs(value) < _EXACT_INT
    ):
        return str(int(value))
    return value


def _object_array(items: Iterable[Any]) -> np.ndarray:
    """A 1-D object array; unlike np.array, never turns list or tuple cells into a 2nd axis."""
    cells = list(items)
    return np.fromiter(cells, dtype=object, count=len(cells))


def _text_series(values: np.ndarray, like: pd.Series) -> pd.Series:
    """A Series of ``values`` with ``like``'s index and name; ``str`` dtype when all text."""
    if infer_dtype(values, skipna=True) in ("string", "empty"):
        try:
            text: pd.Series = pd.Series(values, index=like.index, name=like.name, dtype=STR_DTYPE)
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
        return _text_series(out, series)
    if not pd.api.types.is_object_dtype(dtype):
        return series
    values = series.to_numpy(dtype=object)
    if not any(isinstance(v, dt.date | np.datetime64) for v in values):
        return series
    return _text_series(_object_array(_date_text(v) for v in values), series)


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
        kind = field_kind(name) if isinstance(name, str) else None
        if kind == "id":
            _put(out, position, _whole_numbers_to_text(out.iloc[:, position], strip=True))
        elif kind == "string":
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


# --------------------------------------------------------------------------- vector tests


def _objects(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=object)


def _text_mask(series: pd.Series) -> np.ndarray:
    """True where a cell holds text (missing cells: whatever; pandera ignores them)."""
    n = len(series)
    if isinstance(series.dtype, pd.StringDtype):
        return np.ones(n, dtype=bool)
    if not pd.api.types.is_object_dtype(series.dtype):
        return np.zeros(n, dtype=bool)
    values = _objects(series)
    if infer_dtype(values, skipna=True) == "string":
        return np.ones(n, dtype=bool)
    return np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=n)


def _match_mask(series: pd.Series, pattern: re.Pattern[str]) -> np.ndarray:
    """True where a cell is text matching ``pattern`` in full (missing cells: False)."""
    n = len(series)
    dtype = series.dtype
    if not isinstance(dtype, pd.StringDtype) and not pd.api.types.is_object_dtype(dtype):
        return np.zeros(n, dtype=bool)
    values = _objects(series)
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


def _series(mask: np.ndarray, like: pd.Series) -> pd.Series:
    result: pd.Series = pd.Series(mask, index=like.index, dtype=bool)
    return result


def _test_text(s: pd.Series) -> pd.Series:
    return _series(_text_mask(s), s)


def _test_non_empty(s: pd.Series) -> pd.Series:
    values = _objects(s)
    return _series(~_text_mask(s) | (values != ""), s)


def _test_unique(s: pd.Series) -> pd.Series:
    text = _text_mask(s) & ~np.asarray(s.isna().to_numpy(), dtype=bool)
    keys = pd.Series(_objects(s)[text], dtype=object)
    dup = np.zeros(len(s), dtype=bool)
    dup[text] = keys.duplicated(keep=False).to_numpy()
    return _series(~dup, s)


def _test_e164(s: pd.Series) -> pd.Series:
    return _series(_match_mask(s, _E164), s)


def _test_email(s: pd.Series) -> pd.Series:
    return _series(_match_mask(s, _EMAIL), s)


def _test_date(s: pd.Series) -> pd.Series:
    ok = np.zeros(len(s), dtype=bool)
    text = _text_mask(s) & ~np.asarray(s.isna().to_numpy(), dtype=bool)
    if text.any():
        # Birthdates repeat a lot: check each distinct text once.
        codes, uniques = pd.factorize(_objects(s)[text])
        distinct = pd.Series(uniques, dtype=object)
        good = _match_mask(distinct, _DATE)
        if good.any():
            real = pd.to_datetime(distinct[good], format="%Y-%m-%d", errors="coerce")
            good[good] = real.notna().to_numpy()
        ok[text] = good[codes]
    return _series(ok, s)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number | Decimal) and not isinstance(
        value, bool | np.bool_
    )


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
    values = _objects(s)
    text = _text_mask(s)
    # Numbers and numeric text both go through to_numeric; anything else stays NaN (invalid).
    usable = text | np.fromiter((_is_number(v) for v in values), dtype=bool, count=len(values))
    parsed = np.full(len(values), np.nan)
    if usable.any():
        parsed[usable] = pd.to_numeric(
            pd.Series(values[usable], dtype=object).map(
                lambda v: float(v) if isinstance(v, Decimal) else v
            ),
            errors="coerce",
        )
    return _series(np.isfinite(parsed), s)


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray) and all(isinstance(v, str) for v in value)


def _test_string_list(s: pd.Series) -> pd.Series:
    values = _objects(s)
    return _series(
        np.fromiter((_is_text_list(v) for v in values), dtype=bool, count=len(values)), s
    )


def _object_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None if is_missing(value) else "not a dict"
    return json_problem(value)


def _test_object(s: pd.Series) -> pd.Series:
    values = _objects(s)
    return _series(
        np.fromiter((_object_problem(v) is None for v in values), dtype=bool, count=len(values)),
        s,
    )


def _test_string_or_object(s: pd.Series) -> pd.Series:
    values = _objects(s)
    ok = _text_mask(s) | np.fromiter(
        (isinstance(v, Mapping) and json_problem(v) is None for v in values),
        dtype=bool,
        count=len(values),
    )
    return _series(ok, s)


def _test_free(s: pd.Series) -> pd.Series:
    return _series(~unsendable_mask(s), s)


def _structured_problem(value: Any, path: str) -> str | None:
    """Why a dict cell for a structured object (person, address, person.name) is wrong."""
    keys = [p[len(path) + 1 :] for p in SUBFIELDS if p.rpartition(".")[0] == path]
    if not isinstance(value, Mapping):
        return (
            f"{path} must be a dict with keys among {', '.join(keys)}, not "
            f"{type(value).__name__}; or use dotted columns such as {path}.{keys[0]}"
        )
    for key, item in value.items():
        if is_missing(item):
            continue
        sub = f"{path}.{key}"
        kind = SUBFIELDS.get(sub) if isinstance(key, str) and "." not in key else None
        if kind is None:
            guess = _suggest(sub, within=path) if isinstance(key, str) else None
            did = f"; did you mean {guess.rsplit('.', 1)[-1]!r}?" if guess else ""
            return f"{path} has no key {key!r}{did} (its keys: {', '.join(keys)})"
        if kind == "structured":
            problem = _structured_problem(item, sub)
            if problem:
                return problem
        elif kind in ("string", "code") and not isinstance(item, str):
            return f"{sub} must be text, not {type(item).__name__}"
        elif kind == "date" and not (isinstance(item, str) and _is_date_text(item)):
            return f"{sub} must be a date written YYYY-MM-DD (text), not {item!r}"
    return json_problem(value)


def _is_date_text(text: str) -> bool:
    return _DATE.fullmatch(text) is not None and not pd.isna(
        pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    )


def _structured_test(path: str) -> Callable[[pd.Series], pd.Series]:
    def test(s: pd.Series) -> pd.Series:
        values = _objects(s)
        return _series(
            np.fromiter(
                (is_missing(v) or _structured_problem(v, path) is None for v in values),
                dtype=bool,
                count=len(values),
            ),
            s,
        )

    return test


# --------------------------------------------------------------------------- messages


def _type_name(value: Any) -> str:
    return type(value).__name__


def _msg_const(text: str) -> Callable[[str, np.ndarray], list[str]]:
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
            out.append("a birthdate must be a date, but this timestamp has a time of day")
        else:
            out.append(
                "not a real date written YYYY-MM-DD; convert with "
                f"pd.to_datetime(df[{column!r}]).dt.strftime('%Y-%m-%d')"
            )
    return out


def _msg_object(column: str, values: np.ndarray) -> list[str]:
    out = []
    for v in values:
        problem = _object_problem(v)
        if problem == "not a dict":
            out.append(
                f"{column} must hold dicts of key/values, not {_type_name(v)}; or use dotted "
                f"columns such as {column}.<key>"
            )
        else:
            out.append(f"this dict cannot be sent: {problem}")
    return out


def _msg_string_or_object(column: str, values: np.ndarray) -> list[str]:
    return [
        f"{column} must be text or a dict"
        + (
            f" that can be sent ({json_problem(v)})"
            if isinstance(v, Mapping)
            else f", not {_type_name(v)}"
        )
        for v in values
    ]


def _msg_free(column: str, values: np.ndarray) -> list[str]:
    return [f"cannot be sent: {json_problem(v)}" for v in values]


def _msg_structured(path: str) -> Callable[[str, np.ndarray], list[str]]:
    def message(column: str, values: np.ndarray) -> list[str]:
        return [str(_structured_problem(v, path)) for v in values]

    return message


_MessageFn = Callable[[str, np.ndarray], list[str]]
_Rule = tuple[str, Callable[[pd.Series], pd.Series], _MessageFn]

_RULES: Mapping[str, Sequence[_Rule]] = MappingProxyType(
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
        "string": (("type", _test_text, _msg_text),),
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
        "string_list": (
            (
                "string_list",
                _test_string_list,
                _msg_const(
                    "must be a list of text, e.g. ['vip', 'q3']; split a comma-separated column "
                    "with df[{column!r}].str.split(',')"
                ),
            ),
        ),
        "date": (("date", _test_date, _msg_date),),
        "object": (("object", _test_object, _msg_object),),
        "string_or_object": (("string_or_object", _test_string_or_object, _msg_string_or_object),),
        "free": (("json", _test_free, _msg_free),),
    }
)


def _rules_for(column: str) -> Sequence[_Rule]:
    kind = field_kind(column)
    if kind == "structured":
        return (("structure", _structured_test(column), _msg_structured(column)),)
    return _RULES.get(kind or "", ())


def _required_message(column: str, mode: str) -> str:
    if column == "externalId":
        return "externalId is required on every row (it is how Cora matches accounts)"
    return (
        f"mode='create' needs {column} on every row (Cora cannot create an account without "
        "it); fill it in, or use mode='upsert' if these accounts may already exist"
    )


def _required_column_message(column: str, mode: str) -> str:
    if column == "externalId":
        return (
            "the frame has no externalId column; every row needs one. Rename yours with "
            "columns={'<your id column>': 'externalId'}"
        )
    source = (
        " (a metadata.filenumber column, or a metadata column of dicts with a 'filenumber' key)"
        if column == "metadata.filenumber"
        else ""
    )
    return (
        f"mode='create' needs a {column} column{source}; add it, or use mode='upsert' "
        "if these accounts may already exist"
    )


# --------------------------------------------------------------------------- validate


def _schema(columns: Sequence[str], mode: str) -> pa.DataFrameSchema:
    specs: dict[str, pa.Column] = {}
    required = {"externalId", *(CREATE_REQUIRED if mode == "create" else ())}
    for name in (*FIELDS, *SUBFIELDS, *(c for c in columns if field_kind(c) == "free")):
        if name in specs:
            continue
        specs[name] = pa.Column(
            nullable=name not in required,
            required=name in required,
            checks=[pa.Check(test, name=check) for check, test, _ in _rules_for(name)],
        )
    if mode == "create" and "metadata.filenumber" not in specs:
        specs["metadata.filenumber"] = pa.Column(
            nullable=False,
            required=True,
            checks=[pa.Check(test, name=check) for check, test, _ in _rules_for("metadata.x")],
        )
    return pa.DataFrameSchema(specs, strict=True)


def _view(df: pd.DataFrame, mode: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The frame pandera sees: one column per name, positional index, derived columns."""
    problems: list[dict[str, Any]] = []
    names = [c if isinstance(c, str) else str(c) for c in df.columns]
    seen: set[str] = set()
    keep: list[int] = []
    for position, name in enumerate(names):
        if name in seen:
            problems.append(
                _frame_problem(
                    name,
                    "duplicate_column",
                    (
                        "two columns have this name (after renaming); keep one, e.g. "
                        "df.loc[:, ~df.columns.duplicated()]"
                    ),
                )
            )
            continue
        seen.add(name)
        keep.append(position)
    view = df.iloc[:, keep].set_axis([names[p] for p in keep], axis=1)
    view = view.set_axis(pd.RangeIndex(len(view)), axis=0)
    for name in view.columns:
        if isinstance(view[name].dtype, pd.CategoricalDtype):
            view[name] = view[name].astype(object)
    if mode == "create" and "metadata" in view.columns:
        from_dicts = (
            view["metadata"]
            .map(lambda d: d.get("filenumber") if isinstance(d, Mapping) else None)
            .astype(object)
        )
        if "metadata.filenumber" in view.columns:
            dotted = view["metadata.filenumber"].astype(object)
            view["metadata.filenumber"] = dotted.where(dotted.notna(), from_dicts)
        else:
            view["metadata.filenumber"] = from_dicts
    if not df.index.is_unique:
        dups = df.index[df.index.duplicated()].unique()[:3].tolist()
        problems.append(
            _frame_problem(
                None,
                "unique_index",
                (
                    f"the frame's index has repeated labels (e.g. {dups!r}); results are matched "
                    "back to rows by index, so make it unique: df.reset_index(drop=True)"
                ),
            )
        )
    return view, problems


def _frame_problem(column: str | None, check: str, message: str) -> dict[str, Any]:
    return {
        "index": None,
        "column": column,
        "check": check,
        "value": None,
        "message": message,
        "_pos": -1,
    }


def _unsendable_cells(view: pd.DataFrame) -> list[dict[str, Any]]:
    """Text with broken UTF-16 and integers beyond 64 bits (also inside lists): the field
    rules accept them as text, numbers or lists of text, but no JSON body can carry them.
    Object fields are left out: their own rules already check the JSON form."""
    out: list[dict[str, Any]] = []
    for name in view.columns:
        dtype = view[name].dtype
        python_text = isinstance(dtype, pd.StringDtype) and dtype.storage == "python"
        kind = field_kind(name) if isinstance(name, str) else None
        if kind in (None, "free", "object", "structured") or not (
            python_text or pd.api.types.is_object_dtype(dtype)
        ):
            continue
        values = _objects(view[name])
        bad = (unsendable_mask(view[name]) if kind == "string_list"
               else unencodable_mask(view[name]))
        for position in np.flatnonzero(bad).tolist():
            out.append({"index": position, "column": name, "check": "json",
                        "value": values[position],
                        "message": f"cannot be sent: {json_problem(values[position])}",
                        "_pos": position})
    return out


def _conflicts(view: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows with a non-dict value in a column that also has dotted sub-columns set."""
    out: list[dict[str, Any]] = []
    names = list(view.columns)
    for name in names:
        children = [c for c in names if c.startswith(name + ".")]
        if not children:
            continue
        values = _objects(view[name])
        scalar = ~np.asarray(view[name].isna().to_numpy(), dtype=bool) & np.fromiter(
            (not isinstance(v, Mapping) for v in values), dtype=bool, count=len(values)
        )
        if not scalar.any():
            continue
        nested = np.asarray(view[children].notna().any(axis=1).to_numpy(), dtype=bool)
        for position in np.flatnonzero(scalar & nested).tolist():
            out.append(
                {
                    "index": position,
                    "column": name,
                    "check": "conflict",
                    "value": values[position],
                    "message": (
                        f"this row also sets {name}.… columns, which need {name} to be a dict; "
                        "leave one of them empty"
                    ),
                    "_pos": position,
                }
            )
    return out


def _duplicate_messages(view: pd.DataFrame, positions: np.ndarray, labels: pd.Index) -> list[str]:
    ids = _objects(view["externalId"])
    groups: dict[Any, list[int]] = {}
    for position in np.sort(positions).tolist():
        groups.setdefault(ids[position], []).append(position)
    out = []
    for position in positions.tolist():
        group = groups[ids[position]]
        others = [labels[p] for p in group[:6] if p != position][:5]
        more = len(group) - 1 - len(others)
        listed = ", ".join(repr(o) if isinstance(o, str) else str(o) for o in others)
        out.append(
            f"externalId {ids[position]!r} also appears on row{'s' if len(group) > 2 else ''} "
            f"{listed}{f' and {more} more' if more > 0 else ''}; each id may appear once. "
            "Keep one row per id, e.g. df.drop_duplicates('externalId', keep='last')"
        )
    return out


def validate(df: pd.DataFrame, mode: Literal["upsert", "create"] = "upsert") -> pd.DataFrame:
    """Every problem in ``df`` (the output of :func:`prepare`), as a failure-cases frame.

    Columns: ``index`` (row label; ``None`` when a whole column is at fault), ``column``,
    ``check``, ``value``, ``message``. Empty (same columns) when every row can be sent.
    Rows are listed in frame order. ``mode="create"`` also requires ``phoneNumber``,
    ``portfolioId`` and ``metadata.filenumber`` on every row.

    >>> fc = validate(pd.DataFrame({"externalId": ["a", "a"], "phonenumber": ["+1", "+2"]}))
    >>> fc[["index", "column", "check"]].to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'index': None, 'column': 'phonenumber', 'check': 'unknown_column'},
     {'index': 0, 'column': 'externalId', 'check': 'unique'},
     {'index': 1, 'column': 'externalId', 'check': 'unique'}]
    """
    if mode not in ("upsert", "create"):
        raise ConfigError(f"mode must be 'upsert' or 'create', not {mode!r}.")
    view, records = _view(df, mode)
    labels = df.index
    parts: list[pd.DataFrame] = []
    try:
        _schema(list(view.columns), mode).validate(view, lazy=True)
    except pa.errors.SchemaErrors as exc:
        parts.extend(_translate(exc.failure_cases, view, labels, mode, records))
    records.extend(_conflicts(view))
    reported = {(r["_pos"], r["column"]) for r in records}
    for part in parts:
        reported.update(zip(part["_pos"].tolist(), part["column"].tolist(), strict=True))
    records.extend(r for r in _unsendable_cells(view)
                   if (r["_pos"], r["column"]) not in reported)
    for record in records:
        if record["index"] is not None:
            record["index"] = labels[record["index"]]
    if records:
        # Object dtype throughout: a value pandas cannot store as str (broken UTF-16) stays.
        extra = pd.DataFrame(records, dtype=object)
        extra["_pos"] = extra["_pos"].astype("int64")
        parts.append(extra)
    if not parts:
        return failure_frame()
    order = {name: i for i, name in enumerate(view.columns)}
    combined = pd.concat([p for p in parts if len(p)], ignore_index=True)
    combined["_col"] = combined["column"].map(lambda c: order.get(c, -1))
    combined = combined.sort_values(["_pos", "_col"], kind="stable")
    whole = (combined["_pos"] < 0).to_numpy()
    columns: dict[str, pd.Series] = {}
    for name in FAILURE_COLUMNS:
        cells = combined[name].to_numpy(dtype=object).copy()
        if name in ("index", "value"):
            cells[whole] = None  # a whole-column problem has no row and no single value
        columns[name] = pd.Series(cells, dtype=object)
    result: pd.DataFrame = pd.DataFrame(columns)
    return result


def _translate(
    fc: pd.DataFrame,
    view: pd.DataFrame,
    labels: pd.Index,
    mode: str,
    records: list[dict[str, Any]],
) -> list[pd.DataFrame]:
    """pandera's failure cases → ours (labels, short check names, messages)."""
    parts: list[pd.DataFrame] = []
    whole = fc[fc["index"].isna() | fc["column"].isna()]
    for check, column, case in zip(
        whole["check"], whole["column"], whole["failure_case"], strict=True
    ):
        if check == "column_in_schema":
            code, text = _column_message(str(case))
            column = case
        elif check == "column_in_dataframe":
            code, text = "required_column", _required_column_message(str(case), mode)
            column = case
        else:
            # A check that could not run must not let the column through unchecked.
            code, text = (
                "check_error",
                (
                    f"this column could not be checked ({case}); convert its cells to plain "
                    "text, numbers, lists or dicts"
                ),
            )
        records.append(_frame_problem(None if column is None else str(column), code, text))
    cells = fc[fc["index"].notna() & fc["column"].notna()]
    for (column, check), group in cells.groupby(["column", "check"], sort=False):
        positions = group["index"].to_numpy(dtype="int64")
        values = _objects(view[column])[positions]
        if check == "not_nullable":
            code, messages = "required", [_required_message(str(column), mode)] * len(values)
        elif check == "unique":
            code, messages = "unique", _duplicate_messages(view, positions, labels)
        else:
            rule = next(r for r in _rules_for(str(column)) if r[0] == check)
            code, messages = str(check), rule[2](str(column), values)
        part = pd.DataFrame(
            {
                "index": pd.Series(labels[positions].tolist(), dtype=object),
                "column": str(column),
                "check": code,
                "value": pd.Series(list(values), dtype=object),
                "message": pd.Series(messages, dtype=object),
                "_pos": positions,
            }
        )
        parts.append(part)
    return parts


def check_frame(
    df: pd.DataFrame,
    columns: Mapping[Any, str] | None = None,
    mode: Literal["upsert", "create"] = "upsert",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(prepare(df, columns), validate(prepared, mode))`` in one call.

    >>> prepared, failures = check_frame(pd.DataFrame({"externalId": [1.0]}))
    >>> prepared["externalId"].tolist(), len(failures)
    (['1'], 0)
    """
    prepared = prepare(df, columns)
    return prepared, validate(prepared, mode)


# --------------------------------------------------------------------------- phones


_PARSE_ERRORS: Mapping[int, str] = MappingProxyType(
    {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
            "no valid country code, and no region to assume (pass region=...)"
        ),
        phonenumbers.NumberParseException.NOT_A_NUMBER: "it does not look like a phone number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the '+'/prefix",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }
)


# North American numbers (country code 1) written with only digits and the usual
# punctuation are by far the most common input; for them, phonenumbers' answer is fixed
# (10 digits after an optional 1, area code starting 2-9), and skipping its full parser
# makes a million distinct numbers take about a second instead of half a minute.
_NANP_PUNCTUATION = re.compile(r"[ \t().\-]+")
_NANP_NATIONAL = re.compile(r"(?:\+?1)?([2-9]\d{9})")
_NANP_INTERNATIONAL = re.compile(r"\+1([2-9]\d{9})")


def _nanp_fast_path(text: str, nanp_region: bool) -> str | None:
    """E.164 for a plainly written North American number, or None to use the full parser."""
    digits = _NANP_PUNCTUATION.sub("", text)
    match = (_NANP_NATIONAL if nanp_region else _NANP_INTERNATIONAL).fullmatch(digits)
    return "+1" + match.group(1) if match else None


def _phone_problem(value: Any, region: str | None, nanp_region: bool) -> tuple[str | None, str]:
    """(E.164 text, "") or (None, why it cannot be read)."""
    if isinstance(value, str):
        text = value.strip()
        fast = _nanp_fast_path(text, nanp_region)
        if fast is not None:
            return fast, ""
    elif isinstance(value, bool | np.bool_):
        return None, "a boolean is not a phone number"
    elif isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and np.isfinite(value) and value % 1 == 0
    ):
        text = str(int(value))
    else:
        return None, f"a {type(value).__name__} is not a phone number"
    if not text:
        return None, "the text is blank"
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return None, _PARSE_ERRORS.get(exc.error_type, str(exc))
    if number.extension:
        return None, f"it has an extension ({number.extension}), which E.164 cannot hold"
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return None, "it is a local number without its area code"
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None, "it has the wrong number of digits"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""


def normalize_phone(
    series: pd.Series,
    region: str | None = "US",
    errors: Literal["raise", "keep", "coerce"] = "raise",
) -> pd.Series:
    """Phone numbers written any common way → E.164 (``(555) 555-0111`` → ``+15555550111``).

    Numbers without a ``+`` are read as numbers of ``region`` (an ISO country code such as
    ``"US"``, ``"GB"``; ``None`` when every number has a ``+``). Numbers that are *possible*
    (right length, area code included) are accepted, so fictional 555 numbers pass; local
    numbers without an area code and numbers with an extension are not. Whole numbers (a
    column read as integers) are read as digits. Missing cells stay missing. Each distinct
    value is parsed once. The result has ``series``'s index and name.

    ``errors``: ``"raise"`` raises :class:`~recocora.errors.ValidationError` naming every
    row it cannot read; ``"keep"`` leaves those values as they were (validation will flag
    them); ``"coerce"`` makes them missing. Applying it twice changes nothing.

    >>> normalize_phone(pd.Series(["(555) 555-0111", None, "+44 20 7946 0958"])).tolist()
    ['+15555550111', nan, '+442079460958']
    """
    if errors not in ("raise", "keep", "coerce"):
        raise ConfigError(f"errors must be 'raise', 'keep' or 'coerce', not {errors!r}.")
    if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"region {region!r} is not a region phonenumbers knows; use an ISO 3166 code such "
            "as 'US' or 'GB', or None when every number starts with '+'."
        )
    region = region.upper() if region is not None else None
    nanp_region = region is not None and phonenumbers.country_code_for_region(region) == 1
    values = series.to_numpy(dtype=object)
    missing = np.asarray(pd.isna(values), dtype=bool) if len(values) else np.zeros(0, bool)
    out = values.copy()
    bad: list[int] = []
    reasons: list[str] = []
    cache: dict[Any, tuple[str | None, str]] = {}
    for position in np.flatnonzero(~missing).tolist():
        value = values[position]
        key = value if type(value) is str else (type(value), repr(value))
        try:
            result = cache[key]
        except KeyError:
            result = cache[key] = _phone_problem(value, region, nanp_region)
        text, reason = result
        if text is not None:
            out[position] = text
            continue
        bad.append(position)
        reasons.append(reason)
        out[position] = None if errors == "coerce" else value
    if bad and errors == "raise":
        column = str(series.name) if series.name is not None else "phoneNumber"
        shown = f" for region {region}" if region else ""
        failures = failure_frame(
            {
                "index": series.index[p],
                "column": column,
                "check": "phone",
                "value": values[p],
                "message": f"cannot read this as a phone number{shown}: {r}",
            }
            for p, r in zip(bad, reasons, strict=True)
        )
        raise validation_error(
            failures,
            subject="phone normalisation",
            advice=(
                "Fix these numbers, or pass errors='keep' (leave them as they are; validation "
                "will flag them) or errors='coerce' (make them empty)."
            ),
        )
    return _text_series(out, series)
