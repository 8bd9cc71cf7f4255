"""The processes that perform background runs.

``python -m recocora._worker RUN_ID`` is the worker a submitter starts for one run;
``recocora worker`` claims queued runs one after another. Both do a claimed run with
:func:`perform`: the key, base URL and state URL come from the worker's standard input or
environment (never a file or the database), the run's settings and staged frame from its
store, and the same accessor a user calls does the run, with the run's journal. While it
works, a heartbeat thread writes progress, renews the worker's lease (state database) and
watches for a cancel request. A stop (a cancel, a worker told to stop, a lease lost) takes
effect before the next request, after the answer in flight has been recorded.

With a state database a worker sends a request only while it knows it holds the run's lease
(:class:`Lease`): a worker that was suspended or cut off for longer than the lease sends
nothing until a heartbeat has renewed it, and stops if another worker took the run meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import orjson
import pandas as pd

from ._progress import Progress
from ._runs_launch import process_start, registry
from ._state import journal_target
from ._state._pg_registry import PgRunStore
from ._state._registry import RunStore, now_iso
from .errors import RecocoraError, RunInterrupted, StateError

__all__ = ["Gate", "Lease", "LogLines", "main", "patient", "perform", "worker_logging"]

log = logging.getLogger("recocora-worker")
#: A clock that goes on counting while the machine sleeps (a suspended laptop or VM).
_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def _now() -> float:
    return time.clock_gettime(_CLOCK)


class Lease:
    """What a worker knows of its lease on its run: a heartbeat that renewed it says when it
    started (the lease runs from a moment after that), and a request may start only within
    :attr:`SAFE` of the lease from there. Past that, :meth:`hold` waits for a heartbeat to
    renew it; once a heartbeat found the run taken by another worker, it stops the request
    (``KeyboardInterrupt``). Without a lease (runs on this machine) it never waits.
    """

    #: Share of the lease, counted from the start of the last renewing heartbeat, within
    #: which a request may start.
    SAFE = 0.5

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._renewed: float | None = None
        self._lost = False
        self._changed = threading.Condition()

    def renewed(self, since: float) -> None:
        """A heartbeat that started at ``since`` (:func:`_now`) renewed the lease."""
        with self._changed:
            self._renewed = since
            self._changed.notify_all()

    def lost(self) -> None:
        """The run is another worker's now."""
        with self._changed:
            self._lost = True
            self._changed.notify_all()

    def _left(self) -> float:
        assert self.seconds is not None
        if self._renewed is None:
            return 0.0
        return self._renewed + self.seconds * self.SAFE - _now()

    def hold(self) -> None:
        """Return while the lease is surely this worker's; wait for a heartbeat otherwise."""
        if self.seconds is None:
            return
        with self._changed:
            told = False
            while not self._lost and self._left() <= 0:
                if not told and self._renewed is not None:
                    log.warning("the run's lease was last renewed %.1f s ago: waiting for a "
                                "heartbeat to renew it before the next request",
                                _now() - self._renewed)
                    told = True
                self._changed.wait(0.1)
            if self._lost:
                raise KeyboardInterrupt


class Gate:
    """Turns a signal into a stop *between* requests: while a request is in flight the signal
    is only noted, and the next attempt to take a slot raises ``KeyboardInterrupt``, so the
    answer on its way is merged and journalled first. ``always`` (APIs without a slot to
    wait for) stops at once, as Ctrl-C does.

    ``reason`` says why: ``external`` for a signal from outside (``cancel`` for a worker
    started for one run, ``shutdown`` for ``recocora worker``), or what the heartbeat asked
    for (``cancel``, or ``lost`` when the run's lease went to another worker).
    """

    def __init__(self, always: bool, external: str) -> None:
        self.reason: str | None = None
        self.stopping = False
        self.external = external
        self._asked: str | None = None
        self.always = always
        self.armed = always

    def ask(self, reason: str) -> None:
        """Stop for ``reason``, from another thread: delivered to the main one as SIGINT."""
        self._asked = reason
        os.kill(os.getpid(), signal.SIGINT)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        why, self._asked = self._asked or self.external, None
        self.stopping = self.stopping or why == "shutdown"
        if self.reason is None or why == "lost":
            self.reason = why
        if self.armed:
            raise KeyboardInterrupt

    def disarm(self) -> None:
        """The run is over: a signal now only notes its reason."""
        self.always = self.armed = False

    def wrap(self, acquire: Callable[[], float]) -> Callable[[], float]:
        def gated() -> float:
            if self.reason is not None:
                raise KeyboardInterrupt
            self.armed = True
            try:
                return acquire()
            finally:
                self.armed = self.always

        return gated


class LogLines(logging.Handler):
    """Keeps the worker's log lines until a heartbeat hands them to the store (the state
    database keeps them, so ``run.log()`` works from any machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def take(self) -> list[str]:
        with self.lock:  # type: ignore[union-attr]
            taken, self.lines = self.lines, []
        return taken

    def put_back(self, lines: list[str]) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.lines[:0] = lines


def worker_logging() -> LogLines:
    """Log to standard error, and keep the lines for the store; the library's own warnings
    (an unreachable database, a paused limiter) go to both too."""
    lines = LogLines()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(lines.formatter)
    for name in ("recocora-worker", "recocora"):
        logger = logging.getLogger(name)
        logger.addHandler(stream)
        logger.addHandler(lines)
    log.setLevel(logging.INFO)
    return lines


def _client(api: str, settings: dict[str, Any], secret: str, state: str | None) -> Any:
    from ._transport import RetryPolicy

    common = {"api_key": secret, "base_url": settings["base_url"],
              "timeout": settings["timeout"], "retry": RetryPolicy(**settings["retry"]),
              "max_concurrency": settings["max_concurrency"], "state": state or "local"}
    client: Any
    if api == "cora":
        from .cora._client import CoraClient

        client = CoraClient(min_interval=settings["min_interval"], **common)
    else:
        from .recotap._client import RecotapClient

        client = RecotapClient(**common)
    for name, value in settings["limits"].items():
        if name.startswith(("MAX_", "PAGE_")) and isinstance(value, int):
            setattr(client, name, value)
    return client


class _Heartbeat(threading.Thread):
    """Writes progress, renews the lease and passes on log lines; turns a cancel request (or
    a lost lease) into a stop of the main thread. It touches only the store."""

    def __init__(self, store: RunStore, run_id: str, worker: str | None,
                 progress: Callable[[], dict[str, Any]], gate: Gate, lines: LogLines,
                 period: float, lease: Lease) -> None:
        super().__init__(name="recocora-heartbeat", daemon=True)
        self.store, self.run_id, self.worker = store, run_id, worker
        self.progress, self.gate, self.lines, self.period = progress, gate, lines, period
        self.lease = lease
        self.stop = threading.Event()
        self.asked = False
        self.last: dict[str, Any] = {}

    def beat(self) -> None:
        fields = self.progress()
        if fields.get("rows_done") != self.last.get("rows_done"):
            log.info("%s/%s rows, %s requests, %s",
                     fields.get("rows_done"), fields.get("rows_total"), fields.get("requests"),
                     fields.get("counts"))
        taken = self.lines.take()
        started = _now()
        try:
            answer = self.store.beat(self.run_id, self.worker, fields, taken)
        except BaseException:
            self.lines.put_back(taken)
            raise
        self.last = fields
        if answer is not None:
            self.lease.renewed(started)
        if self.asked or answer is False:
            return
        self.asked = True
        if answer is None:
            log.warning("run %s is no longer this worker's (its lease ran out and another "
                        "worker or a resume took it): stopping before the next request",
                        self.run_id)
            self.gate.ask("lost")
            self.lease.lost()
        else:
            log.info("cancel requested")
            self.gate.ask("cancel")

    def run(self) -> None:
        failing = False
        while True:  # at once: the first request waits for a renewed lease
            try:
                self.beat()
                failing = False
            except Exception as exc:  # the next beat retries; the run goes on
                if not failing:
                    log.warning("heartbeat failed, retrying: %s",
                                " ".join(str(exc).split())[:300] or type(exc).__name__)
                failing = True
            if self.stop.wait(self.period):
                return


def _attempt(store: RunStore, run_id: str, given: Mapping[str, Any], gate: Gate,
             lease: Lease, listen: Callable[[Progress], None]
             ) -> tuple[pd.DataFrame | None, str, str | None]:
    """One attempt at the run through the accessor a user calls: ``(result, outcome,
    error)``. Whatever stops it, even before its first request, is its outcome. Every
    attempt of every request waits for :meth:`Lease.hold` first."""
    client: Any = None
    try:
        spec = store.spec(run_id)
        api, base_url = spec["api"], str(given["base_url"])
        options = dict(spec["options"])
        if options.get("journal") in (None, False):
            target = journal_target(api, base_url, spec["key_id"])
            options["journal"] = store.own_journal(run_id, api, target)
        client = _client(api, {**spec["client"], "base_url": base_url},
                         str(given["api_key"]), given.get("state"))
        if api == "cora":  # the limiter is the process's, for its key: unwrapped at the end
            vars(client.limiter)["acquire"] = gate.wrap(client.limiter.acquire)
        vars(client.transport)["auth_headers"] = _held(lease, client.transport.auth_headers)
        df = store.frame(run_id)
        call = df.cora.upsert if api == "cora" else df.recotap.map_ids
        return call(client=client, progress=False, on_progress=listen, **options), \
            "succeeded", None
    except RunInterrupted as stop:
        return stop.result, "cancelled", None if gate.reason else str(stop)
    except KeyboardInterrupt:
        return None, "cancelled", None
    except RecocoraError as exc:
        return exc.result, "failed", f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        log.error("%s", traceback.format_exc())
        return None, "failed", f"{type(exc).__name__}: {exc}"
    finally:
        gate.disarm()  # the run is over: nothing to stop
        if client is not None:
            limiter = getattr(client, "limiter", None)
            if limiter is not None:
                vars(limiter).pop("acquire", None)
            client.close()


def _held(lease: Lease, sign: Callable[[str, str, bytes], dict[str, str]]
          ) -> Callable[[str, str, bytes], dict[str, str]]:
    """``sign`` (called as each attempt is sent) once :meth:`Lease.hold` lets it go."""
    def held(method: str, path_url: str, body: bytes) -> dict[str, str]:
        lease.hold()
        return sign(method, path_url, body)

    return held


def perform(store: RunStore, run_id: str, worker: str | None, given: Mapping[str, Any],
            gate: Gate, lines: LogLines) -> str:
    """Do the run ``run_id``, already claimed by ``worker``, to its end and record it: its
    final state; ``queued`` when a stopping worker gave it back, ``lost`` when its lease
    went to another worker first."""
    record = store.get(run_id) or {}
    # A resumed run goes on counting from where the last attempt left off: its journal skips
    # the rows already answered, so this attempt's events cover only the rest.
    before = {"requests": int(record["requests"]), "rate_limited": int(record["rate_limited"])}
    first_total = record["rows_total"] if int(record["attempts"]) > 1 else None
    latest: dict[str, Any] = {}

    def listen(event: Progress) -> None:
        total = first_total if first_total is not None else event.rows_total
        latest.update(
            rows_total=total, rows_done=total - (event.rows_total - event.rows_done),
            counts=dict(event.counts), requests=before["requests"] + event.requests,
            rate_limited=before["rate_limited"] + event.rate_limited, eta_s=event.eta_s,
            sharing=event.sharing,
        )

    def progress() -> dict[str, Any]:
        return dict(latest)

    lease = Lease(float(record["lease_s"]) if store.shared else None)
    beat = _Heartbeat(store, run_id, worker, progress, gate, lines, store.pulse(record),
                      lease)
    beat.start()
    try:
        result, outcome, error = _attempt(store, run_id, given, gate, lease, listen)
    finally:
        beat.stop.set()
        beat.join()
    final = progress()
    final.pop("eta_s", None)
    if outcome == "cancelled" and gate.reason == "lost":
        log.warning("run %s left to the worker that holds it now", run_id)
        with contextlib.suppress(StateError):  # its last log lines, if the database answers
            store.beat(run_id, worker, {}, lines.take())
        return "lost"
    if outcome == "cancelled" and gate.reason == "shutdown":
        log.info("worker stopping: run %s goes back in the queue after %s rows", run_id,
                 final.get("rows_done", 0))
        store.finish(run_id, worker, None, lines.take(), state="queued", owner=None,
                     eta_s=None, attempts=int(record["attempts"]) + 1, **final)
        return "queued"
    if result is not None:
        final["counts"] = {str(k): int(v) for k, v in result.attrs.get("counts", {}).items()}
        final["requests"] = before["requests"] + int(result.attrs.get("requests", 0))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("run %s %s: %s; peak memory %.0f MB", run_id, outcome, final.get("counts"), peak)
    store.finish(run_id, worker, result, lines.take(), state=outcome, error=error,
                 finished_at=now_iso(), eta_s=None, heartbeat_at=now_iso(), **final)
    return outcome


def patient(store: RunStore) -> RunStore:
    """``store`` as a worker reads it: in a state database, reads of its run wait out an
    outage (the run pauses) rather than fail or strand the run."""
    if isinstance(store, PgRunStore):
        store.reads_wait = True
    return store


def main(argv: list[str]) -> int:
    """The worker of one run: ``RUN_ID`` as its argument; the key, base URL, state URL and
    its worker id as one JSON line on standard input."""
    run_id = argv[0]
    given = orjson.loads(sys.stdin.readline())
    lines = worker_logging()
    store = patient(registry(given.get("state")))
    record = store.get(run_id)
    if record is None:
        log.error("run %s is not in %s", run_id, store.where)
        return 2
    gate = Gate(always=record["api"] != "cora", external="cancel")
    signal.signal(signal.SIGINT, gate.on_signal)
    if not store.claim(run_id, given.get("worker"), pid=os.getpid(),
                       pid_start=process_start(os.getpid()), host=socket.gethostname(),
                       started_at=record["started_at"] or now_iso()):
        log.error("run %s is %s, not queued for this worker: nothing to do", run_id,
                  record["state"])
        return 2
    log.info("worker %d started run %s (attempt %s)", os.getpid(), run_id, record["attempts"])
    perform(store, run_id, given.get("worker"), given, gate, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
