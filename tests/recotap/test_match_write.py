"""From Recotap's unmapped accounts, through matching and review, to the mappings written:
exactly the accepted ids land, on the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from recocora.errors import ValidationError
from recocora.recotap._client import RecotapClient

from .conftest import calls, stored_ids

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


def test_unmapped_accounts_all_walks_every_page_and_keeps_those_without_an_id(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(7, ids={1: "a", 4: "b"})
    frame = client.unmapped_accounts(all=True, limit=3)
    assert frame.columns.tolist() == ["name", "domain"]
    assert frame["domain"].tolist() == [domains[i] for i in (0, 2, 3, 5, 6)]
    # Seven accounts, three a page: three requests, whatever the last page's cursor says.
    assert len(calls(sb, "GET", "/api/v1/accounts", 3)) == 3
    assert not calls(sb, "GET", "/missing-external-ids")


def test_the_first_page_alone_misses_accounts_that_all_finds(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    accounts(12)
    assert len(client.unmapped_accounts(limit=5)) == 5
    assert len(client.unmapped_accounts(all=True, limit=5)) == 12


def _crm_and_accounts(sb: Sandbox) -> pd.DataFrame:
    for name, domain in [("Acme Tools Inc", "acmetools.com"), ("Acme Foods Ltd", "acmefoods.com"),
                         ("Borealis BV", "borealis.nl"), ("Zeta Labs", "zeta.io"),
                         ("Quill GmbH", "quill.de")]:
        sb.add_recotap_account(domain=domain, name=name)
    sb.add_recotap_account(domain="mapped.com", name="Mapped Co", external_id="old-1")
    return pd.DataFrame(
        {
            "company": ["Acme Tools", "ACME FOODS LIMITED", "Borealis", "Zeta Labs", "Quill",
                        "Quill GmbH"],
            "website": ["https://www.acmetools.com/about", None, "shop.borealis.nl", None,
                        "quill.de", "www.quill.de"],
            "email": [None, "jane@gmail.com", None, "ops@zeta.io", None, None],
            "externalId": ["crm-1", "crm-2", "crm-3", "crm-4", "crm-5", "crm-6"],
        },
        index=pd.Index(["a", "b", "c", "d", "e", "f"], name="crm"),
    )


def test_accepting_in_review_and_mapping_writes_exactly_the_accepted_ids(
    sb: Sandbox, client: RecotapClient
) -> None:
    crm = _crm_and_accounts(sb)
    unmapped = client.unmapped_accounts(all=True)
    assert "mapped.com" not in set(unmapped["domain"])
    matches = crm.recotap.match(unmapped, name="company", domain="website", email="email")
    status = matches["match_status"].to_dict()
    assert status == {"a": "auto", "b": "review", "c": "auto", "d": "auto",
                      "e": "conflict", "f": "conflict"}
    review = matches.recotap.review()
    review.status_filter.value = "review"
    assert [r.label for r in review.rows] == ["b"]
    review.rows[0].accept_button.click()
    review.view.value = "conflicts"
    group = review.conflict_groups["quill.de"]
    next(r for r in group if r.label == "f").accept_button.click()
    review.view.value = "rows"
    review.accept_auto_button.click()
    chosen = matches.recotap.accepted()
    assert chosen.to_dict("index") == {
        "a": {"domain": "acmetools.com", "externalId": "crm-1"},
        "b": {"domain": "acmefoods.com", "externalId": "crm-2"},
        "c": {"domain": "borealis.nl", "externalId": "crm-3"},
        "d": {"domain": "zeta.io", "externalId": "crm-4"},
        "f": {"domain": "quill.de", "externalId": "crm-6"},
    }
    result = chosen.recotap.map_ids(client=client, progress=False)
    assert set(result["recotap_status"]) == {"mapped"}
    assert stored_ids(sb) == {
        "acmetools.com": "crm-1", "acmefoods.com": "crm-2", "borealis.nl": "crm-3",
        "zeta.io": "crm-4", "quill.de": "crm-6", "mapped.com": "old-1",
    }


def test_an_account_that_gained_an_id_meanwhile_is_still_protected(
    sb: Sandbox, client: RecotapClient
) -> None:
    crm = _crm_and_accounts(sb)
    matches = crm.recotap.match(client.unmapped_accounts(all=True), name="company",
                                domain="website", email="email")
    sb.add_recotap_account(domain="zeta.io", name="Zeta Labs", external_id="someone-else")
    result = matches.recotap.accepted().recotap.map_ids(client=client, progress=False)
    assert result.loc["d", "recotap_status"] == "already_mapped"
    assert stored_ids(sb)["zeta.io"] == "someone-else"


def test_conflicting_rows_cannot_both_be_accepted(sb: Sandbox, client: RecotapClient) -> None:
    crm = _crm_and_accounts(sb)
    matches = crm.recotap.match(client.unmapped_accounts(all=True), name="company",
                                domain="website")
    matches.loc[["e", "f"], "match_decision"] = "accepted"
    with pytest.raises(ValidationError, match=r"quill\.de"):
        matches.recotap.accepted()


def test_the_demo_export_matches_with_every_auto_row_right(
    sb: Sandbox, client: RecotapClient
) -> None:
    from recocora._demo_match import match_export

    sb.reset(seed="demo")
    unmapped = client.unmapped_accounts(all=True)
    export = match_export([{"name": n, "domain": d}
                           for n, d in zip(unmapped["name"], unmapped["domain"], strict=True)])
    matches = export.drop(columns="truth").recotap.match(
        unmapped, name="company", domain="website", email="email", external_id="crm_id")
    auto = matches["match_status"] == "auto"
    assert auto.sum() > 40
    assert (matches.loc[auto, "match_domain"] == export.loc[auto, "truth"]).all()
    # Name-only rows (a free-mail address) and the look-alike wait for a person.
    free = export["email"].str.contains("gmail|yahoo|hotmail|outlook", na=False)
    assert not auto[free].any()
    assert set(matches.loc[free & export["truth"].notna(), "match_status"]) <= {
        "review", "ambiguous"}
    assert (matches["match_status"] == "conflict").sum() == 2
    reseller = export["company"] == "Northwind Consulting"
    assert matches.loc[reseller, "match_status"].tolist() == ["review"]
