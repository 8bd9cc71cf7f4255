"""What ``df.cora.upsert()`` sends and what comes back: the plan and the outcome.

The data walks one way: columns renamed → schema checked on every row → valid rows built
into bodies one chunk of 500 at a time (serialised once, those bytes signed and sent) →
each answer's per-row ``index`` mapped through the chunk's positions back to the input's
index. Every input row ends with exactly one ``cora_status``.

The run itself (journal, failure limit, Ctrl-C, progress) is the shared run engine's; the Cora
adapter hands it this plan's batches and merges each answer into the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._compat import STR_DTYPE, text_cells
from .._display import as_result
from .._report import CORA_STATUSES as STATUSES
from .._run import Batch
from .._state import Ack, row_hashes
from .._validation import failure_frame, valid_mask, validation_error
from .._wire import RowBuilder, chunk_slices, dumps, object_array
from ..errors import ValidationError
from . import _schema as schema
from ._client import CoraClient

__all__ = [
    "APPLIED",
    "RESULT_COLUMNS",
    "STATUSES",
    "UpsertPlan",
    "plan_upsert",
]

SERVER_STATUSES = frozenset({"created", "updated", "unchanged", "failed"})
_SERVER_STATUS = {s: s for s in SERVER_STATUSES}
#: Statuses a journal counts as applied: rows with them and unchanged content are skipped.
APPLIED = ("created", "updated", "unchanged")
RESULT_COLUMNS = (
    "cora_status", "cora_account_id", "cora_updated_at", "cora_code", "cora_message",
    "cora_details", "cora_changes", "cora_batch", "cora_external_id", "cora_previous_status",
)
_OBJECT_COLUMNS = (
    "cora_account_id", "cora_updated_at", "cora_code", "cora_message", "cora_details",
    "cora_changes", "cora_previous_status",
)
OnInvalid = Literal["raise", "skip"]
Mode = Literal["upsert", "create"]
_DIGEST_STEP = 5000


@dataclass
class UpsertPlan:
    """What a run would send: the checked frame, its failures and the rows to send.

    ``positions`` are the input positions of the valid rows; ``selected`` (when a journal
    skipped some) picks, by their place in ``positions``, the ones still to send.
    """

    source_index: pd.Index
    prepared: pd.DataFrame
    failure_cases: pd.DataFrame
    valid: np.ndarray  # bool per input position
    positions: np.ndarray  # input positions of the rows to send, in order
    max_rows: int
    selected: np.ndarray | None = None
    _builder: RowBuilder | None = field(default=None, repr=False)

    @property
    def to_send(self) -> np.ndarray:
        """Input positions of the rows that will be sent, in order."""
        return self.positions if self.selected is None else self.positions[self.selected]

    @property
    def n_chunks(self) -> int:
        return math.ceil(len(self.to_send) / self.max_rows)

    def builder(self) -> RowBuilder:
        """One builder over every valid row, whatever is skipped, so a row serialises the
        same way (and hashes the same) on every run over the same frame."""
        if self._builder is None:
            if len(self.positions) == len(self.prepared):
                sendable = self.prepared
            else:
                sendable = self.prepared.iloc[self.positions]
            self._builder = RowBuilder(sendable)
        return self._builder

    def digests(self) -> tuple[list[Any], list[bytes]]:
        """``externalId`` and row hash of every valid row, built a few thousand at a time."""
        builder = self.builder()
        keys: list[Any] = []
        hashes: list[bytes] = []
        for sl in chunk_slices(len(self.positions), _DIGEST_STEP):
            rows = builder.rows(sl)
            keys.extend(r.get("externalId") for r in rows)
            hashes.extend(row_hashes(rows))
        return keys, hashes

    def chunks(
        self, *, dry_run: bool, include_changes: bool, hashes: bool = False
    ) -> Iterator[Batch]:
        """One batch per request, each body built just before use."""
        picked_all = self.selected
        n = len(self.positions) if picked_all is None else len(picked_all)
        if not n:
            return
        builder = self.builder()
        for batch, sl in enumerate(chunk_slices(n, self.max_rows)):
            if picked_all is None:
                rows = builder.rows(sl)
                picked = np.arange(sl.start, sl.stop)
            else:
                picked = picked_all[sl]
                rows = _gather(builder, picked)
            body = dumps(
                {"accounts": rows, "dryRun": dry_run, "includeChanges": include_changes}
            )
            keys = [r.get("externalId") for r in rows] if hashes else []
            yield Batch(batch, self.positions[picked], body, keys,
                        row_hashes(rows) if hashes else [])

    def bodies(
        self, *, dry_run: bool, include_changes: bool
    ) -> Iterator[tuple[int, np.ndarray, bytes]]:
        """``(batch, input positions, body)`` per chunk, each body built just before use."""
        for chunk in self.chunks(dry_run=dry_run, include_changes=include_changes):
            yield chunk.number, chunk.positions, chunk.body


def _gather(builder: RowBuilder, picked: np.ndarray) -> list[dict[str, Any]]:
    """Rows at sorted, possibly scattered builder positions, one call per contiguous run."""
    rows: list[dict[str, Any]] = []
    if not len(picked):
        return rows
    breaks = np.flatnonzero(np.diff(picked) != 1) + 1
    for run in np.split(picked, breaks):
        rows.extend(builder.rows(slice(int(run[0]), int(run[-1]) + 1)))
    return rows


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
        self.status = object_array(n, "not_sent")
        self.cols = {c: object_array(n, None) for c in _OBJECT_COLUMNS}
        self.batch = np.full(n, -1, dtype=np.int64)
        ids: Any = plan.prepared.get("externalId")
        if isinstance(ids, pd.DataFrame):  # duplicate column names: every row is invalid
            ids = ids.iloc[:, 0]
        #: The ids as sent, converted only when the result frame is built.
        self.external_ids: pd.Series | None = ids
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

    def mark_skipped(self, positions: np.ndarray, previous: pd.DataFrame) -> None:
        """Rows the journal holds as applied with this exact content: not sent again."""
        if not len(positions):
            return
        self.counts["not_sent"] -= len(positions)
        self.counts["skipped"] += len(positions)
        self.status[positions] = "skipped"
        status = previous["status"].to_numpy(dtype=object)
        acked = previous["acked_at"].to_numpy(dtype=object)
        self.cols["cora_previous_status"][positions] = status
        self.cols["cora_account_id"][positions] = previous["account_id"].to_numpy(dtype=object)
        self.cols["cora_updated_at"][positions] = previous["updated_at"].to_numpy(dtype=object)
        self.cols["cora_message"][positions] = [
            f"not re-sent: Cora answered {s!r} for this exact content at {a} (journal); "
            "force=True sends it again"
            for s, a in zip(status, acked, strict=True)
        ]

    def mark_unchanged(self, positions: np.ndarray, results: list[dict[str, Any]]) -> None:
        """Rows whose account already holds every value they carry (read before writing):
        not sent, ``skipped``."""
        if not len(positions):
            return
        self.counts["not_sent"] -= len(positions)
        self.counts["skipped"] += len(positions)
        self.status[positions] = "skipped"
        self.cols["cora_previous_status"][positions] = "unchanged"
        self.cols["cora_account_id"][positions] = [r.get("accountId") for r in results]
        self.cols["cora_updated_at"][positions] = [r.get("updatedAt") for r in results]
        self.cols["cora_message"][positions] = (
            "not sent: the account already holds these values (read just before writing; "
            "skip_unchanged=False sends it anyway)"
        )

    def mark_unknown(self, positions: np.ndarray, why: str) -> None:
        """The request carrying these rows got no usable answer."""
        unsent = positions[self.status[positions] == "not_sent"]
        self.cols["cora_message"][unsent] = why

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
            # The shared constant, not the parsed string: a million rows share four objects.
            self._set(pos, _SERVER_STATUS.get(status, "failed"))  # type: ignore[arg-type]
            self.batch[pos] = batch
            c = self.cols
            c["cora_account_id"][pos] = r.get("accountId")
            c["cora_updated_at"][pos] = r.get("updatedAt")
            c["cora_code"][pos] = r.get("code")
            c["cora_message"][pos] = r.get("message")
            c["cora_details"][pos] = r.get("details")
            c["cora_changes"][pos] = r.get("changes")
            if status not in _SERVER_STATUS and not r.get("code"):
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

    def acks(self, chunk: Batch) -> list[Ack]:
        """The journal's record of one answered chunk."""
        c = self.cols
        out = []
        for i, pos in enumerate(chunk.positions.tolist()):
            key = chunk.keys[i]
            if isinstance(key, str):
                out.append(Ack(key, chunk.hashes[i], str(self.status[pos]),
                               account_id=_text(c["cora_account_id"][pos]),
                               updated_at=_text(c["cora_updated_at"][pos]),
                               code=_text(c["cora_code"][pos])))
        return out

    def frame(self, index: pd.Index, attrs: dict[str, Any]) -> pd.DataFrame:
        """The result frame. Its columns take over this outcome's arrays (no copies: the
        outcome is finished when its frame is built)."""
        data: dict[str, Any] = {"cora_status": self.status}
        data.update({k: self.cols[k] for k in RESULT_COLUMNS[1:7]})
        data["cora_batch"] = pd.arrays.IntegerArray(self.batch, self.batch < 0)
        data["cora_external_id"] = self._external_id_column()
        data["cora_previous_status"] = self.cols["cora_previous_status"]
        try:
            out = pd.DataFrame(data, index=index, copy=False)
        except UnicodeEncodeError:
            # An id with broken UTF-16 (an invalid row) cannot be str dtype: keep objects.
            data["cora_external_id"] = pd.Series(data["cora_external_id"], index=index,
                                                 dtype=object)
            out = pd.DataFrame(data, index=index, copy=False)
        out.attrs.update(attrs)
        out.attrs["counts"] = {k: v for k, v in self.counts.items() if v}
        return as_result(out)

    def _external_id_column(self) -> Any:
        ids = self.external_ids
        if ids is None:
            return object_array(len(self.status), None)
        if ids.dtype == STR_DTYPE:
            return ids.array  # already the result's dtype: shared, no Python strings made
        return text_cells(ids.astype(object).where(ids.notna(), None).to_numpy())


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
