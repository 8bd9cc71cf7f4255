"""``df.cora.preview()`` against the sandbox: preview, confirm, apply, errors, static views."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from recocora import CoraClient
from recocora._display import ResultFrame
from recocora.sandbox._faults import FaultConfig
from recocora.widgets import CoraPreview

from .conftest import accounts, bulk_posts, widget_text

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


def messy() -> pd.DataFrame:
    frame = accounts(4)
    frame.loc["r2", "phoneNumber"] = "555"  # not E.164: invalid
    return frame


def test_invalid_rows_block_apply_by_default_and_nothing_is_sent(
    sb: Sandbox, cora: CoraClient
) -> None:
    w = messy().cora.preview(client=cora)
    assert isinstance(w, CoraPreview)
    assert w.state == "blocked"
    assert w.apply_button.disabled
    assert w.failure_cases["row"].tolist() == ["r2"]
    assert w.failure_cases["column"].tolist() == ["phoneNumber"]
    text = widget_text(w)
    assert "on_invalid='skip'" in text
    assert "r2" in w.problems.table.value
    w.apply_button.click()
    assert w.state == "blocked"
    assert not bulk_posts(sb)
    assert sb.cora_accounts() == []


def test_skip_previews_without_a_bulk_request_then_applies(
    sb: Sandbox, cora: CoraClient
) -> None:
    w = messy().cora.preview(client=cora, on_invalid="skip")
    assert w.state == "ready"
    assert not bulk_posts(sb), "the preview must not spend a bulk slot"
    assert sb.cora_accounts() == []
    assert w.overwrites == 0
    assert "3 created" in w.counts_html.value
    assert "0 updated" in w.counts_html.value
    assert "1 invalid" in w.counts_html.value
    assert w.failure_cases["row"].tolist() == ["r2"]
    assert "1 row would not be written" in w.validation_html.value
    assert "1 request of up to 500 rows" in w.eta_html.value

    w.apply_button.click()  # nothing would be overwritten: no confirmation step
    res = w.wait(timeout=30)
    assert w.state == "done"
    assert isinstance(res, ResultFrame)
    assert res is w.result
    assert res["cora_status"].to_dict() == {
        "r0": "created", "r1": "created", "r2": "invalid", "r3": "created",
    }
    assert len(bulk_posts(sb)) == 1
    assert sorted(a["externalId"] for a in sb.cora_accounts()) == [
        "acct-00000", "acct-00001", "acct-00003",
    ]
    assert (w.progress.value, w.progress.max) == (3, 3)
    assert "3 created" in w.progress_html.value
    assert "3 created" in w.result_html.value
    assert w.apply_button.disabled and w.apply_button.description == "Applied"


def test_updates_need_a_second_confirmation_and_cancel_sends_nothing(
    sb: Sandbox, cora: CoraClient
) -> None:
    accounts(3).cora.upsert(client=cora, progress=False)
    posts_before = len(bulk_posts(sb))
    frame = accounts(4).assign(bucket=["30-60", "60-90", "30-60", "90+"])
    frame.loc["r1", "bucket"] = None  # missing cell: left out, so r1 stays unchanged
    w = frame.cora.preview(client=cora)
    assert w.overwrites == 2
    assert "1 created" in w.counts_html.value and "2 updated" in w.counts_html.value
    assert "1 unchanged" in w.counts_html.value
    assert w.changes.frame[["externalId", "field", "to"]].values.tolist() == [
        ["acct-00000", "bucket", "30-60"], ["acct-00002", "bucket", "30-60"],
    ]

    w.apply_button.click()
    w.wait(timeout=30)  # Apply reads the accounts again first
    assert w.state == "confirming"
    assert w.stale_rows == 0
    assert w.confirm_box.layout.display != "none"
    assert w.apply_button.disabled
    assert not w.confirm_button.disabled
    assert "2 existing accounts would be updated" in w.confirm_html.value
    w.cancel_button.click()
    assert w.state == "ready"
    assert w.confirm_box.layout.display == "none"
    assert not w.apply_button.disabled
    assert len(bulk_posts(sb)) == posts_before

    w.apply_button.click()
    w.wait(timeout=30)
    w.confirm_button.click()
    res = w.wait(timeout=30)
    assert w.state == "done"
    assert res is not None
    assert res["cora_status"].value_counts().to_dict() == {
        "updated": 2, "unchanged": 1, "created": 1,
    }
    stored = {a["externalId"]: a.get("bucket") for a in sb.cora_accounts()}
    assert stored == {"acct-00000": "30-60", "acct-00001": None, "acct-00002": "30-60",
                      "acct-00003": "90+"}


def test_a_dry_run_applies_without_confirmation(sb: Sandbox, cora: CoraClient) -> None:
    accounts(2).cora.upsert(client=cora, progress=False)
    w = accounts(2, bucket="30-60").cora.preview(client=cora, dry_run=True)
    assert w.overwrites == 2
    assert "The dry run sends" in w.eta_html.value
    w.apply_button.click()
    res = w.wait(timeout=30)
    assert res is not None and res.attrs["dry_run"] is True
    assert res["cora_status"].tolist() == ["updated", "updated"]
    assert all(a.get("bucket") is None for a in sb.cora_accounts())


def test_buttons_are_disabled_while_a_run_is_in_progress(
    sb: Sandbox, cora_for: Callable[..., CoraClient]
) -> None:
    gate = threading.Event()
    started = threading.Event()

    class Gated(CoraClient):
        def bulk_upsert_raw(self, body: bytes) -> dict[str, Any]:
            started.set()
            gate.wait(30)
            return super().bulk_upsert_raw(body)

    accounts(1).cora.upsert(client=cora_for(), progress=False)
    w = accounts(2, bucket="x").cora.preview(client=cora_for(Gated))
    w.apply_button.click()
    w.wait(timeout=30)
    w.confirm_button.click()
    assert started.wait(30)
    assert w.state == "running"
    assert w.apply_button.disabled and w.confirm_button.disabled and w.cancel_button.disabled
    w.apply_button.click()
    w.confirm_button.click()
    gate.set()
    w.wait(timeout=30)
    assert w.state == "done"
    assert len(bulk_posts(sb)) == 2  # the setup's and the one run's


def test_a_key_refused_after_the_preview_stops_apply_before_any_write(
    sb: Sandbox, cora: CoraClient
) -> None:
    w = accounts(3).cora.preview(client=cora)
    assert w.state == "ready"
    # The key's secret changes after the preview: Apply's fresh read is refused.
    key_id = sb.cora_key.split(".", 1)[0]
    sb.app.cora.add_key(f"{key_id}.rotated-secret", sb.cora_org)
    w.apply_button.click()
    w.wait(timeout=30)
    assert w.state == "failed"
    assert type(w.error).__name__ == "AuthError"
    shown = html.unescape(w.message_html.value)
    assert "Apply stopped before writing anything" in shown
    assert "AuthError" in shown and "INVALID_API_KEY" in shown
    assert not bulk_posts(sb)
    assert w.result is None
    assert "nothing has been written yet" in w.title_html.value
    assert not w.apply_button.disabled  # the user may retry
    secret = sb.cora_key.split(".", 1)[1]
    everything = widget_text(w) + repr(w) + w._repr_html_()
    assert secret not in everything
    assert "rotated-secret" not in everything


def test_a_run_stopped_midway_keeps_acknowledged_rows_and_can_be_retried(
    sb: Sandbox, cora: CoraClient
) -> None:
    cora.MAX_ROWS = 2  # type: ignore[misc]
    w = accounts(4).cora.preview(client=cora)
    sb.set_faults(FaultConfig(p_500=1.0, scope="writes", start_after=1))
    w.apply_button.click()
    w.wait(timeout=60)
    assert w.state == "failed"
    assert type(w.error).__name__ == "ServerError"
    assert w.result is not None
    assert w.result["cora_status"].value_counts().to_dict() == {"created": 2, "not_sent": 2}
    assert "2 created, 2 not_sent" in w.message_html.value
    assert (w.progress.value, w.progress.max) == (2, 4)

    assert "The run stopped with an error: 2 rows written to Cora (2 created)" in (
        w.title_html.value
    )

    sb.set_faults(FaultConfig())
    w.apply_button.click()
    w.wait(timeout=30)
    # The first run's two rows are stored now: the re-check says so before anything is sent.
    assert w.state == "confirming" and w.stale_rows == 2
    assert "Now: 2 created, 2 unchanged" in w.confirm_html.value
    w.confirm_button.click()
    res = w.wait(timeout=30)
    assert w.state == "done" and w.error is None
    assert res is not None
    assert res["cora_status"].value_counts().to_dict() == {"unchanged": 2, "created": 2}


def test_a_preview_error_blocks_apply_and_says_why(sb: Sandbox, cora: CoraClient) -> None:
    key_id = sb.cora_key.split(".", 1)[0]
    sb.app.cora.add_key(f"{key_id}.rotated-secret", sb.cora_org)
    w = accounts(2).cora.preview(client=cora)
    assert w.state == "blocked"
    assert w.apply_button.disabled
    assert "AuthError" in w.message_html.value
    assert "AuthError" in repr(w)


def test_the_changes_table_filters_by_field_and_text_and_pages(
    sb: Sandbox, cora: CoraClient
) -> None:
    accounts(30).cora.upsert(client=cora, progress=False)
    frame = accounts(30).assign(bucket="B", client=[f"client-{i}" for i in range(30)])
    w = frame.cora.preview(client=cora)
    table = w.changes
    assert len(table.frame) == 60
    assert table.n_pages == 4  # 15 per page
    assert "rows 1-15 of 60" in table.page_label.value
    assert table.prev_button.disabled
    table.next_button.click()
    assert table.page == 1 and "rows 16-30 of 60" in table.page_label.value
    table.facet_filter.value = "client"
    assert table.page == 0
    assert set(table.rows["field"]) == {"client"} and len(table.rows) == 30
    table.text_filter.value = "CLIENT-2"
    assert sorted(table.rows["to"]) == ["client-2"] + [f"client-{i}" for i in range(20, 30)]
    assert "of 60" in table.page_label.value
    table.facet_filter.value = "bucket"
    assert table.rows.empty
    assert "Nothing would change." in table.table.value


def test_client_none_builds_one_from_the_environment(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in sb.env().items():
        monkeypatch.setenv(name, value)
    w = accounts(1).cora.preview()
    assert w.state == "ready"
    assert isinstance(w.client, CoraClient)
    assert "1 created" in w.counts_html.value
    # The client's default spacing: one bulk request per 20 seconds.
    assert "1 request of up to 500 rows, one per 20 s: ~20 s" in w.eta_html.value
    w.close()


def test_options_shape_the_preview_and_reach_the_real_call(
    sb: Sandbox, cora: CoraClient
) -> None:
    frame = accounts(2).rename(columns={"externalId": "File #", "bucket": "Bucket"})
    frame["Bucket"] = "30-60"
    w = frame.cora.preview(client=cora, columns={"File #": "externalId", "Bucket": "bucket"},
                           mode="create", progress=False)
    assert "2 created" in w.counts_html.value
    w.apply_button.click()
    res = w.wait(timeout=30)
    assert res is not None and res["cora_status"].tolist() == ["created", "created"]
    assert {a["externalId"]: a["bucket"] for a in sb.cora_accounts()} == {
        "acct-00000": "30-60", "acct-00001": "30-60",
    }


def test_a_misspelt_option_fails_at_once(cora: CoraClient) -> None:
    with pytest.raises(TypeError):
        accounts(1).cora.preview(client=cora, on_invalid_rows="skip")


def test_outside_a_widget_front_end_it_shows_html_and_text(
    sb: Sandbox, cora: CoraClient
) -> None:
    w = messy().cora.preview(client=cora, on_invalid="skip")
    bundle = w._repr_mimebundle_()
    assert set(bundle) >= {"text/plain", "text/html",
                           "application/vnd.jupyter.widget-view+json"}
    text = bundle["text/plain"]
    assert "Cora upsert preview: 4 rows" in text
    assert "would: 3 created, 1 invalid" in text
    page = bundle["text/html"]
    assert "3 created" in page and "phoneNumber" in page and "Static view" in page
    w.apply_button.click()
    w.wait(timeout=30)
    assert "result: Cora upsert: 3 created, 1 invalid" in repr(w)
    assert "3 created" in w._repr_html_()
    assert sb.cora_key not in text + page
