"""``map_ids``: write a frame's CRM ids onto Recotap accounts by domain, honestly, row by row.

The Map External IDs endpoint overwrites an existing id without warning and lets the last of
repeated domains win silently. ``map_ids`` decides both before anything is sent:

1. The whole frame is validated first (:mod:`recocora.recotap.schema`); nothing is sent if a
   row is invalid, unless ``on_invalid="skip"``.
2. Rows sharing a normalised domain: the last one wins, the earlier ones are ``superseded``.
   Each domain is therefore sent at most once, so the outcome never depends on how rows are
   split into requests or in which order concurrent requests land.
3. Unless ``overwrite=True``, the accounts' current ids are read first; rows whose account
   already holds a different id are ``already_mapped``, rows whose account holds the same id
   are ``unchanged``, and neither is sent.
4. The rest go out in requests of :data:`MAX_MAPPINGS`, up to the client's
   ``max_concurrency`` at once; domains in ``notFound`` are ``not_found``, the others
   ``mapped``. ``verify=True`` reads the accounts back and marks ids that did not land
   ``failed``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import RecocoraError
from ..frames import chunk_slices, dumps
from ..progress import RunProgress
from .client import RecotapClient
from .domains import normalize_domain
from .schema import prepare_checked, superseded_by, superseded_mask, validation_error

__all__ = ["MAX_MAPPINGS", "RESULT_COLUMNS", "STATUSES", "map_ids"]

#: Mappings per request (the API's limit). Tests shrink it to prove chunking.
MAX_MAPPINGS = 100

#: Every value ``recotap_status`` can take.
STATUSES = (
    "mapped",          # written (or already so); the account now holds the row's id
    "unchanged",       # the account already held this id; not sent
    "not_found",       # no account has this domain
    "already_mapped",  # the account holds a different id and overwrite=False; not sent
    "superseded",      # a later row with the same domain wins; not sent
    "invalid",         # failed validation; not sent
    "failed",          # verify=True read the account back and the id was not there
    "not_sent",        # the run stopped (an error) before this row was acknowledged
)

RESULT_COLUMNS = (
    "recotap_status",
    "recotap_domain",
    "recotap_external_id",
    "recotap_existing_id",
    "recotap_batch",
    "recotap_message",
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
    - ``recotap_message``: why, for every row that was not simply mapped.

    ``attrs`` carry the summary: ``requests`` (mapping requests answered), ``read_requests``,
    ``matched`` and ``updated`` (summed from the answers), ``not_found`` (rows), ``counts`` (by
    status), ``duration`` (seconds), ``overwrite`` and ``verified``.

    With ``overwrite=False`` (the default) no existing id is ever replaced. ``on_invalid=
    "raise"`` sends nothing when a row is invalid and raises
    :class:`~recocora.errors.ValidationError` with ``.failure_cases``; ``"skip"`` sends the
    valid rows. An error that stops the run (auth, retries spent) carries the partial result
    in ``.result``: acknowledged rows keep their status, the rest are ``not_sent``. Re-running
    is safe: a mapping write is idempotent, and rows already mapped come back ``unchanged``.

    >>> crm = pd.DataFrame({"domain": ["https://www.acme.com/", "globex.com"],
    ...                     "externalId": ["crm-001", "crm-002"]})
    >>> map_ids(crm, client=rtp)["recotap_status"].tolist()  # doctest: +SKIP
    ['mapped', 'not_found']
    """
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
    run = _Run(df, domain, external_id, on_invalid)
    own = client is None
    rtp = RecotapClient() if client is None else client
    try:
        return run.execute(rtp, overwrite=overwrite, verify=verify, progress=progress)
    finally:
        if own:
            rtp.close()


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

        self.status = np.full(n, "not_sent", dtype=object)
        self.message = np.full(n, None, dtype=object)
        self.existing = np.full(n, None, dtype=object)
        self.batch = np.full(n, -1, dtype=np.int64)
        self.summary: dict[str, Any] = {
            "requests": 0, "read_requests": 0, "matched": 0, "updated": 0,
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

    # -- the run ----------------------------------------------------------------------------

    def execute(self, client: RecotapClient, *, overwrite: bool, verify: bool,
                progress: bool) -> pd.DataFrame:
        with RunProgress(self.n, "Recotap map_ids", enabled=progress) as bar:
            self.bar = bar
            settled = self.n - len(self.candidates)
            try:
                to_send = self.candidates if overwrite else self._guard(client)
                settled += len(self.candidates) - len(to_send)
                bar.advance(settled, self.counts())
                self._send(client, to_send)
                if verify:
                    self._verify(client)
            except RecocoraError as exc:
                exc.result = self.result(overwrite=overwrite, verified=False)
                raise
        return self.result(overwrite=overwrite, verified=verify)

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
        size = min(MAX_MAPPINGS, client.MAX_MAPPINGS)
        batches = [rows[s] for s in chunk_slices(len(rows), size)]
        for b, positions in enumerate(batches):
            self.batch[positions] = b
        error: RecocoraError | None = None
        pending: dict[Future[dict[str, Any]], int] = {}
        following = 0
        with ThreadPoolExecutor(max_workers=client.max_concurrency) as pool:
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
                    b = pending.pop(future)
                    try:
                        answer = future.result()
                    except RecocoraError as exc:
                        self.message[batches[b]] = (
                            f"the request carrying this row failed ({exc}); whether it was "
                            "written is unknown, and re-running is safe"
                        )
                        error = error or exc
                        continue
                    self._apply(batches[b], answer)
                    self.bar.advance(len(batches[b]), self.counts())
        for b in range(following, len(batches)):
            self.batch[batches[b]] = -1
            self.message[batches[b]] = "not sent: the run stopped after an error"
        if error is not None:
            raise error

    def _body(self, rows: np.ndarray[Any, Any]) -> bytes:
        # Built just before its request leaves, so a big frame never has every body in memory.
        return dumps({"mappings": [
            {"domain": d, "externalId": i}
            for d, i in zip(self.domains[rows], self.ids[rows], strict=True)
        ]})

    def _apply(self, rows: np.ndarray[Any, Any], answer: dict[str, Any]) -> None:
        self.summary["requests"] += 1
        self.summary["matched"] += answer["matched"]
        self.summary["updated"] += answer["updated"]
        echoed = {str(d) for d in answer["notFound"]}
        # notFound echoes domains as sent; a server that echoed another spelling still matches.
        echoed |= {
            str(d) for d in normalize_domain(pd.Series(sorted(echoed), dtype=object),
                                             errors="coerce").dropna()
        }
        missing = np.isin(self.domains[rows].astype(str), sorted(echoed))
        self.status[rows] = np.where(missing, "not_found", "mapped")
        self.message[rows[missing]] = "no Recotap account has this domain"
        self.message[rows[~missing]] = None

    def _verify(self, client: RecotapClient) -> None:
        rows = np.flatnonzero(self.status == "mapped")
        if not len(rows):
            return
        found, reads = client.fetch_by_domain(self.domains[rows].tolist())
        self.summary["read_requests"] += reads
        held = np.array(_lookup(found, self.domains[rows], present=True), dtype=object)
        absent = np.array([h is _ABSENT for h in held], dtype=bool)
        wrong = ~absent & (held != self.ids[rows])
        self.status[rows[absent | wrong]] = "failed"
        self.message[rows[absent]] = "read back after writing: no account with this domain"
        self.message[rows[wrong]] = [
            f"read back after writing: the account holds {h!r}, not the id sent"
            for h in held[wrong]
        ]
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
        return frame


_ABSENT = object()


def _lookup(found: dict[str, dict[str, Any]], domains: np.ndarray[Any, Any],
            present: bool = False) -> list[Any]:
    """Each domain's stored id: ``None`` when it has none (or, unless ``present``, when no
    account was found); ``_ABSENT`` when no account was found and ``present`` is set."""
    keyed = dict(found)
    # The server's normal form may differ from ours in rare IDNA corners; index both.
    theirs = list(found)
    ours = normalize_domain(pd.Series(theirs, dtype=object), errors="coerce").tolist()
    for spelled, normal in zip(theirs, ours, strict=True):
        if isinstance(normal, str):
            keyed.setdefault(normal, found[spelled])
    out: list[Any] = []
    for d in domains:
        account = keyed.get(d)
        if account is None:
            out.append(_ABSENT if present else None)
            continue
        held = account.get("externalId")
        out.append(held if isinstance(held, str) and held else None)
    return out


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
