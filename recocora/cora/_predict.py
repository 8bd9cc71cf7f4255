"""What Cora would answer for rows, worked out from the accounts' current state: the reads
(``GET /external-api/accounts?externalIds=``, ``MAX_GET_IDS`` per request, several at once)
and the contract's rules (the field catalogue's checks, create requirements, the merge).
``df.cora.diff()`` answers every batch with it, and ``upsert(skip_unchanged=True)`` uses it
to send only the rows that would change.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from .._wire import chunk_slices
from ..errors import NotFoundError
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

__all__ = [
    "Reader",
    "fetch",
    "merge_changes",
    "needs_read",
    "predict_results",
    "same_as_read",
    "same_value",
    "sent_ids",
    "unchanged_rows",
]

_ABSENT: Any = object()
_SCALARS = frozenset({str, int, float, bool})

# GETs allowed ahead of the comparison, per concurrent reader.
_READ_AHEAD = 4


class _RowFailure(Exception):
    def __init__(self, code: str, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


def sent_ids(plan: UpsertPlan) -> list[str]:
    """The ``externalId`` of every row that would be sent, in sending order."""
    if not len(plan.to_send) or "externalId" not in plan.prepared:
        return []
    column = plan.prepared["externalId"].iloc[plan.to_send]
    return [v if isinstance(v, str) else "" for v in column.tolist()]


def needs_read(row: Any, stored: Mapping[str, Any]) -> bool:
    ext = row.get("externalId") if isinstance(row, dict) else None
    return isinstance(ext, str) and ext != "" and ext not in stored


class Reader:
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
            self.futures[self.submitted] = self.pool.submit(fetch, self.client, wanted)
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


def fetch(client: CoraClient, ids: Iterable[str]) -> tuple[dict[str, dict[str, Any]], int]:
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


def unchanged_rows(plan: UpsertPlan, client: CoraClient
                   ) -> tuple[np.ndarray[Any, Any], list[dict[str, Any]], int]:
    """Of the rows ``plan`` still has to send, those Cora would answer ``unchanged`` (their
    input positions and predicted results), and the reads it took to know: the accounts are
    read ``MAX_GET_IDS`` at a time, several at once, and each batch's rows are judged by
    :func:`predict_results` exactly as ``df.cora.diff()`` judges them."""
    reader = Reader(client, sent_ids(plan))
    positions: list[int] = []
    results: list[dict[str, Any]] = []
    start = 0
    try:
        for batch in plan.chunks(dry_run=True, include_changes=False):
            stored = reader.accounts(start, start + len(batch.positions))
            start += len(batch.positions)
            rows = orjson.loads(batch.body)["accounts"]
            late = [r["externalId"] for r in rows if needs_read(r, stored)]
            if late:
                found, reads = fetch(client, late)
                reader.reads += reads
                stored.update(found)
            for result in predict_results(rows, stored, include_changes=False):
                if result.get("status") == "unchanged":
                    positions.append(int(batch.positions[result["index"]]))
                    results.append(result)
    finally:
        reader.close()
    return np.array(positions, dtype=np.int64), results, reader.reads


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
