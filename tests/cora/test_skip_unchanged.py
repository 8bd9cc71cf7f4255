"""``skip_unchanged=True``: read the accounts first, spend bulk slots only on rows that change,
and pack those rows into full requests."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recocora import CoraClient
from recocora.sandbox import Sandbox

from .conftest import bulk_posts, new_accounts
from .test_diff import gets


def _stored(sb: Sandbox, client: CoraClient, df: pd.DataFrame) -> None:
    """The tenant already holds every row of ``df`` (as a first run left it)."""
    df.cora.upsert(client=client, progress=False)
    sb.app.log.clear()


def test_only_rows_that_change_are_sent_in_full_requests(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    client = client_for()
    client.MAX_ROWS = 5  # type: ignore[misc]
    df = new_accounts(200)
    _stored(sb, client, df)
    changed = df.index[::33]  # 7 rows, scattered over many chunks of 5
    df.loc[changed, "metadata.filenumber"] = "F-new"
    extra = new_accounts(2, start=900)  # two rows Cora would create
    frame = pd.concat([df, extra])

    res = frame.cora.upsert(client=client, progress=False, skip_unchanged=True)

    assert res.index.equals(frame.index)
    status = res["cora_status"]
    assert set(status[changed]) == {"updated"}
    assert set(status[extra.index]) == {"created"}
    rest = status.drop(changed.append(extra.index))
    assert set(rest) == {"skipped"}
    assert rest.index.size == 193
    assert res.loc[rest.index, "cora_message"].str.contains("already holds these values").all()
    assert res.loc[rest.index, "cora_previous_status"].eq("unchanged").all()
    assert res.loc[rest.index, "cora_account_id"].notna().all()
    # 9 rows to send, packed into full requests of 5: 2 bulk requests, not one per chunk hit.
    assert res.attrs["rows_sent"] == 9
    assert len(bulk_posts(sb)) == math.ceil(9 / 5) == res.attrs["requests"]
    assert res.attrs["read_requests"] == len(gets(sb)) > 0
    assert {a["metadata"]["filenumber"] for a in sb.cora_accounts()
            if a["externalId"] in set(df.loc[changed, "externalId"])} == {"F-new"}


def test_a_row_that_fails_is_still_sent_and_reported(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    client = client_for()
    df = new_accounts(4)
    _stored(sb, client, df)
    lacking = pd.DataFrame({"externalId": ["acct-new"], "bucket": ["b1"]}, index=["x"])
    bad = pd.DataFrame({"externalId": ["acct-bad"], "phoneNumber": ["call me"]}, index=["y"])
    frame = pd.concat([df, lacking, bad])
    res = frame.cora.upsert(client=client, progress=False, skip_unchanged=True,
                            on_invalid="skip")
    assert res.loc["x", "cora_status"] == "failed"  # Cora's answer: a new account lacks fields
    assert res.loc["x", "cora_code"] == "MISSING_REQUIRED_FIELD"
    assert res.loc["y", "cora_status"] == "invalid"
    assert set(res.loc[df.index, "cora_status"]) == {"skipped"}
    assert res.attrs["rows_sent"] == 1


def test_after_a_journal_the_reads_cover_only_what_it_did_not_skip(
    sb: Sandbox, client_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = client_for()
    journal = tmp_path / "j.db"
    df = new_accounts(30)
    df.cora.upsert(client=client, progress=False, journal=journal)
    # Another machine writes five of the accounts to what this frame now says.
    changed = df.index[:5]
    df.loc[changed, "metadata.filenumber"] = "F-elsewhere"
    df.iloc[:5].cora.upsert(client=client, progress=False)
    sb.app.log.clear()
    res = df.cora.upsert(client=client, progress=False, journal=journal, skip_unchanged=True)
    # The journal skips 25 rows unread; the 5 it has not seen in this form are read, and
    # found to hold these values already: nothing is sent.
    assert set(res["cora_status"]) == {"skipped"}
    assert res.attrs["rows_sent"] == 0 and not bulk_posts(sb)
    assert res.attrs["read_requests"] == len(gets(sb)) == 1


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changed=st.sets(st.integers(0, 39), max_size=40), size=st.integers(1, 12))
def test_exactly_the_changed_rows_are_sent(
    sb: Sandbox, client_for: Callable[..., CoraClient], changed: set[int], size: int
) -> None:
    sb.reset()
    client = client_for()
    client.MAX_ROWS = size  # type: ignore[misc]
    df = new_accounts(40)
    _stored(sb, client, df)
    picked = df.index[sorted(changed)]
    df.loc[picked, "metadata.filenumber"] = "F-changed"
    res = df.cora.upsert(client=client, progress=False, skip_unchanged=True)
    want = np.where(df.index.isin(picked), "updated", "skipped")
    assert res["cora_status"].tolist() == want.tolist()
    assert res.attrs["rows_sent"] == len(picked)
    assert len(bulk_posts(sb)) == math.ceil(len(picked) / size)
