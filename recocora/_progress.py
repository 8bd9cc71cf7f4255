"""Progress as events: what a run reports (:class:`Progress`), how long it takes (:class:`Pace`),
and the text bar (``tqdm.auto``: a widget in notebooks, text elsewhere) that listens to it.

A run calls each listener with a :class:`Progress` after every answer; ``on_progress=`` on
``df.cora.upsert`` and ``df.recotap.map_ids`` adds one:

>>> seen = []
>>> res = df.cora.upsert(client=cora, on_progress=seen.append)  # doctest: +SKIP
>>> seen[-1].finished, seen[-1].counts  # doctest: +SKIP
(True, {'created': 1200})
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Listener", "Pace", "Progress", "TextBar", "format_duration", "sharing_note"]


def format_duration(seconds: float) -> str:
    """``3999`` → ``'~67 min'``; short runs in seconds.

    >>> format_duration(4000)
    '~67 min'
    """
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def sharing_note(runs: int) -> str:
    """What a progress line says of runs taking turns on one key ("" when alone).

    >>> sharing_note(3), sharing_note(1)
    ('key shared by 3 runs', '')
    """
    return f"key shared by {runs} runs" if runs > 1 else ""


@dataclass(frozen=True)
class Pace:
    """A client's limits, as far as a run's length goes: rows per request, the spacing its rate
    limit imposes between requests, and how many may be in flight at once. Clients give theirs
    with ``client.pace()``; every estimate of how long a run takes is worked out here.

    >>> Pace(rows_per_request=500, min_interval=20.0).seconds(1_203)
    40.0
    """

    rows_per_request: int
    min_interval: float = 0.0
    concurrency: int = 1
    #: What the rate limiter leaves beyond ``min_interval`` between two requests (its room
    #: for the server's stamping delay and jitter): part of every estimate.
    room: float = 0.0
    #: Runs taking turns on the rate limit (machines sharing a key): each gets one turn in
    #: this many.
    sharing: int = 1

    @property
    def gap(self) -> float:
        """Seconds from one request to the next at this pace.

        >>> round(Pace(500, 20.0, room=0.075, sharing=3).gap, 3)
        60.225
        """
        return (self.min_interval + self.room) * self.sharing if self.min_interval else 0.0

    def requests(self, rows: int) -> int:
        """Requests needed to send ``rows`` rows.

        >>> Pace(100).requests(250)
        3
        """
        return math.ceil(max(0, rows) / self.rows_per_request)

    def seconds(self, rows: int, *, wait: float = 0.0) -> float:
        """Seconds to send ``rows`` rows when the first request may leave after ``wait``
        seconds and each further one :attr:`gap` after the one before."""
        requests = self.requests(rows)
        if not requests:
            return 0.0
        return wait + (requests - 1) * self.gap


@dataclass(frozen=True)
class Progress:
    """One moment of a run, as its listeners see it.

    ``rows_done`` of ``rows_total`` rows this run settles (rows skipped by the journal or
    invalid are not in either); ``counts`` are the statuses over the whole frame so far;
    ``requests`` the requests answered; ``rate_limited`` the 429 answers met on the way;
    ``eta_s`` the seconds left at the client's pace (``None`` when unknown); ``sharing`` the
    runs taking turns on the key's rate limit (this one included: the ETA counts one turn in
    that many); ``finished`` is set on the last event, whose ``counts`` equal the result's
    ``attrs["counts"]``.
    """

    api: str
    label: str
    rows_total: int
    rows_done: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)
    requests: int = 0
    rate_limited: int = 0
    eta_s: float | None = None
    finished: bool = False
    sharing: int = 1


#: What ``on_progress=`` takes: called with every :class:`Progress` of a run.
Listener = Callable[[Progress], None]


class TextBar:
    """A ``tqdm`` bar over rows with live counts by status: a :data:`Listener`.

    The first event opens it, showing the ETA (when it is a second or more) next to the
    label so a long run says how long it takes before the first answer comes back, and how
    many runs share the key's rate limit (said again whenever that changes); the
    ``finished`` event closes it.
    """

    def __init__(self) -> None:
        self.bar: Any = None
        self.sharing = 1

    @staticmethod
    def describe(event: Progress) -> str:
        """The bar's label: the run's, with the ETA and the runs sharing the key."""
        eta = event.eta_s
        notes = [format_duration(eta)] if eta is not None and eta >= 1 else []
        notes += [sharing_note(event.sharing)] if event.sharing > 1 else []
        return f"{event.label} ({', '.join(notes)})" if notes else event.label

    def __call__(self, event: Progress) -> None:
        if self.bar is None:
            self.sharing = event.sharing
            self.bar = tqdm(total=event.rows_total, desc=self.describe(event), unit="row",
                            disable=event.rows_total == 0, dynamic_ncols=True, leave=True)
        bar = self.bar
        if event.sharing != self.sharing and not event.finished:
            self.sharing = event.sharing
            bar.set_description(self.describe(event), refresh=False)
        if event.counts:
            bar.set_postfix(dict(event.counts), refresh=False)
        if event.rows_done > bar.n:
            bar.update(event.rows_done - bar.n)
        if event.finished:
            bar.close()
