"""The outcome of ``map_ids``: what each row's mapping became, and the reads that decide it.

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
   ``mapped`` when the answer's counts say all of them were written, else read back and
   given what each holds. ``verify=True`` reads every account back and marks ids that did
   not land ``failed``.

With a journal, every answer's mappings are recorded as it arrives; a re-run skips the
mappings already acknowledged with the same id (``skipped``) before any read or write, so it
sends only what is new, changed, or not yet acknowledged. The run itself (journal, failure
limit, Ctrl-C, progress) is the shared run engine's, driven by the Recotap adapter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._display import as_result
from .._report import RECOTAP_STATUSES as STATUSES
from .._state import Ack, row_hashes
from .._wire import chunk_slices, dumps, object_array
from ..errors import RecocoraError
from ._client import RecotapClient
from ._readback import ABSENT as _ABSENT
from ._readback import lookup as _lookup
from ._readback import read_held, settle_batch
from ._schema import prepare_checked, superseded_by, superseded_mask, validation_error

__all__ = ["APPLIED", "RESULT_COLUMNS", "STATUSES", "Mappings"]

#: Statuses a journal counts as done: such rows with the same id are skipped next time.
APPLIED = ("mapped", "unchanged")

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


class Mappings:
    """The outcome of one ``map_ids`` call (or its preview), held positionally (row *i* of the
    input): validation and last-wins settle rows up front, reads and answers the rest."""

    def __init__(self, df: pd.DataFrame, domain: Hashable, external_id: Hashable,
                 on_invalid: OnInvalid) -> None:
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
        #: Summed from reads and answers; the result's attrs.
        self.summary: dict[str, Any] = {
            "read_requests": 0, "matched": 0, "updated": 0, "read_back": 0,
        }

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

    # -- the journal ------------------------------------------------------------------------

    def _mappings(self, rows: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
        return [
            {"domain": d, "externalId": i}
            for d, i in zip(self.domains[rows], self.ids[rows], strict=True)
        ]

    def skip_acknowledged(self, previous: pd.DataFrame) -> None:
        """Settle the candidates the journal holds as done with this exact mapping."""
        rows = self.candidates
        if not len(rows) or previous.empty:
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

    def acks(self, rows: np.ndarray[Any, Any]) -> list[Ack]:
        """The journal's record of ``rows`` (one answer's, or a read's)."""
        hashes = row_hashes(self._mappings(rows))
        return [
            Ack(str(d), h, str(s), external_id=str(i))
            for d, i, s, h in zip(self.domains[rows], self.ids[rows], self.status[rows], hashes,
                                  strict=True)
        ]

    def guard(self, client: RecotapClient) -> np.ndarray[Any, Any]:
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

    def body(self, rows: np.ndarray[Any, Any], client: RecotapClient) -> bytes:
        """The request body: each domain in the spelling Recotap lists it in, where a read
        showed it (built just before its request leaves, so a big frame never has every
        body in memory)."""
        spelled = client.spelled(self.domains[rows].tolist())
        return dumps({"mappings": [
            {"domain": d, "externalId": i} for d, i in zip(spelled, self.ids[rows], strict=True)
        ]})

    def learn_spellings(self, client: RecotapClient, rows: np.ndarray[Any, Any]) -> None:
        """Read the accounts of internationalised domains whose spelling at Recotap no read
        has shown yet (the overwrite guard reads the others): sent in punycode, they would
        be not found by a Recotap that stores Unicode."""
        if not len(rows):
            return
        domains = pd.Series(self.domains[rows], dtype=object)
        idn = domains[domains.str.contains("xn--", regex=False).fillna(False).astype(bool)]
        unknown = [d for d in idn.tolist() if not client.knows_spelling(d)]
        if unknown:
            self.summary["read_requests"] += client.fetch_by_domain(unknown)[1]

    def apply(self, rows: np.ndarray[Any, Any], answer: dict[str, Any],
              client: RecotapClient) -> None:
        """Fold one mapping answer into ``rows`` (the batch it carried). Rows are ``mapped``
        only where the answer says so; else that request's accounts are read back (see
        :func:`~recocora.recotap._readback.settle_batch`). A failed read-back raises, and
        the rows stay unacknowledged."""
        self.summary["matched"] += answer["matched"]
        self.summary["updated"] += answer["updated"]
        try:
            outcome = settle_batch(client, self.domains[rows], self.ids[rows], answer)
        except RecocoraError as exc:
            self.message[rows] = (
                "sent, but Recotap's answer did not say which rows were written and reading "
                f"them back failed ({exc}); re-sending is safe"
            )
            raise
        self.status[rows], self.message[rows] = outcome.status, outcome.message
        self.summary["read_requests"] += outcome.reads
        self.summary["read_back"] += outcome.read_back

    def verify(self, client: RecotapClient) -> np.ndarray[Any, Any]:
        """Read the mapped accounts back; mark ``failed`` the ids that did not land and
        return those rows."""
        rows = np.flatnonzero(self.status == "mapped")
        if not len(rows):
            return rows
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
        wrong_rows: np.ndarray[Any, Any] = rows[absent | wrong]
        return wrong_rows

    # -- the answer -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        tally = Counter(self.status.tolist())
        return {s: tally[s] for s in STATUSES if tally[s]}

    def result(self, attrs: dict[str, Any], *, overwrite: bool, verified: bool) -> pd.DataFrame:
        """The result frame; ``attrs`` are the run's (requests, journal, duration, ...)."""
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
            attrs,
            **self.summary,
            not_found=counts.get("not_found", 0),
            counts=counts,
            duration=attrs.get("duration_s"),
            overwrite=overwrite,
            verified=verified,
        )
        return as_result(frame)

    # -- the preview ------------------------------------------------------------------------

    def foresee(self, client: RecotapClient, rows: np.ndarray[Any, Any], size: int) -> None:
        """Settle the rows a real run would send, as its answers would."""
        for b, positions in enumerate(chunk_slices(len(rows), size)):
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
