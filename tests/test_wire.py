"""DataFrame → JSON rows: dotted paths, missing cells, numpy/pandas types, chunking."""

from __future__ import annotations

import datetime as dt
import doctest
import math
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recocora._wire as wire
from recocora._compat import STR_DTYPE
from recocora._json_values import is_missing
from recocora._validation import FAILURE_COLUMNS
from recocora._wire import (
    RowBuilder,
    chunk_slices,
    dumps,
    object_array,
    rows_for_chunk,
    to_json_value,
)
from recocora.errors import ValidationError


def test_dotted_columns_nest_and_missing_cells_are_left_out() -> None:
    df = pd.DataFrame(
        {
            "externalId": ["a", "b", "c"],
            "person.name.first": ["Ada", None, np.nan],
            "person.name.last": ["Lovelace", "Hopper", None],
            "person.birthdate": [None, "1906-12-09", None],
            "metadata.filenumber": ["F1", "F2", None],
        }
    )
    assert rows_for_chunk(df) == [
        {
            "externalId": "a",
            "person": {"name": {"first": "Ada", "last": "Lovelace"}},
            "metadata": {"filenumber": "F1"},
        },
        {
            "externalId": "b",
            "person": {"name": {"last": "Hopper"}, "birthdate": "1906-12-09"},
            "metadata": {"filenumber": "F2"},
        },
        {"externalId": "c"},  # every nested cell missing: no empty objects
    ]


def test_dict_column_merges_with_dotted_siblings_and_dotted_wins() -> None:
    meta = [{"filenumber": "dict", "source": "crm", "deep": {"a": 1}}, None, {"x": None}]
    df = pd.DataFrame(
        {
            "metadata": meta,
            "metadata.filenumber": ["dotted", "only", None],
            "metadata.deep.b": [2, None, None],
        }
    )
    rows = rows_for_chunk(df)
    assert rows == [
        {"metadata": {"filenumber": "dotted", "source": "crm", "deep": {"a": 1, "b": 2}}},
        {"metadata": {"filenumber": "only"}},
        {},  # {"x": None} is empty once the missing value is dropped
    ]
    # The user's dicts are not modified by the merge.
    assert meta[0] == {"filenumber": "dict", "source": "crm", "deep": {"a": 1}}


def test_scalar_and_dotted_children_on_the_same_row_is_an_error() -> None:
    df = pd.DataFrame(
        {"originalCreditor": ["Bank", None], "originalCreditor.name": ["X", "Y"]},
        index=["r1", "r2"],
    )
    with pytest.raises(ValidationError) as info:
        rows_for_chunk(df)
    fc = info.value.failure_cases
    assert fc["index"].tolist() == ["r1"]
    assert fc["column"].tolist() == ["originalCreditor"]
    # A scalar alone, or children alone, is fine.
    assert rows_for_chunk(df.iloc[1:]) == [{"originalCreditor": {"name": "Y"}}]
    assert rows_for_chunk(df[["originalCreditor"]]) == [{"originalCreditor": "Bank"}, {}]


def test_numpy_and_pandas_types_become_json_types() -> None:
    df = pd.DataFrame(
        {
            "i": np.array([1, 2], dtype="int64"),
            "u": np.array([1, 2**63], dtype="uint64"),
            "f": np.array([1.5, np.nan]),
            "b": np.array([True, False]),
            "ni": pd.array([7, None], dtype="Int64"),
            "nf": pd.array([None, 2.5], dtype="Float64"),
            "nb": pd.array([None, True], dtype="boolean"),
            "s": pd.array(["x", None], dtype="string"),
            "cat": pd.Categorical(["lo", None]),
            "obj": [np.int64(3), np.float32(0.5)],
            "lst": [[np.int64(1), "a"], np.array([1.5, 2.5])],
            "tup": [("a", "b"), ()],
            "dec": [Decimal("450.25"), Decimal("3")],
        }
    )
    rows = rows_for_chunk(df)
    assert rows == [
        {
            "i": 1,
            "u": 1,
            "f": 1.5,
            "b": True,
            "ni": 7,
            "s": "x",
            "cat": "lo",
            "obj": 3,
            "lst": [1, "a"],
            "tup": ["a", "b"],
            "dec": 450.25,
        },
        {
            "i": 2,
            "u": 2**63,
            "b": False,
            "nf": 2.5,
            "nb": True,
            "obj": 0.5,
            "lst": [1.5, 2.5],
            "tup": [],
            "dec": 3,
        },
    ]
    for row in rows:
        for value in row.values():
            assert type(value) in (int, float, bool, str, list)
    assert orjson.loads(dumps(rows)) == rows


def test_timestamps_become_iso_strings() -> None:
    df = pd.DataFrame(
        {
            "naive": pd.to_datetime(["2024-01-02", None]),
            "precise": pd.to_datetime(["2024-01-02 03:04:05.250", "2024-01-02"], format="ISO8601"),
            "aware": pd.to_datetime(["2024-01-02 10:00", "2024-07-01 00:00"]).tz_localize(
                "America/New_York"
            ),
            "obj": [pd.Timestamp("2024-01-02 10:00", tz="UTC"), dt.date(2020, 5, 17)],
            "pydt": [dt.datetime(2024, 1, 2, 3, 4, 5), pd.NaT],
        }
    )
    assert rows_for_chunk(df) == [
        {
            "naive": "2024-01-02T00:00:00",
            "precise": "2024-01-02T03:04:05.250",
            "aware": "2024-01-02T15:00:00Z",
            "obj": "2024-01-02T10:00:00Z",
            "pydt": "2024-01-02T03:04:05",
        },
        {
            "precise": "2024-01-02T00:00:00.000",
            "aware": "2024-07-01T04:00:00Z",
            "obj": "2020-05-17",
        },
    ]


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        (pd.Series([1.0, np.inf]), "infinite"),
        (pd.Series(["x", -np.inf], dtype=object), "infinite"),
        (pd.Series([["a"], ["b", None]], dtype=object), "inside a list"),
        (pd.Series([{"a": 1}, {"a": [np.nan]}], dtype=object), "inside a list"),
        (pd.Series([{"a": 1}, {1: "x"}], dtype=object), "keys must be text"),
        (pd.Series([pd.Timedelta(1), pd.Timedelta(2)]), "Timedelta"),
        (pd.Series(["x", object()], dtype=object), "object values cannot be sent"),
        (pd.Series(["x", Decimal("inf")], dtype=object), "non-finite"),
    ],
)
def test_cells_with_no_json_form_raise_naming_the_row(column: pd.Series, reason: str) -> None:
    df = pd.DataFrame({"metadata.x": column.to_numpy()}, index=["good", "bad"])
    if column.dtype.kind == "m":
        df = pd.DataFrame({"metadata.x": column.array}, index=["good", "bad"])
    with pytest.raises(ValidationError) as info:
        rows_for_chunk(df)
    fc = info.value.failure_cases
    assert list(fc.columns) == list(FAILURE_COLUMNS)
    assert "bad" in fc["index"].tolist()
    assert reason in " ".join(fc["message"]) or reason in str(info.value)
    assert "row bad, column metadata.x" in str(info.value)


@pytest.mark.parametrize(
    ("columns", "check"),
    [
        (["a", "a"], "duplicate_column"),
        (["a..b"], "column_name"),
        (["a."], "column_name"),
        ([0], "column_name"),
    ],
)
def test_bad_column_names_are_reported(columns: list[Any], check: str) -> None:
    df = pd.DataFrame([[1] * len(columns)], columns=columns)
    with pytest.raises(ValidationError) as info:
        RowBuilder(df)
    assert info.value.failure_cases["check"].tolist() == [check]
    assert info.value.failure_cases["index"].tolist() == [None]


def test_row_builder_slices_match_whole_chunks() -> None:
    rng = np.random.default_rng(1)
    n = 1_203
    df = pd.DataFrame(
        {
            "externalId": [f"id{i}" for i in range(n)],
            "currentBalance": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
            "metadata.k": pd.Series(np.where(rng.random(n) < 0.5, None, "v"), dtype=object),
        },
        index=rng.permutation(n),
    )
    builder = RowBuilder(df)
    assert len(builder) == n
    sizes = []
    rebuilt = []
    for positions, rows in builder.chunks(500):
        assert rows == rows_for_chunk(df.iloc[positions])
        sizes.append(len(rows))
        rebuilt.extend(rows)
    assert sizes == [500, 500, 203]
    assert rebuilt == builder.rows()
    assert [r["externalId"] for r in rebuilt] == df["externalId"].tolist()


_TEXT_DTYPES: list[Any] = [
    STR_DTYPE,
    "string[pyarrow]",
    "string[python]",
    pd.ArrowDtype(pa.string()),
    pd.ArrowDtype(pa.large_string()),
]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.lists(
        st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"]), max_size=6)),
        max_size=40,
    ),
    cut=st.integers(1, 40),
    size=st.integers(1, 17),
)
def test_text_columns_of_every_storage_build_the_same_rows(
    cells: list[str | None], cut: int, size: int
) -> None:
    # Arrow-held text is converted slice by slice; it must give exactly what object cells
    # give, across chunk boundaries and across the pieces of a chunked Arrow array.
    expected = RowBuilder(pd.DataFrame({"person.name.first": pd.Series(cells, dtype=object)}))
    for dtype in _TEXT_DTYPES:
        col = pd.Series(cells, dtype=dtype)
        pieces = pd.concat([col.iloc[:cut], col.iloc[cut:]], ignore_index=True)
        for series in (col, pieces):
            builder = RowBuilder(pd.DataFrame({"person.name.first": series}))
            for positions in chunk_slices(len(cells), size):
                assert builder.rows(positions) == expected.rows(positions), dtype


def test_object_array_shares_one_object() -> None:
    a = object_array(4, "not_sent")
    assert a.dtype == object and a.tolist() == ["not_sent"] * 4
    assert len({id(v) for v in a}) == 1


def test_row_builder_rejects_stepped_slices_and_handles_empty() -> None:
    builder = RowBuilder(pd.DataFrame({"a": [1, 2, 3]}))
    with pytest.raises(ValueError, match="step"):
        builder.rows(slice(0, 3, 2))
    assert builder.rows(slice(2, 1)) == []
    assert RowBuilder(pd.DataFrame(index=range(2))).rows() == [{}, {}]
    assert rows_for_chunk(pd.DataFrame({"a": []})) == []


def test_chunk_slices() -> None:
    assert list(chunk_slices(0, 500)) == []
    assert list(chunk_slices(1000, 500)) == [slice(0, 500), slice(500, 1000)]
    with pytest.raises(ValueError):
        list(chunk_slices(3, 0))


@given(n=st.integers(0, 3000), size=st.integers(1, 700))
def test_chunk_slices_cover_in_order(n: int, size: int) -> None:
    slices = list(chunk_slices(n, size))
    covered = [i for s in slices for i in range(n)[s]]
    assert covered == list(range(n))
    assert all(0 < s.stop - s.start <= size for s in slices)


def test_dumps_is_compact_utf8_and_converts_stray_numpy() -> None:
    body = {"accounts": [{"externalId": "é", "n": np.int64(2)}], "dryRun": False}
    assert dumps(body) == '{"accounts":[{"externalId":"é","n":2}],"dryRun":false}'.encode()
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_to_json_value_leaves_out_missing_and_empty_and_refuses_the_unsendable() -> None:
    assert to_json_value(np.float64(2.5)) == 2.5
    assert to_json_value({"a": None}) is None
    assert to_json_value(pd.NA) is None
    with pytest.raises(ValidationError):
        to_json_value(float("inf"))


# --------------------------------------------------------------------------- properties

_PATHS = [
    "externalId",
    "bucket",
    "metadata.a",
    "metadata.b.c",
    "person.name.first",
    "person.name.last",
    "address.city",
    "tags",
    "n",
    "when",
]
_MISSING = st.sampled_from([None, np.nan, pd.NA, pd.NaT])


def _cell(path: str) -> st.SearchStrategy[Any]:
    if path == "tags":
        return st.lists(st.text(max_size=5), max_size=3)
    if path == "n":
        return st.one_of(
            st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False)
        )
    if path == "when":
        return st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1))
    return st.text(max_size=8)


@st.composite
def _frames(draw: st.DrawFn) -> pd.DataFrame:
    paths = draw(st.lists(st.sampled_from(_PATHS), unique=True, min_size=1, max_size=8))
    n = draw(st.integers(0, 12))
    data = {
        path: pd.Series([draw(st.one_of(_MISSING, _cell(path))) for _ in range(n)], dtype=object)
        for path in paths
    }
    frame = pd.DataFrame(data, index=pd.RangeIndex(n))
    if "n" in frame and draw(st.booleans()):
        frame["n"] = pd.to_numeric(
            frame["n"].map(lambda v: None if is_missing(v) else v), errors="coerce"
        )
    return frame


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *(x for v in value.values() for x in _walk(v))]
    if isinstance(value, list):
        return [value, *(x for v in value for x in _walk(v))]
    return [value]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(df=_frames())
def test_rows_never_hold_null_and_every_cell_lands_at_its_path(df: pd.DataFrame) -> None:
    rows = rows_for_chunk(df)
    assert len(rows) == len(df)
    for row in rows:
        for node in _walk(row)[1:]:  # a row may be empty; an object inside it may not
            assert node is not None
            assert not (isinstance(node, float) and math.isnan(node))
            assert node != {}
    for position, row in enumerate(rows):
        expected_paths = set()
        for column in df.columns:
            value = df[column].iloc[position]
            node: Any = row
            parts = column.split(".")
            present = True
            for part in parts:
                if not isinstance(node, dict) or part not in node:
                    present = False
                    break
                node = node[part]
            if is_missing(value):
                assert not present, (column, row)
                continue
            expected_paths.add(column)
            assert present, (column, value, row)
            if isinstance(value, dt.datetime):
                assert pd.Timestamp(node) == pd.Timestamp(value)
            else:
                assert node == value
        # Nothing appears that no column asked for.
        leaves: list[str] = []

        def collect(obj: dict[str, Any], prefix: str, out: list[str] = leaves) -> None:
            for key, val in obj.items():
                if isinstance(val, dict):
                    collect(val, f"{prefix}{key}.")
                else:
                    out.append(f"{prefix}{key}")

        collect(row, "")
        assert set(leaves) == expected_paths
    assert orjson.loads(dumps(rows)) == orjson.loads(orjson.dumps(rows))


def test_docstring_examples() -> None:
    assert doctest.testmod(wire).failed == 0


_TEXT_OR_MISSING = st.one_of(_MISSING, st.text(max_size=4))


@given(
    cells=st.lists(
        st.tuples(
            st.one_of(
                _MISSING,
                st.dictionaries(st.sampled_from(["a", "b", "c"]), _TEXT_OR_MISSING, max_size=3),
            ),
            _TEXT_OR_MISSING,
        ),
        max_size=10,
    )
)
def test_dict_cells_merge_with_dotted_columns(cells: list[tuple[Any, Any]]) -> None:
    df = pd.DataFrame(
        {
            "metadata": pd.Series([d for d, _ in cells], dtype=object),
            "metadata.a": pd.Series([a for _, a in cells], dtype=object),
        }
    )
    for (cell, dotted), row in zip(cells, rows_for_chunk(df), strict=True):
        expected = {}
        if isinstance(cell, dict):
            expected = {k: v for k, v in cell.items() if not is_missing(v)}
        if not is_missing(dotted):
            expected["a"] = dotted  # the dotted column wins
        assert row == ({"metadata": expected} if expected else {})


def test_nested_dict_column_inside_dotted_object() -> None:
    df = pd.DataFrame(
        {
            "person.name": [{"first": "dict", "last": "Lovelace"}, None, {}],
            "person.name.first": ["Ada", "Grace", None],
            "person.birthdate": [None, "1906-12-09", None],
        }
    )
    assert rows_for_chunk(df) == [
        {"person": {"name": {"first": "Ada", "last": "Lovelace"}}},
        {"person": {"name": {"first": "Grace"}, "birthdate": "1906-12-09"}},
        {},
    ]
