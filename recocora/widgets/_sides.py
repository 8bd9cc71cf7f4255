"""What each API brings to a preview widget: its run and preview calls (from the run's
adapters), its statuses, its estimate and its words."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import pandas as pd

from .._problem_names import problem_name
from .._progress import format_duration
from .._report import changes_table
from ..cora import _adapter as cora_run
from ..cora import _diff as cora_diff
from ..cora import _schema as cora_schema
from ..cora._client import CoraClient
from ..errors import ValidationError
from ..recotap import _adapter as recotap_run
from ..recotap import _schema as recotap_schema
from ..recotap._client import RecotapClient
from ._results import message_html

__all__ = [
    "CoraSide",
    "RecotapSide",
    "Side",
    "error_text",
    "in_row_order",
    "plural",
    "problem_frame",
    "validation_report",
]

_PROBLEM_COLUMNS = ["row", "column", "problem", "value", "message"]


def problem_frame(failure_cases: pd.DataFrame,
                  own_column: Callable[[Any], Any] = lambda name: name) -> pd.DataFrame:
    """Failure cases in the preview's problem-table shape, each problem named in words and
    each column by the frame's own name for it (``own_column``)."""
    if not len(failure_cases):
        empty: pd.DataFrame = pd.DataFrame(columns=_PROBLEM_COLUMNS, dtype=object)
        return empty
    out: pd.DataFrame = pd.DataFrame(
        {
            "row": failure_cases["index"].astype(object).to_numpy(),
            "column": failure_cases["column"].map(own_column).astype(object).to_numpy(),
            "problem": failure_cases["check"].map(problem_name).astype(object).to_numpy(),
            "value": failure_cases["value"].astype(object).to_numpy(),
            "message": failure_cases["message"].astype(object).to_numpy(),
        },
        dtype=object,
    )
    return out


def in_row_order(cases: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Problems in the frame's row order (problems with the whole frame first), so a reader
    goes down the table as down the frame."""
    if not len(cases) or not index.is_unique:
        as_given: pd.DataFrame = cases.reset_index(drop=True)
        return as_given
    where = pd.Series(index.get_indexer(pd.Index(cases["row"].tolist(), dtype=object)))
    # A problem without a row (a whole column) comes first; a label outside the frame last.
    where = where.where(cases["row"].notna().to_numpy(), -2).replace(-1, len(index))
    order = where.sort_values(kind="stable").index
    ordered: pd.DataFrame = cases.iloc[order].reset_index(drop=True)
    return ordered


def error_text(exc: BaseException) -> str:
    # Library errors never carry secrets; the type name tells auth from transport from data.
    return f"{type(exc).__name__}: {exc}"


def validation_report(cases: pd.DataFrame, preview_error: BaseException | None) -> str:
    """The validation block's HTML: rows and problems by column, worst first; what to do
    when validation blocks the run."""
    blocked = isinstance(preview_error, ValidationError)
    if not len(cases):
        if preview_error is not None:
            return ""
        return message_html("Validation: every row is valid.", kind="success")
    rows = cases["row"].dropna().map(repr).nunique()
    ranked = (
        cases.groupby(["column", "problem"], dropna=False, sort=False).size()
        .sort_values(ascending=False, kind="stable")
    )
    verb = "failed validation" if blocked else "would not be written"
    lines = [f"{plural(rows, 'row')} {verb} ({plural(len(cases), 'problem')}):"]
    lines += [
        f"  {column}: {problem} ({plural(k, 'row')})"
        for (column, problem), k in zip(ranked.index.tolist(), ranked.tolist(), strict=True)
    ]
    if blocked:
        lines.append("Nothing can be sent as asked: fix these rows, or preview again with "
                     "on_invalid='skip' to send only the valid rows.")
    return message_html("\n".join(lines), kind="error" if blocked else "warning")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class Side(Protocol):
    """What one API brings to a preview: its calls, its statuses and its words."""

    api: str
    label: str
    #: The service, as the header names it ("written to Cora").
    service: str
    #: The call that builds this preview, for messages that say what to do.
    call: str
    #: The frame's index, so problems are listed in row order.
    index: pd.Index
    rows: int
    #: Statuses of rows the server wrote.
    written: tuple[str, ...]
    status_column: str
    headline: tuple[str, ...]
    changes_facet: str
    changes_title: str

    def make_client(self) -> Any: ...

    def options(self, kwargs: dict[str, Any]) -> Any:
        """The run's options from the preview's keyword arguments (a misspelt one raises)."""

    def run(self, client: Any, options: Any) -> pd.DataFrame: ...

    def diff(self, client: Any, options: Any) -> pd.DataFrame: ...

    def failure_cases(self, options: Any) -> pd.DataFrame: ...

    def own_column(self, name: Any) -> Any:
        """The frame's own name for a column a check or the server names."""

    def would_fail(self, preview: pd.DataFrame) -> pd.DataFrame: ...

    def overwrites(self, preview: pd.DataFrame, options: Any) -> int: ...

    def changes(self, preview: pd.DataFrame | None) -> pd.DataFrame: ...

    def to_send(self, preview: pd.DataFrame) -> int: ...

    def eta(self, client: Any, preview: pd.DataFrame, options: Any) -> str: ...

    def confirm_text(self, overwrites: int, n_changes: int) -> str: ...


# ------------------------------------------------------------------------------------ Cora


def _fields(details: Any) -> list[str]:
    """The fields a row failure names (Cora's ``details``)."""
    if isinstance(details, list):
        return [str(d["field"]) for d in details if isinstance(d, dict) and d.get("field")]
    return []


class CoraSide:
    api = "cora"
    label = "Cora upsert"
    service = "Cora"
    call = "df.cora.preview"
    written: tuple[str, ...] = ("created", "updated")
    status_column = "cora_status"
    headline: tuple[str, ...] = ("created", "updated", "unchanged", "failed")
    changes_facet = "field"
    changes_title = "Field changes on existing accounts"

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.index = df.index
        self.rows = len(df)
        self._columns: Mapping[str, str] = {}

    def make_client(self) -> CoraClient:
        return CoraClient()

    def options(self, kwargs: dict[str, Any]) -> cora_run.UpsertOptions:
        return cora_run.UpsertOptions(**kwargs)

    def run(self, client: Any, options: cora_run.UpsertOptions) -> pd.DataFrame:
        return cora_run.upsert(self.df, client, options)

    def diff(self, client: Any, options: cora_run.UpsertOptions) -> pd.DataFrame:
        # Field → the frame's own column, so a problem shows the row's value under its name.
        self._columns = {str(field): column for column, field in (options.columns or {}).items()}
        # The changes table needs them, dry run or not.
        return cora_diff.diff(self.df, client, replace(options, include_changes=True))

    def failure_cases(self, options: cora_run.UpsertOptions) -> pd.DataFrame:
        prepared = cora_schema.prepare(self.df, columns=options.columns)
        return cora_schema.validate(prepared, mode=options.mode)

    def own_column(self, name: Any) -> Any:
        return self._columns.get(name, name) if isinstance(name, str) else name

    def would_fail(self, preview: pd.DataFrame) -> pd.DataFrame:
        """Rows Cora would refuse (create requirements, server-side rules), as problems: one
        per field named, with the row's own value in that column (blank when it has none)."""
        failed = preview[preview["cora_status"] == "failed"]
        records = []
        for label, details, code, message in zip(
            failed.index.tolist(), failed["cora_details"].tolist(),
            failed["cora_code"].tolist(), failed["cora_message"].tolist(), strict=True,
        ):
            fields: list[str | None] = [*_fields(details)] or [None]
            for field in fields:
                column = self.own_column(field)
                records.append({
                    "row": label, "column": column, "problem": problem_name(code),
                    "value": self._value(label, column), "message": message,
                })
        out: pd.DataFrame = pd.DataFrame(records, columns=_PROBLEM_COLUMNS, dtype=object)
        return out

    def _value(self, label: Any, column: str | None) -> Any:
        if column is None or column not in self.df.columns:
            return None
        return self.df.at[label, column] if self.index.is_unique else None

    def overwrites(self, preview: pd.DataFrame, options: Any) -> int:
        return int((preview["cora_status"] == "updated").sum())

    def changes(self, preview: pd.DataFrame | None) -> pd.DataFrame:
        if preview is None:
            empty: pd.DataFrame = pd.DataFrame(
                columns=["index", "externalId", "field", "from", "to"], dtype=object
            )
            return empty
        return changes_table(preview)

    def to_send(self, preview: pd.DataFrame) -> int:
        return int((preview["cora_status"] != "invalid").sum())

    def eta(self, client: Any, preview: pd.DataFrame, options: Any) -> str:
        pace = client.pace()
        rows = self.to_send(preview)
        chunks = pace.requests(rows)
        what = "The dry run" if options.dry_run else "The real run"
        if not chunks:
            return f"{what} has no rows to send."
        # The widget counts the first request's slot too: Apply may wait for it.
        seconds = pace.seconds(rows, wait=pace.gap)
        took = format_duration(seconds) if seconds >= 1 else "under a second"
        return (f"{what} sends {plural(chunks, 'request')} of up to {pace.rows_per_request} "
                f"rows, one per {pace.min_interval:g} s: {took}.")

    def confirm_text(self, overwrites: int, n_changes: int) -> str:
        return (f"{plural(overwrites, 'existing account')} would be updated "
                f"({plural(n_changes, 'field change')}; stored values are overwritten).")


# --------------------------------------------------------------------------------- Recotap


class RecotapSide:
    api = "recotap"
    label = "Recotap map_ids"
    service = "Recotap"
    call = "df.recotap.preview"
    written: tuple[str, ...] = ("mapped",)
    status_column = "recotap_status"
    headline: tuple[str, ...] = (
        "mapped", "not_found", "already_mapped", "superseded", "unchanged"
    )
    changes_facet = "status"
    changes_title = "Mappings (domain, id to write, id the account holds now)"

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.index = df.index
        self.rows = len(df)

    def make_client(self) -> RecotapClient:
        return RecotapClient()

    def options(self, kwargs: dict[str, Any]) -> recotap_run.MapOptions:
        return recotap_run.MapOptions(**kwargs)

    def run(self, client: Any, options: recotap_run.MapOptions) -> pd.DataFrame:
        return recotap_run.map_ids(self.df, client, options)

    def diff(self, client: Any, options: recotap_run.MapOptions) -> pd.DataFrame:
        return recotap_run.diff(self.df, client, options)

    def failure_cases(self, options: recotap_run.MapOptions) -> pd.DataFrame:
        return recotap_schema.validate(self.df, domain=options.domain,
                                       external_id=options.external_id)

    def own_column(self, name: Any) -> Any:
        return name  # the checks name the frame's own columns

    def would_fail(self, preview: pd.DataFrame) -> pd.DataFrame:
        return problem_frame(pd.DataFrame())

    def overwrites(self, preview: pd.DataFrame, options: Any) -> int:
        """Rows that would replace a different id already on the account."""
        existing = preview["recotap_existing_id"]
        mask = (
            (preview["recotap_status"] == "mapped")
            & existing.notna()
            & (existing != preview["recotap_external_id"])
        )
        return int(mask.fillna(False).astype(bool).sum())

    def changes(self, preview: pd.DataFrame | None) -> pd.DataFrame:
        columns = ["index", "status", "domain", "id to write", "existing id"]
        if preview is None:
            empty: pd.DataFrame = pd.DataFrame(columns=columns, dtype=object)
            return empty
        shown = preview[preview["recotap_status"] != "invalid"]
        out: pd.DataFrame = pd.DataFrame(
            {
                "index": shown.index.to_numpy(dtype=object),
                "status": shown["recotap_status"].astype(object).to_numpy(),
                "domain": shown["recotap_domain"].astype(object).to_numpy(),
                "id to write": shown["recotap_external_id"].astype(object).to_numpy(),
                "existing id": shown["recotap_existing_id"].astype(object).to_numpy(),
            },
            columns=columns,
        )
        return out

    def to_send(self, preview: pd.DataFrame) -> int:
        return int(preview["recotap_status"].isin(["mapped", "not_found"]).sum())

    def eta(self, client: Any, preview: pd.DataFrame, options: Any) -> str:
        pace = client.pace()
        requests = pace.requests(self.to_send(preview))
        if not requests:
            return "The real run has no mappings to send."
        return (f"The real run sends {plural(requests, 'request')} of up to "
                f"{pace.rows_per_request} mappings, {pace.concurrency} at a time; Recotap "
                "documents no rate limit, so it takes seconds.")

    def confirm_text(self, overwrites: int, n_changes: int) -> str:
        held = "holds" if overwrites == 1 else "hold"
        return (f"overwrite=True: {plural(overwrites, 'account')} already {held} a different "
                "id that would be replaced.")
