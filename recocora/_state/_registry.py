"""The registry of background runs: one record per run, shared by every process.

:class:`RunStore` is the interface the rest of recocora uses; :class:`SqliteRunStore` keeps
it in one SQLite file under the cache directory (WAL mode, so a worker writing its progress
never blocks a notebook reading it). A record holds no key and no secret: the Cora key id, or
a one-way fingerprint of a Recotap key, is all it says about credentials.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import ConfigError
from ._keys import now as now_iso
from ._sqlite import immediate_transaction

__all__ = ["FIELDS", "LIVE_STATES", "RunStore", "SqliteRunStore", "now_iso"]

#: States in which a run's worker is (or should be) at work.
LIVE_STATES = ("queued", "running")

#: Every field of a record; ``counts`` and ``options`` are JSON objects.
FIELDS = (
    "run_id", "api", "fingerprint", "state", "run_dir", "key_id", "base_url", "rows",
    "rows_total", "rows_done", "requests", "rate_limited", "eta_s", "counts", "host", "pid",
    "pid_start", "created_at", "started_at", "finished_at", "heartbeat_at",
    "cancel_requested", "error", "attempts",
)
_JSON = frozenset({"counts"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    api TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    key_id TEXT NOT NULL,
    base_url TEXT NOT NULL,
    rows INTEGER NOT NULL,
    rows_total INTEGER,
    rows_done INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    rate_limited INTEGER NOT NULL DEFAULT 0,
    eta_s REAL,
    counts TEXT NOT NULL DEFAULT '{}',
    host TEXT,
    pid INTEGER,
    pid_start INTEGER,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    heartbeat_at TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint, state)
"""


class RunStore(Protocol):
    """What background runs need from wherever their records live."""

    def submit(self, record: Mapping[str, Any]) -> tuple[str, bool]:
        """Add ``record`` unless a live run has its fingerprint: ``(run_id, created)``."""

    def get(self, run_id: str) -> dict[str, Any] | None: ...

    def update(self, run_id: str, *, when_state: tuple[str, ...] = (),
               **fields: Any) -> bool:
        """Set ``fields``; with ``when_state``, only if the run is in one of those states.
        Returns whether the record changed."""

    def all(self) -> list[dict[str, Any]]:
        """Every record, newest first."""


class SqliteRunStore:
    """:class:`RunStore` in a SQLite file (``cache_dir()/runs/registry.sqlite`` by default)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            with self._transaction() as db:
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot use {self.path} as the registry of background runs ({exc}); set "
                "RECOCORA_CACHE_DIR to a writable folder."
            ) from None

    def __repr__(self) -> str:
        return f"SqliteRunStore({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with immediate_transaction(self._db, self._lock) as db:
            yield db

    @staticmethod
    def _row(names: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
        record = dict(zip(names, values, strict=True))
        for name in _JSON:
            record[name] = orjson.loads(record[name] or "{}")
        return record

    def submit(self, record: Mapping[str, Any]) -> tuple[str, bool]:
        values = {k: (orjson.dumps(v).decode() if k in _JSON else v)
                  for k, v in record.items()}
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        marks = ", ".join("?" for _ in values)
        with self._transaction() as db:
            found = db.execute(
                "SELECT run_id FROM runs WHERE fingerprint = ? AND state IN (?, ?) "
                "ORDER BY created_at DESC LIMIT 1", (values["fingerprint"], *LIVE_STATES),
            ).fetchone()
            if found is not None:
                return str(found[0]), False
            db.execute(f"INSERT INTO runs ({', '.join(values)}) VALUES ({marks})",
                       tuple(values.values()))
        return str(values["run_id"]), True

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
            names = [d[0] for d in cursor.description]
            row = cursor.fetchone()
        return None if row is None else self._row(names, row)

    def update(self, run_id: str, *, when_state: tuple[str, ...] = (),
               **fields: Any) -> bool:
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        values = [orjson.dumps(v).decode() if k in _JSON else v for k, v in fields.items()]
        sql = f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE run_id = ?"
        if when_state:
            sql += f" AND state IN ({', '.join('?' for _ in when_state)})"
        with self._transaction() as db:
            cursor = db.execute(sql, (*values, run_id, *when_state))
            return cursor.rowcount > 0

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM runs ORDER BY created_at DESC, run_id")
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return [self._row(names, r) for r in rows]
