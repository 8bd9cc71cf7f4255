"""The SQLite journal: the default run store.

The journal is a SQLite file (``df.cora.upsert(journal="backfill.db")``,
``df.recotap.map_ids(journal=...)``; ``journal=True`` picks a file in the cache directory, one
per API, key id and base URL). After every answer, in one transaction, it records each
acknowledged row: its key (Cora ``externalId``, Recotap normalised domain), a hash of exactly
what was sent for it, the status the server gave, the account id (Cora) or the id written
(Recotap), the time, the run and whether it was a dry run. Re-running the same call with the
same journal sends only the rows that were never acknowledged, that changed since, or that
failed; the others come back ``skipped`` with their earlier outcome. ``force=True`` sends
everything again.

The file is in WAL mode with full syncs, one transaction per answer: killing the process at
any instant leaves it consistent, holding every answer that arrived before the kill, so a
re-run sends at most the chunk that was in flight a second time (and upserts and mappings are
idempotent, so that changes nothing). The journal stores no key and no secret: rows are filed
under the API, the base URL (without any user info) and the Cora key id (Recotap, which has
no key id, by a one-way fingerprint of its key).

>>> j = Journal(":memory:", api="cora", target="cora https://api.corafone.com key k1")
>>> run = j.begin_run(dry_run=False, rows=1, to_send=1, skipped=0)
>>> j.record([Ack("A1", bytes(16), "created", account_id="acc_1")],
...          run=run, dry_run=False, batch=0)
>>> j.applied().loc["A1", "status"]
'created'
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, JournalError
from ._keys import now as _now
from ._store import Ack, BoundJournal, upsert_acks_sql

__all__ = ["Journal", "immediate_transaction"]

FORMAT = "recocora-journal"
VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY AUTOINCREMENT,
    api TEXT NOT NULL,
    target TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    rows INTEGER NOT NULL,
    to_send INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    acknowledged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS acks (
    api TEXT NOT NULL,
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    hash BLOB NOT NULL,
    status TEXT NOT NULL,
    account_id TEXT,
    external_id TEXT,
    updated_at TEXT,
    code TEXT,
    acked_at TEXT NOT NULL,
    run INTEGER NOT NULL,
    batch INTEGER,
    PRIMARY KEY (api, target, key, dry_run)
) WITHOUT ROWID;
"""

_UPSERT_ACK = upsert_acks_sql("acks", "?")


@contextmanager
def immediate_transaction(db: sqlite3.Connection, lock: threading.Lock | threading.RLock
                          ) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``db`` (autocommit mode), taken at once so two processes
    never both read and then both write; rolled back on any exception, even Ctrl-C."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class Journal(BoundJournal):
    """A SQLite record of acknowledged rows (see the module docstring).

    ``api`` and ``target`` (see :func:`journal_target`) say which rows this object reads and
    writes; without them it can still be inspected with :meth:`acks` and :meth:`runs`.
    Several processes may use one file at once.

    >>> Journal("backfill.db").acks()["status"].value_counts()  # doctest: +SKIP
    """

    def __init__(
        self, path: str | os.PathLike[str], *, api: str | None = None, target: str | None = None
    ) -> None:
        self.path = Path(path)
        self.location = str(path)
        self.api, self.target = api, target
        self._lock = threading.RLock()
        if str(path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"Cannot create the journal's folder {self.path.parent}: {exc.strerror}."
                ) from None
        try:
            self._db = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"Cannot open the journal {str(path)!r}: {exc}.") from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(
                f"{path} cannot be used as a recocora journal ({exc}); pass another path."
            ) from None

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 30000")
        if str(self.path) != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
        # A full sync per answer costs one fsync every 20 s at Cora's pace, and keeps even a
        # power cut from losing an answer the journal said it had.
        db.execute("PRAGMA synchronous = FULL")
        with self._transaction():
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if tables and "info" not in tables:
                raise sqlite3.DatabaseError("it is a SQLite file of something else")
            # executescript would commit on its own; one statement at a time stays atomic.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            info = dict(db.execute("SELECT name, value FROM info").fetchall())
            if not info:
                db.executemany("INSERT INTO info VALUES (?, ?)",
                               [("format", FORMAT), ("version", VERSION), ("created", _now())])
            elif info.get("format") != FORMAT or info.get("version") != VERSION:
                raise sqlite3.DatabaseError(
                    f"format {info.get('format')!r} version {info.get('version')!r}"
                )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with immediate_transaction(self._db, self._lock) as db:
            yield db

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A transaction whose failure is a :class:`JournalError` (nothing of it written)."""
        try:
            with self._transaction() as db:
                yield db
        except sqlite3.Error as exc:
            raise JournalError(
                f"The journal {str(self.path)!r} could not be written ({exc}); nothing of "
                "this step was recorded, so those rows would be sent again next time."
            ) from exc

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, api={self.api!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, *, dry_run: bool, rows: int, to_send: int, skipped: int) -> int:
        """Note a run's start; returns its number (the ``run`` of its rows)."""
        api, target = self._bound()
        with self._writing() as db:
            cursor = db.execute(
                "INSERT INTO runs (api, target, dry_run, started_at, outcome, rows, to_send, "
                "skipped) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (api, target, int(dry_run), _now(), rows, to_send, skipped),
            )
            return int(cursor.lastrowid or 0)

    def end_run(self, run: int, outcome: str) -> None:
        """Note how a run ended: ``completed``, ``interrupted``, ``stopped: ...``."""
        with self._writing() as db:
            db.execute("UPDATE runs SET finished_at = ?, outcome = ? WHERE run = ?",
                       (_now(), outcome, run))

    # -- rows -------------------------------------------------------------------------------

    def record(self, acks: Iterable[Ack], *, run: int, dry_run: bool,
               batch: int | None) -> None:
        """Record one answer's rows in one transaction (all of them or, on a crash, none)."""
        api, target = self._bound()
        when = _now()
        values = [
            (api, target, a.key, int(dry_run), a.hash, a.status, a.account_id, a.external_id,
             a.updated_at, a.code, when, run, batch)
            for a in acks
        ]
        with self._writing() as db:
            db.executemany(_UPSERT_ACK, values)
            db.execute(
                "UPDATE runs SET requests = requests + 1, acknowledged = acknowledged + ? "
                "WHERE run = ?", (len(values), run),
            )

    def applied(self) -> pd.DataFrame:
        """Rows acknowledged by real (not dry) runs for this API and target, indexed by key:
        ``hash``, ``status``, ``account_id``, ``external_id``, ``updated_at``, ``acked_at``."""
        api, target = self._bound()
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT key, hash, status, account_id, external_id, updated_at, acked_at "
                    "FROM acks WHERE api = ? AND target = ? AND dry_run = 0", (api, target),
                ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"The journal {str(self.path)!r} could not be read ({exc}).") \
                from exc
        columns = ["key", "hash", "status", "account_id", "external_id", "updated_at",
                   "acked_at"]
        frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)
        out: pd.DataFrame = frame.astype(object).set_index("key")
        return out

    def acks(self) -> pd.DataFrame:
        """Every recorded row of every run (``hash`` as hex), for inspection.

        >>> Journal("backfill.db").acks().groupby("status").size()  # doctest: +SKIP
        """
        with self._lock:
            cursor = self._db.execute(
                "SELECT api, target, key, dry_run, lower(hex(hash)), status, account_id, "
                "external_id, updated_at, code, acked_at, run, batch FROM acks "
                "ORDER BY run, batch, key"
            )
            rows = cursor.fetchall()
        return self._inspected(rows, self.ACK_COLUMNS)

    def runs(self) -> pd.DataFrame:
        """One row per run: when, how it ended, rows, rows to send, skipped, requests.

        >>> Journal("backfill.db").runs()[["outcome", "requests"]]  # doctest: +SKIP
        """
        with self._lock:
            cursor = self._db.execute("SELECT * FROM runs ORDER BY run")
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return self._inspected(rows, names)
