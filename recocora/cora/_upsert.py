"""``df.cora.upsert()``: validate the whole frame, then chunk, sign, send and merge back.

The data walks one way: columns renamed → schema checked on every row → valid rows built
into bodies one chunk of 500 at a time (serialised once, those bytes signed and sent) →
each answer's per-row ``index`` mapped through the chunk's positions back to the input's
index. Every input row ends with exactly one ``cora_status``.

With a journal (:mod:`recocora._journal`) each answer's rows are recorded as it arrives, and a
re-run sends only the rows never acknowledged, changed since, or failed; the rest come back
``skipped``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from .._display import as_result
from .._journal import (
    Ack,
    FailureLimit,
    Journal,
    JournalError,
    JournalSpec,
    RunInterrupted,
    TooManyFailedError,
    deferred_interrupt,
    open_journal,
    resend_rows,
    row_hashes,
)
from .._progress import RunProgress
from .._report import CORA_STATUSES as STATUSES
from .._transport import failed_request_note
from .._validation import failure_frame, valid_mask, validation_error
from .._wire import RowBuilder, chunk_slices, dumps, object_array
from ..errors import RecocoraError, ValidationError
from . import _schema as schema
from ._client import CoraClient

__all__ = [
    "RESEND_STATUSES",
    "RESULT_COLUMNS",
    "STATUSES",
    "UpsertPlan",
    "plan_upsert",
    "upsert",
]

SERVER_STATUSES = frozenset({"created", "updated", "unchanged", "failed"})
_SERVER_STATUS = {s: s for s in SERVER_STATUSES}
_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default text dtype
#: Statuses a journal counts as applied: rows with them and unchanged content are skipped.
APPLIED = ("created", "updated", "unchanged")
#: Statuses that ``only=`` sends again.
RESEND_STATUSES = ("failed", "not_sent")
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


class _Chunk(NamedTuple):
    """One request's worth: its number, the input positions of its rows, the body, and (with
    a journal) each row's ``externalId`` and the hash of the row as sent."""

    batch: int
    positions: np.ndarray
    body: bytes
    keys: list[Any]
    hashes: list[bytes]


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
    ) -> Iterator[_Chunk]:
        """One :class:`_Chunk` per request, each body built just before use."""
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
            yield _Chunk(batch, self.positions[picked], body, keys,
                         row_hashes(rows) if hashes else [])

    def bodies(
        self, *, dry_run: bool, include_changes: bool
    ) -> Iterator[tuple[int, np.ndarray, bytes]]:
        """``(batch, input positions, body)`` per chunk, each body built just before use."""
        for chunk in self.chunks(dry_run=dry_run, include_changes=include_changes):
            yield chunk.batch, chunk.positions, chunk.body


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

    def acks(self, chunk: _Chunk) -> list[Ack]:
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
        if ids.dtype == _STR:
            return ids.array  # already the result's dtype: shared, no Python strings made
        return ids.astype(object).where(ids.notna(), None).to_numpy()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
    journal: JournalSpec = None,
    force: bool = False,
    max_failed: int | float | None = None,
    only: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Create or update Cora accounts from ``df``; see :meth:`CoraAccessor.upsert`.

    >>> res = upsert(df, cora, journal="backfill.db", max_failed=0.05)  # doctest: +SKIP
    """
    limit = FailureLimit(max_failed)
    options: dict[str, Any] = {
        "dry_run": dry_run, "include_changes": include_changes, "columns": columns,
        "on_invalid": on_invalid, "mode": mode, "progress": progress, "journal": journal,
        "force": force, "max_failed": max_failed,
    }
    if only is not None:
        return _resend(df, only, client, options)
    plan = plan_upsert(
        df, columns=columns, on_invalid=on_invalid, mode=mode,
        max_rows=client.MAX_ROWS if client is not None else CoraClient.MAX_ROWS,
    )
    own = client is None
    cora = CoraClient() if client is None else client
    try:
        book = open_journal(journal, api="cora", base_url=cora.base_url, key_label=cora.key_id)
        try:
            return _execute(plan, cora, book, dry_run=dry_run, include_changes=include_changes,
                            progress=progress, force=force, limit=limit)
        finally:
            if book is not None:
                book.close()
    finally:
        if own:
            cora.close()


def _skip_acknowledged(plan: UpsertPlan, outcome: _Outcome, book: Journal) -> None:
    """Mark the rows the journal holds as applied with identical content ``skipped``."""
    previous = book.applied()
    if previous.empty or not len(plan.positions):
        return
    keys, hashes = plan.digests()
    found = previous.reindex(pd.Index(keys, dtype=object))
    same = found["hash"].to_numpy(dtype=object) == np.array(hashes, dtype=object)
    applied = found["status"].isin(APPLIED).to_numpy(dtype=bool)
    skip = applied & same
    if not skip.any():
        return
    outcome.mark_skipped(plan.positions[skip], found.loc[skip])
    plan.selected = np.flatnonzero(~skip)


def _execute(
    plan: UpsertPlan, client: CoraClient, book: Journal | None, *, dry_run: bool,
    include_changes: bool, progress: bool, force: bool, limit: FailureLimit,
) -> pd.DataFrame:
    outcome = _Outcome(plan)
    started = time.monotonic()
    attrs: dict[str, Any] = {"api": "cora", "dry_run": dry_run, "requests": 0, "rows_sent": 0}
    run = 0
    if book is not None:
        if not force:
            _skip_acknowledged(plan, outcome, book)
        attrs["journal"] = str(book.path)
        attrs["skipped"] = outcome.counts["skipped"]
        run = attrs["run"] = book.begin_run(
            dry_run=dry_run, rows=len(plan.source_index), to_send=len(plan.to_send),
            skipped=outcome.counts["skipped"],
        )

    def finish(how: str) -> pd.DataFrame:
        attrs["duration_s"] = round(time.monotonic() - started, 3)
        if book is not None:
            with contextlib.suppress(JournalError):  # already failing: keep that error
                book.end_run(run, how)
        return outcome.frame(plan.source_index, attrs)

    eta = max(0, plan.n_chunks - 1) * client.min_interval + client.limiter.wait_time()
    label = "Cora dry run" if dry_run else "Cora upsert"
    failed = 0
    inflight: _Chunk | None = None
    with RunProgress(len(plan.to_send), label, enabled=progress, eta=eta) as bar:
        try:
            for chunk in plan.chunks(
                dry_run=dry_run, include_changes=include_changes, hashes=book is not None
            ):
                inflight = chunk
                answer = client.bulk_upsert_raw(chunk.body)
                # Merged and committed as one step: a Ctrl-C here waits until both are done.
                with deferred_interrupt():
                    outcome.merge(answer, chunk.positions, chunk.batch)
                    attrs["requests"] += 1
                    attrs["rows_sent"] += len(chunk.positions)
                    if book is not None:
                        book.record(outcome.acks(chunk), run=run, dry_run=dry_run,
                                    batch=chunk.batch)
                    inflight = None
                bar.advance(len(chunk.positions), outcome.counts)
                failed += int(np.count_nonzero(outcome.status[chunk.positions] == "failed"))
                if limit.exceeded(failed, attrs["rows_sent"]):
                    raise TooManyFailedError(
                        f"Stopped after {attrs['requests']} request(s): {failed:,} of the "
                        f"{attrs['rows_sent']:,} rows sent failed, more than "
                        f"{limit.describe()}. The rows not sent yet are 'not_sent' in "
                        ".result; fix the failed rows, then send the rest with "
                        "df.cora.upsert(client, only=exc.result)."
                    )
        except KeyboardInterrupt:
            if inflight is not None:
                outcome.mark_unknown(inflight.positions, _INTERRUPTED)
            result = finish("interrupted")
            raise RunInterrupted(_interrupted_message(attrs, outcome.counts, book),
                                 result) from None
        except RecocoraError as exc:
            if inflight is not None:
                outcome.mark_unknown(inflight.positions, failed_request_note(exc, "Cora"))
            exc.result = finish(f"stopped: {type(exc).__name__}")
            raise
    return finish("completed")


_INTERRUPTED = (
    "interrupted while the request carrying this row was in flight: whether Cora applied it "
    "is unknown, and re-sending it is safe"
)


def _interrupted_message(attrs: dict[str, Any], counts: dict[str, int],
                         book: Journal | None) -> str:
    answered = sum(counts[s] for s in SERVER_STATUSES)
    text = (
        f"Cora upsert interrupted after {attrs['requests']} answered request(s): "
        f"{answered:,} rows acknowledged, {counts['not_sent']:,} not sent. The partial "
        "result is in .result."
    )
    if book is not None:
        text += f" Every answer is in the journal {str(book.path)!r}: run the same call " \
                "again to send only the rest."
    else:
        text += " df.cora.upsert(client, only=<that result>) sends only the rest."
    return text


def _resend(df: pd.DataFrame, previous: pd.DataFrame, client: CoraClient | None,
            options: dict[str, Any]) -> pd.DataFrame:
    """``only=previous``: send the rows ``previous`` marks failed or not_sent, and return
    ``previous`` with their new outcomes."""
    if not isinstance(previous, pd.DataFrame) or "cora_status" not in previous:
        raise TypeError("only= takes the result frame of an earlier df.cora.upsert")
    if (previous.attrs.get("dry_run") or previous.attrs.get("preview")) and not options[
        "dry_run"
    ]:
        raise ValueError(
            "only= was given the result of a dry run or preview: none of its rows were "
            "applied, so re-sending only its failed rows would leave the others unwritten. "
            "Run the full upsert instead."
        )
    return resend_rows(
        df, previous, "cora_status", lambda rows: upsert(rows, client, **options),
        RESEND_STATUSES, {"requests": 0, "rows_sent": 0, "resent": 0},
    )
