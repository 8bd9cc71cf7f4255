"""``df.cora.diff()``: what a bulk upsert would do to every row, worked out locally, for free.

A Cora dry run spends one 20-second bulk slot per 500 rows (a 100k-row dry run takes over an
hour). The preview instead reads the accounts' current state with
``GET /external-api/accounts?externalIds=`` (200 ids per request, several at once; no rate
limit applies) and applies the contract's rules itself (docs/api-contract.md §1.3-1.4):

- rows are checked as a request would check them: read-only fields → ``FIELD_NOT_UPDATABLE``,
  wrong JSON types → ``INVALID_FIELD_VALUE``, a phone number not in E.164 →
  ``INVALID_PHONE_NUMBER``, an ``externalId`` twice in one request →
  ``DUPLICATE_EXTERNAL_ID``;
- an unknown ``externalId`` is ``created`` when the row has ``phoneNumber``, ``portfolioId``
  and ``metadata.filenumber``, else ``failed`` with ``MISSING_REQUIRED_FIELD`` and one
  ``details`` entry per missing field;
- a known one is merged: objects deep-merged, scalars and arrays replaced, an explicit null
  replaces, ``portfolioId`` ignored, ``externalId`` never updated; ``currentBalance`` sent as
  numeric text is compared as the number it is stored as. Any difference makes the row
  ``updated``, with ``changes`` as ``{"field", "from", "to"}`` on dotted leaf paths;
  otherwise it is ``unchanged``.

The rows compared are the exact bodies the real upsert would send (same plan, same chunks,
same serialisation), so the result frame is the one a dry run returns, with
``attrs["preview"] = "local"``. What it cannot know: writes by others between the preview and
the real run, and server-side rules the contract does not publish (the vendor's status list,
debt types).
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from typing import Any

import orjson
import pandas as pd

from .._progress import RunProgress
from .._wire import chunk_slices
from ..errors import NotFoundError, RecocoraError
from ._client import CoraClient
from ._schema import READ_ONLY
from ._upsert import Mode, OnInvalid, UpsertPlan, _Outcome, plan_upsert

__all__ = ["diff", "predict_results"]

# Contract §1.3: the JSON type each writable top-level field takes.
_TEXT_FIELDS = frozenset(
    {"portfolioId", "bucket", "phoneNumber", "status", "clientStatus", "emailAddress",
     "typeOfDebt", "bank", "client"}
)
_FREE_OBJECTS = frozenset({"metadata", "compliance", "paymentRules", "contactInfo", "smsOptOut"})
_STRUCTURED = frozenset({"person", "address", "history"})
_WRITABLE = (
    _TEXT_FIELDS | _FREE_OBJECTS | _STRUCTURED
    | {"externalId", "originalCreditor", "currentBalance", "tags"}
)
_PERSON_TEXT = frozenset({"ssn", "last4SSN", "birthdate"})
_ADDRESS_TEXT = frozenset({"street", "additionalStreet", "city", "state", "zip", "country"})
_HISTORY_TEXT = frozenset({"origin", "statuteLimitationsDate"})  # more keys allowed, untyped
_NAME_PARTS = frozenset({"first", "last", "middle"})
_CREATE_ONLY = frozenset({"externalId", "portfolioId"})

_E164 = re.compile(r"\+[1-9][0-9]{0,14}")
_NUMERIC = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ABSENT: Any = object()
_SCALARS = frozenset({str, int, float, bool})

# GETs allowed ahead of the comparison, per concurrent reader.
_READ_AHEAD = 4


class _RowFailure(Exception):
    def __init__(self, code: str, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


def diff(
    df: pd.DataFrame,
    client: CoraClient | None = None,
    *,
    include_changes: bool = True,
    columns: dict[str, str] | None = None,
    on_invalid: OnInvalid = "raise",
    mode: Mode = "upsert",
    progress: bool = True,
) -> pd.DataFrame:
    """What ``upsert`` would do to every row, from the accounts' current state; writes
    nothing and spends no bulk slot. See :meth:`CoraAccessor.diff`.

    >>> diff(df, client=cora)["cora_status"].value_counts()  # doctest: +SKIP
    """
    plan = plan_upsert(
        df, columns=columns, on_invalid=on_invalid, mode=mode,
        max_rows=client.MAX_ROWS if client is not None else CoraClient.MAX_ROWS,
    )
    if client is not None:
        return _preview(plan, client, include_changes=include_changes, progress=progress)
    own = CoraClient()
    try:
        return _preview(plan, own, include_changes=include_changes, progress=progress)
    finally:
        own.close()


def _preview(
    plan: UpsertPlan, client: CoraClient, *, include_changes: bool, progress: bool
) -> pd.DataFrame:
    outcome = _Outcome(plan)
    started = time.monotonic()
    n_chunks = plan.n_chunks
    attrs: dict[str, Any] = {
        "api": "cora", "dry_run": True, "preview": "local", "requests": 0,
        "bulk_requests": n_chunks, "min_interval": client.min_interval,
        # The real run: one request per chunk, min_interval apart, the first one at once.
        "eta_s": round(max(0, n_chunks - 1) * client.min_interval, 3),
    }

    reader = _Reader(client, _sent_ids(plan))

    def finish() -> pd.DataFrame:
        reader.close()
        attrs["requests"] = reader.reads
        attrs["duration_s"] = round(time.monotonic() - started, 3)
        return outcome.frame(plan.source_index, attrs)

    with RunProgress(len(plan.positions), "Cora preview", enabled=progress) as bar:
        try:
            start = 0
            for batch, positions, body in plan.bodies(
                dry_run=True, include_changes=include_changes
            ):
                stored = reader.accounts(start, start + len(positions))
                start += len(positions)
                rows = orjson.loads(body)["accounts"]
                late = [r["externalId"] for r in rows if _needs_read(r, stored)]
                if late:
                    found, reads = _fetch(client, late)
                    reader.reads += reads
                    stored.update(found)
                results = predict_results(rows, stored, include_changes=include_changes)
                outcome.merge({"results": results}, positions, batch)
                bar.advance(len(positions), outcome.counts)
        except RecocoraError as exc:
            exc.result = finish()
            raise
        finally:
            reader.close()
    return finish()


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
            incoming = {k: v for k, v in row.items() if k not in _CREATE_ONLY}
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


def _check_row(row: dict[str, Any]) -> None:
    """Raise for the first class of problem the row has, as the bulk endpoint reports it."""
    read_only = sorted(k for k in row if k in READ_ONLY)
    if read_only:
        raise _RowFailure(
            "FIELD_NOT_UPDATABLE",
            f"Field(s) cannot be written: {', '.join(read_only)}",
            [{"field": k, "message": f"{k} is read-only"} for k in read_only],
        )
    problems = list(_type_problems(row))
    if problems:
        raise _RowFailure("INVALID_FIELD_VALUE", problems[0]["message"], problems)
    phone = row.get("phoneNumber")
    if isinstance(phone, str) and not _E164.fullmatch(phone):
        raise _RowFailure(
            "INVALID_PHONE_NUMBER",
            "phoneNumber must be in E.164 format, e.g. +15555550111",
            [{"field": "phoneNumber", "message": "not E.164"}],
        )


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _type_problems(row: dict[str, Any]) -> Iterator[dict[str, str]]:
    for key, value in row.items():
        if key == "externalId":
            continue
        if key not in _WRITABLE:
            yield _problem(key, f"{key} is not a known account field")
        elif value is None:
            continue  # an explicit null clears the stored value
        elif key in _TEXT_FIELDS:
            if not isinstance(value, str):
                yield _problem(key, f"{key} must be a string")
        elif key in _FREE_OBJECTS:
            if not isinstance(value, dict):
                yield _problem(key, f"{key} must be an object")
        elif key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                yield _problem(key, "tags must be an array of strings")
        elif key == "currentBalance":
            if not _is_balance(value):
                yield _problem(key, "currentBalance must be a finite number or numeric string")
        elif key == "originalCreditor":
            if not isinstance(value, str | dict):
                yield _problem(key, "originalCreditor must be a string or an object")
        elif not isinstance(value, dict):
            yield _problem(key, f"{key} must be an object")
        else:
            yield from _structured_problems(key, value)


def _is_balance(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value)
    return (
        isinstance(value, str) and _NUMERIC.fullmatch(value) is not None
        and math.isfinite(float(value))
    )


def _structured_problems(key: str, obj: dict[str, Any]) -> Iterator[dict[str, str]]:
    """person, address and history: documented keys are typed; person and address take only
    their documented keys, history takes more (the contract: "more undocumented keys")."""
    text = {"person": _PERSON_TEXT, "address": _ADDRESS_TEXT}.get(key, _HISTORY_TEXT)
    closed = key != "history"
    for sub, value in obj.items():
        path = f"{key}.{sub}"
        if closed and sub not in text and not (key == "person" and sub == "name"):
            yield _problem(path, f"{path} is not a known field")
        elif value is None:
            continue
        elif key == "person" and sub == "name":
            yield from _name_problems(path, value)
        elif sub in text and not isinstance(value, str):
            yield _problem(path, f"{path} must be a string")
        elif path == "person.birthdate" and not _is_date(value):
            yield _problem(path, "birthdate must be a date as YYYY-MM-DD")
        elif path == "history.statuteLimitationsDate" and not _is_datetime(value):
            yield _problem(path, "must be an ISO 8601 datetime")


def _name_problems(path: str, value: Any) -> Iterator[dict[str, str]]:
    if not isinstance(value, dict):
        yield _problem(path, f"{path} must be an object")
        return
    for part, text in value.items():
        if part not in _NAME_PARTS:
            yield _problem(f"{path}.{part}", "not a known field")
        elif text is not None and not isinstance(text, str):
            yield _problem(f"{path}.{part}", "must be a string")


def _is_date(value: str) -> bool:
    if not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _stored_form(row: dict[str, Any]) -> dict[str, Any]:
    """``currentBalance`` sent as numeric text is kept as the number it stands for (whole
    when written without a decimal point), so it compares as a number."""
    balance = row.get("currentBalance")
    if not isinstance(balance, str):
        return row
    number = float(balance)
    kept = int(number) if number.is_integer() and "." not in balance else number
    return {**row, "currentBalance": kept}


def _created(row: dict[str, Any]) -> dict[str, Any]:
    missing = []
    if not isinstance(row.get("phoneNumber"), str):
        missing.append("phoneNumber")
    if not row.get("portfolioId"):
        missing.append("portfolioId")
    metadata = row.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("filenumber") in (None, ""):
        missing.append("metadata.filenumber")
    if missing:
        raise _RowFailure(
            "MISSING_REQUIRED_FIELD",
            f"Missing required field(s) to create an account: {', '.join(missing)}",
            [{"field": f, "message": f"{f} is required to create an account"}
             for f in missing],
        )
    return _without_nulls(row)


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
        elif old is _ABSENT or not same_value(old, value):
            changes.append({"field": path, "from": None if old is _ABSENT else old, "to": value})
            stored[key] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    return changes
