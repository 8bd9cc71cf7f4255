"""Background runs: ``df.cora.upsert(..., background=True)`` hands back a :class:`Run` at once.

The frame is validated in the caller (bad input is refused before anything starts), staged in
the run's folder under the cache directory (Parquet, or a pickle for frames Arrow cannot
hold), and a detached worker process (``python -m recocora._worker RUN_DIR``, in a session of
its own so a kernel restart does not take it down) performs the run through the ordinary
accessor with a journal in that folder. The key reaches the worker through a pipe, never a
file. Every process sees runs through one registry of runs in the cache directory.

>>> run = df.cora.upsert(client=cora, background=True)  # doctest: +SKIP
>>> run.wait()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from ._config import cache_dir
from ._progress import format_duration
from ._state import key_fingerprint
from ._state._keys import _clean_url as clean_url
from ._state._registry import LIVE_STATES, RunStore, SqliteRunStore, now_iso
from ._state._staging import fingerprint, stage
from .cora._client import CoraClient
from .errors import ConfigError, RunError
from .recotap._client import RecotapClient

__all__ = ["FINAL_STATES", "Run", "attach", "client_parts", "registry", "runs", "submit"]

FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")
#: A run on another machine, or not yet given a process, counts as dead after this silence.
STALE_S = 60.0
_STORES: dict[Path, RunStore] = {}
_CHILDREN: list[subprocess.Popen[bytes]] = []


def runs_dir() -> Path:
    return cache_dir() / "runs"


def registry() -> RunStore:
    """The registry of runs for the current cache directory (one connection per process).
    Everything else reaches runs through the :class:`RunStore` interface only, so another
    backend (a shared database) plugs in here."""
    path = runs_dir() / "registry.sqlite"
    store = _STORES.get(path)
    if store is None:
        store = _STORES[path] = SqliteRunStore(path)
    return store


# --------------------------------------------------------------------------- submitting


def client_parts(api: str, client: CoraClient | RecotapClient
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """What the worker needs to build the same client: its settings (no secret, written to
    the run's folder) and the key and base URL (which may carry user info), sent through a
    pipe only."""
    transport = client.transport
    # Class constants a caller may have shrunk on this client (tests do, to prove chunking).
    limits = {name: int(getattr(client, name)) for name in dir(type(client))
              if name.startswith(("MAX_", "PAGE_")) and isinstance(getattr(client, name), int)}
    settings: dict[str, Any] = {
        "base_url": clean_url(client.base_url), "timeout": transport.timeout,
        "retry": dataclasses.asdict(transport.retry),
        "max_concurrency": client.max_concurrency, "limits": limits,
    }
    if isinstance(client, CoraClient):
        settings["min_interval"] = client.min_interval
        return settings, {"api_key": client._key.raw, "base_url": client.base_url}
    return settings, {"api_key": client._key, "base_url": client.base_url}


def key_label(api: str, client: CoraClient | RecotapClient) -> str:
    if isinstance(client, CoraClient):
        return client.key_id
    return key_fingerprint(client._key)


def submit(api: str, df: pd.DataFrame, client: CoraClient | RecotapClient,
           options: Mapping[str, Any]) -> Run:
    """Stage ``df`` and start a worker running ``df.<api>.<call>(**options)``, or hand back
    the live run of the same frame and options. ``df`` has been validated by the caller."""
    settings, secret = client_parts(api, client)
    label = key_label(api, client)
    journal = options.get("journal")
    if isinstance(journal, os.PathLike | str):
        journal = str(Path(journal).expanduser().resolve())
    spec = {"api": api, "options": {**options, "journal": journal}, "client": settings,
            "key_id": label}
    root = runs_dir()
    scratch = root / f".staging-{uuid.uuid4().hex}"
    staged = stage(df, scratch)
    store = registry()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_id = f"{api}-{stamp}-{uuid.uuid4().hex[:6]}"
    folder = root / run_id
    run_id, created = store.submit({
        "run_id": run_id, "api": api, "fingerprint": fingerprint(staged, spec),
        "state": "queued", "run_dir": str(folder), "key_id": label,
        "base_url": clean_url(client.base_url), "rows": len(df), "created_at": now_iso(),
        "host": socket.gethostname(), "attempts": 1,
    })
    if not created:
        staged.unlink()
        scratch.rmdir()
        return Run(run_id)
    scratch.rename(folder)
    (folder / "run.json").write_bytes(orjson.dumps(spec, option=orjson.OPT_INDENT_2))
    _spawn(run_id, folder, secret)
    return Run(run_id)


def _spawn(run_id: str, folder: Path, secret: dict[str, str]) -> None:
    env = {**os.environ, "RECOCORA_CACHE_DIR": str(cache_dir())}
    with (folder / "worker.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recocora._worker", str(folder)],
            stdin=subprocess.PIPE, stdout=log, stderr=log, env=env, close_fds=True,
            start_new_session=True,
        )
    assert proc.stdin is not None
    try:
        proc.stdin.write(orjson.dumps(secret) + b"\n")
        proc.stdin.close()
    except BrokenPipeError:
        pass
    _CHILDREN.append(proc)
    registry().update(run_id, when_state=("queued",), pid=proc.pid,
                      pid_start=_process_start(proc.pid))


# --------------------------------------------------------------------------- liveness


def _process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), ``None`` if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(record: Mapping[str, Any]) -> bool:
    for proc in _CHILDREN:
        proc.poll()  # reap workers this process started, so they do not linger as zombies
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or pid is None:
        last = record.get("heartbeat_at") or record.get("started_at") or record["created_at"]
        return _age(last) < STALE_S
    if Path("/proc").is_dir():
        started = _process_start(int(pid))
        return started is not None and (record.get("pid_start") in (None, 0, started))
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(stamp: str) -> float:
    when = pd.Timestamp(stamp)
    return float((pd.Timestamp.now(tz="UTC") - when).total_seconds())


def _settled(run_id: str) -> dict[str, Any]:
    """The run's record, with a live run whose worker died marked ``interrupted``."""
    store = registry()
    record = store.get(run_id)
    if record is None:
        raise RunError(f"No background run {run_id!r} in {runs_dir()}; recocora.runs() "
                       "lists the known ones.")
    if record["state"] in LIVE_STATES and not _alive(record):
        store.update(run_id, when_state=LIVE_STATES, state="interrupted")
        record = store.get(run_id) or record
    return record


# --------------------------------------------------------------------------- the handle


class Run:
    """A background run of ``df.cora.upsert`` or ``df.recotap.map_ids``.

    Every attribute reads the run's current record, so a handle from
    :func:`recocora.attach` in another process sees the same thing. ``state`` is one of
    ``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled`` or ``interrupted``
    (its worker died: :meth:`resume` finishes it).

    >>> run = df.cora.upsert(client=cora, background=True)  # doctest: +SKIP
    >>> run.state, run.rows_done, run.counts  # doctest: +SKIP
    ('running', 1500, {'created': 1500})
    >>> res = run.wait()  # doctest: +SKIP
    """

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        _settled(run_id)

    # -- state ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The run's record as a dict (state, counts, rows, requests, times, key id)."""
        record = _settled(self.id)
        return {k: v for k, v in record.items() if k not in ("fingerprint", "pid_start")}

    @property
    def state(self) -> str:
        return str(_settled(self.id)["state"])

    @property
    def api(self) -> str:
        return str(_settled(self.id)["api"])

    @property
    def counts(self) -> dict[str, int]:
        return dict(_settled(self.id)["counts"])

    @property
    def rows_done(self) -> int:
        return int(_settled(self.id)["rows_done"])

    @property
    def rows_total(self) -> int | None:
        total = _settled(self.id)["rows_total"]
        return None if total is None else int(total)

    @property
    def requests(self) -> int:
        return int(_settled(self.id)["requests"])

    @property
    def rate_limited(self) -> int:
        """429 answers met so far."""
        return int(_settled(self.id)["rate_limited"])

    @property
    def eta_s(self) -> float | None:
        record = _settled(self.id)
        return None if record["state"] not in LIVE_STATES else record["eta_s"]

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def folder(self) -> Path:
        """The run's folder: staged input, journal, result and log (never a secret)."""
        return Path(_settled(self.id)["run_dir"])

    def log(self) -> str:
        """The worker's log: when it started, each answer's progress, how it ended."""
        path = self.folder() / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- outcome --------------------------------------------------------------------------

    def result(self) -> pd.DataFrame:
        """The result frame (the input's index, as the foreground call returns it) of a run
        that ended; for a cancelled run, rows never sent are ``not_sent``. A failed run
        raises :class:`~recocora.RunError` carrying the partial result in ``.result``."""
        record = _settled(self.id)
        state = record["state"]
        path = Path(record["run_dir"]) / "result.pkl"
        frame: pd.DataFrame | None = _read_result(path) if path.exists() else None
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
        ``TimeoutError`` if it has not ended by then (the run goes on).

        >>> res = recocora.attach("cora-20261201-213000-a1b2c3").wait()  # doctest: +SKIP
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state in LIVE_STATES:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Run {self.id} is still {self.state} after {timeout} s.")
            time.sleep(poll)
        return self.result()

    def cancel(self) -> None:
        """Stop the run before its next request. The answer in flight is recorded; rows not
        sent come back ``not_sent`` in :meth:`result`, and the state becomes ``cancelled``."""
        store = registry()
        record = _settled(self.id)
        if record["state"] not in LIVE_STATES:
            store.update(self.id, when_state=("interrupted",), state="cancelled",
                         finished_at=now_iso())
            return
        store.update(self.id, cancel_requested=1)
        if record["state"] == "running" and record.get("host") == socket.gethostname():
            # The worker also notices the request within a second; the signal saves that.
            with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
                os.kill(int(record["pid"]), signal.SIGINT)

    def resume(self, client: CoraClient | RecotapClient | None = None) -> Run:
        """Start a new worker for an ``interrupted`` (or ``failed``) run: rows whose answer
        the journal holds are not sent again. ``client`` defaults to one built from the
        environment (``CORA_API_KEY`` / ``RECOTAP_API_KEY``); it must use the same key.
        Returns the run itself.

        >>> recocora.attach(run_id).resume()  # doctest: +SKIP
        """
        record = _settled(self.id)
        if record["state"] not in ("interrupted", "failed"):
            raise RunError(f"Run {self.id} is {record['state']}: only an interrupted or "
                           "failed run can be resumed.", state=record["state"])
        folder = Path(record["run_dir"])
        spec = orjson.loads((folder / "run.json").read_bytes())
        api = record["api"]
        own = client is None
        if client is None:
            client = _client_from_env(api, record["base_url"])
        try:
            if key_label(api, client) != record["key_id"]:
                raise ConfigError(
                    f"Run {self.id} was started with key {record['key_id']!r}; resume it "
                    "with the same key (its journal is filed under that key)."
                )
            settings, secret = client_parts(api, client)
        finally:
            if own:
                client.close()
        spec["client"] = settings
        (folder / "run.json").write_bytes(orjson.dumps(spec, option=orjson.OPT_INDENT_2))
        if not registry().update(
            self.id, when_state=("interrupted", "failed"), state="queued", pid=None,
            pid_start=None, error=None, cancel_requested=0, finished_at=None,
            heartbeat_at=None, created_at=now_iso(), host=socket.gethostname(),
            attempts=int(record["attempts"]) + 1,
        ):
            raise RunError(f"Run {self.id} changed state while resuming; look again.",
                           state=self.state)
        _spawn(self.id, folder, secret)
        return self

    # -- display --------------------------------------------------------------------------

    def summary(self) -> str:
        """One line: id, state, rows done of total, counts, requests, 429s, ETA."""
        r = _settled(self.id)
        total = r["rows_total"] if r["rows_total"] is not None else r["rows"]
        counts = ", ".join(f"{k} {v:,}" for k, v in r["counts"].items() if v) or "no answers"
        text = (f"{r['state']}: {r['rows_done']:,}/{total:,} rows ({counts}); "
                f"{r['requests']:,} requests, {r['rate_limited']:,} answered 429")
        if r["state"] in LIVE_STATES and r["eta_s"] is not None:
            text += f"; {format_duration(float(r['eta_s']))} left"
        if r["error"]:
            text += f"; {r['error']}"
        return text

    def __repr__(self) -> str:
        return f"<recocora.Run {self.id} {self.summary()}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .widgets._run import run_mimebundle

        return run_mimebundle(self)


def _read_result(path: Path) -> pd.DataFrame:
    frame: pd.DataFrame = pd.read_pickle(path)
    return frame


def _client_from_env(api: str, base_url: str) -> CoraClient | RecotapClient:
    if api == "cora":
        return CoraClient(base_url=base_url)
    return RecotapClient(base_url=base_url)


def attach(run_id: str) -> Run:
    """The :class:`Run` with this id, from any process on this machine (after a kernel
    restart, in another notebook, in a script).

    >>> run = recocora.attach("cora-20261201-213000-a1b2c3")  # doctest: +SKIP
    >>> run  # a live progress widget in a notebook  # doctest: +SKIP
    """
    return Run(run_id)


def runs() -> pd.DataFrame:
    """Every background run known to this cache directory, newest first: ``run_id``,
    ``api``, ``state``, ``rows``, ``rows_done``, one column per status with its count,
    ``requests``, ``rate_limited``, ``started_at``, ``finished_at``, ``eta_s`` and
    ``key_id`` (the key's id, never its secret).

    >>> recocora.runs()[["run_id", "state", "rows"]]  # doctest: +SKIP
    """
    records = [_settled(r["run_id"]) for r in registry().all()]
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
          options: dict[str, Any], *, on_progress: object = None) -> Run:
    """``background=True``: validate ``df`` here, as the foreground call would (bad input
    is refused before anything starts), then :func:`submit` it."""
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
        return submit(api, df, built, options)
    finally:
        if own:
            built.close()
