"""What a Cora account row may hold, checked on the whole frame before anything is sent.

Three steps, all vectorised (no Python loop per row except over cells holding dicts or
lists, which have no vector form):

1. ``prepare`` (the coercion module) renames columns (``columns=``) and normalises what has
   one obvious meaning: ``externalId`` ``123.0`` (a CSV read as floats) becomes ``"123"``,
   whole numbers in text fields become text (``bucket`` ``7`` → ``"7"``), and
   ``person.birthdate`` timestamps become ``YYYY-MM-DD``. The input frame is never modified.
2. :func:`validate` runs a pandera schema (lazy, so every failure is collected) and returns
   a failure-cases frame: ``index`` (the input row's label, ``None`` for a problem with a
   whole column), ``column``, ``check`` (a short machine name), ``value`` and ``message``
   (what is wrong and what to do). It is empty when every row is valid.
3. ``valid_mask`` and ``validation_error`` turn that frame into the rows to send or the
   error to raise.

Every field's rules come from the one field catalogue; the checks of each kind and their
messages live beside it. This module only assembles them:

- A problem with a whole column (unknown or read-only column, duplicate column name, a
  required column absent, a non-unique index) makes every row invalid: sending rows
  without that column would not be what was asked.
- ``mode="upsert"`` checks only what is wrong on any row; whether a *new* account has its
  create-only fields is the server's call (it answers ``MISSING_REQUIRED_FIELD`` per row).
  ``mode="create"`` also requires the fields a new account needs (``phoneNumber``,
  ``portfolioId`` and ``metadata.filenumber``, from a dotted column or a ``metadata`` dict)
  on every row.

pandera expresses every per-column rule (one ``Column`` per catalogued field and per
free-form column present, ``strict=True`` for unknown columns; ``mode="create"`` validates a
derived ``metadata.filenumber`` column that merges the dotted column with the ``metadata``
dicts). Three checks are plain vectorised code instead, and say so here: duplicate column
names (a pandera schema cannot address two columns of one name), a non-unique index
(results are joined back to the input by index), and a non-dict value in a column whose
dotted sub-columns are set on the same row (``originalCreditor`` text plus
``originalCreditor.name``): a pandera frame-level check would report every cell of the row
rather than the one at fault.

>>> import pandas as pd
>>> df = pd.DataFrame({"File #": [101.0, 102.0], "phoneNumber": ["+15555550111", "555-0112"]})
>>> prepared, failures = check_frame(df, columns={"File #": "externalId"})
>>> prepared["externalId"].tolist()
['101', '102']
>>> failures[["index", "column", "check"]].to_dict("records")
[{'index': 1, 'column': 'phoneNumber', 'check': 'e164'}]
>>> bad = pd.DataFrame({"externalId": ["A1"], "history.statuteLimitationsDate": ["not-a-date"]})
>>> validate(bad)[["index", "column", "check"]].to_dict("records")
[{'index': 0, 'column': 'history.statuteLimitationsDate', 'check': 'datetime'}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .._json_values import json_problem, unencodable_mask, unsendable_mask
from .._validation import FAILURE_COLUMNS, failure_frame
from ..errors import ConfigError
from ._checks import objects, rules_for
from ._coerce import prepare
from ._columns import column_message, required_column_message, required_message
from ._fields import CATALOGUE, CREATE_REQUIRED, field_of

__all__ = ["check_frame", "prepare", "validate"]


def _schema(columns: Sequence[str], mode: str) -> pa.DataFrameSchema:
    """One pandera ``Column`` per catalogued field and per free-form column present."""
    specs: dict[str, pa.Column] = {}
    required = {"externalId", *(CREATE_REQUIRED if mode == "create" else ())}
    extra = [c for c in columns if c not in CATALOGUE and field_of(c) is not None]
    for name in (*CATALOGUE, *extra):
        specs[name] = pa.Column(
            nullable=name not in required,
            required=name in required,
            checks=[pa.Check(test, name=check) for check, test, _ in rules_for(name)],
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
    if mode == "create":
        _merge_dict_keys(view, [p for p in CREATE_REQUIRED if "." in p])
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


def _merge_dict_keys(view: pd.DataFrame, paths: Sequence[str]) -> None:
    """Fill each dotted ``path`` column (made if absent) from the dicts of its parent column
    where the dotted cell is empty: a required key may come from either."""
    for path in paths:
        parent, _, key = path.rpartition(".")
        if parent not in view.columns:
            continue
        from_dicts = (
            view[parent]
            .map(lambda d, k=key: d.get(k) if isinstance(d, Mapping) else None)
            .astype(object)
        )
        if path in view.columns:
            dotted = view[path].astype(object)
            view[path] = dotted.where(dotted.notna(), from_dicts)
        else:
            view[path] = from_dicts


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
        field = field_of(name) if isinstance(name, str) else None
        kind = field.kind if field is not None else None
        if kind in (None, "any", "object") or not (
            python_text or pd.api.types.is_object_dtype(dtype)
        ):
            continue
        values = objects(view[name])
        bad = (unsendable_mask(view[name]) if kind == "text_list"
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
        values = objects(view[name])
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
    ids = objects(view["externalId"])
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
            code, text = column_message(str(case))
            column = case
        elif check == "column_in_dataframe":
            code, text = "required_column", required_column_message(str(case))
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
        values = objects(view[column])[positions]
        if check == "not_nullable":
            code, messages = "required", [required_message(str(column))] * len(values)
        elif check == "unique":
            code, messages = "unique", _duplicate_messages(view, positions, labels)
        else:
            rule = next(r for r in rules_for(str(column)) if r[0] == check)
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

