"""The one run engine behind ``df.cora.upsert`` and ``df.recotap.map_ids``, and their previews.

Each API brings an :class:`Adapter`: it plans (validates and settles rows that need no
request), cuts the rest into :class:`Batch` es, sends one, merges an answer and says what to
record. The engine owns everything else, once:

- the journal: skip rows already acknowledged with identical content (unless ``force``),
  note the run, record every answer in one transaction as it arrives;
- ``max_failed`` (:class:`FailureLimit`) and :class:`~recocora.TooManyFailedError`;
- Ctrl-C: an answer that arrived is merged and recorded whatever happens
  (:func:`deferred_interrupt`), then :class:`~recocora.RunInterrupted` with the partial result;
- any error that stops the run carries the partial result in ``.result``;
- progress events (:class:`~recocora.Progress`) to every listener, with the ETA;
- the result's run attrs (``requests``, ``rows_sent``, ``journal``, ``run``, ``skipped``,
  ``duration_s``, ``counts``);
- ``only=`` is the one step before a run: the resend step re-runs the rows an earlier
  result left failed or unsent, and folds the answers back in.

Requests go one at a time in the calling thread (a Ctrl-C then stops the request itself), or,
when the adapter allows several, from a pool of threads, merged in the calling thread.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
import pandas as pd

from ._progress import Listener, Pace, Progress, TextBar
from ._state import Ack, JournalSpec, Store, open_journal
from .errors import JournalError, RecocoraError, RunInterrupted, TooManyFailedError

__all__ = [
    "Adapter",
    "Batch",
    "FailureLimit",
    "RunOptions",
    "deferred_interrupt",
    "execute",
    "own_client",
    "preview",
]


@dataclass(frozen=True)
class RunOptions:
    """What every run takes, whatever the API: each API's options extend it.

    ``progress`` shows a text bar; ``on_progress`` is called with every
    :class:`~recocora.Progress`; ``journal``, ``force`` and ``max_failed`` are
    the arguments of the same names of ``df.cora.upsert`` and ``df.recotap.map_ids``.
    """

    progress: bool = True
    journal: JournalSpec = None
    force: bool = False
    max_failed: int | float | None = None
    on_progress: Listener | None = None

    def __post_init__(self) -> None:
        FailureLimit(self.max_failed)  # a wrong max_failed fails before anything is read


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@contextmanager
def own_client(client: C | None, make: Callable[[], C]) -> Iterator[C]:
    """``client``, or one built from the environment and closed after the block."""
    if client is not None:
        yield client
        return
    built = make()
    try:
        yield built
    finally:
        built.close()


class Batch(NamedTuple):
    """One request's worth: its number, the input positions of its rows, its body, and (with
    a journal) each row's journal key and the hash of the row as sent."""

    number: int
    positions: np.ndarray[Any, Any]
    body: bytes
    keys: Sequence[Any] = ()
    hashes: Sequence[bytes] = ()


class Adapter(Protocol):
    """What one API brings to a run. It holds the rows' outcome, positionally."""

    api: str
    #: Shown on the progress bar and in messages: ``"Cora upsert"``.
    label: str
    #: Rows in the input frame.
    rows: int
    dry_run: bool
    #: The status ``max_failed`` counts, and what to tell the user when it is exceeded.
    failing: str
    failing_hint: str
    #: The call that sends the rest of an interrupted or stopped run.
    resend_hint: str
    #: Requests allowed in flight at once.
    concurrency: int

    def journal_target(self) -> tuple[str, str, str | None]:
        """``(base_url, key_label, state_url)``: the journal files this run's rows under the
        first two; ``journal=True`` keeps them in the state database when there is one."""

    def pace(self) -> Pace: ...

    def wait_time(self) -> float:
        """Seconds before the first request may leave (a rate limit's slot)."""

    def counts(self) -> dict[str, int]:
        """Statuses over the whole frame so far (the non-zero ones)."""

    def skip_acknowledged(self, applied: pd.DataFrame) -> None:
        """Mark ``skipped`` the rows the journal holds as applied with this exact content."""

    def to_send(self) -> int:
        """Rows this run still has to settle."""

    def prepare(self) -> tuple[int, Batch | None]:
        """Settle what needs no write before sending (reads): rows settled, and the batch of
        them to record, if any."""

    def batches(self, *, hashes: bool) -> Iterator[Batch]:
        """The requests to send, each body built just before it leaves."""

    def send(self, batch: Batch) -> dict[str, Any]: ...

    def merge(self, batch: Batch, answer: dict[str, Any]) -> None:
        """Fold one answer into the outcome: every row of the batch gets its status."""

    def unknown(self, batch: Batch, why: str) -> None:
        """The request carrying ``batch`` got no usable answer."""

    def unsent(self, why: str) -> None:
        """The run stopped: say so on the rows never sent."""

    def acks(self, batch: Batch) -> list[Ack]:
        """What the journal records for one merged batch."""

    def failures(self, batch: Batch) -> int:
        """Rows of a merged batch with the :attr:`failing` status."""

    def finish(self) -> Batch | None:
        """Work after the last answer (read-back); the rows whose outcome it changed."""

    def result(self, attrs: dict[str, Any], *, complete: bool) -> pd.DataFrame:
        """The result frame, with the engine's ``attrs`` and the adapter's own."""

    def rate_limited(self) -> int:
        """429 answers the client met so far."""

    def request_failed(self, exc: RecocoraError) -> str:
        """The message for rows whose request ended with ``exc``."""


_INTERRUPTED = (
    "interrupted while the request carrying this row was in flight: whether it was applied "
    "is unknown, and re-sending it is safe"
)


def execute(adapter: Adapter, options: RunOptions) -> pd.DataFrame:
    """Run ``adapter``'s batches under ``options``; the result frame (see the module)."""
    limit = FailureLimit(options.max_failed)
    base_url, key_label, state = adapter.journal_target()
    book = open_journal(options.journal, api=adapter.api, base_url=base_url,
                        key_label=key_label, state=state)
    try:
        return _Run(adapter, book, options, limit).go()
    finally:
        if book is not None:
            book.close()


def preview(adapter: Adapter, options: RunOptions, attrs: Mapping[str, Any]) -> pd.DataFrame:
    """Work out ``adapter``'s outcome without writing: no journal, no failure limit. Its
    ``send`` answers locally (or from reads); ``attrs`` are added to the result."""
    run = _Run(adapter, None, options, FailureLimit(None))
    run.attrs.update(attrs)
    return run.go()


class _Run:
    """One run of one adapter: the loop, its counters and its listeners."""

    def __init__(self, adapter: Adapter, book: Store | None, options: RunOptions,
                 limit: FailureLimit) -> None:
        self.adapter, self.book, self.options, self.limit = adapter, book, options, limit
        self.started = time.monotonic()
        self.attrs: dict[str, Any] = {"api": adapter.api, "dry_run": adapter.dry_run,
                                      "requests": 0, "rows_sent": 0}
        self.run_id = 0
        self.failed = self.done = self.total = 0
        self.throttled_at_start = adapter.rate_limited()
        self.listeners: list[Listener] = []
        if options.progress:
            self.listeners.append(TextBar())
        if options.on_progress is not None:
            self.listeners.append(options.on_progress)
        self.finished = False

    # -- the run ----------------------------------------------------------------------------

    def go(self) -> pd.DataFrame:
        ad, book = self.adapter, self.book
        if book is not None:
            if not self.options.force:
                ad.skip_acknowledged(book.applied())
            skipped = ad.counts().get("skipped", 0)
            self.attrs.update(journal=book.location, skipped=skipped)
            self.run_id = self.attrs["run"] = book.begin_run(
                dry_run=ad.dry_run, rows=ad.rows, to_send=ad.to_send(), skipped=skipped,
            )
        self.total = ad.to_send()
        try:
            wait = ad.wait_time()  # first: it reads how many runs share the key
            self._emit(eta=ad.pace().seconds(self.total, wait=wait))
            settled, record = ad.prepare()
            if record is not None:
                with deferred_interrupt():
                    self._record(record)
            if settled:  # the reads settled these: they will not be sent
                self.total -= settled
                self._emit()
            self._send_all()
            changed = ad.finish()
            if changed is not None:
                with deferred_interrupt():
                    # A row the read-back found wrong must be sent again next time.
                    self._record(changed)
        except KeyboardInterrupt:
            result = self._finish("interrupted", complete=False)
            raise RunInterrupted(self._interrupted_message(), result) from None
        except RecocoraError as exc:
            exc.result = self._finish(f"stopped: {type(exc).__name__}", complete=False)
            raise
        except BaseException:
            if not self.finished:  # an unexpected error: close the bar all the same
                self._emit(finished=True)
            raise
        return self._finish("completed", complete=True)

    def _send_all(self) -> None:
        """Send every batch, up to ``concurrency`` at once, merging answers as they arrive."""
        ad = self.adapter
        width = max(1, ad.concurrency)
        pool: ThreadPoolExecutor | _Inline = (
            ThreadPoolExecutor(max_workers=width) if width > 1 else _Inline()
        )
        batches = ad.batches(hashes=self.book is not None)
        pending: dict[Future[dict[str, Any]], Batch] = {}
        error: RecocoraError | None = None
        leaving: Batch | None = None
        more = True
        # Not a with-block: after a Ctrl-C the requests in flight must not be waited for.
        try:
            while True:
                while error is None and more and len(pending) < width:
                    leaving = next(batches, None)
                    if leaving is None:
                        more = False
                        break
                    pending[pool.submit(ad.send, leaving)] = leaving
                    leaving = None
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: pending[f].number):
                    # Popped, merged and recorded as one step: a Ctrl-C waits for all three.
                    with deferred_interrupt():
                        stop = self._settle(future, pending.pop(future))
                    error = error or stop
        except KeyboardInterrupt:
            with deferred_interrupt():
                for future, batch in pending.items():
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._settle(future, batch)
                    else:
                        ad.unknown(batch, _INTERRUPTED)
                if leaving is not None:
                    ad.unknown(leaving, _INTERRUPTED)
                ad.unsent("not sent: the run was interrupted")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            ad.unsent("not sent: the run stopped after an error")
            raise
        pool.shutdown(wait=True)
        if error is not None:
            ad.unsent("not sent: the run stopped after an error")
            raise error

    def _settle(self, future: Future[dict[str, Any]], batch: Batch) -> RecocoraError | None:
        """Merge and record one finished request; the error that must stop the run, if any."""
        ad = self.adapter
        try:
            answer = future.result()
        except RecocoraError as exc:
            ad.unknown(batch, ad.request_failed(exc))
            return exc
        try:
            ad.merge(batch, answer)
        except RecocoraError as exc:  # the answer needed a read-back, and it failed
            return exc
        sent = len(batch.positions)
        self.attrs["requests"] += 1
        self.attrs["rows_sent"] += sent
        self._record(batch)
        self.done += sent
        self._emit()
        self.failed += ad.failures(batch)
        if self.limit.exceeded(self.failed, self.attrs["rows_sent"]):
            return TooManyFailedError(
                f"Stopped after {self.attrs['requests']} request(s): {self.failed:,} of the "
                f"{self.attrs['rows_sent']:,} rows sent came back {ad.failing}, more than "
                f"{self.limit.describe()}. {ad.failing_hint} The rows not sent yet are "
                f"'not_sent' in .result; {ad.resend_hint} sends them."
            )
        return None

    # -- journal, events, result ------------------------------------------------------------

    def _record(self, batch: Batch) -> None:
        if self.book is None or not len(batch.positions):
            return
        self.book.record(self.adapter.acks(batch), run=self.run_id,
                         dry_run=self.adapter.dry_run,
                         batch=batch.number if batch.number >= 0 else None)

    def _emit(self, *, eta: float | None = None, finished: bool = False) -> None:
        if not self.listeners:
            return
        ad = self.adapter
        # Before the first answer the wait for the first slot counts; reading it also reads
        # how many runs share the key, which the pace then counts with.
        wait = ad.wait_time() if eta is None and not finished and not self.done else None
        pace = ad.pace()
        if eta is None and not finished:
            left = max(0, self.total - self.done)
            eta = pace.seconds(left, wait=pace.gap if wait is None else wait)
        event = Progress(
            api=ad.api, label=ad.label, rows_total=self.total, rows_done=self.done,
            counts=ad.counts(), requests=self.attrs["requests"],
            rate_limited=ad.rate_limited() - self.throttled_at_start,
            eta_s=0.0 if finished else eta, finished=finished, sharing=pace.sharing,
        )
        for listen in self.listeners:
            listen(event)

    def _finish(self, how: str, *, complete: bool) -> pd.DataFrame:
        self.attrs["duration_s"] = round(time.monotonic() - self.started, 3)
        if self.book is not None:
            with contextlib.suppress(JournalError):  # already failing: keep that error
                self.book.end_run(self.run_id, how)
        result = self.adapter.result(dict(self.attrs), complete=complete)
        self.finished = True
        self._emit(finished=True)
        return result

    def _interrupted_message(self) -> str:
        ad = self.adapter
        text = (
            f"{ad.label} interrupted after {self.attrs['requests']} answered request(s): "
            f"{self.attrs['rows_sent']:,} rows acknowledged, "
            f"{ad.counts().get('not_sent', 0):,} not sent. The partial result is in .result."
        )
        if self.book is not None:
            return text + (f" Every answer is in the journal {self.book.location!r}: run the "
                           "same call again to send only the rest.")
        return text + f" {ad.resend_hint.replace('exc.result', '<that result>')} sends only " \
                      "the rest."


class _Inline:
    """An executor that runs each call at once in the calling thread: one request at a time,
    interruptible by Ctrl-C like any call."""

    def submit(self, fn: Callable[[Batch], dict[str, Any]],
               batch: Batch) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        try:
            future.set_result(fn(batch))
        except Exception as exc:  # handed over as a pool's future would
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


class FailureLimit:
    """``max_failed``: ``None`` never stops; an ``int`` is a count of failed rows; a ``float``
    in [0, 1] a fraction of the rows sent so far. The run stops as soon as it is exceeded.

    >>> FailureLimit(0.1).exceeded(failed=11, sent=100), FailureLimit(20).exceeded(11, 100)
    (True, False)
    """

    def __init__(self, max_failed: int | float | None) -> None:
        if max_failed is not None and (
            isinstance(max_failed, bool) or not isinstance(max_failed, (int, float))
        ):
            raise TypeError(
                "max_failed must be None, a count (int) or a fraction of the rows sent "
                f"(float between 0 and 1), not {type(max_failed).__name__}"
            )
        if isinstance(max_failed, int) and max_failed < 0:
            raise ValueError(f"max_failed must be at least 0, not {max_failed}")
        if isinstance(max_failed, float) and not 0.0 <= max_failed <= 1.0:
            raise ValueError(
                f"max_failed={max_failed} as a float is a fraction of the rows sent and must "
                "be between 0 and 1; pass an int for a count of rows"
            )
        self.max_failed = max_failed

    def exceeded(self, failed: int, sent: int) -> bool:
        limit = self.max_failed
        if limit is None:
            return False
        if isinstance(limit, float):
            return failed > limit * sent
        return failed > limit

    def describe(self) -> str:
        limit = self.max_failed
        if isinstance(limit, float):
            return f"max_failed={limit:g} ({limit:.1%} of the rows sent)"
        return f"max_failed={limit}"


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block has finished.

    Wraps the few milliseconds between an answer's arrival and its rows being merged and
    committed to the journal, so an interrupt there cannot lose an answer that arrived. Only
    the main thread receives signals; elsewhere, or when Python does not own the SIGINT
    handler, the block runs as is.

    >>> with deferred_interrupt():
    ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)
