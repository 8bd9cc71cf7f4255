"""One column prepared once, converted slice by slice."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import recocora._wire_columns as wire_columns
from recocora._wire_columns import Column
from recocora.errors import ValidationError


def test_arrow_text_stays_in_arrow_until_its_slice_is_built() -> None:
    series = pd.Series(["a", None, "é"], dtype="string[pyarrow]")
    column = Column(series, "externalId", pd.RangeIndex(3))
    assert column._kind == "arrow" and not len(column._values)
    assert column.values(0, 3) == (["a", None, "é"], [1])
    assert column.values(1, 3) == ([None, "é"], [0])


def test_timestamps_print_in_the_coarsest_lossless_unit() -> None:
    whole = pd.Series(pd.to_datetime(["2024-01-02", None]))
    assert Column(whole, "t", pd.RangeIndex(2)).values(0, 1) == (["2024-01-02T00:00:00"], [])
    fine = pd.Series(pd.to_datetime(["2024-01-02 03:04:05.250"]))
    assert Column(fine, "t", pd.RangeIndex(1)).values(0, 1)[0] == ["2024-01-02T03:04:05.250"]


def test_an_infinite_float_is_refused_naming_its_row_label() -> None:
    with pytest.raises(ValidationError) as info:
        Column(pd.Series([1.0, np.inf], index=["a", "b"]), "currentBalance",
               pd.Index(["a", "b"]))
    assert info.value.failure_cases["index"].tolist() == ["b"]
    assert "row b, column currentBalance" in str(info.value)


def test_docstring_examples() -> None:
    assert doctest.testmod(wire_columns).failed == 0
