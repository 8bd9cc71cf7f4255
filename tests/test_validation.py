"""Failure cases: the frame every validator returns, its summary, and the error."""

from __future__ import annotations

import doctest

import pandas as pd

import recocora._validation as validation
from recocora._validation import (
    FAILURE_COLUMNS,
    column_problem,
    failure_frame,
    failure_message,
    valid_mask,
    validation_error,
)
from recocora.errors import ValidationError


def test_failure_frame_functions() -> None:
    empty = failure_frame()
    assert list(empty.columns) == list(FAILURE_COLUMNS) and len(empty) == 0
    index = pd.Index(["a", "b", "c"])
    assert valid_mask(empty, index).tolist() == [True, True, True]

    rows = [
        {
            "index": f"r{i}",
            "column": "phoneNumber",
            "check": "e164",
            "value": "x" * 100,
            "message": "bad phone",
        }
        for i in range(12)
    ]
    fc = failure_frame(rows)
    mask = valid_mask(fc, pd.Index(["r0", "ok", "r11"]))
    assert mask.tolist() == [False, True, False]
    assert mask.index.tolist() == ["r0", "ok", "r11"]

    text = failure_message(fc)
    lines = text.splitlines()
    assert lines[0] == "12 rows failed validation (12 problems):"
    assert lines[1].startswith("  row r0, column phoneNumber: bad phone (value: 'xxx")
    assert len(lines[1]) < 150  # long values are shortened
    assert "... and 2 more" in text
    assert "on_invalid='skip'" in lines[-1]

    whole = failure_frame(
        [
            {
                "index": None,
                "column": "id",
                "check": "read_only",
                "value": None,
                "message": "read-only",
            }
        ]
    )
    assert valid_mask(whole, index).tolist() == [False, False, False]
    assert failure_message(whole).splitlines()[:2] == [
        "1 column failed validation (1 problem):",
        "  column id: read-only",
    ]
    err = validation_error(fc, advice="Do X.")
    assert isinstance(err, ValidationError) and err.failure_cases is fc
    assert str(err).endswith("Do X.")


def test_valid_mask_with_a_multiindex() -> None:
    index = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)])
    fc = failure_frame(
        [{"index": ("a", 2), "column": "x", "check": "c", "value": 1, "message": "m"}]
    )
    assert valid_mask(fc, index).tolist() == [True, False, True]


def test_a_column_problem_concerns_every_row() -> None:
    fc = failure_frame([column_problem("a..b", "column_name", "rename it")])
    assert fc.to_dict("records") == [
        {"index": None, "column": "a..b", "check": "column_name", "value": None,
         "message": "rename it"}
    ]
    assert valid_mask(fc, pd.RangeIndex(2)).tolist() == [False, False]


def test_docstring_examples() -> None:
    assert doctest.testmod(validation).failed == 0
