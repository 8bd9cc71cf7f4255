"""Fuzzing: any frame either raises a clear ``ValidationError`` (and sends nothing) or turns
into requests the sandbox takes as well-formed; never an internal traceback, never a
request-level 4xx.

A quick profile runs with the suite; ``pytest -m slow tests/backfill/test_fuzz.py`` runs the
long one (2,000 examples per API).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recocora import CoraClient, RecotapClient, ValidationError

from .conftest import FAST_RETRY

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

QUICK = settings(max_examples=50, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=2_000, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

texts = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec="utf-8"), max_size=12),  # any code point but surrogates
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # broken UTF-16
    st.sampled_from(["", " ", "\x00", "null", "NaN", "é", "🙂", "+15555550123", "a@b.co",
                     "2024-02-30", "1999-12-31", "123", "1e3", " 42 "]),
    st.integers(1_000, 20_000).map(lambda n: "x" * n),  # very long
    # (a signalling Decimal NaN is left out: pandas itself cannot test it for missing)
)
numbers = st.one_of(
    st.integers(-10, 10), st.integers(), st.integers(2**63, 2**80),  # beyond 64 bits
    st.floats(), st.just(float("inf")), st.just(float("-inf")), st.just(1.0), st.just(1.5),
    st.decimals(allow_nan=False, allow_infinity=True), st.just(Decimal("NaN")),
    st.sampled_from([np.int64(7), np.float32(2.5), np.nan]),
)
scalars = st.one_of(
    st.none(), st.just(pd.NA), st.just(pd.NaT), st.booleans(), texts, numbers,
    st.datetimes(min_value=dt.datetime(1900, 1, 1)).map(pd.Timestamp),
    st.dates().map(lambda d: d), st.just(b"bytes"), st.just(1 + 2j),
    st.just(dt.timedelta(seconds=3)), st.just(object()),
)
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=6,
)
cells = st.one_of(scalars, nested)

KNOWN_COLUMNS = [
    "externalId", "portfolioId", "phoneNumber", "metadata.filenumber", "metadata",
    "currentBalance", "bucket", "person.name.first", "person.birthdate", "person", "tags",
    "emailAddress", "address.city", "history.statuteLimitationsDate", "originalCreditor",
    "smsOptOut", "status",
]
ODD_COLUMNS = ["id", "unknownField", "Metadata.x", "a..b", "", 7]  # each fails the column
words = st.text("abcdefghijklmnopqrstuvwxyz éü-_0123456789", min_size=1, max_size=10)
small_json = st.recursive(
    st.one_of(words, st.integers(-1000, 1000), st.floats(allow_nan=False,
                                                         allow_infinity=False), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(words, inner, max_size=3)),
    max_leaves=5,
)
# What a real export holds for each field, mostly right: the fuzzing must reach the sending
# path, not only validation.
PLAUSIBLE: dict[Any, st.SearchStrategy[Any]] = {
    "externalId": st.one_of(words, st.integers(0, 10**9), st.integers(0, 10**6).map(float)),
    "phoneNumber": st.integers(10**9, 10**10 - 1).map(lambda n: f"+1{n}"),
    "metadata": st.dictionaries(words, small_json, max_size=3),
    "currentBalance": st.one_of(st.integers(0, 10**6),
                                st.floats(0, 10**6, allow_nan=False), st.just("12.50")),
    "person.birthdate": st.dates(dt.date(1920, 1, 1), dt.date(2010, 1, 1)).map(str),
    "person": st.fixed_dictionaries({"name": st.fixed_dictionaries({"first": words})}),
    "tags": st.lists(words, max_size=3),
    "emailAddress": words.map(lambda w: f"{w.strip() or 'x'}@example.com"),
    "history.statuteLimitationsDate": st.datetimes().map(lambda d: d.isoformat() + "Z"),
    "originalCreditor": st.one_of(words, st.dictionaries(words, words, max_size=2)),
    "smsOptOut": st.dictionaries(words, st.booleans(), max_size=2),
}
ids = st.one_of(
    st.sampled_from(["A-1", "A-2", "A-3", "  A-4 ", ""]), st.integers(0, 5),
    st.floats(0, 5).map(lambda f: round(f, 1)), st.none(), st.just(np.nan), texts,
)


def infer(data: Any) -> Any:
    """What pandas would make of the cells read afresh (text becomes ``str`` dtype); cells
    pandas itself cannot hold that way (broken UTF-16) stay objects, as they would."""
    try:
        return data.infer_objects()
    except UnicodeEncodeError:
        return data


def column_cells(name: Any) -> st.SearchStrategy[Any]:
    """Three cells in four plausible for the field, the rest anything at all."""
    wild = ids if name == "externalId" else cells
    plausible = PLAUSIBLE.get(name, words)
    return st.integers(0, 3).flatmap(lambda k: wild if k == 0 else plausible)


@st.composite
def cora_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 30))
    names = draw(st.lists(st.sampled_from(KNOWN_COLUMNS), max_size=7))
    if draw(st.integers(0, 9)) == 0:
        names.append(draw(st.sampled_from(ODD_COLUMNS)))
    if draw(st.integers(0, 9)):
        names = ["externalId", *names]
    data = {}
    for name in names:
        values = draw(st.lists(column_cells(name), min_size=n, max_size=n))
        data[name] = pd.Series(values, dtype=object)
    frame = pd.DataFrame(data) if data else pd.DataFrame(index=range(n))
    if len(names) != len(set(names)):  # a duplicate column name, as read_csv can make
        frame = pd.concat([pd.Series(data[c], name=c) for c in names], axis=1)
    if draw(st.integers(0, 4)) == 0 and n:
        frame.index = pd.Index(draw(st.lists(st.sampled_from(["a", "b", "c", 1, 2.5, None]),
                                             min_size=n, max_size=n)), dtype=object)
    if draw(st.booleans()):
        for column in frame.columns.unique():
            kind = draw(st.sampled_from(["object", "infer"]))
            if kind == "infer" and frame.columns.is_unique:
                frame[column] = infer(frame[column])
    return frame


def check_cora(sandbox: Sandbox, df: pd.DataFrame, on_invalid: str, rows: int) -> str:
    sandbox.reset()
    client = CoraClient(sandbox.cora_key, sandbox.cora_base_url, min_interval=0,
                        retry=FAST_RETRY)
    client.MAX_ROWS = rows  # type: ignore[misc]
    try:
        res = df.cora.upsert(client=client, on_invalid=on_invalid,  # type: ignore[arg-type]
                             progress=False)
    except ValidationError as exc:
        assert str(exc).strip() and isinstance(exc.failure_cases, pd.DataFrame)
        assert not [r for r in sandbox.requests if r.method == "POST"], "sent, then raised"
        return "validation_error"
    finally:
        client.close()
    posts = [r for r in sandbox.requests if r.method == "POST"]
    assert [r.status for r in posts] == [200] * len(posts), "a request-level error"
    assert res.index.equals(df.index)
    assert res["cora_status"].isin(["created", "updated", "unchanged", "failed",
                                    "invalid"]).all()
    sent = res["cora_status"] != "invalid"
    assert res.loc[sent, "cora_batch"].notna().all()
    return "sent" if len(posts) else "nothing_to_send"


domains = st.one_of(
    st.sampled_from(["acme.com", "https://www.Acme.com/path?q=1", "ACME.COM.", "müller.de",
                     "xn--mller-kva.de", "localhost", "127.0.0.1", "a@b.com", "not a domain",
                     "http://", ".com", "a" * 70 + ".com", "sub.acme.co.uk:8080", ""]),
    texts, numbers, st.none(), st.just(np.nan),
)
crm_ids = st.one_of(ids, numbers, st.none(), st.lists(st.text(max_size=2), max_size=2))


@st.composite
def crm_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 30))
    frame = pd.DataFrame({
        "domain": pd.Series(draw(st.lists(domains, min_size=n, max_size=n)), dtype=object),
        "externalId": pd.Series(draw(st.lists(crm_ids, min_size=n, max_size=n)), dtype=object),
    })
    if draw(st.booleans()):
        frame = infer(frame)
    return frame


def check_recotap(sandbox: Sandbox, df: pd.DataFrame, on_invalid: str, overwrite: bool) -> str:
    sandbox.reset()
    sandbox.add_recotap_account(domain="acme.com", name="Acme")
    sandbox.add_recotap_account(domain="xn--mller-kva.de", name="Müller", external_id="held")
    client = RecotapClient(sandbox.recotap_key, sandbox.recotap_base_url, retry=FAST_RETRY)
    try:
        res = df.recotap.map_ids(client=client, on_invalid=on_invalid,  # type: ignore[arg-type]
                                 overwrite=overwrite, progress=False)
    except ValidationError as exc:
        assert str(exc).strip() and isinstance(exc.failure_cases, pd.DataFrame)
        assert not [r for r in sandbox.requests if r.method == "PATCH"], "sent, then raised"
        return "validation_error"
    finally:
        client.close()
    answered = [r.status for r in sandbox.requests]
    assert answered == [200] * len(answered), "a request-level error"
    assert res.index.equals(df.index)
    assert res["recotap_status"].notna().all()
    return "sent"


@QUICK
@given(df=cora_frames(), on_invalid=st.sampled_from(["raise", "skip"]),
       rows=st.integers(1, 7))
def test_fuzz_cora_quick(sandbox: Sandbox, df: pd.DataFrame, on_invalid: str,
                         rows: int) -> None:
    check_cora(sandbox, df, on_invalid, rows)


@QUICK
@given(df=crm_frames(), on_invalid=st.sampled_from(["raise", "skip"]),
       overwrite=st.booleans())
def test_fuzz_recotap_quick(sandbox: Sandbox, df: pd.DataFrame, on_invalid: str,
                            overwrite: bool) -> None:
    check_recotap(sandbox, df, on_invalid, overwrite)


OUTCOMES: dict[str, dict[str, int]] = {"cora": {}, "recotap": {}}


@pytest.mark.slow
@LONG
@given(df=cora_frames(), on_invalid=st.sampled_from(["raise", "skip"]),
       rows=st.integers(1, 7))
def test_fuzz_cora_long(sandbox: Sandbox, df: pd.DataFrame, on_invalid: str,
                        rows: int) -> None:
    outcome = check_cora(sandbox, df, on_invalid, rows)
    OUTCOMES["cora"][outcome] = OUTCOMES["cora"].get(outcome, 0) + 1


@pytest.mark.slow
@LONG
@given(df=crm_frames(), on_invalid=st.sampled_from(["raise", "skip"]),
       overwrite=st.booleans())
def test_fuzz_recotap_long(sandbox: Sandbox, df: pd.DataFrame, on_invalid: str,
                           overwrite: bool) -> None:
    outcome = check_recotap(sandbox, df, on_invalid, overwrite)
    OUTCOMES["recotap"][outcome] = OUTCOMES["recotap"].get(outcome, 0) + 1


@pytest.mark.slow
def test_fuzz_long_outcomes_were_varied() -> None:
    """Run after the long profiles: both outcomes occurred often (the fuzzing reached the
    sending path, not only validation)."""
    print(f"\nlong fuzz outcomes: {OUTCOMES}")
    for api, seen in OUTCOMES.items():
        assert seen.get("validation_error", 0) > 50, api
        assert seen.get("sent", 0) > 50, api


# --------------------------------------------------------------------------- what fuzzing found


def test_integers_beyond_64_bits_are_invalid_not_a_crash(sandbox: Sandbox) -> None:
    sandbox.reset()
    df = pd.DataFrame({"externalId": ["a", "b"], "portfolioId": "p",
                       "phoneNumber": "+15550000000", "metadata.filenumber": "f",
                       "currentBalance": pd.Series([2**70, 5], dtype=object)})
    cases = df.cora.validate()
    assert cases[["index", "column", "check"]].values.tolist() == [[0, "currentBalance", "json"]]
    assert "64 bits" in cases.loc[0, "message"]
    client = CoraClient(sandbox.cora_key, sandbox.cora_base_url, min_interval=0)
    with pytest.raises(ValidationError, match="64 bits"):
        df.cora.upsert(client=client, progress=False)
    res = df.cora.upsert(client=client, on_invalid="skip", progress=False)
    assert res["cora_status"].tolist() == ["invalid", "created"]
    client.close()


def test_broken_utf16_text_is_invalid_not_a_crash(sandbox: Sandbox) -> None:
    sandbox.reset()
    df = pd.DataFrame({"externalId": pd.Series(["\ud800", "b", "c", "d"], dtype=object),
                       "bucket": pd.Series(["x", "\udc01", "x", "x"], dtype=object),
                       "tags": pd.Series([["t"], ["t"], ["\ud83d"], ["t"]], dtype=object),
                       "portfolioId": "p", "phoneNumber": "+15550000000",
                       "metadata.filenumber": "f"})
    cases = df.cora.validate()
    assert cases[["index", "column"]].values.tolist() == [
        [0, "externalId"], [1, "bucket"], [2, "tags"]]
    assert cases["message"].str.contains("surrogate").all()
    client = CoraClient(sandbox.cora_key, sandbox.cora_base_url, min_interval=0)
    res = df.cora.upsert(client=client, on_invalid="skip", progress=False)
    assert res["cora_status"].tolist() == ["invalid", "invalid", "invalid", "created"]
    client.close()


def test_broken_utf16_domains_and_ids_are_invalid_not_a_crash(sandbox: Sandbox) -> None:
    sandbox.reset()
    sandbox.add_recotap_account(domain="acme.com", name="Acme")
    df = pd.DataFrame({"domain": pd.Series(["\udc00.com", "acme.com", "b.com"], dtype=object),
                       "externalId": pd.Series(["x", "y", "\ud800"], dtype=object)})
    cases = df.recotap.validate()
    assert cases[["index", "column"]].values.tolist() == [[0, "domain"], [2, "externalId"]]
    client = RecotapClient(sandbox.recotap_key, sandbox.recotap_base_url)
    res = df.recotap.map_ids(client=client, on_invalid="skip", progress=False)
    assert res["recotap_status"].tolist() == ["invalid", "mapped", "invalid"]
    client.close()


def test_duplicate_column_names_with_skip_mark_every_row_invalid(sandbox: Sandbox) -> None:
    sandbox.reset()
    df = pd.concat([pd.Series(["a"], name="externalId"), pd.Series(["b"], name="externalId")],
                   axis=1)
    client = CoraClient(sandbox.cora_key, sandbox.cora_base_url, min_interval=0)
    res = df.cora.upsert(client=client, on_invalid="skip", progress=False)
    assert res["cora_status"].tolist() == ["invalid"]
    assert "two columns" in res.loc[0, "cora_message"]
    client.close()
