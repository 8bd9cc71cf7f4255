"""One value's JSON form: what is missing, what cannot be sent, and why."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pyarrow as pa

import recocora._json_values as json_values
from recocora._compat import STR_DTYPE
from recocora._json_values import arrow_text_as_str, is_missing, json_problem, unsendable_mask


def test_value_functions() -> None:
    assert all(is_missing(v) for v in (None, np.nan, pd.NA, pd.NaT, np.datetime64("NaT")))
    assert not any(is_missing(v) for v in (0, "", [], {}, False, np.array([np.nan])))
    assert json_problem([1, 2]) is None
    assert json_problem(set()) is not None
    mask = unsendable_mask(pd.Series([{"a": 1}, {"a": float("inf")}, None, "x"], dtype=object))
    assert mask.tolist() == [False, True, False, False]
    assert unsendable_mask(pd.Series(["a", "b"])).tolist() == [False, False]
    assert unsendable_mask(pd.Series(pd.Categorical([1.0, np.inf, None]))).tolist() == [
        False,
        True,
        False,
    ]


def test_arrow_text_is_checked_as_text() -> None:
    arrow = pd.Series(["a", None], dtype=pd.ArrowDtype(pa.string()))
    assert unsendable_mask(arrow).tolist() == [False, False]
    assert arrow_text_as_str(arrow).dtype == STR_DTYPE


def test_docstring_examples() -> None:
    assert doctest.testmod(json_values).failed == 0
