"""The Recotap half of the sandbox: ``/api/v1/accounts...`` served from the shared SQLite store.

It follows the contract in ``docs/api-contract.md`` section 2, and where the vendor's docs are
silent it is deliberately strict, so a client that works here does not lean on lenient
behaviour:

* every request needs a known ``X-Api-Key`` (401 otherwise); an optional per-key
  requests-per-second limit answers 429 with ``Retry-After``;
* bodies must be JSON objects sent as ``application/json``; query parameters and body fields
  the endpoint does not define are refused (400), as a whitelisting validator would;
* validation failures list every failing property at once, in validator-object form;
* ``GET /accounts`` hands out a ``nextCursor`` even on the last non-empty page, so only
  ``hasNextPage`` tells a client when to stop.

Domains are stored and compared in one normal form (see :func:`normalize_domain`), so
``https://www.Müller.de:443/x`` and ``xn--mller-kva.de`` name the same account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import random
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

import idna
import orjson

from recocora.sandbox._core import Clock, Request, Response, Store, json_response
from recocora.sandbox._faults import FaultConfig

__all__ = ["RecotapApi", "normalize_domain"]

_Handler = Callable[[Request, str], Any]

# ---------------------------------------------------------------------------------------------
# Domain normalisation
# ---------------------------------------------------------------------------------------------

_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://")
# Dots that IDNA treats as label separators (ideographic, fullwidth, halfwidth).
_UNICODE_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^[0-9]{0,5}$")


def normalize_domain(value: object) -> str | None:
    """Reduce a domain, URL or e-mail address to the bare host name Recotap matches on.

    Lower-cases and trims; drops scheme, user info, ``www.``, port, path, query, fragment and a
    trailing dot; converts non-ASCII labels to punycode (IDNA with UTS #46 mapping, as
    browsers do), so the unicode and punycode spellings of one domain agree. Returns ``None`` when
    nothing usable is left (empty text, IP addresses, illegal characters, a single label), and
    such a value matches no account.

    >>> normalize_domain("HTTPS://www.Müller.de:443/kontakt?x=1#top")
    'xn--mller-kva.de'
    """
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    scheme = _SCHEME.match(text)
    if scheme:
        text = text[scheme.end() :]
    elif text.startswith("//"):
        text = text[2:]
    host = re.split(r"[/?#\\]", text, maxsplit=1)[0]
    host = host.rpartition("@")[2]
    if host.startswith("["):
        return None  # IPv6 literal: never a company domain
    host, _, port = host.partition(":")
    if not _PORT.match(port):
        return None
    host = host.translate(_UNICODE_DOTS)
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        return None
    try:
        # UTS #46, non-transitional: the mapping browsers use (ß stays ß, xn--fa-hia).
        host = idna.encode(host, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
    labels = host.split(".")
    if labels[0] == "www" and len(labels) > 2:
        labels = labels[1:]
    if len(labels) < 2 or labels[-1].isdigit():
        return None
    for label in labels:
        if not _LABEL.match(label):
            return None
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return None
    return ".".join(labels)


# ---------------------------------------------------------------------------------------------
# Small helpers: timestamps, cursors, errors
# ---------------------------------------------------------------------------------------------

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


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


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


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rtp_keys (
    key_hash TEXT PRIMARY KEY,
    org TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rtp_accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL,
    name TEXT NOT NULL,
    domain TEXT NOT NULL,
    external_id TEXT,
    intent_score INTEGER NOT NULL,
    engagement_score INTEGER NOT NULL,
    fit_score INTEGER NOT NULL,
    custom_fields TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rtp_accounts_org_domain ON rtp_accounts (org, domain);
CREATE INDEX IF NOT EXISTS rtp_accounts_org_id ON rtp_accounts (org, id);
CREATE INDEX IF NOT EXISTS rtp_accounts_org_unmapped ON rtp_accounts (org, id)
    WHERE external_id IS NULL;
"""

_COLUMNS = (
    "id, name, domain, external_id, intent_score, engagement_score, fit_score, "
    "custom_fields, updated_ms"
)


_INSERT_COLUMNS = (
    "org, name, domain, external_id, intent_score, engagement_score, fit_score, "
    "custom_fields, updated_ms"
)


def _account_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "rtp_aid": f"rtp_{row['id']:06d}",
        "name": row["name"],
        "domain": row["domain"],
        "externalId": row["external_id"],
        "intentScore": row["intent_score"],
        "engagementScore": row["engagement_score"],
        "fitScore": row["fit_score"],
        "customFields": orjson.loads(row["custom_fields"]),
        "updatedAt": _iso_from_ms(row["updated_ms"]),
    }


class RecotapApi:
    """Recotap's external API (``/api/v1``) over a shared :class:`Store`.

    ``handle`` answers one request; the other methods set up and inspect state for tests,
    notebooks and the command line. ``rps`` (requests per second per API key, ``None`` for no
    limit) may be changed while serving. ``monotonic`` is the rate limiter's clock
    (``time.monotonic``); tests may replace it to step through the window.

    >>> api = RecotapApi(Store(), Clock())
    >>> api.add_key("rtp_demo", "org-1")
    >>> api.add_account("org-1", name="Acme Inc", domain="https://www.acme.com/")["domain"]
    'acme.com'
    """

    MAX_MAPPINGS = 100
    DEFAULT_LIMIT = 100
    MAX_LIMIT = 1000
    MAX_DOMAIN_FILTER = 100

    def __init__(self, store: Store, clock: Clock, rps: float | None = None) -> None:
        self.store = store
        self.clock = clock
        self._rate_lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._rps: float | None = None
        self.rps = rps
        self.monotonic: Callable[[], float] = time.monotonic
        self.variants = FaultConfig()  # the answer variants switched on (see FaultConfig)
        with store.tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
        self._routes: dict[str, dict[str, _Handler]] = {
            "/accounts": {"GET": self._list_accounts},
            "/accounts/external-ids": {"PATCH": self._map_external_ids},
            "/accounts/missing-external-ids": {"GET": self._missing_external_ids},
        }

    # -- configuration ---------------------------------------------------------------------

    @property
    def rps(self) -> float | None:
        """Requests per second allowed per API key (``None``: unlimited)."""
        return self._rps

    @rps.setter
    def rps(self, value: float | None) -> None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"rps must be a positive number or None, got {value!r}")
        with self._rate_lock:
            self._rps = None if value is None else float(value)

    def add_key(self, key: str, org: str) -> None:
        """Accept ``key`` in ``X-Api-Key`` for organisation ``org``. Only a hash is stored.

        >>> api = RecotapApi(Store(), Clock())
        >>> api.add_key("rtp_demo", "org-1")
        """
        if not isinstance(key, str) or not key or key != key.strip():
            raise ValueError("an API key must be a non-empty string without surrounding spaces")
        if not isinstance(org, str) or not org:
            raise ValueError("org must be a non-empty string")
        digest = _key_digest(key)
        with self.store.tx() as db:
            row = db.execute("SELECT org FROM rtp_keys WHERE key_hash = ?", (digest,)).fetchone()
            if row is not None and row["org"] != org:
                raise ValueError("this API key is already registered for another organisation")
            db.execute(
                "INSERT OR IGNORE INTO rtp_keys (key_hash, org) VALUES (?, ?)", (digest, org)
            )

    def add_account(
        self,
        org: str,
        *,
        name: str,
        domain: str,
        external_id: str | None = None,
        custom_fields: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create an account in ``org`` and return it as the API shows it.

        The domain is stored normalised; scores are derived from it, so they are stable.

        >>> api = RecotapApi(Store(), Clock())
        >>> api.add_account("org-1", name="Müller GmbH", domain="müller.de")["domain"]
        'xn--mller-kva.de'
        """
        if not isinstance(org, str) or not org:
            raise ValueError("org must be a non-empty string")
        normal = normalize_domain(domain)
        if normal is None:
            raise ValueError(f"domain {domain!r} is not a usable domain name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("name must be a non-empty string")
        if external_id is not None and (
            not isinstance(external_id, str) or not external_id.strip()
        ):
            raise ValueError("external_id must be None or a non-empty string")
        fields = {} if custom_fields is None else custom_fields
        if not isinstance(fields, dict):
            raise ValueError("custom_fields must be a dict")
        try:
            fields_json = orjson.dumps(fields).decode("utf-8")
        except TypeError as exc:
            raise ValueError(f"custom_fields must be JSON-serialisable: {exc}") from None
        digest = hashlib.sha256(normal.encode("ascii")).digest()
        scores = (digest[0] % 101, digest[1] % 101, digest[2] % 101)
        with self.store.tx() as db:
            cur = db.execute(
                f"INSERT INTO rtp_accounts ({_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (org, name, normal, external_id, *scores, fields_json, self._now_ms()),
            )
            row = db.execute(
                f"SELECT {_COLUMNS} FROM rtp_accounts WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return _account_json(row)

    def accounts(self, org: str | None = None) -> list[dict[str, Any]]:
        """Every stored account (of ``org``, or of all organisations), in creation order.

        >>> api = RecotapApi(Store(), Clock())
        >>> api.accounts("org-1")
        []
        """
        with self.store.read() as db:
            if org is None:
                rows = db.execute(f"SELECT {_COLUMNS} FROM rtp_accounts ORDER BY id").fetchall()
            else:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM rtp_accounts WHERE org = ? ORDER BY id", (org,)
                ).fetchall()
        return [_account_json(r) for r in rows]

    def reset(self) -> None:
        """Forget every account, key and rate-limit record (``rps`` itself is kept).

        >>> api = RecotapApi(Store(), Clock())
        >>> api.reset()
        """
        with self.store.tx() as db:
            db.execute("DELETE FROM rtp_accounts")
            db.execute("DELETE FROM rtp_keys")
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'rtp_accounts'")
        with self._rate_lock:
            self._hits.clear()

    def seed_demo(self, org: str, count: int = 1500, seed: int = 7) -> None:
        """Add ``count`` realistic, deterministic company accounts to ``org``.

        About a third have no ``externalId``; the rest carry ``crm-NNNNNN``. Domains are unique
        (also against accounts already in ``org``), a few are internationalised.

        >>> api = RecotapApi(Store(), Clock())
        >>> api.seed_demo("org-1", count=30)
        >>> len(api.accounts("org-1"))
        30
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        with self.store.tx() as db:
            taken = {
                r["domain"]
                for r in db.execute("SELECT domain FROM rtp_accounts WHERE org = ?", (org,))
            }
            now_ms = self._now_ms()
            rows = list(_demo_rows(random.Random(seed), count, taken, now_ms))
            db.executemany(
                f"INSERT INTO rtp_accounts ({_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(org, *r) for r in rows],
            )

    # -- request handling ------------------------------------------------------------------

    def handle(self, req: Request, subpath: str) -> Response:
        """Answer one request; ``subpath`` is the part of ``req.path`` after ``/api/v1``.

        >>> api = RecotapApi(Store(), Clock())
        >>> req = Request("GET", "/api/v1/accounts", "/api/v1/accounts", {}, {}, b"")
        >>> api.handle(req, "/accounts").status
        401
        """
        method = req.method.upper()
        try:
            routes = self._routes.get(subpath)
            if routes is None:
                raise _HttpError(404, custom=f"Cannot {method} {req.path}")
            handler = routes.get(method)
            if handler is None:
                allowed = ", ".join(sorted(routes))
                raise _HttpError(
                    405,
                    custom=f"Method {method} is not allowed on {req.path}; use {allowed}",
                    headers={"Allow": allowed},
                )
            org, digest = self._authenticate(req)
            self._throttle(digest)
            data = handler(req, org)
        except _HttpError as err:
            return self._error(req, err)
        if self.variants.bare_answers:
            return json_response(200, data)
        return json_response(
            200,
            {"statusCode": 200, "timestamp": self.clock.iso(), "path": req.path, "data": data},
        )

    def _error(self, req: Request, err: _HttpError) -> Response:
        body: dict[str, Any] = {
            "statusCode": err.status,
            "timestamp": self.clock.iso(),
            "path": req.path,
            "message": HTTPStatus(err.status).phrase,
        }
        if err.violations is not None:
            body["data"] = err.violations
        else:
            body["customMessage"] = err.custom
            body["data"] = None
        if self.variants.errors_without_data:
            del body["data"]
        return json_response(err.status, body, err.headers)

    def _authenticate(self, req: Request) -> tuple[str, str]:
        key = req.header("x-api-key")
        plain = self.variants.unauthorized_text
        if not key:
            raise _HttpError(
                401, custom="Unauthorized access" if plain else "X-Api-Key header is required"
            )
        digest = _key_digest(key)
        with self.store.read() as db:
            row = db.execute(
                "SELECT key_hash, org FROM rtp_keys WHERE key_hash = ?", (digest,)
            ).fetchone()
        # The lookup is by hash, so its timing says nothing about the key; compare anyway.
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise _HttpError(401, custom="Unauthorized access" if plain else "Invalid API key")
        return str(row["org"]), digest

    def _throttle(self, digest: str) -> None:
        with self._rate_lock:
            rps = self._rps
            if rps is None:
                return
            # A budget of `allowed` requests per `window` seconds: exactly `rps` per 1-second
            # window for whole numbers, and the same long-run rate for fractions (0.5 -> 1 per 2s).
            allowed = max(1, math.floor(rps))
            window = allowed / rps
            now = self.monotonic()
            hits = self._hits.setdefault(digest, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= allowed:
                wait = max(1, math.ceil(hits[0] + window - now))
                raise _HttpError(
                    429,
                    custom=f"Rate limit exceeded: at most {rps:g} requests per second per API key",
                    headers={"Retry-After": str(wait)},
                )
            hits.append(now)

    def _now_ms(self) -> int:
        return math.floor(self.clock.now() * 1000)

    # -- how domains are shown and matched -------------------------------------------------

    def _shown(self, domain: str) -> str:
        """A stored domain as answers show it: Unicode under ``unicode_domains``."""
        if not self.variants.unicode_domains or "xn--" not in domain:
            return domain
        try:
            return str(idna.decode(domain))
        except (idna.IDNAError, UnicodeError):
            return domain

    def _match_key(self, text: object) -> str | None:
        """The stored domain a sent one matches. Under ``unicode_domains`` the server
        normalises as its docs say (case, scheme, ``www.``, path) and knows no punycode: a
        domain sent as ``xn--...`` matches no internationalised account."""
        normal = normalize_domain(text)
        if (normal is not None and self.variants.unicode_domains
                and isinstance(text, str) and "xn--" in text.lower()):
            return None
        return normal

    def _shown_account(self, row: sqlite3.Row) -> dict[str, Any]:
        account = _account_json(row)
        account["domain"] = self._shown(account["domain"])
        return account

    # -- query and body validation -----------------------------------------------------------

    @staticmethod
    def _query(
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

    def _limit(self, raw: str | None, violations: list[dict[str, Any]]) -> int:
        if raw is None:
            return self.DEFAULT_LIMIT
        if not re.fullmatch(r"-?[0-9]+", raw):
            violations.append(_violation("limit", isInt="limit must be an integer number"))
            return self.DEFAULT_LIMIT
        # Clamp absurdly long numbers before int(), which refuses more than 4300 digits.
        if len(raw.lstrip("-").lstrip("0")) > 12:
            value = -1 if raw.startswith("-") else self.MAX_LIMIT + 1
        else:
            value = int(raw)
        if value < 1:
            violations.append(_violation("limit", min="limit must not be less than 1"))
        elif value > self.MAX_LIMIT:
            violations.append(
                _violation("limit", max=f"limit must not be greater than {self.MAX_LIMIT}")
            )
        return value

    # -- endpoints --------------------------------------------------------------------------

    def _missing_external_ids(self, req: Request, org: str) -> list[dict[str, Any]]:
        violations: list[dict[str, Any]] = []
        params = self._query(req, ("limit",), violations)
        limit = self._limit(params["limit"], violations)
        if violations:
            raise _HttpError(400, violations=violations)
        with self.store.read() as db:
            rows = db.execute(
                "SELECT name, domain FROM rtp_accounts WHERE org = ? AND external_id IS NULL "
                "ORDER BY id LIMIT ?",
                (org, limit),
            ).fetchall()
        return [{"name": r["name"], "domain": self._shown(r["domain"])} for r in rows]

    def _list_accounts(self, req: Request, org: str) -> dict[str, Any]:
        violations: list[dict[str, Any]] = []
        params = self._query(req, ("limit", "cursor", "lastSync", "domains"), violations)
        limit = self._limit(params["limit"], violations)

        since_ms: int | None = None
        if params["lastSync"] is not None:
            since_ms = _parse_iso_ms(params["lastSync"])
            if since_ms is None:
                violations.append(
                    _violation(
                        "lastSync", isIso8601="lastSync must be a valid ISO 8601 date string"
                    )
                )

        domains: list[str] | None = None
        if params["domains"] is not None:
            domains = self._domain_filter(params["domains"], violations)

        if violations:
            raise _HttpError(400, violations=violations)

        after_id = 0
        if params["cursor"] is not None:
            decoded = _decode_cursor(params["cursor"])
            if decoded is None:
                raise _HttpError(
                    400, custom="Invalid cursor: pass the nextCursor of a previous answer as is"
                )
            after_id = decoded

        sql = f"SELECT {_COLUMNS} FROM rtp_accounts WHERE org = ? AND id > ?"
        args: list[Any] = [org, after_id]
        if since_ms is not None:
            sql += " AND updated_ms > ?"
            args.append(since_ms)
        if domains is not None:
            sql += f" AND domain IN ({', '.join('?' * len(domains))})"
            args.extend(domains)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit + 1)

        with self.store.read() as db:
            # Taken under the store lock and one millisecond early: a write that lands after
            # this read always has updatedAt > syncTimestamp, even within the same millisecond.
            sync_ms = self._now_ms() - 1
            rows = db.execute(sql, args).fetchall() if domains != [] else []

        page = rows[:limit]
        return {
            "data": [self._shown_account(r) for r in page],
            "nextCursor": _encode_cursor(page[-1]["id"]) if page else None,
            "hasNextPage": len(rows) > limit,
            "syncTimestamp": _iso_from_ms(sync_ms),
        }

    def _domain_filter(self, raw: str, violations: list[dict[str, Any]]) -> list[str] | None:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list):
            violations.append(
                _violation("domains", isJson="domains must be a JSON array string of domains")
            )
            return None
        constraints: dict[str, str] = {}
        if not parsed:
            constraints["arrayMinSize"] = "domains must contain at least 1 elements"
        if len(parsed) > self.MAX_DOMAIN_FILTER:
            constraints["arrayMaxSize"] = (
                f"domains must contain no more than {self.MAX_DOMAIN_FILTER} elements"
            )
        if not all(isinstance(d, str) for d in parsed):
            constraints["isString"] = "each value in domains must be a string"
        if constraints:
            violations.append(_violation("domains", **constraints))
            return None
        normal = {n for n in map(self._match_key, parsed) if n is not None}
        return sorted(normal)

    def _map_external_ids(self, req: Request, org: str) -> dict[str, Any]:
        content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _HttpError(415, custom="Content-Type must be application/json")
        violations: list[dict[str, Any]] = []
        self._query(req, (), violations)
        try:
            body = orjson.loads(req.body) if req.body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise _HttpError(400, custom=f"Request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _HttpError(400, custom="Request body must be a JSON object")
        mappings = _validate_mappings(body, self.MAX_MAPPINGS, violations)
        if violations or mappings is None:
            raise _HttpError(400, violations=violations)

        # Last mapping for a normalised domain wins; the sent spelling is kept for notFound.
        wanted: dict[str, str] = {}
        sent: list[tuple[str, str | None]] = []
        for item in mappings:
            normal = self._match_key(item["domain"])
            sent.append((item["domain"], normal))
            if normal is not None:
                wanted[normal] = item["externalId"]

        with self.store.tx() as db:
            found = (
                db.execute(
                    "SELECT id, domain, external_id FROM rtp_accounts WHERE org = ? AND domain IN "
                    f"({', '.join('?' * len(wanted))})",
                    (org, *wanted),
                ).fetchall()
                if wanted
                else []
            )
            now_ms = self._now_ms()
            changes = [
                (wanted[r["domain"]], now_ms, r["id"])
                for r in found
                if r["external_id"] != wanted[r["domain"]]
                and not self.variants.unwritten(r["domain"])
            ]
            db.executemany(
                "UPDATE rtp_accounts SET external_id = ?, updated_ms = ? WHERE id = ?", changes
            )

        hit = {r["domain"] for r in found}
        not_found: list[str] = []
        for text, normal in sent:
            echo = text
            if self.variants.not_found_normal:
                echo = self._shown(normal) if normal is not None else text.strip().lower()
            if normal not in hit and echo not in not_found:
                not_found.append(echo)
        return {"matched": len(found), "updated": len(changes), "notFound": not_found}


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


# ---------------------------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------------------------

_PREFIXES = (
    "Acme", "Apex", "Blue", "Bright", "Cedar", "Clear", "Copper", "Crest", "Delta", "Eagle",
    "Ember", "Falcon", "First", "Granite", "Green", "Harbor", "Helix", "Iron", "Juniper",
    "Keystone", "Lake", "Liberty", "Lumen", "Maple", "Meridian", "Nimbus", "North", "Nova", "Oak",
    "Orbit", "Pacific", "Peak", "Pine", "Pioneer", "Prime", "Quantum", "Red", "River", "Sage",
    "Silver", "Solar", "Summit", "Swift", "Terra", "True", "Union", "Vertex", "Vista", "West",
    "Zenith",
)  # fmt: skip
# Second word of the name, and the industry it suggests.
_CORES = (
    ("Analytics", "Software"), ("Bio", "Biotech"), ("Capital", "Financial Services"),
    ("Cloud", "Software"), ("Consulting", "Professional Services"), ("Data", "Software"),
    ("Dynamics", "Manufacturing"), ("Energy", "Energy"), ("Foods", "Food & Beverage"),
    ("Freight", "Logistics"), ("Health", "Healthcare"), ("Labs", "Research"),
    ("Logistics", "Logistics"), ("Media", "Media"), ("Metrics", "Software"),
    ("Networks", "Telecommunications"), ("Partners", "Professional Services"),
    ("Pharma", "Pharmaceuticals"), ("Robotics", "Manufacturing"), ("Security", "Cybersecurity"),
    ("Software", "Software"), ("Solutions", "IT Services"), ("Systems", "IT Services"),
    ("Textiles", "Retail"), ("Ventures", "Financial Services"), ("Works", "Construction"),
)  # fmt: skip
# Legal suffix and the top-level domains that go with it.
_SUFFIXES = (
    ("Inc", ("com", "io")), ("LLC", ("com", "net")), ("Ltd", ("co.uk", "com")),
    ("GmbH", ("de", "com")), ("Group", ("com", "net")), ("Corp", ("com", "io")),
    ("SA", ("fr", "es")), ("BV", ("nl", "com")), ("AG", ("de", "ch")), ("Co", ("com", "co")),
)  # fmt: skip
_UNICODE_COMPANIES = (
    ("Müller Logistik GmbH", "müller-logistik.de", "Logistics"),
    ("Café Olé SA", "café-olé.fr", "Food & Beverage"),
    ("Björk Design AB", "björk-design.se", "Media"),
    ("Zürich Datenwerk AG", "zürich-datenwerk.ch", "Software"),
    ("Ærø Shipping ApS", "ærø-shipping.dk", "Logistics"),
    ("Łódź Software Sp. z o.o.", "łódź-software.pl", "Software"),
    ("São Paulo Comércio Ltda", "são-paulo-comércio.com.br", "Retail"),
    ("Göteborg Energi AB", "göteborg-energi.se", "Energy"),
    ("東京データ株式会社", "東京データ.jp", "Software"),
    ("Москва Софт", "москва-софт.ru", "Software"),
    ("Ñandú Tecnología SL", "ñandú-tecnología.es", "IT Services"),
    ("Crème Brûlée Co", "crème-brûlée.com", "Food & Beverage"),
)
_DAY_MS = 86_400_000


def _demo_rows(
    rng: random.Random, count: int, taken: set[str], now_ms: int
) -> Iterable[tuple[Any, ...]]:
    """Rows (name, domain, external_id, scores x3, custom_fields, updated_ms) for seed_demo."""
    space = len(_PREFIXES) * len(_CORES) * len(_SUFFIXES)
    order = rng.sample(range(space), min(count, space))
    unicode_every = max(1, count // len(_UNICODE_COMPANIES)) if count >= 100 else 0
    unicode_left = list(_UNICODE_COMPANIES)
    for i in range(count):
        if unicode_every and i % unicode_every == unicode_every // 2 and unicode_left:
            name, raw_domain, industry = unicode_left.pop(0)
            candidates = [raw_domain]
        else:
            pick = order[i % len(order)] if order else i
            prefix = _PREFIXES[pick % len(_PREFIXES)]
            core, industry = _CORES[(pick // len(_PREFIXES)) % len(_CORES)]
            suffix, tlds = _SUFFIXES[pick // (len(_PREFIXES) * len(_CORES)) % len(_SUFFIXES)]
            lap = i // space
            name = f"{prefix} {core}{f' {lap + 1}' if lap else ''} {suffix}"
            slug = f"{prefix}{core}".lower()
            dashed = f"{prefix}-{core}".lower()
            lapped = f"-{lap + 1}" if lap else ""
            candidates = [f"{s}{lapped}.{t}" for s in (slug, dashed) for t in tlds]
            candidates.append(f"{slug}{lapped}-{suffix.lower()}.{tlds[0]}")
        domain = _unique_domain(candidates, taken)
        taken.add(domain)
        external_id = None if rng.random() < 1 / 3 else f"crm-{i + 1:06d}"
        employees = int(10 ** rng.uniform(1, 5))
        fields = {"industry": industry, "employees": employees}
        yield (
            name,
            domain,
            external_id,
            rng.randint(0, 100),
            rng.randint(0, 100),
            rng.randint(0, 100),
            orjson.dumps(fields).decode("utf-8"),
            now_ms - rng.randint(0, 30 * _DAY_MS),
        )


def _unique_domain(candidates: list[str], taken: set[str]) -> str:
    normal = [n for n in map(normalize_domain, candidates) if n is not None]
    for domain in normal:
        if domain not in taken:
            return domain
    stem, _, tld = normal[0].partition(".")
    n = 2
    while f"{stem}{n}.{tld}" in taken:
        n += 1
    return f"{stem}{n}.{tld}"
