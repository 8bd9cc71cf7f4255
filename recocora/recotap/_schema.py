"""What a frame must hold before its rows become Recotap mappings, and what they become.

A mapping is a ``domain`` (normalised by :mod:`recocora.recotap._domains`) and an
``externalId`` (a non-empty string). :func:`validate` names every row that cannot become one
and why; :func:`prepare` builds the two-column frame that is sent; :func:`superseded_mask`
and :func:`superseded_by` settle, before anything is sent, which of several rows with the
same domain wins (the last, as the API itself would do).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from recocora._json_values import arrow_text_as_str, unencodable_mask
from recocora._validation import validation_error as frame_validation_error
from recocora.errors import ValidationError
from recocora.recotap._domains import domain_problems

__all__ = [
    "FAILURE_COLUMNS",
    "prepare",
    "prepare_checked",
    "superseded_by",
    "superseded_mask",
    "validate",
    "validation_error",
]

_STRING = pd.StringDtype()

FAILURE_COLUMNS = ["index", "column", "check", "value", "message"]

# Integral floats beyond this are not held exactly: the id read from the file may already
# differ from the one written in it.
_EXACT_FLOAT = 2.0**53

_CHECK_DOMAIN = "valid_domain"
_CHECK_EXTERNAL_ID = "valid_external_id"
_CHECK_PRESENT = "not_nullable"


def prepare(
    df: pd.DataFrame, domain: Hashable = "domain", external_id: Hashable = "externalId"
) -> pd.DataFrame:
    """The frame of mappings to send: columns ``domain`` (normalised) and ``externalId``
    (a string), with ``df``'s index. ``df`` is not modified.

    Cells that fail validation are missing in the result (see :func:`validate` for why);
    a missing column raises :class:`~recocora.errors.ValidationError`. Integral numbers
    (``123`` or ``123.0`` from a CSV column with blanks) become ``"123"``; strings are stripped.

    >>> prepare(pd.DataFrame({"domain": ["WWW.Acme.com/x"], "externalId": [123.0]}))
         domain externalId
    0  acme.com        123
    """
    return prepare_checked(df, domain=domain, external_id=external_id)[0]


def validate(
    df: pd.DataFrame, domain: Hashable = "domain", external_id: Hashable = "externalId"
) -> pd.DataFrame:
    """Every cell that keeps a row from becoming a mapping, empty when all rows are fine.

    Columns: ``index`` (the row's label), ``column`` (your column's name), ``check``
    (``not_nullable``, ``valid_domain`` or ``valid_external_id``), ``value`` (the cell as
    given) and ``message`` (why). ``domain=`` and ``external_id=`` name your columns; a
    missing column raises :class:`~recocora.errors.ValidationError` naming the columns
    the frame has.

    >>> cases = validate(pd.DataFrame({"domain": ["bob@acme.com"], "externalId": ["crm-1"]}))
    >>> cases[["index", "column", "check", "value"]]
       index  column         check         value
    0      0  domain  valid_domain  bob@acme.com
    >>> cases["message"][0]
    "looks like an email address, not a domain (did you mean 'acme.com'?)"
    """
    return prepare_checked(df, domain=domain, external_id=external_id)[1]


def prepare_checked(
    df: pd.DataFrame, domain: Hashable = "domain", external_id: Hashable = "externalId"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`prepare` and :func:`validate` in one pass: ``(prepared, failure_cases)``.

    A row is ready to send when neither of its prepared cells is missing, which is exactly
    when it has no failure case.

    >>> ready, failures = prepare_checked(pd.DataFrame({"domain": ["acme.com", "localhost"],
    ...                                                 "externalId": ["a", "b"]}))
    >>> ready.notna().all(axis=1).tolist(), failures["index"].tolist()
    ([True, False], [1])
    """
    _require_columns(df, domain, external_id)
    domains = domain_problems(arrow_text_as_str(df[domain]))
    ids = _external_id_problems(arrow_text_as_str(df[external_id]))
    prepared = pd.DataFrame(
        {"domain": domains["normalized"].array, "externalId": ids["normalized"].array},
        index=df.index,
    )
    failures = _failure_cases(df, domain, external_id, domains["reason"], ids["reason"])
    return prepared, failures


def validation_error(failure_cases: pd.DataFrame) -> ValidationError:
    """The error to raise when ``failure_cases`` (from :func:`validate`) is not empty: its
    message counts and shows the problems, ``.failure_cases`` holds them all.

    >>> df = pd.DataFrame({"domain": ["localhost"], "externalId": ["a"]})
    >>> str(validation_error(validate(df))).splitlines()[0]
    '1 row failed validation (1 problem):'
    """
    return frame_validation_error(failure_cases)


def superseded_mask(domains: pd.Series[Any]) -> pd.Series[bool]:
    """True for each row that a later row with the same domain supersedes.

    ``domains`` are normalised domains (``prepare(df)["domain"]``); give rows that will not
    be sent (invalid ones) a missing domain: they neither win nor lose. When several rows
    share a domain the last one wins, as the API would decide, but here it is decided
    before sending, so the outcome never depends on how rows are split into requests.

    >>> superseded_mask(pd.Series(["a.com", "b.com", "a.com"])).tolist()
    [True, False, False]
    """
    mask = domains.duplicated(keep="last").to_numpy(dtype=bool) & domains.notna().to_numpy(
        dtype=bool
    )
    result: pd.Series[bool] = pd.Series(mask, index=domains.index, name="superseded", dtype=bool)
    return result


def superseded_by(domains: pd.Series[Any]) -> pd.Series[Any]:
    """For each superseded row (see :func:`superseded_mask`), the index label of the row
    that wins its domain; ``None`` for every other row.

    >>> superseded_by(pd.Series(["a.com", "b.com", "a.com"], index=["x", "y", "z"])).tolist()
    ['z', None, None]
    """
    codes, distinct = pd.factorize(domains, use_na_sentinel=True)
    positions = np.arange(len(codes))
    valid = codes >= 0
    last_of = np.full(len(distinct), -1, dtype=np.int64)
    np.maximum.at(last_of, codes[valid], positions[valid])
    winner = np.full(len(codes), -1, dtype=np.int64)
    winner[valid] = last_of[codes[valid]]
    superseded = valid & (winner != positions)
    out = np.full(len(codes), None, dtype=object)
    if superseded.any():
        # A MultiIndex gives an object array of tuples here, one per row.
        out[superseded] = domains.index.take(winner[superseded]).to_numpy()
    result: pd.Series[Any] = pd.Series(out, index=domains.index, name="superseded_by", dtype=object)
    return result


def _require_columns(df: pd.DataFrame, domain: Hashable, external_id: Hashable) -> None:
    problems: list[tuple[Hashable, str]] = []
    if domain == external_id:
        problems.append((domain, "is named by both domain= and external_id="))
    for name, argument in ((domain, "domain"), (external_id, "external_id")):
        count = sum(1 for column in df.columns if column == name)
        if count == 0:
            problems.append(
                (name, f"column not found (pass {argument}='<your column>' to choose it)")
            )
        elif count > 1:
            problems.append((name, f"the frame has {count} columns with this name"))
    if not problems:
        return
    cases = pd.DataFrame(
        {
            "index": pd.Series([None] * len(problems), dtype=object),
            "column": pd.Series([name for name, _ in problems], dtype=object),
            "check": pd.Series(["column_in_dataframe"] * len(problems), dtype=object),
            "value": pd.Series([None] * len(problems), dtype=object),
            "message": pd.Series([message for _, message in problems], dtype=object),
        }
    )
    details = "; ".join(f"{name!r}: {message}" for name, message in problems)
    raise ValidationError(
        f"Cannot read mappings from this frame: {details}. "
        f"The frame has columns {list(df.columns)!r}.",
        cases,
    )


def _failure_cases(
    df: pd.DataFrame,
    domain: Hashable,
    external_id: Hashable,
    domain_reason: pd.Series[Any],
    id_reason: pd.Series[Any],
) -> pd.DataFrame:
    # pandera declares the rules (required, not null, valid) and collects every failure
    # (lazy=True). The content rules themselves are plain vectorised code, run once
    # beforehand (domain_problems, _external_id_problems), because each failing cell needs
    # its own reason and a pandera check carries one message for all its failures: the
    # checks hand pandera those verdicts and the reasons are joined back by position. The
    # frame is validated with a RangeIndex, so duplicate or MultiIndex labels cannot confuse
    # that join; pandera gives a check only the non-null cells, hence the lookup by label.
    domain_ok = pd.Series(domain_reason.isna().to_numpy(dtype=bool))
    id_ok = pd.Series(id_reason.isna().to_numpy(dtype=bool))
    schema = pa.DataFrameSchema(
        {
            domain: pa.Column(
                nullable=False,
                checks=pa.Check(lambda s: domain_ok[s.index], name=_CHECK_DOMAIN),
            ),
            external_id: pa.Column(
                nullable=False,
                checks=pa.Check(lambda s: id_ok[s.index], name=_CHECK_EXTERNAL_ID),
            ),
        },
    )
    frame = pd.DataFrame(
        {domain: _printable(df[domain]), external_id: _printable(df[external_id])}
    )
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        found = exc.failure_cases
        if found["index"].isna().any():
            # A failure without a row is a check that crashed, not bad data.
            raise RuntimeError(f"validating the mappings failed: {exc}") from exc
    else:
        return _empty_failures()

    positions = found["index"].to_numpy(dtype=np.int64)
    is_domain = (found["column"] == domain).to_numpy(dtype=bool)
    checks = found["check"].to_numpy(dtype=object)
    reasons = np.where(
        is_domain,
        domain_reason.to_numpy(dtype=object)[positions],
        id_reason.to_numpy(dtype=object)[positions],
    )
    messages = np.where(checks == _CHECK_PRESENT, "is missing", reasons)
    values = np.where(
        is_domain,
        df[domain].to_numpy(dtype=object)[positions],
        df[external_id].to_numpy(dtype=object)[positions],
    )
    order = np.lexsort((~is_domain, positions))
    names = np.empty(2, dtype=object)
    names[0], names[1] = domain, external_id
    cases: pd.DataFrame = pd.DataFrame(
        {
            "index": pd.Series(df.index.take(positions[order]).to_numpy()),
            "column": pd.Series(names[np.where(is_domain, 0, 1)][order], dtype=object),
            "check": pd.Series(checks[order], dtype=object),
            "value": pd.Series(values[order], dtype=object),
            "message": pd.Series(messages[order], dtype=object),
        }
    )
    return cases


def _printable(series: pd.Series[Any]) -> pd.Series[Any]:
    """The cells as objects, broken UTF-16 escaped: pandera prints failing values, and text
    with unpaired surrogates can be neither printed nor held in a str column. The checks
    themselves use the verdicts computed beforehand, and the reported values come from
    the frame itself."""
    values = series.to_numpy(dtype=object).copy()
    for i in np.flatnonzero(unencodable_mask(series)).tolist():
        if isinstance(values[i], str):
            values[i] = values[i].encode("utf-8", "backslashreplace").decode("utf-8")
    printable: pd.Series[Any] = pd.Series(values, dtype=object)
    return printable


def _empty_failures() -> pd.DataFrame:
    empty: pd.DataFrame = pd.DataFrame(
        {name: pd.Series([], dtype=object) for name in FAILURE_COLUMNS}
    )
    return empty


def _external_id_problems(series: pd.Series[Any]) -> pd.DataFrame:
    """Each value as the string sent as ``externalId``, or why it cannot be one.

    Columns ``normalized`` and ``reason`` as in :func:`~recocora.recotap._domains.
    domain_problems`. Strings are stripped; whole numbers (ints, integral floats) are
    written without a decimal point; anything else is rejected.
    """
    values = series.reset_index(drop=True)
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    normalized: pd.Series[Any] = pd.Series(pd.NA, index=values.index, dtype=_STRING)
    reason: pd.Series[Any] = pd.Series(pd.NA, index=values.index, dtype=_STRING)
    missing = values.isna().to_numpy(dtype=bool)
    reason[missing] = "is missing"

    # Dispatch on the column's dtype; a mixed object column (ids typed in by hand, some
    # parsed as numbers) is split by the type of each cell, decided once per distinct type.
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        groups = {"str": ~missing}
    elif pd.api.types.is_bool_dtype(dtype):
        groups = {"bool": ~missing}
    elif pd.api.types.is_integer_dtype(dtype):
        groups = {"int": ~missing}
    elif pd.api.types.is_float_dtype(dtype):
        groups = {"float": ~missing}
    elif dtype == np.dtype(object):
        kinds = values.map(type)
        kind_of = {kind: _kind(kind) for kind in kinds.unique()}
        labels = kinds.map(kind_of).to_numpy(dtype=object)
        groups = {name: (labels == name) & ~missing for name in set(kind_of.values())}
    else:
        # Dates, durations and the like: no id is written that way.
        groups = {"other": ~missing}

    for name, rows in groups.items():
        if not rows.any():
            continue
        subset = values[rows]
        if name == "str":
            broken = unencodable_mask(subset)
            if broken.any():
                # Broken UTF-16 (unpaired surrogates) fits no str column and no JSON body.
                where = np.flatnonzero(rows)[broken]
                reason[where] = "is text with unpaired surrogates (broken UTF-16); fix its encoding"
                rows = rows.copy()
                rows[where] = False
                subset = values[rows]
            text = subset.astype(_STRING).str.strip()
            empty = text.eq("").to_numpy(dtype=bool)
            normalized[rows] = text.where(~empty)
            reason[rows] = text.where(~empty, "is empty").where(empty)
        elif name == "int":
            normalized[rows] = subset.astype(_STRING)
        elif name == "float":
            ids, why = _whole_numbers(subset.to_numpy(dtype=np.float64))
            normalized[rows] = pd.array(ids, dtype=_STRING)
            reason[rows] = pd.array(why, dtype=_STRING)
        elif name == "bool":
            reason[rows] = "is a boolean, not an id"
        else:
            reason[rows] = (
                "is a " + subset.map(lambda v: type(v).__name__).astype(_STRING)
                + ", not a string or whole number"
            )
    result: pd.DataFrame = pd.DataFrame(
        {"normalized": normalized.array, "reason": reason.array}, index=series.index
    )
    return result


def _kind(kind: type) -> str:
    if issubclass(kind, str):
        return "str"
    if issubclass(kind, (bool, np.bool_)):
        return "bool"
    if issubclass(kind, (int, np.integer)):
        return "int"
    if issubclass(kind, (float, np.floating)):
        return "float"
    return "other"


def _whole_numbers(
    values: np.ndarray[Any, np.dtype[np.float64]],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Integral floats as digit strings; a reason for the rest."""
    finite = np.isfinite(values)
    whole = finite & (np.floor(values) == values)
    exact = whole & (np.abs(values) <= _EXACT_FLOAT)
    ids = np.full(len(values), None, dtype=object)
    ids[exact] = values[exact].astype(np.int64).astype(str).astype(object)
    why = np.full(len(values), None, dtype=object)
    why[~finite] = "is not a finite number"
    fractional = finite & ~whole
    why[fractional] = (
        "is a number with a fractional part ("
        + pd.Series(values[fractional]).astype(str)
        + "), not an id"
    ).to_numpy(dtype=object)
    why[whole & ~exact] = (
        "is a number too large to be held exactly, so the id may already be wrong; "
        "read the column as text (dtype=str)"
    )
    return ids, why
