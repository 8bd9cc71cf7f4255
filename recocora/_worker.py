"""``python -m recocora._worker RUN_DIR``: the process that performs one background run.

It reads the key from its standard input (one JSON line, never from a file), the run's
settings from ``RUN_DIR/run.json`` and the staged frame, then calls the same accessor a user
calls, with the run's journal. While it works, a heartbeat thread writes the run's progress
to the registry and watches for a cancel request; SIGINT (what ``run.cancel()`` sends) stops
the run before its next request, after the answer in flight has been recorded.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import pandas as pd

from ._progress import Progress
from ._runs import _process_start, registry
from ._state._registry import now_iso
from ._state._staging import read_staged
from .errors import RecocoraError, RunInterrupted

__all__ = ["main"]

#: Seconds between heartbeats (progress written, cancel request looked for).
HEARTBEAT_S = 0.5
_ANSWER_LOG = "%s %s -> %d in %.3fs (attempt %d)"

log = logging.getLogger("recocora-worker")


class _Gate:
    """Turns SIGINT into a stop *between* requests: while a request is in flight the signal
    is only noted, and the next attempt to take a slot raises ``KeyboardInterrupt``, so the
    answer on its way is merged and journalled first. ``always`` (APIs without a slot to
    wait for) stops at once, as Ctrl-C does."""

    def __init__(self, always: bool) -> None:
        self.cancelled = False
        self.always = always
        self.armed = always

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.cancelled = True
        if self.armed:
            raise KeyboardInterrupt

    def wrap(self, acquire: Callable[[], float]) -> Callable[[], float]:
        def gated() -> float:
            if self.cancelled:
                raise KeyboardInterrupt
            self.armed = True
            try:
                return acquire()
            finally:
                self.armed = self.always

        return gated


def _client(api: str, settings: dict[str, Any], secret: str) -> Any:
    from ._transport import RetryPolicy

    common = {"api_key": secret, "base_url": settings["base_url"],
              "timeout": settings["timeout"], "retry": RetryPolicy(**settings["retry"]),
              "max_concurrency": settings["max_concurrency"]}
    client: Any
    if api == "cora":
        from .cora._client import CoraClient

        client = CoraClient(min_interval=settings["min_interval"], **common)
    else:
        from .recotap._client import RecotapClient

        client = RecotapClient(**common)
    for name, value in settings["limits"].items():
        setattr(client, name, value)
    return client


class _Heartbeat(threading.Thread):
    """Writes progress and the heartbeat; turns a cancel request in the registry into a
    SIGINT for the main thread. It touches only the registry, never the run's objects."""

    def __init__(self, run_id: str, progress: Callable[[], dict[str, Any]]) -> None:
        super().__init__(name="recocora-heartbeat", daemon=True)
        self.run_id, self.progress = run_id, progress
        self.stop = threading.Event()
        self.signalled = False
        self.last: dict[str, Any] = {}

    def beat(self) -> None:
        store = registry()
        fields = self.progress()
        store.update(self.run_id, heartbeat_at=now_iso(), **fields)
        if fields.get("rows_done") != self.last.get("rows_done"):
            log.info("%s/%s rows, %s requests, %s",
                     fields.get("rows_done"), fields.get("rows_total"), fields.get("requests"),
                     fields.get("counts"))
        self.last = fields
        record = store.get(self.run_id)
        if record is not None and record["cancel_requested"] and not self.signalled:
            self.signalled = True
            log.info("cancel requested")
            os.kill(os.getpid(), signal.SIGINT)

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception:  # a busy registry must not end the run; the next beat retries
                log.warning("heartbeat failed:\n%s", traceback.format_exc())


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    given = orjson.loads(sys.stdin.readline())
    secret, base_url = str(given["api_key"]), str(given["base_url"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    spec = orjson.loads((folder / "run.json").read_bytes())
    run_id, api = folder.name, spec["api"]
    store = registry()
    record = store.get(run_id)
    if record is None:
        log.error("run %s is not in the registry of %s", run_id, folder.parent)
        return 2
    gate = _Gate(always=api != "cora")
    signal.signal(signal.SIGINT, gate.on_signal)
    if not store.update(run_id, when_state=("queued",), state="running", pid=os.getpid(),
                        pid_start=_process_start(os.getpid()),
                        started_at=record["started_at"] or now_iso()):
        log.error("run %s is %s, not queued: nothing to do", run_id, record["state"])
        return 2
    log.info("worker %d started run %s (attempt %s)", os.getpid(), run_id, record["attempts"])

    options = dict(spec["options"])
    if options.get("journal") in (None, False):
        options["journal"] = str(folder / "journal.sqlite")
    client = _client(api, {**spec["client"], "base_url": base_url}, secret)
    if api == "cora":
        vars(client.limiter)["acquire"] = gate.wrap(client.limiter.acquire)
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
        )

    def progress() -> dict[str, Any]:
        return dict(latest)

    beat = _Heartbeat(run_id, progress)
    beat.start()
    result: pd.DataFrame | None = None
    error: str | None = None
    try:
        df = read_staged(folder)
        call = df.cora.upsert if api == "cora" else df.recotap.map_ids
        result = call(client=client, progress=False, on_progress=listen, **options)
        state = "succeeded"
    except RunInterrupted as stop:
        result, state = stop.result, "cancelled"
        error = None if gate.cancelled else str(stop)
    except KeyboardInterrupt:
        state = "cancelled"
    except RecocoraError as exc:
        result, state = exc.result, "failed"
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        state, error = "failed", f"{type(exc).__name__}: {exc}"
        log.error("%s", traceback.format_exc())
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run is over: nothing to stop
        beat.stop.set()
        beat.join()
        client.close()
    final = progress()
    if result is not None:
        counts = {str(k): int(v) for k, v in result.attrs.get("counts", {}).items()}
        final["counts"] = counts
        final["requests"] = before["requests"] + int(result.attrs.get("requests", 0))
        scratch = folder / "result.pkl.partial"
        result.to_pickle(scratch)
        scratch.replace(folder / "result.pkl")
    final.pop("eta_s", None)
    store.update(run_id, when_state=("running",), state=state, error=error,
                 finished_at=now_iso(), eta_s=None, heartbeat_at=now_iso(), **final)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("run %s %s: %s; peak memory %.0f MB", run_id, state, final.get("counts"), peak)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
