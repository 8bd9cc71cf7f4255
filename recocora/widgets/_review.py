"""The review widget behind ``matches.recotap.review()``: a person settles the grey zone.

It shows the counts by status, filters by status and tier, a search box and pages of rows;
each row lists its candidates with score and reason and has **Accept** (the candidate chosen
in its dropdown), **Reject** and **No match**. A conflicts view groups the rows claiming one
account, so one of them can be given it. **Accept all auto** settles every ``auto`` row
nobody decided yet. Each decision is written into the matches frame at once and appended
to its decisions file, so a re-run of the match re-applies it.

Everything runs on the kernel's main thread, in the click handlers; every part is an
attribute, so code and tests drive it without a browser:

>>> w = matches.recotap.review()  # doctest: +SKIP
>>> w.status_filter.value = "review"; w.rows[0].accept_button.click()  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from collections.abc import Hashable
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..recotap._decisions import accept_proposals, decide
from ..recotap._match import STATUSES, TIERS
from ._results import ALL

__all__ = ["MatchReview", "RowReview"]

#: Badge colours from JupyterLab's theme, so the widget reads in light and dark themes.
_COLOURS = {
    "auto": "var(--jp-success-color1)",
    "review": "var(--jp-warn-color1)",
    "ambiguous": "var(--jp-warn-color0)",
    "conflict": "var(--jp-error-color1)",
    "none": "var(--jp-layout-color3)",
    "accepted": "var(--jp-success-color0)",
    "rejected": "var(--jp-error-color2)",
    "no_match": "var(--jp-layout-color4)",
}
_BOX = ("border:1px solid var(--jp-border-color2);border-radius:3px;padding:4px 8px;"
        "margin:2px 0;color:var(--jp-ui-font-color1);background:var(--jp-layout-color1)")
_CELL = "padding:1px 8px;border-bottom:1px solid var(--jp-border-color3);text-align:left"


def _badge(text: str) -> str:
    colour = _COLOURS.get(text, "var(--jp-layout-color3)")
    return (f'<span style="background:{colour};color:var(--jp-ui-inverse-font-color1);'
            f'border-radius:3px;padding:0 6px;margin-right:4px">{html.escape(text)}</span>')


def _text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


class RowReview(widgets.VBox):  # type: ignore[misc]
    """One CRM row under review: its proposal, its candidates, and the three decisions.

    Parts: ``header`` (HTML), ``table`` (HTML of the candidates), ``choice`` (the candidate
    domain **Accept** takes), ``accept_button``, ``reject_button``, ``no_match_button``.
    The review keeps one per place on the page and shows another row in it with
    :meth:`show`, so paging and deciding create no new widgets.
    """

    def __init__(self, review: MatchReview) -> None:
        self.label: Hashable = None
        self._review = review
        self.header = widgets.HTML()
        self.table = widgets.HTML()
        self.choice = widgets.Dropdown(options=[], description="account",
                                       layout=widgets.Layout(width="24em"))
        self.accept_button = widgets.Button(description="Accept", button_style="success",
                                            tooltip="Write this CRM id onto the chosen account")
        self.reject_button = widgets.Button(description="Reject", button_style="warning",
                                            tooltip="The proposed account is not this row")
        self.no_match_button = widgets.Button(description="No match",
                                              tooltip="None of these accounts is this row")
        self.accept_button.on_click(lambda _: review.accept(self.label, self.choice.value))
        self.reject_button.on_click(lambda _: review.reject(self.label))
        self.no_match_button.on_click(lambda _: review.no_match(self.label))
        buttons = widgets.HBox([self.choice, self.accept_button, self.reject_button,
                                self.no_match_button])
        super().__init__([self.header, self.table, buttons],
                         layout=widgets.Layout(border="1px solid var(--jp-border-color2)",
                                               margin="4px 0", padding="4px"))

    def show(self, label: Hashable) -> RowReview:
        """Show row ``label`` of the review's matches here."""
        self.label = label
        row: pd.Series[Any] = self._review.matches.loc[label]  # type: ignore[call-overload]
        mine = self._review.candidates_of(label)
        self.header.value = self._header(row)
        self.table.value = self._table(mine)
        options = list(dict.fromkeys(mine["domain"].astype(str).tolist()))
        proposal = _text(row["match_domain"])
        if proposal and proposal not in options:
            options.insert(0, proposal)
        self.choice.options = options
        self.choice.value = proposal if proposal else (options[0] if options else None)
        self.choice.disabled = self.accept_button.disabled = not options
        self.reject_button.disabled = not proposal
        return self

    def _header(self, row: pd.Series[Any]) -> str:
        decision = _text(row.get("match_decision"))
        badges = _badge(str(row["match_status"])) + (_badge(decision) if decision else "")
        proposal = _text(row["match_domain"]) or "no account"
        return (
            f'<div style="color:var(--jp-ui-font-color1)">{badges}'
            f"<b>{html.escape(str(self.label))}</b>"
            f" (id {html.escape(str(row['match_external_id']))})"
            f" → <b>{html.escape(proposal)}</b> {html.escape(_text(row['match_name']))}"
            '<div style="color:var(--jp-ui-font-color2)">'
            f"{html.escape(_text(row['match_reason']))}</div></div>"
        )

    @staticmethod
    def _table(mine: pd.DataFrame) -> str:
        if not len(mine):
            return '<em style="color:var(--jp-ui-font-color2)">No candidates.</em>'
        head = "".join(f'<th style="{_CELL}">{h}</th>'
                       for h in ("#", "domain", "name", "score", "tier", "reason"))
        body = "".join(
            "<tr>" + "".join(
                f'<td style="{_CELL}">{html.escape(_text(v))}</td>'
                for v in (r["rank"], r["domain"], r["name"], f"{float(r['score']):.2f}",
                          r["tier"], r["reason"])
            ) + "</tr>"
            for _, r in mine.iterrows()
        )
        return (f'<table style="border-collapse:collapse;font-size:12px;'
                f'color:var(--jp-ui-font-color1)"><tr>{head}</tr>{body}</table>')


class MatchReview(widgets.VBox):  # type: ignore[misc]
    """Review a matches frame (from ``crm.recotap.match``) and record decisions into it.

    Parts: ``counts_html``, ``status_filter``, ``tier_filter``, ``search``,
    ``prev_button``, ``next_button``, ``page_label``, ``view`` (``rows`` or
    ``conflicts``), ``accept_auto_button``, ``message_html``, ``rows`` (the
    :class:`RowReview` of the page shown) and ``conflict_groups`` (per contested account,
    its rows' :class:`RowReview`). ``matches`` is the frame decisions are written into;
    ``shown`` the rows that pass the filters.
    """

    def __init__(self, matches: pd.DataFrame, *, page_size: int = 10) -> None:
        if "match_status" not in matches.columns:
            raise ValueError("review() needs a matches frame, from crm.recotap.match(...)")
        self.matches = matches
        if "match_decision" not in matches.columns:
            matches["match_decision"] = pd.array([None] * len(matches), dtype="string")
        found = matches.attrs.get("candidates")
        self.candidates: pd.DataFrame = (
            found if isinstance(found, pd.DataFrame)
            else pd.DataFrame(columns=["row", "rank", "domain", "name", "score", "tier",
                                       "reason"])
        )
        self._by_row = self.candidates.groupby("row", sort=False).indices
        self.page_size = max(1, int(page_size))
        self.page = 0
        self.rows: list[RowReview] = []
        # Widgets are made once and reused: a notebook keeps every widget ever made.
        self._slots = [RowReview(self) for _ in range(self.page_size)]
        self._conflict_slots: list[RowReview] = []
        self._titles: list[widgets.HTML] = []
        self._empty = widgets.HTML()
        self.conflict_groups: dict[str, list[RowReview]] = {}
        self.counts_html = widgets.HTML()
        self.status_filter = widgets.Dropdown(options=[ALL, *STATUSES], value=ALL,
                                              description="status",
                                              layout=widgets.Layout(width="14em"))
        self.tier_filter = widgets.Dropdown(options=[ALL, *TIERS], value=ALL, description="tier",
                                            layout=widgets.Layout(width="16em"))
        self.search = widgets.Text(placeholder="search: name, domain, id, reason",
                                   continuous_update=False, layout=widgets.Layout(width="18em"))
        self.view = widgets.ToggleButtons(options=["rows", "conflicts"], value="rows")
        self.prev_button = widgets.Button(description="< prev", layout=widgets.Layout(width="6em"))
        self.next_button = widgets.Button(description="next >", layout=widgets.Layout(width="6em"))
        self.page_label = widgets.Label()
        self.accept_auto_button = widgets.Button(
            description="Accept all auto", icon="check",
            tooltip="Accept every auto row nobody decided yet (look at a sample first)",
        )
        self.message_html = widgets.HTML()
        self.body = widgets.VBox()
        for control in (self.status_filter, self.tier_filter, self.search, self.view):
            control.observe(self._refilter, names="value")
        self.prev_button.on_click(lambda _: self.go(self.page - 1))
        self.next_button.on_click(lambda _: self.go(self.page + 1))
        self.accept_auto_button.on_click(lambda _: self.accept_all_auto())
        bar = widgets.HBox([self.status_filter, self.tier_filter, self.search])
        pager = widgets.HBox([self.view, self.prev_button, self.next_button, self.page_label,
                              self.accept_auto_button])
        super().__init__([self.counts_html, bar, pager, self.message_html, self.body])
        self._refilter()

    # -- what is shown ----------------------------------------------------------------------

    def candidates_of(self, label: Hashable) -> pd.DataFrame:
        """The candidates of one row, best first."""
        where = self._by_row.get(label)
        picked: pd.DataFrame = self.candidates.iloc[where if where is not None else []]
        return picked

    @property
    def shown(self) -> pd.DataFrame:
        """The rows that pass the status, tier and search filters."""
        m = self.matches
        keep = pd.Series(True, index=m.index)
        if self.status_filter.value != ALL:
            keep &= m["match_status"] == self.status_filter.value
        if self.tier_filter.value != ALL:
            keep &= m["match_tier"] == self.tier_filter.value
        needle = str(self.search.value).strip().lower()
        if needle:
            text = pd.Series(m.index.map(str), index=m.index).str.lower()
            for column in ("match_domain", "match_name", "match_external_id", "match_reason"):
                text = text + "\x1f" + m[column].astype(object).fillna("").astype(str).str.lower()
            keep &= text.str.contains(needle, regex=False)
        shown: pd.DataFrame = m[keep.to_numpy(dtype=bool)]
        return shown

    @property
    def n_pages(self) -> int:
        return max(1, math.ceil(len(self.shown) / self.page_size))

    def go(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped)."""
        self.page = min(max(0, page), self.n_pages - 1)
        self._render()

    def _refilter(self, _change: Any = None) -> None:
        self.page = 0
        self._render()

    def _render(self) -> None:
        self.counts_html.value = self._counts()
        undecided_auto = self._undecided_auto()
        self.accept_auto_button.description = f"Accept all auto ({undecided_auto.sum():,})"
        self.accept_auto_button.disabled = not undecided_auto.any()
        if self.view.value == "conflicts":
            self._render_conflicts()
            return
        shown = self.shown
        first = self.page * self.page_size
        labels = shown.index[first:first + self.page_size]
        self.rows = [slot.show(label) for slot, label in zip(self._slots, labels, strict=False)]
        total = len(shown)
        self.page_label.value = (f"rows {first + 1:,}-{first + len(labels):,} of {total:,}"
                                 if total else "0 rows")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.n_pages - 1
        self._empty.value = "<em>No rows match the filters.</em>"
        self.body.children = self.rows or [self._empty]

    def _render_conflicts(self) -> None:
        m = self.matches
        contested = m[(m["match_status"] == "conflict").to_numpy()]
        self.conflict_groups = {}
        parts: list[widgets.Widget] = []
        groups = list(contested.groupby("match_domain", sort=True))
        while len(self._conflict_slots) < len(contested):
            self._conflict_slots.append(RowReview(self))
        while len(self._titles) < len(groups):
            self._titles.append(widgets.HTML())
        slots = iter(self._conflict_slots)
        for title, (domain, group) in zip(self._titles, groups, strict=False):
            rows = [next(slots).show(label) for label in group.index]
            self.conflict_groups[str(domain)] = rows
            title.value = (f'<div style="{_BOX}"><b>{html.escape(str(domain))}</b>: claimed '
                           f"by {len(rows)} CRM rows; accept the one that owns it.</div>")
            parts += [title, *rows]
        self.rows = []
        self.page_label.value = f"{len(self.conflict_groups):,} contested accounts"
        self.prev_button.disabled = self.next_button.disabled = True
        self._empty.value = "<em>No conflicts.</em>"
        self.body.children = parts or [self._empty]

    def _counts(self) -> str:
        m = self.matches
        tally = m["match_status"].value_counts()
        parts = [_badge(f"{s}: {int(tally.get(s, 0)):,}") for s in STATUSES]
        decided = m["match_decision"].value_counts()
        parts += [_badge(f"{d}: {int(n):,}") for d, n in decided.items()]
        return f'<div style="color:var(--jp-ui-font-color1)">{"".join(parts)}</div>'

    def _undecided_auto(self) -> pd.Series[Any]:
        m = self.matches
        undecided: pd.Series[Any] = (m["match_status"] == "auto") & m["match_decision"].isna()
        return undecided

    # -- decisions --------------------------------------------------------------------------

    def _decide(self, label: Hashable, decision: str, domain: str | None = None) -> None:
        try:
            decide(self.matches, label, decision, domain)
        except (ValueError, OSError) as exc:
            self.message_html.value = (f'<div style="color:var(--jp-error-color1)">'
                                       f"{html.escape(str(exc))}</div>")
            return
        self.message_html.value = ""
        self._render()

    def accept(self, label: Hashable, domain: str | None = None) -> None:
        """Accept ``domain`` (default: the proposal) for row ``label``. In a conflict, the
        other rows claiming that account are rejected for it."""
        chosen = domain if domain is not None else _text(self.matches.at[label, "match_domain"])
        m = self.matches
        if m.at[label, "match_status"] == "conflict":
            rivals = m.index[(m["match_status"] == "conflict").to_numpy()
                             & (m["match_domain"] == chosen).to_numpy()]
            for other in rivals:
                if other != label:
                    decide(m, other, "rejected", chosen)
        self._decide(label, "accepted", chosen or None)

    def reject(self, label: Hashable) -> None:
        """The proposed account is not row ``label``'s."""
        self._decide(label, "rejected")

    def no_match(self, label: Hashable) -> None:
        """None of the accounts is row ``label``."""
        self._decide(label, "no_match")

    def accept_all_auto(self) -> int:
        """Accept every ``auto`` row nobody decided yet; returns how many."""
        labels = self.matches.index[self._undecided_auto().to_numpy(dtype=bool)]
        accept_proposals(self.matches, labels)
        self._render()
        return len(labels)
