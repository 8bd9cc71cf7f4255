"""How journal rows are keyed and filed: row hashes, key fingerprints, targets, file names.

Every store backend files rows the same way, so these live apart from any one of them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from .._config import cache_dir
from .._wire import to_json_value

__all__ = [
    "default_journal_path",
    "journal_target",
    "key_fingerprint",
    "now",
    "row_hash",
    "row_hashes",
]


def _default(value: Any) -> Any:
    return to_json_value(value)


def row_hash(row: Any) -> bytes:
    """16-byte BLAKE2b digest of one row's JSON (keys sorted, so column order does not count).

    >>> a, b = {"externalId": "A1", "bucket": "x"}, {"bucket": "x", "externalId": "A1"}
    >>> row_hash(a) == row_hash(b)
    True
    """
    return hashlib.blake2b(
        orjson.dumps(row, default=_default, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


def row_hashes(rows: Sequence[Any]) -> list[bytes]:
    """:func:`row_hash` of each row of a chunk, in order (about a microsecond a row).

    >>> len(row_hashes([{"externalId": "A1"}, {"externalId": "A2"}]))
    2
    """
    dumps, sort, blake = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.blake2b
    return [blake(dumps(r, default=_default, option=sort), digest_size=16).digest() for r in rows]


def key_fingerprint(secret: str) -> str:
    """A short one-way label for a key that has no public id (Recotap's): it tells keys apart
    in file names and journal rows without revealing them.

    >>> len(key_fingerprint("rtp_live_0123456789"))
    16
    """
    return hashlib.sha256(b"recocora key fingerprint\n" + secret.encode()).hexdigest()[:16]


def _clean_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def journal_target(api: str, base_url: str, key_label: str) -> str:
    """How journal rows are filed: API, base URL (any user info dropped) and key label.

    >>> journal_target("cora", "https://u:p@api.corafone.com/", "k1")
    'cora https://api.corafone.com key k1'
    """
    return f"{api} {_clean_url(base_url)} key {key_label}"


def default_journal_path(api: str, base_url: str, key_label: str) -> Path:
    """The file ``journal=True`` uses: in the cache directory, one per API, key label and
    base URL.

    >>> default_journal_path("cora", "https://api.corafone.com", "k1").name  # doctest: +SKIP
    'cora-k1-3f1c2a9b.sqlite'
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", key_label)[:40] or "key"
    where = hashlib.sha256(_clean_url(base_url).encode()).hexdigest()[:8]
    return cache_dir() / "journals" / f"{api}-{slug}-{where}.sqlite"


def now() -> str:
    """The current UTC time as the journal writes it (milliseconds, ``Z``)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
