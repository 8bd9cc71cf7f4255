"""Result frames in notebooks: a coloured summary on top of pandas' own table."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recocora import CoraClient
from recocora._display import STATUS_COLOURS, ResultFrame, as_result, summary_html
from recocora._report import status_counts

from .conftest import accounts

CORA = ["created", "updated", "unchanged", "failed", "invalid", "skipped", "not_sent"]
RECOTAP = ["mapped", "unchanged", "not_found", "already_mapped", "superseded", "invalid",
           "failed", "skipped", "not_sent"]


def cora_result() -> pd.DataFrame:
    frame = pd.DataFrame(
        {"cora_status": ["created", "invalid", "created", "updated"],
         "cora_batch": pd.array([0, None, 0, 1], dtype="Int64")},
        index=["a", "b", "c", "d"],
    )
    frame.attrs.update(api="cora", dry_run=False, requests=2, duration_s=1.25)
    return frame


def test_text_keeps_pandas_table_and_adds_one_summary_line() -> None:
    plain = cora_result()
    res = as_result(plain)
    lines = repr(res).splitlines()
    assert "\n".join(lines[:-1]) == repr(plain)
    assert lines[-1] == "Cora upsert: 2 created, 1 updated, 1 invalid (4 rows, 2 requests, 1.2 s)"
    assert str(res) == repr(res)


def test_html_is_the_summary_then_pandas_own_table() -> None:
    plain = cora_result()
    page = as_result(plain)._repr_html_()
    assert page is not None
    table = plain._repr_html_()  # type: ignore[operator]
    assert page.endswith(table)
    summary = page[: -len(table)]
    assert summary == summary_html(plain)
    assert f"background:{STATUS_COLOURS['created']}" in summary
    assert f"background:{STATUS_COLOURS['invalid']}" in summary
    assert "2 created" in summary and "Cora upsert" in summary


def test_attrs_index_and_joins_are_kept() -> None:
    plain = cora_result()
    res = as_result(plain)
    assert res.attrs == plain.attrs
    assert res.attrs is not plain.attrs
    pd.testing.assert_frame_equal(pd.DataFrame(res), plain)
    assert isinstance(res.head(2), ResultFrame)
    assert res.head(2).attrs["requests"] == 2
    assert isinstance(res[["cora_status"]], ResultFrame)
    assert type(res["cora_status"]) is pd.Series
    df = pd.DataFrame({"x": [1, 2, 3, 4]}, index=["a", "b", "c", "d"])
    joined = df.join(res)
    assert type(joined) is pd.DataFrame
    pd.testing.assert_frame_equal(joined, df.join(plain))
    assert as_result(res) is res


def test_frames_without_a_status_column_show_as_pandas_does() -> None:
    res = as_result(pd.DataFrame({"x": [1, 2]}))
    assert repr(res) == repr(pd.DataFrame({"x": [1, 2]}))
    assert res._repr_html_() == pd.DataFrame({"x": [1, 2]})._repr_html_()  # type: ignore[operator]
    sliced = as_result(cora_result())[["cora_batch"]]
    assert "Cora" not in repr(sliced)


def test_unknown_statuses_are_escaped_and_listed_last() -> None:
    frame = pd.DataFrame({"cora_status": ["<b>odd</b>", "created"]})
    assert list(status_counts(frame)) == ["created", "<b>odd</b>"]
    page = summary_html(frame)
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page


@settings(deadline=None)  # no timing: the machine may be busy
@given(st.booleans().flatmap(
    lambda recotap: st.tuples(
        st.just(recotap), st.lists(st.sampled_from(RECOTAP if recotap else CORA), max_size=40)
    )
))
def test_counts_cover_every_row_in_reading_order(case: tuple[bool, list[str]]) -> None:
    recotap, values = case
    pool = RECOTAP if recotap else CORA
    column = "recotap_status" if recotap else "cora_status"
    res = as_result(pd.DataFrame({column: pd.Series(values, dtype=object)}))
    counts = status_counts(res)
    assert sum(counts.values()) == len(values)
    assert list(counts) == [s for s in pool if s in set(values)]
    line = repr(res).splitlines()[-1]
    for status, n in counts.items():
        assert f"{n:,} {status}" in line
    assert summary_html(res).count('class="recocora-badge"') == len(counts)


def test_a_real_upsert_result_displays_its_summary(cora: CoraClient) -> None:
    res = as_result(accounts(2).cora.upsert(client=cora, progress=False))
    assert repr(res).splitlines()[-1].startswith("Cora upsert: 2 created (2 rows, 1 request")
    assert res.cora.changes().empty
