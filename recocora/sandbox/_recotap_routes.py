"""The endpoints of the sandbox's Recotap: list accounts, unmapped accounts, map external IDs."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import orjson

from ._core import Clock, Request, Store
from ._recotap_checks import (
    _decode_cursor,
    _encode_cursor,
    _HttpError,
    _iso_from_ms,
    _parse_iso_ms,
    _validate_mappings,
    _violation,
    parse_limit,
    query_params,
)
from ._recotap_store import _COLUMNS
from ._recotap_variants import AnswerVariants


class RecotapRoutes(AnswerVariants):
    """The endpoint handlers of :class:`RecotapApi`; each answers the ``data`` of a request."""

    store: Store
    clock: Clock
    DEFAULT_LIMIT: ClassVar[int]
    MAX_LIMIT: ClassVar[int]
    MAX_MAPPINGS: ClassVar[int]
    MAX_DOMAIN_FILTER: ClassVar[int]

    def _now_ms(self) -> int:
        return math.floor(self.clock.now() * 1000)

    # -- query validation ------------------------------------------------------------------

    _query = staticmethod(query_params)

    def _limit(self, raw: str | None, violations: list[dict[str, Any]]) -> int:
        return parse_limit(raw, violations, self.DEFAULT_LIMIT, self.MAX_LIMIT)

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
