"""Cora row validation: prepare(), validate(), valid_mask and the messages."""

from __future__ import annotations

import datetime as dt
import doctest
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recocora.cora._checks as checks
import recocora.cora._coerce as coerce
import recocora.cora._columns as columns
import recocora.cora._schema as schema
from recocora._compat import STR_DTYPE
from recocora._validation import FAILURE_COLUMNS, valid_mask, validation_error
from recocora._wire import rows_for_chunk
from recocora.cora._fields import CATALOGUE
from recocora.cora._schema import check_frame, prepare, validate
from recocora.errors import ConfigError, ValidationError


def _good(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "externalId": [f"A{i}" for i in range(n)],
            "portfolioId": "P1",
            "bucket": "7",
            "phoneNumber": [f"+1555555{i:04d}" for i in range(n)],
            "status": "ACTIVE",
            "emailAddress": [f"u{i}@example.com" for i in range(n)],
            "person.name.first": "Ada",
            "person.birthdate": "1990-01-31",
            "address.zip": "02134",
            "currentBalance": 450.25,
            "tags": [["vip"]] * n,
            "metadata.filenumber": [f"F{i}" for i in range(n)],
            "metadata.anything.deep": 1,
        },
        index=pd.Index([f"row{i}" for i in range(n)]),
    )


def _checks(fc: pd.DataFrame) -> list[tuple[Any, Any, str]]:
    return list(zip(fc["index"], fc["column"], fc["check"], strict=True))


# --------------------------------------------------------------------------- prepare


def test_prepare_renames_and_normalises_ids_without_touching_the_input() -> None:
    df = pd.DataFrame(
        {
            "File #": [123.0, 124.5, np.nan, 2.0**60, -7.0],
            "bucket": [7, 8, 9, 10, 11],
            "address.zip": [2134, 2135, 2136, 2137, 2138],
        }
    )
    before = df.copy()
    out = prepare(df, columns={"File #": "externalId"})
    pd.testing.assert_frame_equal(df, before)
    ids = out["externalId"].tolist()
    assert ids[0] == "123" and ids[4] == "-7"
    assert ids[1] == 124.5  # not whole: left for validate to report
    assert pd.isna(ids[2])
    assert ids[3] == 2.0**60  # too large for a float to hold exactly
    assert out["bucket"].tolist() == ["7", "8", "9", "10", "11"]
    assert out["address.zip"].tolist() == [2134, 2135, 2136, 2137, 2138]  # zeros are lost


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (pd.Series([1, 2], dtype="int64"), ["1", "2"]),
        (pd.Series([1, None], dtype="Int64"), ["1", None]),
        (pd.Series([np.uint64(2**63)], dtype="uint64"), [str(2**63)]),
        (pd.Series(["  a1 ", "b2"], dtype=STR_DTYPE), ["a1", "b2"]),
        (
            pd.Series([" x ", np.int64(5), 6.0, True, None], dtype=object),
            ["x", "5", "6", True, None],
        ),
        (pd.Series(pd.Categorical(["a ", "b"])), ["a", "b"]),
    ],
)
def test_prepare_external_id_forms(ids: pd.Series, expected: list[Any]) -> None:
    got = prepare(pd.DataFrame({"externalId": ids}))["externalId"].tolist()
    assert [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in got] == (
        expected
    )


def test_prepare_formats_birthdates() -> None:
    df = pd.DataFrame(
        {
            "a": pd.to_datetime(["1990-01-02", None, "1990-01-03 10:00"], format="ISO8601"),
            "b": [dt.date(1990, 1, 2), pd.Timestamp("1991-02-03"), "1992-03-04"],
            "c": pd.to_datetime(["1990-01-02"])
            .tz_localize("Europe/Paris")
            .append(pd.DatetimeIndex([pd.NaT, pd.NaT], tz="Europe/Paris")),
        }
    )
    a = prepare(df.rename(columns={"a": "person.birthdate"}))["person.birthdate"].tolist()
    assert a[0] == "1990-01-02" and a[1] is None and a[2] == pd.Timestamp("1990-01-03 10:00")
    b = prepare(df.rename(columns={"b": "person.birthdate"}))["person.birthdate"].tolist()
    assert b == ["1990-01-02", "1991-02-03", "1992-03-04"]
    c = prepare(df.rename(columns={"c": "person.birthdate"}))["person.birthdate"].tolist()
    assert c[0] == "1990-01-02"


def test_prepare_rejects_renaming_a_missing_column() -> None:
    with pytest.raises(ConfigError, match="File #"):
        prepare(pd.DataFrame({"x": [1]}), columns={"File #": "externalId"})


# --------------------------------------------------------------------------- validate


def test_a_valid_frame_has_no_failures_and_the_failure_frame_shape() -> None:
    prepared, fc = check_frame(_good())
    assert list(fc.columns) == list(FAILURE_COLUMNS)
    assert fc.empty
    assert valid_mask(fc, prepared.index).all()
    assert validate(prepared, mode="create").empty
    assert validate(_good(0)).empty


def test_external_id_rules() -> None:
    df = pd.DataFrame(
        {"externalId": ["a", "b", "a", "", None, 1.5, "c", "a"]},
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )
    fc = validate(prepare(df))
    assert _checks(fc) == [
        (10, "externalId", "unique"),
        (12, "externalId", "unique"),
        (13, "externalId", "non_empty"),
        (14, "externalId", "required"),
        (15, "externalId", "type"),
        (17, "externalId", "unique"),
    ]
    messages = dict(zip(fc["index"], fc["message"], strict=False))
    assert "rows 12, 17" in messages[10]
    assert "rows 10, 17" in messages[12]
    assert "drop_duplicates" in messages[10]
    assert "whole number" in messages[15]
    assert fc.loc[fc["index"] == 15, "value"].item() == 1.5


def test_missing_external_id_column() -> None:
    fc = validate(pd.DataFrame({"phoneNumber": ["+15555550111"]}))
    assert _checks(fc) == [(None, "externalId", "required_column")]
    assert "columns={" in fc["message"].item()
    assert not valid_mask(fc, pd.RangeIndex(1)).any()


@pytest.mark.parametrize(
    ("column", "value", "check", "hint"),
    [
        ("phoneNumber", "(555) 555-0111", "e164", "normalize_phone"),
        ("phoneNumber", "+0123", "e164", "E.164"),
        ("phoneNumber", 15555550111, "e164", "int"),
        ("phoneNumber", "+1234567890123456", "e164", "E.164"),
        ("currentBalance", "1,200.00", "number", "450.25"),
        ("currentBalance", "inf", "number", "'inf'"),
        ("currentBalance", "nan", "number", "'nan'"),
        ("currentBalance", float("-inf"), "number", "infinite"),
        ("currentBalance", True, "number", "boolean"),
        ("tags", "vip,q3", "string_list", "str.split"),
        ("tags", ["ok", 3], "string_list", "list of text"),
        ("person.birthdate", "1990-02-30", "date", "YYYY-MM-DD"),
        ("person.birthdate", "02/03/1990", "date", "YYYY-MM-DD"),
        ("person.birthdate", pd.Timestamp("1990-01-01 12:00"), "date", "time of day"),
        ("emailAddress", "not-an-email", "email", "name@domain"),
        ("emailAddress", "a@b", "email", "name@domain"),
        ("status", 3.5, "type", "text"),
        ("bucket", {"a": 1}, "type", "dict"),
        ("address.zip", 2134, "type", "leading zeros"),
        ("person.ssn", 12345678, "type", "leading zeros"),
        ("metadata", "oops", "object", "dotted"),
        ("metadata", {"x": float("inf")}, "object", "infinite"),
        ("metadata.x", float("inf"), "json", "infinite"),
        ("metadata.x", ["a", None], "json", "list"),
        ("person", {"nickname": "x"}, "structure", "nickname"),
        ("person", {"name": {"frist": "x"}}, "structure", "'first'"),
        ("person", {"birthdate": "1990-13-01"}, "structure", "YYYY-MM-DD"),
        ("person", "Ada", "structure", "dict"),
        ("address", {"city": 5}, "structure", "text"),
        ("originalCreditor", 5, "string_or_object", "text or a dict"),
        ("history.statuteLimitationsDate", "someday", "datetime", "ISO 8601"),
        ("history.statuteLimitationsDate", 5, "datetime", "not int"),
        ("history.origin", 1.5, "type", "text"),
        ("history", {"origin": 7}, "object", "history.origin must be text"),
        ("history", {"statuteLimitationsDate": "2030-13-01"}, "object", "ISO 8601"),
    ],
)
def test_cell_rules(column: str, value: Any, check: str, hint: str) -> None:
    df = pd.DataFrame({"externalId": ["ok", "bad"], column: pd.Series([None, value], dtype=object)})
    fc = validate(prepare(df))
    assert _checks(fc) == [(1, column, check)], fc.to_dict("records")
    assert hint in fc["message"].item()
    assert valid_mask(fc, df.index).tolist() == [True, False]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("phoneNumber", "+15555550111"),
        ("currentBalance", "450.25"),
        ("currentBalance", 12),
        ("currentBalance", "-1e3"),
        ("tags", ("a", "b")),
        ("tags", []),
        ("person.birthdate", dt.date(1990, 1, 2)),
        ("emailAddress", "first.last+tag@mail.example.co.uk"),
        ("bucket", 7),
        ("metadata", {"filenumber": 1, "nested": {"a": [1, 2]}}),
        ("metadata.x.y", {"free": "form"}),
        ("history.origin", "import"),
        ("compliance.flags", ["a"]),
        ("smsOptOut.sms", True),
        ("person", {"name": {"first": "A"}, "birthdate": "1990-01-02", "ssn": "012"}),
        ("person.name", {"first": "A", "last": None}),
        ("originalCreditor", "Bank"),
        ("originalCreditor", {"name": "Bank"}),
        ("originalCreditor.name", "Bank"),
        ("history.statuteLimitationsDate", "2031-02-03T00:00:00Z"),
        ("history.statuteLimitationsDate", pd.Timestamp("2031-02-03 10:00", tz="UTC")),
        ("history", {"statuteLimitationsDate": "2031-02-03", "anything": [1]}),
        ("history.anything", {"free": "form"}),
    ],
)
def test_valid_cells_pass(column: str, value: Any) -> None:
    df = pd.DataFrame({"externalId": ["a"], column: pd.Series([value], dtype=object)})
    fc = validate(prepare(df))
    assert fc.empty, fc.to_dict("records")
    rows_for_chunk(prepare(df))  # and it serialises


def test_numeric_string_columns_of_typed_dtypes() -> None:
    df = pd.DataFrame(
        {
            "externalId": ["a", "b"],
            "currentBalance": pd.array([1, None], dtype="Int64"),
            "tags": [["x"], None],
        }
    )
    assert validate(df).empty
    df["currentBalance"] = [1.0, np.inf]
    assert _checks(validate(df)) == [(1, "currentBalance", "number")]
    df["currentBalance"] = [True, False]
    assert len(validate(df)) == 2


def test_read_only_and_unknown_columns() -> None:
    df = pd.DataFrame(
        {
            "externalId": ["a"],
            "organizationId": ["org"],
            "id": ["x"],
            "createdAt": ["2024-01-01"],
            "phonenumber": ["+1"],
            "phone_number": ["+1"],
            "Email": ["a@b.co"],
            "first_name": ["Ada"],
            "person.nickname": ["Addy"],
            "person.name.frist": ["Ada"],
            "bucket.sub": ["x"],
            "Whatever": [1],
        }
    )
    fc = validate(df)
    assert fc["index"].isna().all()
    by_column = dict(zip(fc["column"], zip(fc["check"], fc["message"], strict=True), strict=True))
    assert by_column["organizationId"][0] == "read_only"
    assert "API key" in by_column["organizationId"][1]
    assert "columns={'id': 'externalId'}" in by_column["id"][1]
    assert "read-only" in by_column["createdAt"][1]
    assert "did you mean 'phoneNumber'" in by_column["phonenumber"][1]
    assert "did you mean 'phoneNumber'" in by_column["phone_number"][1]
    assert "did you mean 'emailAddress'" in by_column["Email"][1]
    assert "did you mean 'person.name.first'" in by_column["first_name"][1]
    assert by_column["person.nickname"][0] == "unknown_column"
    assert "name.first" in by_column["person.nickname"][1]
    assert "did you mean 'person.name.first'" in by_column["person.name.frist"][1]
    assert "not an object" in by_column["bucket.sub"][1]
    assert "metadata" in by_column["Whatever"][1]
    assert "did you mean" not in by_column["Whatever"][1]
    assert len(fc) == 11
    assert not valid_mask(fc, df.index).any()


def test_duplicate_columns_and_non_unique_index() -> None:
    df = pd.DataFrame([["a", "b"], ["c", "d"]], columns=["externalId", "externalId"])
    fc = validate(df)
    assert ("duplicate_column", "externalId") in set(zip(fc["check"], fc["column"], strict=True))
    df = pd.DataFrame({"externalId": ["a", "b"]}, index=[5, 5])
    fc = validate(df)
    assert _checks(fc) == [(None, None, "unique_index")]
    assert "reset_index" in fc["message"].item()


def test_scalar_with_dotted_children_conflict() -> None:
    df = pd.DataFrame(
        {
            "externalId": ["a", "b"],
            "originalCreditor": ["Bank", None],
            "originalCreditor.name": ["x", "y"],
        }
    )
    assert _checks(validate(df)) == [(0, "originalCreditor", "conflict")]


def test_create_mode_requirements() -> None:
    df = pd.DataFrame(
        {
            "externalId": ["a", "b", "c", "d"],
            "phoneNumber": ["+15555550111", None, "+15555550113", "+15555550114"],
            "portfolioId": ["P", "P", None, "P"],
            "metadata": [None, {"filenumber": "F2"}, {"other": 1}, {"filenumber": None}],
            "metadata.filenumber": ["F1", None, "F3", None],
        }
    )
    assert validate(df).empty  # upsert leaves create-only fields to the server
    fc = validate(df, mode="create")
    assert _checks(fc) == [
        (1, "phoneNumber", "required"),
        (2, "portfolioId", "required"),
        (3, "metadata.filenumber", "required"),
    ]
    assert all("mode='create'" in m for m in fc["message"])

    only_dicts = df.drop(columns=["metadata.filenumber"])
    assert (3, "metadata.filenumber", "required") in _checks(validate(only_dicts, mode="create"))
    assert (0, "metadata.filenumber", "required") in _checks(validate(only_dicts, mode="create"))

    bare = pd.DataFrame({"externalId": ["a"]})
    assert set(_checks(validate(bare, mode="create"))) == {
        (None, "phoneNumber", "required_column"),
        (None, "portfolioId", "required_column"),
        (None, "metadata.filenumber", "required_column"),
    }
    with pytest.raises(ConfigError):
        validate(bare, mode="insert")  # type: ignore[arg-type]


def test_index_labels_are_preserved() -> None:
    index = pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)])
    df = pd.DataFrame(
        {"externalId": ["a", "b", "c"], "phoneNumber": ["+1", "bad", "+2"]}, index=index
    )
    fc = validate(df)
    assert fc["index"].tolist() == [("x", 2)]
    assert valid_mask(fc, df.index).tolist() == [True, False, True]

    df = _good(5).sample(frac=1, random_state=3)
    df.loc["row3", "phoneNumber"] = "nope"
    fc = validate(df)
    assert fc["index"].tolist() == ["row3"]


def test_validation_error_message() -> None:
    df = pd.DataFrame({"externalId": [f"A{i}" for i in range(15)], "phoneNumber": "555"})
    df["organizationId"] = "org"
    fc = validate(df)
    err = validation_error(fc)
    assert isinstance(err, ValidationError) and err.failure_cases is fc
    lines = str(err).splitlines()
    assert lines[0] == "15 rows and 1 column failed validation (16 problems):"
    assert lines[1] == "  by column: phoneNumber (e164) x15, organizationId (read_only) x1"
    assert lines[2].startswith("  column organizationId: ")
    assert lines[3].startswith("  row 0, column phoneNumber: not an E.164 phone number")
    assert "... and 6 more" in lines[12]
    assert "on_invalid='skip'" in lines[-1]


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(["a", "b", "c", " d ", ""]),
            st.integers(0, 3),
            st.floats(0, 3),
        ),
        min_size=0,
        max_size=12,
    ),
    phones=st.lists(
        st.one_of(st.none(), st.sampled_from(["+15555550111", "555", ""])), min_size=12, max_size=12
    ),
)
def test_failures_only_name_input_rows_and_valid_rows_are_clean(
    ids: list[Any], phones: list[Any]
) -> None:
    index = pd.Index([f"r{i}" for i in range(len(ids))])
    df = pd.DataFrame(
        {
            "externalId": pd.Series(ids, dtype=object, index=index),
            "phoneNumber": pd.Series(phones[: len(ids)], dtype=object, index=index),
        }
    )
    prepared = prepare(df)
    fc = validate(prepared)
    assert set(fc["index"]) <= set(index)
    ok = valid_mask(fc, index)
    good = prepared[ok.to_numpy()]
    assert validate(good).empty
    assert good["externalId"].map(lambda v: isinstance(v, str) and v != "").all()
    assert good["externalId"].is_unique
    rows_for_chunk(good)


_SCALARS = st.one_of(
    st.none(),
    st.just(np.nan),
    st.just(pd.NA),
    st.just(pd.NaT),
    st.text(max_size=6),
    st.sampled_from(["+15555550111", "1990-01-02", "a@b.co", "12.5", "inf", ""]),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.decimals(allow_nan=False, allow_infinity=True),
    st.just(Decimal("NaN")),
    st.binary(max_size=3),
    st.just(np.int64(7)),
)
_JUNK = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(
            st.sampled_from(["name", "first", "filenumber", "x", "zip"]), inner, max_size=3
        ),
    ),
    max_leaves=6,
)
_COLUMNS = [
    *CATALOGUE,
    "metadata.x",
    "metadata.y.z",
    "history.origin",
    "originalCreditor.name",
]


@settings(max_examples=150, deadline=None)
@given(
    columns=st.lists(st.sampled_from(_COLUMNS), min_size=1, max_size=5, unique=True),
    data=st.data(),
    mode=st.sampled_from(["upsert", "create"]),
)
def test_any_cells_get_a_verdict_and_valid_rows_serialise(
    columns: list[str], data: st.DataObject, mode: str
) -> None:
    n = data.draw(st.integers(1, 6))
    df = pd.DataFrame(
        {c: pd.Series([data.draw(_JUNK) for _ in range(n)], dtype=object) for c in columns}
    )
    prepared = prepare(df)
    fc = validate(prepared, mode=mode)  # type: ignore[arg-type]
    assert "check_error" not in set(fc["check"]), fc.to_dict("records")
    assert list(fc.columns) == list(FAILURE_COLUMNS)
    assert fc["message"].map(lambda m: isinstance(m, str) and len(m) > 10).all()
    good = prepared[valid_mask(fc, prepared.index).to_numpy()]
    rows = rows_for_chunk(good)
    assert len(rows) == len(good)


@pytest.mark.parametrize("module", [schema, coerce, columns, checks])
def test_docstring_examples(module: Any) -> None:
    assert doctest.testmod(module).failed == 0
