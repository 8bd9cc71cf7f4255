"""Every error recocora raises derives from :class:`RecocoraError`.

::

    RecocoraError
    ├── ConfigError(ValueError)          a malformed key, a missing key, an unsafe base URL
    ├── ValidationError(ValueError)      rows that fail the schema; ``.failure_cases`` frame
    ├── ApiError                         the server refused a request; ``.status``, ``.code``
    │   ├── AuthError                    401-style answers: wrong key, bad signature (not retried)
    │   ├── ClockSkewError               timestamp outside the window even after re-syncing
    │   ├── RateLimitError               429 after every retry was spent
    │   ├── RequestRejectedError         4xx about the request itself (body, limits, method)
    │   ├── NotFoundError                404 for a single resource
    │   └── ServerError                  5xx after every retry was spent
    ├── TransportError(ConnectionError)  no answer: dropped connections, timeouts
    │   └── UnreachableError             nothing reached the server: refused, unknown host
    ├── TooManyFailedError               more rows failed than max_failed allows
    ├── JournalError                     the journal file could not be read or written
    ├── StateError                       the shared state database cannot be reached
    └── RunError                         a background run failed, died or is not known

    RunInterrupted(KeyboardInterrupt)    Ctrl-C stopped a run; ``.result`` is the partial
                                         result (deliberately not an Exception,
                                         so ``except Exception`` never swallows Ctrl-C)

Errors raised mid-run carry the partial result frame in ``.result`` (rows already
acknowledged keep their status, the rest are ``not_sent``), so nothing is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ApiError",
    "AuthError",
    "ClockSkewError",
    "ConfigError",
    "JournalError",
    "NotFoundError",
    "RateLimitError",
    "RecocoraError",
    "RequestRejectedError",
    "RunError",
    "RunInterrupted",
    "ServerError",
    "StateError",
    "TooManyFailedError",
    "TransportError",
    "UnreachableError",
    "ValidationError",
]


class RecocoraError(Exception):
    """Root of every error recocora raises.

    ``result`` holds the partial result frame when the error stopped a bulk run.
    """

    result: pd.DataFrame | None = None


class ConfigError(RecocoraError, ValueError):
    """The client cannot be built as asked (malformed key, missing key, unsafe URL)."""


class ValidationError(RecocoraError, ValueError):
    """Rows failed validation; nothing was sent.

    ``failure_cases`` is a DataFrame with columns ``index``, ``column``, ``check``,
    ``value`` naming every failing cell.
    """

    def __init__(self, message: str, failure_cases: pd.DataFrame) -> None:
        super().__init__(message)
        self.failure_cases = failure_cases


class ApiError(RecocoraError):
    """The server answered a request with an error.

    ``status`` is the HTTP status, ``code`` the service's error code (``None`` when the
    answer carried none), ``message`` its human text and ``details`` any structured detail.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        parts = [p for p in (f"HTTP {self.status}" if self.status else None, self.code) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        return f"{prefix}{self.message}"


class AuthError(ApiError):
    """The key was refused (wrong key, bad signature, missing headers). Never retried."""


class ClockSkewError(AuthError):
    """The request timestamp stayed outside the server's window after one re-sync."""


class RateLimitError(ApiError):
    """The server kept answering 429 after every retry was spent."""


class RequestRejectedError(ApiError):
    """The server rejected the request itself (malformed body, limits, method)."""


class NotFoundError(ApiError):
    """A single resource (one account) does not exist."""


class ServerError(ApiError):
    """The server kept failing (5xx) after every retry was spent."""


class TransportError(RecocoraError, ConnectionError):
    """No answer came back (dropped connection, timeout) after every retry was spent."""


class UnreachableError(TransportError):
    """The server could not be reached at all (connection refused, unknown host, no
    connection made in time), after a few quick attempts. Nothing was sent, so nothing is
    unknown: the message names the host and port and what to check."""


class JournalError(RecocoraError):
    """The journal file could not be read or written (disk full, locked for too long,
    removed). What was not written was not recorded: at worst those rows are sent again."""


class StateError(RecocoraError):
    """The shared state database (``RECOCORA_STATE_URL``) could not be reached for a call
    that does not wait for it (listing runs, attaching to one). Sending never raises this:
    it pauses until the database answers again, and nothing is lost."""


class TooManyFailedError(RecocoraError):
    """More rows failed than ``max_failed`` allows; the run stopped, ``.result`` holds the
    partial result (the rows not sent yet are ``not_sent``)."""


class RunError(RecocoraError):
    """A background run (:class:`recocora.Run`) ended without the result asked for: it
    failed, its worker died (``interrupted``: ``run.resume()`` finishes it), it is still
    running, or no run has that id. ``state`` is the run's state; ``result`` the partial
    result frame when there is one.

    >>> try:                                                    # doctest: +SKIP
    ...     res = run.wait()
    ... except RunError as exc:
    ...     res = exc.result
    """

    def __init__(self, message: str, *, state: str | None = None,
                 result: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.state = state
        self.result = result


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped a bulk run; ``.result`` is the partial result frame.

    Rows whose answer arrived keep their status (and are in the journal, if one was used);
    the rest are ``not_sent``. It is a ``KeyboardInterrupt``, not an ``Exception``, so an
    ``except Exception`` in a loop around the call never swallows a Ctrl-C.

    >>> try:                                                    # doctest: +SKIP
    ...     res = df.cora.upsert(client=cora, journal="backfill.db")
    ... except RunInterrupted as stop:
    ...     res = stop.result
    """

    def __init__(self, message: str, result: pd.DataFrame) -> None:
        super().__init__(message)
        self.result = result
