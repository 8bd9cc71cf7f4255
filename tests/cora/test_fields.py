"""The field catalogue: the contract's table, and one set of rules for validation and diff.

The property at the heart of it: over frames that vary every catalogued field with good and
bad values of its kind, every row whose wire form the local diff predicts the server will
refuse for a value's type or shape is a row ``validate()`` reports.
"""

from __future__ import annotations

import datetime as dt
import doctest
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import recocora  # noqa: F401  (registers df.cora)
import recocora.cora._fields as fields
from recocora import CoraClient
from recocora._validation import valid_mask
from recocora._wire import rows_for_chunk
from recocora.cora._fields import (
    CATALOGUE,
    CLOSED_OBJECTS,
    CREATE_ONLY,
    CREATE_REQUIRED,
    OPEN_OBJECTS,
    READ_ONLY,
    TOP_LEVEL,
    Field,
    child,
    field_of,
    keys_of,
    row_problems,
)
from recocora.cora._predict import predict_results
from recocora.cora._schema import prepare, validate
from recocora.errors import ValidationError
from recocora.sandbox import Sandbox

# The per-row codes that say a value's type or shape is wrong (not a missing create field).
SHAPE_CODES = frozenset({"FIELD_NOT_UPDATABLE", "INVALID_FIELD_VALUE", "INVALID_PHONE_NUMBER"})


# --------------------------------------------------------------------------- the table


def test_catalogue_follows_the_contract() -> None:
    assert set(TOP_LEVEL) == {
        "externalId", "portfolioId", "bucket", "phoneNumber", "metadata", "status",
        "clientStatus", "emailAddress", "person", "address", "history", "typeOfDebt",
        "compliance", "paymentRules", "contactInfo", "smsOptOut", "bank", "client",
        "originalCreditor", "currentBalance", "tags",
    }
    assert {
        "id", "organizationId", "status_category", "currentEmailAddressId", "emailAddressIds",
        "createdAt", "updatedAt",
    } == READ_ONLY
    assert not READ_ONLY & set(CATALOGUE)
    assert {"metadata", "history", "compliance", "paymentRules", "contactInfo", "smsOptOut",
            "originalCreditor"} == OPEN_OBJECTS
    assert {"person", "person.name", "address"} == CLOSED_OBJECTS
    assert set(keys_of("address")) == {
        "street", "additionalStreet", "city", "state", "zip", "country"
    }
    assert set(keys_of("person")) == {"name", "birthdate", "ssn", "last4SSN"}
    assert CATALOGUE["history.origin"].kind == "text"
    assert CATALOGUE["history.statuteLimitationsDate"].kind == "datetime"
    assert CREATE_REQUIRED == ("phoneNumber", "portfolioId", "metadata.filenumber")
    assert {"externalId", "portfolioId"} == CREATE_ONLY


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("metadata.a.b", "any"),
        ("history.anything", "any"),
        ("originalCreditor.name", "any"),
        ("metadata.filenumber.x", "any"),
        ("person.name.first", "text"),
        ("person.nickname", None),
        ("person.name.middle", None),
        ("phoneNumber.x", None),
        ("history.origin.x", None),
        ("metadata.", None),
        ("", None),
        ("organizationId", None),
    ],
)
def test_field_of_walks_the_dotted_path(path: str, kind: str | None) -> None:
    found = field_of(path)
    assert (found.kind if found is not None else None) == kind


def test_a_dotted_key_inside_a_dict_is_not_a_path() -> None:
    assert child(CATALOGUE["person"], "name.first") is None
    problems = list(row_problems({"person": {"name.first": "Ada"}}))
    assert [(p.path, p.code) for p in problems] == [("person.name.first", "INVALID_FIELD_VALUE")]


def test_docstring_examples() -> None:
    assert doctest.testmod(fields).failed == 0


# --------------------------------------------------------------------------- the example


def test_a_statute_date_the_server_refuses_is_refused_by_validate(
    sb: Sandbox, client: CoraClient
) -> None:
    df = pd.DataFrame(
        {
            "externalId": ["A1", "A2", "A3"],
            "history.statuteLimitationsDate": ["2031-02-03T00:00:00Z", "not-a-date", None],
            "history": [None, None, {"statuteLimitationsDate": "someday", "source": "x"}],
        },
        index=["a", "b", "c"],
    )
    predicted = predict_results(rows_for_chunk(df), {})
    assert [r.get("code") for r in predicted] == [
        "MISSING_REQUIRED_FIELD", "INVALID_FIELD_VALUE", "INVALID_FIELD_VALUE"
    ]
    assert predicted[1]["details"][0]["field"] == "history.statuteLimitationsDate"

    fc = df.cora.validate()
    assert list(zip(fc["index"], fc["column"], fc["check"], strict=True)) == [
        ("b", "history.statuteLimitationsDate", "datetime"),
        ("c", "history", "object"),
    ]
    assert "ISO 8601" in fc["message"].iloc[0] and "pd.to_datetime" in fc["message"].iloc[0]
    assert "history.statuteLimitationsDate" in fc["message"].iloc[1]
    with pytest.raises(ValidationError) as info:
        df.cora.diff(client=client, progress=False)
    assert sb.requests == []
    assert "row b, column history.statuteLimitationsDate: must be an ISO 8601" in str(
        info.value
    )


# --------------------------------------------------------------------------- the property

GOOD: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["x1", " x2 ", "a,b", 7, 8.0]),
    "text": st.one_of(st.text(max_size=4), st.sampled_from([7, np.int64(3), 2.0])),
    "code": st.sampled_from(["02134", "0", ""]),
    "email": st.sampled_from(["a@b.co", "first.last+x@mail.example.org"]),
    "phone": st.sampled_from(["+15555550111", "+447700900123"]),
    "date": st.sampled_from(
        ["1990-01-02", dt.date(1991, 2, 3), pd.Timestamp("1992-03-04"), "1500-01-01"]
    ),
    "datetime": st.sampled_from(
        ["2031-02-03T00:00:00Z", "2030-01-01", "2030-01-01T10:00:00+02:00",
         pd.Timestamp("2030-01-01 10:00", tz="Europe/Paris"), dt.datetime(2030, 5, 6, 7, 8),
         dt.date(2030, 1, 2)]
    ),
    "number": st.sampled_from([12.5, 100, "450.25", " 7 ", "-1e3", Decimal("2.5"), np.int64(4)]),
    "text_list": st.sampled_from([["vip"], [], ("a", "b"), np.array(["q3"])]),
    "text_or_object": st.sampled_from(["Bank", {"name": "Bank"}, {}]),
    "any": st.sampled_from([1, "x", True, {"a": [1, 2]}, ["a"], 2.5]),
}

BAD: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["", 1.5, True, ["x"]]),
    "text": st.sampled_from([1.5, True, ["a"], {"a": 1}, dt.date(2020, 1, 1)]),
    "code": st.sampled_from([2134, 1.5, True]),
    "email": st.sampled_from(["nope", "a@b", 5]),
    "phone": st.sampled_from(["555-0100", "+0123", "", 15555550111, "+1234567890123456"]),
    "date": st.sampled_from(
        ["1990-02-30", "02/03/1990", "19900102", pd.Timestamp("1990-01-01 12:00"), 5]
    ),
    "datetime": st.sampled_from(
        ["not-a-date", "someday", "2030-13-01", "", 5, True, ["2030-01-01"]]
    ),
    "number": st.sampled_from(
        ["1,200.00", "inf", "nan", "", "abc", True, float("inf"), ["1"], {"n": 1}]
    ),
    "text_list": st.sampled_from(["a,b", ["a", 3], 5, {"a": "b"}]),
    "text_or_object": st.sampled_from([5, ["a"], True, 2.5]),
    "any": st.sampled_from([float("inf"), {"a": float("-inf")}]),
}


def values_of(field: Field, depth: int = 0) -> st.SearchStrategy[Any]:
    """Good and bad values for ``field``, from its kind (objects: from their keys)."""
    if field.kind != "object":
        return st.one_of(GOOD[field.kind], BAD[field.kind])
    keys = [(k, child(field, k)) for k in keys_of(field.path)]
    extra = [("nickname", child(field, "nickname")), ("name.first", None)]
    parts = [
        st.tuples(st.just(k), values_of(f, depth + 1) if f is not None else GOOD["any"])
        for k, f in keys + extra
    ]
    dicts = st.lists(st.one_of(parts), max_size=3).map(dict) if parts else st.just({})
    return st.one_of(dicts, dicts, st.sampled_from(["text", 5, ["a"]]))


COLUMNS = [*CATALOGUE, "metadata.x", "history.source", "originalCreditor.name", "createdAt"]


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 6))
    labels = [f"r{i}" for i in range(n)]
    ids = [draw(st.one_of(st.just(f"id{i}"), st.just(f"id{i}"), values_of(CATALOGUE["externalId"])))
           for i in range(n)]
    data: dict[str, Any] = {"externalId": pd.Series(ids, index=labels, dtype=object)}
    for column in draw(st.lists(st.sampled_from(COLUMNS[1:]), min_size=1, max_size=4,
                                unique=True)):
        field = field_of(column)
        cells = values_of(field) if field is not None else st.just("2024-01-01")
        drawn = draw(st.lists(st.one_of(st.none(), cells, cells), min_size=n, max_size=n))
        data[column] = pd.Series(drawn, index=labels, dtype=object)
    return pd.DataFrame(data, index=labels)


def predicted_failure(row: pd.DataFrame) -> str | None:
    """The code the diff predicts for this one-row frame's wire row, or ``"unsendable"``."""
    try:
        wire = rows_for_chunk(row)
    except ValidationError:
        return "unsendable"
    code = predict_results(wire, {})[0].get("code")
    return code if code in SHAPE_CODES else None


@settings(max_examples=150, deadline=None)
@given(df=frames())
def test_every_row_the_diff_predicts_failing_is_reported_by_validate(df: pd.DataFrame) -> None:
    prepared = prepare(df)
    reported = ~valid_mask(validate(prepared), prepared.index)
    for position, label in enumerate(prepared.index):
        code = predicted_failure(prepared.iloc[[position]])
        event(f"{code or 'accepted'}, {'reported' if reported[label] else 'valid'}")
        if code is not None:
            assert reported[label], (label, code, prepared.iloc[position].to_dict())
