"""``df.cora.diff()``: what a bulk upsert would do to every row, worked out locally, for free.

A Cora dry run spends one 20-second bulk slot per 500 rows (a 100k-row dry run takes over an
hour). The preview instead reads the accounts' current state with
``GET /external-api/accounts?externalIds=`` (200 ids per request, several at once; no rate
limit applies) and applies the contract's rules itself (docs/api-contract.md §1.3-1.4):

- rows are checked as a request would check them, with the field catalogue's rules (the same
  ones ``df.cora.validate()`` applies, so a valid row never fails here for its values):
  read-only fields → ``FIELD_NOT_UPDATABLE``, wrong JSON types or shapes →
  ``INVALID_FIELD_VALUE``, a phone number not in E.164 → ``INVALID_PHONE_NUMBER``, an
  ``externalId`` twice in one request → ``DUPLICATE_EXTERNAL_ID``;
- an unknown ``externalId`` is ``created`` when the row has ``phoneNumber``, ``portfolioId``
  and ``metadata.filenumber``, else ``failed`` with ``MISSING_REQUIRED_FIELD`` and one
  ``details`` entry per missing field;
- a known one is merged: objects deep-merged, scalars and arrays replaced, an explicit null
  replaces, create-only fields (``portfolioId``, ``externalId``) never updated; a number
  field (``currentBalance``) sent as numeric text is compared as the number it is stored
  as, and a number the server reads back as numeric text (``"450.25"``) equals the number
  sent. Any difference makes the row ``updated``, with ``changes`` as
  ``{"field", "from", "to"}`` on dotted leaf paths; otherwise it is ``unchanged``.

The rows compared are the exact bodies the real upsert would send (same plan, same chunks,
same serialisation), so the result frame is the one a dry run returns, with
``attrs["preview"] = "local"``. What it cannot know: writes by others between the preview and
the real run, and server-side rules the contract does not publish (the vendor's status list,
debt types).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pandas as pd

from .._progress import Pace
from .._run import Batch, own_client, preview
from ._adapter import CoraAdapter, UpsertOptions, plan
from ._client import CoraClient
from ._predict import Reader, fetch, needs_read, predict_results, sent_ids
from ._upsert import UpsertPlan

__all__ = ["diff"]


def diff(df: pd.DataFrame, client: CoraClient | None, options: UpsertOptions) -> pd.DataFrame:
    """What ``upsert`` would do to every row, from the accounts' current state; writes
    nothing and spends no bulk slot. See ``df.cora.diff``.

    >>> diff(df, cora, UpsertOptions())["cora_status"].value_counts()  # doctest: +SKIP
    """
    planned = plan(df, client, options)
    with own_client(client, CoraClient) as cora:
        pace = cora.pace()
        rows = len(planned.to_send)
        attrs = {
            "preview": "local", "bulk_requests": pace.requests(rows),
            "min_interval": pace.min_interval,
            # The real run: one request per chunk, min_interval apart, the first one at once.
            "eta_s": round(pace.seconds(rows), 3),
        }
        adapter = _LocalAdapter(planned, cora, options)
        try:
            return preview(adapter, options, attrs)
        finally:
            adapter.reader.close()


class _LocalAdapter(CoraAdapter):
    """The preview's adapter: each batch is answered here, from the accounts' current state,
    as Cora would answer it."""

    def __init__(self, planned: UpsertPlan, client: CoraClient, options: UpsertOptions) -> None:
        super().__init__(planned, client, replace(options, dry_run=True))
        self.label = "Cora preview"
        self.reader = Reader(client, sent_ids(planned))
        self.start = 0

    def pace(self) -> Pace:
        return Pace(self.client.MAX_ROWS)  # reads only: no bulk slot to wait for

    def wait_time(self) -> float:
        return 0.0

    def send(self, batch: Batch) -> dict[str, Any]:
        stored = self.reader.accounts(self.start, self.start + len(batch.positions))
        self.start += len(batch.positions)
        rows = orjson.loads(batch.body)["accounts"]
        late = [r["externalId"] for r in rows if needs_read(r, stored)]
        if late:
            found, reads = fetch(self.client, late)
            self.reader.reads += reads
            stored.update(found)
        return {"results": predict_results(rows, stored, include_changes=self.include_changes)}

    def result(self, attrs: dict[str, Any], *, complete: bool) -> pd.DataFrame:
        self.reader.close()
        attrs.pop("rows_sent", None)
        attrs["requests"] = self.reader.reads
        return super().result(attrs, complete=complete)


