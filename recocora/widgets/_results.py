"""A filterable, paged table widget and the HTML blocks the preview widgets are built from."""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as widgets
import pandas as pd

__all__ = ["ALL", "PagedTable", "frame_html", "message_html"]

#: The filter choice that keeps every row.
ALL = "(all)"

# Colours come from the front end's theme (JupyterLab's CSS variables), so the same HTML
# reads in light and dark themes; where a front end has no such variables the text keeps the
# page's own colour.
_TABLE_STYLE = (
    "<style>.recocora-table table{border-collapse:collapse;font-size:12px;line-height:1.4;"
    "color:var(--jp-content-font-color1,inherit)}"
    ".recocora-table th,.recocora-table td{border-bottom:1px solid "
    "var(--jp-border-color2,#d0d7de);padding:2px 8px;text-align:left !important;"
    "vertical-align:top;max-width:32em;overflow-wrap:anywhere;white-space:pre-wrap}</style>"
)

#: The edge of a message box of each kind (JupyterLab's theme colour, with a fallback).
_EDGES = {
    "info": "var(--jp-info-color1,#0969da)",
    "warning": "var(--jp-warn-color1,#bf8700)",
    "error": "var(--jp-error-color1,#cf222e)",
    "success": "var(--jp-success-color1,#1a7f37)",
}


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return ""
    return str(value)


def frame_html(frame: pd.DataFrame, *, index: bool = False) -> str:
    """A small frame as an HTML table; every cell is escaped, missing cells are blank.

    >>> "<td>a &lt;b&gt;</td>" in frame_html(pd.DataFrame({"x": ["a <b>"]}))
    True
    """
    shown = frame.map(_cell) if len(frame) else frame
    table = shown.to_html(index=index, escape=True, border=0, na_rep="", justify="left")
    return f'{_TABLE_STYLE}<div class="recocora-table">{table}</div>'


def message_html(text: str, *, kind: str = "info") -> str:
    """A boxed message (``kind``: ``info``, ``warning``, ``error``, ``success``), escaped, with
    line breaks kept.

    >>> "&lt;x&gt;" in message_html("<x>", kind="error")
    True
    """
    edge = _EDGES.get(kind, _EDGES["info"])
    return (
        f'<div class="recocora-{html.escape(kind)}" style="border-left:4px solid {edge};'
        "background:var(--jp-layout-color2,transparent);"
        "color:var(--jp-ui-font-color1,inherit);font-family:var(--jp-ui-font-family,inherit);"
        f'padding:6px 10px;margin:4px 0;white-space:pre-wrap;line-height:1.5">'
        f"{html.escape(text)}</div>"
    )


class PagedTable(widgets.VBox):  # type: ignore[misc]
    """A frame shown a page at a time, filtered by one column's value and by free text.

    ``facet`` names the column the dropdown filters on (``field`` for Cora changes); the
    text box keeps rows where any cell contains the text (case-insensitive). The parts are
    attributes (``facet_filter``, ``text_filter``, ``prev_button``, ``next_button``,
    ``page_label``, ``table``) so code and tests can drive the table without a browser.

    >>> t = PagedTable(pd.DataFrame({"field": ["a", "b"], "to": [1, 2]}), facet="field")
    >>> t.facet_filter.value = "b"
    >>> t.rows["to"].tolist()
    [2]
    """

    def __init__(self, frame: pd.DataFrame, *, facet: str | None = None,
                 page_size: int = 20, empty: str = "Nothing to show.") -> None:
        self._facet_name = facet
        self.page_size = max(1, int(page_size))
        self.empty = empty
        self.facet_filter = widgets.Dropdown(
            options=[ALL], value=ALL, layout=widgets.Layout(width="auto"),
        )
        self.text_filter = widgets.Text(
            value="", placeholder="filter: any text", continuous_update=False,
            layout=widgets.Layout(width="16em"),
        )
        self.prev_button = widgets.Button(description="< prev", layout=widgets.Layout(width="6em"))
        self.next_button = widgets.Button(description="next >", layout=widgets.Layout(width="6em"))
        self.page_label = widgets.Label()
        self.table = widgets.HTML()
        self._quiet = False
        self.facet_filter.observe(self._refilter, names="value")
        self.text_filter.observe(self._refilter, names="value")
        self.prev_button.on_click(lambda _: self.go(self.page - 1))
        self.next_button.on_click(lambda _: self.go(self.page + 1))
        controls = widgets.HBox(
            [self.facet_filter, self.text_filter, self.prev_button, self.next_button,
             self.page_label]
        )
        super().__init__([controls, self.table])
        self.show(frame)

    def show(self, frame: pd.DataFrame) -> None:
        """Show ``frame`` instead, from its first page with the filters cleared."""
        self.frame: pd.DataFrame = frame.reset_index(drop=True)
        self.facet = self._facet_name if self._facet_name in self.frame.columns else None
        self.page = 0
        self.rows: pd.DataFrame = self.frame
        # One lowercase string per row, built column-wise once, so each keystroke is a
        # single vectorised ``contains`` rather than a pass over every cell.
        haystack = pd.Series("", index=self.frame.index, dtype=object)
        for column in self.frame.columns:
            haystack = haystack + "\x1f" + self.frame[column].map(_cell).astype(str).str.lower()
        self._haystack = haystack
        options = [ALL]
        if self.facet is not None:
            values = self.frame[self.facet].map(_cell).astype(str)
            options += sorted(set(values.tolist()))
            self._facet_values = values
        # Quietly: the filters are being reset, not changed by the reader.
        self._quiet = True
        try:
            self.facet_filter.options = options
            self.facet_filter.value = ALL
            self.facet_filter.description = self.facet or ""
            self.facet_filter.layout.display = "" if self.facet else "none"
            self.text_filter.value = ""
        finally:
            self._quiet = False
        self._render()

    @property
    def n_pages(self) -> int:
        return max(1, math.ceil(len(self.rows) / self.page_size))

    @property
    def page_frame(self) -> pd.DataFrame:
        """The rows on the current page."""
        start = self.page * self.page_size
        page: pd.DataFrame = self.rows.iloc[start:start + self.page_size]
        return page

    def go(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped to the pages there are)."""
        self.page = min(max(0, page), self.n_pages - 1)
        self._render()

    def _refilter(self, _change: Any = None) -> None:
        if self._quiet:
            return
        keep = pd.Series(True, index=self.frame.index)
        if self.facet is not None and self.facet_filter.value != ALL:
            keep &= self._facet_values == self.facet_filter.value
        text = str(self.text_filter.value).strip().lower()
        if text:
            keep &= self._haystack.str.contains(text, regex=False)
        self.rows = self.frame[keep.to_numpy(dtype=bool)]
        self.page = 0
        self._render()

    def _render(self) -> None:
        total = len(self.rows)
        first = self.page * self.page_size
        last = min(total, first + self.page_size)
        of = f" (of {len(self.frame):,})" if total != len(self.frame) else ""
        self.page_label.value = (
            f"rows {first + 1:,}-{last:,} of {total:,}{of}" if total else f"0 rows{of}"
        )
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.n_pages - 1
        self.table.value = (
            frame_html(self.page_frame) if total else f"<em>{html.escape(self.empty)}</em>"
        )

    def static_html(self) -> str:
        """The first page as HTML, for front ends without widgets."""
        head = self.frame.iloc[: self.page_size]
        more = len(self.frame) - len(head)
        tail = f"<div><em>... and {more:,} more rows</em></div>" if more > 0 else ""
        if not len(self.frame):
            return f"<em>{html.escape(self.empty)}</em>"
        return frame_html(head) + tail
