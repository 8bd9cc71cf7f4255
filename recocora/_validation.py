"""Failure cases: the frame every validator returns, and the error that carries it.

A failure-cases frame has the columns ``index`` (the input row's label, or ``None`` for a
problem with a whole column or the frame), ``column``, ``check``, ``value`` and ``message``.
Both schemas (Cora's and Recotap's) and the row builder report through it, and
:func:`validation_error` turns it into a :class:`~recocora.errors.ValidationError` whose
message names the rows and columns at fault and says what to do.

>>> fc = failure_frame([{"index": 3, "column": "phoneNumber", "check": "e164",
...                      "value": "555", "message": "not E.164"}])
>>> valid_mask(fc, pd.Index([2, 3])).tolist()
[True, False]
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ._json_values import is_missing
from .errors import ValidationError

__all__ = [
    "FAILURE_COLUMNS",
    "column_problem",
    "failure_frame",
    "failure_message",
    "valid_mask",
    "validation_error",
]

FAILURE_COLUMNS = ("index", "column", "check", "value", "message")


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


def column_problem(name: Any, check: str, message: str) -> dict[str, Any]:
    """A failure case about a whole column (``index`` ``None``: it makes every row invalid).

    >>> column_problem("a.", "column_name", "rename it")["index"] is None
    True
    """
    return {"index": None, "column": str(name), "check": check, "value": None, "message": message}


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
    rest: str = "all of them are in .failure_cases",
) -> str:
    """A readable summary of a failure-cases frame: counts, the first problems, what to do.

    Each problem reads ``row <index>, column <col>: <message> (value: ...)``; a problem with
    a whole column reads ``column <col>: <message>``. Past ``limit`` problems, ``rest`` says
    where to find the others.

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
        lines.append(f"  ... and {n_problems - limit:,} more ({rest})")
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
