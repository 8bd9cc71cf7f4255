"""The journal in the state database: what the SQLite journal records, shared by machines.

With a ``postgresql://`` state URL, ``journal=True`` keeps the acknowledged rows in
``recocora_acks`` (and the runs in ``recocora_journal_runs``), filed like the file's rows by API
and target (the base URL without user info, and the Cora key id or a one-way fingerprint of a
Recotap key): a re-run on any machine skips what any machine had acknowledged. Each answer is
recorded in one transaction, so a run killed at any instant loses no answer it was given.

Fail closed: when the database cannot be reached, recording an answer waits until it answers
again (the run pauses; nothing is sent meanwhile), so an acknowledged answer is never lost.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pandas as pd

from ..errors import JournalError
from ._pg import _psycopg, database
from ._store import Ack, BoundJournal, upsert_acks_sql

__all__ = ["PgJournal", "text_time"]

T = TypeVar("T")

_UPSERT_ACK = upsert_acks_sql("recocora_acks", "%s")
_APPLIED = ["key", "hash", "status", "account_id", "external_id", "updated_at", "acked_at"]


def text_time(column: str) -> str:
    """SQL for a ``timestamptz`` column as the SQLite stores write times (UTC, ms, ``Z``)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


class PgJournal(BoundJournal):
    """The journal's rows in the state database at ``url`` (see the module docstring).

    ``api`` and ``target`` say which rows this object reads and writes; without them it can
    still be inspected with :meth:`acks` and :meth:`runs` (every API and target).

    >>> PgJournal(url, api="cora", target=target).applied()  # doctest: +SKIP
    """

    def __init__(self, url: str, *, api: str | None = None, target: str | None = None
                 ) -> None:
        self._db = database(url)
        self._errors: type[Exception] = _psycopg().Error
        self.api, self.target = api, target
        self.location = self._db.label

    def __repr__(self) -> str:
        return f"PgJournal({self.location!r}, api={self.api!r})"

    def close(self) -> None:
        """Nothing to release: the connection is this process's, shared with the limiter
        and the registry of runs."""

    def _write(self, fn: Callable[[Any], T], what: str) -> T:
        """``fn`` in one transaction, waiting out an outage; any other failure is a
        :class:`JournalError` (nothing of it written)."""
        try:
            return self._db.run(fn, wait=True, what=what)
        except self._errors as exc:
            raise JournalError(
                f"The journal in {self.location} could not be written ({exc}); nothing of "
                "this step was recorded, so those rows would be sent again next time."
            ) from exc

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, *, dry_run: bool, rows: int, to_send: int, skipped: int) -> int:
        """Note a run's start; returns its number (the ``run`` of its rows)."""
        api, target = self._bound()

        def insert(conn: Any) -> int:
            row = conn.execute(
                "INSERT INTO recocora_journal_runs (api, target, dry_run, outcome, rows, "
                "to_send, skipped) VALUES (%s, %s, %s, 'running', %s, %s, %s) RETURNING run",
                (api, target, dry_run, rows, to_send, skipped),
            ).fetchone()
            return int(row[0])

        return self._write(insert, "note a run in the journal")

    def end_run(self, run: int, outcome: str) -> None:
        """Note how a run ended: ``completed``, ``interrupted``, ``stopped: ...``."""
        self._write(lambda conn: conn.execute(
            "UPDATE recocora_journal_runs SET finished_at = now(), outcome = %s WHERE run = %s",
            (outcome, run)), "note a run's end in the journal")

    # -- rows -------------------------------------------------------------------------------

    def record(self, acks: Iterable[Ack], *, run: int, dry_run: bool,
               batch: int | None) -> None:
        """Record one answer's rows in one transaction (all of them or, on a crash, none);
        while the database cannot be reached, wait for it."""
        api, target = self._bound()
        when = _dt.datetime.now(_dt.timezone.utc)
        values = [
            (api, target, a.key, dry_run, a.hash, a.status, a.account_id, a.external_id,
             a.updated_at, a.code, when, run, batch)
            for a in acks
        ]

        def write(conn: Any) -> None:
            if values:
                with conn.cursor() as cursor:
                    cursor.executemany(_UPSERT_ACK, values)
            conn.execute(
                "UPDATE recocora_journal_runs SET requests = requests + 1, "
                "acknowledged = acknowledged + %s WHERE run = %s", (len(values), run),
            )

        self._write(write, "record an answer in the journal")

    def applied(self) -> pd.DataFrame:
        """Rows acknowledged by real (not dry) runs for this API and target, indexed by key:
        ``hash``, ``status``, ``account_id``, ``external_id``, ``updated_at``, ``acked_at``."""
        api, target = self._bound()
        rows = self._read(
            f"SELECT key, hash, status, account_id, external_id, updated_at, "
            f"{text_time('acked_at')} FROM recocora_acks "
            "WHERE api = %s AND target = %s AND NOT dry_run", (api, target))
        frame = pd.DataFrame.from_records(rows, columns=_APPLIED, coerce_float=False)
        frame["hash"] = [bytes(h) for h in frame["hash"]]
        out: pd.DataFrame = frame.astype(object).set_index("key")
        return out

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            rows: list[tuple[Any, ...]] = self._db.run(
                lambda conn: conn.execute(sql, params).fetchall(), wait=True,
                what="read the journal")
        except self._errors as exc:
            raise JournalError(f"The journal in {self.location} could not be read ({exc}).") \
                from exc
        return rows

    def _where(self) -> tuple[str, tuple[Any, ...]]:
        if self.api is None or self.target is None:
            return "", ()
        return " WHERE api = %s AND target = %s", (self.api, self.target)

    def acks(self) -> pd.DataFrame:
        """Every recorded row of this API and target (of all, when unbound), ``hash`` as hex,
        with the columns of the SQLite journal's :meth:`~Journal.acks`."""
        where, params = self._where()
        rows = self._read(
            "SELECT api, target, key, dry_run, encode(hash, 'hex'), status, account_id, "
            f"external_id, updated_at, code, {text_time('acked_at')}, run, batch "
            f"FROM recocora_acks{where} ORDER BY run, batch, key", params)
        return self._inspected(rows, self.ACK_COLUMNS)

    def runs(self) -> pd.DataFrame:
        """One row per run of this API and target (of all, when unbound): when, how it
        ended, rows, rows to send, skipped, requests."""
        where, params = self._where()
        columns = ["run", "api", "target", "dry_run", "started_at", "finished_at", "outcome",
                   "rows", "to_send", "skipped", "requests", "acknowledged"]
        chosen = [text_time(c) if c.endswith("_at") else c for c in columns]
        rows = self._read(
            f"SELECT {', '.join(chosen)} FROM recocora_journal_runs{where} ORDER BY run",
            params)
        return self._inspected(rows, columns)
