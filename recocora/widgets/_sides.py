"""What each API brings to a preview widget: its run and preview calls (from the run's
adapters), its statuses, its estimate and its words."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import pandas as pd

from .._progress import format_duration
from .._report import changes_table
from ..cora import _adapter as cora_run
from ..cora import _diff as cora_diff
from ..cora import _schema as cora_schema
from ..cora._client import CoraClient
from ..recotap import _adapter as recotap_run
from ..recotap import _schema as recotap_schema
from ..recotap._client import RecotapClient

__all__ = ["CoraSide", "RecotapSide", "Side", "plural", "problem_frame"]

_PROBLEM_COLUMNS = ["row", "column", "problem", "value", "message"]

def problem_frame(failure_cases: pd.DataFrame) -> pd.DataFrame:
    """Failure cases in the preview's problem-table shape."""
    if not len(failure_cases):
        empty: pd.DataFrame = pd.DataFrame(columns=_PROBLEM_COLUMNS, dtype=object)
        return empty
    out: pd.DataFrame = pd.DataFrame(
        {
            "row": failure_cases["index"].astype(object).to_numpy(),
            "column": failure_cases["column"].astype(object).to_numpy(),
            "problem": failure_cases["check"].astype(object).to_numpy(),
            "value": failure_cases["value"].astype(object).to_numpy(),
            "message": failure_cases["message"].astype(object).to_numpy(),
        },
        dtype=object,
    )
    return out


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class Side(Protocol):
    """What one API brings to a preview: its calls, its statuses and its words."""

    api: str
    label: str
    rows: int
    headline: tuple[str, ...]
    changes_facet: str
    changes_title: str

    def make_client(self) -> Any: ...

    def options(self, kwargs: dict[str, Any]) -> Any:
        """The run's options from the preview's keyword arguments (a misspelt one raises)."""

    def run(self, client: Any, options: Any) -> pd.DataFrame: ...

    def diff(self, client: Any, options: Any) -> pd.DataFrame: ...

    def failure_cases(self, options: Any) -> pd.DataFrame: ...

    def would_fail(self, preview: pd.DataFrame) -> pd.DataFrame: ...

    def overwrites(self, preview: pd.DataFrame, options: Any) -> int: ...

    def changes(self, preview: pd.DataFrame | None) -> pd.DataFrame: ...

    def to_send(self, preview: pd.DataFrame) -> int: ...

    def eta(self, client: Any, preview: pd.DataFrame, options: Any) -> str: ...

    def confirm_text(self, overwrites: int, n_changes: int) -> str: ...


# ------------------------------------------------------------------------------------ Cora


def _fields(details: Any) -> Any:
    if isinstance(details, list):
        names = [d.get("field") for d in details if isinstance(d, dict) and d.get("field")]
        return ", ".join(str(n) for n in names) or None
    return None


class CoraSide:
    api = "cora"
    label = "Cora upsert"
    headline: tuple[str, ...] = ("created", "updated", "unchanged", "failed")
    changes_facet = "field"
    changes_title = "Field changes on existing accounts"

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.rows = len(df)

    def make_client(self) -> CoraClient:
        return CoraClient()

    def options(self, kwargs: dict[str, Any]) -> cora_run.UpsertOptions:
        return cora_run.UpsertOptions(**kwargs)

    def run(self, client: Any, options: cora_run.UpsertOptions) -> pd.DataFrame:
        return cora_run.upsert(self.df, client, options)

    def diff(self, client: Any, options: cora_run.UpsertOptions) -> pd.DataFrame:
        # The changes table needs them, dry run or not.
        return cora_diff.diff(self.df, client, replace(options, include_changes=True))

    def failure_cases(self, options: cora_run.UpsertOptions) -> pd.DataFrame:
        prepared = cora_schema.prepare(self.df, columns=options.columns)
        return cora_schema.validate(prepared, mode=options.mode)

    def would_fail(self, preview: pd.DataFrame) -> pd.DataFrame:
        """Rows Cora would refuse (create requirements, server-side rules), as problems."""
        failed = preview[preview["cora_status"] == "failed"]
        out: pd.DataFrame = pd.DataFrame(
            {
                "row": failed.index.to_numpy(dtype=object),
                "column": [_fields(d) for d in failed["cora_details"].tolist()],
                "problem": failed["cora_code"].astype(object).to_numpy(),
                "value": failed["cora_external_id"].astype(object).to_numpy(),
                "message": failed["cora_message"].astype(object).to_numpy(),
            },
            columns=_PROBLEM_COLUMNS, dtype=object,
        )
        return out

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
        seconds = pace.seconds(rows, wait=pace.min_interval)
        took = format_duration(seconds) if seconds >= 1 else "under a second"
        return (f"{what} sends {plural(chunks, 'request')} of up to {pace.rows_per_request} "
                f"rows, one per {pace.min_interval:g} s: {took}.")

    def confirm_text(self, overwrites: int, n_changes: int) -> str:
        return (f"{plural(overwrites, 'existing account')} would be updated "
                f"({plural(n_changes, 'field change')}; stored values are overwritten). "
                "Confirm to apply, or Cancel.")


# --------------------------------------------------------------------------------- Recotap


class RecotapSide:
    api = "recotap"
    label = "Recotap map_ids"
    headline: tuple[str, ...] = (
        "mapped", "not_found", "already_mapped", "superseded", "unchanged"
    )
    changes_facet = "status"
    changes_title = "Mappings (domain, id to write, id the account holds now)"

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
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
                "id that would be replaced. Confirm to apply, or Cancel.")
