"""``normalize_phone``: phone numbers written any common way, read into E.164."""

from __future__ import annotations

import doctest
from typing import Any

import pandas as pd
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recocora.cora._phones as phones
from recocora import normalize_phone
from recocora.cora._fields import E164
from recocora.cora._schema import validate
from recocora.errors import ConfigError, ValidationError


def test_normalize_phone_examples() -> None:
    s = pd.Series(
        ["(555) 555-0111", None, "+44 20 7946 0958", 5555550112, 5555550113.0, " 555.555.0114 "],
        index=list("abcdef"),
        name="phone",
    )
    out = normalize_phone(s)
    assert out.index.tolist() == list("abcdef") and out.name == "phone"
    assert out.tolist()[0] == "+15555550111"
    assert pd.isna(out["b"])
    assert out.tolist()[2:] == ["+442079460958", "+15555550112", "+15555550113", "+15555550114"]
    assert normalize_phone(pd.Series(["020 7946 0958"]), region="gb").tolist() == ["+442079460958"]


def test_normalize_phone_errors() -> None:
    s = pd.Series(
        ["(555) 555-0111", "abc", "555-0111", "555 555 0111 ext 2", True, None],
        index=[10, 11, 12, 13, 14, 15],
    )
    with pytest.raises(ValidationError) as info:
        normalize_phone(s)
    fc = info.value.failure_cases
    assert fc["index"].tolist() == [11, 12, 13, 14]
    assert fc["value"].tolist() == ["abc", "555-0111", "555 555 0111 ext 2", True]
    assert "area code" in fc["message"].tolist()[1]
    assert "extension" in fc["message"].tolist()[2]
    assert "errors='coerce'" in str(info.value)

    kept = normalize_phone(s, errors="keep")
    assert kept.tolist()[:5] == ["+15555550111", "abc", "555-0111", "555 555 0111 ext 2", True]
    coerced = normalize_phone(s, errors="coerce")
    assert coerced.tolist()[0] == "+15555550111"
    assert coerced.iloc[1:].isna().all()

    with pytest.raises(ConfigError):
        normalize_phone(s, errors="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        normalize_phone(s, region="XX")
    with pytest.raises(ValidationError):
        normalize_phone(pd.Series(["5555550111"]), region=None)


def test_normalize_phone_parses_each_distinct_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = phones._phone_problem

    def counting(value: Any, region: str | None, nanp: bool) -> tuple[str | None, str]:
        calls.append(value)
        return real(value, region, nanp)

    monkeypatch.setattr(phones, "_phone_problem", counting)
    s = pd.Series(["(555) 555-0111", "+44 20 7946 0958", 5555550112] * 500 + [None] * 10)
    out = normalize_phone(s)
    assert sorted(map(str, calls)) == ["(555) 555-0111", "+44 20 7946 0958", "5555550112"]
    assert out.iloc[:3].tolist() == ["+15555550111", "+442079460958", "+15555550112"]
    assert out.iloc[-10:].isna().all()


_DIGITS = st.text("0123456789", min_size=7, max_size=7)


@settings(max_examples=80)
@given(
    area=st.integers(201, 989),
    line=_DIGITS,
    style=st.sampled_from(
        ["({a}) {l3}-{l4}", "{a}-{l3}-{l4}", "+1 {a} {l}", "1{a}{l}", "{a}.{l3}.{l4}", "  {a}{l}  "]
    ),
)
def test_normalize_phone_is_idempotent_and_yields_e164(area: int, line: str, style: str) -> None:
    text = style.format(a=area, l=line, l3=line[:3], l4=line[3:])
    once = normalize_phone(pd.Series([text]), errors="coerce")
    twice = normalize_phone(once, errors="coerce")
    pd.testing.assert_series_equal(once, twice)
    if once.notna().all():
        assert E164.fullmatch(once.item())
        assert validate(pd.DataFrame({"externalId": ["a"], "phoneNumber": once})).empty


@given(
    values=st.lists(
        st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 10**12)), max_size=10
    )
)
def test_normalize_phone_keep_and_coerce_never_lose_rows(values: list[Any]) -> None:
    s = pd.Series(values, dtype=object)
    for errors in ("keep", "coerce"):
        out = normalize_phone(s, errors=errors)  # type: ignore[arg-type]
        assert len(out) == len(s) and out.index.equals(s.index)
        assert normalize_phone(out, errors=errors).equals(out) or errors == "keep"


def _full_parser(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension or (
        phonenumbers.is_possible_number_with_reason(number)
        != phonenumbers.ValidationResult.IS_POSSIBLE
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@settings(max_examples=300)
@given(
    text=st.one_of(
        st.text("0123456789 ()-.+", max_size=18),
        st.builds(
            lambda p, d, seps: p + "".join(c + s for c, s in zip(d, seps, strict=False)),
            st.sampled_from(["", "+", "1", "+1", "+1 ", "1-", "(", "+44"]),
            st.text("0123456789", min_size=9, max_size=12),
            st.lists(st.sampled_from(["", "", " ", "-", ".", ")", "("]), min_size=12, max_size=12),
        ),
    ),
    region=st.sampled_from(["US", "CA", "GB", "DE"]),
)
def test_north_american_shortcut_agrees_with_phonenumbers(text: str, region: str) -> None:
    nanp = phonenumbers.country_code_for_region(region) == 1
    fast = phones._nanp_fast_path(text, nanp)
    if fast is not None:
        assert fast == _full_parser(text, region)


def test_docstring_examples() -> None:
    assert doctest.testmod(phones).failed == 0
