"""``df.cora.upsert`` end to end against the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recocora
from recocora import CoraClient, ValidationError
from recocora.errors import ServerError
from recocora.sandbox import FaultConfig, Sandbox

from .conftest import bulk_posts, new_accounts


def small(client: CoraClient, rows: int) -> CoraClient:
    client.MAX_ROWS = rows  # type: ignore[misc]
    return client


def test_1203_rows_go_as_500_500_203_and_every_row_is_acknowledged(
    sb: Sandbox, client: CoraClient
) -> None:
    df = new_accounts(1203)
    res = df.cora.upsert(client=client, progress=False)
    assert res.index.equals(df.index)
    assert (res["cora_status"] == "created").all()
    assert res["cora_batch"].value_counts().sort_index().tolist() == [500, 500, 203]
    assert len(bulk_posts(sb)) == 3
    assert res.attrs["requests"] == 3 and res.attrs["counts"] == {"created": 1203}
    assert res.attrs["dry_run"] is False
    stored = {a["externalId"]: a["id"] for a in sb.cora_accounts()}
    assert stored == dict(zip(res["cora_external_id"], res["cora_account_id"], strict=True))
    joined = df.join(res)
    assert len(joined) == 1203


def test_payloads_are_the_exact_bodies_in_input_order(client: CoraClient) -> None:
    df = new_accounts(1203)
    bodies = list(df.cora.payloads())
    assert [len(orjson.loads(b)["accounts"]) for b in bodies] == [500, 500, 203]
    ids = [a["externalId"] for b in bodies for a in orjson.loads(b)["accounts"]]
    assert ids == df["externalId"].tolist()
    assert orjson.loads(bodies[0])["dryRun"] is False


@pytest.mark.parametrize(
    "index",
    [
        pd.Index([f"k{i}" for i in range(30)], name="key"),
        pd.Index(np.random.default_rng(1).permutation(30) * 7),
        pd.MultiIndex.from_tuples([(i % 3, f"m{i}") for i in range(30)]),
    ],
    ids=["string", "shuffled-int", "multi"],
)
def test_result_keeps_any_index(sb: Sandbox, client: CoraClient, index: pd.Index) -> None:
    df = new_accounts(30).set_axis(index)
    df.loc[df.index[::4], "phoneNumber"] = "bad"  # some rows invalid, interleaved
    res = df.cora.upsert(client=small(client, 7), on_invalid="skip", progress=False)
    assert res.index.equals(df.index)
    bad = df["phoneNumber"] == "bad"
    assert (res.loc[bad, "cora_status"] == "invalid").all()
    assert (res.loc[~bad, "cora_status"] == "created").all()
    stored = {a["externalId"] for a in sb.cora_accounts()}
    assert stored == set(df.loc[~bad, "externalId"])


def test_missing_cells_are_left_out_and_dotted_columns_nest(
    sb: Sandbox, client: CoraClient
) -> None:
    df = new_accounts(3)
    df["person.name.first"] = ["Ann", None, "Cy"]
    df["currentBalance"] = [10.5, np.nan, 3]
    df["address.city"] = [pd.NA, "Reno", None]
    df["tags"] = [["a"], None, ["b", "c"]]
    df.cora.upsert(client=client, progress=False)
    a0, a1, a2 = (sb.cora_account(f"acct-0000{i}") for i in range(3))
    assert a0 is not None and a1 is not None and a2 is not None
    assert a0["person"] == {"name": {"first": "Ann"}} and "address" not in a0
    assert "person" not in a1 and "currentBalance" not in a1 and "tags" not in a1
    assert a1["address"] == {"city": "Reno"}
    assert a2["currentBalance"] == 3 and a2["tags"] == ["b", "c"]


@pytest.mark.parametrize("text", ["str", "string[python]", "string[pyarrow]", "arrow"])
def test_every_text_storage_is_checked_and_sent_alike(
    sb: Sandbox, client: CoraClient, text: str
) -> None:
    # Frames read with dtype_backend="pyarrow" (read_csv, read_parquet) hold pd.ArrowDtype text.
    dtype: Any = pd.ArrowDtype(pa.string()) if text == "arrow" else text
    df = new_accounts(3).astype(dtype)
    df["externalId"] = pd.array([" acct-00000", "acct-00001", "acct-00002"], dtype=dtype)
    df["address.city"] = pd.array(["Reno", None, "Ely"], dtype=dtype)
    assert df.cora.validate().empty
    res = df.cora.upsert(client=client, progress=False)
    assert res["cora_status"].tolist() == ["created"] * 3
    assert res["cora_external_id"].dtype == "str"  # whatever the input's text dtype
    assert res["cora_external_id"].tolist() == ["acct-00000", "acct-00001", "acct-00002"]
    first, second = sb.cora_account("acct-00000"), sb.cora_account("acct-00001")
    assert first is not None and second is not None
    assert first["address"] == {"city": "Reno"} and "address" not in second
    bad = df.assign(phoneNumber=pd.array(["555-0100", None, None], dtype=dtype))
    with pytest.raises(ValidationError, match="phoneNumber"):
        bad.cora.upsert(client=client, progress=False)


def test_update_deep_merges_and_reports_changes(sb: Sandbox, client: CoraClient) -> None:
    sb.put_cora_account({"externalId": "u1", "portfolioId": "old", "phoneNumber": "+15555550100",
                         "metadata": {"filenumber": "F1", "keep": "yes"}, "tags": ["x", "y"]})
    df = pd.DataFrame({"externalId": ["u1", "u2"], "metadata.filenumber": ["F9", "F2"],
                       "portfolioId": ["new", "p"], "tags": [["z"], None],
                       "phoneNumber": [None, "+15555550101"]})
    res = df.cora.upsert(client=client, include_changes=True, progress=False)
    assert res["cora_status"].tolist() == ["updated", "created"]
    stored = sb.cora_account("u1")
    assert stored is not None
    assert stored["metadata"] == {"filenumber": "F9", "keep": "yes"}
    assert stored["tags"] == ["z"] and stored["portfolioId"] == "old"
    changes = res.cora.changes()
    assert changes.columns.tolist() == ["index", "externalId", "field", "from", "to"]
    assert set(changes["field"]) == {"metadata.filenumber", "tags"}
    assert changes.set_index("field").loc["metadata.filenumber", "from"] == "F1"
    assert res.loc[1, "cora_changes"] is None  # created rows carry no changes
    again = df.cora.upsert(client=client, progress=False)
    assert again["cora_status"].tolist() == ["unchanged", "unchanged"]


def test_dry_run_writes_nothing_and_says_what_would_happen(
    sb: Sandbox, client: CoraClient
) -> None:
    sb.put_cora_account({"externalId": "acct-00000", "portfolioId": "p",
                         "phoneNumber": "+15555550100", "metadata": {"filenumber": "F0"}})
    before = sb.cora_accounts()
    df = new_accounts(3)
    res = df.cora.upsert(client=client, dry_run=True, include_changes=True, progress=False)
    assert sb.cora_accounts() == before
    assert res.attrs["dry_run"] is True
    assert res["cora_status"].tolist() == ["updated", "created", "created"]
    real = df.cora.upsert(client=client, progress=False)
    assert real["cora_status"].tolist() == res["cora_status"].tolist()


def test_server_rejected_rows_keep_code_message_and_details(
    sb: Sandbox, client: CoraClient
) -> None:
    df = pd.DataFrame({"externalId": ["ok", "nophone"], "portfolioId": ["p", "p"],
                       "phoneNumber": ["+15555550100", None],
                       "metadata.filenumber": ["F1", None]})
    res = df.cora.upsert(client=client, progress=False)
    assert res["cora_status"].tolist() == ["created", "failed"]
    row = res.loc[1]
    assert row["cora_code"] == "MISSING_REQUIRED_FIELD"
    assert "phoneNumber" in row["cora_message"]
    assert {d["field"] for d in row["cora_details"]} == {"phoneNumber", "metadata.filenumber"}


def test_invalid_rows_raise_with_failure_cases_and_nothing_is_sent(
    sb: Sandbox, client: CoraClient
) -> None:
    df = new_accounts(5)
    df["externalId"] = [1.0, 2.0, 2.0, None, 5.0]
    df.loc["r4", "phoneNumber"] = "(555) 555-0111"
    df["organizationId"] = "org"
    with pytest.raises(ValidationError) as info:
        df.cora.upsert(client=client, progress=False)
    assert bulk_posts(sb) == []
    fc = info.value.failure_cases
    assert {"index", "column", "check", "value", "message"} <= set(fc.columns)
    assert {"r1", "r2", "r3", "r4"} <= set(fc["index"].dropna())
    assert "organizationId" in set(fc["column"])
    assert "on_invalid='skip'" in str(info.value)
    assert len(df.cora.validate()) == len(fc)


def test_skip_sends_valid_rows_and_marks_the_rest(sb: Sandbox, client: CoraClient) -> None:
    df = new_accounts(5)
    df["externalId"] = [1.0, 2.0, 2.0, None, 5.0]
    df.loc["r4", "phoneNumber"] = "not a phone"
    res = df.cora.upsert(client=client, on_invalid="skip", progress=False)
    assert res["cora_status"].tolist() == ["created", "invalid", "invalid", "invalid", "invalid"]
    assert res.loc["r0", "cora_external_id"] == "1"  # a float id from a CSV is sent as "1"
    assert all(isinstance(m, str) and m for m in res.loc[res.cora_status == "invalid",
                                                        "cora_message"])
    assert [a["externalId"] for a in sb.cora_accounts()] == ["1"]


def test_faults_end_with_every_row_acknowledged_once(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    sb.set_faults(FaultConfig(seed=11, p_500=0.05, p_503=0.1, p_drop=0.1, p_drop_after=0.1,
                              p_429=0.1, burst_429=2, retry_after_429=0, scope="writes"))
    client = small(client_for(), 50)
    df = new_accounts(600)
    res = df.cora.upsert(client=client, progress=False)
    # A write whose answer was lost is re-sent: the second time its rows are unchanged.
    assert res["cora_status"].isin(["created", "unchanged"]).all()
    assert sorted(a["externalId"] for a in sb.cora_accounts()) == sorted(df["externalId"])
    faults = {r.fault for r in sb.requests}
    assert {"500", "503", "drop", "drop_after", "429"} <= faults


def test_clock_skew_mid_run_is_corrected(sb: Sandbox, client: CoraClient) -> None:
    sb.set_clock_skew(420)
    res = new_accounts(40).cora.upsert(client=small(client, 10), progress=False)
    assert (res["cora_status"] == "created").all()
    assert [r.status for r in bulk_posts(sb)].count(401) == 1


def test_request_level_failure_carries_the_partial_result(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    sb.set_faults(FaultConfig(p_503=1.0, start_after=2, scope="writes"))
    client = small(client_for(), 10)
    with pytest.raises(ServerError) as info:
        new_accounts(45).cora.upsert(client=client, progress=False)
    partial = info.value.result
    assert partial is not None and len(partial) == 45
    assert partial["cora_status"].value_counts().to_dict() == {"not_sent": 25, "created": 20}
    assert partial.attrs["requests"] == 2


def test_progress_bar_shows_counts_and_an_up_front_eta(
    sb: Sandbox, client_for: Callable[..., CoraClient], capsys: pytest.CaptureFixture[str]
) -> None:
    client = small(client_for(min_interval=0.05), 10)
    new_accounts(30).cora.upsert(client=client, progress=True)
    err = capsys.readouterr().err
    assert "Cora upsert" in err and "30/30" in err and "created=30" in err
    assert sb.cora_key.split(".", 1)[1] not in err


def test_eta_for_100k_rows_is_about_66_minutes() -> None:
    from recocora._progress import format_duration

    chunks = 100_000 // CoraClient.MAX_ROWS
    assert format_duration((chunks - 1) * 20.0) == "~66 min"


# -- property: any frame gives exactly one status per input row, on the input's index ------

cells = st.one_of(
    st.none(), st.just(np.nan), st.text(max_size=6), st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True), st.just("+15555550123"),
)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 25))
    ids = draw(st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d"]),
                                  st.integers(0, 40).map(float), st.none(),
                                  st.text(min_size=1, max_size=4)), min_size=n, max_size=n))
    data: dict[str, Any] = {"externalId": ids}
    for col in draw(st.sets(st.sampled_from(
            ["phoneNumber", "portfolioId", "metadata.filenumber", "currentBalance",
             "bucket", "person.name.first", "tags", "emailAddress"]), max_size=5)):
        data[col] = draw(st.lists(cells, min_size=n, max_size=n))
    labels = draw(st.lists(st.text(max_size=3), min_size=n, max_size=n, unique=True))
    return pd.DataFrame(data, index=pd.Index(labels, dtype=object))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(df=frames())
def test_any_frame_yields_one_status_per_input_row(
    sb: Sandbox, client_for: Callable[..., CoraClient], df: pd.DataFrame
) -> None:
    client = small(client_for(), 4)
    res = df.cora.upsert(client=client, on_invalid="skip", progress=False)
    assert res.index.equals(df.index)
    assert res["cora_status"].isin(
        ["created", "updated", "unchanged", "failed", "invalid"]
    ).all()
    sent = res["cora_status"] != "invalid"
    assert res.loc[sent, "cora_batch"].notna().all()
    assert res.loc[~sent, "cora_batch"].isna().all()
    assert sum(res.attrs["counts"].values()) == len(df)


def test_public_names_are_guarded() -> None:
    assert set(recocora.__all__) == {
        "ApiError", "AuthError", "ClockSkewError", "ConfigError", "CoraClient",
        "JournalError", "NotFoundError", "RateLimitError", "RecocoraError", "RecotapClient",
        "RequestRejectedError", "RunInterrupted", "ServerError", "TooManyFailedError",
        "TransportError", "UnreachableError", "ValidationError", "__version__",
        "changes_table", "match_accounts", "normalize_domain", "normalize_phone",
    }
    for name in recocora.__all__:
        assert hasattr(recocora, name)
