"""``df.recotap.map_ids`` end to end against the sandbox: every row's fate, and the server's."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recocora.recotap.accessor  # noqa: F401  (registers df.recotap)
from recocora._transport import RetryPolicy
from recocora.errors import AuthError, ServerError, ValidationError
from recocora.recotap._client import RecotapClient
from recocora.recotap._mapping import RESULT_COLUMNS, STATUSES
from recocora.sandbox import FaultConfig

from .conftest import FAST_RETRY, calls, domain_of, logged, stored_ids

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

PATCH_PATH = "/api/v1/accounts/external-ids"
GET_PATH = "/api/v1/accounts"


def crm(domains: list[Any], ids: list[Any] | None = None, **kwargs: Any) -> pd.DataFrame:
    """A CRM-like frame: one row per domain, ids ``crm-<n>`` unless given."""
    ids = ids if ids is not None else [f"crm-{i}" for i in range(len(domains))]
    return pd.DataFrame({"domain": domains, "externalId": ids}, **kwargs)


def statuses(result: pd.DataFrame) -> list[str]:
    return [str(s) for s in result["recotap_status"]]


# --------------------------------------------------------------------------- chunking


def test_250_rows_go_in_requests_of_100_100_50(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(250)
    df = crm(domains)
    res = df.recotap.map_ids(client=client, progress=False)

    patches = calls(sb, "PATCH", PATCH_PATH, 3)
    assert [r.status for r in patches] == [200, 200, 200]
    assert res["recotap_batch"].value_counts().sort_index().tolist() == [100, 100, 50]
    assert res["recotap_batch"].tolist() == [i // 100 for i in range(250)]
    assert set(statuses(res)) == {"mapped"}
    assert stored_ids(sb) == dict(zip(domains, df["externalId"], strict=True))
    # The overwrite guard read the 250 domains 100 at a time.
    assert len(calls(sb, "GET", GET_PATH, 3)) == 3
    assert res.attrs["requests"] == 3
    assert res.attrs["read_requests"] == 3
    assert res.attrs["matched"] == res.attrs["updated"] == 250
    assert res.attrs["counts"] == {"mapped": 250}


def test_a_shrunk_limit_is_what_every_request_respects(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sandbox refuses more than 7 mappings too: any request over the limit would be a 400.
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 7)
    monkeypatch.setattr(sb.app.recotap, "MAX_MAPPINGS", 7)
    domains = accounts(50)
    res = crm(domains).recotap.map_ids(client=client, progress=False)
    assert [r.status for r in calls(sb, "PATCH", PATCH_PATH, 8)] == [200] * 8
    assert res["recotap_batch"].value_counts().max() == 7
    assert set(statuses(res)) == {"mapped"}


def test_empty_frame_sends_nothing(sb: Sandbox, client: RecotapClient) -> None:
    res = crm([]).recotap.map_ids(client=client, progress=False)
    assert len(res) == 0
    assert res.columns.tolist() == list(RESULT_COLUMNS)
    assert logged(sb) == []


# --------------------------------------------------------------------------- domains and ids


def test_messy_domains_land_on_the_right_account(sb: Sandbox, client: RecotapClient) -> None:
    for domain in ("acme.com", "globex.com", "müller.de", "initech.co.uk"):
        sb.add_recotap_account(domain=domain, name=domain)
    df = crm(
        ["HTTPS://WWW.Acme.com/x", "globex.com.", "https://www.Müller.de:443/kontakt",
         "  Initech.CO.UK  "],
        ["a", "g", 42.0, "i"],
    )
    res = df.recotap.map_ids(client=client, progress=False)
    assert statuses(res) == ["mapped"] * 4
    assert res["recotap_domain"].tolist() == [
        "acme.com", "globex.com", "xn--mller-kva.de", "initech.co.uk"
    ]
    assert res["recotap_external_id"].tolist() == ["a", "g", "42", "i"]
    assert stored_ids(sb) == {
        "acme.com": "a", "globex.com": "g", "xn--mller-kva.de": "42", "initech.co.uk": "i"
    }


def test_arrow_text_columns_map_like_any_text(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    text = pd.ArrowDtype(pa.string())
    df = pd.DataFrame({"domain": pd.array(["HTTPS://WWW.Acme.com/x"], dtype=text),
                       "externalId": pd.array([" crm-1 "], dtype=text)})
    assert df.recotap.validate().empty
    res = df.recotap.map_ids(client=client, progress=False)
    assert statuses(res) == ["mapped"]
    assert stored_ids(sb) == {"acme.com": "crm-1"}


def test_duplicates_last_row_wins_and_earlier_are_superseded(
    sb: Sandbox, client: RecotapClient
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.add_recotap_account(domain="globex.com", name="Globex")
    df = crm(["acme.com", "globex.com", "https://ACME.com/", "www.acme.com"],
             ["first", "g", "second", "third"], index=["r1", "r2", "r3", "r4"])
    res = df.recotap.map_ids(client=client, progress=False)
    assert statuses(res) == ["superseded", "mapped", "superseded", "mapped"]
    assert "'r4'" in str(res.loc["r1", "recotap_message"])
    assert pd.isna(res.loc["r1", "recotap_batch"])
    assert stored_ids(sb) == {"acme.com": "third", "globex.com": "g"}


@pytest.mark.parametrize("size", [1, 2, 3, 100])
def test_duplicates_do_not_depend_on_chunk_boundaries(
    sb: Sandbox, client_for: Callable[..., RecotapClient],
    accounts: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch, size: int,
) -> None:
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", size)
    domains = accounts(3)
    rows = [domains[0], domains[1], domains[0], domains[2], domains[1], domains[0]]
    res = crm(rows).recotap.map_ids(client=client_for(max_concurrency=3), progress=False)
    assert statuses(res) == [
        "superseded", "superseded", "superseded", "mapped", "mapped", "mapped"
    ]
    assert stored_ids(sb) == {domains[0]: "crm-5", domains[1]: "crm-4", domains[2]: "crm-3"}


def test_not_found_rows(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    df = crm(["https://www.nobody-here.com/", "acme.com", "ghost.io"])
    res = df.recotap.map_ids(client=client, progress=False)
    assert statuses(res) == ["not_found", "mapped", "not_found"]
    assert res["recotap_domain"].tolist() == ["nobody-here.com", "acme.com", "ghost.io"]
    assert res.loc[0, "recotap_message"] == "no Recotap account has this domain"
    assert res.attrs["not_found"] == 2
    assert stored_ids(sb) == {"acme.com": "crm-1"}


# --------------------------------------------------------------------------- the guard


def test_guard_keeps_an_existing_id(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme", external_id="crm-old")
    sb.add_recotap_account(domain="globex.com", name="Globex")
    res = crm(["acme.com", "globex.com"], ["crm-new", "g"]).recotap.map_ids(
        client=client, progress=False
    )
    assert statuses(res) == ["already_mapped", "mapped"]
    assert res.loc[0, "recotap_existing_id"] == "crm-old"
    assert "overwrite=True" in str(res.loc[0, "recotap_message"])
    assert pd.isna(res.loc[0, "recotap_batch"])
    assert stored_ids(sb) == {"acme.com": "crm-old", "globex.com": "g"}


def test_guard_sends_nothing_when_every_account_is_mapped(
    sb: Sandbox, client: RecotapClient
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme", external_id="crm-old")
    sb.add_recotap_account(domain="same.com", name="Same", external_id="crm-same")
    res = crm(["acme.com", "same.com"], ["crm-new", "crm-same"]).recotap.map_ids(
        client=client, progress=False
    )
    assert statuses(res) == ["already_mapped", "unchanged"]
    assert res["recotap_existing_id"].tolist() == ["crm-old", "crm-same"]
    assert calls(sb, "PATCH", PATCH_PATH) == []
    assert res.attrs["requests"] == 0


def test_overwrite_replaces_without_reading(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme", external_id="crm-old")
    res = crm(["acme.com"], ["crm-new"]).recotap.map_ids(
        client=client, overwrite=True, progress=False
    )
    assert statuses(res) == ["mapped"]
    assert stored_ids(sb) == {"acme.com": "crm-new"}
    assert calls(sb, "GET", GET_PATH) == []
    assert res.attrs["overwrite"] is True


def test_rerun_is_safe_and_reports_unchanged(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(5)
    df = crm(domains)
    first = df.recotap.map_ids(client=client, progress=False)
    second = df.recotap.map_ids(client=client, progress=False)
    assert set(statuses(first)) == {"mapped"}
    assert set(statuses(second)) == {"unchanged"}
    assert stored_ids(sb) == dict(zip(domains, df["externalId"], strict=True))


# --------------------------------------------------------------------------- validation


def test_invalid_rows_raise_and_send_nothing(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    df = crm(["acme.com", "localhost", None, "bob@acme.com"], ["a", "b", "c", ""])
    with pytest.raises(ValidationError) as info:
        df.recotap.map_ids(client=client, progress=False)
    cases = info.value.failure_cases
    assert sorted(set(cases["index"])) == [1, 2, 3]
    assert {"domain", "externalId"} <= set(cases["column"])
    assert "on_invalid='skip'" in str(info.value)
    assert logged(sb) == []


def test_skip_sends_the_valid_rows(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    df = crm(["acme.com", "localhost", "acme.org"], ["a", "b", None])
    res = df.recotap.map_ids(client=client, on_invalid="skip", progress=False)
    assert statuses(res) == ["mapped", "invalid", "invalid"]
    assert "localhost" in str(res.loc[1, "recotap_message"])
    assert "externalId" in str(res.loc[2, "recotap_message"])
    assert stored_ids(sb) == {"acme.com": "a"}


def test_invalid_rows_do_not_supersede(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    df = crm(["acme.com", "acme.com"], ["a", None])
    res = df.recotap.map_ids(client=client, on_invalid="skip", progress=False)
    assert statuses(res) == ["mapped", "invalid"]


def test_accessor_validate_and_column_names(client: RecotapClient, sb: Sandbox) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    df = pd.DataFrame({"Website": ["acme.com", "localhost"], "CRM id": [1, 2]})
    cases = df.recotap.validate(domain="Website", external_id="CRM id")
    assert cases["index"].tolist() == [1]
    assert cases["column"].tolist() == ["Website"]
    res = df.iloc[:1].recotap.map_ids(
        client=client, domain="Website", external_id="CRM id", progress=False
    )
    assert statuses(res) == ["mapped"]
    assert stored_ids(sb) == {"acme.com": "1"}
    with pytest.raises(ValidationError, match="domain="):
        df.recotap.validate()


def test_bad_on_invalid_is_refused(client: RecotapClient) -> None:
    with pytest.raises(ValueError, match="on_invalid"):
        crm(["acme.com"]).recotap.map_ids(client=client, on_invalid="ignore")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the index


@pytest.mark.parametrize(
    "index",
    [
        pd.Index(["x", "y", "z", "w"]),
        pd.Index([40, 7, 13, 2]),
        pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("b", 2)]),
    ],
    ids=["strings", "shuffled-ints", "multiindex"],
)
def test_result_has_the_input_index(
    sb: Sandbox, client: RecotapClient, index: pd.Index
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.add_recotap_account(domain="globex.com", name="Globex", external_id="old")
    df = crm(["acme.com", "globex.com", "nowhere.net", "localhost"], index=index)
    res = df.recotap.map_ids(client=client, on_invalid="skip", progress=False)
    assert res.index.equals(df.index)
    joined = df.join(res)
    assert joined["recotap_status"].tolist() == ["mapped", "already_mapped", "not_found",
                                                 "invalid"]


# --------------------------------------------------------------------------- the backfill


def test_backfill_of_the_demo_data(sb: Sandbox, client: RecotapClient) -> None:
    """As a new user: list the unmapped accounts, join a CRM frame by domain, map."""
    sb.reset(seed="demo")
    before = stored_ids(sb)
    unmapped = client.unmapped_accounts(limit=1000)
    assert len(unmapped) > 100
    # A CRM export: every demo company (mapped or not), domains spelled as people type them.
    every = pd.DataFrame({"domain": list(before)})
    export = pd.DataFrame({
        "Website": "https://www." + every["domain"].str.upper() + "/",
        "crm_id": [f"new-{i}" for i in range(len(every))],
        "domain": every["domain"],
    })
    matched = unmapped.merge(export, on="domain")
    res = matched.recotap.map_ids(client=client, domain="Website", external_id="crm_id",
                                  progress=False)
    assert set(statuses(res)) == {"mapped"}
    assert client.unmapped_accounts(limit=1000)["domain"].isin(matched["domain"]).sum() == 0

    # Sending the whole export changes no account that already held an id.
    full = export.recotap.map_ids(client=client, domain="Website", external_id="crm_id",
                                  progress=False)
    after = stored_ids(sb)
    assert all(after[d] == before[d] for d, held in before.items() if held is not None)
    assert set(statuses(full)) == {"already_mapped", "unchanged"}


# --------------------------------------------------------------------------- faults


def _outcome(sb: Sandbox, client: RecotapClient, df: pd.DataFrame,
             overwrite: bool) -> tuple[list[str], dict[str, str | None]]:
    res = df.recotap.map_ids(client=client, overwrite=overwrite, progress=False)
    return statuses(res), stored_ids(sb)


def _fault_scene(sb: Sandbox) -> pd.DataFrame:
    for i in range(240):
        sb.add_recotap_account(domain=domain_of(i), name=f"C{i}",
                               external_id="held" if i % 10 == 0 else None)
    rows = [domain_of(i) for i in range(260)] + [domain_of(i) for i in range(0, 260, 7)]
    return crm(rows)


@pytest.mark.parametrize("overwrite", [False, True])
def test_429_and_5xx_under_concurrency_leave_every_outcome_unchanged(
    sb: Sandbox, client_for: Callable[..., RecotapClient],
    monkeypatch: pytest.MonkeyPatch, overwrite: bool,
) -> None:
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 20)
    calm = client_for(max_concurrency=4)
    expected = _outcome(sb, calm, _fault_scene(sb), overwrite)

    sb.reset()
    df = _fault_scene(sb)
    sb.set_faults(FaultConfig(seed=11, p_503=0.1, p_500=0.05, p_502=0.05, p_drop=0.05,
                              p_drop_after=0.1, p_429=0.1, burst_429=2, retry_after_429=0,
                              scope="recotap"))
    sb.force_429(4, retry_after=0)
    stormy = client_for(max_concurrency=4,
                        retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.05, max_attempts=12))
    assert _outcome(sb, stormy, df, overwrite) == expected
    faults = {r.fault for r in logged(sb)}
    assert {"429", "503", "drop_after"} <= faults


def test_rate_limited_server_is_waited_for(
    sb: Sandbox, client_for: Callable[..., RecotapClient],
    accounts: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 10)
    domains = accounts(40)
    sb.set_recotap_rps(2)
    res = crm(domains).recotap.map_ids(client=client_for(max_concurrency=4), progress=False)
    assert set(statuses(res)) == {"mapped"}
    assert stored_ids(sb) == {d: f"crm-{i}" for i, d in enumerate(domains)}
    assert any(r.status == 429 for r in sb.requests)


# --------------------------------------------------------------------------- verify


class _RacingClient(RecotapClient):
    """A client whose every mapping request is followed, before the answer is handed back,
    by another writer (``rival``) putting ``"rival"`` on ``target``: the race ``verify``
    catches."""

    target = ""
    rival: RecotapClient

    def map_external_ids_raw(self, body: bytes) -> dict[str, Any]:
        answer = super().map_external_ids_raw(body)
        self.rival.map_external_ids([{"domain": self.target, "externalId": "rival"}])
        return answer


def test_verify_marks_ids_that_did_not_land(
    sb: Sandbox, client: RecotapClient
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.add_recotap_account(domain="globex.com", name="Globex")
    racing = _RacingClient(sb.recotap_key, sb.recotap_base_url, retry=FAST_RETRY)
    racing.target, racing.rival = "globex.com", client
    try:
        df = crm(["acme.com", "globex.com", "nowhere.org"], ["a", "g", "n"])
        res = df.recotap.map_ids(client=racing, verify=True, progress=False)
    finally:
        racing.close()
    assert statuses(res) == ["mapped", "failed", "not_found"]
    assert "'rival'" in str(res.loc[1, "recotap_message"])
    assert res.attrs["verified"] is True
    assert res.attrs["counts"] == {"mapped": 1, "not_found": 1, "failed": 1}


def test_verify_confirms_a_clean_run(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(150)
    res = crm(domains).recotap.map_ids(client=client, verify=True, progress=False)
    assert set(statuses(res)) == {"mapped"}
    # Guard and verification each read 150 domains in 2 requests.
    assert res.attrs["read_requests"] == 4


# --------------------------------------------------------------------------- failures


def test_auth_error_carries_the_partial_result(
    sb: Sandbox, client_for: Callable[..., RecotapClient]
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    bad = client_for(api_key="rtp_not_a_key_1234")
    df = crm(["acme.com", "localhost", "acme.com"])
    with pytest.raises(AuthError) as info:
        df.recotap.map_ids(client=bad, on_invalid="skip", progress=False)
    result = info.value.result
    assert result is not None
    assert statuses(result) == ["superseded", "invalid", "not_sent"]
    assert "RECOTAP_API_KEY" in str(info.value)
    assert len(logged(sb, 1)) == 1
    assert stored_ids(sb) == {"acme.com": None}


def test_failure_mid_run_keeps_acknowledged_rows(
    sb: Sandbox, accounts: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 10)
    domains = accounts(50)
    c = RecotapClient(sb.recotap_key, sb.recotap_base_url, max_concurrency=1,
                      retry=RetryPolicy(backoff_base=0.01, max_attempts=2))
    sb.set_faults(FaultConfig(p_503=1.0, start_after=2, scope="writes"))
    try:
        with pytest.raises(ServerError) as info:
            crm(domains).recotap.map_ids(client=c, overwrite=True, progress=False)
    finally:
        c.close()
    result = info.value.result
    assert result is not None
    assert statuses(result) == ["mapped"] * 20 + ["not_sent"] * 30
    assert "failed" in str(result.loc[20, "recotap_message"])
    assert "stopped" in str(result.loc[49, "recotap_message"])
    assert result.attrs["requests"] == 2
    # The failed request keeps its number; the ones never sent have none.
    assert result["recotap_batch"].iloc[18:32].fillna(-1).tolist() == [1] * 2 + [2] * 10 + [-1] * 2
    stored = stored_ids(sb)
    assert [stored[d] for d in domains] == [f"crm-{i}" for i in range(20)] + [None] * 30


def test_failure_under_concurrency_matches_the_server(
    sb: Sandbox, accounts: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 5)
    domains = accounts(60)
    c = RecotapClient(sb.recotap_key, sb.recotap_base_url, max_concurrency=4,
                      retry=RetryPolicy(backoff_base=0.01, max_attempts=2))
    sb.set_faults(FaultConfig(p_503=1.0, start_after=5, scope="writes"))
    try:
        with pytest.raises(ServerError) as info:
            crm(domains).recotap.map_ids(client=c, overwrite=True, progress=False)
    finally:
        c.close()
    result = info.value.result
    assert result is not None
    stored = stored_ids(sb)
    for domain, status, sent in zip(domains, statuses(result), result["recotap_external_id"],
                                    strict=True):
        assert status in ("mapped", "not_sent")
        assert (stored[domain] == sent) == (status == "mapped")


# --------------------------------------------------------------------------- progress


def test_progress_shows_counts(
    sb: Sandbox, client: RecotapClient, capsys: pytest.CaptureFixture[str]
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    crm(["acme.com", "nowhere.io"]).recotap.map_ids(client=client, progress=True)
    err = capsys.readouterr().err
    assert "mapped=1" in err
    assert "not_found=1" in err


# --------------------------------------------------------------------------- property


_POOL = ["alpha.com", "beta.io", "gamma.de", "delta.org", "müller.de"]
_SPELLINGS = st.sampled_from(
    [f"https://www.{d}/x" for d in _POOL] + _POOL + [f"{d}." for d in _POOL]
    + ["ghost.net", "https://phantom.org/", "localhost", "", "not a domain"]
)
_IDS = st.one_of(st.sampled_from(["id-1", "id-2", "id-3"]), st.integers(1, 3),
                 st.none())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(_SPELLINGS, _IDS), max_size=25),
    held=st.lists(st.sampled_from([None, "id-1", "id-2", "other"]), min_size=5, max_size=5),
    overwrite=st.booleans(),
    size=st.integers(1, 6),
)
def test_every_row_gets_one_status_and_the_server_agrees(
    sb: Sandbox, client: RecotapClient, monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[str, Any]], held: list[str | None], overwrite: bool, size: int,
) -> None:
    sb.reset()
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", size)
    before: dict[str, str | None] = {}
    for domain, external_id in zip(_POOL, held, strict=True):
        account = sb.add_recotap_account(domain=domain, name=domain, external_id=external_id)
        before[account["domain"]] = external_id
    df = pd.DataFrame(
        {"domain": [d for d, _ in rows], "externalId": pd.Series([i for _, i in rows],
                                                                 dtype=object)},
        index=pd.Index([f"r{k}" for k in range(len(rows))]),
    )
    res = df.recotap.map_ids(client=client, overwrite=overwrite, on_invalid="skip",
                             progress=False)
    after = stored_ids(sb)

    assert res.index.equals(df.index)
    assert res["recotap_status"].notna().all()
    assert set(statuses(res)) <= set(STATUSES) - {"failed", "not_sent"}
    winners: dict[str, str] = {}
    for label, row in res.iterrows():
        status, domain, sent = row["recotap_status"], row["recotap_domain"], \
            row["recotap_external_id"]
        if status == "invalid":
            assert pd.isna(domain) or pd.isna(sent)
            continue
        assert domain not in winners, "a domain was settled by two rows"
        later = res.loc[res.index[res.index.get_loc(label) + 1:]]
        if status == "superseded":
            assert (later["recotap_domain"] == domain).any()
            continue
        winners[domain] = status
        assert not (later["recotap_domain"] == domain).any()
        if status == "not_found":
            assert domain not in before
        elif status == "mapped":
            assert after[domain] == sent
            assert overwrite or before[domain] is None
        elif status == "unchanged":
            assert before[domain] == sent == after[domain]
        elif status == "already_mapped":
            assert not overwrite
            assert before[domain] not in (None, sent)
            assert after[domain] == before[domain] == row["recotap_existing_id"]
    for domain, external_id in before.items():
        if winners.get(domain) != "mapped":
            assert after[domain] == external_id, "an account changed that no row claims"
    assert np.array_equal(
        res["recotap_batch"].notna().to_numpy(), (res["recotap_status"].isin(
            ["mapped", "not_found"])).to_numpy()
    )
