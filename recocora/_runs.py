"""Background runs: ``df.cora.upsert(..., background=True)`` hands back a :class:`Run` at once.

The frame is validated in the caller (bad input is refused before anything starts), staged
(Parquet, or a pickle for frames Arrow cannot hold), and a detached worker process (in a
session of its own so a kernel restart does not take it down) performs the run through the
ordinary accessor with a journal of its own. The key reaches the worker through a pipe, never
a file. Every process sees runs through one registry: this machine's cache directory, or,
with a ``postgresql://`` state URL (``RECOCORA_STATE_URL`` or the client's ``state=``), the
state database, where any machine can follow, cancel, resume and read a run, and where
``background="queue"`` leaves a run for ``recocora worker`` on whatever machine runs one.

>>> run = df.cora.upsert(client=cora, background=True)  # doctest: +SKIP
>>> run.wait()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ._config import state_url
from ._progress import format_duration, sharing_note
from ._runs_launch import (
    alive,
    client_from_env,
    client_parts,
    key_label,
    registry,
    spawn,
    submit,
    worker_id,
)
from ._state._keys import _clean_url as clean_url
from ._state._registry import LIVE_STATES, RunStore, now_iso
from .cora._client import CoraClient
from .errors import ConfigError, RunError, StateError
from .recotap._client import RecotapClient

__all__ = ["FINAL_STATES", "Run", "attach", "runs", "start"]

FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")


def _settled(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run's record, with a live run whose worker died marked ``interrupted`` (the
    state database does that itself, by leases)."""
    record = store.get(run_id)
    if record is None:
        raise RunError(f"No background run {run_id!r} in {store.where}; recocora.runs() "
                       "lists the known ones.")
    if not store.shared and record["state"] in LIVE_STATES and not alive(record):
        store.update(run_id, when_state=LIVE_STATES, state="interrupted")
        record = store.get(run_id) or record
    return record


# --------------------------------------------------------------------------- the handle


class Run:
    """A background run of ``df.cora.upsert`` or ``df.recotap.map_ids``.

    Every attribute reads the run's current record, so a handle from
    :func:`recocora.attach` in another process (on another machine, with a state database)
    sees the same thing. ``state`` is one of ``queued``, ``running``, ``succeeded``,
    ``failed``, ``cancelled`` or ``interrupted`` (its worker died: :meth:`resume` finishes
    it). ``state`` names where the run is kept, as a client's ``state=`` does.

    >>> run = df.cora.upsert(client=cora, background=True)  # doctest: +SKIP
    >>> run.state, run.rows_done, run.counts  # doctest: +SKIP
    ('running', 1500, {'created': 1500})
    >>> res = run.wait()  # doctest: +SKIP
    """

    def __init__(self, run_id: str, state: str | None = None) -> None:
        self.id = run_id
        self._url = state_url(state)
        self._store = registry(self._url)
        self._record()

    def _record(self) -> dict[str, Any]:
        return _settled(self._store, self.id)

    # -- state ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The run's record as a dict (state, counts, rows, requests, times, key id)."""
        record = self._record()
        return {k: v for k, v in record.items() if k not in ("fingerprint", "pid_start")}

    @property
    def state(self) -> str:
        return str(self._record()["state"])

    @property
    def api(self) -> str:
        return str(self._record()["api"])

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._record()["counts"])

    @property
    def rows_done(self) -> int:
        return int(self._record()["rows_done"])

    @property
    def rows_total(self) -> int | None:
        total = self._record()["rows_total"]
        return None if total is None else int(total)

    @property
    def requests(self) -> int:
        return int(self._record()["requests"])

    @property
    def rate_limited(self) -> int:
        """429 answers met so far."""
        return int(self._record()["rate_limited"])

    @property
    def eta_s(self) -> float | None:
        record = self._record()
        return None if record["state"] not in LIVE_STATES else record["eta_s"]

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def folder(self) -> Path:
        """The run's folder: staged input, journal, result and log of a run on this machine;
        for a run in a state database (which holds the rest), where the worker last started
        for it wrote its output, on that worker's machine."""
        record = self._record()
        if not record["run_dir"]:
            raise RunError(f"Run {self.id} has no folder: it is kept in {self._store.where} "
                           "and no worker process was started for it; run.log() shows its "
                           "log.", state=record["state"])
        return Path(record["run_dir"])

    def log(self) -> str:
        """The worker's log: when it started, each answer's progress, how it ended."""
        self._record()
        return self._store.log(self.id)

    # -- outcome --------------------------------------------------------------------------

    def result(self) -> pd.DataFrame:
        """The result frame (the input's index, as the foreground call returns it) of a run
        that ended; for a cancelled run, rows never sent are ``not_sent``. A failed run
        raises :class:`~recocora.RunError` carrying the partial result in ``.result``."""
        record = self._record()
        state = record["state"]
        frame = None if state in LIVE_STATES else self._store.result(self.id)
        if state in ("succeeded", "cancelled") and frame is not None:
            return frame
        if state in LIVE_STATES:
            message = f"Run {self.id} is still {state}; run.wait() waits for its result."
        elif state == "interrupted":
            message = (f"Run {self.id} was interrupted: its worker stopped before the end. "
                       "run.resume() sends the rows it had not yet had answered.")
        else:
            message = f"Run {self.id} {state}: {record['error'] or 'no result was written'}"
        raise RunError(message, state=state, result=frame)

    def wait(self, timeout: float | None = None, poll: float = 0.25) -> pd.DataFrame:
        """Block until the run ends and return :meth:`result`; ``timeout`` (seconds) raises
        ``TimeoutError`` if it has not ended by then (the run goes on). While the state
        database cannot be reached, it goes on waiting.

        >>> res = recocora.attach("cora-20261201-213000-a1b2c3").wait()  # doctest: +SKIP
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        state = "queued"
        while True:
            with contextlib.suppress(StateError):
                state = self.state
            if state not in LIVE_STATES:
                return self.result()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Run {self.id} is still {state} after {timeout} s.")
            time.sleep(poll)

    def cancel(self) -> None:
        """Stop the run before its next request. The answer in flight is recorded; rows not
        sent come back ``not_sent`` in :meth:`result`, and the state becomes ``cancelled``.
        A run still waiting in the queue for a worker is cancelled at once."""
        store = self._store
        record = self._record()
        if record["state"] not in LIVE_STATES:
            store.update(self.id, when_state=("interrupted",), state="cancelled",
                         finished_at=now_iso())
            return
        store.update(self.id, cancel_requested=1)
        if record.get("mode") == "queue" and store.update(
                self.id, when_state=("queued",), state="cancelled", finished_at=now_iso()):
            return
        if (record["state"] == "running" and not store.shared
                and record.get("host") == socket.gethostname()):
            # The worker also notices the request within a second; the signal saves that.
            with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
                os.kill(int(record["pid"]), signal.SIGINT)

    def resume(self, client: CoraClient | RecotapClient | None = None) -> Run:
        """Start a new worker for an ``interrupted`` (or ``failed``) run, on this machine:
        rows whose answer the journal holds are not sent again. ``client`` (its key and
        settings) defaults to the key of the environment (``CORA_API_KEY`` /
        ``RECOTAP_API_KEY``) with the settings the run was started with; it must be the
        same key. A run submitted with ``background="queue"`` goes back in the queue for a
        ``recocora worker`` instead. Returns the run itself.

        >>> recocora.attach(run_id).resume()  # doctest: +SKIP
        """
        record = self._record()
        if record["state"] not in ("interrupted", "failed"):
            raise RunError(f"Run {self.id} is {record['state']}: only an interrupted or "
                           "failed run can be resumed.", state=record["state"])
        spec = self._store.spec(self.id)
        queued = record.get("mode") == "queue"
        given: dict[str, Any] = {}
        if client is not None or not queued:
            settings, given = self._settings(record, client)
            if client is not None:  # else the run keeps the settings it was submitted with
                spec["client"] = settings
        fields = {"pid": None, "pid_start": None, "error": None, "cancel_requested": 0,
                  "finished_at": None, "heartbeat_at": None, "created_at": now_iso(),
                  "attempts": int(record["attempts"]) + 1}
        reserve = None if queued else worker_id()
        if not queued:
            fields["host"] = socket.gethostname()
        if not self._store.requeue(self.id, spec, reserve=reserve, **fields):
            raise RunError(f"Run {self.id} changed state while resuming; look again.",
                           state=self.state)
        if reserve is not None:
            spawn(self._store, self.id, {**given, "state": self._url, "worker": reserve})
        return self

    def _settings(self, record: dict[str, Any], client: CoraClient | RecotapClient | None
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The client settings and secrets for the run's next worker, from ``client`` or
        from the environment, checked to be the run's key."""
        api = record["api"]
        own = client is None
        if client is None:
            # A base URL read from a shared database is never trusted with the key: the
            # environment names the server, and it must be the run's.
            where = None if self._store.shared else record["base_url"]
            client = client_from_env(api, where, self._url)
        try:
            if key_label(api, client) != record["key_id"]:
                raise ConfigError(
                    f"Run {self.id} was started with key {record['key_id']!r}; resume it "
                    "with the same key (its journal is filed under that key)."
                )
            if clean_url(client.base_url) != record["base_url"]:
                raise ConfigError(
                    f"Run {self.id} sends to {record['base_url']}, not "
                    f"{clean_url(client.base_url)}; resume it with a client of that base URL "
                    f"({api.upper()}_BASE_URL, or client=)."
                )
            return client_parts(api, client)
        finally:
            if own:
                client.close()

    # -- display --------------------------------------------------------------------------

    def summary(self) -> str:
        """One line: id, state, rows done of total, counts, requests, 429s, ETA (and how
        many runs share the key, when others do)."""
        r = self._record()
        total = r["rows_total"] if r["rows_total"] is not None else r["rows"]
        counts = ", ".join(f"{k} {v:,}" for k, v in r["counts"].items() if v) or "no answers"
        text = (f"{r['state']}: {r['rows_done']:,}/{total:,} rows ({counts}); "
                f"{r['requests']:,} requests, {r['rate_limited']:,} answered 429")
        if r["state"] in LIVE_STATES and r["eta_s"] is not None:
            text += f"; {format_duration(float(r['eta_s']))} left"
            note = sharing_note(int(r["sharing"]))
            if note:
                text += f" ({note})"
        if r["error"]:
            text += f"; {r['error']}"
        return text

    def __repr__(self) -> str:
        return f"<recocora.Run {self.id} {self.summary()}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .widgets._run import run_mimebundle

        return run_mimebundle(self)


def attach(run_id: str, state: str | None = None) -> Run:
    """The :class:`Run` with this id, from any process on this machine (after a kernel
    restart, in another notebook, in a script), or from any machine when runs are kept in a
    state database (``RECOCORA_STATE_URL``, or ``state=`` as a client takes it).

    >>> run = recocora.attach("cora-20261201-213000-a1b2c3")  # doctest: +SKIP
    >>> run  # a live progress widget in a notebook  # doctest: +SKIP
    """
    return Run(run_id, state)


def runs(state: str | None = None) -> pd.DataFrame:
    """Every background run known to this cache directory (or to the state database: see
    :func:`attach`), newest first: ``run_id``, ``api``, ``state``, ``rows``, ``rows_done``,
    one column per status with its count, ``requests``, ``rate_limited``, ``started_at``,
    ``finished_at``, ``eta_s`` and ``key_id`` (the key's id, never its secret).

    >>> recocora.runs()[["run_id", "state", "rows"]]  # doctest: +SKIP
    """
    store = registry(state_url(state))
    records = [_settled(store, r["run_id"]) if not store.shared else r for r in store.all()]
    statuses: list[str] = []
    for record in records:
        statuses += [s for s in record["counts"] if s not in statuses]
    columns = ["run_id", "api", "state", "rows", "rows_done", *statuses, "requests",
               "rate_limited", "started_at", "finished_at", "eta_s", "key_id"]
    rows = []
    for r in records:
        row = {c: r.get(c) for c in columns}
        row.update({s: int(r["counts"].get(s, 0)) for s in statuses})
        if r["state"] not in LIVE_STATES:
            row["eta_s"] = None
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("started_at", "finished_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    out: pd.DataFrame = frame
    return out


def start(api: str, df: pd.DataFrame, client: CoraClient | RecotapClient | None,
          options: dict[str, Any], *, on_progress: object = None,
          background: bool | str = True) -> Run:
    """``background=True`` (or ``"queue"``): validate ``df`` here, as the foreground call
    would (bad input is refused before anything starts), then :func:`submit` it."""
    if background not in (True, "queue"):
        raise ValueError(f"background must be False, True (a worker process on this "
                         f"machine) or 'queue' (for a recocora worker), not {background!r}")
    if on_progress is not None:
        raise ValueError("background=True does not take on_progress=: the run happens in "
                         "another process; display the returned Run, or read run.rows_done "
                         "and run.counts, to follow it.")
    if options.pop("only", None) is not None:
        raise ValueError("background=True does not take only=; the run's journal already "
                         "sends only the rows it has no answer for: run.resume().")
    options.pop("progress", None)
    own = client is None
    built: CoraClient | RecotapClient
    if api == "cora":
        from .cora._upsert import plan_upsert

        built = client or CoraClient()
        plan_upsert(df, columns=options["columns"], on_invalid=options["on_invalid"],
                    mode=options["mode"], max_rows=CoraClient.MAX_ROWS)
    else:
        from .recotap._schema import prepare_checked, validation_error

        built = client or RecotapClient()
        _, failures = prepare_checked(df, domain=options["domain"],
                                      external_id=options["external_id"])
        if len(failures) and options["on_invalid"] == "raise":
            raise validation_error(failures)
    try:
        run_id = submit(api, df, built, options, queue=background == "queue")
        return Run(run_id, built.state_url or "local")
    finally:
        if own:
            built.close()
