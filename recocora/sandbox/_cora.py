"""The Cora half of the sandbox: signed bulk upsert, reads, PATCH, the per-key rate window.

Where the vendor's docs are silent, the behaviour here is the sandbox's own choice (listed in
the README's sandbox section); the client must tolerate it, never depend on it.

Its field rules and merge live beside it, in the sandbox's own Cora rules module: a second,
independent reading of the contract, kept apart from the client's field catalogue on purpose
(the sandbox is the oracle the tests compare the client against). Do not import
``recocora.cora`` here.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid
from typing import Any
from urllib.parse import unquote

import orjson

from ._cora_auth import authenticate, error, split_key
from ._cora_rate import RateLimits, RateWindow
from ._cora_rules import (
    _MISSING,
    READ_ONLY,
    RowError,
    _as_text,
    _normalise_values,
    check_fields,
    merge_into,
    new_account,
)
from ._core import Clock, Request, Response, Store, json_response
from ._faults import FaultConfig

__all__ = ["CoraApi", "RateWindow"]

MAX_BULK = 500
MAX_GET_IDS = 200


class CoraApi(RateLimits):
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

    split_key = staticmethod(split_key)

    def _authenticate(self, req: Request, write: bool) -> tuple[str, str] | Response:
        """Return ``(org, key_id)`` or the error response."""
        return authenticate(self.store, self.clock, req, write)

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
                    doc = new_account(org, row, now)
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
