"""Fixtures for the Recotap client and ``map_ids`` tests: a fast-retrying client on the sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from recocora._transport import RetryPolicy
from recocora.recotap._client import RecotapClient

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

# Tiny backoff keeps fault tests fast; the retry budget is the production one.
FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
def client(rtp_client_for: Callable[..., RecotapClient]) -> RecotapClient:
    return rtp_client_for()


@pytest.fixture
def client_for(rtp_client_for: Callable[..., RecotapClient]) -> Callable[..., RecotapClient]:
    """Recotap clients on the sandbox (tests/conftest.py: fast retries)."""
    return rtp_client_for


def domain_of(i: int) -> str:
    return f"company{i:05d}.com"


@pytest.fixture
def accounts(sb: Sandbox) -> Callable[..., list[str]]:
    """Create ``n`` accounts ``company00000.com``...; ``ids`` maps position -> existing id."""

    def make(n: int, ids: dict[int, str] | None = None, start: int = 0) -> list[str]:
        domains = []
        for i in range(start, start + n):
            domain = domain_of(i)
            sb.add_recotap_account(
                domain=domain, name=f"Company {i}", external_id=(ids or {}).get(i)
            )
            domains.append(domain)
        return domains

    return make


def stored_ids(sb: Sandbox) -> dict[str, str | None]:
    """``{domain: externalId}`` as the sandbox stores it."""
    return {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}


def logged(sb: Sandbox, at_least: int = 0) -> list[Any]:
    """``sb.requests`` once it holds ``at_least`` records.

    The sandbox logs a request just after writing its answer, so the client may hold the
    last answer a moment before the log shows it; a short grace lets stragglers land too.
    """
    deadline = time.monotonic() + 5.0
    while len(sb.requests) < at_least and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)
    return sb.requests


def calls(sb: Sandbox, method: str, path_end: str, at_least: int = 0) -> list[Any]:
    """Logged requests with this method whose path ends with ``path_end``."""
    deadline = time.monotonic() + 5.0
    while True:
        found = [r for r in sb.requests if r.method == method and r.path.endswith(path_end)]
        if len(found) >= at_least or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    time.sleep(0.02)
    return [r for r in sb.requests if r.method == method and r.path.endswith(path_end)]
