"""The sandbox's Cora field rules: which fields a row may carry, their types, and the merge.

These rules (``READ_ONLY``, ``STRING_FIELDS``, ``check_fields`` and the merge) are a second,
independent reading of the contract, kept apart from the client's field catalogue on purpose:
the sandbox is the oracle the tests compare the client against (its validation, its local
diff), so it must not share the code it judges. Do not import ``recocora.cora`` (the client's
rules) here.
"""

from __future__ import annotations

import copy
import math
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

READ_ONLY = frozenset(
    {"id", "organizationId", "status_category", "currentEmailAddressId", "emailAddressIds",
     "createdAt", "updatedAt"}
)
STRING_FIELDS = frozenset(
    {"portfolioId", "bucket", "phoneNumber", "status", "clientStatus", "emailAddress",
     "typeOfDebt", "bank", "client"}
)
FREE_OBJECTS = frozenset({"metadata", "compliance", "paymentRules", "contactInfo", "smsOptOut"})
STRUCTURED = frozenset({"person", "address", "history"})
OTHER_FIELDS = frozenset({"originalCreditor", "currentBalance", "tags"})
WRITABLE = STRING_FIELDS | FREE_OBJECTS | STRUCTURED | OTHER_FIELDS
BULK_ONLY = frozenset({"portfolioId", "bucket"})
E164 = re.compile(r"\+[1-9][0-9]{0,14}")
NUMERIC = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
_MISSING: Any = object()


class RowError(Exception):
    def __init__(self, code: str, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details



def _is_date(value: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
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


def _type_problems(row: dict[str, Any], *, patch: bool) -> list[dict[str, str]]:
    """Wrong JSON types and unknown fields, as ``details`` entries."""
    out: list[dict[str, str]] = []

    def bad(field: str, message: str) -> None:
        out.append({"field": field, "message": message})

    for key, value in row.items():
        if key == "externalId" or key in READ_ONLY:
            continue
        if key not in WRITABLE:
            bad(key, f"{key} is not a known account field")
            continue
        if patch and key in BULK_ONLY:
            continue  # reported as FIELD_NOT_UPDATABLE
        if value is None:
            continue  # an explicit null clears the stored value
        if key in STRING_FIELDS:
            if not isinstance(value, str):
                bad(key, f"{key} must be a string")
        elif key in FREE_OBJECTS:
            if not isinstance(value, dict):
                bad(key, f"{key} must be an object")
        elif key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                bad(key, "tags must be an array of strings")
        elif key == "currentBalance":
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            ) or (
                isinstance(value, str) and NUMERIC.fullmatch(value) is not None
                and math.isfinite(float(value))
            )
            if not ok:
                bad(key, "currentBalance must be a finite number or numeric string")
        elif key == "originalCreditor":
            if not isinstance(value, (str, dict)):
                bad(key, "originalCreditor must be a string or an object")
        elif key in STRUCTURED:
            if not isinstance(value, dict):
                bad(key, f"{key} must be an object")
            else:
                out.extend(_structured_problems(key, value))
    return out


def _structured_problems(key: str, obj: dict[str, Any]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    strings: frozenset[str]
    if key == "person":
        strings = frozenset({"ssn", "last4SSN", "birthdate"})
        allowed = strings | {"name"}
    elif key == "address":
        strings = frozenset({"street", "additionalStreet", "city", "state", "zip", "country"})
        allowed = strings
    else:  # history: documented keys typed, more undocumented keys allowed
        strings = frozenset({"origin", "statuteLimitationsDate"})
        allowed = frozenset()
    for sub, value in obj.items():
        path = f"{key}.{sub}"
        if allowed and sub not in allowed:
            out.append({"field": path, "message": f"{path} is not a known field"})
        elif value is None:
            continue
        elif sub == "name":
            if not isinstance(value, dict):
                out.append({"field": path, "message": f"{path} must be an object"})
                continue
            for part, v in value.items():
                if part not in ("first", "last", "middle"):
                    out.append({"field": f"{path}.{part}", "message": "not a known field"})
                elif v is not None and not isinstance(v, str):
                    out.append({"field": f"{path}.{part}", "message": "must be a string"})
        elif sub in strings and not isinstance(value, str):
            out.append({"field": path, "message": f"{path} must be a string"})
        elif sub == "birthdate" and not _is_date(value):
            out.append({"field": path, "message": "birthdate must be a date as YYYY-MM-DD"})
        elif sub == "statuteLimitationsDate" and not _is_datetime(value):
            out.append({"field": path, "message": "must be an ISO 8601 datetime"})
    return out


def check_fields(row: dict[str, Any], *, patch: bool = False) -> None:
    """Raise :class:`RowError` for the first class of problem a row has."""
    ro = sorted(k for k in row if k in READ_ONLY or (patch and k in BULK_ONLY))
    if ro:
        raise RowError(
            "FIELD_NOT_UPDATABLE",
            f"Field(s) cannot be written: {', '.join(ro)}",
            [{"field": k, "message": f"{k} is read-only"} for k in ro],
        )
    problems = _type_problems(row, patch=patch)
    if problems:
        raise RowError("INVALID_FIELD_VALUE", problems[0]["message"], problems)
    phone = row.get("phoneNumber")
    if isinstance(phone, str) and not E164.fullmatch(phone):
        raise RowError(
            "INVALID_PHONE_NUMBER",
            "phoneNumber must be in E.164 format, e.g. +15555550111",
            [{"field": "phoneNumber", "message": "not E.164"}],
        )


def _normalise_values(row: dict[str, Any]) -> dict[str, Any]:
    """Numeric strings for currentBalance are stored as numbers [sandbox]."""
    bal = row.get("currentBalance")
    if isinstance(bal, str):
        f = float(bal)
        row = {**row, "currentBalance": int(f) if f.is_integer() and "." not in bal else f}
    return row


def _same(a: Any, b: Any) -> bool:
    """Whether the sent ``b`` leaves the stored ``a`` as it is. Numeric text stored equals
    the number sent (the docs type currentBalance as number or numeric string) [sandbox]."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, str) and isinstance(b, (int, float)):
        return NUMERIC.fullmatch(a) is not None and Decimal(a.strip()) == Decimal(str(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def merge_into(stored: dict[str, Any], incoming: dict[str, Any], prefix: str = "") -> list[
    dict[str, Any]
]:
    """Deep-merge ``incoming`` into ``stored`` in place; objects merge, the rest replaces.

    Returns the changes as ``{"field": dotted path, "from", "to"}``.
    """
    changes: list[dict[str, Any]] = []
    for key, value in incoming.items():
        path = f"{prefix}{key}"
        old = stored.get(key, _MISSING)
        if isinstance(value, dict) and (isinstance(old, dict) or old is _MISSING or old is None):
            target: dict[str, Any] = old if isinstance(old, dict) else {}
            if not isinstance(old, dict):
                if not value:
                    changes.append({"field": path, "from": None, "to": {}})
                stored[key] = target
            changes.extend(merge_into(target, value, f"{path}."))
        elif old is _MISSING or not _same(old, value):
            changes.append(
                {"field": path, "from": None if old is _MISSING else old, "to": value}
            )
            stored[key] = copy.deepcopy(value)
    return changes


def _as_text(value: Any) -> Any:
    """Every number in ``value`` as numeric text (``450.25`` -> ``"450.25"``), booleans kept:
    how a server that keeps numbers as text may read them back."""
    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _strip_nulls(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _strip_nulls(v) if isinstance(v, dict) else v for k, v in obj.items() if v is not None
    }


def new_account(org: str, row: dict[str, Any], now: str) -> dict[str, Any]:
    """A new account from ``row``, or :class:`RowError` if it lacks what creating needs."""
    missing = []
    if not isinstance(row.get("phoneNumber"), str):
        missing.append("phoneNumber")
    if not row.get("portfolioId"):
        missing.append("portfolioId")
    meta = row.get("metadata")
    if not isinstance(meta, dict) or meta.get("filenumber") in (None, ""):
        missing.append("metadata.filenumber")
    if missing:
        raise RowError(
            "MISSING_REQUIRED_FIELD",
            f"Missing required field(s) to create an account: {', '.join(missing)}",
            [{"field": f, "message": f"{f} is required to create an account"}
             for f in missing],
        )
    return {
        "id": f"acc_{uuid.uuid4().hex[:24]}",
        "organizationId": org,
        **_strip_nulls(row),
        "createdAt": now,
        "updatedAt": now,
    }
