"""Matching CRM records to Recotap accounts: quality on a labelled fixture, the rules that must
hold whatever the input (property tests), decisions, and the way into ``map_ids``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recocora
from recocora.errors import ValidationError
from recocora.recotap._match import MATCH_COLUMNS, STATUSES, TIERS
from recocora.recotap._names import clean_names

from .matchdata import make_fixture

MATCH_ARGS = {"name": "company", "domain": ["website", "website2"], "email": "email"}


@cache
def fixture_run() -> tuple[pd.DataFrame, pd.DataFrame]:
    fx = make_fixture()
    return fx.crm, fx.crm.recotap.match(fx.accounts, **MATCH_ARGS)


def quality(crm: pd.DataFrame, matches: pd.DataFrame) -> dict[str, float]:
    """Precision of ``auto`` and the share of rows with company evidence auto-matched right."""
    joined = crm.join(matches)
    auto = joined[joined["match_status"] == "auto"]
    right = auto["match_domain"].astype(str) == auto["truth"].astype(str)
    free = joined["email"].astype(str).str.contains(r"@(?:gmail|yahoo|hotmail|gmx)\.", regex=True)
    evidence = joined["truth"].notna() & ~free & joined["kind"].ne("empty")
    # Two CRM ids on one account must go to a person: they are measured by their own test.
    claimable = evidence & joined["kind"].ne("conflict")
    hit = (joined["match_status"] == "auto") & (
        joined["match_domain"].astype(str) == joined["truth"].astype(str)
    )
    return {
        "precision": float(right.mean()),
        "recall": float(hit[claimable].mean()),
        "recall_with_conflicts": float(hit[evidence].mean()),
        "auto": float(len(auto)),
    }


def test_auto_matches_are_right_and_cover_rows_with_company_evidence() -> None:
    crm, matches = fixture_run()
    q = quality(crm, matches)
    assert q["precision"] >= 0.995, q
    assert q["recall"] >= 0.95, q
    assert q["auto"] > 500


def test_every_kind_of_mess_lands_where_a_person_expects() -> None:
    crm, matches = fixture_run()
    by_kind = crm.join(matches).groupby("kind")["match_status"].agg(lambda s: set(s))
    assert by_kind["conflict"] == {"conflict"}
    assert by_kind["other_country"] <= {"ambiguous", "review"}
    for trap in ("lookalike", "name_only", "hosted", "reseller", "absent", "empty"):
        assert "auto" not in by_kind[trap], trap
    assert by_kind["name_only"] == {"review"}
    assert by_kind["reseller"] == {"review"}
    for clean in ("url", "subdomain", "unicode", "email", "email_in_website", "second_site",
                  "name_variant", "country", "lookalike_domain", "plain"):
        assert by_kind[clean] == {"auto"}, clean


def test_result_shape_index_and_candidates() -> None:
    crm, matches = fixture_run()
    assert list(matches.columns) == list(MATCH_COLUMNS)
    assert matches.index.equals(crm.index)
    assert set(matches["match_status"]) <= set(STATUSES)
    assert set(matches["match_tier"].dropna()) <= set(TIERS)
    assert matches["match_score"].dropna().between(0, 1).all()
    assert matches["match_reason"].notna().all()
    candidates = matches.attrs["candidates"]
    assert set(candidates["row"]) <= set(crm.index)
    assert candidates.groupby("row")["rank"].max().max() <= recocora.recotap._match.MatchRules.TOP
    # The proposal is always the row's first candidate, with the domain as Recotap lists it.
    first = candidates[candidates["rank"] == 1].set_index("row")["domain"]
    proposed = matches["match_domain"].dropna()
    assert (first.reindex(proposed.index) == proposed).all()
    assert set(proposed) <= set(make_fixture().accounts["domain"])


def test_unicode_domains_come_back_as_recotap_lists_them() -> None:
    accounts = pd.DataFrame({"name": ["Müller Bau GmbH"], "domain": ["müller-bau.de"]})
    crm = pd.DataFrame({"company": ["Muller Bau"], "website": ["https://xn--mller-bau-q9a.de/"]})
    m = recocora.match_accounts(crm, accounts, name="company", domain="website")
    assert m["match_status"].tolist() == ["auto"]
    assert m["match_domain"].tolist() == ["müller-bau.de"]


def test_names_are_cleaned_but_never_to_nothing() -> None:
    got = clean_names(pd.Series(["ACME Incorporated", "Acme, Inc.", "Inc", "The Co.", "", None,
                                 "Smith & Sons Ltd", "Smith and Sons", "Société Générale S.A."]))
    assert got.tolist()[:4] == ["acme", "acme", "inc", "co"]
    assert got.isna().tolist()[4:6] == [True, True]
    assert got[6] == got[7] == "smith sons"
    assert got[8] == "societe generale"


@given(st.lists(st.text(alphabet="aAé &.,-IncLtdGmbH", min_size=1, max_size=20), max_size=20))
def test_a_name_with_letters_keeps_some(names: list[str]) -> None:
    cleaned = clean_names(pd.Series(names, dtype=object))
    for raw, got in zip(names, cleaned, strict=True):
        if any(c.isalnum() for c in raw):
            assert isinstance(got, str) and got


# -- rules that hold for any input ------------------------------------------------------------

POOL = pd.DataFrame({
    "name": ["Acme Tools Inc", "Acme Foods Ltd", "Acme GmbH", "Acme SAS", "Borealis BV",
             "Shop Acme", "Zeta Labs"],
    "domain": ["acmetools.com", "acmefoods.com", "acme.de", "acme.fr", "borealis.nl",
               "shop.acme.com", "zeta.io"],
})
crm_rows = st.lists(
    st.tuples(
        st.sampled_from(["Acme Tools", "ACME Foods", "Acme", "Borealis", "Zeta Labs", "Other",
                         None]),
        st.sampled_from(["acmetools.com", "www.acmefoods.com/x", "acme.de", "acme.com",
                         "eu.acme.com", "borealis.nl", "n/a", None]),
        st.sampled_from(["x@acmetools.com", "y@gmail.com", "z@zeta.io", None]),
        st.sampled_from(["id-1", "id-2", "id-3", "id-4", "id-5", "id-6"]),
    ),
    max_size=14,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crm_rows)
def test_never_two_auto_rows_with_different_ids_on_one_account(rows: list[tuple]) -> None:
    crm = pd.DataFrame(rows, columns=["company", "website", "email", "externalId"], dtype=object)
    m = recocora.match_accounts(crm, POOL, name="company", domain="website", email="email")
    auto = m[m["match_status"] == "auto"]
    assert (auto.groupby("match_domain")["match_external_id"].nunique() <= 1).all()
    assert not m["match_status"].eq("auto").where(m["match_tier"].isin(TIERS[3:]), False).any()
    # Whatever was found, accepted() is always writable: one id per domain.
    accepted = m.recotap.accepted()
    assert not accepted["domain"].duplicated().any()


@settings(max_examples=20, deadline=None)
@given(crm_rows)
def test_a_name_alone_never_auto_accepts(rows: list[tuple]) -> None:
    crm = pd.DataFrame(rows, columns=["company", "website", "email", "externalId"], dtype=object)
    m = recocora.match_accounts(crm, POOL, name="company")
    assert "auto" not in set(m["match_status"])
    # Free mail says nothing about the company: alone it finds nothing.
    only_free = crm.assign(email="someone@gmail.com")
    m = recocora.match_accounts(only_free, POOL, email="email")
    assert set(m["match_status"]) <= {"none"}


def test_a_domain_whose_names_disagree_goes_to_review() -> None:
    crm = pd.DataFrame({"company": ["Zeta Consulting"], "website": ["acmetools.com"]})
    m = recocora.match_accounts(crm, POOL, name="company", domain="website")
    assert m["match_status"].tolist() == ["review"]
    assert "disagree" in m["match_reason"].iloc[0]


def test_one_brand_in_two_countries() -> None:
    crm = pd.DataFrame({"company": ["Acme", "Acme", "Acme"],
                        "website": ["acme.de", "acme.co.uk", "shop.acme.fr"],
                        "externalId": ["a", "b", "c"]})
    m = recocora.match_accounts(crm, POOL, name="company", domain="website")
    # The same brand elsewhere never makes a domain match ambiguous.
    assert m["match_status"].tolist() == ["auto", "ambiguous", "auto"]
    assert m["match_domain"].iloc[2] == "acme.fr"
    assert m["match_domain"].iloc[0] == "acme.de"
    assert "another suffix" in m["match_reason"].iloc[1]


# -- bad input ----------------------------------------------------------------------------------


def test_bad_columns_and_missing_ids_are_named_before_any_work() -> None:
    crm = pd.DataFrame({"company": ["Acme"], "externalId": [None]})
    with pytest.raises(ValidationError, match="website") as err:
        recocora.match_accounts(crm, POOL, name="company", domain="website")
    assert "website" in err.value.failure_cases["column"].tolist()
    with pytest.raises(ValidationError, match="external id"):
        recocora.match_accounts(crm, POOL, name="company")
    with pytest.raises(ValueError, match="name=, domain= or email="):
        recocora.match_accounts(crm.assign(externalId="x"), POOL)
    with pytest.raises(ValueError, match="'domain' column"):
        recocora.match_accounts(crm.assign(externalId="x"), POOL[["name"]], name="company")


# -- decisions ----------------------------------------------------------------------------------


def _small() -> pd.DataFrame:
    return pd.DataFrame(
        {"company": ["Acme Tools", "Acme Foods", "Borealis", "Zeta Labs"],
         "website": ["acmetools.com", None, "borealis.nl", None],
         "externalId": ["c1", "c2", "c3", "c4"]},
        index=["r1", "r2", "r3", "r4"],
    )


def test_decisions_are_saved_and_reapplied_on_a_rerun(tmp_path: Path) -> None:
    path = str(tmp_path / "decisions.csv")
    crm = _small()
    m = crm.recotap.match(POOL, name="company", domain="website", decisions=path)
    assert m.loc["r2", "match_status"] == "review"
    assert m.loc["r4", "match_status"] == "review"
    review = m.recotap.review()
    review.accept("r2")
    review.no_match("r4")
    review.reject("r1")
    again = crm.recotap.match(POOL, name="company", domain="website", decisions=path)
    assert again.loc["r2", "match_decision"] == "accepted"
    assert again.loc["r2", "match_domain"] == "acmefoods.com"
    assert again.loc["r4", "match_decision"] == "no_match"
    # The rejected account is no longer offered to r1, and r1 is no longer auto.
    assert "acmetools.com" not in set(
        again.attrs["candidates"].query("row == 'r1'")["domain"]
    )
    assert again.loc["r1", "match_status"] != "auto"
    assert again.recotap.accepted().to_dict("index") == {
        "r2": {"domain": "acmefoods.com", "externalId": "c2"},
        "r3": {"domain": "borealis.nl", "externalId": "c3"},
    }


def test_a_matches_csv_edited_in_a_spreadsheet_round_trips(tmp_path: Path) -> None:
    m = _small().recotap.match(POOL, name="company", domain="website")
    path = tmp_path / "matches.csv"
    m.to_csv(path)
    edited = pd.read_csv(path, index_col=0)
    edited["match_decision"] = edited["match_decision"].astype(object)
    edited.loc["r2", "match_decision"] = "Yes"
    edited.loc["r3", "match_decision"] = "no match"
    assert edited.recotap.accepted().to_dict("index") == {
        "r1": {"domain": "acmetools.com", "externalId": "c1"},
        "r2": {"domain": "acmefoods.com", "externalId": "c2"},
    }
    # The edited CSV is also a decisions file for the next run.
    edited.to_csv(path)
    again = _small().recotap.match(POOL, name="company", domain="website", decisions=str(path))
    assert again.loc["r2", "match_decision"] == "accepted"
    assert again.loc["r3", "match_decision"] == "no_match"
    edited.loc["r4", "match_decision"] = "perhaps"
    with pytest.raises(ValidationError, match="not a decision"):
        edited.recotap.accepted()


def test_accepted_refuses_two_ids_on_one_domain() -> None:
    m = _small().recotap.match(POOL, name="company", domain="website")
    m.loc["r2", ["match_domain", "match_decision"]] = ["acmetools.com", "accepted"]
    with pytest.raises(ValidationError, match="one row per account") as err:
        m.recotap.accepted()
    assert set(err.value.failure_cases["index"]) == {"r1", "r2"}
    assert len(m.recotap.accepted(auto=False)) == 1
