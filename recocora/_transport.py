"""HTTP for both clients: the only module that imports ``requests``.

One :class:`Transport` per client: a pooled session, timeouts, retries with capped
exponential backoff and jitter, 429 handling, and JSON decoding that survives bodies that
are not JSON. Each attempt is prepared, authenticated (signed) and sent afresh, so a retry
never reuses a stale timestamp or signature.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, NewConnectionError

from . import __version__
from .errors import ApiError, RateLimitError, ServerError, TransportError, UnreachableError

__all__ = ["Reply", "RetryPolicy", "Transport", "failed_request_note", "never_sent",
           "parse_retry_after"]

log = logging.getLogger("recocora")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.

    ``max_attempts`` bounds attempts that met a 5xx, a timeout or a dropped connection;
    ``max_rate_limited`` bounds 429 answers (each waits as the server asks). Backoff before
    attempt *n* is ``min(cap, base·2ⁿ⁻¹)``, half fixed and half random (jitter), so clients
    that failed together do not retry together.

    ``max_unreachable`` bounds attempts that never reached the server (connection refused,
    unknown host, connecting timed out): they are retried briefly, each wait at most
    ``unreachable_cap`` seconds, and no new attempt starts once ``unreachable_budget``
    seconds went by (connecting may time out), because a server that is down or a mistyped
    URL does not mend in a rate window, and the user should hear so in seconds.

    >>> RetryPolicy(backoff_base=0.5).backoff(1) <= 0.5
    True
    """

    max_attempts: int = 6
    max_rate_limited: int = 30
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_unreachable: int = 4
    unreachable_cap: float = 2.0
    unreachable_budget: float = 15.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))

    def unreachable_backoff(self, attempt: int) -> float:
        """The wait after the ``attempt``-th attempt that never reached the server."""
        return min(self.backoff(attempt), self.unreachable_cap)


@dataclass(frozen=True)
class Reply:
    """A decoded answer: HTTP status, headers, parsed JSON (``None`` if it was not JSON)."""

    status: int
    headers: Mapping[str, str]
    data: Any
    text: str
    attempts: int
    received_at: float  # time.time() when the answer arrived


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


#: Why an attempt never reached the server (see :func:`never_sent`).
REFUSED = "connection refused"
UNKNOWN_HOST = "unknown host"
CONNECT_FAILED = "could not connect"
CONNECT_TIMED_OUT = "connecting timed out"
CERTIFICATE = "its TLS certificate failed verification"


def never_sent(exc: BaseException) -> str | None:
    """Why ``exc`` (from ``requests``) means the request never reached the server: refused,
    unknown host, or no connection made in time; ``None`` when it may have been sent (the
    connection dropped after it left, or the answer timed out)."""
    if isinstance(exc, requests.ConnectTimeout):
        return CONNECT_TIMED_OUT
    if not isinstance(exc, requests.ConnectionError):
        return None
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NameResolutionError):
        return UNKNOWN_HOST
    if isinstance(reason, NewConnectionError):
        return REFUSED if "refused" in str(reason).lower() else CONNECT_FAILED
    # Verified in the handshake, before a byte of the request is written.
    if isinstance(exc, requests.exceptions.SSLError) and (
        "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc)
    ):
        return CERTIFICATE
    return None


def failed_request_note(exc: BaseException, service: str) -> str:
    """What a row learns when the request carrying it ended in ``exc``: nothing was sent
    when the server could not be reached; otherwise whether it was applied is unknown.

    >>> failed_request_note(UnreachableError("Cannot reach Cora"), "Cora")
    'not sent: Cannot reach Cora'
    """
    if isinstance(exc, UnreachableError):
        return f"not sent: {exc}"
    return (f"the request carrying this row failed ({exc}); whether {service} applied it "
            "is unknown, and re-sending it is safe")


class Transport:
    """Base of the Cora and Recotap transports; subclasses add auth and error mapping."""

    service = "API"
    #: Where the user sets the base URL (named in the message when it cannot be reached).
    base_url_setting = "the base URL"
    #: Seconds to open a connection: a reachable server accepts in well under a second.
    CONNECT_TIMEOUT = 10.0

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retry: RetryPolicy | None = None,
        pool_size: int = 4,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or netrc credentials picked up silently
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"User-Agent": f"recocora/{__version__}", "Accept": "application/json"}
        )
        self._sleep: Callable[[float], None] = time.sleep
        #: Set by :meth:`close`; whoever holds the client can tell it was closed.
        self.closed = False
        #: 429 answers met so far (each one waited out and retried), for progress reports.
        self.rate_limited = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def close(self) -> None:
        self.session.close()
        self.closed = True

    # -- hooks -----------------------------------------------------------------------------

    def auth_headers(self, method: str, path_url: str, body: bytes) -> dict[str, str]:
        """Headers that authenticate one attempt (called at the instant it is sent)."""
        return {}

    def error_for(self, reply: Reply, what: str) -> ApiError:
        """Turn a non-2xx answer into a typed error."""
        return ApiError(f"{self.service} answered HTTP {reply.status} to {what}",
                        status=reply.status)

    def retry_once_after(self, reply: Reply) -> bool:
        """Whether a refused answer can be fixed by the client and tried once more."""
        return False

    def rate_limit_wait(self, retry_after: float | None, attempt: int) -> float:
        """Seconds to wait after a 429 without a usable ``Retry-After``."""
        return retry_after if retry_after is not None else self.retry.backoff(attempt)

    # -- the request loop ------------------------------------------------------------------

    def url(self, path: str, query: Sequence[tuple[str, str]] | None = None) -> str:
        url = self.base_url + path
        if query:
            url += "?" + urlencode(list(query), quote_via=quote, safe=",")
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        before_attempt: Callable[[], object] | None = None,
        on_rate_limited: Callable[[float], None] | None = None,
        on_connection_lost: Callable[[], object] | None = None,
        on_not_sent: Callable[[], object] | None = None,
        on_time: Callable[[], bool] | None = None,
    ) -> Reply:
        """Send until a 2xx answer, a final error, or the retry budget runs out.

        ``before_attempt`` runs before every attempt (the rate limiter);
        ``on_rate_limited(seconds)`` replaces sleeping after a 429 (a limiter defers instead);
        ``on_connection_lost()`` runs when an attempt's connection failed, so the next one
        opens a new connection (the limiter leaves it room); ``on_not_sent()`` runs when an
        attempt never reached the server (refused, unknown host), so a slot booked for it
        can be given back. Those are retried briefly (:class:`RetryPolicy`), then raise
        :class:`~recocora.errors.UnreachableError`. ``on_time()`` runs last before the
        request is written: ``False`` (its turn passed while it was prepared) writes nothing
        and goes back to ``before_attempt``.
        """
        url = self.url(path, query)
        what = f"{method} {urlsplit(url).path}"
        headers = {"Content-Type": "application/json"} if body is not None else {}
        failures = limited = unreachable = 0
        fixed = False
        first = time.monotonic()
        while True:
            if before_attempt is not None:
                before_attempt()
            prepared = self.session.prepare_request(
                requests.Request(method, url, data=body, headers=headers)
            )
            prepared.headers.update(
                self.auth_headers(method, prepared.path_url or "/", body or b"")
            )
            if on_time is not None and not on_time():
                continue
            started = time.monotonic()
            attempt = failures + limited + unreachable + 1
            try:
                raw = self.session.send(
                    prepared, timeout=(min(self.timeout, self.CONNECT_TIMEOUT), self.timeout),
                    allow_redirects=False,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                # A connection dropped in the middle of the answer's body.
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as exc:
                why = never_sent(exc)
                if why is not None:
                    unreachable += 1
                    log.debug("%s %s: %s (attempt %d)", self.service, what, why, attempt)
                    if on_not_sent is not None:
                        on_not_sent()
                    if (unreachable >= self.retry.max_unreachable
                            or time.monotonic() - first >= self.retry.unreachable_budget):
                        reach = self.unreachable_message(
                            why, unreachable, time.monotonic() - first, sent=failures > 0
                        )
                        if failures:  # an earlier attempt left: its fate is unknown
                            raise TransportError(
                                self._lost_message(method, what, "connection lost", failures)
                                + " Then: " + reach
                            ) from None
                        raise UnreachableError(reach) from None
                    self._sleep(self.retry.unreachable_backoff(unreachable))
                    continue
                failures += 1
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection lost"
                log.debug("%s %s: %s (attempt %d)", self.service, what, kind, attempt)
                if on_connection_lost is not None:
                    on_connection_lost()
                if failures >= self.retry.max_attempts:
                    raise TransportError(self._lost_message(method, what, kind, failures)) \
                        from None
                self._sleep(self.retry.backoff(failures))
                continue
            reply = self._decode(raw, attempt)
            log.debug("%s %s -> %d in %.3fs (attempt %d)", self.service, what, reply.status,
                      time.monotonic() - started, attempt)
            if 200 <= reply.status < 300:
                return reply
            if reply.status == 429:
                limited += 1
                self.rate_limited += 1
                if limited >= self.retry.max_rate_limited:
                    raise self._final(RateLimitError, reply, what, limited)
                wait = self.rate_limit_wait(
                    parse_retry_after(reply.headers.get("Retry-After")), limited
                )
                if on_rate_limited is not None:
                    on_rate_limited(wait)
                else:
                    self._sleep(wait)
                continue
            if reply.status >= 500 or reply.status == 408:
                failures += 1
                if failures >= self.retry.max_attempts:
                    raise self._final(ServerError, reply, what, failures)
                self._sleep(self.retry.backoff(failures))
                continue
            if not fixed and self.retry_once_after(reply):
                fixed = True
                continue
            raise self.error_for(reply, what)

    def unreachable_message(self, why: str, attempts: int, seconds: float, *,
                            sent: bool = False) -> str:
        """One line: which host and port could not be reached, why, and what to check;
        ``sent`` when an earlier attempt did leave (then it cannot say nothing was sent)."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or parts.netloc
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if why == UNKNOWN_HOST:
            check = (f"check the host name in the base URL {self.base_url!r} "
                     f"({self.base_url_setting} or base_url=) and this machine's network/DNS")
        elif why == CERTIFICATE:
            check = (f"check the host name in the base URL {self.base_url!r} "
                     f"({self.base_url_setting} or base_url=), and any proxy that intercepts "
                     "TLS on this network")
        elif why == REFUSED:
            check = (f"check that the server is running and listening there, and that the "
                     f"base URL {self.base_url!r} ({self.base_url_setting} or base_url=) is "
                     "the right one")
        else:
            check = (f"check the base URL {self.base_url!r} ({self.base_url_setting} or "
                     "base_url=), the network, and any firewall, proxy or VPN in the way")
        nothing = "" if sent else " Nothing was sent."
        return (f"Cannot reach {self.service} at {host}:{port} ({why}; {attempts} attempts "
                f"in {seconds:.1f} s).{nothing} {check[0].upper()}{check[1:]}.")

    def _lost_message(self, method: str, what: str, kind: str, failures: int) -> str:
        text = f"No answer from {self.service} to {what} after {failures} attempts ({kind})."
        if method in ("GET", "HEAD"):
            return text + " A read changes nothing: try again once the service answers."
        return (text + " Whether it was applied is unknown; re-running is safe because the "
                "write is idempotent.")

    def _final(self, kind: type[ApiError], reply: Reply, what: str, n: int) -> ApiError:
        base = self.error_for(reply, what)
        return kind(
            f"{base.message} (gave up after {n} attempts)",
            status=reply.status, code=base.code, details=base.details,
        )

    @staticmethod
    def _decode(raw: requests.Response, attempt: int) -> Reply:
        content = raw.content
        data: Any = None
        if content:
            try:
                data = orjson.loads(content)
            except orjson.JSONDecodeError:
                data = None
        text = "" if data is not None else content[:500].decode("utf-8", "replace")
        return Reply(raw.status_code, raw.headers, data, text, attempt, time.time())
