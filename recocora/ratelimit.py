"""Request spacing per API key, shared by every client object in the process.

Cora allows one bulk request every 20 seconds per key. Two ``CoraClient`` objects built from
the same key (a notebook cell run twice) share one :class:`SpacingLimiter`, so neither can
make the other draw a 429.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SpacingLimiter", "limiter_for"]


class SpacingLimiter:
    """At most one request per ``interval`` seconds.

    ``acquire()`` blocks until a slot is free and books it; ``defer(s)`` pushes the next slot
    at least ``s`` seconds out (a 429's ``Retry-After``).

    >>> lim = SpacingLimiter(0.0)
    >>> lim.acquire()
    0.0
    """

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def margin(self) -> float:
        """Slack added to each gap: the server stamps a request when it arrives, a little
        after we let it go, and a request that goes out faster than the one before it (a
        reused connection after a fresh one) must not land inside the window."""
        return self.interval * 0.005 + 0.005

    def wait_time(self) -> float:
        """Seconds until the next slot, without booking it."""
        with self._lock:
            return max(0.0, self._next - self._clock())

    def acquire(self) -> float:
        """Wait for the next slot and book it. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                if now >= self._next:
                    self._next = now + self.interval + self.margin() if self.interval else now
                    return waited
                delay = self._next - now
            self._sleep(delay)
            waited += delay

    def defer(self, seconds: float) -> None:
        """Make the next slot at least ``seconds`` from now (after a 429)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


_registry: dict[tuple[str, str], SpacingLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(scope: str, key_id: str, interval: float) -> SpacingLimiter:
    """The process-wide limiter of one key at one service (``scope`` is the base URL).

    A client built later with another interval sets it for all (the latest settings win, as
    when a notebook cell is edited and run again); the booked next slot is kept.
    """
    with _registry_lock:
        lim = _registry.get((scope, key_id))
        if lim is None:
            lim = _registry[(scope, key_id)] = SpacingLimiter(interval)
        else:
            lim.interval = interval
        return lim
