"""The sandbox's Cora bulk rate window: when a key may send again, and the 429 it answers."""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from ._cora_auth import error
from ._core import Clock, Request, Response

Stamp = Literal["arrival", "body", "processed"]
RetryAfterStyle = Literal["seconds", "date", "none", "stale"]


@dataclass(frozen=True)
class RateWindow:
    """How the sandbox enforces Cora's bulk rate window: one request per ``seconds`` per key.

    The docs say only "1 request every 20 seconds"; a real gateway may stamp a request at any
    point of its life, on another node, and answer a refusal in several ways. Each of those
    is a setting here, so the client's pacing is tested against all of them:

    - ``stamp``: the instant a request counts from: ``arrival`` (the request line came in),
      ``body`` (its body was read), ``processed`` (its rows were written; the refusal check
      is made when the handler starts, the stamp when it ends).
    - ``jitter``: seconds, a uniform random delay added to each stamp (another node's clock,
      a queue), from a generator seeded with ``seed``.
    - ``restart_on_refusal``: a refused request restarts the window too.
    - ``retry_after``: the 429's header: ``seconds`` (whole seconds, rounded up), ``date``
      (an HTTP date), ``none`` (no header) or ``stale`` (one second less than the truth).

    >>> RateWindow(1.0, stamp="body", jitter=0.04).stamp
    'body'
    """

    seconds: float = 20.0
    stamp: Stamp = "arrival"
    jitter: float = 0.0
    restart_on_refusal: bool = False
    retry_after: RetryAfterStyle = "seconds"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stamp not in ("arrival", "body", "processed"):
            raise ValueError(f"stamp must be arrival, body or processed, got {self.stamp!r}")
        if self.retry_after not in ("seconds", "date", "none", "stale"):
            raise ValueError(
                f"retry_after must be seconds, date, none or stale, got {self.retry_after!r}"
            )
        if self.seconds < 0 or self.jitter < 0:
            raise ValueError("the window and its jitter are seconds >= 0")



class RateLimits:
    """The per-key bulk window of :class:`CoraApi` (``rate``, ``window``, the 429)."""

    clock: Clock
    _rate_lock: threading.Lock
    _last_bulk: dict[str, float]
    _rate: RateWindow
    _jitter: random.Random

    @property
    def window(self) -> float:
        return self.rate.seconds

    @window.setter
    def window(self, seconds: float) -> None:
        self.rate = replace(self.rate, seconds=seconds)

    @property
    def rate(self) -> RateWindow:
        return self._rate

    @rate.setter
    def rate(self, rate: RateWindow) -> None:
        with self._rate_lock:
            self._rate = rate
            self._jitter = random.Random(rate.seed)

    def reset_rate(self) -> None:
        with self._rate_lock:
            self._last_bulk.clear()
            self._jitter = random.Random(self._rate.seed)
    def rate_limited(self, remaining: float | None) -> Response:
        """A 429 for a request ``remaining`` seconds early, its ``Retry-After`` written as
        :attr:`rate` says (``remaining=None``: no header at all)."""
        style = self.rate.retry_after
        headers: dict[str, Any] = {}
        if remaining is not None and style != "none":
            whole = max(1, math.ceil(remaining))
            if style == "seconds":
                headers["Retry-After"] = whole
            elif style == "stale":
                headers["Retry-After"] = whole - 1
            else:
                headers["Retry-After"] = email.utils.formatdate(
                    math.ceil(self.clock.now() + remaining), usegmt=True
                )
        return error(
            429, "RATE_LIMITED",
            f"Rate limit exceeded: one bulk request every {self.window:g} seconds per API key",
            headers=headers,
        )

    def _stamp(self, at: float) -> float:
        """``at`` plus this window's jitter (call under ``_rate_lock``)."""
        return at + (self._jitter.uniform(0.0, self.rate.jitter) if self.rate.jitter else 0.0)

    def _take_slot(self, key_id: str, req: Request) -> Response | None:
        """Refuse the request if it comes inside the window, else stamp it (unless it is
        stamped once processed: :meth:`_stamp_processed`)."""
        rate = self.rate
        if rate.seconds <= 0:
            return None
        if rate.stamp == "arrival":
            at = req.arrived
        elif rate.stamp == "body":
            at = req.body_read if req.body_read is not None else req.arrived
        else:
            at = time.monotonic()
        with self._rate_lock:
            now = self._stamp(at)
            last = self._last_bulk.get(key_id)
            if last is not None and now - last < rate.seconds:
                if last == math.inf:  # another request of this key is being processed
                    return self.rate_limited(rate.seconds)
                if rate.restart_on_refusal:
                    self._last_bulk[key_id] = now
                return self.rate_limited(rate.seconds - (now - last))
            if rate.stamp != "processed":
                self._last_bulk[key_id] = now
            else:
                # Hold the slot while processing; the stamp moves to the end of it.
                self._last_bulk[key_id] = math.inf
        return None

    def _stamp_processed(self, key_id: str) -> None:
        if self.rate.seconds > 0 and self.rate.stamp == "processed":
            with self._rate_lock:
                self._last_bulk[key_id] = self._stamp(time.monotonic())
