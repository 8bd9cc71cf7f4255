"""The sandbox's Cora key and signature checks, and the shape of its error answers."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from ._core import Clock, Request, Response, Store, json_response

TIMESTAMP_WINDOW = 300.0
KEY_PREFIX = "cora_org_"


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    headers = {k: str(v) for k, v in extra.pop("headers", {}).items()}
    return json_response(
        status, {"success": False, "code": code, "message": message, **extra}, headers
    )


def split_key(raw: str) -> tuple[str | None, str | None]:
    """``(key_id, secret)`` of a ``cora_org_<keyId>.<secret>`` key; ``(None, None)`` if not."""
    body = raw[len(KEY_PREFIX) :] if raw.startswith(KEY_PREFIX) else raw
    key_id, dot, secret = body.partition(".")
    if not dot or not key_id or not secret:
        return None, None
    return key_id, secret


def authenticate(
    store: Store, clock: Clock, req: Request, write: bool
) -> tuple[str, str] | Response:
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
    key_id, secret = split_key(raw.strip()) if scheme == "Bearer" else (None, None)
    with store.read() as db:
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
        if abs(clock.now() - t) > TIMESTAMP_WINDOW:
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
