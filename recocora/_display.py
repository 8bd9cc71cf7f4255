"""How result frames look in a notebook: pandas' own table with a coloured summary on top.

:func:`as_result` turns a result frame (from ``df.cora.upsert``, ``df.cora.diff``,
``df.recotap.map_ids`` ...) into a :class:`ResultFrame`: an ordinary DataFrame in every
respect (``attrs``, indexing, ``df.join(res)``) whose notebook display starts with the
counts by status, and whose text form ends with a one-line summary.

>>> res = as_result(pd.DataFrame({"cora_status": ["created", "created", "invalid"]}))
>>> summary_text(res)
'Cora upsert: 2 created, 1 invalid (3 rows)'
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, cast

import pandas as pd

__all__ = [
    "STATUS_COLOURS",
    "STATUS_ORDER",
    "ResultFrame",
    "as_result",
    "badges_html",
    "status_counts",
    "summary_html",
    "summary_text",
    "title",
]

#: Background colour of each status badge; unknown statuses are grey.
STATUS_COLOURS: dict[str, str] = {
    "created": "#1a7f37",
    "mapped": "#1a7f37",
    "updated": "#0969da",
    "unchanged": "#6e7781",
    "skipped": "#6e7781",
    "superseded": "#8c959f",
    "already_mapped": "#8250df",
    "not_found": "#9a6700",
    "invalid": "#bc4c00",
    "failed": "#cf222e",
    "not_sent": "#57606a",
}
_DEFAULT_COLOUR = "#6e7781"

#: The order a reader expects statuses in, per API: what happened, then what did not.
STATUS_ORDER: dict[str, tuple[str, ...]] = {
    "cora": ("created", "updated", "unchanged", "failed", "invalid", "skipped", "not_sent"),
    "recotap": ("mapped", "unchanged", "not_found", "already_mapped", "superseded",
                "invalid", "failed", "skipped", "not_sent"),
}
_STATUS_COLUMN = {"cora": "cora_status", "recotap": "recotap_status"}


def _api(frame: pd.DataFrame) -> str | None:
    for api, column in _STATUS_COLUMN.items():
        if column in frame.columns:
            return api
    return None


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per status of a Cora or Recotap result frame, in reading order (empty when the
    frame has no status column).

    >>> status_counts(pd.DataFrame({"recotap_status": ["not_found", "mapped"]}))
    {'mapped': 1, 'not_found': 1}
    """
    api = _api(frame)
    if api is None:
        return {}
    tally = frame[_STATUS_COLUMN[api]].value_counts(dropna=False)
    found = {str(k): int(v) for k, v in tally.items()}
    ordered = {s: found.pop(s) for s in STATUS_ORDER[api] if s in found}
    ordered.update(sorted(found.items()))
    return ordered


def title(frame: pd.DataFrame) -> str:
    """What produced the frame, read from its columns and ``attrs``.

    >>> title(pd.DataFrame({"cora_status": []}))
    'Cora upsert'
    """
    api = _api(frame) or str(frame.attrs.get("api", ""))
    if api == "recotap":
        return "Recotap preview" if frame.attrs.get("preview") else "Recotap map_ids"
    if frame.attrs.get("preview"):
        return f"Cora preview ({frame.attrs['preview']})"
    return "Cora dry run" if frame.attrs.get("dry_run") else "Cora upsert"


def _facts(frame: pd.DataFrame) -> list[str]:
    facts = [f"{len(frame):,} row{'s' if len(frame) != 1 else ''}"]
    requests = frame.attrs.get("requests")
    if isinstance(requests, int) and requests:
        facts.append(f"{requests:,} request{'s' if requests != 1 else ''}")
    seconds = frame.attrs.get("duration_s", frame.attrs.get("duration"))
    if isinstance(seconds, (int, float)) and seconds:
        facts.append(f"{seconds:.1f} s" if seconds >= 0.1 else "under 0.1 s")
    return facts


def summary_text(frame: pd.DataFrame) -> str:
    """One line: what ran, counts by status, rows, requests and time.

    >>> summary_text(pd.DataFrame({"recotap_status": ["mapped"]}))
    'Recotap map_ids: 1 mapped (1 row)'
    """
    counts = status_counts(frame)
    body = ", ".join(f"{n:,} {s}" for s, n in counts.items()) or "no rows"
    return f"{title(frame)}: {body} ({', '.join(_facts(frame))})"


def badges_html(counts: Mapping[str, int], *, show_zero: bool = False) -> str:
    """Coloured ``<span>`` badges, one per status (zeros left out unless ``show_zero``).

    >>> badges_html({"created": 2}).count("<span")
    1
    """
    parts = []
    for status, n in counts.items():
        if not n and not show_zero:
            continue
        colour = STATUS_COLOURS.get(status, _DEFAULT_COLOUR) if n else "#d0d7de"
        text_colour = "#ffffff" if n else "#57606a"
        parts.append(
            f'<span class="recocora-badge" data-status="{html.escape(status)}" '
            f'style="background:{colour};color:{text_colour};border-radius:3px;'
            f'padding:1px 6px;margin-right:4px;white-space:nowrap">'
            f"{n:,} {html.escape(status)}</span>"
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
        f'<span style="color:#57606a">{html.escape(", ".join(_facts(frame)))}</span>'
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
        if table is None or _api(self) is None:
            return cast("str | None", table)
        return summary_html(self) + str(table)

    def __repr__(self) -> str:
        text = super().__repr__()
        if _api(self) is None:
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
