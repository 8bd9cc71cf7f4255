"""The rate limit of one key shared by every machine using it, through the state database.

A row of ``recocora_slots`` per key and service (``scope``: a digest of the base URL and the
key id) holds the key's next free slot on the database's clock (``clock_timestamp()``), the
one clock every slot is read on. No machine's wall clock is read, so clocks that differ
between machines change nothing; a machine's monotonic clock only measures how long to sleep.

A request's turn, in three steps:

1. **Book** (one transaction): the slot S is the row's next slot or the database's now,
   whichever is later, and the row moves on to S + gap (the interval, the room, what 429s
   taught every machine, and more before a new connection). The row's lock serves bookings
   first come, first served, and a thread books again only once its last turn was used or
   given up, so runs sharing a key take turns.
2. **Sleep** until S: the delay the database reported, measured on this machine's
   monotonic clock from the moment it was read (waking a transaction's length early).
3. **Confirm** (one transaction, on the row's lock): a 429 met by any machine meanwhile
   (the row's generation moved) books again. A wake-up later than the send deadline (a GC
   pause, a suspended laptop, a loaded machine) does not send in S: if no later turn was
   confirmed yet, this turn and every later one move on by the lateness (the row's
   ``shift``, which every booking reads its slot through), else it books again. Otherwise
   the turn is taken (``sent_slot``), the rest until S slept here, and the deadline checked
   once more just before the request is written (:meth:`PgLimiter.on_time`).

A sender is thus never earlier than its slot, nor later than the deadline (half the room, plus
its allowance) after it, and the next slot is a gap after it: no late sender lands in the next
booker's window. A late wake-up costs the key its lateness, not a turn.

The database's clock is known here only to within a round trip: the confirmation read it at
some moment between sending the read and its answer. A machine far from the database (a
managed database in another zone, a VPN) would thus never be sure enough to send within the
room alone, so each machine measures the database's round trip on every clock read, and its
turns leave an allowance for it (:meth:`PgLimiter.allowance`): booked into the gap after its
slot, and added to its deadline. A loopback database's allowance is well under a
millisecond; a machine 20 ms away leaves 40 ms per turn.

Fail closed: every transaction goes through ``Database.run(wait=True)``. While the database
cannot be reached, sending pauses (one WARNING says so) and resumes when it answers; nothing
falls back to a limiter of this machine. The tables hold digests, times and numbers: no URL,
no key, no secret.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from .._limiter import Limiter
from ._pg import Database, database, mask_url

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgLimiter", "count_sharers"]

log = logging.getLogger("recocora")

#: A run that booked no slot for this long beyond its turns is no longer counted as sharing
#: the key (it finished, or stopped between two requests for longer than that).
SHARING_SLACK_S = 2.0


def count_sharers(ages: Sequence[float], gap: float) -> int:
    """Runs taking turns on a key, this one included. ``ages`` are the seconds since each
    other run last booked, newest first; ``gap`` is one turn. Taking turns, the k-th most
    recent booking of another run is about k turns old; a run that stopped booking falls
    behind that, and is no longer counted, nor is any run older than it.

    >>> count_sharers([0.3, 0.6], 0.3), count_sharers([0.3, 600.0], 0.3), count_sharers([], 20)
    (3, 2, 1)
    """
    runs = 1
    for age in ages:
        if age > (runs + 1) * gap + SHARING_SLACK_S:
            break
        runs += 1
    return runs


@dataclass(frozen=True)
class _Ticket:
    """One booked turn. ``slot`` and ``next_slot`` are the database's own values (compared
    exactly when the turn is given back), as moved by the row's ``shift`` at ``shift``."""

    slot: datetime
    next_slot: datetime
    shift: timedelta
    gap: float
    generation: int
    #: Seconds from the database's now to the slot when last read, and this machine's
    #: monotonic clock just after it was read.
    delay: float
    read_at: float
    #: Once confirmed: the database's now minus the slot as the confirmation read it
    #: (negative: read before the slot), and this machine's monotonic clock just before that
    #: read was sent and just after its answer came. The database's now is thus at least
    #: ``slot + lead + (now - replied)`` and at most ``slot + lead + (now - checked)``.
    confirmed: bool = False
    lead: float = 0.0
    checked: float = 0.0
    replied: float = 0.0
    #: :meth:`PgLimiter.on_time` found it past the deadline: confirm again before sending.
    late: bool = False
    #: What the gap after the slot leaves for this machine's round trip to the database
    #: (:meth:`PgLimiter.allowance` when booked): its deadline may be later by as much.
    allowance: float = 0.0


_BOOK = """
    INSERT INTO recocora_slots AS s (scope, next_slot)
    VALUES (%(scope)s, clock_timestamp() + make_interval(secs => %(gap)s))
    ON CONFLICT (scope) DO UPDATE
        SET next_slot = GREATEST(s.next_slot, clock_timestamp())
                        + make_interval(secs => %(gap)s + s.learned)
    RETURNING next_slot, shift, generation, learned,
              next_slot - make_interval(secs => %(gap)s + learned) AS slot,
              extract(epoch FROM next_slot - make_interval(secs => %(gap)s + learned)
                                 - clock_timestamp())::float8 AS delay
"""
_HOLDER = """
    INSERT INTO recocora_slot_holders (scope, holder, booked_at)
    VALUES (%s, %s, clock_timestamp())
    ON CONFLICT (scope, holder) DO UPDATE SET booked_at = excluded.booked_at
"""
_OTHERS = """
    SELECT extract(epoch FROM clock_timestamp() - booked_at)::float8
    FROM recocora_slot_holders
    WHERE scope = %s AND holder <> %s AND booked_at > clock_timestamp() - interval '1 hour'
    ORDER BY booked_at DESC LIMIT 100
"""
_SHIFT = """
    UPDATE recocora_slots SET shift = shift + (%(to)s - %(slot)s) + %(wider)s,
                              next_slot = next_slot + (%(to)s - %(slot)s) + %(wider)s,
                              sent_slot = %(to)s
    WHERE scope = %(scope)s
"""
_DEFER = """
    INSERT INTO recocora_slots AS s (scope, next_slot, generation, learned)
    VALUES (%(scope)s, clock_timestamp() + make_interval(secs => %(seconds)s), 1, %(learned)s)
    ON CONFLICT (scope) DO UPDATE
        SET next_slot = GREATEST(s.next_slot,
                                 clock_timestamp() + make_interval(secs => %(seconds)s)),
            generation = s.generation + 1, learned = %(learned)s
"""


class PgLimiter(Limiter):
    """One key's turns, booked in a PostgreSQL state database shared by every machine (see
    the module). ``db_url`` is the database, ``scope`` the key's digest
    (:func:`recocora._limiter.scope_digest`).

    ``sleep`` and ``clock`` (monotonic) may be replaced to test late wake-ups.
    """

    #: The room covers how late a sender may be after its slot (the send deadline, half of
    #: it) and the jitter from writing a request to the server's stamp (the other half). The
    #: slot file's room must also absorb any delay between a booking and its request, which
    #: nothing bounds there; here the deadline bounds it on one clock, so under a one-second
    #: interval half the file's share will do: 12 ms at 0.3 s, a 96% share of the key (its
    #: senders reach a sandbox 1-15 ms after their slots on a loaded 2-core machine). At
    #: Cora's 20 s the absolute :attr:`ROOM` applies, as for the file.
    ROOM_SHARE = Limiter.ROOM_SHARE / 2
    #: A request later than this share of the room after its slot is not sent: its turn is
    #: moved to now (nobody booked after it) or booked again.
    DEADLINE_SHARE = 0.5
    #: The allowance for this machine's distance from the database: this many of its round
    #: trips (one is the clock read's own uncertainty, the rest its jitter) ...
    RTT_ALLOWANCE = 2.0
    #: ... at most this share of the interval, unless turns keep coming too late to send.
    ALLOWANCE_SHARE = 0.25
    #: Turns in a row found too late to send before a WARNING says why, and the allowance is
    #: no longer capped: a limiter always sends in the end, if slowly.
    LATE_WARN = 8
    #: Weight of a new round-trip sample in the running estimate; a sample is taken as at most
    #: four times the estimate (a pause of this process is no round trip), so the estimate
    #: follows a slower link within a few turns but not one stall.
    RTT_WEIGHT = 0.2

    def __init__(self, db_url: str, scope: str, interval: float, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(interval)
        self._url = db_url
        self.scope = scope
        self._sleep, self._clock = sleep, clock
        self._turn = threading.Lock()  # one booking at a time in this process
        self._local = threading.local()  # the turn of each thread
        self._cold = True
        self._learned = 0.0  # what 429s taught, as the database said last
        self._sharers = 1
        self._hold_until = 0.0  # a Retry-After, when there is no interval to space by
        self._handed_at, self._handed_by = -1e9, 0  # the last turn given to a sender
        self._confirm_s = 0.0  # how long the last transaction of a turn took
        self._rtt = -1.0  # the database's round trip, smoothed (-1: not measured yet)
        self._late_in_row = 0  # turns in a row found too late to send
        self._warned = False
        self._token, self._pid = "", 0

    def __repr__(self) -> str:
        return f"PgLimiter(interval={self.interval:g}, database={mask_url(self._url)!r})"

    @property
    def _db(self) -> Database:
        return database(self._url)

    @property
    def _holder(self) -> str:
        """Who books: this thread of this process (a random token, nothing about the
        machine)."""
        if self._pid != os.getpid():
            self._token, self._pid = uuid.uuid4().hex[:16], os.getpid()
        return f"{self._token}-{threading.get_ident()}"

    @property
    def _ticket(self) -> _Ticket | None:
        ticket: _Ticket | None = getattr(self._local, "ticket", None)
        return ticket

    @_ticket.setter
    def _ticket(self, ticket: _Ticket | None) -> None:
        self._local.ticket = ticket

    # -- what the client and the ETA read ------------------------------------------------------

    def deadline(self) -> float:
        """Seconds after its slot a request may still be written (:attr:`DEADLINE_SHARE`),
        beyond the turn's :meth:`allowance`."""
        return self.base_room() * self.DEADLINE_SHARE

    def rtt(self) -> float:
        """The state database's round trip as measured lately (0 before any)."""
        return max(self._rtt, 0.0)

    def allowance(self) -> float:
        """What this machine's turns leave for its distance from the database: it may send
        this much later after its slot, and the next slot is as much later
        (:attr:`RTT_ALLOWANCE`, :attr:`ALLOWANCE_SHARE`)."""
        want = self.RTT_ALLOWANCE * self.rtt()
        if self._warned:
            return want
        return min(want, self.interval * self.ALLOWANCE_SHARE)

    def _measured(self, seconds: float) -> None:
        """One round trip to the database, as timed around one plain statement."""
        if self._rtt < 0:
            self._rtt = seconds
        else:
            seconds = min(seconds, 4 * self._rtt + 0.001)
            self._rtt += self.RTT_WEIGHT * (seconds - self._rtt)

    def _missed(self, lateness: float) -> None:
        """A turn found ``lateness`` seconds past its slot, too late to send."""
        self._late_in_row += 1
        if self._late_in_row >= self.LATE_WARN and not self._warned:
            capped = self.allowance()
            self._warned = True
            log.warning(
                "recocora: %d turns of the rate limit in a row came too late to send (the "
                "last %.0f ms after its slot, the deadline %.0f ms; the state database "
                "answers in %.0f ms). This machine is far from the state database, or too "
                "loaded, for a %g s interval: its turns now leave the full %.0f ms its round "
                "trips need, which slows every run on the key.",
                self._late_in_row, lateness * 1000, (self.deadline() + capped) * 1000,
                self.rtt() * 1000, self.interval, self.allowance() * 1000)

    def margin(self) -> float:
        """The room plus what 429s taught every machine using the key (as last read)."""
        return self.base_room() + self._learned if self.interval > 0 else 0.0

    def sharers(self) -> int:
        """Runs that took turns on this key lately, this one included (as last read)."""
        return self._sharers

    def expected_gap(self) -> float:
        """Seconds between two of this run's requests: one turn (interval and margin) for
        each run sharing the key."""
        if self.interval <= 0:
            return 0.0
        return (self.interval + self.margin()) * self._sharers

    def new_connection(self) -> None:
        self._cold = True

    @property
    def last_slot(self) -> datetime | None:
        """The slot of this thread's last confirmed turn, on the database's clock."""
        ticket = self._ticket
        return ticket.slot if ticket is not None and ticket.confirmed else None

    def wait_time(self) -> float:
        """Seconds until the key's next free turn; also reads how many runs share the key
        and what 429s taught."""
        if self.interval <= 0:
            return max(0.0, self._hold_until - self._clock())

        def read(conn: psycopg.Connection[Any]) -> tuple[float, float, list[float]]:
            conn.execute("DELETE FROM recocora_slot_holders WHERE scope = %s "
                         "AND booked_at < clock_timestamp() - interval '1 day'", (self.scope,))
            row = conn.execute(
                "SELECT extract(epoch FROM next_slot - clock_timestamp())::float8, learned "
                "FROM recocora_slots WHERE scope = %s", (self.scope,)).fetchone()
            ages = [r[0] for r in conn.execute(_OTHERS, (self.scope, self._holder))]
            return (row[0], row[1], ages) if row is not None else (0.0, 0.0, ages)

        wait, self._learned, ages = self._db.run(read, what="read the rate limit's next turn")
        self._sharers = count_sharers(ages, self.interval + self.margin())
        return max(0.0, wait)

    # -- a turn ------------------------------------------------------------------------------

    def acquire(self) -> float:
        """Book this key's next turn, sleep until it and confirm it; the seconds waited.
        Blocks while the state database cannot be reached."""
        began = self._clock()
        if self.interval <= 0:
            self._sleep_until(self._hold_until)
            return self._clock() - began
        with self._turn:
            ticket = self._ticket if self._ticket is not None and self._ticket.late else None
            collected = False
            while True:
                if ticket is None:
                    ticket, self._learned, ages = self._db.run(
                        self._book, what="book the key's next request")
                    self._sharers = count_sharers(ages, self.interval + self.margin())
                # Wake so that the confirmation's answer comes about when the slot does.
                lead = min(self._confirm_s, self.base_room() + 6 * self.rtt())
                delay = ticket.delay - (self._clock() - ticket.read_at) - lead
                if delay > 0:
                    busy = (self._handed_by != threading.get_ident()
                            and self._clock() - self._handed_at < 1.0)
                    if not collected and self.collect_before(delay, busy=busy):
                        collected = True
                        continue  # the clock moved on while collecting
                    self._sleep(delay)
                    continue
                confirmed = self._db.run(partial(self._confirm, ticket=ticket),
                                         what="confirm the key's next request")
                # The transaction that answered, from its BEGIN (a round trip before it
                # started) to its COMMIT: no wait for an outage or for this process's
                # connection.
                self._confirm_s = self._clock() - self._local.started + self.rtt()
                if confirmed is not None and confirmed.confirmed:
                    break
                # Moved by a 429, late behind a turn taken after it (None), or moved on.
                ticket = confirmed
            # Confirmed before its slot: the rest, measured from the answer (the database
            # had read its clock by then).
            self._sleep_until(confirmed.replied - confirmed.lead)
            self._ticket = confirmed
            self._cold = False
            self._handed_at, self._handed_by = self._clock(), threading.get_ident()
            return self._clock() - began

    def on_time(self) -> bool:
        """Whether this thread's turn may still be written: no later than :meth:`deadline`
        after its slot, measured from the confirmation. ``False`` marks it to be confirmed
        again (moved to now, or booked anew) by the next :meth:`acquire`."""
        ticket = self._ticket
        if ticket is None or not ticket.confirmed:
            return True
        if ticket.late:
            return False
        late = ticket.lead + (self._clock() - ticket.checked)
        if late <= self.deadline() + ticket.allowance:
            log.debug("rate limit: turn %.6f written at most %.1f ms after it",
                      ticket.slot.timestamp(), late * 1000)
            self._late_in_row = 0
            return True
        log.debug("rate limit: a request %.1f ms past its turn was not sent", late * 1000)
        self._ticket = replace(ticket, late=True)
        self._missed(late)
        return False

    def _book(self, conn: psycopg.Connection[Any]) -> tuple[_Ticket, float, list[float]]:
        """A new turn, what 429s taught, and the ages of the other runs' last bookings."""
        if self._rtt < 0:  # a first estimate of the round trip, from a plain read
            began = self._clock()
            conn.execute("SELECT 1").fetchone()
            self._measured(self._clock() - began)
        allowance = self.allowance()
        gap = (self.interval + self.base_room() + allowance
               + (self.cold_extra() if self._cold else 0.0))
        row = conn.execute(_BOOK, {"scope": self.scope, "gap": gap}).fetchone()
        read_at = self._clock()
        assert row is not None  # an upsert always returns its row
        next_slot, shift, generation, learned, slot, delay = row
        conn.execute(_HOLDER, (self.scope, self._holder))
        ages = [r[0] for r in conn.execute(_OTHERS, (self.scope, self._holder))]
        ticket = _Ticket(slot, next_slot, shift, gap + learned, generation, delay, read_at,
                         allowance=allowance)
        return ticket, learned, ages

    def _confirm(self, conn: psycopg.Connection[Any], ticket: _Ticket) -> _Ticket | None:
        """The turn confirmed (perhaps moved on), still ahead (not confirmed: its slot moved
        on while it slept), or ``None``: book again."""
        self._local.started = self._clock()
        row = conn.execute("SELECT generation, shift, sent_slot FROM recocora_slots "
                           "WHERE scope = %s FOR UPDATE", (self.scope,)).fetchone()
        if row is None or row[0] != ticket.generation:
            return None
        _generation, shift, sent = row
        moved = shift - ticket.shift
        t = replace(ticket, slot=ticket.slot + moved, next_slot=ticket.next_slot + moved,
                    shift=shift)
        checked = self._clock()
        clock = conn.execute("SELECT clock_timestamp()").fetchone()
        replied = self._clock()
        assert clock is not None
        now: datetime = clock[0]
        self._measured(replied - checked)  # one plain statement, after the row's lock
        lead = (now - t.slot).total_seconds()
        deadline = self.deadline() + t.allowance
        if lead < -max(2 * self._confirm_s, deadline):
            return replace(t, delay=-lead, read_at=replied, late=False)
        if lead <= deadline:
            conn.execute("UPDATE recocora_slots SET sent_slot = GREATEST(sent_slot, %s) "
                         "WHERE scope = %s", (t.slot, self.scope))
            return replace(t, confirmed=True, lead=lead, checked=checked, replied=replied,
                           late=False)
        self._missed(lead)
        if sent is not None and sent > t.slot:
            log.debug("rate limit: woke %.0f ms past the turn and a later turn was taken: "
                      "booking again", lead * 1000)
            return None
        # The turn moves to when this transaction will have committed (two more round trips
        # and some), and the gap after it widens if the round trip grew since it was booked.
        allowance = max(self.allowance(), t.allowance)
        to = now + timedelta(seconds=3 * self.rtt())
        wider = timedelta(seconds=allowance - t.allowance)
        conn.execute(_SHIFT, {"scope": self.scope, "to": to, "slot": t.slot,
                              "wider": wider})
        log.debug("rate limit: woke %.1f ms past the turn: it and the later turns move on",
                  lead * 1000)
        moved = to - t.slot + wider
        return replace(t, slot=to, next_slot=t.next_slot + moved, shift=shift + moved,
                       confirmed=True, lead=(now - to).total_seconds(), checked=checked,
                       replied=replied, late=False, allowance=allowance)

    def _sleep_until(self, until: float) -> None:
        while (left := until - self._clock()) > 0:
            self._sleep(left)

    # -- after the answer ------------------------------------------------------------------------

    def defer(self, seconds: float) -> None:
        """After a 429: every machine's next turn at least ``seconds`` from the database's now,
        every booked turn booked again (the generation moves), and the margin every machine
        leaves widened (:meth:`~recocora._limiter.Limiter.widened`)."""
        if self.interval <= 0:
            self._hold_until = max(self._hold_until, self._clock() + seconds)
            return

        def push(conn: psycopg.Connection[Any]) -> float:
            row = conn.execute("SELECT learned FROM recocora_slots WHERE scope = %s FOR UPDATE",
                               (self.scope,)).fetchone()
            learned = self.widened(row[0] if row is not None else 0.0)
            conn.execute(_DEFER, {"scope": self.scope, "seconds": seconds, "learned": learned})
            return learned

        self._learned = self._db.run(push, what="defer the key's next request after a 429")

    def release(self) -> None:
        """This thread's last request never reached the server: its slot is free again,
        unless a turn was booked after it (or a 429 moved every turn)."""
        ticket, self._ticket = self._ticket, None
        self._cold = True
        if ticket is None or self.interval <= 0:
            return
        self._db.run(lambda conn: conn.execute(
            "UPDATE recocora_slots SET next_slot = %s WHERE scope = %s AND next_slot = %s "
            "AND generation = %s", (ticket.slot, self.scope, ticket.next_slot,
                                    ticket.generation)),
            what="give back an unused turn")

    def settled(self) -> None:
        """An answer without a 429: what 429s taught shrinks by :attr:`DECAY`, for every
        machine (nothing to write while there is nothing learned)."""
        if self.interval <= 0 or not self._learned:
            return

        def shrink(conn: psycopg.Connection[Any]) -> float:
            row = conn.execute("SELECT learned FROM recocora_slots WHERE scope = %s FOR UPDATE",
                               (self.scope,)).fetchone()
            learned = self.decayed(row[0]) if row is not None else 0.0
            conn.execute("UPDATE recocora_slots SET learned = %s WHERE scope = %s",
                         (learned, self.scope))
            return learned

        self._learned = self._db.run(shrink, what="record a clean answer")
