"""``df.recotap.diff``: a preview that writes nothing and foretells what ``map_ids`` does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recocora.recotap.accessor  # noqa: F401  (registers df.recotap)
from recocora.errors import ServerError, ValidationError
from recocora.recotap._client import RecotapClient
from recocora.recotap._mapping import RESULT_COLUMNS
from recocora.sandbox import FaultConfig

from .conftest import calls, logged, stored_ids

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

PATCH_PATH = "/api/v1/accounts/external-ids"
GET_PATH = "/api/v1/accounts"


def crm(domains: list[Any], ids: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"domain": domains, "externalId": ids})


def statuses(result: pd.DataFrame) -> list[str]:
    return [str(s) for s in result["recotap_status"]]


def batches(result: pd.DataFrame) -> list[str]:
    return [str(b) for b in result["recotap_batch"]]


def test_preview_writes_nothing_and_map_ids_does_what_it_said(
    sb: Sandbox, client: RecotapClient
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.add_recotap_account(domain="globex.com", name="Globex", external_id="crm-2")
    sb.add_recotap_account(domain="initech.com", name="Initech", external_id="old-3")
    sb.add_recotap_account(domain="umbrella.com", name="Umbrella")
    df = crm(
        ["https://www.acme.com/", "globex.com", "initech.com", "nowhere.example",
         "umbrella.com", "UMBRELLA.com", "localhost"],
        ["crm-1", "crm-2", "crm-3", "crm-4", "crm-5", "crm-6", "crm-7"],
    )
    before = stored_ids(sb)
    preview = df.recotap.diff(client=client, on_invalid="skip", progress=False)

    assert calls(sb, "PATCH", PATCH_PATH) == []
    assert stored_ids(sb) == before
    assert statuses(preview) == [
        "mapped", "unchanged", "already_mapped", "not_found", "superseded", "mapped", "invalid",
    ]
    assert list(preview.columns) == list(RESULT_COLUMNS)
    assert preview.loc[2, "recotap_existing_id"] == "old-3"
    assert preview.loc[0, "recotap_domain"] == "acme.com"
    assert preview.attrs["preview"] == "local"
    assert preview.attrs["requests"] == 0 and preview.attrs["bulk_requests"] == 1
    assert preview.attrs["read_requests"] == len(calls(sb, "GET", GET_PATH)) == 2
    assert preview.attrs["counts"] == {"mapped": 2, "unchanged": 1, "already_mapped": 1,
                                       "not_found": 1, "superseded": 1, "invalid": 1}

    real = df.recotap.map_ids(client=client, on_invalid="skip", progress=False)
    assert statuses(real) == statuses(preview)
    assert batches(real) == batches(preview)


def test_overwrite_preview_names_what_would_be_replaced(
    sb: Sandbox, client: RecotapClient
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme", external_id="old-1")
    sb.add_recotap_account(domain="globex.com", name="Globex", external_id="crm-2")
    df = crm(["acme.com", "globex.com", "nowhere.example"], ["crm-1", "crm-2", "crm-3"])
    preview = df.recotap.diff(client=client, overwrite=True, progress=False)
    assert statuses(preview) == ["mapped", "mapped", "not_found"]
    assert preview["recotap_existing_id"].tolist()[:2] == ["old-1", "crm-2"]
    assert "would replace 'old-1'" in str(preview.loc[0, "recotap_message"])
    # With overwrite=True nothing is guarded: one read, of every candidate.
    assert preview.attrs["read_requests"] == 1
    assert calls(sb, "PATCH", PATCH_PATH) == []
    real = df.recotap.map_ids(client=client, overwrite=True, progress=False)
    assert statuses(real) == statuses(preview)


def test_invalid_rows_raise_before_any_read(sb: Sandbox, client: RecotapClient) -> None:
    with pytest.raises(ValidationError):
        crm(["acme.com", "localhost"], ["a", "b"]).recotap.diff(client=client, progress=False)
    assert logged(sb) == []


def test_a_failed_read_carries_the_partial_result(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.set_faults(FaultConfig(p_503=1.0, scope="recotap"))
    with pytest.raises(ServerError) as info:
        crm(["acme.com"], ["a"]).recotap.diff(client=client, progress=False)
    partial = info.value.result
    assert partial is not None and partial.attrs["preview"] == "local"
    assert statuses(partial) == ["not_sent"]


# --------------------------------------------------------------------------- property

DOMAINS = [f"d{i}.com" for i in range(8)]
IDS = ["x1", "x2", "x3"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, str | None], pd.DataFrame, bool]:
    accounts = {
        d: draw(st.sampled_from([None, *IDS]))
        for d in draw(st.sets(st.sampled_from(DOMAINS), max_size=len(DOMAINS)))
    }
    spellings = st.sampled_from(DOMAINS).flatmap(
        lambda d: st.sampled_from([d, d.upper(), f"https://www.{d}/path"])
    )
    n = draw(st.integers(1, 14))
    domains = draw(st.lists(st.one_of(spellings, st.just("localhost")), min_size=n,
                            max_size=n))
    ids = draw(st.lists(st.sampled_from([*IDS, None]), min_size=n, max_size=n))
    return accounts, crm(domains, ids), draw(st.booleans())


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_preview_then_map_ids_agree_row_by_row(
    sb: Sandbox, client: RecotapClient, monkeypatch: pytest.MonkeyPatch,
    case: tuple[dict[str, str | None], pd.DataFrame, bool],
) -> None:
    accounts, df, overwrite = case
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 3)
    sb.reset()
    for domain, held in accounts.items():
        sb.add_recotap_account(domain=domain, name=domain, external_id=held)
    preview = df.recotap.diff(client=client, overwrite=overwrite, on_invalid="skip",
                              progress=False)
    assert calls(sb, "PATCH", PATCH_PATH) == []
    assert stored_ids(sb) == accounts
    real = df.recotap.map_ids(client=client, overwrite=overwrite, on_invalid="skip",
                              progress=False)
    assert statuses(preview) == statuses(real)
    assert batches(preview) == batches(real)
    assert preview["recotap_domain"].equals(real["recotap_domain"])
