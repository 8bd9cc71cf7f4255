"""What a Cora client asks of its rate limiter, and the arithmetic every limiter shares.

Two limiters implement :class:`Limiter`: :class:`recocora._ratelimit.SpacingLimiter` (one
machine: a slot file in the cache directory) and
:class:`recocora._state._pg_limiter.PgLimiter` (many machines: a row in a PostgreSQL state
database). The client and its transport call only the methods below, so either plugs in.
"""

from __future__ import annotations

import gc
import hashlib
import time
from abc import ABC, abstractmethod

__all__ = ["Limiter", "scope_digest"]


def scope_digest(scope: str, key_id: str) -> str:
    """What names one key at one service (``scope`` is the base URL) wherever a schedule is
    shared: a digest, so no URL, user info or key id is written anywhere.

    >>> len(scope_digest("https://api.corafone.com", "k1"))
    32
    """
    return hashlib.sha256(f"{scope}\n{key_id}".encode()).hexdigest()[:32]


class Limiter(ABC):
    """At most one request per :attr:`interval` seconds for one key.

    ``acquire()`` before each attempt; ``on_time()`` just before it is written (``False``:
    the slot was missed, acquire again); ``defer(s)`` after a 429; ``release()`` when the
    attempt never reached the server; ``settled()`` after an answer without a 429;
    ``new_connection()`` when the next attempt opens a connection.
    """

    #: Room left beyond the interval after each request. The server stamps a request some
    #: time after we let it go, and that delay varies: the network's jitter, and wherever the
    #: server stamps its window (on arrival, after reading the body, after auth, on another
    #: node). Tens of milliseconds on a real network, so an absolute figure, not a share of
    #: the interval: 75 ms is 0.4% of Cora's 20 s.
    ROOM = 0.075
    #: Under a one-second interval (sandboxes, tests) the room is at most this share of it.
    ROOM_SHARE = 0.08
    #: A 429 proves the room too small for this server: the learned extra starts at half the
    #: room and doubles with each further 429, up to this share of the interval + 20 ms.
    LEARN_CAP_SHARE = 0.05
    #: Each request answered without a 429 takes this share off the learned extra, so the
    #: room converges back on what the server needs instead of staying wide for good.
    DECAY = 0.05

    interval: float

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._collect_s = 0.0  # how long the last collection before a slot took

    def base_room(self) -> float:
        """The room every gap leaves beyond the interval before any 429 (:attr:`ROOM`)."""
        return min(self.ROOM, self.interval * self.ROOM_SHARE)

    def widened(self, learned: float) -> float:
        """The learned extra after one more 429 (see :attr:`LEARN_CAP_SHARE`)."""
        if self.interval <= 0:
            return learned
        first = max(self.base_room() / 2, 0.005)
        cap = self.interval * self.LEARN_CAP_SHARE + 0.02
        return min(max(2 * learned, first), cap)

    def decayed(self, learned: float) -> float:
        """The learned extra after one more clean answer (see :attr:`DECAY`); under a
        millisecond it is dropped."""
        learned *= 1.0 - self.DECAY
        return learned if learned >= 0.001 else 0.0

    def cold_extra(self) -> float:
        """More room after the first request of a new client: it opens the connection (TCP,
        and TLS in production), so it reaches the server later after its booking than the
        warm ones that follow. 2% of the interval, at most 250 ms (two round trips on a
        slow link)."""
        return min(self.interval * 0.02, 0.25)

    def collect_before(self, delay: float, *, busy: bool = False) -> bool:
        """Collect garbage now if the wait for a slot (``delay`` seconds) is long enough for
        it; whether it did. A full collection triggered by chance between the booking and the
        request reaching the server (tens of milliseconds with a big frame in memory, more
        in a busy notebook) would land the request late; collecting while idle anyway resets
        the collector's counters, so none is due during the send. Not while another thread
        of this process may be sending (``busy``), nor where collection is turned off."""
        if busy or not gc.isenabled() or delay <= max(0.05, 2 * self._collect_s):
            return False
        started = time.perf_counter()
        gc.collect()
        self._collect_s = time.perf_counter() - started
        return True

    def sharers(self) -> int:
        """Runs taking turns on this key lately, this one included (1: alone, as far as this
        limiter can tell)."""
        return 1

    def on_time(self) -> bool:
        """Whether the attempt booked by the last :meth:`acquire` of this thread may still be
        written; ``False`` sends nothing and the next ``acquire()`` books or confirms anew."""
        return True

    @abstractmethod
    def margin(self) -> float:
        """Slack added to each gap: :meth:`base_room` plus what 429s taught."""

    @abstractmethod
    def expected_gap(self) -> float:
        """Seconds between two of this run's requests as things stand: what an ETA counts
        on."""

    @abstractmethod
    def wait_time(self) -> float:
        """Seconds until the next slot, without booking it."""

    @abstractmethod
    def acquire(self) -> float:
        """Wait for the next slot and book it; the seconds waited."""

    @abstractmethod
    def defer(self, seconds: float) -> None:
        """Make the next slot at least ``seconds`` from now (after a 429), and widen the
        margin."""

    @abstractmethod
    def release(self) -> None:
        """The last booking's request never reached the server: give its slot back, unless
        a later booking came after it."""

    @abstractmethod
    def settled(self) -> None:
        """A request let go was answered without a 429: the learned extra shrinks."""

    @abstractmethod
    def new_connection(self) -> None:
        """The next request opens a new connection: leave it the extra room."""
