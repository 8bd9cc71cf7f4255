"""Request spacing per API key, shared by every client object and every process using it.

Cora allows one bulk request every 20 seconds per key. Two ``CoraClient`` objects built from
the same key (a notebook cell run twice) share one :class:`SpacingLimiter`; two processes
(two notebooks, a notebook and the CLI) share its next free slot through a small file in the
cache directory (:func:`recocora._config.cache_dir`), locked with ``flock`` while a slot is
booked. So none of them can make another draw a 429.

The file holds one number, the next free slot on the system's monotonic clock (one clock for
every process on the machine, which wall-clock changes do not move); no key, no secret. Its
name is a digest of the base URL and the key id. Where the file cannot be used (a read-only
cache directory, Windows) the limiter falls back to spacing within the process, and says so
in a DEBUG log line.

Machines that share a key share a state database instead (a client's ``state=`` or
``RECOCORA_STATE_URL``): :func:`limiter_for` then gives the key's
:class:`~recocora._state._pg_limiter.PgLimiter`, which books every turn on the database's clock.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ._config import cache_dir
from ._limiter import Limiter, scope_digest
from ._state._pg_limiter import PgLimiter

if sys.platform != "win32":
    import fcntl

__all__ = ["SpacingLimiter", "limiter_for", "slot_file_for"]

log = logging.getLogger("recocora")

#: A shared slot further ahead than this (beyond the interval) is taken for a booking from
#: before the machine restarted (its monotonic clock starts again), and ignored: no
#: Retry-After is ever that long.
MAX_DEFER = 900.0
_PACK = struct.Struct("<d")


class _SlotFile:
    """The next free slot in monotonic-clock seconds, in an 8-byte file locked with
    ``flock``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self.usable = sys.platform != "win32"

    def _descriptor(self) -> int | None:
        # After a fork the inherited descriptor shares its lock with the parent: open anew.
        if self._fd is not None and self._pid == os.getpid():
            return self._fd
        if sys.platform == "win32":
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self.usable = False
            log.debug("rate limit shared by this process only: cannot use %s (%s)",
                      self.path, exc.strerror or exc)
            return None
        self._fd, self._pid = fd, os.getpid()
        return fd

    @contextmanager
    def held(self) -> Iterator[int | None]:
        """The locked descriptor, or ``None`` when the file cannot be used."""
        if sys.platform == "win32" or not self.usable:
            yield None
            return
        fd = self._descriptor()
        if fd is None:
            yield None
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def read(fd: int) -> float:
        data = os.pread(fd, _PACK.size, 0)
        return float(_PACK.unpack(data)[0]) if len(data) == _PACK.size else 0.0

    @staticmethod
    def write(fd: int, value: float) -> None:
        os.pwrite(fd, _PACK.pack(value), 0)


class SpacingLimiter(Limiter):
    """At most one request per ``interval`` seconds.

    ``acquire()`` blocks until a slot is free and books it; ``defer(s)`` pushes the next slot
    at least ``s`` seconds out (a 429's ``Retry-After``).

    With ``shared`` (a file path), every limiter on that file, in any process on this
    machine, books from one schedule. A zero ``interval`` never touches the file.

    >>> lim = SpacingLimiter(0.0)
    >>> lim.acquire()
    0.0
    """

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        shared: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(interval)
        self._file = _SlotFile(Path(shared)) if shared is not None else None
        # CLOCK_MONOTONIC is one clock for all processes of a machine (Linux, macOS).
        self._clock = clock or time.monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0
        self._cold = True
        self._learned = 0.0  # extra margin learned from 429s
        self._foreign_at = -math.inf  # when another limiter's booking was last seen
        self._booked_at = -math.inf  # when, and by which thread, this limiter last booked
        self._booked_by = 0
        self._booking: tuple[float, float] | None = None  # (slot booked, slot before it)

    @property
    def shared_path(self) -> Path | None:
        """The file other processes share the schedule through (``None``: this process)."""
        return self._file.path if self._file is not None else None

    def __repr__(self) -> str:
        where = f", shared={str(self._file.path)!r}" if self._file is not None else ""
        return f"SpacingLimiter(interval={self.interval:g}{where})"

    def margin(self) -> float:
        """Slack added to each gap: :meth:`base_room` plus what 429s taught this limiter
        (see :meth:`defer` and :meth:`settled`)."""
        if not self.interval:
            return 0.0
        return self.base_room() + self._learned

    def expected_gap(self) -> float:
        """Seconds between two requests' bookings as things stand: the interval, the room,
        and the extra room while another process shares the key. What an ETA counts on."""
        if not self.interval:
            return 0.0
        gap = self.interval + self.margin()
        if self._sharing(self._clock()):
            gap += self._foreign_extra()
        return gap

    def new_connection(self) -> None:
        """The next request opens a new connection (a new client was built for this key,
        or the last attempt's connection was lost): the slot after it leaves the extra
        room for that."""
        self._cold = True

    def _foreign_extra(self) -> float:
        """More room around slots other limiters (processes) book: their delay between
        booking and sending is not this process's, and scheduling across processes on a
        busy machine adds milliseconds."""
        return self.interval * 0.005 + 0.005

    def _sharing(self, now: float) -> bool:
        """Whether another limiter booked a slot recently (within a minute or two
        intervals): while it does, every booking leaves it the extra room."""
        return now - self._foreign_at < max(60.0, 2 * self.interval)

    def _gap(self, now: float) -> float:
        if not self.interval:
            return 0.0
        gap = self.interval + self.margin()
        if self._sharing(now):
            gap += self._foreign_extra()
        if self._cold:
            self._cold = False
            gap += self.cold_extra()
        return gap

    @contextmanager
    def _schedule(self) -> Iterator[int | None]:
        with self._lock:
            if self._file is None or self.interval <= 0:
                yield None
                return
            with self._file.held() as fd:
                yield fd

    def _shared_next(self, fd: int | None, now: float, *, meet: bool = False) -> float:
        """The next free slot. With ``meet``, a first sight of another limiter's booking is
        made known to it through the file (see below)."""
        if fd is None:
            return self._next
        stored = _SlotFile.read(fd)
        if stored > now + self.interval + self.margin() + MAX_DEFER:
            stored = 0.0  # from before a restart: the booking is meaningless now
        if stored <= self._next or stored <= now:
            # Ours, or another's that is already free: its request left an interval ago.
            return max(stored, self._next)
        # Booked (or deferred) by another limiter since this one's last booking: a process
        # whose delay between booking and sending is not ours, so the slot after its
        # request needs the extra room. Both must know it, or the one that keeps booking
        # would always find its own slot earlier and the other would never get one. So at
        # first contact the waiter moves the shared slot itself; the other limiter then
        # sees a slot it did not book, and from then on both book with the room and wait
        # for the same slot.
        if self._sharing(now):
            if meet:
                self._foreign_at = now
            return stored
        moved = stored + self._foreign_extra()
        if meet:
            self._foreign_at = now
            _SlotFile.write(fd, moved)
        return moved

    def wait_time(self) -> float:
        """Seconds until the next slot, without booking it."""
        with self._schedule() as fd:
            now = self._clock()
            return max(0.0, self._shared_next(fd, now) - now)

    def acquire(self) -> float:
        """Wait for the next slot and book it. Returns the seconds waited.

        A wait long enough for it starts with a garbage collection
        (:meth:`~recocora._limiter.Limiter.collect_before`), unless another thread's booking
        is under a second old: its request may still be on its way.
        """
        began: float | None = None
        collected = False
        while True:
            with self._schedule() as fd:
                now = self._clock()
                if began is None:
                    began = now
                following = self._shared_next(fd, now, meet=True)
                if now >= following:
                    self._next = now + self._gap(now)
                    self._booking = (self._next, following)
                    self._booked_at, self._booked_by = now, threading.get_ident()
                    if fd is not None:
                        _SlotFile.write(fd, self._next)
                    return max(0.0, now - began)
                delay = following - now
                others_sending = (self._booked_by != threading.get_ident()
                                  and now - self._booked_at < 1.0)
            if not collected and self.collect_before(delay, busy=others_sending):
                collected = True
                continue  # the clock moved on while collecting
            self._sleep(delay)

    def release(self) -> None:
        """The request of the last booking never reached the server (connection refused,
        unknown host): give its slot back, so the next attempt does not wait an interval
        for a request that was never made. Only while no later booking or deferral came
        after it; the next attempt opens a new connection (:meth:`new_connection`).

        >>> lim = SpacingLimiter(20.0)
        >>> lim.acquire(), lim.release(), lim.wait_time()
        (0.0, None, 0.0)
        """
        with self._schedule() as fd:
            self._cold = True
            booking, self._booking = self._booking, None
            if booking is None:
                return
            booked, before = booking
            current = _SlotFile.read(fd) if fd is not None else self._next
            if current != booked or self._next != booked:
                return
            self._next = before
            if fd is not None:
                _SlotFile.write(fd, before)

    def defer(self, seconds: float) -> None:
        """Make the next slot at least ``seconds`` from now (after a 429), and widen the
        margin: a 429 on a request this limiter let go means the delay between booking and
        the server's stamp is larger here than the room allowed for. The learned extra
        starts at half the base room and doubles with each 429, up to
        :attr:`LEARN_CAP_SHARE` of the interval + 20 ms; clean requests wear it down again
        (:meth:`settled`).

        >>> lim = SpacingLimiter(20.0)
        >>> lim.defer(1.0)
        >>> round(lim.margin(), 3)
        0.112
        """
        with self._schedule() as fd:
            now = self._clock()
            self._learned = self.widened(self._learned)
            self._next = max(self._shared_next(fd, now), now + seconds)
            if fd is not None:
                _SlotFile.write(fd, self._next)


    def settled(self) -> None:
        """A request this limiter let go was answered without a 429: the learned extra
        shrinks by :attr:`DECAY` (under a millisecond it is dropped)."""
        with self._lock:
            self._learned = self.decayed(self._learned)


_registry: dict[tuple[str | None, str, str], Limiter] = {}
_registry_lock = threading.Lock()


def slot_file_for(scope: str, key_id: str) -> Path:
    """The file through which processes share the schedule of one key at one service.

    Its name is a digest of ``scope`` (the base URL) and the key id: no secret goes in.

    >>> slot_file_for("https://api.corafone.com", "k1").suffix
    '.slot'
    """
    return cache_dir() / "ratelimit" / f"{scope_digest(scope, key_id)}.slot"


def limiter_for(scope: str, key_id: str, interval: float, *, state: str | None = None
                ) -> Limiter:
    """The limiter of one key at one service (``scope`` is the base URL), shared by every
    client in this process and, through :func:`slot_file_for`, with other processes; with
    ``state`` (a ``postgresql://`` URL), through that database with every machine
    (:class:`~recocora._state._pg_limiter.PgLimiter`). One limiter per state, service and
    key in a process.

    A client built later with another interval sets it for all in this process (the latest
    settings win, as when a notebook cell is edited and run again); the booked slot is kept.
    Each call is for a new client, whose first request opens a connection of its own: the
    limiter leaves the room for that again (:meth:`SpacingLimiter.new_connection`).
    """
    with _registry_lock:
        lim = _registry.get((state, scope, key_id))
        if lim is None:
            if state is not None:
                lim = PgLimiter(state, scope_digest(scope, key_id), interval)
            else:
                lim = SpacingLimiter(interval, shared=slot_file_for(scope, key_id))
            _registry[(state, scope, key_id)] = lim
        else:
            lim.interval = interval
            lim.new_connection()
        return lim
