"""Cora API keys and request signing, as pure functions (no network, no clock).

A Cora key looks like ``cora_org_<keyId>.<secret>``. Every request sends the whole key as
``Authorization: Bearer <key>``; every write (``POST``/``PATCH``) also proves it holds the
secret with an HMAC-SHA256 signature over a canonical string::

    <timestamp>.<METHOD>.<path_with_query>.<sha256 hex of the body bytes>

The body must be serialised once and those exact bytes both hashed and sent, and a request
is signed at the moment it is sent: a retry builds fresh headers with a fresh ``now``.

>>> key = parse_key("cora_org_k1.s3cret")
>>> key
CoraKey(key_id='k1', secret=****)
>>> sorted(signed_headers(key, "POST", "/external-api/accounts/bulk-upsert", b"{}", 1700000000))
['Authorization', 'Content-Type', 'X-Cora-Signature', 'X-Cora-Timestamp']
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "KEY_PREFIX",
    "CoraKey",
    "body_hash",
    "canonical_string",
    "get_headers",
    "parse_key",
    "signature",
    "signed_headers",
]

KEY_PREFIX = "cora_org_"


@dataclass(frozen=True, repr=False)
class CoraKey:
    """A parsed Cora API key.

    ``raw`` is the key exactly as it goes in the ``Authorization`` header, ``key_id`` the
    part before the first ``.`` (without ``cora_org_``) and ``secret`` the HMAC secret after
    it. ``repr`` and ``str`` show the key id only; the secret never appears.

    >>> str(parse_key("cora_org_k1.s3cret"))
    'cora_org_k1.****'
    """

    key_id: str
    secret: str
    raw: str

    def __repr__(self) -> str:
        return f"CoraKey(key_id={self.key_id!r}, secret=****)"

    def __str__(self) -> str:
        return f"{KEY_PREFIX}{self.key_id}.****"


def parse_key(key: str) -> CoraKey:
    """Split a Cora API key into key id and secret, refusing a malformed key up front.

    Surrounding whitespace (a pasted newline) is dropped. A leading ``cora_org_`` is
    optional; the key splits at its *first* ``.``, so the secret may itself contain dots.
    A key without ``.``, with an empty key id or secret, or with whitespace inside raises
    :class:`~recocora.errors.ConfigError`; the message never repeats the key.

    >>> parse_key("cora_org_abc.def.ghi").secret == "def.ghi"
    True
    """
    if not isinstance(key, str):
        raise ConfigError(f"A Cora API key must be a string, not {type(key).__name__}.")
    raw = key.strip()
    expected = "expected cora_org_<keyId>.<secret>, as shown once when the key was created"
    if not raw:
        raise ConfigError(f"The Cora API key is empty; {expected}.")
    if any(ch.isspace() for ch in raw):
        raise ConfigError(
            f"The Cora API key contains whitespace; {expected}. Check that it was copied whole."
        )
    body = raw[len(KEY_PREFIX) :] if raw.startswith(KEY_PREFIX) else raw
    key_id, dot, secret = body.partition(".")
    if not dot:
        raise ConfigError(
            f"Malformed Cora API key ({len(raw)} characters, no '.' between keyId and "
            f"secret); {expected}."
        )
    if not key_id:
        raise ConfigError(f"Malformed Cora API key: the keyId before the '.' is empty; {expected}.")
    if not secret:
        raise ConfigError(f"Malformed Cora API key: the secret after the '.' is empty; {expected}.")
    return CoraKey(key_id=key_id, secret=secret, raw=raw)


def body_hash(body: bytes) -> str:
    """Lowercase hex SHA-256 of the exact body bytes sent (``b""`` for no body).

    >>> body_hash(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(body).hexdigest()


def canonical_string(timestamp: str, method: str, path_with_query: str, body: bytes) -> str:
    """The string Cora signs: ``<timestamp>.<METHOD>.<path_with_query>.<bodyHash>``.

    ``timestamp`` is the exact ``X-Cora-Timestamp`` header value; ``path_with_query`` is
    the path actually requested (no scheme or host, base-URL prefix included) plus
    ``?query`` if any. The method is upper-cased.

    >>> canonical_string("1700000000", "post", "/x", b"")[:27]
    '1700000000.POST./x.e3b0c442'
    """
    if not path_with_query.startswith("/"):
        raise ValueError(
            f"path_with_query must be the request path starting with '/', "
            f"not {path_with_query!r} (no scheme or host)."
        )
    return f"{timestamp}.{method.upper()}.{path_with_query}.{body_hash(body)}"


def signature(secret: str, canonical: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``canonical`` keyed by ``secret`` (both UTF-8).

    >>> len(signature("s3cret", "1700000000.POST./x.abc"))
    64
    """
    return hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def get_headers(key: CoraKey) -> dict[str, str]:
    """Headers for a ``GET``: the bearer key only.

    >>> list(get_headers(parse_key("cora_org_k1.s3cret")))
    ['Authorization']
    """
    return {"Authorization": f"Bearer {key.raw}"}


def signed_headers(
    key: CoraKey, method: str, path_with_query: str, body: bytes, now: float
) -> dict[str, str]:
    """Headers for a write (``POST``/``PATCH``), signed for the instant ``now``.

    ``now`` is Unix time in seconds (pass ``time.time()`` plus any clock offset learnt from
    the server); it is truncated to whole seconds. ``body`` must be the very bytes that will
    be sent. Call this again for every attempt: a signature goes stale after 5 minutes.

    >>> h = signed_headers(parse_key("cora_org_k1.s3cret"), "POST", "/x", b"{}", 1700000000.9)
    >>> h["X-Cora-Timestamp"]
    '1700000000'
    """
    timestamp = str(int(now))
    canonical = canonical_string(timestamp, method, path_with_query, body)
    return {
        "Authorization": f"Bearer {key.raw}",
        "X-Cora-Timestamp": timestamp,
        "X-Cora-Signature": signature(key.secret, canonical),
        "Content-Type": "application/json",
    }
