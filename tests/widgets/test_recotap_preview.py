"""``df.recotap.preview()`` against the sandbox: what would be mapped, the overwrite
confirmation, the run with live counts, and errors shown in the widget."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from recocora import RecotapClient
from recocora._display import ResultFrame
from recocora.sandbox._faults import FaultConfig
from recocora.widgets import RecotapPreview

from .conftest import widget_text

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


def crm(sb: Sandbox) -> pd.DataFrame:
    """Accounts a (no id), b (holds old-b), c (holds crm-c), d (no id); a CRM frame that maps
    a, tries b, re-sends c, names an unknown domain, repeats d and has one invalid domain."""
    sb.add_recotap_account(domain="a.com", name="A")
    sb.add_recotap_account(domain="b.com", name="B", external_id="old-b")
    sb.add_recotap_account(domain="c.com", name="C", external_id="crm-c")
    sb.add_recotap_account(domain="d.com", name="D")
    return pd.DataFrame(
        {
            "domain": ["https://www.a.com/", "b.com", "c.com", "nowhere.com", "d.com",
                       "localhost", "D.com"],
            "externalId": ["crm-a", "crm-b", "crm-c", "crm-x", "crm-d1", "crm-l", "crm-d2"],
        },
        index=["ra", "rb", "rc", "rx", "rd1", "rl", "rd2"],
    )


def stored(sb: Sandbox) -> dict[str, str | None]:
    return {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}


def mapping_writes(sb: Sandbox) -> list[object]:
    return [r for r in sb.requests if r.method == "PATCH"]


def test_preview_counts_every_outcome_without_writing(sb: Sandbox, rtp: RecotapClient) -> None:
    w = crm(sb).recotap.preview(client=rtp, on_invalid="skip")
    assert isinstance(w, RecotapPreview)
    assert w.state == "ready"
    assert not mapping_writes(sb)
    counts = w.counts_html.value
    for text in ("2 mapped", "1 not_found", "1 already_mapped", "1 superseded", "1 unchanged",
                 "1 invalid"):
        assert text in counts, text
    assert w.overwrites == 0
    assert w.failure_cases["row"].tolist() == ["rl"]
    assert "1 request of up to 100 mappings" in w.eta_html.value

    table = w.changes
    assert list(table.frame.columns) == ["index", "status", "domain", "id to write",
                                         "existing id"]
    table.facet_filter.value = "already_mapped"
    assert table.rows[["domain", "id to write", "existing id"]].values.tolist() == [
        ["b.com", "crm-b", "old-b"]
    ]
    table.facet_filter.value = "(all)"
    table.text_filter.value = "D.COM"
    assert table.rows["index"].tolist() == ["rd1", "rd2"]


def test_apply_maps_with_live_counts_and_never_overwrites(
    sb: Sandbox, rtp: RecotapClient
) -> None:
    w = crm(sb).recotap.preview(client=rtp, on_invalid="skip")
    w.apply_button.click()  # overwrite=False: nothing can be replaced, so no confirmation
    res = w.wait(timeout=30)
    assert w.state == "done"
    assert isinstance(res, ResultFrame)
    assert res["recotap_status"].to_dict() == {
        "ra": "mapped", "rb": "already_mapped", "rc": "unchanged", "rx": "not_found",
        "rd1": "superseded", "rl": "invalid", "rd2": "mapped",
    }
    assert stored(sb) == {"a.com": "crm-a", "b.com": "old-b", "c.com": "crm-c",
                          "d.com": "crm-d2"}
    assert (w.progress.value, w.progress.max) == (3, 3)
    assert "2 mapped" in w.progress_html.value and "1 not_found" in w.progress_html.value
    assert "Recotap map_ids" in w.result_html.value


def test_overwrite_asks_for_confirmation_then_replaces(sb: Sandbox, rtp: RecotapClient) -> None:
    w = crm(sb).recotap.preview(client=rtp, on_invalid="skip", overwrite=True)
    assert w.overwrites == 1
    assert "4 mapped" in w.counts_html.value  # c.com is written again, with the same id
    w.apply_button.click()
    w.wait(timeout=30)  # Apply reads the accounts again first
    assert w.state == "confirming"
    assert "1 account already holds a different id" in widget_text(w)
    assert not mapping_writes(sb)
    w.confirm_button.click()
    res = w.wait(timeout=30)
    assert w.state == "done"
    assert res is not None and res.loc["rb", "recotap_status"] == "mapped"
    assert stored(sb)["b.com"] == "crm-b"


def test_invalid_rows_block_unless_skipped(sb: Sandbox, rtp: RecotapClient) -> None:
    w = crm(sb).recotap.preview(client=rtp)
    assert w.state == "blocked"
    assert w.apply_button.disabled
    assert w.failure_cases[["row", "column"]].values.tolist() == [["rl", "domain"]]
    assert "on_invalid='skip'" in widget_text(w)
    assert not mapping_writes(sb)


def test_a_failed_run_shows_the_error_and_partial_counts(
    sb: Sandbox, rtp: RecotapClient
) -> None:
    w = crm(sb).recotap.preview(client=rtp, on_invalid="skip")
    sb.set_faults(FaultConfig(p_500=1.0, scope="writes"))
    w.apply_button.click()
    w.wait(timeout=60)
    assert w.state == "failed"
    assert type(w.error).__name__ == "ServerError"
    assert w.result is not None
    assert w.result.loc["ra", "recotap_status"] == "not_sent"
    message = widget_text(w)
    assert "ServerError" in message and "not_sent" in message
    assert sb.recotap_key not in message + repr(w) + w._repr_html_()
    assert not w.apply_button.disabled

    sb.set_faults(FaultConfig())
    w.apply_button.click()
    res = w.wait(timeout=30)
    assert w.state == "done"
    assert res is not None and res.loc["ra", "recotap_status"] == "mapped"


def test_options_reach_the_real_call(sb: Sandbox, rtp: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    frame = pd.DataFrame({"Website": ["acme.com"], "CRM id": [1234.0]})
    w = frame.recotap.preview(client=rtp, domain="Website", external_id="CRM id", verify=True)
    assert "1 mapped" in w.counts_html.value
    w.apply_button.click()
    res = w.wait(timeout=30)
    assert res is not None and res.attrs["verified"] is True
    assert stored(sb) == {"acme.com": "1234"}
