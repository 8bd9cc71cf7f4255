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

import hashlib
import hmac
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson

from ._core import Clock, Request, Response, Store, json_response
from ._faults import FaultConfig
from ._recotap_checks import _HttpError
from ._recotap_domains import normalize_domain
from ._recotap_routes import RecotapRoutes
from ._recotap_store import (
    _COLUMNS,
    _INSERT_COLUMNS,
    _SCHEMA,
    _account_json,
    _demo_rows,
    _key_digest,
)

__all__ = ["RecotapApi", "normalize_domain"]

_Handler = Callable[[Request, str], Any]


class RecotapApi(RecotapRoutes):
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
