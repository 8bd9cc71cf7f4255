"""The match review widget: counts, filters, pages, candidates, decisions, conflicts."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import recocora
from recocora.recotap._decisions import read_decisions
from recocora.widgets import MatchReview
from recocora.widgets._results import ALL

from .conftest import widget_text

ACCOUNTS = pd.DataFrame({
    "name": ["Acme Tools Inc", "Acme Foods Ltd", "Borealis BV", "Quill GmbH", "<b>Evil</b> SA",
             "Acme GmbH", "Acme SAS"],
    "domain": ["acmetools.com", "acmefoods.com", "borealis.nl", "quill.de", "evil.io",
               "acme.de", "acme.fr"],
})
CRM = pd.DataFrame(
    {
        "company": ["Acme Tools", "Acme Foods", "Borealis", "Quill", "Quill GmbH",
                    "<b>Evil</b>", "Acme", "Nobody"],
        "website": ["acmetools.com", None, "borealis.nl", "quill.de", "www.quill.de", None,
                    "acme.com", None],
        "externalId": [f"c{i}" for i in range(8)],
    },
    index=[f"r{i}" for i in range(8)],
)


def matches(tmp_path: Path | None = None) -> pd.DataFrame:
    decisions = None if tmp_path is None else str(tmp_path / "decisions.csv")
    return recocora.match_accounts(CRM, ACCOUNTS, name="company", domain="website",
                                   decisions=decisions)


def test_counts_candidates_and_reasons_are_shown_escaped_in_theme_colours() -> None:
    w = MatchReview(matches(), page_size=20)
    counts = widget_text(w.counts_html)
    for status in ("auto: 2", "review: 2", "ambiguous: 1", "conflict: 2", "none: 1"):
        assert status in counts
    text = widget_text(w)
    assert "Same brand 'acme' under another suffix" in text
    row = next(r for r in w.rows if r.label == "r5")
    assert "<b>Evil</b>" not in row.header.value and "&lt;b&gt;Evil" in row.header.value
    assert "evil.io" in row.table.value and "0.85" in row.table.value
    every_html = "".join(
        str(getattr(x, "value", "")) for x in [w.counts_html, *(c for r in w.rows
                                                                 for c in r.children)]
    )
    assert "var(--jp-" in every_html
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b", every_html)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([ALL, "auto", "review", "conflict", "none", "ambiguous"]),
       st.sampled_from([ALL, "exact_host", "name_exact", "brand_other_suffix"]),
       st.sampled_from(["", "acme", "QUILL", "c1", "zzz"]),
       st.integers(min_value=1, max_value=4))
def test_filters_and_pages_show_every_matching_row_once(
    status: str, tier: str, search: str, page_size: int
) -> None:
    m = matches()
    w = MatchReview(m, page_size=page_size)
    w.status_filter.value, w.tier_filter.value, w.search.value = status, tier, search
    expected = [
        label for label, r in m.iterrows()
        if (status == ALL or r["match_status"] == status)
        and (tier == ALL or r["match_tier"] == tier)
        and (not search or search.lower() in "\x1f".join(
            str(v).lower() for v in (label, r["match_domain"], r["match_name"],
                                     r["match_external_id"], r["match_reason"])))
    ]
    seen: list[str] = []
    for page in range(w.n_pages):
        w.go(page)
        assert len(w.rows) <= page_size
        seen += [r.label for r in w.rows]
    assert seen == expected


def test_accept_reject_and_no_match_are_written_and_saved(tmp_path: Path) -> None:
    m = matches(tmp_path)
    w = MatchReview(m)
    w.search.value = "r1"
    w.rows[0].accept_button.click()
    assert m.loc["r1", "match_decision"] == "accepted"
    w.search.value = "r0"
    w.rows[0].reject_button.click()
    w.search.value = "r7"
    w.rows[0].no_match_button.click()
    # Accept another candidate than the proposal: r6's second brand match.
    w.search.value = "r6"
    other = next(d for d in w.rows[0].choice.options if d != m.loc["r6", "match_domain"])
    w.rows[0].choice.value = other
    w.rows[0].accept_button.click()
    assert m.loc["r6", "match_domain"] == other
    saved = read_decisions(tmp_path / "decisions.csv").fillna("")
    assert saved.values.tolist() == [["c1", "accepted", "acmefoods.com"],
                                     ["c0", "rejected", "acmetools.com"],
                                     ["c7", "no_match", ""],
                                     ["c6", "accepted", other]]
    assert "accepted: 2" in widget_text(w.counts_html)


def test_conflicts_are_grouped_by_account_and_accepting_one_rejects_the_rest(
    tmp_path: Path,
) -> None:
    m = matches(tmp_path)
    w = MatchReview(m)
    w.view.value = "conflicts"
    assert list(w.conflict_groups) == ["quill.de"]
    assert [r.label for r in w.conflict_groups["quill.de"]] == ["r3", "r4"]
    w.conflict_groups["quill.de"][1].accept_button.click()
    assert m.loc[["r3", "r4"], "match_decision"].tolist() == ["rejected", "accepted"]
    assert m.recotap.accepted(auto=False).to_dict("index") == {
        "r4": {"domain": "quill.de", "externalId": "c4"}}


def test_accept_all_auto_takes_only_undecided_auto_rows(tmp_path: Path) -> None:
    m = matches(tmp_path)
    w = MatchReview(m)
    assert w.accept_auto_button.description == "Accept all auto (2)"
    w.search.value = "r0"
    w.rows[0].reject_button.click()
    assert w.accept_auto_button.description == "Accept all auto (1)"
    w.accept_auto_button.click()
    assert w.accept_auto_button.disabled
    assert m.recotap.accepted().to_dict("index") == {
        "r2": {"domain": "borealis.nl", "externalId": "c2"}}
    again = recocora.match_accounts(CRM, ACCOUNTS, name="company", domain="website",
                                    decisions=str(tmp_path / "decisions.csv"))
    assert again.loc["r2", "match_decision"] == "accepted"


def test_review_refuses_a_frame_that_is_not_matches() -> None:
    try:
        MatchReview(pd.DataFrame({"x": [1]}))
    except ValueError as err:
        assert "crm.recotap.match" in str(err)
    else:
        raise AssertionError("no error")
