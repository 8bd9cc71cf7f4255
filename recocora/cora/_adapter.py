"""Cora's side of a run: its options, and the adapter the run engine drives for ``upsert``.

The plan (``plan_upsert``) validates the whole frame and decides the
rows to send; the adapter hands the engine one batch of up to ``CoraClient.MAX_ROWS`` rows at a
time (one request at a time: the bulk endpoint allows one per key per window), sends its signed
body and merges the answer's per-row ``index`` back onto input positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._progress import Pace
from .._resend import resend_rows
from .._run import Batch, RunOptions, execute, own_client
from .._state import Ack
from .._transport import failed_request_note
from ..errors import RecocoraError
from ._client import CoraClient
from ._predict import unchanged_rows
from ._upsert import APPLIED, Mode, OnInvalid, UpsertPlan, _Outcome, plan_upsert

__all__ = ["CoraAdapter", "UpsertOptions", "plan", "upsert"]


@dataclass(frozen=True)
class UpsertOptions(RunOptions):
    """Every option of ``df.cora.upsert`` (and of ``df.cora.diff``, which reads the ones that
    shape the outcome), carried as one value from the accessor, CLI or widget to the run."""

    dry_run: bool = False
    include_changes: bool = False
    columns: dict[str, str] | None = None
    on_invalid: OnInvalid = "raise"
    mode: Mode = "upsert"
    skip_unchanged: bool = False


def plan(df: pd.DataFrame, client: CoraClient | None, options: UpsertOptions) -> UpsertPlan:
    """The checked frame and the rows to send, in batches of the client's ``MAX_ROWS``."""
    return plan_upsert(
        df, columns=options.columns, on_invalid=options.on_invalid, mode=options.mode,
        max_rows=(client or CoraClient).MAX_ROWS,
    )


def upsert(df: pd.DataFrame, client: CoraClient | None, options: UpsertOptions,
           only: pd.DataFrame | None = None) -> pd.DataFrame:
    """Create or update Cora accounts from ``df``; see ``df.cora.upsert``.

    >>> res = upsert(df, cora, UpsertOptions(journal="backfill.db"))  # doctest: +SKIP
    """
    if only is not None:
        return resend_rows(
            df, only, lambda rows: upsert(rows, client, options),
            status_column="cora_status", call="df.cora.upsert", dry_run=options.dry_run,
            zero={"requests": 0, "rows_sent": 0, "resent": 0},
        )
    planned = plan(df, client, options)
    with own_client(client, CoraClient) as cora:
        return execute(CoraAdapter(planned, cora, options), options)


class CoraAdapter:
    """What a Cora run brings to the engine: the plan's batches, the bulk call, the outcome."""

    api = "cora"
    failing = "failed"
    failing_hint = "Fix the failed rows first."
    resend_hint = "df.cora.upsert(client, only=exc.result)"
    concurrency = 1

    def __init__(self, planned: UpsertPlan, client: CoraClient, options: UpsertOptions) -> None:
        self.plan, self.client = planned, client
        self.outcome = _Outcome(planned)
        self.dry_run = options.dry_run
        self.include_changes = options.include_changes
        self.skip_unchanged = options.skip_unchanged
        self.reads = 0
        self.label = "Cora dry run" if options.dry_run else "Cora upsert"
        self.rows = len(planned.source_index)

    def journal_target(self) -> tuple[str, str, str | None]:
        return self.client.base_url, self.client.key_id, self.client.state_url

    def pace(self) -> Pace:
        return self.client.pace()

    def wait_time(self) -> float:
        return self.client.limiter.wait_time()

    def rate_limited(self) -> int:
        return self.client.rate_limited

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.outcome.counts.items() if v}

    def skip_acknowledged(self, applied: pd.DataFrame) -> None:
        planned = self.plan
        if applied.empty or not len(planned.positions):
            return
        keys, hashes = planned.digests()
        found = applied.reindex(pd.Index(keys, dtype=object))
        same = found["hash"].to_numpy(dtype=object) == np.array(hashes, dtype=object)
        skip = found["status"].isin(APPLIED).to_numpy(dtype=bool) & same
        if not skip.any():
            return
        self.outcome.mark_skipped(planned.positions[skip], found.loc[skip])
        planned.selected = np.flatnonzero(~skip)

    def to_send(self) -> int:
        return len(self.plan.to_send)

    def prepare(self) -> tuple[int, Batch | None]:
        """With ``skip_unchanged``, read the accounts of the rows still to send and settle
        as ``skipped`` those Cora would answer ``unchanged``; the rest are packed anew into
        full batches. The reads spend no bulk slot. Nothing is journaled for them: Cora did
        not answer for these rows."""
        planned = self.plan
        if not self.skip_unchanged or not len(planned.to_send):
            return 0, None
        positions, results, self.reads = unchanged_rows(planned, self.client)
        if not len(positions):
            return 0, None
        self.outcome.mark_unchanged(positions, results)
        places = np.arange(len(planned.positions)) if planned.selected is None \
            else planned.selected
        planned.selected = places[~np.isin(planned.to_send, positions)]
        return len(positions), None

    def batches(self, *, hashes: bool) -> Any:
        return self.plan.chunks(dry_run=self.dry_run, include_changes=self.include_changes,
                                hashes=hashes)

    def send(self, batch: Batch) -> dict[str, Any]:
        return self.client.bulk_upsert_raw(batch.body)

    def merge(self, batch: Batch, answer: dict[str, Any]) -> None:
        self.outcome.merge(answer, batch.positions, batch.number)

    def unknown(self, batch: Batch, why: str) -> None:
        self.outcome.mark_unknown(batch.positions, why)

    def unsent(self, why: str) -> None:
        """Rows never sent keep no message: ``not_sent`` says it all."""

    def acks(self, batch: Batch) -> list[Ack]:
        return self.outcome.acks(batch)

    def failures(self, batch: Batch) -> int:
        return int(np.count_nonzero(self.outcome.status[batch.positions] == "failed"))

    def finish(self) -> Batch | None:
        return None

    def result(self, attrs: dict[str, Any], *, complete: bool) -> pd.DataFrame:
        if self.skip_unchanged:
            attrs["read_requests"] = self.reads
        return self.outcome.frame(self.plan.source_index, attrs)

    def request_failed(self, exc: RecocoraError) -> str:
        return failed_request_note(exc, "Cora")
