"""Pieces every sandbox route shares: the response type, the clock and the SQLite store.

The store is one SQLite connection guarded by one lock: every request's read-modify-write
runs under it, so concurrent requests see each other's effects in a single order.
"""

from __future__ import annotations

import email.utils
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

__all__ = ["Clock", "Request", "Response", "Store", "json_response"]


@dataclass
class Request:
    """One HTTP request as the routes see it. ``path`` is the raw request target's path,
    ``target`` the raw path plus ``?query`` exactly as received (what Cora signs)."""

    method: str
    path: str
    target: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    arrived: float = field(default_factory=time.monotonic)  # the request line came in
    body_read: float | None = None  # the body was read (``None``: as it arrived)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(payload), dict(headers or {}))


class Clock:
    """The server's idea of now: real time plus an adjustable skew (fault injection)."""

    def __init__(self, skew: float = 0.0) -> None:
        self.skew = skew

    def now(self) -> float:
        return time.time() + self.skew

    def iso(self, ts: float | None = None) -> str:
        t = self.now() if ts is None else ts
        dt = datetime.fromtimestamp(t, tz=timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"

    def http_date(self) -> str:
        return email.utils.formatdate(self.now(), usegmt=True)


class Store:
    """SQLite, in memory unless a path is given. ``tx()`` runs a block atomically."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or ":memory:"
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if path:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.db

    def script(self, sql: str) -> None:
        """Run DDL (several statements); ``executescript`` commits on its own, so not in tx()."""
        with self.lock:
            self.db.executescript(sql)

    def close(self) -> None:
        with self.lock:
            self.db.close()
