"""The pandas-version shims give the same dtypes and values on every supported pandas."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

import recocora._compat as compat
from recocora._compat import STR_DTYPE, is_arrow_text_storage, text_cells


def test_doctests() -> None:
    assert doctest.testmod(compat).failed == 0


def test_str_dtype_is_arrow_text_with_nan_for_missing() -> None:
    s = pd.Series(["a", None], dtype=STR_DTYPE)
    assert isinstance(s.dtype, pd.StringDtype) and is_arrow_text_storage(s.dtype)
    assert s.iloc[1] is np.nan or (isinstance(s.iloc[1], float) and np.isnan(s.iloc[1]))
    assert s.str.upper().dtype == STR_DTYPE
    assert not is_arrow_text_storage(pd.StringDtype("python"))


_cell = st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"]), max_size=5))


@given(st.lists(_cell, max_size=20))
def test_text_cells_hold_text_as_str_dtype_and_keep_every_value(cells: list[str | None]) -> None:
    values = np.array([*cells, "x"], dtype=object)
    out = pd.Series(text_cells(values))
    assert out.dtype == STR_DTYPE
    assert [None if pd.isna(v) else v for v in out] == [*cells, "x"]


@given(st.lists(_cell, max_size=20), st.sampled_from([1, 2.5, True, b"x"]))
def test_cells_that_are_not_all_text_stay_objects(cells: list[str | None], odd: object) -> None:
    values = np.array([*cells, odd], dtype=object)
    assert text_cells(values) is values


def test_broken_utf16_stays_objects() -> None:
    values = np.array(["ok", "\ud800"], dtype=object)
    assert text_cells(values) is values
