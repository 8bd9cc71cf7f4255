"""``df.cora.diff``: the free local preview agrees with the sandbox's dry run, row by row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import recocora  # noqa: F401  (registers df.cora)
from recocora import CoraClient, ValidationError
from recocora.cora._predict import merge_changes, predict_results
from recocora.cora._upsert import RESULT_COLUMNS
from recocora.errors import ServerError
from recocora.sandbox import FaultConfig, Sandbox

from .conftest import bulk_posts, new_accounts

GET_PATH = "/external-api/accounts"


def gets(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method == "GET" and r.path.startswith(GET_PATH)]


def small(client: CoraClient, rows: int, ids: int) -> CoraClient:
    client.MAX_ROWS = rows  # type: ignore[misc]
    client.MAX_GET_IDS = ids  # type: ignore[misc]
    return client


def change_map(changes: Any) -> dict[str, tuple[Any, Any]] | None:
    """A row's changes keyed by field (each field appears once), or None when there are none."""
    if not isinstance(changes, list):
        return None
    return {c["field"]: (c["from"], c["to"]) for c in changes}


def text(value: Any) -> Any:
    """Missing cells (None, NaN, NA) as None: a text column's dtype decides which one shows."""
    return None if not isinstance(value, str) and pd.isna(value) else value


def assert_agree(preview: pd.DataFrame, dry: pd.DataFrame) -> None:
    """Same rows, statuses, codes, batches and changes; ids of existing accounts too."""
    assert preview.index.equals(dry.index)
    assert preview.columns.tolist() == dry.columns.tolist()
    p, d = preview.to_dict("index"), dry.to_dict("index")
    for label, want in d.items():
        got = p[label]
        where = f"row {label!r}: preview {got} vs dry run {want}"
        assert got["cora_status"] == want["cora_status"], where
        assert text(got["cora_code"]) == text(want["cora_code"]), where
        assert change_map(got["cora_changes"]) == change_map(want["cora_changes"]), where
        assert str(got["cora_batch"]) == str(want["cora_batch"]), where
        if want["cora_status"] in ("updated", "unchanged"):
            assert got["cora_account_id"] == want["cora_account_id"], where
        if want["cora_status"] == "failed":
            fields = {x["field"] for x in want["cora_details"]}
            assert {x["field"] for x in got["cora_details"]} == fields, where


# --------------------------------------------------------------------------- examples


def test_preview_reads_only_and_matches_the_dry_run(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    sb.put_cora_account({"externalId": "acct-00000", "portfolioId": "old",
                         "phoneNumber": "+15555550000", "currentBalance": 450.25,
                         "metadata": {"filenumber": "F-old", "keep": "me"}, "tags": ["a"]})
    sb.put_cora_account({"externalId": "acct-00001", "portfolioId": "pf_test",
                         "phoneNumber": "+15555550001", "metadata": {"filenumber": "F-1"}})
    df = new_accounts(4, currentBalance=["450.25", None, None, None])
    df.loc["r3", "phoneNumber"] = None  # a new account without a phone cannot be created
    before = sb.cora_accounts()
    preview = df.cora.diff(client=client_for(min_interval=20.0), progress=False)

    assert bulk_posts(sb) == []
    assert sb.cora_accounts() == before
    assert preview["cora_status"].tolist() == ["updated", "unchanged", "created", "failed"]
    # portfolioId is ignored on an existing account, the numeric-text balance equals 450.25.
    changes = preview.cora.changes()
    assert changes[["externalId", "field", "from", "to"]].to_dict("records") == [
        {"externalId": "acct-00000", "field": "metadata.filenumber", "from": "F-old",
         "to": "F-0"},
    ]
    assert preview.loc["r3", "cora_code"] == "MISSING_REQUIRED_FIELD"
    assert [d["field"] for d in preview.loc["r3", "cora_details"]] == ["phoneNumber"]
    attrs = preview.attrs
    assert attrs["preview"] == "local" and attrs["dry_run"] is True
    assert attrs["requests"] == len(gets(sb)) == 1
    assert attrs["bulk_requests"] == 1 and attrs["eta_s"] == 0
    assert attrs["counts"] == {"updated": 1, "unchanged": 1, "created": 1, "failed": 1}

    dry = df.cora.upsert(client=client_for(), dry_run=True, include_changes=True,
                         progress=False)
    assert_agree(preview, dry)
    assert list(preview.columns) == list(RESULT_COLUMNS)


def test_chunks_reads_and_eta_follow_the_client(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    df = new_accounts(23)
    for i in range(0, 23, 2):
        sb.put_cora_account({"externalId": f"acct-{i:05d}", "bucket": "old"})
    client = small(client_for(min_interval=20.0, max_concurrency=2), rows=5, ids=3)
    preview = df.cora.diff(client=client, include_changes=False, progress=False)

    assert preview["cora_batch"].tolist() == [i // 5 for i in range(23)]
    assert preview.attrs["bulk_requests"] == 5
    assert preview.attrs["eta_s"] == pytest.approx(4 * (20.0 + client.limiter.margin()), abs=1e-3)
    # 23 ids, 3 per GET: 8 reads, none of them a bulk request.
    assert preview.attrs["requests"] == len(gets(sb)) == 8
    assert bulk_posts(sb) == []
    assert preview["cora_changes"].isna().all()  # include_changes=False
    old = preview.index[::2]
    assert (preview.loc[old, "cora_status"] == "updated").all()
    assert (preview.loc[preview.index.difference(old), "cora_status"] == "created").all()


def test_rules_validation_does_not_see_are_applied(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    sb.put_cora_account({"externalId": "h1", "history": {"origin": "bank"},
                         "originalCreditor": "Old Bank", "currentBalance": "12.50"})
    sb.put_cora_account({"externalId": "a,b", "bucket": "x"})
    sb.put_cora_account({"externalId": "a", "bucket": "y"})
    df = pd.DataFrame(
        {
            "externalId": ["h1", "h2", "a,b", "h3"],
            "history.statuteLimitationsDate": ["2031-02-03T00:00:00Z", "someday", None, None],
            "originalCreditor": [{"name": "New Bank"}, None, None, None],
            "currentBalance": [12.5, None, None, "1e2"],
            "bucket": [None, None, "x", None],
        }
    )
    # The date the server would refuse is refused by validation first, from the same rules.
    with pytest.raises(ValidationError, match=r"history\.statuteLimitationsDate"):
        df.cora.diff(client=client_for(), progress=False)
    preview = df.cora.diff(client=client_for(), on_invalid="skip", progress=False)
    assert preview["cora_status"].tolist() == ["updated", "invalid", "unchanged", "failed"]
    assert preview.loc[3, "cora_code"] == "MISSING_REQUIRED_FIELD"
    assert change_map(preview.loc[0, "cora_changes"]) == {
        "history.statuteLimitationsDate": (None, "2031-02-03T00:00:00Z"),
        # A balance read back as text ("12.50") is the number 12.5 sent: no change there.
        # An object replaces a text creditor.
        "originalCreditor": ("Old Bank", {"name": "New Bank"}),
    }
    dry = df.cora.upsert(client=client_for(), dry_run=True, include_changes=True,
                         on_invalid="skip", progress=False)
    assert_agree(preview, dry)


def test_invalid_rows_raise_before_any_read(
    sb: Sandbox, client: CoraClient
) -> None:
    df = new_accounts(3)
    df.loc["r1", "phoneNumber"] = "555-0100"
    with pytest.raises(ValidationError):
        df.cora.diff(client=client, progress=False)
    assert sb.requests == []
    skipped = df.cora.diff(client=client, on_invalid="skip", progress=False)
    assert skipped["cora_status"].tolist() == ["created", "invalid", "created"]
    assert skipped.loc["r1", "cora_code"] == "INVALID"


def test_create_mode_requires_the_create_fields_locally(client: CoraClient) -> None:
    df = new_accounts(2).drop(columns=["portfolioId"])
    res = df.cora.diff(client=client, mode="create", on_invalid="skip", progress=False)
    assert res["cora_status"].tolist() == ["invalid", "invalid"]


def test_a_failed_read_carries_the_partial_result(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    sb.set_faults(FaultConfig(p_503=1.0, scope="cora"))
    with pytest.raises(ServerError) as info:
        new_accounts(4).cora.diff(client=client_for(), progress=False)
    partial = info.value.result
    assert partial is not None and partial.attrs["preview"] == "local"
    assert (partial["cora_status"] == "not_sent").all()
    assert bulk_posts(sb) == []


def test_predict_results_applies_rows_in_order() -> None:
    stored: dict[str, Any] = {"A": {"id": "acc_A", "externalId": "A", "tags": ["x"]}}
    results = predict_results(
        [{"externalId": "A", "tags": ["y"]}, {"externalId": "A", "tags": ["z"]},
         {"externalId": "B", "phoneNumber": "+15555550100", "portfolioId": "p",
          "metadata": {"filenumber": "F"}},
         {"externalId": "C", "createdAt": "2024-01-01"}],
        stored,
    )
    assert [r["status"] for r in results] == ["updated", "failed", "created", "failed"]
    assert results[1]["code"] == "DUPLICATE_EXTERNAL_ID"
    assert results[3]["code"] == "FIELD_NOT_UPDATABLE"
    assert stored["A"]["tags"] == ["y"] and "B" in stored


def test_merge_changes_follows_the_contract_rules() -> None:
    stored: dict[str, Any] = {"person": {"name": {"first": "Ann", "last": "Lee"}},
                              "tags": ["a", "b"], "bucket": "30-60", "smsOptOut": None}
    changes = merge_changes(stored, {"person": {"name": {"first": "Bo"}}, "tags": ["a"],
                                     "bucket": None, "smsOptOut": {}})
    assert change_map(changes) == {
        "person.name.first": ("Ann", "Bo"),
        "tags": (["a", "b"], ["a"]),
        "bucket": ("30-60", None),
        "smsOptOut": (None, {}),
    }
    assert stored["person"]["name"] == {"first": "Bo", "last": "Lee"}
    assert merge_changes(stored, {"tags": ["a"], "person": {"name": {}}}) == []


# --------------------------------------------------------------------------- property

ID_POOL = ["A", "B", "C", "D", "E", "c,d"]

stored_values: dict[str, st.SearchStrategy[Any]] = {
    "portfolioId": st.sampled_from(["pf1", "pf2"]),
    "bucket": st.sampled_from(["30-60", "90+", None]),
    "phoneNumber": st.sampled_from(["+15555550111", "+447700900123"]),
    "currentBalance": st.sampled_from([12.5, 100, 100.0, "12.50", "100", None]),
    "tags": st.sampled_from([["a"], ["a", "b"], [], None]),
    "metadata": st.sampled_from(
        [{"filenumber": "F1"}, {"filenumber": "F2", "k": 1}, {}, "text", None]
    ),
    "person": st.sampled_from(
        [{"name": {"first": "Ann"}}, {"name": None, "ssn": "1"}, {"birthdate": "1990-01-02"}]
    ),
    "address": st.sampled_from([{"city": "Reno"}, {"city": "Boise", "zip": "83701"}]),
    "history": st.sampled_from([{"origin": "bank"}, {"statuteLimitationsDate": "2030-01-01"}]),
    "originalCreditor": st.sampled_from(["Bank", {"name": "Bank"}, {}]),
    "clientStatus": st.sampled_from(["open", "paid"]),
}

frame_values: dict[str, st.SearchStrategy[Any]] = {
    "portfolioId": st.sampled_from(["pf1", "pf2", ""]),
    "bucket": st.sampled_from(["30-60", "90+"]),
    "phoneNumber": st.sampled_from(["+15555550111", "+447700900123", "555-0100"]),
    "metadata.filenumber": st.sampled_from(["F1", "F2", ""]),
    "metadata.k": st.sampled_from([1, 2]),
    "metadata": st.sampled_from([{"filenumber": "F2", "k": 1}, {"k": 2}]),
    "currentBalance": st.sampled_from([12.5, 100, 100.0, "12.50", "100", " 7 ", "1e2"]),
    "tags": st.sampled_from([["a"], ["a", "b"], []]),
    "person.name.first": st.sampled_from(["Ann", "Bo"]),
    "person.birthdate": st.sampled_from(["1990-01-02", "1991-02-03"]),
    "address.city": st.sampled_from(["Reno", "Tampa"]),
    "history.origin": st.sampled_from(["bank", "card"]),
    "history.statuteLimitationsDate": st.sampled_from(
        ["2030-01-01", "2030-01-01T10:00:00Z", "soon"]
    ),
    "originalCreditor": st.sampled_from(["Bank", {"name": "Bank"}, {"name": "Other"}]),
    "clientStatus": st.sampled_from(["open", "paid"]),
}

# Everything a new account needs, drawn together often enough that creates happen too.
create_values: dict[str, st.SearchStrategy[Any]] = {
    "portfolioId": st.sampled_from(["pf1", "pf2"]),
    "phoneNumber": st.sampled_from(["+15555550111", "+447700900123"]),
    "metadata.filenumber": st.sampled_from(["F1", "F2"]),
}


@st.composite
def stored_states(draw: st.DrawFn) -> list[dict[str, Any]]:
    docs = []
    for ext in draw(st.sets(st.sampled_from(ID_POOL))):
        fields = draw(st.sets(st.sampled_from(sorted(stored_values))))
        docs.append({"externalId": ext, **{f: draw(stored_values[f]) for f in sorted(fields)}})
    return docs


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    ids = draw(st.lists(st.sampled_from(ID_POOL), min_size=1, max_size=len(ID_POOL),
                        unique=True))
    n = len(ids)
    labels = [f"r{i}" for i in range(n)]
    data: dict[str, Any] = {"externalId": pd.Series(ids, index=labels, dtype=object)}
    columns = draw(st.sets(st.sampled_from(sorted(frame_values)), min_size=1, max_size=7))
    creatable = draw(st.booleans())
    for column in sorted(columns | (set(create_values) if creatable else set())):
        if creatable and column in create_values:
            cells = create_values[column]
        else:
            cells = st.one_of(st.none(), frame_values[column], frame_values[column])
        data[column] = pd.Series(draw(st.lists(cells, min_size=n, max_size=n)), index=labels,
                                 dtype=object)
    return pd.DataFrame(data, index=labels)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(state=stored_states(), df=frames())
def test_preview_agrees_with_the_dry_run_row_by_row(
    sb: Sandbox, client_for: Callable[..., CoraClient], state: list[dict[str, Any]],
    df: pd.DataFrame,
) -> None:
    sb.reset()
    for doc in state:
        sb.put_cora_account(doc)
    client = small(client_for(), rows=3, ids=2)
    preview = df.cora.diff(client=client, on_invalid="skip", progress=False)
    assert bulk_posts(sb) == []
    dry = df.cora.upsert(client=client, dry_run=True, include_changes=True,
                         on_invalid="skip", progress=False)
    assert_agree(preview, dry)
    for status, code in zip(dry["cora_status"], dry["cora_code"], strict=True):
        event(f"{status} {text(code) or ''}".strip())
