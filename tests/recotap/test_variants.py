"""``map_ids`` and the client against the Recotap answers the docs allow but the sandbox does
not give by default: every row's status is what the server said, or what reading back
shows when the answer does not say."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import recocora  # noqa: F401  (registers df.recotap)
from recocora import AuthError, RecotapClient, RequestRejectedError, ServerError
from recocora.sandbox import FaultConfig, Sandbox

from .conftest import calls, stored_ids

MUELLER = "müller-bau.de"
MUELLER_PUNY = "xn--mller-bau-q9a.de"


def crm(domains: list[str], ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"domain": domains, "externalId": ids},
                        index=[f"r{i}" for i in range(len(domains))])


def truth(sb: Sandbox, result: pd.DataFrame) -> list[str]:
    """Each row's status as the server's state says it: mapped when its account holds the
    id sent, not_found when no account has the domain, failed otherwise."""
    held = stored_ids(sb)
    out = []
    for domain, sent in zip(result["recotap_domain"], result["recotap_external_id"],
                            strict=True):
        if domain not in held:
            out.append("not_found")
        else:
            out.append("mapped" if held[domain] == sent else "failed")
    return out


# --------------------------------------------------------------------------- matched > updated


def test_matched_but_not_written_is_read_back_not_mapped_on_faith(
    sb: Sandbox, client: RecotapClient
) -> None:
    for name in ("a", "b", "c"):
        sb.add_recotap_account(domain=f"{name}.com", name=name)
    sb.set_faults(FaultConfig(p_unwritten=1.0))
    res = crm(["a.com", "b.com", "nowhere.com"], ["1", "2", "3"]).recotap.map_ids(
        client=client, overwrite=True, progress=False)
    assert res["recotap_status"].tolist() == ["failed", "failed", "not_found"]
    assert res["recotap_message"].iloc[0].startswith(
        "Recotap answered matched 2, updated 0 without saying which; read back,")
    assert "not written" in res["recotap_message"].iloc[0]
    assert res.attrs["read_back"] == 1
    assert len(calls(sb, "GET", "/accounts")) == 1


def test_a_failed_read_back_leaves_the_rows_unacknowledged_and_says_why(
    sb: Sandbox, client: RecotapClient
) -> None:
    for name in ("a", "b"):
        sb.add_recotap_account(domain=f"{name}.com", name=name)
    # The mapping request passes; every read after it answers 503.
    sb.set_faults(FaultConfig(p_unwritten=1.0, scope="recotap", start_after=1, p_503=1.0))
    with pytest.raises(ServerError) as caught:
        crm(["a.com", "b.com"], ["1", "2"]).recotap.map_ids(
            client=client, overwrite=True, progress=False)
    result = caught.value.result
    assert result is not None
    assert result["recotap_status"].tolist() == ["not_sent", "not_sent"]
    assert result["recotap_message"].str.startswith(
        "sent, but Recotap's answer did not say which rows were written").all()


def test_an_account_already_holding_the_id_is_confirmed_mapped(
    sb: Sandbox, client: RecotapClient
) -> None:
    sb.add_recotap_account(domain="a.com", name="a", external_id="1")
    sb.add_recotap_account(domain="b.com", name="b")
    res = crm(["a.com", "b.com"], ["1", "2"]).recotap.map_ids(
        client=client, overwrite=True, progress=False)
    assert res["recotap_status"].tolist() == ["mapped", "mapped"]
    assert "holds this id" in res["recotap_message"].iloc[0]
    assert res.attrs["matched"] == 2 and res.attrs["updated"] == 1
    assert res.attrs["read_back"] == 1


def test_a_full_answer_is_not_read_back(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="a.com", name="a")
    res = crm(["a.com", "nowhere.com"], ["1", "2"]).recotap.map_ids(
        client=client, overwrite=True, progress=False)
    assert res["recotap_status"].tolist() == ["mapped", "not_found"]
    assert res.attrs["read_back"] == 0
    assert calls(sb, "GET", "/accounts") == []


#: What a row's account holds before the run: no id, the id the row sends, another id; or
#: no account at all.
HELD = st.lists(st.sampled_from(["none", "same", "other", "absent"]), min_size=1, max_size=10)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=HELD, size=st.integers(1, 4), p_unwritten=st.sampled_from([0.0, 0.4, 1.0]),
       seed=st.integers(0, 5), unicode=st.booleans())
def test_every_row_status_is_what_the_server_holds(
    sb: Sandbox, client_for: Callable[..., RecotapClient], held: list[str], size: int,
    p_unwritten: float, seed: int, unicode: bool,
) -> None:
    sb.reset()
    domains, ids = [], []
    for i, what in enumerate(held):
        domain = f"firma-{i}-ü.de" if i % 3 == 0 else f"firm-{i}.com"
        sent = f"crm-{i}"
        if what != "absent":
            stored = {"same": sent, "other": f"old-{i}"}.get(what)
            sb.add_recotap_account(domain=domain, name=f"F{i}", external_id=stored)
        domains.append(domain)
        ids.append(sent)
    sb.set_faults(FaultConfig(seed=seed, p_unwritten=p_unwritten, unicode_domains=unicode))
    client = client_for()
    client.MAX_MAPPINGS = size  # type: ignore[misc]
    res = crm(domains, ids).recotap.map_ids(client=client, overwrite=True, progress=False)
    assert res["recotap_status"].tolist() == truth(sb, res)
    for status in res["recotap_status"]:
        event(status)


# --------------------------------------------------------------------------- Unicode domains


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("spelled", [MUELLER, MUELLER_PUNY, f"https://www.{MUELLER}/kontakt"])
def test_a_unicode_stored_domain_is_found_however_the_frame_spells_it(
    sb: Sandbox, client: RecotapClient, overwrite: bool, spelled: str
) -> None:
    sb.add_recotap_account(domain=MUELLER, name="Müller Bau")
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.set_faults(FaultConfig(unicode_domains=True))
    res = crm([spelled, "acme.com"], ["c1", "c2"]).recotap.map_ids(
        client=client, overwrite=overwrite, verify=True, progress=False)
    assert res["recotap_status"].tolist() == ["mapped", "mapped"]
    assert stored_ids(sb) == {MUELLER_PUNY: "c1", "acme.com": "c2"}


def test_the_unmapped_list_maps_back_in_unicode(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain=MUELLER, name="Müller Bau")
    sb.set_faults(FaultConfig(unicode_domains=True, not_found_normal=True))
    unmapped = client.unmapped_accounts()
    assert unmapped["domain"].tolist() == [MUELLER]
    frame = unmapped.assign(externalId="c1")
    res = frame.recotap.map_ids(client=client, overwrite=True, progress=False)
    assert res["recotap_status"].tolist() == ["mapped"]
    # The domain's spelling was known from the list: no read before the write.
    assert calls(sb, "GET", "/accounts") == []
    assert client.accounts(domains=[MUELLER_PUNY])["externalId"].tolist() == ["c1"]


def test_an_unknown_unicode_domain_echoed_in_normal_form_is_not_found(
    sb: Sandbox, client: RecotapClient
) -> None:
    sb.set_faults(FaultConfig(unicode_domains=True, not_found_normal=True))
    res = crm(["nöwhere.de"], ["c1"]).recotap.map_ids(
        client=client, overwrite=True, progress=False)
    assert res["recotap_status"].tolist() == ["not_found"]
    assert res["recotap_message"].tolist() == ["no Recotap account has this domain"]


# --------------------------------------------------------------------------- envelopes, errors


def test_answers_without_envelope(sb: Sandbox, client: RecotapClient) -> None:
    for name in ("a", "b"):
        sb.add_recotap_account(domain=f"{name}.com", name=name)
    sb.set_faults(FaultConfig(bare_answers=True))
    assert client.unmapped_accounts()["domain"].tolist() == ["a.com", "b.com"]
    res = crm(["a.com", "nowhere.com"], ["1", "2"]).recotap.map_ids(
        client=client, verify=True, progress=False)
    assert res["recotap_status"].tolist() == ["mapped", "not_found"]
    assert client.accounts(limit=1)["domain"].tolist() == ["a.com", "b.com"]


def test_errors_without_data_and_a_plain_401(sb: Sandbox, client: RecotapClient,
                                             client_for: Callable[..., RecotapClient]) -> None:
    sb.set_faults(FaultConfig(errors_without_data=True, unauthorized_text=True))
    with pytest.raises(RequestRejectedError, match="HTTP 400"):
        client.map_external_ids_raw(b'{"mappings": []}')
    with pytest.raises(AuthError, match="Unauthorized access"):
        client_for(api_key="rtp_wrong_0123456789").unmapped_accounts()


def test_429_without_retry_after_loses_no_row(sb: Sandbox, client: RecotapClient) -> None:
    for name in ("a", "b"):
        sb.add_recotap_account(domain=f"{name}.com", name=name)
    sb.force_429(2, retry_after=None)
    res = crm(["a.com", "b.com"], ["1", "2"]).recotap.map_ids(client=client, progress=False)
    assert res["recotap_status"].tolist() == ["mapped", "mapped"]
    assert res["recotap_status"].tolist() == truth(sb, res)
    assert [r.status for r in sb.requests].count(429) == 2
