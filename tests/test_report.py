"""Result frames in words: counts by status, summaries, the rows to look at."""

from __future__ import annotations

import doctest

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

import recocora._report as report
from recocora._compat import STR_DTYPE
from recocora._report import (
    CORA_STATUSES,
    RECOTAP_STATUSES,
    changes_table,
    cora_summary,
    count_lines,
    has_problems,
    recotap_summary,
    status_counts,
    summary_text,
)


def test_titles_follow_the_run() -> None:
    frame = pd.DataFrame({"cora_status": ["created", "invalid"]})
    frame.attrs.update(requests=2, duration_s=1.25)
    assert summary_text(frame) == "Cora upsert: 1 created, 1 invalid (2 rows, 2 requests, 1.2 s)"
    frame.attrs["dry_run"] = True
    assert summary_text(frame).startswith("Cora dry run:")
    frame.attrs["preview"] = "local"
    assert summary_text(frame).startswith("Cora preview (local):")
    rtp = pd.DataFrame({"recotap_status": ["mapped", "superseded", "mapped"]})
    assert summary_text(rtp) == "Recotap map_ids: 2 mapped, 1 superseded (3 rows)"


@given(st.booleans().flatmap(
    lambda recotap: st.tuples(
        st.just(recotap),
        st.lists(st.sampled_from(RECOTAP_STATUSES if recotap else CORA_STATUSES), max_size=40),
    )
))
def test_counts_cover_every_row_in_reading_order(case: tuple[bool, list[str]]) -> None:
    recotap, values = case
    pool = RECOTAP_STATUSES if recotap else CORA_STATUSES
    column = "recotap_status" if recotap else "cora_status"
    counts = status_counts(pd.DataFrame({column: pd.Series(values, dtype=STR_DTYPE)}))
    assert sum(counts.values()) == len(values)
    assert list(counts) == [s for s in pool if s in set(values)]
    assert has_problems(pd.DataFrame({column: values})) == bool(
        {"failed", "invalid", "not_sent"} & set(values)
    )
    lines = count_lines(counts)
    assert len(lines) == max(1, len(counts))
    assert len({len(line) for line in lines}) == 1  # the numbers line up


def test_unknown_statuses_come_last_and_a_frame_without_status_has_none() -> None:
    frame = pd.DataFrame({"cora_status": ["zzz", "created", "aaa"]})
    assert list(status_counts(frame)) == ["created", "aaa", "zzz"]
    assert status_counts(pd.DataFrame({"x": [1]})) == {}
    assert count_lines({}) == ["  (no rows)"]


def test_the_estimate_asks_the_clients_rows_per_request() -> None:
    res = pd.DataFrame({"cora_status": ["created"] * 7 + ["invalid"]})
    res.attrs.update(preview="local", requests=1)
    for per_request, requests in ((500, 1), (3, 3), (7, 1), (1, 7)):
        text = "\n".join(cora_summary(res, "a.csv", interval=20, rows_per_request=per_request))
        if requests == 1:
            assert "needs 1 bulk request: no wait" in text
        else:
            assert f"needs {requests} bulk requests, one every 20 s" in text


def test_summaries_list_the_rows_to_look_at_and_the_changes() -> None:
    res = pd.DataFrame(
        {
            "cora_status": ["updated", "failed"],
            "cora_external_id": ["a1", "a2"],
            "cora_code": [None, "INVALID_FIELD_VALUE"],
            "cora_message": [None, "bucket is not one of the allowed values"],
            "cora_changes": [[{"field": "bucket", "from": "current", "to": "90+"}], None],
        },
        index=[10, 11],
    )
    text = "\n".join(cora_summary(res, "a.csv", interval=20, rows_per_request=500))
    assert "row 11  a2  failed  INVALID_FIELD_VALUE: bucket is not one" in text
    assert "row 10  a1  bucket: 'current' → '90+'" in text
    assert changes_table(res)["index"].tolist() == [10]
    rtp = pd.DataFrame({"recotap_status": ["already_mapped", "mapped"],
                        "recotap_domain": ["acme.com", "b.io"]})
    lines = recotap_summary(rtp, "crm.csv")
    assert lines[-1].startswith("1 account already held another id")


def test_docstring_examples() -> None:
    assert doctest.testmod(report).failed == 0
