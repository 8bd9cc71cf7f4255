"""Recotap mapping rows: prepare(), validate(), prepare_checked(), superseded_mask/by()."""

from __future__ import annotations

import doctest
import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recocora.recotap._schema as schema
from recocora._compat import STR_DTYPE
from recocora.errors import ValidationError
from recocora.recotap._schema import (
    prepare,
    prepare_checked,
    superseded_by,
    superseded_mask,
    validate,
    validation_error,
)

COLUMNS = ["index", "column", "check", "value", "message"]


def frame(domains: list[Any], ids: list[Any], index: Any = None) -> pd.DataFrame:
    """Columns ``domain`` and ``externalId`` holding the cells as given."""
    df: pd.DataFrame = pd.DataFrame(
        {
            "domain": pd.Series(domains, dtype=object).to_numpy(),
            "externalId": pd.Series(ids, dtype=object).to_numpy(),
        },
        index=index,
    )
    return df


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------


def test_prepare_normalises_and_keeps_the_index() -> None:
    df = pd.DataFrame(
        {
            "Website": ["HTTPS://WWW.Acme.com/x", "Bücher.de", "b.org"],
            "CRM id": ["  crm-1 ", "crm-2", "crm-3"],
            "other": [1, 2, 3],
        },
        index=["r1", "r2", "r3"],
    )
    out = prepare(df, domain="Website", external_id="CRM id")
    assert list(out.columns) == ["domain", "externalId"]
    assert list(out.index) == ["r1", "r2", "r3"]
    assert out["domain"].tolist() == ["acme.com", "xn--bcher-kva.de", "b.org"]
    assert out["externalId"].tolist() == ["crm-1", "crm-2", "crm-3"]


def test_prepare_does_not_touch_the_input() -> None:
    df = frame([" WWW.Acme.com ", "bad"], [123.0, " x "])
    before = df.copy()
    prepare(df)
    validate(df)
    pd.testing.assert_frame_equal(df, before)


def test_ids_read_from_a_csv_with_blanks_become_whole_number_strings() -> None:
    csv = "domain,externalId\nacme.com,123\nb.com,\nc.com,4567890123\n"
    df = pd.read_csv(io.StringIO(csv))
    assert df["externalId"].dtype == np.float64
    out = prepare(df)
    assert out["externalId"].tolist()[0] == "123"
    assert pd.isna(out["externalId"].iloc[1])
    assert out["externalId"].iloc[2] == "4567890123"


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (pd.Series([1, 22], dtype=np.int64), ["1", "22"]),
        (pd.Series([1, None], dtype="Int64"), ["1", None]),
        (pd.Series([1.0, 2.0], dtype="Float64"), ["1", "2"]),
        (pd.Series([-5.0, 0.0]), ["-5", "0"]),
        (pd.Series(["007", " a b "], dtype="string"), ["007", "a b"]),
        (pd.Series(["007", None], dtype=STR_DTYPE), ["007", None]),
        (pd.Series([7, np.int32(8), 9.0, np.float32(10.0), " s "], dtype=object),
         ["7", "8", "9", "10", "s"]),
        (pd.Series(["x", "y", "x"], dtype="category"), ["x", "y", "x"]),
    ],
)
def test_ids_of_every_dtype(ids: pd.Series[Any], expected: list[Any]) -> None:
    df = pd.DataFrame({"domain": ["a.com", "b.com", "c.com", "d.com", "e.com"][: len(ids)],
                       "externalId": ids})
    got = prepare(df)["externalId"].tolist()
    assert [None if pd.isna(v) else v for v in got] == expected


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------


def test_valid_frame_gives_empty_failure_cases() -> None:
    out = validate(frame(["acme.com", "https://b.org/"], ["1", 2]))
    assert out.empty
    assert list(out.columns) == COLUMNS


def test_failure_cases_name_row_user_column_check_value_and_reason() -> None:
    df = pd.DataFrame(
        {
            "Website": ["acme.com", "bob@acme.com", None, "b.com", "c.com", "d.com"],
            "CRM id": ["ok", "x", "y", 1.5, "   ", True],
        },
        index=["a", "b", "c", "d", "e", "f"],
    )
    out = validate(df, domain="Website", external_id="CRM id")
    assert list(out.columns) == COLUMNS
    rows = [tuple(r) for r in out[["index", "column", "check"]].itertuples(index=False)]
    assert rows == [
        ("b", "Website", "valid_domain"),
        ("c", "Website", "not_nullable"),
        ("d", "CRM id", "valid_external_id"),
        ("e", "CRM id", "valid_external_id"),
        ("f", "CRM id", "valid_external_id"),
    ]
    messages = dict(zip(out["index"], out["message"], strict=True))
    assert "email" in messages["b"]
    assert messages["c"] == "is missing"
    assert "fractional" in messages["d"]
    assert messages["e"] == "is empty"
    assert "boolean" in messages["f"]
    assert out["value"].tolist()[0] == "bob@acme.com"
    assert out["value"].tolist()[2] == 1.5


def test_failure_values_are_the_cells_as_given() -> None:
    df = pd.DataFrame({"domain": pd.Series([" x@y.com ", None], dtype=object),
                       "externalId": pd.Series([None, 2.5], dtype=object)})
    assert validate(df)["value"].tolist() == [" x@y.com ", None, None, 2.5]


def test_both_cells_of_one_row_are_reported_domain_first() -> None:
    out = validate(frame(["localhost"], [None]))
    assert out["column"].tolist() == ["domain", "externalId"]
    assert out["check"].tolist() == ["valid_domain", "not_nullable"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "is missing"),
        (np.nan, "is missing"),
        ("", "is empty"),
        (" \t", "is empty"),
        (2.5, "fractional part (2.5)"),
        (float("inf"), "not a finite number"),
        (2.0**60, "read the column as text"),
        (True, "boolean"),
        ({"id": 1}, "is a dict"),
        (["a"], "is a list"),
        (pd.Timestamp("2024-01-01"), "is a Timestamp"),
    ],
)
def test_bad_external_ids(value: Any, reason: str) -> None:
    out = validate(frame(["acme.com"], [value]))
    assert len(out) == 1
    assert out["column"].iloc[0] == "externalId"
    assert reason in out["message"].iloc[0]
    assert pd.isna(prepare(frame(["acme.com"], [value]))["externalId"].iloc[0])


def test_bool_column_is_rejected_whole() -> None:
    df = pd.DataFrame({"domain": ["a.com", "b.com"], "externalId": [True, False]})
    assert validate(df)["check"].tolist() == ["valid_external_id"] * 2


def test_missing_columns_name_what_the_frame_has() -> None:
    df = pd.DataFrame({"Website": ["acme.com"], "CRM id": ["1"]})
    with pytest.raises(ValidationError) as info:
        validate(df)
    text = str(info.value)
    assert "'domain'" in text and "'externalId'" in text
    assert "domain=" in text and "external_id=" in text
    assert "['Website', 'CRM id']" in text
    assert info.value.failure_cases["column"].tolist() == ["domain", "externalId"]
    assert info.value.failure_cases["check"].unique().tolist() == ["column_in_dataframe"]
    with pytest.raises(ValidationError, match="external_id="):
        prepare(df, domain="Website")


def test_one_column_for_both_roles_is_refused() -> None:
    df = pd.DataFrame({"domain": ["acme.com"]})
    with pytest.raises(ValidationError, match="both domain= and external_id="):
        validate(df, external_id="domain")


def test_duplicated_column_name_is_refused() -> None:
    df = pd.DataFrame([["a.com", "b.com", "1"]], columns=["domain", "domain", "externalId"])
    with pytest.raises(ValidationError, match="2 columns with this name"):
        validate(df)


def test_multiindex_and_duplicate_labels() -> None:
    mi = pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)])
    out = validate(frame(["a.com", "bad", "c.com"], ["1", "2", None], index=mi))
    assert out["index"].tolist() == [("x", 2), ("y", 1)]

    dup = frame(["a.com", "bad", "c.com"], ["1", "2", "3"], index=[5, 5, 5])
    assert validate(dup)["index"].tolist() == [5]
    assert prepare(dup)["domain"].isna().tolist() == [False, True, False]


def test_validation_error_summarises() -> None:
    df = frame(["localhost", "a.com", "c.com"], [None, None, "3"], index=["p", "q", "s"])
    cases = validate(df)
    err = validation_error(cases)
    assert isinstance(err, ValidationError)
    assert err.failure_cases is cases
    text = str(err)
    assert len(cases) == 3
    assert text.startswith("2 rows failed validation (3 problems):")
    assert "row p, column domain: " in text and "(value: 'localhost')" in text
    assert "row q, column externalId: is missing" in text
    assert "nan" not in text
    assert "on_invalid='skip'" in text


def test_docstrings() -> None:
    assert doctest.testmod(schema, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


_cell = st.one_of(
    st.none(),
    st.just(np.nan),
    st.sampled_from(["acme.com", "WWW.B.org/", "bad", "", "  ", "x@y.com", "Bücher.de", "7"]),
    st.integers(-10, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_cell, _cell), min_size=1, max_size=15))
def test_a_row_is_ready_exactly_when_it_has_no_failure_case(rows: list[tuple[Any, Any]]) -> None:
    labels = [f"r{n}" for n in range(len(rows))]
    df = frame([d for d, _ in rows], [i for _, i in rows], index=labels)
    prepared, failures = prepare_checked(df)
    ready = prepared.notna().all(axis=1)
    assert set(prepared.index[~ready]) == set(failures["index"])
    assert prepared.index.equals(df.index)
    ids = prepared["externalId"].dropna()
    assert (ids.str.strip() == ids).all() and (ids != "").all()


# --------------------------------------------------------------------------------------------
# superseded rows
# --------------------------------------------------------------------------------------------


def test_the_last_row_of_a_domain_wins() -> None:
    domains = pd.Series(["a.com", "b.com", "a.com", None, "a.com", None], index=list("uvwxyz"))
    assert superseded_mask(domains).tolist() == [True, False, True, False, False, False]
    assert superseded_by(domains).tolist() == ["y", None, "y", None, None, None]
    assert superseded_mask(domains).index.equals(domains.index)


def test_superseded_by_under_a_multiindex() -> None:
    mi = pd.MultiIndex.from_tuples([("a", 1), ("a", 2)])
    assert superseded_by(pd.Series(["x.com", "x.com"], index=mi)).tolist() == [("a", 2), None]


def test_superseded_on_empty() -> None:
    empty = pd.Series([], dtype="string")
    assert superseded_mask(empty).empty
    assert superseded_by(empty).empty


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a.com", "b.com", "c.com", "d.org"]))))
def test_superseded_keeps_exactly_the_last_row_of_each_domain(values: list[str | None]) -> None:
    labels = [f"k{n * 7 % 101}" for n in range(len(values))]  # unique, not in order
    domains = pd.Series(values, index=labels, dtype="string")
    mask = superseded_mask(domains)
    winners = superseded_by(domains)
    kept = domains[~mask].dropna()
    assert sorted(kept.tolist()) == sorted(set(domains.dropna()))
    for domain in set(domains.dropna()):
        positions = [p for p, v in enumerate(values) if v == domain]
        assert not mask.iloc[positions[-1]]
        assert mask.iloc[positions[:-1]].all()
        assert (winners.iloc[positions[:-1]] == labels[positions[-1]]).all()
        assert winners.iloc[positions[-1]] is None
    assert not mask[domains.isna()].any()
    assert winners[~mask].isna().all()
