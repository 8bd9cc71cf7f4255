"""``map_ids``: write a frame's CRM ids onto Recotap accounts by domain, honestly, row by row.

The Map External IDs endpoint overwrites an existing id without warning and lets the last of
repeated domains win silently. ``map_ids`` decides both before anything is sent:

1. The whole frame is validated first (:mod:`recocora.recotap._schema`); nothing is sent if a
   row is invalid, unless ``on_invalid="skip"``.
2. Rows sharing a normalised domain: the last one wins, the earlier ones are ``superseded``.
   Each domain is therefore sent at most once, so the outcome never depends on how rows are
   split into requests or in which order concurrent requests land.
3. Unless ``overwrite=True``, the accounts' current ids are read first; rows whose account
   already holds a different id are ``already_mapped``, rows whose account holds the same id
   are ``unchanged``, and neither is sent.
4. The rest go out in requests of the client's ``MAX_MAPPINGS``, up to its
   ``max_concurrency`` at once; domains in ``notFound`` are ``not_found``, the others
   ``mapped`` when the answer's counts say all of them were written, else read back
   and given what each holds. ``verify=True`` reads every account back and marks
   ids that did not land ``failed``.

With a journal (:mod:`recocora._journal`), every answer's mappings are recorded as it arrives;
a re-run skips the mappings already acknowledged with the same id (``skipped``) before any
read or write, so it sends only what is new, changed, or not yet acknowledged.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Literal

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
    key_fingerprint,
    open_journal,
    resend_rows,
    row_hashes,
)
from .._progress import RunProgress
from .._report import RECOTAP_STATUSES as STATUSES
from .._transport import failed_request_note
from .._wire import chunk_slices, dumps, object_array
from ..errors import RecocoraError
from ._client import RecotapClient
from ._readback import ABSENT as _ABSENT
from ._readback import lookup as _lookup
from ._readback import read_held, settle_batch
from ._schema import prepare_checked, superseded_by, superseded_mask, validation_error

__all__ = ["RESEND_STATUSES", "RESULT_COLUMNS", "STATUSES", "diff", "map_ids"]

#: Statuses a journal counts as done: such rows with the same id are skipped next time.
APPLIED = ("mapped", "unchanged")
#: Statuses that ``only=`` sends again.
RESEND_STATUSES = ("failed", "not_sent")

RESULT_COLUMNS = (
    "recotap_status",
    "recotap_domain",
    "recotap_external_id",
    "recotap_existing_id",
    "recotap_batch",
    "recotap_message",
    "recotap_previous_status",
)

OnInvalid = Literal["raise", "skip"]


def map_ids(
    df: pd.DataFrame,
    client: RecotapClient | None = None,
    domain: Hashable = "domain",
    external_id: Hashable = "externalId",
    overwrite: bool = False,
    verify: bool = False,
    on_invalid: OnInvalid = "raise",
    progress: bool = True,
    journal: JournalSpec = None,
    force: bool = False,
    max_failed: int | float | None = None,
    only: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Write each row's ``external_id`` onto the Recotap account with the row's ``domain``.

    Returns one row per input row, with ``df``'s index, so ``df.join(result)`` lines up:

    - ``recotap_status``: ``mapped``, ``unchanged``, ``not_found``, ``already_mapped``,
      ``superseded``, ``invalid``, ``failed`` (``verify=True`` found the id missing) or
      ``not_sent`` (the run stopped first);
    - ``recotap_domain``: the normalised domain sent (``https://www.Acme.com/`` →
      ``acme.com``); ``recotap_external_id``: the id sent (``123.0`` → ``"123"``);
    - ``recotap_existing_id``: the id the account held before, when it was read
      (``overwrite=False`` reads it);
    - ``recotap_batch``: the 0-based request that carried the row;
    - ``recotap_message``: why, for every row that was not simply mapped;
    - ``recotap_previous_status``: for ``skipped`` rows, the status the journal holds.

    ``attrs`` carry the summary: ``requests`` (mapping requests answered), ``read_requests``,
    ``matched`` and ``updated`` (summed from the answers), ``read_back`` (answers whose
    counts did not say which rows were written, so their accounts were read back),
    ``not_found`` (rows), ``counts`` (by status), ``duration`` (seconds), ``overwrite`` and
    ``verified``.

    A row is ``mapped`` only when the answer says so. When ``matched`` exceeds ``updated``
    (an account matched but not written, or already holding the id) and ``notFound`` does not
    say which, that request's accounts are read back and each row gets what its account
    holds (``failed`` when the id is not there), with a message saying so. Domains go out
    in the spelling Recotap lists them in (Unicode or punycode), where a read showed it.

    With ``overwrite=False`` (the default) no existing id is ever replaced. ``on_invalid=
    "raise"`` sends nothing when a row is invalid and raises
    :class:`~recocora.errors.ValidationError` with ``.failure_cases``; ``"skip"`` sends the
    valid rows. An error that stops the run (auth, retries spent) carries the partial result
    in ``.result``: acknowledged rows keep their status, the rest are ``not_sent``. Re-running
    is safe: a mapping write is idempotent, and rows already mapped come back ``unchanged``.

    Long runs: ``journal="mappings.db"`` (or ``True``, a file in the cache directory) records
    every answer; re-running the same call skips mappings already acknowledged (``mapped`` or
    ``unchanged``) with the same id, before any read or write: they come back ``skipped``.
    ``force=True`` sends them again. ``max_failed`` (a count, or a fraction of the rows sent)
    stops the run once more mappings came back ``not_found`` (a sign of a wrong domain
    column), raising
    :class:`~recocora.TooManyFailedError` with the partial result. Ctrl-C raises
    :class:`~recocora.RunInterrupted` (a ``KeyboardInterrupt``) carrying ``.result``;
    answers that arrived are recorded, requests still in flight are left unacknowledged.
    ``only=res`` maps just the rows ``res`` (an earlier result of this frame) marks
    ``failed`` or ``not_sent`` and returns ``res`` with their new outcomes:
    ``res = map_ids(crm, rtp, only=res)``.

    >>> crm = pd.DataFrame({"domain": ["https://www.acme.com/", "globex.com"],
    ...                     "externalId": ["crm-001", "crm-002"]})
    >>> map_ids(crm, client=rtp)["recotap_status"].tolist()  # doctest: +SKIP
    ['mapped', 'not_found']
    """
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
    limit = FailureLimit(max_failed)
    if only is not None:
        return _resend(df, only, client, {
            "domain": domain, "external_id": external_id, "overwrite": overwrite,
            "verify": verify, "on_invalid": on_invalid, "progress": progress,
            "journal": journal, "force": force, "max_failed": max_failed,
        })
    run = _Run(df, domain, external_id, on_invalid)
    own = client is None
    rtp = RecotapClient() if client is None else client
    try:
        # Recotap keys have no public id: the journal files rows under a one-way fingerprint.
        book = open_journal(journal, api="recotap", base_url=rtp.base_url,
                            key_label=key_fingerprint(rtp._key))
        try:
            return run.execute(rtp, overwrite=overwrite, verify=verify, progress=progress,
                               book=book, force=force, limit=limit)
        finally:
            if book is not None:
                book.close()
    finally:
        if own:
            rtp.close()


def _resend(df: pd.DataFrame, previous: pd.DataFrame, client: RecotapClient | None,
            options: dict[str, Any]) -> pd.DataFrame:
    """``only=previous``: map the rows ``previous`` marks failed or not_sent again."""
    if not isinstance(previous, pd.DataFrame) or "recotap_status" not in previous:
        raise TypeError("only= takes the result frame of an earlier df.recotap.map_ids")
    if previous.attrs.get("preview"):
        raise ValueError(
            "only= was given the result of a preview: none of its rows were written, so "
            "re-sending only some of them would leave the others unwritten. Run map_ids "
            "on the whole frame instead."
        )
    return resend_rows(
        df, previous, "recotap_status", lambda rows: map_ids(rows, client, **options),
        RESEND_STATUSES, {"requests": 0, "read_requests": 0, "resent": 0},
    )


class _Run:
    """The state of one ``map_ids`` call, held positionally (row *i* of the input)."""

    def __init__(self, df: pd.DataFrame, domain: Hashable, external_id: Hashable,
                 on_invalid: OnInvalid) -> None:
        self.started = time.monotonic()
        self.index = df.index
        self.n = n = len(df)
        prepared, failures = prepare_checked(df, domain=domain, external_id=external_id)
        if len(failures) and on_invalid == "raise":
            raise validation_error(failures)
        self.domains = _objects(prepared["domain"])
        self.ids = _objects(prepared["externalId"])
        ready = prepared.notna().all(axis=1).to_numpy(dtype=bool)

        self.status = object_array(n, "not_sent")
        self.message = np.full(n, None, dtype=object)
        self.existing = np.full(n, None, dtype=object)
        self.batch = np.full(n, -1, dtype=np.int64)
        self.previous = np.full(n, None, dtype=object)
        self.summary: dict[str, Any] = {
            "requests": 0, "read_requests": 0, "matched": 0, "updated": 0, "read_back": 0,
        }
        self.book: Journal | None = None
        self.run_id = 0
        self.limit = FailureLimit(None)

        invalid = np.flatnonzero(~ready)
        if len(invalid):
            self.status[invalid] = "invalid"
            self.message[invalid] = _invalid_messages(failures, df.index, invalid)

        wanted = prepared["domain"].where(pd.Series(ready, index=prepared.index))
        lost = superseded_mask(wanted).to_numpy(dtype=bool)
        if lost.any():
            winners = superseded_by(wanted).to_numpy(dtype=object)[lost]
            self.status[lost] = "superseded"
            self.message[lost] = [
                f"row {w!r} later in the frame has the same domain and wins; not sent"
                for w in winners
            ]
        self.candidates = np.flatnonzero(ready & ~lost)

    # -- the run ----------------------------------------------------------------------------

    def execute(self, client: RecotapClient, *, overwrite: bool, verify: bool,
                progress: bool, book: Journal | None = None, force: bool = False,
                limit: FailureLimit | None = None) -> pd.DataFrame:
        self.book, self.limit = book, limit or FailureLimit(None)
        if book is not None:
            if not force:
                self._skip_acknowledged(book)
            skipped = int(np.count_nonzero(self.status == "skipped"))
            self.summary.update(journal=str(book.path), skipped=skipped)
            self.run_id = self.summary["run"] = book.begin_run(
                dry_run=False, rows=self.n, to_send=len(self.candidates), skipped=skipped
            )
        with RunProgress(self.n, "Recotap map_ids", enabled=progress) as bar:
            self.bar = bar
            settled = self.n - len(self.candidates)
            try:
                to_send = self.candidates if overwrite else self._guard(client)
                with deferred_interrupt():
                    # The read answered for these: the journal need not ask again.
                    self._record(self.candidates[self.status[self.candidates] == "unchanged"])
                settled += len(self.candidates) - len(to_send)
                bar.advance(settled, self.counts())
                self._send(client, to_send)
                if verify:
                    self._verify(client)
            except KeyboardInterrupt:
                result = self.result(overwrite=overwrite, verified=False)
                self._end("interrupted")
                raise RunInterrupted(self._interrupted_message(), result) from None
            except RecocoraError as exc:
                exc.result = self.result(overwrite=overwrite, verified=False)
                self._end(f"stopped: {type(exc).__name__}")
                raise
        self._end("completed")
        return self.result(overwrite=overwrite, verified=verify)

    # -- the journal ------------------------------------------------------------------------

    def _mappings(self, rows: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
        return [
            {"domain": d, "externalId": i}
            for d, i in zip(self.domains[rows], self.ids[rows], strict=True)
        ]

    def _skip_acknowledged(self, book: Journal) -> None:
        """Settle the candidates the journal holds as done with this exact mapping."""
        rows = self.candidates
        if not len(rows):
            return
        previous = book.applied()
        if previous.empty:
            return
        found = previous.reindex(pd.Index(self.domains[rows].tolist(), dtype=object))
        hashes = np.array(row_hashes(self._mappings(rows)), dtype=object)
        same = found["hash"].to_numpy(dtype=object) == hashes
        skip = same & found["status"].isin(APPLIED).to_numpy(dtype=bool)
        if not skip.any():
            return
        done = rows[skip]
        status = found["status"].to_numpy(dtype=object)[skip]
        acked = found["acked_at"].to_numpy(dtype=object)[skip]
        self.status[done] = "skipped"
        self.previous[done] = status
        self.message[done] = [
            f"not re-sent: the journal holds this exact mapping as {s!r} since {a}; "
            "force=True sends it again"
            for s, a in zip(status, acked, strict=True)
        ]
        self.candidates = rows[~skip]

    def _record(self, rows: np.ndarray[Any, Any]) -> None:
        """Record the outcome of ``rows`` (one answer's) in the journal, in one transaction."""
        if self.book is None or not len(rows):
            return
        hashes = row_hashes(self._mappings(rows))
        acks = [
            Ack(str(d), h, str(s), external_id=str(i))
            for d, i, s, h in zip(self.domains[rows], self.ids[rows], self.status[rows], hashes,
                                  strict=True)
        ]
        first = int(self.batch[rows[0]])
        self.book.record(acks, run=self.run_id, dry_run=False,
                         batch=first if first >= 0 else None)

    def _end(self, how: str) -> None:
        if self.book is not None:
            with contextlib.suppress(JournalError):  # already failing: keep that error
                self.book.end_run(self.run_id, how)

    def _interrupted_message(self) -> str:
        counts = self.counts()
        text = (
            f"Recotap map_ids interrupted after {self.summary['requests']} answered mapping "
            f"request(s): {counts.get('not_sent', 0):,} rows not sent. The partial result "
            "is in .result."
        )
        if self.book is not None:
            text += (f" Every answer is in the journal {str(self.book.path)!r}: run the same "
                     "call again to send only the rest.")
        else:
            text += " map_ids(..., only=<that result>) sends only the rest."
        return text

    def _guard(self, client: RecotapClient) -> np.ndarray[Any, Any]:
        """Read the candidates' accounts; settle the rows that must not be sent."""
        if not len(self.candidates):
            return self.candidates
        try:
            found, reads = client.fetch_by_domain(self.domains[self.candidates].tolist())
        except RecocoraError as exc:
            self.message[self.candidates] = (
                f"not sent: reading the accounts' current ids failed ({exc})"
            )
            raise
        self.summary["read_requests"] += reads
        rows = self.candidates
        held = np.array(_lookup(found, self.domains[rows]), dtype=object)
        has = np.array([h is not None for h in held], dtype=bool)
        same = has & (held == self.ids[rows])
        other = has & ~same
        self.existing[rows[has]] = held[has]
        self.status[rows[same]] = "unchanged"
        self.message[rows[same]] = "the account already holds this id; not sent"
        self.status[rows[other]] = "already_mapped"
        self.message[rows[other]] = [
            f"the account already holds {h!r}; not sent (pass overwrite=True to replace it)"
            for h in held[other]
        ]
        unsent: np.ndarray[Any, Any] = rows[~has]
        return unsent

    def _send(self, client: RecotapClient, rows: np.ndarray[Any, Any]) -> None:
        self.client = client
        self._learn_spellings(client, rows)
        size = client.MAX_MAPPINGS
        batches = [rows[s] for s in chunk_slices(len(rows), size)]
        for b, positions in enumerate(batches):
            self.batch[positions] = b
        error: RecocoraError | None = None
        pending: dict[Future[dict[str, Any]], int] = {}
        following = 0
        tally = {"sent": 0, "failed": 0}
        # Not a with-block: after a Ctrl-C the requests in flight must not be waited for.
        pool = ThreadPoolExecutor(max_workers=client.max_concurrency)
        try:
            while pending or (error is None and following < len(batches)):
                # Top up the pool; after an error only the requests in flight are awaited.
                while error is None and following < len(batches) and (
                    len(pending) < client.max_concurrency
                ):
                    body = self._body(batches[following])
                    pending[pool.submit(client.map_external_ids_raw, body)] = following
                    following += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    # Popped, merged and recorded as one step: a Ctrl-C waits for all three.
                    with deferred_interrupt():
                        b = pending.pop(future)
                        stop = self._settle(future, batches[b], tally)
                    error = error or stop
        except KeyboardInterrupt:
            with deferred_interrupt():
                for future, b in pending.items():
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._settle(future, batches[b], tally)
                    else:
                        self.message[batches[b]] = (
                            "interrupted while the request carrying this row was in flight: "
                            "whether it was written is unknown, and re-sending it is safe"
                        )
                self._unsent(batches[following:], "not sent: the run was interrupted")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            self._unsent(batches[following:], "not sent: the run stopped after an error")
            raise
        pool.shutdown(wait=True)
        self._unsent(batches[following:], "not sent: the run stopped after an error")
        if error is not None:
            raise error

    def _settle(self, future: Future[dict[str, Any]], rows: np.ndarray[Any, Any],
                tally: dict[str, int]) -> RecocoraError | None:
        """Merge and record one finished request; the error that must stop the run, if any."""
        try:
            answer = future.result()
        except RecocoraError as exc:
            self.message[rows] = failed_request_note(exc, "Recotap")
            return exc
        try:
            self._apply(rows, answer)
        except RecocoraError as exc:  # reading back failed: the rows stay unacknowledged
            return exc
        self._record(rows)
        self.bar.advance(len(rows), self.counts())
        tally["sent"] += len(rows)
        tally["failed"] += int(np.count_nonzero(self.status[rows] == "not_found"))
        if self.limit.exceeded(tally["failed"], tally["sent"]):
            return TooManyFailedError(
                f"Stopped: {tally['failed']:,} of the {tally['sent']:,} mappings sent came "
                f"back not_found, more than {self.limit.describe()}. Check the domain "
                "column; the rows not sent yet are 'not_sent' in .result, and "
                "map_ids(..., only=exc.result) sends them."
            )
        return None

    def _unsent(self, batches: list[np.ndarray[Any, Any]], why: str) -> None:
        for positions in batches:
            self.batch[positions] = -1
            self.message[positions] = why

    def _body(self, rows: np.ndarray[Any, Any]) -> bytes:
        # Built just before its request leaves, so a big frame never has every body in memory.
        # Each domain goes in the spelling Recotap lists it in, where an answer showed it.
        spelled = self.client.spelled(self.domains[rows].tolist())
        return dumps({"mappings": [
            {"domain": d, "externalId": i} for d, i in zip(spelled, self.ids[rows], strict=True)
        ]})

    def _learn_spellings(self, client: RecotapClient, rows: np.ndarray[Any, Any]) -> None:
        """Read the accounts of internationalised domains whose spelling at Recotap no answer
        has shown yet (the overwrite guard reads the others): sent in punycode, they would
        be not found by a Recotap that stores Unicode."""
        if not len(rows):
            return
        domains = pd.Series(self.domains[rows], dtype=object)
        idn = domains[domains.str.contains("xn--", regex=False).fillna(False).astype(bool)]
        unknown = [d for d in idn.tolist() if not client.knows_spelling(d)]
        if unknown:
            self.summary["read_requests"] += client.fetch_by_domain(unknown)[1]

    def _apply(self, rows: np.ndarray[Any, Any], answer: dict[str, Any]) -> None:
        self.summary["requests"] += 1
        self.summary["matched"] += answer["matched"]
        self.summary["updated"] += answer["updated"]
        # Rows are mapped only where the answer says so; else read back (see _readback).
        try:
            outcome = settle_batch(self.client, self.domains[rows], self.ids[rows], answer)
        except RecocoraError as exc:
            self.message[rows] = (
                "sent, but Recotap's answer did not say which rows were written and reading "
                f"them back failed ({exc}); re-sending is safe"
            )
            raise
        self.status[rows], self.message[rows] = outcome.status, outcome.message
        self.summary["read_requests"] += outcome.reads
        self.summary["read_back"] += outcome.read_back

    def _verify(self, client: RecotapClient) -> None:
        rows = np.flatnonzero(self.status == "mapped")
        if not len(rows):
            return
        held, reads = read_held(client, self.domains[rows])
        self.summary["read_requests"] += reads
        absent = np.array([h is _ABSENT for h in held], dtype=bool)
        wrong = ~absent & (held != self.ids[rows])
        self.status[rows[absent | wrong]] = "failed"
        self.message[rows[absent]] = "read back after writing: no account with this domain"
        self.message[rows[wrong]] = [
            f"read back after writing: the account holds {h!r}, not the id sent"
            for h in held[wrong]
        ]
        with deferred_interrupt():
            # A mapping that did not land must be sent again next time.
            self._record(rows[absent | wrong])
        self.bar.advance(0, self.counts())

    # -- the answer -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        tally = Counter(self.status.tolist())
        return {s: tally[s] for s in STATUSES if tally[s]}

    def result(self, *, overwrite: bool, verified: bool) -> pd.DataFrame:
        batch = pd.array(self.batch, dtype="Int64")
        batch[self.batch < 0] = pd.NA
        frame: pd.DataFrame = pd.DataFrame(
            {
                "recotap_status": pd.array(self.status, dtype="string"),
                "recotap_domain": pd.array(self.domains, dtype="string"),
                "recotap_external_id": pd.array(self.ids, dtype="string"),
                "recotap_existing_id": pd.array(self.existing, dtype="string"),
                "recotap_batch": batch,
                "recotap_message": pd.array(self.message, dtype="string"),
                "recotap_previous_status": pd.array(self.previous, dtype="string"),
            },
            index=self.index,
        )
        counts = self.counts()
        frame.attrs.update(
            self.summary,
            not_found=counts.get("not_found", 0),
            counts=counts,
            duration=round(time.monotonic() - self.started, 3),
            overwrite=overwrite,
            verified=verified,
        )
        return as_result(frame)

    # -- the preview ------------------------------------------------------------------------

    def preview(self, client: RecotapClient, *, overwrite: bool,
                progress: bool) -> pd.DataFrame:
        """What :meth:`execute` would do to every row, from the accounts' current state;
        sends no mapping. Validation and last-wins already settled ``invalid`` and
        ``superseded``; the overwrite guard settles ``unchanged`` and ``already_mapped`` as in
        a real run; one more read splits the rows left to send into ``not_found`` (no account
        has the domain) and ``mapped``."""
        with RunProgress(self.n, "Recotap preview", enabled=progress) as bar:
            self.bar = bar
            try:
                to_send = self.candidates if overwrite else self._guard(client)
                self._foresee(client, to_send)
            except RecocoraError as exc:
                exc.result = self._preview_result(client, overwrite)
                raise
            bar.advance(self.n, self.counts())
        return self._preview_result(client, overwrite)

    def _foresee(self, client: RecotapClient, rows: np.ndarray[Any, Any]) -> None:
        """Settle the rows a real run would send, as its answers would."""
        for b, positions in enumerate(chunk_slices(len(rows), self._batch_size(client))):
            self.batch[rows[positions]] = b
        if not len(rows):
            return
        held, reads = read_held(client, self.domains[rows])
        self.summary["read_requests"] += reads
        absent = np.array([h is _ABSENT for h in held], dtype=bool)
        self.status[rows[absent]] = "not_found"
        self.message[rows[absent]] = "no Recotap account has this domain (the write would say so)"
        hit, kept = rows[~absent], held[~absent]
        self.status[hit] = "mapped"
        self.existing[hit] = kept
        ids = self.ids[hit]
        self.message[hit] = [
            "would be written" if h is None
            else "would be written again; the account already holds this id" if h == i
            else f"would replace {h!r} (overwrite=True)"
            for h, i in zip(kept, ids, strict=True)
        ]

    @staticmethod
    def _batch_size(client: RecotapClient) -> int:
        return client.MAX_MAPPINGS

    def _preview_result(self, client: RecotapClient, overwrite: bool) -> pd.DataFrame:
        frame = self.result(overwrite=overwrite, verified=False)
        sent = int(np.count_nonzero(self.batch >= 0))
        frame.attrs.update(
            preview="local", dry_run=True,
            bulk_requests=-(-sent // self._batch_size(client)),
        )
        return frame


def _invalid_messages(
    cases: pd.DataFrame, index: pd.Index, invalid: np.ndarray[Any, Any]
) -> Sequence[str]:
    """One message per invalid row (in ``invalid``'s order), naming each failing column and
    why, from the failure cases validation already produced."""
    shown = cases["value"].map(repr).where(cases["check"] != "not_nullable", "")
    text = (
        "invalid, not sent: " + cases["column"].astype(str) + " "
        + (shown + " ").where(shown != "", "") + cases["message"].astype(str)
    )
    positions = index.get_indexer(pd.Index(cases["index"].tolist()))
    joined = text.groupby(positions).agg("; ".join)
    messages: list[str] = joined.reindex(invalid, fill_value="invalid, not sent").tolist()
    return messages


def _objects(series: pd.Series[Any]) -> np.ndarray[Any, Any]:
    """The values as an object array, missing ones as ``None``."""
    values = series.to_numpy(dtype=object, copy=True)
    values[series.isna().to_numpy(dtype=bool)] = None
    return values


def diff(
    df: pd.DataFrame,
    client: RecotapClient | None = None,
    *,
    domain: Hashable = "domain",
    external_id: Hashable = "externalId",
    overwrite: bool = False,
    on_invalid: OnInvalid = "raise",
    progress: bool = True,
) -> pd.DataFrame:
    """What :func:`map_ids` would do to every row, worked out from the accounts' current
    state (read with ``GET /accounts?domains=``, 100 domains per request); writes nothing.

    Returns the frame ``map_ids`` returns, with ``recotap_status`` saying what would happen:
    ``mapped`` (would be written), ``unchanged``, ``already_mapped`` (unless ``overwrite``),
    ``superseded``, ``not_found`` (no account has the domain) or ``invalid``;
    ``recotap_existing_id`` holds the id each found account holds now, and
    ``recotap_message`` says what a write would replace. ``attrs``: ``preview="local"``,
    ``read_requests`` (GETs made), ``bulk_requests`` (mapping requests the real run needs).

    >>> crm = pd.DataFrame({"domain": ["acme.com", "globex.com"],
    ...                     "externalId": ["crm-001", "crm-002"]})
    >>> diff(crm, client=rtp)["recotap_status"].tolist()  # doctest: +SKIP
    ['mapped', 'not_found']
    """
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
    run = _Run(df, domain, external_id, on_invalid)
    rtp = RecotapClient() if client is None else client
    try:
        return run.preview(rtp, overwrite=overwrite, progress=progress)
    finally:
        if client is None:
            rtp.close()
