"""The registry of background runs in the state database, with leases: any machine can run,
resume, follow or cancel a run, and the database lets at most one live worker hold it.

A run's worker (its ``owner``) holds a lease until ``lease_until``, a time on the database's
clock, and renews it with every heartbeat; a heartbeat renews it only while the worker still
owns the run. Claiming a run is one conditional ``UPDATE``, so two workers can never both
hold it. A live run whose lease ran out shows ``interrupted`` to everyone, whatever machine
asks: its worker died (or lost the database for longer than the lease), and
:meth:`recocora.Run.resume` on any machine takes it over. A restart of the database gives every
lease its full length again, counted from the restart, so the workers it cut off have time to
come back. A worker cut off from the database for longer than its lease (a partition rather
than a restart) finds its run ``interrupted`` when it reaches the database again: while nobody
resumed it, the run is still its own, and it takes it back and goes on.

Beside each record the database keeps what another machine needs: the run's settings (no
secret), its staged input (Parquet only), its result, and its worker's log lines
(``recocora_run_log``). The result is pickled, as in a run's folder, so the database is
trusted as that folder is: let only the machines that use the key write to it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pandas as pd

from ..errors import RunError
from ._pg import database
from ._pg_journal import PgJournal
from ._registry import FIELDS, now_iso
from ._staging import Staged, read_frame_bytes
from ._store import Store

__all__ = ["PgRunStore"]

_COLUMNS = (*FIELDS, "owner", "mode", "lease_s")
_JSON = frozenset({"counts"})
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM recocora_runs"
_LIVE = "state IN ('queued', 'running')"
# A lease ran out: past its end, and past a full lease since the database (re)started.
_EXPIRED = (f"{_LIVE} AND lease_until < now() "
            "AND pg_postmaster_start_time() + make_interval(secs => lease_s) < now()")
_UNTIL = "now() + make_interval(secs => %(lease)s)"
_STARTING = "now() + make_interval(secs => %(start)s)"
# A worker's lease renewed for the length the run was given.
_RENEW = "lease_until = now() + make_interval(secs => lease_s)"


def _mark(name: str) -> str:
    return f"%(f_{name})s::jsonb" if name in _JSON else f"%(f_{name})s"


def _values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The named parameters (``f_<name>``) of ``fields``, checked."""
    unknown = set(fields) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"unknown run fields: {sorted(unknown)}")
    return {f"f_{k}": (orjson.dumps(v).decode() if k in _JSON else v)
            for k, v in fields.items()}


def _assignments(fields: Mapping[str, Any], *fixed: str) -> tuple[str, dict[str, Any]]:
    """The ``SET`` list for ``fields`` (and the ``fixed`` items), and its named parameters."""
    items = [*(f"{k} = {_mark(k)}" for k in fields), *fixed]
    return ", ".join(items), _values(fields)


def _records(cursor: Any) -> list[dict[str, Any]]:
    names = [d.name for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class PgRunStore:
    """:class:`~recocora._state._registry.RunStore` in the state database at ``url``, with
    leases (see the module docstring).

    >>> PgRunStore(url).all()  # doctest: +SKIP
    """

    shared = True
    #: Seconds a claim or a heartbeat holds a run for its worker.
    LEASE_S = 30.0
    #: Seconds between a worker's heartbeats: progress written, lease renewed, a cancel
    #: request looked for.
    HEARTBEAT_S = 1.0
    #: Seconds a worker being spawned has to start and claim the run held for it.
    START_S = 60.0

    def __init__(self, url: str) -> None:
        self._url = url
        self._db = database(url)
        self.where = f"the state database {self._db.label}"
        #: Whether reads wait out an outage of the database rather than raise
        #: :class:`~recocora.StateError`: a worker's reads of its own run pause it.
        self.reads_wait = False

    def __repr__(self) -> str:
        return f"PgRunStore({self._db.label!r})"

    def _run(self, fn: Any, what: str, *, wait: bool | None = None) -> Any:
        return self._db.run(fn, wait=self.reads_wait if wait is None else wait, what=what)

    # -- records ------------------------------------------------------------------------------

    def submit(self, record: Mapping[str, Any], payload: Staged, *,
               reserve: str | None = None) -> tuple[str, bool]:
        columns = [k for k in record if k != "run_id"]
        marks = ", ".join(_mark(k) for k in columns)
        params = {**_values({k: record[k] for k in columns}), "run_id": record["run_id"],
                  "fingerprint": record["fingerprint"],
                  "owner": reserve, "mode": "spawn" if reserve else "queue",
                  "spec": orjson.dumps(payload.spec).decode(), "input": payload.data,
                  "format": payload.format, "lease": self.LEASE_S, "start": self.START_S}

        def add(conn: Any) -> tuple[str, bool]:
            # One submitter at a time per fingerprint: the same frame is one run.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%(fingerprint)s))", params)
            conn.execute(f"UPDATE recocora_runs SET state = 'interrupted' WHERE {_EXPIRED} "
                         "AND fingerprint = %(fingerprint)s", params)
            found = conn.execute(
                f"SELECT run_id FROM recocora_runs WHERE fingerprint = %(fingerprint)s AND "
                f"{_LIVE} ORDER BY created_at DESC LIMIT 1", params).fetchone()
            if found is not None:
                return str(found[0]), False
            lease = _STARTING if reserve else "NULL"
            conn.execute(
                f"INSERT INTO recocora_runs (run_id, {', '.join(columns)}, owner, mode, spec, "
                f"input, input_format, lease_until, lease_s) VALUES (%(run_id)s, {marks}, "
                f"%(owner)s, %(mode)s, %(spec)s::jsonb, %(input)s, %(format)s, {lease}, "
                "%(lease)s)", params)
            return str(record["run_id"]), True

        created: tuple[str, bool] = self._run(add, "submit a run", wait=False)
        return created

    def get(self, run_id: str) -> dict[str, Any] | None:
        def read(conn: Any) -> list[dict[str, Any]]:
            conn.execute(f"UPDATE recocora_runs SET state = 'interrupted' WHERE {_EXPIRED} "
                         "AND run_id = %s", (run_id,))
            return _records(conn.execute(f"{_SELECT} WHERE run_id = %s", (run_id,)))

        found: list[dict[str, Any]] = self._run(read, "read a run")
        return found[0] if found else None

    def update(self, run_id: str, *, when_state: tuple[str, ...] = (),
               **fields: Any) -> bool:
        sets, values = _assignments(fields)
        sql = f"UPDATE recocora_runs SET {sets} WHERE run_id = %(run_id)s"
        if when_state:
            sql += " AND state = ANY(%(states)s)"
        params = {**values, "run_id": run_id, "states": list(when_state)}
        changed: bool = self._run(lambda conn: conn.execute(sql, params).rowcount > 0,
                                  "update a run", wait=False)
        return changed

    def all(self) -> list[dict[str, Any]]:
        def read(conn: Any) -> list[dict[str, Any]]:
            conn.execute(f"UPDATE recocora_runs SET state = 'interrupted' WHERE {_EXPIRED}")
            return _records(conn.execute(f"{_SELECT} ORDER BY created_at DESC, run_id"))

        records: list[dict[str, Any]] = self._run(read, "list the runs")
        return records

    # -- what a run keeps beside its record -----------------------------------------------

    def _one(self, sql: str, run_id: str) -> tuple[Any, ...]:
        row = self._run(lambda conn: conn.execute(sql, (run_id,)).fetchone(), "read a run")
        if row is None:
            raise RunError(f"No background run {run_id!r} in {self.where}.")
        return tuple(row)

    def spec(self, run_id: str) -> dict[str, Any]:
        spec: dict[str, Any] = self._one(
            "SELECT spec FROM recocora_runs WHERE run_id = %s", run_id)[0]
        return spec

    def frame(self, run_id: str) -> pd.DataFrame:
        data, fmt = self._one(
            "SELECT input, input_format FROM recocora_runs WHERE run_id = %s", run_id)
        if fmt != "parquet":  # never unpickled: a pickle runs whatever code it names
            raise RunError(f"Run {run_id}'s input in {self.where} is not Parquet; submit it "
                           "again.")
        return read_frame_bytes(bytes(data), "parquet")

    def result(self, run_id: str) -> pd.DataFrame | None:
        data = self._one("SELECT result FROM recocora_runs WHERE run_id = %s", run_id)[0]
        if data is None:
            return None
        frame: pd.DataFrame = pd.read_pickle(io.BytesIO(bytes(data)))
        return frame

    def log(self, run_id: str) -> str:
        rows = self._run(lambda conn: conn.execute(
            "SELECT line FROM recocora_run_log WHERE run_id = %s ORDER BY id", (run_id,)
        ).fetchall(), "read a run's log")
        return "".join(f"{line}\n" for (line,) in rows)

    # -- workers and leases -------------------------------------------------------------------

    def pulse(self, record: Mapping[str, Any]) -> float:
        """Seconds between the heartbeats of this run's worker: :attr:`HEARTBEAT_S`, or less
        for a run given a shorter lease (ten beats a lease at the least)."""
        lease = record.get("lease_s") or self.LEASE_S
        return min(self.HEARTBEAT_S, float(lease) / 10)

    def own_journal(self, run_id: str, api: str, target: str) -> Store:
        """A run's own journal (when its call named none): in the state database, its rows
        filed under the run."""
        return PgJournal(self._url, api=api, target=f"{target} run {run_id}")

    def requeue(self, run_id: str, spec: Mapping[str, Any], *, reserve: str | None = None,
                **fields: Any) -> bool:
        """Back in the queue: held for the worker ``reserve`` about to be started, or (a
        queued run) for any ``recocora worker`` with its key."""
        lease = f"lease_until = {_STARTING}" if reserve else "lease_until = NULL"
        sets, values = _assignments(
            {**fields, "owner": reserve}, "state = 'queued'", "spec = %(spec)s::jsonb",
            "result = NULL", "lease_s = %(lease)s", lease)
        params = {**values, "run_id": run_id, "spec": orjson.dumps(spec).decode(),
                  "lease": self.LEASE_S, "start": self.START_S}
        changed: bool = self._run(lambda conn: conn.execute(
            f"UPDATE recocora_runs SET {sets} WHERE run_id = %(run_id)s "
            "AND state IN ('interrupted', 'failed')", params).rowcount > 0, "resume a run",
            wait=False)
        return changed

    def claim(self, run_id: str, worker: str | None, **fields: Any) -> bool:
        """The queued run held for ``worker`` becomes its run (``running``), leased for the
        length its submitter chose. Claiming it again is no change (a claim whose commit
        was cut off is run again, and finds the run already ``worker``'s)."""
        sets, values = _assignments(fields, "state = 'running'", _RENEW)
        params = {**values, "run_id": run_id, "owner": worker}
        claimed: bool = self._run(lambda conn: conn.execute(
            f"UPDATE recocora_runs SET {sets} WHERE run_id = %(run_id)s "
            "AND state IN ('queued', 'running') AND owner = %(owner)s",
            params).rowcount > 0, "claim a run", wait=True)
        return claimed

    def claim_next(self, worker: str, keys: Iterable[tuple[str, str, str]], **fields: Any
                   ) -> str | None:
        """Claim the oldest run queued for any worker (``background="queue"``) with one of
        ``keys`` (API, key label, base URL) for ``worker``: its id, or ``None`` when none
        waits. Two workers asking at once never get the same run. The claim is stamped
        (``heartbeat_at``) with the moment of the call, so the same call run again after its
        commit was cut off hands back the run it claimed rather than a second one."""
        wanted = list(keys)
        if not wanted:
            return None
        sets, values = _assignments(
            fields, "state = 'running'", "owner = %(owner)s",
            "started_at = COALESCE(started_at, %(now)s)", "heartbeat_at = %(now)s",
            "lease_s = %(lease)s", f"lease_until = {_UNTIL}")
        pairs = ", ".join(f"(%(a{i})s, %(k{i})s, %(b{i})s)" for i in range(len(wanted)))
        params: dict[str, Any] = {**values, "owner": worker, "lease": self.LEASE_S,
                                  "now": now_iso()}
        for i, (api, label, base_url) in enumerate(wanted):
            params.update({f"a{i}": api, f"k{i}": label, f"b{i}": base_url})

        def take(conn: Any) -> Any:
            done = conn.execute(
                "SELECT run_id FROM recocora_runs WHERE owner = %(owner)s AND state = 'running' "
                "AND heartbeat_at = %(now)s", params).fetchone()
            return done or conn.execute(
                f"UPDATE recocora_runs SET {sets} WHERE state = 'queued' AND run_id = ("
                "SELECT run_id FROM recocora_runs WHERE state = 'queued' AND mode = 'queue' "
                f"AND (api, key_id, base_url) IN ({pairs}) ORDER BY created_at, run_id "
                "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING run_id", params).fetchone()

        row = self._run(take, "look for queued runs", wait=False)
        return None if row is None else str(row[0])

    def beat(self, run_id: str, worker: str | None, fields: Mapping[str, Any],
             lines: list[str]) -> bool | None:
        """Renew ``worker``'s lease, write progress and log lines: whether a cancel was asked
        for, or ``None`` when the run is no longer ``worker``'s (another worker or a resume
        took it). A run shown ``interrupted`` because its lease ran out while its worker was
        cut off is still that worker's as long as nobody resumed it (a resume names a new
        owner): the beat takes it back (``running``)."""
        sets, values = _assignments({**fields, "heartbeat_at": now_iso()}, _RENEW,
                                    "state = 'running'")
        params = {**values, "run_id": run_id, "owner": worker}

        def renew(conn: Any) -> bool | None:
            self._log(conn, run_id, lines)
            row = conn.execute(
                f"UPDATE recocora_runs SET {sets} WHERE run_id = %(run_id)s "
                "AND owner = %(owner)s AND state IN ('running', 'interrupted') "
                "RETURNING cancel_requested", params).fetchone()
            return None if row is None else bool(row[0])

        answer: bool | None = self._run(renew, "renew a run's lease", wait=False)
        return answer

    @staticmethod
    def _log(conn: Any, run_id: str, lines: list[str]) -> None:
        if lines:
            conn.execute("INSERT INTO recocora_run_log (run_id, line) "
                         "SELECT %s, unnest(%s::text[])", (run_id, lines))

    def finish(self, run_id: str, worker: str | None, result: pd.DataFrame | None,
               lines: list[str], **fields: Any) -> bool:
        """Store the result and final ``fields`` of ``worker``'s run and end its lease (this
        waits for the database: an outcome must not be lost)."""
        data = None
        if result is not None:
            buffer = io.BytesIO()
            result.to_pickle(buffer)
            data = buffer.getvalue()
        sets, values = _assignments(fields, "result = COALESCE(%(result)s, result)",
                                    "lease_until = NULL")
        params = {**values, "run_id": run_id, "owner": worker, "result": data}

        def end(conn: Any) -> bool:
            self._log(conn, run_id, lines)
            return bool(conn.execute(
                f"UPDATE recocora_runs SET {sets} WHERE run_id = %(run_id)s AND owner = %(owner)s "
                "AND state IN ('running', 'interrupted')", params).rowcount > 0)

        done: bool = self._run(end, "record a run's outcome", wait=True)
        return done
