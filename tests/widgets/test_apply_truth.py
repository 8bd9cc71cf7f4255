"""What Apply says must be true: it reads the accounts again before writing, refuses a closed
client at once, stops before any write when the server is gone, and its header says what a
run wrote. Problems read as words, in row order, with each row's own value; every colour is
the theme's."""

from __future__ import annotations

import doctest
import html
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from recocora import CoraClient, RecotapClient, _problem_names
from recocora._transport import RetryPolicy
from recocora.sandbox import Sandbox
from recocora.widgets import _apply

from .conftest import accounts, bulk_posts, widget_text

if TYPE_CHECKING:
    from recocora.widgets import Preview


def test_a_stale_preview_says_so_with_the_new_counts_before_anything_is_written(
    sb: Sandbox, cora: CoraClient
) -> None:
    w = accounts(3).cora.preview(client=cora)
    assert "3 created" in w.counts_html.value
    assert "nothing has been written yet" in w.title_html.value
    # The rows are written after the preview was shown (the notebook's next cell, say).
    accounts(2).cora.upsert(client=cora, progress=False)
    posts = len(bulk_posts(sb))

    w.apply_button.click()
    w.wait(timeout=30)
    assert w.state == "confirming"
    assert w.stale_rows == 2
    assert len(bulk_posts(sb)) == posts, "nothing may be written before the confirmation"
    confirm = html.unescape(w.confirm_html.value)
    assert "The preview is out of date: 2 rows changed since it was worked out." in confirm
    assert "Now: 1 created, 2 unchanged (the preview said 3 created)." in confirm
    assert "What would happen now" in w.counts_html.value
    assert "1 created" in w.counts_html.value and "2 unchanged" in w.counts_html.value
    assert "2 rows changed since the preview" in w.title_html.value
    assert w.confirm_button.description == "Confirm"  # nothing stored is overwritten

    w.confirm_button.click()
    res = w.wait(timeout=30)
    assert w.state == "done"
    assert res is not None and res["cora_status"].tolist() == ["unchanged", "unchanged",
                                                               "created"]
    header = html.unescape(w.title_html.value)
    assert "Applied: 1 row written to Cora (1 created); 2 unchanged." in header
    assert "nothing has been written" not in header
    assert (w.progress.value, w.progress.max) == (3, 3)


def test_an_up_to_date_preview_applies_at_once_and_the_header_says_what_was_written(
    sb: Sandbox, cora: CoraClient
) -> None:
    accounts(1).cora.upsert(client=cora, progress=False)
    frame = accounts(3)
    frame.loc["r2", "phoneNumber"] = "555"  # invalid: left out with on_invalid="skip"
    w = frame.cora.preview(client=cora, on_invalid="skip")
    w.apply_button.click()  # nothing changed and nothing is overwritten: no confirmation
    w.wait(timeout=30)
    assert w.state == "done" and w.stale_rows == 0
    header = html.unescape(w.title_html.value)
    assert "Applied: 1 row written to Cora (1 created); 1 unchanged, 1 invalid." in header


def test_a_dry_run_header_says_nothing_was_written(sb: Sandbox, cora: CoraClient) -> None:
    w = accounts(2).cora.preview(client=cora, dry_run=True)
    w.apply_button.click()
    w.wait(timeout=30)
    assert "Dry run done: nothing was written to Cora; 2 created." in html.unescape(
        w.title_html.value
    )
    assert sb.cora_accounts() == []


def test_a_closed_client_is_refused_at_once_and_nothing_is_sent(
    sb: Sandbox, cora_for: Callable[..., CoraClient]
) -> None:
    client = cora_for()
    w = accounts(2).cora.preview(client=client)
    client.close()
    assert client.closed
    before = len(sb.requests)
    w.apply_button.click()
    w.wait(timeout=30)
    assert w.state == "blocked"
    assert w.apply_button.disabled
    assert len(sb.requests) == before, "a closed client sends nothing"
    text = html.unescape(w.message_html.value)
    assert "The CoraClient this preview uses was closed" in text
    assert "nothing was sent" in text and "df.cora.preview(client=...)" in text
    assert "re-running is safe" not in widget_text(w)
    assert "closed" in repr(w)


def test_a_preview_of_a_closed_client_is_blocked_without_a_request(
    sb: Sandbox, rtp_client_for: Callable[..., RecotapClient]
) -> None:
    client = rtp_client_for()
    client.close()
    w = pd.DataFrame({"domain": ["a.com"], "externalId": ["x"]}).recotap.preview(client=client)
    assert w.state == "blocked" and w.apply_button.disabled
    assert not sb.requests
    assert "The RecotapClient this preview uses was closed" in html.unescape(
        w.message_html.value
    )


def test_a_stopped_sandbox_stops_apply_before_anything_is_written() -> None:
    own = Sandbox(seed="none", cora_window=0.0).start()
    client = CoraClient(own.cora_key, own.cora_base_url, min_interval=0.0,
                        retry=RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.05))
    try:
        w = accounts(2).cora.preview(client=client)
        assert w.state == "ready"
        own.close()  # nothing listens on its port any more
        w.apply_button.click()
        w.wait(timeout=60)
        assert w.state == "failed"
        assert type(w.error).__name__ in ("TransportError", "UnreachableError")
        text = html.unescape(w.message_html.value)
        assert ("Apply stopped before writing anything: the accounts' current "
                "state could not be read again.") in text
        assert w.result is None
        assert "nothing has been written yet" in w.title_html.value
        assert w.apply_button.description == "Apply" and not w.apply_button.disabled
    finally:
        client.close()
        own.close()


def _recotap_frame(sb: Sandbox) -> pd.DataFrame:
    sb.add_recotap_account(domain="a.com", name="A")
    sb.add_recotap_account(domain="b.com", name="B")
    return pd.DataFrame({"domain": ["a.com", "b.com", "nowhere.com"],
                         "externalId": ["crm-a", "crm-b", "crm-x"]}, index=["ra", "rb", "rx"])


def test_a_stale_recotap_preview_is_named_then_applied_truthfully(
    sb: Sandbox, rtp: RecotapClient
) -> None:
    frame = _recotap_frame(sb)
    w = frame.recotap.preview(client=rtp)
    assert "2 mapped" in w.counts_html.value
    frame.iloc[:1].recotap.map_ids(client=rtp, progress=False)

    w.apply_button.click()
    w.wait(timeout=30)
    assert w.state == "confirming" and w.stale_rows == 1
    confirm = html.unescape(w.confirm_html.value)
    assert "Now: 1 mapped, 1 unchanged, 1 not_found (the preview said 2 mapped, 1 not_found)" \
        in confirm
    w.confirm_button.click()
    w.wait(timeout=30)
    assert w.state == "done"
    assert "Applied: 1 row written to Recotap (1 mapped); 1 unchanged, 1 not_found." in (
        html.unescape(w.title_html.value)
    )


def test_problems_read_as_words_in_row_order_with_the_rows_own_values(
    sb: Sandbox, cora: CoraClient
) -> None:
    frame = accounts(4).rename(columns={"phoneNumber": "Phone"})
    frame.loc["r3", "Phone"] = "555-0100"  # not E.164: invalid here
    frame.loc["r0", "Phone"] = None  # a new account without a phone: Cora would refuse it
    w = frame.cora.preview(client=cora, on_invalid="skip", columns={"Phone": "phoneNumber"})
    cases = w.failure_cases
    assert cases["row"].tolist() == ["r0", "r3"]
    assert cases["column"].tolist() == ["Phone", "Phone"]
    assert cases["problem"].tolist() == ["missing what a new account needs",
                                         "phone number not in international form"]
    assert cases["value"].isna().tolist() == [True, False]
    assert cases.loc[1, "value"] == "555-0100"
    shown = widget_text(w)
    for code in ("e164", "MISSING_REQUIRED_FIELD", "required_column"):
        assert code not in shown, code
    assert "missing what a new account needs (1 row)" in shown
    assert "acct-00000" not in w.problems.table.value  # the row's own value, not its id


def test_whole_frame_problems_come_first_then_rows_in_order(cora: CoraClient) -> None:
    frame = accounts(3).assign(colour="red")  # not a Cora field: a whole-column problem
    frame.loc["r2", "phoneNumber"] = "1"
    frame.loc["r0", "phoneNumber"] = "2"
    w = frame.cora.preview(client=cora)
    assert w.state == "blocked"
    assert w.failure_cases["row"].tolist() == [None, "r0", "r2"]
    assert w.failure_cases["problem"].tolist()[0] == "unknown column"


_COLOUR = re.compile(r"(?<![-\w])color:\s*([^;'\"]+)")


def _colours(w: Preview) -> list[str]:
    parts = [widget_text(w), w._repr_html_()]
    return [m.group(1).strip() for text in parts for m in _COLOUR.finditer(text)]


def test_every_text_colour_is_the_themes_or_a_badges_own(sb: Sandbox, cora: CoraClient) -> None:
    accounts(1).cora.upsert(client=cora, progress=False)
    frame = accounts(3, bucket="B")
    frame.loc["r2", "phoneNumber"] = "555"
    w = frame.cora.preview(client=cora, on_invalid="skip")
    w.apply_button.click()
    w.wait(timeout=30)
    w.confirm_button.click()
    w.wait(timeout=30)
    assert w.state == "done"
    colours = _colours(w)
    assert colours
    # White sits only on a badge's own status colour; all other text takes the theme's.
    assert {c for c in colours if not c.startswith("var(--jp-")} <= {"#ffffff"}, colours
    everything = widget_text(w) + w._repr_html_()
    assert "monospace" not in everything


def test_the_sentences_doctests() -> None:
    for module in (_apply, _problem_names):
        assert doctest.testmod(module).failed == 0
