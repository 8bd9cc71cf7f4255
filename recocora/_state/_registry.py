"""The registry of background runs: one record per run, shared by every process.

:class:`RunStore` is the interface the rest of recocora uses: records, and what a run keeps
beside its record (its settings, staged input, result and log). :class:`SqliteRunStore` keeps
the records in one SQLite file under the cache directory (WAL mode, so a worker writing its
progress never blocks a notebook reading it) and the rest in each run's folder beside it. A
record holds no key and no secret: the Cora key id, or a one-way fingerprint of a Recotap
key, is all it says about credentials.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson
import pandas as pd

from ..errors import ConfigError
from ._keys import now as now_iso
from ._sqlite import Journal, immediate_transaction
from ._staging import Staged, read_staged, stage
from ._store import Store

__all__ = ["FIELDS", "LIVE_STATES", "RunStore", "SqliteRunStore", "now_iso"]

#: States in which a run's worker is (or should be) at work.
LIVE_STATES = ("queued", "running")

#: Every field of a record; ``counts`` and ``options`` are JSON objects.
FIELDS = (
    "run_id", "api", "fingerprint", "state", "run_dir", "key_id", "base_url", "rows",
    "rows_total", "rows_done", "requests", "rate_limited", "eta_s", "counts", "host", "pid",
    "pid_start", "created_at", "started_at", "finished_at", "heartbeat_at",
    "cancel_requested", "error", "attempts", "sharing",
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
    attempts INTEGER NOT NULL DEFAULT 0,
    sharing INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint, state)
"""
#: Columns added since the first registries were written, and how to add them to one.
_ADDED = {"sharing": "INTEGER NOT NULL DEFAULT 1"}


class RunStore(Protocol):
    """What background runs need from wherever their records live."""

    #: Whether machines share the store (a state database). Then it judges a live run's
    #: worker by its lease (``get`` and ``all`` already show a run whose lease ran out as
    #: ``interrupted``), and what a record says of a machine (folder, process, server) is
    #: not taken as this machine's; otherwise callers look at the worker's process.
    shared: bool
    #: Where the runs are kept, for messages (never a password).
    where: str

    def submit(self, record: Mapping[str, Any], payload: Staged, *,
               reserve: str | None = None) -> tuple[str, bool]:
        """Add ``record`` with its staged input and settings, unless a live run has its
        fingerprint: ``(run_id, created)``. ``reserve`` holds a new run for the worker of
        that id about to be started."""

    def get(self, run_id: str) -> dict[str, Any] | None: ...

    def update(self, run_id: str, *, when_state: tuple[str, ...] = (),
               **fields: Any) -> bool:
        """Set ``fields``; with ``when_state``, only if the run is in one of those states.
        Returns whether the record changed."""

    def all(self) -> list[dict[str, Any]]:
        """Every record, newest first."""

    def spec(self, run_id: str) -> dict[str, Any]:
        """The run's settings: API, the call's options, the client's settings (no secret)."""

    def frame(self, run_id: str) -> pd.DataFrame:
        """The staged input, exactly as submitted."""

    def result(self, run_id: str) -> pd.DataFrame | None:
        """The result frame its worker left, if any."""

    def log(self, run_id: str) -> str:
        """The worker's log."""

    def pulse(self, record: Mapping[str, Any]) -> float:
        """Seconds between the heartbeats of this run's worker."""

    def own_journal(self, run_id: str, api: str, target: str) -> Store:
        """The journal of a run whose call named none (it lets a resumed run skip what
        its earlier attempts had answered)."""

    def requeue(self, run_id: str, spec: Mapping[str, Any], *, reserve: str | None = None,
                **fields: Any) -> bool:
        """Put an ``interrupted`` or ``failed`` run back in the queue with ``spec``."""

    def claim(self, run_id: str, worker: str | None, **fields: Any) -> bool:
        """Make the queued run this worker's (``running``); whether it could."""

    def beat(self, run_id: str, worker: str | None, fields: Mapping[str, Any],
             lines: list[str]) -> bool | None:
        """Write the worker's progress (and its log ``lines``): whether a cancel was asked
        for, or ``None`` when the run is no longer this worker's."""

    def finish(self, run_id: str, worker: str | None, result: pd.DataFrame | None,
               lines: list[str], **fields: Any) -> bool:
        """Store the result, the last log ``lines`` and the final ``fields`` of this worker's
        run; whether it was still this worker's."""


class SqliteRunStore:
    """:class:`RunStore` in a SQLite file (``cache_dir()/runs/registry.sqlite`` by default),
    each run's files in a folder beside it: ``run.json`` (settings), the staged input,
    ``result.pkl`` and ``worker.log``."""

    shared = False
    #: Seconds between a worker's heartbeats (progress written, cancel request looked for).
    HEARTBEAT_S = 0.5

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path.parent)
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
                columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
                for name, declaration in _ADDED.items():  # a registry from before them
                    if name not in columns:
                        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {declaration}")
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

    def submit(self, record: Mapping[str, Any], payload: Staged, *,
               reserve: str | None = None) -> tuple[str, bool]:
        root = self.path.parent
        folder = root / str(record["run_id"])
        scratch = root / f".staging-{uuid.uuid4().hex}"
        stage(payload, scratch)
        run_id, created = self._add({**record, "run_dir": str(folder)})
        if not created:
            shutil.rmtree(scratch, ignore_errors=True)
            return run_id, False
        scratch.rename(folder)
        self._write_spec(folder, payload.spec)
        return run_id, True

    def _add(self, record: Mapping[str, Any]) -> tuple[str, bool]:
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

    # -- what a run keeps in its folder -------------------------------------------------------

    def _folder(self, run_id: str) -> Path:
        record = self.get(run_id)
        if record is None:
            raise KeyError(run_id)
        return Path(record["run_dir"])

    @staticmethod
    def _write_spec(folder: Path, spec: Mapping[str, Any]) -> None:
        (folder / "run.json").write_bytes(orjson.dumps(spec, option=orjson.OPT_INDENT_2))

    def spec(self, run_id: str) -> dict[str, Any]:
        spec: dict[str, Any] = orjson.loads((self._folder(run_id) / "run.json").read_bytes())
        return spec

    def frame(self, run_id: str) -> pd.DataFrame:
        return read_staged(self._folder(run_id))

    def result(self, run_id: str) -> pd.DataFrame | None:
        path = self._folder(run_id) / "result.pkl"
        if not path.exists():
            return None
        frame: pd.DataFrame = pd.read_pickle(path)
        return frame

    def log(self, run_id: str) -> str:
        path = self._folder(run_id) / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pulse(self, record: Mapping[str, Any]) -> float:
        return self.HEARTBEAT_S

    def own_journal(self, run_id: str, api: str, target: str) -> Store:
        return Journal(self._folder(run_id) / "journal.sqlite", api=api, target=target)

    def requeue(self, run_id: str, spec: Mapping[str, Any], *, reserve: str | None = None,
                **fields: Any) -> bool:
        self._write_spec(self._folder(run_id), spec)
        return self.update(run_id, when_state=("interrupted", "failed"), state="queued",
                           **fields)

    def claim(self, run_id: str, worker: str | None, **fields: Any) -> bool:
        return self.update(run_id, when_state=("queued",), state="running", **fields)

    def beat(self, run_id: str, worker: str | None, fields: Mapping[str, Any],
             lines: list[str]) -> bool | None:
        # The log lines are in worker.log already: it is the worker's standard error.
        self.update(run_id, heartbeat_at=now_iso(), **fields)
        record = self.get(run_id)
        return bool(record and record["cancel_requested"])

    def finish(self, run_id: str, worker: str | None, result: pd.DataFrame | None,
               lines: list[str], **fields: Any) -> bool:
        if result is not None:
            folder = self._folder(run_id)
            scratch = folder / "result.pkl.partial"
            result.to_pickle(scratch)
            scratch.replace(folder / "result.pkl")
        return self.update(run_id, when_state=("running",), **fields)
