"""Fixtures for the Cora client and ``df.cora.upsert`` tests: fast clients on the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from recocora import CoraClient
from recocora._transport import RetryPolicy

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

# Tiny backoff keeps fault tests fast; the retry budget is the production one.
FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
def client_for(cora_client_for: Callable[..., CoraClient]) -> Callable[..., CoraClient]:
    """Cora clients on the sandbox (tests/conftest.py: window 0, fast retries)."""
    return cora_client_for


@pytest.fixture
def client(client_for: Callable[..., CoraClient]) -> CoraClient:
    return client_for()


def new_accounts(n: int, start: int = 0, **extra: Any) -> pd.DataFrame:
    """A frame of ``n`` creatable accounts ``acct-00000``…, index ``r0``…"""
    ids = [f"acct-{i:05d}" for i in range(start, start + n)]
    frame = pd.DataFrame(
        {
            "externalId": ids,
            "portfolioId": "pf_test",
            "phoneNumber": [f"+1555555{i % 10000:04d}" for i in range(start, start + n)],
            "metadata.filenumber": [f"F-{i}" for i in range(start, start + n)],
            **extra,
        },
        index=[f"r{i}" for i in range(start, start + n)],
    )
    return frame


def bulk_posts(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method == "POST" and r.path.endswith("/bulk-upsert")]
