"""``recocora worker``: a long-lived process that claims the runs queued in the state database
(``background="queue"``) and does them one after another, so a run outlives the notebook or
pod that submitted it. Run one as a Deployment, a service, or an Airflow task (``--once``).

It reads the state database's URL from ``RECOCORA_STATE_URL`` (or ``--state``) and its keys
from ``CORA_API_KEY`` / ``RECOTAP_API_KEY`` (base URLs from ``CORA_BASE_URL`` /
``RECOTAP_BASE_URL``), and claims only the runs submitted with one of those keys to that base
URL: it never sends another key's run, nor its key to a server the database names. Each claim
is one conditional update, so two workers never do the same run. SIGTERM or Ctrl-C stops it
gracefully: the request in flight finishes and is recorded, and the run goes back in the queue
for another worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

from ._config import held_apis, state_url
from ._runs_launch import (
    client_from_env,
    client_parts,
    key_label,
    process_start,
    registry,
    worker_id,
)
from ._state._keys import _clean_url as clean_url
from ._state._pg_registry import PgRunStore
from ._worker import Gate, LogLines, patient, perform, worker_logging
from .errors import ConfigError, StateError

__all__ = ["Queue"]

log = logging.getLogger("recocora-worker")


class Queue:
    """The claiming loop of one ``recocora worker`` process (see the module docstring).

    >>> Queue(None).serve(once=True)  # doctest: +SKIP
    """

    #: Seconds between looks at the queue while it is empty (or the database is away).
    POLL_S = 2.0

    def __init__(self, state: str | None) -> None:
        url = state_url(state)
        if url is None:
            raise ConfigError(
                "recocora worker claims runs queued in a state database: set "
                "RECOCORA_STATE_URL=postgresql://user@host:5432/dbname (or pass --state)."
            )
        store = patient(registry(url))
        assert isinstance(store, PgRunStore)
        self.store, self.url = store, url
        self.worker = worker_id()
        #: (API, key label, base URL) of each key held -> what its runs' worker is given.
        self.held: dict[tuple[str, str, str], dict[str, Any]] = {}
        for api in held_apis():
            client = client_from_env(api, None, url)
            try:
                label, base = key_label(api, client), clean_url(client.base_url)
                self.held[(api, label, base)] = client_parts(api, client)[1]
            finally:
                client.close()
        if not self.held:
            raise ConfigError(
                "recocora worker has no key to claim runs with: set CORA_API_KEY and/or "
                "RECOTAP_API_KEY (the runs it claims are those submitted with the same key)."
            )
        self.stopping = False
        self.gate: Gate | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        gate = self.gate
        if gate is None:
            self.stopping = True
            return
        try:  # a SIGINT may also be the heartbeat stopping this run only (a cancel)
            gate.on_signal(signum, frame)
        finally:
            self.stopping = self.stopping or gate.stopping

    def serve(self, *, once: bool = False) -> int:
        """Claim and do runs until stopped (``once``: until the queue is empty)."""
        lines = worker_logging()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        keys = ", ".join(f"{api} key {label}" for api, label, _ in self.held)
        log.info("worker %s takes runs of %s from %s", self.worker, keys, self.store.where)
        unreachable = False
        while not self.stopping:
            lines.take()  # what was logged between runs belongs to no run
            try:
                run_id = self.store.claim_next(
                    self.worker, self.held, pid=os.getpid(), host=socket.gethostname(),
                    pid_start=process_start(os.getpid()), error=None)
                unreachable = False
            except StateError as exc:
                if not unreachable:
                    log.warning("%s Looking again every %g s.", exc, self.POLL_S)
                unreachable = True
                self._pause()
                continue
            if run_id is None:
                if once:
                    break
                self._pause()
                continue
            self._do(run_id, lines)
        log.info("worker %s stops", self.worker)
        return 0

    def _do(self, run_id: str, lines: LogLines) -> None:
        try:
            record = self.store.get(run_id) or {}  # waits out an outage, as perform's reads
            given = self.held[(record["api"], record["key_id"], record["base_url"])]
            log.info("worker %s claimed run %s (attempt %s)", self.worker, run_id,
                     record["attempts"])
            self.gate = Gate(always=record["api"] != "cora", external="shutdown")
            if self.stopping:  # told to stop between the claim and now
                self.gate.reason = "shutdown"
            outcome = perform(self.store, run_id, self.worker, given, self.gate, lines)
        except Exception as exc:  # the worker goes on; the run's lease runs out
            outcome = f"left unfinished ({type(exc).__name__}: {exc})"
        finally:
            self.gate = None
        log.info("run %s: %s", run_id, outcome)

    def _pause(self) -> None:
        until = time.monotonic() + self.POLL_S
        while not self.stopping and time.monotonic() < until:
            time.sleep(min(0.1, self.POLL_S))
