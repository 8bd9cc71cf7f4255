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

import copy
import math
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
import pandas as pd

from .._progress import Pace
from .._run import Batch, own_client, preview
from .._wire import chunk_slices
from ..errors import NotFoundError
from ._adapter import CoraAdapter, UpsertOptions, plan
from ._client import CoraClient
from ._fields import (
    CATALOGUE,
    CREATE_ONLY,
    CREATE_REQUIRED,
    NUMERIC,
    Problem,
    row_problems,
)
from ._upsert import UpsertPlan

__all__ = ["diff", "predict_results"]

_ABSENT: Any = object()
_SCALARS = frozenset({str, int, float, bool})

# GETs allowed ahead of the comparison, per concurrent reader.
_READ_AHEAD = 4


class _RowFailure(Exception):
    def __init__(self, code: str, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


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
        self.reader = _Reader(client, _sent_ids(planned))
        self.start = 0

    def pace(self) -> Pace:
        return Pace(self.client.MAX_ROWS)  # reads only: no bulk slot to wait for

    def wait_time(self) -> float:
        return 0.0

    def send(self, batch: Batch) -> dict[str, Any]:
        stored = self.reader.accounts(self.start, self.start + len(batch.positions))
        self.start += len(batch.positions)
        rows = orjson.loads(batch.body)["accounts"]
        late = [r["externalId"] for r in rows if _needs_read(r, stored)]
        if late:
            found, reads = _fetch(self.client, late)
            self.reader.reads += reads
            stored.update(found)
        return {"results": predict_results(rows, stored, include_changes=self.include_changes)}

    def result(self, attrs: dict[str, Any], *, complete: bool) -> pd.DataFrame:
        self.reader.close()
        attrs.pop("rows_sent", None)
        attrs["requests"] = self.reader.reads
        return super().result(attrs, complete=complete)


def _sent_ids(plan: UpsertPlan) -> list[str]:
    """The ``externalId`` of every row that would be sent, in sending order."""
    if not len(plan.positions) or "externalId" not in plan.prepared:
        return []
    column = plan.prepared["externalId"].iloc[plan.positions]
    return [v if isinstance(v, str) else "" for v in column.tolist()]


def _needs_read(row: Any, stored: Mapping[str, Any]) -> bool:
    ext = row.get("externalId") if isinstance(row, dict) else None
    return isinstance(ext, str) and ext != "" and ext not in stored


class _Reader:
    """Reads the current accounts of ``ids`` (in sending order), one GET per
    ``MAX_GET_IDS``, ``max_concurrency`` at once, keeping a bounded number of GETs ahead of
    the comparison so reading and comparing overlap and memory stays flat."""

    def __init__(self, client: CoraClient, ids: list[str]) -> None:
        self.client = client
        self.size = client.MAX_GET_IDS
        self.batches = [ids[s] for s in chunk_slices(len(ids), self.size)]
        self.ahead = _READ_AHEAD * client.max_concurrency
        self.pool = ThreadPoolExecutor(client.max_concurrency)
        self.futures: dict[int, Future[tuple[dict[str, Any], int]]] = {}
        self.submitted = 0
        self.reads = 0

    def accounts(self, a: int, b: int) -> dict[str, Any]:
        """``{id: account or None}`` for the ids at positions ``a`` to ``b``."""
        if b <= a:
            return {}
        first, last = a // self.size, (b - 1) // self.size
        while self.submitted < min(len(self.batches), last + 1 + self.ahead):
            wanted = [i for i in self.batches[self.submitted] if i]
            self.futures[self.submitted] = self.pool.submit(_fetch, self.client, wanted)
            self.submitted += 1
        stored: dict[str, Any] = {}
        for k in range(first, last + 1):
            found, _ = self.futures[k].result()
            stored.update(dict.fromkeys(self.batches[k]))
            stored.update(found)
        # The last batch may hold the next chunk's first ids; the earlier ones are done.
        for k in [k for k in self.futures if k < last]:
            self.reads += self.futures.pop(k).result()[1]
        return stored

    def close(self) -> None:
        """Stop reading ahead; count the reads that were answered but not yet used."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        for future in self.futures.values():
            if not future.cancelled() and future.exception() is None:
                self.reads += future.result()[1]
        self.futures.clear()


def _fetch(client: CoraClient, ids: Iterable[str]) -> tuple[dict[str, dict[str, Any]], int]:
    unique = list(dict.fromkeys(ids))
    # The list endpoint splits externalIds at commas, so an id holding one is read alone.
    listed = [i for i in unique if "," not in i]
    alone = [i for i in unique if "," in i]
    found = client.fetch_accounts(listed)
    reads = math.ceil(len(listed) / client.MAX_GET_IDS)
    for ext in alone:
        reads += 1
        try:
            found[ext] = client.get_account(ext)
        except NotFoundError:
            continue
    return found, reads


# --------------------------------------------------------------------------- one request


def predict_results(
    rows: list[Any], stored: dict[str, Any], *, include_changes: bool = True
) -> list[dict[str, Any]]:
    """The ``results`` a bulk-upsert request carrying ``rows`` would answer, given the
    accounts currently ``stored`` (``{externalId: account}``; an absent id or ``None`` means
    no such account). Rows are applied in order, as the server does: ``stored`` is updated
    with what each created or updated row would leave, so pass a copy to keep it.

    >>> stored = {"A1": {"id": "acc_1", "externalId": "A1", "bucket": "30-60"}}
    >>> [r["status"] for r in predict_results(
    ...     [{"externalId": "A1", "bucket": "60-90"}, {"externalId": "B2"}], stored)]
    ['updated', 'failed']
    >>> stored["A1"]["bucket"]
    '60-90'
    """
    seen: set[str] = set()
    results: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        result: dict[str, Any] = {"index": index}
        try:
            ext = _external_id(row, result)
            if ext in seen:
                raise _RowFailure(
                    "DUPLICATE_EXTERNAL_ID",
                    f"externalId {ext!r} appears more than once in this request",
                    [{"field": "externalId", "message": "duplicate in request"}],
                )
            seen.add(ext)
            _check_row(row)
            row = _stored_form(row)
            account = stored.get(ext)
            if not isinstance(account, dict):
                stored[ext] = _created(row)
                result["status"] = "created"
                continue
            incoming = {k: v for k, v in row.items() if k not in CREATE_ONLY}
            changes = merge_changes(account, incoming)
            result["accountId"] = account.get("id")
            if changes:
                result["status"] = "updated"
                if include_changes:
                    result["changes"] = changes
            else:
                result["status"] = "unchanged"
                result["updatedAt"] = account.get("updatedAt")
        except _RowFailure as failure:
            result.update(status="failed", code=failure.code, message=failure.message,
                          details=failure.details)
        finally:
            results.append(result)
    return results


def _external_id(row: Any, result: dict[str, Any]) -> str:
    if not isinstance(row, dict):
        raise _RowFailure("INVALID_FIELD_VALUE", "Each account must be an object", [])
    ext = row.get("externalId", _ABSENT)
    if isinstance(ext, str):
        result["externalId"] = ext
    if ext is _ABSENT or ext is None or ext == "":
        raise _RowFailure(
            "MISSING_REQUIRED_FIELD", "externalId is required",
            [{"field": "externalId", "message": "externalId is required"}],
        )
    if not isinstance(ext, str):
        raise _RowFailure(
            "INVALID_FIELD_VALUE", "externalId must be a string",
            [{"field": "externalId", "message": "externalId must be a string"}],
        )
    return ext


# The order in which the bulk endpoint reports a row's problems: one code per row.
_CODES = ("FIELD_NOT_UPDATABLE", "INVALID_FIELD_VALUE", "INVALID_PHONE_NUMBER")

# Numbers sent as numeric text are stored as numbers (contract §1.3: "number (or numeric
# string)"), so they are compared as the numbers they stand for.
_NUMBERS = tuple(p for p, f in CATALOGUE.items() if f.kind == "number" and "." not in p)


def _check_row(row: dict[str, Any]) -> None:
    """Raise for the first class of problem the row has, as the bulk endpoint reports it; the
    rules are the field catalogue's."""
    found = list(row_problems(row))
    for code in _CODES:
        hits = [p for p in found if p.code == code]
        if code == "FIELD_NOT_UPDATABLE":
            hits.sort(key=lambda p: p.path)
        if hits:
            raise _RowFailure(code, _summary(code, hits), [_detail(p) for p in hits])


def _summary(code: str, hits: list[Problem]) -> str:
    if code == "FIELD_NOT_UPDATABLE":
        return f"Field(s) cannot be written: {', '.join(p.path for p in hits)}"
    return hits[0].message


def _detail(problem: Problem) -> dict[str, str]:
    return {"field": problem.path, "message": problem.message}


def _stored_form(row: dict[str, Any]) -> dict[str, Any]:
    """Number fields sent as numeric text are kept as the number they stand for (whole when
    written without a decimal point), so they compare as numbers."""
    texts = [k for k in _NUMBERS if isinstance(row.get(k), str)]
    if not texts:
        return row
    out = dict(row)
    for key in texts:
        number = float(out[key])
        out[key] = int(number) if number.is_integer() and "." not in out[key] else number
    return out


def _created(row: dict[str, Any]) -> dict[str, Any]:
    missing = [path for path in CREATE_REQUIRED if _value_at(row, path) in (None, "")]
    if missing:
        raise _RowFailure(
            "MISSING_REQUIRED_FIELD",
            f"Missing required field(s) to create an account: {', '.join(missing)}",
            [{"field": f, "message": f"{f} is required to create an account"}
             for f in missing],
        )
    return _without_nulls(row)


def _value_at(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _without_nulls(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _without_nulls(v) if isinstance(v, dict) else v
        for k, v in obj.items() if v is not None
    }


# --------------------------------------------------------------------------- merge rules


def same_value(a: Any, b: Any) -> bool:
    """JSON equality as a merge sees it: numbers by value (``1 == 1.0``), booleans never equal
    to numbers, text never equal to numbers, objects and arrays element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def same_as_read(stored: Any, sent: Any) -> bool:
    """:func:`same_value` of a value read back and one sent, where a number read back as
    numeric text equals the number sent: the docs type ``currentBalance`` as number or
    numeric string, so a server may show ``450.25`` as ``"450.25"`` (any number, at any
    depth).

    >>> same_as_read("450.25", 450.25), same_as_read(["1", "x"], [1, "x"]), same_as_read("7", "7.0")
    (True, True, False)
    """
    if isinstance(stored, str) and isinstance(sent, int | float) and not isinstance(sent, bool):
        # Decimal, not float: "12345678901234567891" must not equal 12345678901234567890.
        return NUMERIC.fullmatch(stored) is not None and (
            Decimal(stored.strip()) == Decimal(repr(sent) if isinstance(sent, float) else sent)
        )
    if isinstance(stored, dict) and isinstance(sent, dict):
        return stored.keys() == sent.keys() and all(
            same_as_read(stored[k], sent[k]) for k in stored
        )
    if isinstance(stored, list) and isinstance(sent, list):
        return len(stored) == len(sent) and all(
            same_as_read(x, y) for x, y in zip(stored, sent, strict=True)
        )
    return same_value(stored, sent)


def merge_changes(
    stored: dict[str, Any], incoming: dict[str, Any], prefix: str = ""
) -> list[dict[str, Any]]:
    """Merge ``incoming`` into ``stored`` in place with the contract's rules (objects
    deep-merged, scalars and arrays replaced, null replaces) and return what changed as
    ``{"field": dotted leaf path, "from", "to"}``.

    >>> account = {"metadata": {"filenumber": "F1"}, "tags": ["a"]}
    >>> merge_changes(account, {"metadata": {"batch": 7}, "tags": ["a"]})
    [{'field': 'metadata.batch', 'from': None, 'to': 7}]
    """
    changes: list[dict[str, Any]] = []
    for key, value in incoming.items():
        old = stored.get(key, _ABSENT)
        kind = type(value)
        if kind is type(old) and kind in _SCALARS and old == value:
            continue  # the common case, settled without the general comparison
        path = f"{prefix}{key}"
        if isinstance(value, dict) and (isinstance(old, dict) or old is _ABSENT or old is None):
            if not isinstance(old, dict):
                if not value:
                    changes.append({"field": path, "from": None, "to": {}})
                old = stored[key] = {}
            changes.extend(merge_changes(old, value, f"{path}."))
        elif old is _ABSENT or not same_as_read(old, value):
            changes.append({"field": path, "from": None if old is _ABSENT else old, "to": value})
            stored[key] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    return changes
