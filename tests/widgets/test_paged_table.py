"""The filterable, paged table: every filtered row on exactly one page, cells escaped."""

from __future__ import annotations

import re

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recocora.widgets import PagedTable
from recocora.widgets._results import ALL

TAG = re.compile(r"</?[a-z]+(\s[^<>]*)?>")
words = st.text(alphabet="abcAB <>&-", max_size=6)


@settings(deadline=None)  # no timing: the machine may be busy
@given(
    st.lists(st.tuples(st.sampled_from(["bucket", "client", "tags"]), words), max_size=60),
    st.integers(min_value=1, max_value=9),
    st.sampled_from([ALL, "bucket", "client"]),
    words,
)
def test_pages_partition_the_filtered_rows(
    rows: list[tuple[str, str]], page_size: int, facet: str, text: str
) -> None:
    frame = pd.DataFrame(rows, columns=["field", "to"], dtype=object)
    table = PagedTable(frame, facet="field", page_size=page_size)
    if facet in table.facet_filter.options:
        table.facet_filter.value = facet
    table.text_filter.value = text
    chosen = table.facet_filter.value
    needle = text.strip().lower()
    expected = [
        (f, t) for f, t in rows
        if (chosen == ALL or f == chosen) and (not needle or needle in f"{f}\x1f{t}".lower())
    ]
    seen: list[tuple[str, str]] = []
    for page in range(table.n_pages):
        table.go(page)
        assert len(table.page_frame) <= page_size
        assert table.prev_button.disabled == (page == 0)
        assert table.next_button.disabled == (page == table.n_pages - 1)
        seen += [tuple(r) for r in table.page_frame[["field", "to"]].to_numpy().tolist()]
        body = table.table.value.split("</style>", 1)[-1]
        # With every tag taken out, no bracket may be left: user text is always escaped.
        assert not set("<>") & set(TAG.sub("", body))
    assert seen == expected


def test_going_past_either_end_stays_on_the_last_page() -> None:
    table = PagedTable(pd.DataFrame({"x": range(25)}), page_size=10)
    table.go(99)
    assert table.page == 2 and table.page_frame["x"].tolist() == list(range(20, 25))
    assert "rows 21-25 of 25" in table.page_label.value
    table.go(-5)
    assert table.page == 0
    assert table.facet_filter.layout.display == "none"  # no facet column asked for


def test_static_html_shows_the_first_page_and_how_many_more() -> None:
    table = PagedTable(pd.DataFrame({"x": ["<script>", *map(str, range(30))]}), page_size=5)
    page = table.static_html()
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert "and 26 more rows" in page
    assert "Nothing" in PagedTable(pd.DataFrame({"x": []}), empty="Nothing here").static_html()
