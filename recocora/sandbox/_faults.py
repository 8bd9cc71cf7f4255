"""Fault injection for the sandbox, deterministic from a seed.

Each request draws the same number of random numbers from one seeded generator, in arrival
order, so a given seed and request sequence always meets the same faults.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass, fields, replace
from typing import Literal

__all__ = ["FaultConfig", "FaultDecision", "FaultInjector"]

Scope = Literal["all", "cora", "recotap", "writes"]


@dataclass(frozen=True)
class FaultConfig:
    """What can go wrong, and how often.

    - ``p_500``, ``p_502``, ``p_503``: answer that status before doing anything.
    - ``p_drop``: close the socket with no answer before processing (nothing written).
    - ``p_drop_after``: process the request (it is written) and then close the socket with no
      answer: the case that makes idempotent retries matter.
    - ``latency``: seconds added to every answer; ``spike`` more with probability ``spike_p``.
    - ``p_429``: probability that a request starts a burst of ``burst_429`` forced 429s, each
      with ``Retry-After: retry_after_429``.
    - ``p_auth_error``: Cora answers 500 ``AUTH_CHECK_FAILED``.
    - ``retry_after_429=None`` sends forced 429s with no ``Retry-After`` header at all.
    - ``start_after``: the first ``start_after`` requests in scope pass untouched (a run that
      fails part-way through).
    - ``clock_skew``: seconds added to the server clock (``Date`` and the signing window).
    - ``scope``: which requests may meet a fault: ``all``, ``cora``, ``recotap`` or ``writes``
      (POST/PATCH only). Clock skew applies to all.

    Answers the vendors' docs allow but the sandbox does not give by default (api-contract.md
    section 3), each a switch that applies whatever the ``scope``:

    - ``no_date``: answers carry no ``Date`` header.
    - ``numbers_as_text``: Cora's reads (GET) show every number as numeric text
      (``"450.25"``); what is stored does not change.
    - ``unicode_domains``: Recotap lists domains in Unicode (``müller-bau.de``) and matches a
      domain only in that spelling: one sent in punycode (``xn--...``) is not found.
    - ``p_unwritten``: Recotap matches an account but does not write the id, for this share
      of the domains (the same ones for a given seed): ``matched`` exceeds ``updated`` and
      ``notFound`` does not say which.
    - ``not_found_normal``: Recotap's ``notFound`` holds the domains in its normal form,
      not as sent.
    - ``bare_answers``: Recotap answers without the ``statusCode``/``data`` envelope (objects,
      and bare arrays for the unmapped accounts).
    - ``errors_without_data``: Recotap error bodies have no ``data`` key.
    - ``unauthorized_text``: Recotap's 401 says ``Unauthorized access``.

    Two more are there already: ``retry_after_429=None`` (429 without ``Retry-After``), and
    Recotap's ``nextCursor`` is never null on the last page of ``GET /accounts``.

    >>> FaultConfig(seed=1, p_503=0.1, latency=0.05).p_503
    0.1
    """

    seed: int = 0
    p_500: float = 0.0
    p_502: float = 0.0
    p_503: float = 0.0
    p_drop: float = 0.0
    p_drop_after: float = 0.0
    latency: float = 0.0
    spike_p: float = 0.0
    spike: float = 0.0
    p_429: float = 0.0
    burst_429: int = 1
    retry_after_429: int | None = 1
    p_auth_error: float = 0.0
    clock_skew: float = 0.0
    scope: Scope = "all"
    start_after: int = 0
    no_date: bool = False
    numbers_as_text: bool = False
    unicode_domains: bool = False
    p_unwritten: float = 0.0
    not_found_normal: bool = False
    bare_answers: bool = False
    errors_without_data: bool = False
    unauthorized_text: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") or f.name == "spike_p":
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} is a probability: 0..1, got {value}")
            elif f.name in ("latency", "spike") and value < 0:
                raise ValueError(f"{f.name} must be >= 0 seconds, got {value}")
        if self.burst_429 < 1 or (self.retry_after_429 or 0) < 0 or self.start_after < 0:
            raise ValueError("burst_429 must be >= 1, retry_after_429 and start_after >= 0")
        if self.scope not in ("all", "cora", "recotap", "writes"):
            raise ValueError(f"scope must be all, cora, recotap or writes, got {self.scope!r}")

    def with_(self, **changes: object) -> FaultConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    def unwritten(self, domain: str) -> bool:
        """Whether ``p_unwritten`` leaves this domain's account unwritten (seeded, so the
        same domains every time, whatever the order of the requests).

        >>> FaultConfig(p_unwritten=1.0).unwritten("acme.com")
        True
        """
        if self.p_unwritten <= 0.0:
            return False
        digest = hashlib.sha256(f"{self.seed}\n{domain}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.p_unwritten


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one request. ``kind`` names the fault for the request log."""

    kind: str | None = None  # "500" | "502" | "503" | "drop" | "drop_after" | "429" | "auth"
    delay: float = 0.0
    retry_after: int | None = 1


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._burst_left = 0
            self._forced_left = 0
            self._forced_retry_after: int | None = 1
            self._seen = 0

    def force_429(self, n: int, retry_after: int | None = 1) -> None:
        with self._lock:
            self._forced_left = n
            self._forced_retry_after = retry_after

    def _in_scope(self, api: str, method: str) -> bool:
        scope = self.config.scope
        if scope == "all":
            return True
        if scope == "writes":
            return method in ("POST", "PATCH", "PUT", "DELETE")
        return scope == api

    def decide(self, api: str, method: str) -> FaultDecision:
        """Draw this request's fate. ``api`` is ``"cora"``, ``"recotap"`` or ``"other"``."""
        with self._lock:
            if self._forced_left > 0:
                self._forced_left -= 1
                return FaultDecision("429", retry_after=self._forced_retry_after)
            c = self.config
            if not self._in_scope(api, method):
                return FaultDecision()
            self._seen += 1
            if self._seen <= c.start_after:
                return FaultDecision()
            # Always the same number of draws per request keeps a seed's sequence stable.
            r_kind, r_spike, r_429 = self._rng.random(), self._rng.random(), self._rng.random()
            delay = c.latency + (c.spike if r_spike < c.spike_p else 0.0)
            if self._burst_left > 0:
                self._burst_left -= 1
                return FaultDecision("429", delay, c.retry_after_429)
            if r_429 < c.p_429:
                self._burst_left = c.burst_429 - 1
                return FaultDecision("429", delay, c.retry_after_429)
            edge = 0.0
            for kind, p in (
                ("500", c.p_500),
                ("502", c.p_502),
                ("503", c.p_503),
                ("drop", c.p_drop),
                ("drop_after", c.p_drop_after),
                ("auth", c.p_auth_error if api == "cora" else 0.0),
            ):
                edge += p
                if r_kind < edge:
                    return FaultDecision(kind, delay)
            return FaultDecision(None, delay)
