"""Starting background runs: the registry that holds them, what a worker is given, and the
worker process a submitter starts.

Runs live in this machine's cache directory (a SQLite registry and a folder per run) or, with a
``postgresql://`` state URL, in the state database, where any machine can run, resume and
read them. A spawned worker receives the key, the base URL and the state URL (each may carry
a secret) on its standard input, never through a file or the database.
"""

from __future__ import annotations

import dataclasses
import os
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
from ._state import key_fingerprint
from ._state._keys import _clean_url as clean_url
from ._state._registry import RunStore, SqliteRunStore, now_iso
from ._state._staging import fingerprint, staged
from .cora._client import CoraClient
from .errors import ConfigError
from .recotap._client import RecotapClient

__all__ = ["alive", "client_from_env", "client_parts", "key_label", "process_start",
           "registry", "runs_dir", "spawn", "submit", "worker_id"]

_STORES: dict[str, RunStore] = {}
_CHILDREN: list[subprocess.Popen[bytes]] = []
#: A run on another machine, or not yet given a process, counts as dead after this silence
#: (runs in this machine's registry; the state database judges by leases).
STALE_S = 60.0


def runs_dir() -> Path:
    return cache_dir() / "runs"


def registry(url: str | None) -> RunStore:
    """The registry of runs in the state database ``url``, or (``None``) in this machine's
    cache directory; one per process and place."""
    where = url if url is not None else str(runs_dir() / "registry.sqlite")
    store = _STORES.get(where)
    if store is None:
        if url is None:
            store = SqliteRunStore(where)
        else:
            from ._state._pg_registry import PgRunStore

            store = PgRunStore(url)
        _STORES[where] = store
    return store


def worker_id() -> str:
    """A name for one worker, unique across machines: host, process, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- submitting


def client_parts(api: str, client: CoraClient | RecotapClient
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a worker needs to build the same client: its settings (no secret, kept with the
    run) and the key, base URL and state URL (any may carry a secret), sent through a pipe
    only."""
    transport = client.transport
    # Class constants a caller may have shrunk on this client (tests do, to prove chunking).
    limits = {name: int(getattr(client, name)) for name in dir(type(client))
              if name.startswith(("MAX_", "PAGE_")) and isinstance(getattr(client, name), int)}
    settings: dict[str, Any] = {
        "base_url": clean_url(client.base_url), "timeout": transport.timeout,
        "retry": dataclasses.asdict(transport.retry),
        "max_concurrency": client.max_concurrency, "limits": limits,
    }
    secret: dict[str, Any] = {"base_url": client.base_url, "state": client.state_url}
    if isinstance(client, CoraClient):
        settings["min_interval"] = client.min_interval
        return settings, {**secret, "api_key": client._key.raw}
    return settings, {**secret, "api_key": client._key}


def key_label(api: str, client: CoraClient | RecotapClient) -> str:
    if isinstance(client, CoraClient):
        return client.key_id
    return key_fingerprint(client._key)


def submit(api: str, df: pd.DataFrame, client: CoraClient | RecotapClient,
           options: Mapping[str, Any], *, queue: bool) -> str:
    """Stage ``df`` and register a run of ``df.<api>.<call>(**options)``, then start its
    worker (or, with ``queue``, leave it for ``recocora worker``); or hand back the live
    run of the same frame and options. ``df`` has been validated by the caller."""
    url = client.state_url
    if queue and url is None:
        raise ConfigError(
            'background="queue" leaves the run for a recocora worker on another machine, so '
            "it needs the state database they share: set RECOCORA_STATE_URL="
            "postgresql://user@host:5432/dbname (or pass state= to the client), or use "
            "background=True to run it in a process on this machine."
        )
    settings, secret = client_parts(api, client)
    label = key_label(api, client)
    journal = options.get("journal")
    if isinstance(journal, os.PathLike | str):
        if url is not None:  # a resume on another machine would not see this file
            where = "A queued run" if queue else "A background run kept in the state database"
            raise ConfigError(
                f"{where} may run (or be resumed) on any machine: its journal cannot be a "
                "file on this one. Leave journal= unset (the run's journal is kept in the "
                "state database) or pass journal=True (the key's journal there)."
            )
        journal = str(Path(journal).expanduser().resolve())
    spec = {"api": api, "options": {**options, "journal": journal}, "client": settings,
            "key_id": label}
    payload = staged(df, spec, shared=url is not None)
    store = registry(url)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    reserve = None if queue else worker_id()
    run_id, created = store.submit({
        "run_id": f"{api}-{stamp}-{uuid.uuid4().hex[:6]}", "api": api,
        "fingerprint": fingerprint(payload), "state": "queued", "run_dir": "",
        "key_id": label, "base_url": clean_url(client.base_url), "rows": len(df),
        "created_at": now_iso(), "host": socket.gethostname(), "attempts": 1,
    }, payload, reserve=reserve)
    if created and reserve is not None:
        spawn(store, run_id, {**secret, "worker": reserve})
    return run_id


def spawn(store: RunStore, run_id: str, given: Mapping[str, Any]) -> None:
    """Start ``python -m recocora._worker RUN_ID`` in a session of its own (a kernel restart
    does not take it down), ``given`` (key, base URL, state URL, worker id) on its standard
    input; its output goes to ``worker.log`` in the run's folder on this machine."""
    record = store.get(run_id) or {}
    local = not store.shared and record.get("run_dir")
    folder = Path(record["run_dir"]) if local else runs_dir() / run_id
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RECOCORA_CACHE_DIR": str(cache_dir())}
    with (folder / "worker.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recocora._worker", run_id],
            stdin=subprocess.PIPE, stdout=log, stderr=log, env=env, close_fds=True,
            start_new_session=True,
        )
    assert proc.stdin is not None
    try:
        proc.stdin.write(orjson.dumps(dict(given)) + b"\n")
        proc.stdin.close()
    except BrokenPipeError:
        pass
    _CHILDREN.append(proc)
    store.update(run_id, when_state=("queued",), pid=proc.pid,
                 pid_start=process_start(proc.pid), run_dir=str(folder),
                 host=socket.gethostname())


def client_from_env(api: str, base_url: str | None, state: str | None
                    ) -> CoraClient | RecotapClient:
    """A client of ``api`` with the key of this environment (``CORA_API_KEY`` /
    ``RECOTAP_API_KEY``) and, unless given, its base URL, keeping runs in ``state``."""
    where = state if state is not None else "local"
    if api == "cora":
        return CoraClient(base_url=base_url, state=where)
    return RecotapClient(base_url=base_url, state=where)


# --------------------------------------------------------------------------- liveness


def process_start(pid: int) -> int | None:
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


def alive(record: Mapping[str, Any]) -> bool:
    """Whether the worker of a run in this machine's registry still runs."""
    for proc in _CHILDREN:
        proc.poll()  # reap workers this process started, so they do not linger as zombies
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or pid is None:
        last = record.get("heartbeat_at") or record.get("started_at") or record["created_at"]
        return _age(last) < STALE_S
    if Path("/proc").is_dir():
        started = process_start(int(pid))
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
