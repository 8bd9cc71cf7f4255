"""Recotap's side of a run: its options, and the adapters the run engine drives for
``map_ids`` and its preview.

The outcome (``Mappings``) validates the whole frame and
settles last-wins up front; the adapter reads the accounts' current ids (unless
``overwrite``), hands the engine batches of up to ``RecotapClient.MAX_MAPPINGS`` mappings, up to
``max_concurrency`` at once, merges each answer in :meth:`RecotapAdapter.merge` and, with
``verify``, reads the accounts back at the end.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._progress import Pace
from .._resend import resend_rows
from .._run import Batch, RunOptions, execute, own_client, preview
from .._state import Ack, key_fingerprint
from .._transport import failed_request_note
from .._wire import chunk_slices
from ..errors import RecocoraError
from ._client import RecotapClient
from ._mapping import Mappings, OnInvalid

__all__ = ["MapOptions", "RecotapAdapter", "diff", "map_ids"]


@dataclass(frozen=True)
class MapOptions(RunOptions):
    """Every option of ``df.recotap.map_ids`` (and of ``df.recotap.diff``, which reads the
    ones that shape the outcome), carried as one value to the run."""

    domain: Hashable = "domain"
    external_id: Hashable = "externalId"
    overwrite: bool = False
    verify: bool = False
    on_invalid: OnInvalid = "raise"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.on_invalid not in ("raise", "skip"):
            raise ValueError(f"on_invalid must be 'raise' or 'skip', not {self.on_invalid!r}")


def _outcome(df: pd.DataFrame, options: MapOptions) -> Mappings:
    return Mappings(df, options.domain, options.external_id, options.on_invalid)


def map_ids(df: pd.DataFrame, client: RecotapClient | None, options: MapOptions,
            only: pd.DataFrame | None = None) -> pd.DataFrame:
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
    ``matched`` and ``updated`` (summed from the answers), ``not_found`` (rows), ``counts`` (by
    status), ``duration`` (seconds), ``overwrite`` and ``verified``.

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
    ``res = map_ids(crm, rtp, MapOptions(), only=res)``.

    >>> crm = pd.DataFrame({"domain": ["https://www.acme.com/", "globex.com"],
    ...                     "externalId": ["crm-001", "crm-002"]})
    >>> map_ids(crm, rtp, MapOptions())["recotap_status"].tolist()  # doctest: +SKIP
    ['mapped', 'not_found']
    """
    if only is not None:
        return resend_rows(
            df, only, lambda rows: map_ids(rows, client, options),
            status_column="recotap_status", call="df.recotap.map_ids", dry_run=False,
            zero={"requests": 0, "read_requests": 0, "resent": 0},
        )
    outcome = _outcome(df, options)
    with own_client(client, RecotapClient) as rtp:
        return execute(RecotapAdapter(outcome, rtp, options), options)


def diff(df: pd.DataFrame, client: RecotapClient | None, options: MapOptions) -> pd.DataFrame:
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
    >>> diff(crm, rtp, MapOptions())["recotap_status"].tolist()  # doctest: +SKIP
    ['mapped', 'not_found']
    """
    outcome = _outcome(df, options)
    with own_client(client, RecotapClient) as rtp:
        return preview(_PreviewAdapter(outcome, rtp, options), options, {})


class RecotapAdapter:
    """What a ``map_ids`` run brings to the engine: the guard read, the batches, the mapping
    call, the merge of each answer and the read-back."""

    api = "recotap"
    label = "Recotap map_ids"
    dry_run = False
    failing = "not_found"
    failing_hint = "Check the domain column."
    resend_hint = "map_ids(..., only=exc.result)"

    def __init__(self, outcome: Mappings, client: RecotapClient, options: MapOptions) -> None:
        self.outcome, self.client = outcome, client
        self.overwrite, self.verify = options.overwrite, options.verify
        self.rows = outcome.n
        self.concurrency = client.max_concurrency
        self.sending: np.ndarray[Any, Any] = outcome.candidates
        self.verified = False

    def journal_target(self) -> tuple[str, str, str | None]:
        # Recotap keys have no public id: the journal files rows under a one-way fingerprint.
        return self.client.base_url, key_fingerprint(self.client._key), self.client.state_url

    def pace(self) -> Pace:
        return self.client.pace()

    def wait_time(self) -> float:
        return 0.0

    def rate_limited(self) -> int:
        return self.client.rate_limited

    def counts(self) -> dict[str, int]:
        return self.outcome.counts()

    def skip_acknowledged(self, applied: pd.DataFrame) -> None:
        self.outcome.skip_acknowledged(applied)

    def to_send(self) -> int:
        return len(self.outcome.candidates)

    def prepare(self) -> tuple[int, Batch | None]:
        """Unless ``overwrite``, read the candidates' accounts: rows already holding their id
        are ``unchanged`` (recorded: the read answered for them), rows holding another are
        ``already_mapped``; neither is sent."""
        out = self.outcome
        candidates = out.candidates
        self.sending = candidates if self.overwrite else out.guard(self.client)
        out.learn_spellings(self.client, self.sending)
        same = candidates[out.status[candidates] == "unchanged"]
        return len(candidates) - len(self.sending), Batch(-1, same, b"")

    def batches(self, *, hashes: bool) -> Iterator[Batch]:
        rows = self.sending
        for number, sl in enumerate(chunk_slices(len(rows), self.client.MAX_MAPPINGS)):
            # Built just before its request leaves: never every body in memory at once.
            yield Batch(number, rows[sl], self.outcome.body(rows[sl], self.client))

    def send(self, batch: Batch) -> dict[str, Any]:
        return self.client.map_external_ids_raw(batch.body)

    def merge(self, batch: Batch, answer: dict[str, Any]) -> None:
        """One answer, folded into the rows its request carried: the one place a batch's
        outcome is decided."""
        self.outcome.batch[batch.positions] = batch.number
        self.outcome.apply(batch.positions, answer, self.client)

    def unknown(self, batch: Batch, why: str) -> None:
        self.outcome.batch[batch.positions] = batch.number  # the request keeps its number
        self.outcome.message[batch.positions] = why

    def unsent(self, why: str) -> None:
        out = self.outcome
        rows = self.sending
        never = rows[(out.status[rows] == "not_sent") & (out.batch[rows] < 0)]
        out.message[never] = why

    def acks(self, batch: Batch) -> list[Ack]:
        return self.outcome.acks(batch.positions)

    def failures(self, batch: Batch) -> int:
        return int(np.count_nonzero(self.outcome.status[batch.positions] == "not_found"))

    def finish(self) -> Batch | None:
        if not self.verify:
            return None
        wrong = self.outcome.verify(self.client)
        self.verified = True
        return Batch(-1, wrong, b"")

    def result(self, attrs: dict[str, Any], *, complete: bool) -> pd.DataFrame:
        return self.outcome.result(attrs, overwrite=self.overwrite,
                                   verified=self.verified and complete)

    def request_failed(self, exc: RecocoraError) -> str:
        return failed_request_note(exc, "Recotap")


class _PreviewAdapter(RecotapAdapter):
    """``diff``: the guard read settles what a real run would not send, and one more read,
    standing in for the mapping requests, says what their answers would be."""

    label = "Recotap preview"
    dry_run = True

    def batches(self, *, hashes: bool) -> Iterator[Batch]:
        if len(self.sending):
            yield Batch(0, self.sending, b"")

    def send(self, batch: Batch) -> dict[str, Any]:
        self.outcome.foresee(self.client, batch.positions, self.client.MAX_MAPPINGS)
        return {}

    def merge(self, batch: Batch, answer: dict[str, Any]) -> None:
        """:meth:`send` settled the rows already, batch numbers included."""

    def finish(self) -> Batch | None:
        return None

    def result(self, attrs: dict[str, Any], *, complete: bool) -> pd.DataFrame:
        attrs.pop("rows_sent", None)
        attrs["requests"] = 0  # no mapping request was made; reads are read_requests
        frame = self.outcome.result(attrs, overwrite=self.overwrite, verified=False)
        sent = int(np.count_nonzero(self.outcome.batch >= 0))
        frame.attrs.update(preview="local", dry_run=True,
                           bulk_requests=self.client.pace().requests(sent))
        return frame
