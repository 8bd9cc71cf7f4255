"""``df.cora.upsert()``: validate the whole frame, then chunk, sign, send and merge back.

The data walks one way: columns renamed → schema checked on every row → valid rows built
into bodies one chunk of 500 at a time (serialised once, those bytes signed and sent) →
each answer's per-row ``index`` mapped through the chunk's positions back to the input's
index. Every input row ends with exactly one ``cora_status``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import RecocoraError, ValidationError
from ..frames import RowBuilder, chunk_slices, dumps, failure_frame, valid_mask, validation_error
from ..progress import RunProgress
from . import schema
from .client import CoraClient

__all__ = [
    "RESULT_COLUMNS",
    "STATUSES",
    "UpsertPlan",
    "changes_table",
    "plan_upsert",
    "upsert",
]

STATUSES = ("created", "updated", "unchanged", "failed", "invalid", "skipped", "not_sent")
SERVER_STATUSES = frozenset({"created", "updated", "unchanged", "failed"})
RESULT_COLUMNS = (
    "cora_status", "cora_account_id", "cora_updated_at", "cora_code", "cora_message",
    "cora_details", "cora_changes", "cora_batch", "cora_external_id",
)
OnInvalid = Literal["raise", "skip"]
Mode = Literal["upsert", "create"]


@dataclass
class UpsertPlan:
    """What a run would send: the checked frame, its failures and the rows to send."""

    source_index: pd.Index
    prepared: pd.DataFrame
    failure_cases: pd.DataFrame
    valid: np.ndarray  # bool per input position
    positions: np.ndarray  # input positions of the rows to send, in order
    max_rows: int

    @property
    def n_chunks(self) -> int:
        return math.ceil(len(self.positions) / self.max_rows)

    def bodies(
        self, *, dry_run: bool, include_changes: bool
    ) -> Iterator[tuple[int, np.ndarray, bytes]]:
        """``(batch, input positions, body)`` per chunk, each body built just before use."""
        if len(self.positions) == len(self.prepared):
            sendable = self.prepared
        else:
            sendable = self.prepared.iloc[self.positions]
        builder = RowBuilder(sendable)
        for batch, sl in enumerate(chunk_slices(len(self.positions), self.max_rows)):
            body = dumps(
                {"accounts": builder.rows(sl), "dryRun": dry_run, "includeChanges": include_changes}
            )
            yield batch, self.positions[sl], body


def plan_upsert(
    df: pd.DataFrame,
    *,
    columns: dict[str, str] | None = None,
    on_invalid: OnInvalid = "raise",
    mode: Mode = "upsert",
    max_rows: int = CoraClient.MAX_ROWS,
) -> UpsertPlan:
    """Check the whole frame and decide what would be sent; raises on invalid rows when
    ``on_invalid="raise"`` (nothing is sent then)."""
    if on_invalid not in ("raise", "skip"):
        raise ValueError("on_invalid must be 'raise' or 'skip'")
    if mode not in ("upsert", "create"):
        raise ValueError("mode must be 'upsert' or 'create'")
    _check_index(df)
    prepared = schema.prepare(df, columns=columns)
    failures = schema.validate(prepared, mode=mode)
    if len(failures) and on_invalid == "raise":
        raise validation_error(failures)
    valid = valid_mask(failures, prepared.index).to_numpy(dtype=bool)
    return UpsertPlan(df.index, prepared, failures, valid, np.flatnonzero(valid), max_rows)


def _check_index(df: pd.DataFrame) -> None:
    if not df.index.is_unique:
        dupes = df.index[df.index.duplicated()].unique()[:5].tolist()
        raise ValidationError(
            f"The frame's index has duplicate labels (e.g. {dupes}); each result row joins "
            "back onto its input row by index label. Call df.reset_index() (or set a unique "
            "index) first.",
            failure_frame([{"index": None, "column": None, "check": "unique_index",
                            "value": dupes, "message": "duplicate index labels"}]),
        )


class _Outcome:
    """Per-position result columns, filled in as answers arrive."""

    def __init__(self, plan: UpsertPlan) -> None:
        n = len(plan.source_index)
        self.status = np.full(n, "not_sent", dtype=object)
        self.cols = {c: np.full(n, None, dtype=object) for c in RESULT_COLUMNS[1:-2]}
        self.batch = np.full(n, -1, dtype=np.int64)
        ids = plan.prepared.get("externalId")
        self.external_id = (
            np.full(n, None, dtype=object) if ids is None
            else ids.astype(object).where(ids.notna(), None).to_numpy()
        )
        self.counts = dict.fromkeys(STATUSES, 0)
        self.counts["not_sent"] = n
        self._mark_invalid(plan)

    def _set(self, pos: int, status: str) -> None:
        self.counts[self.status[pos]] -= 1
        self.counts[status] += 1
        self.status[pos] = status

    def _mark_invalid(self, plan: UpsertPlan) -> None:
        bad = np.flatnonzero(~plan.valid)
        if not len(bad):
            return
        fc = plan.failure_cases
        texts = [
            f"{c}: {m}" if c is not None else str(m)
            for c, m in zip(fc["column"], fc["message"], strict=True)
        ]
        details = [
            {"field": c, "message": m, "check": k}
            for c, m, k in zip(fc["column"], fc["message"], fc["check"], strict=True)
        ]
        labels = fc["index"].tolist()
        whole = [i for i, label in enumerate(labels) if label is None]
        rows = [i for i, label in enumerate(labels) if label is not None]
        # Failure cases name rows by label; one lookup turns them into positions.
        where: list[int] = (
            plan.source_index.get_indexer(pd.Index([labels[i] for i in rows])).tolist()
            if rows else []
        )
        by_pos: dict[int, list[int]] = {}
        for i, pos in zip(rows, where, strict=True):
            by_pos.setdefault(int(pos), []).append(i)
        for pos in bad.tolist():
            picked = whole + by_pos.get(pos, [])
            self._set(pos, "invalid")
            self.cols["cora_code"][pos] = "INVALID"
            self.cols["cora_message"][pos] = "; ".join(texts[i] for i in picked) or "invalid"
            self.cols["cora_details"][pos] = [details[i] for i in picked]

    def merge(self, answer: dict[str, Any], positions: np.ndarray, batch: int) -> None:
        seen = np.zeros(len(positions), dtype=bool)
        for r in answer.get("results", []):
            if not isinstance(r, dict):
                continue
            i = r.get("index")
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(positions):
                continue
            if seen[i]:
                continue
            seen[i] = True
            pos = int(positions[i])
            status = r.get("status")
            self._set(pos, status if status in SERVER_STATUSES else "failed")
            self.batch[pos] = batch
            c = self.cols
            c["cora_account_id"][pos] = r.get("accountId")
            c["cora_updated_at"][pos] = r.get("updatedAt")
            c["cora_code"][pos] = r.get("code")
            c["cora_message"][pos] = r.get("message")
            c["cora_details"][pos] = r.get("details")
            c["cora_changes"][pos] = r.get("changes")
            if status not in SERVER_STATUSES and not r.get("code"):
                c["cora_code"][pos] = "UNKNOWN_STATUS"
                c["cora_message"][pos] = f"Cora answered an unknown row status {status!r}"
        for i in np.flatnonzero(~seen):
            pos = int(positions[i])
            self._set(pos, "failed")
            self.batch[pos] = batch
            self.cols["cora_code"][pos] = "NO_RESULT"
            self.cols["cora_message"][pos] = (
                "Cora's answer had no result for this row, so its outcome is unknown; "
                "re-sending it is safe (upserts are idempotent)."
            )

    def frame(self, index: pd.Index, attrs: dict[str, Any]) -> pd.DataFrame:
        data: dict[str, Any] = {"cora_status": self.status.copy()}
        data.update({k: v.copy() for k, v in self.cols.items()})
        data["cora_batch"] = pd.array(
            [int(b) if b >= 0 else pd.NA for b in self.batch], dtype="Int64"
        )
        data["cora_external_id"] = self.external_id
        out = pd.DataFrame(data, index=index)
        out.attrs.update(attrs)
        out.attrs["counts"] = {k: v for k, v in self.counts.items() if v}
        return out  # type: ignore[no-any-return]


def upsert(
    df: pd.DataFrame,
    client: CoraClient | None = None,
    *,
    dry_run: bool = False,
    include_changes: bool = False,
    columns: dict[str, str] | None = None,
    on_invalid: OnInvalid = "raise",
    mode: Mode = "upsert",
    progress: bool = True,
) -> pd.DataFrame:
    """Create or update Cora accounts from ``df``; see :meth:`CoraAccessor.upsert`."""
    plan = plan_upsert(
        df, columns=columns, on_invalid=on_invalid, mode=mode,
        max_rows=client.MAX_ROWS if client is not None else CoraClient.MAX_ROWS,
    )
    client = client if client is not None else CoraClient()
    outcome = _Outcome(plan)
    started = time.monotonic()
    attrs: dict[str, Any] = {"api": "cora", "dry_run": dry_run, "requests": 0}

    def finish() -> pd.DataFrame:
        attrs["duration_s"] = round(time.monotonic() - started, 3)
        return outcome.frame(plan.source_index, attrs)

    eta = max(0, plan.n_chunks - 1) * client.min_interval + client.limiter.wait_time()
    label = "Cora dry run" if dry_run else "Cora upsert"
    with RunProgress(len(plan.positions), label, enabled=progress, eta=eta) as bar:
        try:
            for batch, positions, body in plan.bodies(
                dry_run=dry_run, include_changes=include_changes
            ):
                answer = client.bulk_upsert_raw(body)
                attrs["requests"] += 1
                outcome.merge(answer, positions, batch)
                bar.advance(len(positions), outcome.counts)
        except RecocoraError as exc:
            exc.result = finish()
            raise
    return finish()


def changes_table(result: pd.DataFrame) -> pd.DataFrame:
    """Long form of a result's ``cora_changes``: one row per changed field, with columns
    ``index`` (the input row's label), ``externalId``, ``field``, ``from``, ``to``.

    >>> changes_table(res)  # doctest: +SKIP
    """
    columns = ["index", "externalId", "field", "from", "to"]
    if "cora_changes" not in result:
        raise ValueError("not a Cora result frame: it has no cora_changes column")
    has = result["cora_changes"].map(lambda v: isinstance(v, list) and len(v) > 0)
    records = []
    ids = result.get("cora_external_id")
    for label, changes in result.loc[has, "cora_changes"].items():
        ext = ids.loc[label] if ids is not None else None
        for ch in changes:
            records.append(
                {"index": label, "externalId": ext, "field": ch.get("field"),
                 "from": ch.get("from"), "to": ch.get("to")}
            )
    return pd.DataFrame(records, columns=columns, dtype=object)  # type: ignore[no-any-return]
