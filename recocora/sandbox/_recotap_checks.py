"""How the sandbox's Recotap checks what it is sent: query parameters, bodies, timestamps and
cursors, with failures collected in validator-object form."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

from ._core import Request

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"([Zz]|[+\-]\d{2}(?::?\d{2})?)?)?$"
)


def _iso_from_ms(ms: int) -> str:
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _parse_iso_ms(text: str) -> int | None:
    """Epoch milliseconds (floored) of an ISO 8601 date or date-time; naive means UTC."""
    m = _ISO.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if zone and zone not in "Zz":
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or "0")
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    try:
        dt = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None
    return (dt - _EPOCH) // timedelta(milliseconds=1)


_CURSOR_PREFIX = "rtp:"
_REPEATED = "\x00repeated"


def _encode_cursor(row_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{row_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    digits = raw[len(_CURSOR_PREFIX) :]
    if not raw.startswith(_CURSOR_PREFIX) or not digits.isascii() or not digits.isdigit():
        return None
    row_id = int(digits)
    # Only the exact spelling this server hands out is accepted: no padding or case games.
    return row_id if _encode_cursor(row_id) == cursor else None



def _violation(prop: str, **constraints: str) -> dict[str, Any]:
    return {"property": prop, "constraints": dict(constraints)}


class _HttpError(Exception):
    def __init__(
        self,
        status: int,
        *,
        custom: str | None = None,
        violations: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(custom or HTTPStatus(status).phrase)
        self.status = status
        self.custom = custom
        self.violations = violations
        self.headers = headers or {}


def query_params(
    req: Request, allowed: Iterable[str], violations: list[dict[str, Any]]
) -> dict[str, str | None]:
    """The single value of each allowed parameter; repeated ones count as invalid."""
    names = set(allowed)
    for name in req.query:
        if name not in names:
            violations.append(
                _violation(name, whitelistValidation=f"property {name} should not exist")
            )
    out: dict[str, str | None] = {}
    for name in names:
        values = req.query.get(name)
        # A repeated parameter arrives as a list, which no validator accepts.
        out[name] = None if not values else values[0] if len(values) == 1 else _REPEATED
    return out


def parse_limit(
    raw: str | None, violations: list[dict[str, Any]], default: int, most: int
) -> int:
    """The ``limit`` parameter; ``default`` when absent, checked against 1..``most``."""
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]+", raw):
        violations.append(_violation("limit", isInt="limit must be an integer number"))
        return default
    # Clamp absurdly long numbers before int(), which refuses more than 4300 digits.
    if len(raw.lstrip("-").lstrip("0")) > 12:
        value = -1 if raw.startswith("-") else most + 1
    else:
        value = int(raw)
    if value < 1:
        violations.append(_violation("limit", min="limit must not be less than 1"))
    elif value > most:
        violations.append(
            _violation("limit", max=f"limit must not be greater than {most}")
        )
    return value


def _validate_mappings(
    body: Mapping[str, Any], max_size: int, violations: list[dict[str, Any]]
) -> list[dict[str, str]] | None:
    """Collect every validator failure of a Map External IDs body; the mappings if all pass."""
    for name in body:
        if name != "mappings":
            violations.append(
                _violation(name, whitelistValidation=f"property {name} should not exist")
            )
    mappings = body.get("mappings")
    if not isinstance(mappings, list):
        violations.append(_violation("mappings", isArray="mappings must be an array"))
        return None
    if not mappings:
        violations.append(
            _violation("mappings", arrayMinSize="mappings must contain at least 1 elements")
        )
    elif len(mappings) > max_size:
        violations.append(
            _violation(
                "mappings",
                arrayMaxSize=f"mappings must contain no more than {max_size} elements",
            )
        )
    clean: list[dict[str, str]] = []
    for i, item in enumerate(mappings):
        where = f"mappings.{i}"
        if not isinstance(item, dict):
            violations.append(_violation(where, isObject=f"{where} must be an object"))
            continue
        for field in ("domain", "externalId"):
            value = item.get(field)
            constraints: dict[str, str] = {}
            if not isinstance(value, str):
                constraints["isString"] = f"{field} must be a string"
            if value is None or (isinstance(value, str) and not value.strip()):
                constraints["isNotEmpty"] = f"{field} should not be empty"
            if constraints:
                violations.append(_violation(f"{where}.{field}", **constraints))
        for name in item:
            if name not in ("domain", "externalId"):
                violations.append(
                    _violation(
                        f"{where}.{name}", whitelistValidation=f"property {name} should not exist"
                    )
                )
        clean.append(item)
    return clean
