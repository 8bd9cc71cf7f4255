"""The Cora half of the sandbox: signed bulk upsert, reads, PATCH, the per-key rate window.

Where the vendor's docs are silent, the behaviour here is the sandbox's own choice (listed in
the README's sandbox section); the client must tolerate it, never depend on it.

The field rules below (``READ_ONLY``, ``STRING_FIELDS``, ``check_fields`` and the merge) are a
second, independent reading of the contract, kept apart from the client's field catalogue on
purpose: the sandbox is the oracle the tests compare the client against (its validation, its
local diff), so it must not share the code it judges. Do not import the client's rules here.
"""

from __future__ import annotations

import copy
import email.utils
import hashlib
import hmac
import math
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote

import orjson

from ._core import Clock, Request, Response, Store, json_response
from ._faults import FaultConfig

__all__ = ["CoraApi", "RateWindow"]

MAX_BULK = 500
MAX_GET_IDS = 200
TIMESTAMP_WINDOW = 300.0
KEY_PREFIX = "cora_org_"

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


Stamp = Literal["arrival", "body", "processed"]
RetryAfterStyle = Literal["seconds", "date", "none", "stale"]


@dataclass(frozen=True)
class RateWindow:
    """How the sandbox enforces Cora's bulk rate window: one request per ``seconds`` per key.

    The docs say only "1 request every 20 seconds"; a real gateway may stamp a request at any
    point of its life, on another node, and answer a refusal in several ways. Each of those
    is a setting here, so the client's pacing is tested against all of them:

    - ``stamp``: the instant a request counts from: ``arrival`` (the request line came in),
      ``body`` (its body was read), ``processed`` (its rows were written; the refusal check
      is made when the handler starts, the stamp when it ends).
    - ``jitter``: seconds, a uniform random delay added to each stamp (another node's clock,
      a queue), from a generator seeded with ``seed``.
    - ``restart_on_refusal``: a refused request restarts the window too.
    - ``retry_after``: the 429's header: ``seconds`` (whole seconds, rounded up), ``date``
      (an HTTP date), ``none`` (no header) or ``stale`` (one second less than the truth).

    >>> RateWindow(1.0, stamp="body", jitter=0.04).stamp
    'body'
    """

    seconds: float = 20.0
    stamp: Stamp = "arrival"
    jitter: float = 0.0
    restart_on_refusal: bool = False
    retry_after: RetryAfterStyle = "seconds"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stamp not in ("arrival", "body", "processed"):
            raise ValueError(f"stamp must be arrival, body or processed, got {self.stamp!r}")
        if self.retry_after not in ("seconds", "date", "none", "stale"):
            raise ValueError(
                f"retry_after must be seconds, date, none or stale, got {self.retry_after!r}"
            )
        if self.seconds < 0 or self.jitter < 0:
            raise ValueError("the window and its jitter are seconds >= 0")


class RowError(Exception):
    def __init__(self, code: str, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    headers = {k: str(v) for k, v in extra.pop("headers", {}).items()}
    return json_response(
        status, {"success": False, "code": code, "message": message, **extra}, headers
    )


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


class CoraApi:
    """Routes under ``/external-api``. ``rate`` is the bulk rate window (:class:`RateWindow`;
    ``window`` its length in seconds)."""

    def __init__(self, store: Store, clock: Clock, window: float | RateWindow = 20.0) -> None:
        self.store, self.clock = store, clock
        self.variants = FaultConfig()  # the answer variants switched on (see FaultConfig)
        self._rate_lock = threading.Lock()
        self._last_bulk: dict[str, float] = {}
        self.rate = window if isinstance(window, RateWindow) else RateWindow(window)
        store.script(
            """
                CREATE TABLE IF NOT EXISTS cora_orgs (org TEXT PRIMARY KEY);
                CREATE TABLE IF NOT EXISTS cora_keys (
                    key_id TEXT PRIMARY KEY, secret TEXT NOT NULL, org TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS cora_accounts (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    org TEXT NOT NULL, external_id TEXT NOT NULL, doc BLOB NOT NULL,
                UNIQUE (org, external_id));
            """
        )

    # -- administration (tests, notebooks, CLI) ------------------------------------------

    def add_org(self, org: str) -> None:
        with self.store.tx() as db:
            db.execute("INSERT OR IGNORE INTO cora_orgs VALUES (?)", (org,))

    def add_key(self, key: str, org: str, create_org: bool = True) -> None:
        key_id, secret = self.split_key(key)
        if key_id is None or secret is None:
            raise ValueError("a Cora key looks like cora_org_<keyId>.<secret>")
        if create_org:
            self.add_org(org)
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO cora_keys VALUES (?, ?, ?)", (key_id, secret, org))

    def reset(self) -> None:
        with self.store.tx() as db:
            db.execute("DELETE FROM cora_accounts")
            db.execute("DELETE FROM cora_keys")
            db.execute("DELETE FROM cora_orgs")
        self.reset_rate()

    @property
    def window(self) -> float:
        return self.rate.seconds

    @window.setter
    def window(self, seconds: float) -> None:
        self.rate = replace(self.rate, seconds=seconds)

    @property
    def rate(self) -> RateWindow:
        return self._rate

    @rate.setter
    def rate(self, rate: RateWindow) -> None:
        with self._rate_lock:
            self._rate = rate
            self._jitter = random.Random(rate.seed)

    def reset_rate(self) -> None:
        with self._rate_lock:
            self._last_bulk.clear()
            self._jitter = random.Random(self._rate.seed)

    def accounts(self, org: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as db:
            if org is None:
                rows = db.execute("SELECT doc FROM cora_accounts ORDER BY seq").fetchall()
            else:
                rows = db.execute(
                    "SELECT doc FROM cora_accounts WHERE org = ? ORDER BY seq", (org,)
                ).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def account(self, org: str, external_id: str) -> dict[str, Any] | None:
        found = self._load(org, [external_id])
        return found.get(external_id)

    def put_account(self, org: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Store ``doc`` as an account, as if created; server fields are filled in."""
        now = self.clock.iso()
        full = {
            "id": doc.get("id") or f"acc_{uuid.uuid4().hex[:24]}",
            "organizationId": org,
            **{k: v for k, v in doc.items() if k not in READ_ONLY},
            "createdAt": doc.get("createdAt", now),
            "updatedAt": doc.get("updatedAt", now),
        }
        with self.store.tx() as db:
            self._save(db, org, [full])
        return full

    def seed_demo(self, org: str, count: int = 2000, seed: int = 11) -> None:
        rng = random.Random(seed)
        firsts = ["Ana", "Ben", "Carla", "Dev", "Elena", "Femi", "Gus", "Hana", "Ivan", "Jo",
                  "Kai", "Lena", "Marco", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tomas"]
        lasts = ["Alvarez", "Brooks", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes",
                 "Ito", "Jensen", "Khan", "Lopez", "Miller", "Nguyen", "Okafor", "Patel",
                 "Quist", "Rossi", "Smith", "Tanaka"]
        cities = [("Austin", "TX", "787"), ("Denver", "CO", "802"), ("Columbus", "OH", "432"),
                  ("Tampa", "FL", "336"), ("Reno", "NV", "895"), ("Boise", "ID", "837")]
        streets = ["Oak St", "Maple Ave", "Pine Rd", "Cedar Ln", "Elm Dr", "Lake Blvd"]
        docs = []
        for i in range(1, count + 1):
            city, state, zip3 = rng.choice(cities)
            first, last = rng.choice(firsts), rng.choice(lasts)
            portfolio = "pf_consumer_2024" if i % 3 else "pf_medical_2025"
            doc: dict[str, Any] = {
                "externalId": f"ext-{i:06d}",
                "portfolioId": portfolio,
                "bucket": rng.choice(["current", "30-60", "60-90", "90+"]),
                "phoneNumber": f"+1{rng.randint(201, 989)}555{rng.randint(0, 9999):04d}",
                "status": "ACTIVE",
                "clientStatus": rng.choice(["open", "open", "disputed", "payment_plan"]),
                "emailAddress": f"{first.lower()}.{last.lower()}{i}@example.com",
                "currentBalance": round(rng.uniform(25, 9000), 2),
                "metadata": {
                    "filenumber": f"F-{100000 + i}",
                    "placementDate": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    "originalAccount": f"OA{rng.randint(10**7, 10**8 - 1)}",
                },
                "person": {
                    "name": {"first": first, "last": last},
                    "birthdate": f"{rng.randint(1950, 2002)}-{rng.randint(1, 12):02d}"
                    f"-{rng.randint(1, 28):02d}",
                    "last4SSN": f"{rng.randint(0, 9999):04d}",
                },
                "address": {
                    "street": f"{rng.randint(1, 9999)} {rng.choice(streets)}",
                    "city": city,
                    "state": state,
                    "zip": f"{zip3}{rng.randint(0, 99):02d}",
                    "country": "US",
                },
                "tags": rng.sample(["priority", "skip-trace", "legal-hold", "vip", "new"], 2),
            }
            if portfolio == "pf_medical_2025":
                doc["typeOfDebt"] = "MEDICAL"
                doc["originalCreditor"] = rng.choice(["St. Luke's", "Mercy General"])
            docs.append(doc)
        now = self.clock.iso()
        full = [
            {"id": f"acc_{rng.getrandbits(96):024x}", "organizationId": org, **d,
             "createdAt": now, "updatedAt": now}
            for d in docs
        ]
        with self.store.tx() as db:
            self._save(db, org, full)

    # -- storage ----------------------------------------------------------------------------

    def _load(self, org: str, external_ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self.store.read() as db:
            for start in range(0, len(external_ids), 500):
                part = external_ids[start : start + 500]
                marks = ",".join("?" * len(part))
                for ext, doc in db.execute(
                    f"SELECT external_id, doc FROM cora_accounts "
                    f"WHERE org = ? AND external_id IN ({marks})",
                    (org, *part),
                ):
                    out[ext] = orjson.loads(doc)
        return out

    @staticmethod
    def _save(db: Any, org: str, docs: list[dict[str, Any]]) -> None:
        db.executemany(
            "INSERT INTO cora_accounts (org, external_id, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (org, external_id) DO UPDATE SET doc = excluded.doc",
            [(org, d["externalId"], orjson.dumps(d)) for d in docs],
        )

    # -- auth -----------------------------------------------------------------------------

    @staticmethod
    def split_key(raw: str) -> tuple[str | None, str | None]:
        body = raw[len(KEY_PREFIX) :] if raw.startswith(KEY_PREFIX) else raw
        key_id, dot, secret = body.partition(".")
        if not dot or not key_id or not secret:
            return None, None
        return key_id, secret

    def _authenticate(self, req: Request, write: bool) -> tuple[str, str] | Response:
        """Return ``(org, key_id)`` or the error response."""
        auth = req.header("authorization")
        if write:
            ts, sig = req.header("x-cora-timestamp"), req.header("x-cora-signature")
            if not auth or not ts or not sig:
                return error(
                    401, "MISSING_AUTH_HEADERS",
                    "Write requests need Authorization, X-Cora-Timestamp and X-Cora-Signature",
                )
        elif not auth:
            return error(401, "MISSING_AUTH_HEADER", "Missing Authorization header")
        scheme, _, raw = auth.partition(" ")
        key_id, secret = self.split_key(raw.strip()) if scheme == "Bearer" else (None, None)
        with self.store.read() as db:
            found = (
                db.execute(
                    "SELECT k.secret, k.org, o.org FROM cora_keys k "
                    "LEFT JOIN cora_orgs o ON o.org = k.org WHERE k.key_id = ?",
                    (key_id,),
                ).fetchone()
                if key_id
                else None
            )
        if (
            found is None
            or secret is None
            or not hmac.compare_digest(found[0].encode(), secret.encode())
        ):
            return error(401, "INVALID_API_KEY", "Invalid API key")
        if found[2] is None:
            return error(401, "API_KEY_ORG_MISMATCH", "API key does not belong to an organization")
        if write:
            assert ts is not None and sig is not None
            if not re.fullmatch(r"\d{1,16}", ts):
                return error(
                    401, "REQUEST_TIMESTAMP_OUTSIDE_WINDOW", "X-Cora-Timestamp is not Unix time"
                )
            t = int(ts) / 1000.0 if len(ts) >= 12 else float(ts)
            if abs(self.clock.now() - t) > TIMESTAMP_WINDOW:
                return error(
                    401, "REQUEST_TIMESTAMP_OUTSIDE_WINDOW",
                    "Request timestamp is more than 5 minutes from server time",
                )
            canonical = ".".join(
                (ts, req.method.upper(), req.target, hashlib.sha256(req.body).hexdigest())
            )
            expected = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected.encode(), sig.encode()):
                return error(401, "INVALID_REQUEST_SIGNATURE", "Request signature does not match")
            ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return error(
                    415, "UNSUPPORTED_MEDIA_TYPE",
                    "Write requests need Content-Type: application/json",
                )
        return found[1], key_id  # type: ignore[return-value]

    def rate_limited(self, remaining: float | None) -> Response:
        """A 429 for a request ``remaining`` seconds early, its ``Retry-After`` written as
        :attr:`rate` says (``remaining=None``: no header at all)."""
        style = self.rate.retry_after
        headers: dict[str, Any] = {}
        if remaining is not None and style != "none":
            whole = max(1, math.ceil(remaining))
            if style == "seconds":
                headers["Retry-After"] = whole
            elif style == "stale":
                headers["Retry-After"] = whole - 1
            else:
                headers["Retry-After"] = email.utils.formatdate(
                    math.ceil(self.clock.now() + remaining), usegmt=True
                )
        return error(
            429, "RATE_LIMITED",
            f"Rate limit exceeded: one bulk request every {self.window:g} seconds per API key",
            headers=headers,
        )

    def _stamp(self, at: float) -> float:
        """``at`` plus this window's jitter (call under ``_rate_lock``)."""
        return at + (self._jitter.uniform(0.0, self.rate.jitter) if self.rate.jitter else 0.0)

    def _take_slot(self, key_id: str, req: Request) -> Response | None:
        """Refuse the request if it comes inside the window, else stamp it (unless it is
        stamped once processed: :meth:`_stamp_processed`)."""
        rate = self.rate
        if rate.seconds <= 0:
            return None
        if rate.stamp == "arrival":
            at = req.arrived
        elif rate.stamp == "body":
            at = req.body_read if req.body_read is not None else req.arrived
        else:
            at = time.monotonic()
        with self._rate_lock:
            now = self._stamp(at)
            last = self._last_bulk.get(key_id)
            if last is not None and now - last < rate.seconds:
                if last == math.inf:  # another request of this key is being processed
                    return self.rate_limited(rate.seconds)
                if rate.restart_on_refusal:
                    self._last_bulk[key_id] = now
                return self.rate_limited(rate.seconds - (now - last))
            if rate.stamp != "processed":
                self._last_bulk[key_id] = now
            else:
                # Hold the slot while processing; the stamp moves to the end of it.
                self._last_bulk[key_id] = math.inf
        return None

    def _stamp_processed(self, key_id: str) -> None:
        if self.rate.seconds > 0 and self.rate.stamp == "processed":
            with self._rate_lock:
                self._last_bulk[key_id] = self._stamp(time.monotonic())

    # -- routing ----------------------------------------------------------------------------

    def handle(self, req: Request, subpath: str) -> Response:
        base = "/external-api/accounts"
        if subpath == f"{base}/bulk-upsert":
            if req.method != "POST":
                return error(405, "METHOD_NOT_ALLOWED", "Use POST for bulk-upsert")
            return self._bulk_upsert(req)
        if subpath in (base, f"{base}/"):
            if req.method != "GET":
                return error(405, "METHOD_NOT_ALLOWED", f"{req.method} is not allowed here")
            return self._get_many(req)
        if subpath.startswith(f"{base}/") and "/" not in subpath[len(base) + 1 :]:
            external_id = unquote(subpath[len(base) + 1 :])
            if req.method == "GET":
                return self._get_one(req, external_id)
            if req.method == "PATCH":
                return self._patch(req, external_id)
            return error(405, "METHOD_NOT_ALLOWED", f"{req.method} is not allowed here")
        return error(404, "NOT_FOUND", f"No route for {req.method} {req.path}")

    @staticmethod
    def _json_body(req: Request) -> Any:
        try:
            return orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return _MISSING

    def _bulk_upsert(self, req: Request) -> Response:
        auth = self._authenticate(req, write=True)
        if isinstance(auth, Response):
            return auth
        org, key_id = auth
        limited = self._take_slot(key_id, req)
        if limited is not None:
            return limited
        try:
            return self._upsert_rows(req, org)
        finally:
            self._stamp_processed(key_id)

    def _upsert_rows(self, req: Request, org: str) -> Response:
        body = self._json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("accounts"), list):
            return error(
                400, "INVALID_REQUEST_BODY", "Body must be a JSON object with an accounts array"
            )
        for flag in ("dryRun", "includeChanges"):
            if flag in body and not isinstance(body[flag], bool):
                return error(400, "INVALID_REQUEST_BODY", f"{flag} must be a boolean")
        rows: list[Any] = body["accounts"]
        if not rows:
            return error(400, "ACCOUNTS_REQUIRED", "accounts must contain at least one account")
        if len(rows) > MAX_BULK:
            return error(
                400, "ACCOUNTS_LIMIT_EXCEEDED",
                f"accounts must contain at most {MAX_BULK} accounts (got {len(rows)})",
            )
        dry = bool(body.get("dryRun", False))
        with_changes = bool(body.get("includeChanges", False))
        with self.store.tx() as db:
            results, to_save = self._apply(org, rows, with_changes)
            if not dry:
                self._save(db, org, to_save)
        counts = {s: 0 for s in ("created", "updated", "unchanged", "failed")}
        for r in results:
            counts[r["status"]] += 1
            if dry and r["status"] == "created":
                r.pop("accountId", None)
                r.pop("updatedAt", None)
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        return json_response(
            200,
            {
                "success": True,
                "code": "ACCOUNTS_BULK_UPSERT_COMPLETED",
                "message": f"Bulk upsert {'checked (dry run)' if dry else 'completed'}: {summary}",
                "dryRun": dry,
                "requested": len(rows),
                **counts,
                "results": results,
            },
        )

    def _apply(
        self, org: str, rows: list[Any], with_changes: bool
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ids = [r["externalId"] for r in rows if isinstance(r, dict)
               and isinstance(r.get("externalId"), str)]
        existing = self._load(org, ids)
        seen: set[str] = set()
        now = self.clock.iso()
        results: list[dict[str, Any]] = []
        to_save: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            result: dict[str, Any] = {"index": index}
            try:
                if not isinstance(row, dict):
                    raise RowError("INVALID_FIELD_VALUE", "Each account must be an object", [])
                ext = row.get("externalId", _MISSING)
                if isinstance(ext, str):
                    result["externalId"] = ext
                if ext is _MISSING or ext is None or ext == "":
                    raise RowError(
                        "MISSING_REQUIRED_FIELD", "externalId is required",
                        [{"field": "externalId", "message": "externalId is required"}],
                    )
                if not isinstance(ext, str):
                    raise RowError(
                        "INVALID_FIELD_VALUE", "externalId must be a string",
                        [{"field": "externalId", "message": "externalId must be a string"}],
                    )
                if ext in seen:
                    raise RowError(
                        "DUPLICATE_EXTERNAL_ID",
                        f"externalId {ext!r} appears more than once in this request",
                        [{"field": "externalId", "message": "duplicate in request"}],
                    )
                seen.add(ext)
                check_fields(row)
                row = _normalise_values(row)
                stored = existing.get(ext)
                if stored is None:
                    doc = self._create(org, row, now)
                    existing[ext] = doc
                    result.update(status="created", accountId=doc["id"], updatedAt=now)
                    to_save.append(doc)
                else:
                    merged = copy.deepcopy(stored)
                    incoming = {
                        k: v for k, v in row.items() if k not in ("externalId", "portfolioId")
                    }
                    changes = merge_into(merged, incoming)
                    if changes:
                        merged["updatedAt"] = now
                        existing[ext] = merged
                        to_save.append(merged)
                        result.update(status="updated", accountId=merged["id"], updatedAt=now)
                        if with_changes:
                            result["changes"] = changes
                    else:
                        result.update(
                            status="unchanged", accountId=stored["id"],
                            updatedAt=stored.get("updatedAt"),
                        )
            except RowError as e:
                result.update(status="failed", code=e.code, message=e.message, details=e.details)
            results.append(result)
        return results, to_save

    @staticmethod
    def _create(org: str, row: dict[str, Any], now: str) -> dict[str, Any]:
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

    def _get_many(self, req: Request) -> Response:
        auth = self._authenticate(req, write=False)
        if isinstance(auth, Response):
            return auth
        raw = req.query.get("externalIds")
        ids = [i.strip() for part in raw or [] for i in part.split(",") if i.strip()]
        if not ids:
            return error(400, "EXTERNAL_IDS_REQUIRED", "Pass externalIds=A,B,... (at most 200)")
        ids = list(dict.fromkeys(ids))
        if len(ids) > MAX_GET_IDS:
            return error(
                400, "EXTERNAL_IDS_LIMIT_EXCEEDED",
                f"At most {MAX_GET_IDS} externalIds per request (got {len(ids)})",
            )
        found = self._load(auth[0], ids)
        accounts = [self._shown(found[i]) for i in ids if i in found]
        return json_response(
            200,
            {
                "success": True,
                "code": "ACCOUNTS_FETCHED",
                "message": f"Fetched {len(accounts)} account(s)",
                "accounts": accounts,
                "notFoundExternalIds": [i for i in ids if i not in found],
                "count": len(accounts),
            },
        )

    def _shown(self, doc: dict[str, Any]) -> dict[str, Any]:
        """An account as a read answers it."""
        return _as_text(doc) if self.variants.numbers_as_text else doc

    def _get_one(self, req: Request, external_id: str) -> Response:
        auth = self._authenticate(req, write=False)
        if isinstance(auth, Response):
            return auth
        doc = self.account(auth[0], external_id)
        if doc is None:
            return error(404, "ACCOUNT_NOT_FOUND", f"No account with externalId {external_id!r}")
        return json_response(
            200, {"success": True, "code": "ACCOUNT_FETCHED", "message": "Account fetched",
                  "account": self._shown(doc)},
        )

    def _patch(self, req: Request, external_id: str) -> Response:
        auth = self._authenticate(req, write=True)
        if isinstance(auth, Response):
            return auth
        body = self._json_body(req)
        if isinstance(body, dict) and set(body) == {"update"} and isinstance(body["update"], dict):
            body = body["update"]
        if not isinstance(body, dict):
            return error(400, "INVALID_REQUEST_BODY", "Body must be a JSON object of fields")
        if body.get("externalId", external_id) != external_id:
            return error(
                400, "FIELD_NOT_UPDATABLE", "externalId cannot be changed",
                details=[{"field": "externalId", "message": "externalId is never updated"}],
            )
        try:
            check_fields(body, patch=True)
        except RowError as e:
            return error(400, e.code, e.message, details=e.details)
        body = _normalise_values({k: v for k, v in body.items() if k != "externalId"})
        with self.store.tx() as db:
            stored = self.account(auth[0], external_id)
            if stored is None:
                return error(
                    404, "ACCOUNT_NOT_FOUND", f"No account with externalId {external_id!r}"
                )
            if merge_into(stored, body):
                stored["updatedAt"] = self.clock.iso()
                self._save(db, auth[0], [stored])
        return json_response(
            200, {"success": True, "code": "ACCOUNT_UPDATED", "message": "Account updated",
                  "account": stored},
        )
