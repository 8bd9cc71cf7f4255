"""How result frames look in a notebook: pandas' own table with a coloured summary on top.

:func:`as_result` turns a result frame (from ``df.cora.upsert``, ``df.cora.diff``,
``df.recotap.map_ids`` ...) into a :class:`ResultFrame`: an ordinary DataFrame in every
respect (``attrs``, indexing, ``df.join(res)``) whose notebook display starts with the
counts by status, and whose text form ends with a one-line summary. The words come from
``recocora._report``; this module adds the colours.

>>> res = as_result(pd.DataFrame({"cora_status": ["created", "created", "invalid"]}))
>>> repr(res).splitlines()[-1]
'Cora upsert: 2 created, 1 invalid (3 rows)'
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, cast

import pandas as pd

from ._report import api_of, facts, status_counts, summary_text, title

__all__ = ["MUTED", "STATUS_COLOURS", "ResultFrame", "as_result", "badges_html", "summary_html"]

#: Background colour of each status badge; unknown statuses are grey.
STATUS_COLOURS: dict[str, str] = {
    "created": "#1a7f37",
    "mapped": "#1a7f37",
    "updated": "#0969da",
    "unchanged": "#6e7781",
    "skipped": "#6e7781",
    "superseded": "#57606a",
    "already_mapped": "#8250df",
    "not_found": "#9a6700",
    "invalid": "#bc4c00",
    "failed": "#cf222e",
    "not_sent": "#57606a",
}
_DEFAULT_COLOUR = "#6e7781"

#: Secondary text in the theme's own colour (JupyterLab's variable; the page's colour where a
#: front end has none), so it reads on light and dark backgrounds alike.
MUTED = "var(--jp-content-font-color2,inherit)"


def badges_html(counts: Mapping[str, int], *, show_zero: bool = False) -> str:
    """Coloured ``<span>`` badges, one per status (zeros left out unless ``show_zero``).

    >>> badges_html({"created": 2}).count("<span")
    1
    """
    parts = []
    for status, n in counts.items():
        if not n and not show_zero:
            continue
        # A count carries its own pair of colours (white on the status colour), readable on
        # any theme; a zero is outlined in the theme's own colours.
        look = (
            f"background:{STATUS_COLOURS.get(status, _DEFAULT_COLOUR)};color:#ffffff;"
            "border:1px solid transparent"
            if n else
            f"background:transparent;color:{MUTED};border:1px solid "
            "var(--jp-border-color1,currentColor)"
        )
        parts.append(
            f'<span class="recocora-badge" data-status="{html.escape(status)}" '
            f'style="{look};border-radius:3px;padding:0 6px;margin-right:4px;'
            f'white-space:nowrap">{n:,} {html.escape(status)}</span>'
        )
    return "".join(parts)


def summary_html(frame: pd.DataFrame) -> str:
    """The summary as one HTML block: title, coloured counts, rows, requests and time.

    >>> "recocora-summary" in summary_html(pd.DataFrame({"cora_status": ["failed"]}))
    True
    """
    counts = status_counts(frame)
    return (
        '<div class="recocora-summary" style="margin:0 0 6px 0;line-height:1.8">'
        f"<strong>{html.escape(title(frame))}</strong> &nbsp;"
        f"{badges_html(counts) or '<em>no rows</em>'} "
        f'<span style="color:{MUTED}">{html.escape(", ".join(facts(frame)))}</span>'
        "</div>"
    )


class ResultFrame(pd.DataFrame):
    """A result frame: a plain DataFrame whose display leads with the counts by status.

    Slicing, copying and arithmetic keep the type (pandas' ``_constructor``) and ``attrs``;
    joining it onto the input (``df.join(res)``) gives the input's own type back.

    >>> res = as_result(pd.DataFrame({"cora_status": ["created"]}))
    >>> print(repr(res).splitlines()[-1])
    Cora upsert: 1 created (1 row)
    """

    @property
    def _constructor(self) -> type[ResultFrame]:
        return ResultFrame

    def _repr_html_(self) -> str | None:
        table = cast(Any, super())._repr_html_()
        if table is None or api_of(self) is None:
            return cast("str | None", table)
        return summary_html(self) + str(table)

    def __repr__(self) -> str:
        text = super().__repr__()
        if api_of(self) is None:
            return text
        return f"{text}\n{summary_text(self)}"


def as_result(frame: pd.DataFrame) -> ResultFrame:
    """The same frame (same data, index and ``attrs``) shown with its status summary.

    >>> res = as_result(pd.DataFrame({"cora_status": ["updated"]}, index=["r1"]))
    >>> type(res).__name__, res.index.tolist()
    ('ResultFrame', ['r1'])
    """
    if isinstance(frame, ResultFrame):
        return frame
    out: ResultFrame = ResultFrame(frame)
    out.attrs = dict(frame.attrs)
    return out
