"""The client's pacing against every rate window a real Cora may keep: zero 429s with up to
50 ms of jitter wherever the server stamps a request, and a safe recovery when one comes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

import recocora
from recocora.sandbox import RateWindow, Sandbox


def frame(n: int, prefix: str = "P") -> pd.DataFrame:
    return pd.DataFrame({
        "externalId": [f"{prefix}{i:05d}" for i in range(n)],
        "portfolioId": "P1",
        "phoneNumber": "+15555550123",
        "metadata.filenumber": [f"F{i}" for i in range(n)],
    })


def upsert_through(rate: RateWindow, requests: int,
                   tune: Callable[[Any], None] = lambda client: None,
                   ) -> tuple[pd.DataFrame, list[int]]:
    """Upsert ``requests`` chunks of 20 rows against a fresh sandbox keeping ``rate``;
    the result and the statuses of the POSTs in the order they arrived."""
    with Sandbox(cora_window=rate) as sb:
        client = recocora.CoraClient(sb.cora_key, sb.cora_base_url, min_interval=rate.seconds)
        client.MAX_ROWS = 20
        tune(client)
        try:
            res = frame(requests * 20).cora.upsert(client=client, progress=False)
        finally:
            client.close()
        posts = sorted((r for r in sb.requests if r.method == "POST"), key=lambda r: r.arrived)
        assert len(sb.cora_accounts()) == requests * 20
    return res, [r.status or 0 for r in posts]


@pytest.mark.parametrize("stamp", ["arrival", "body", "processed"])
def test_no_429_with_50_ms_of_jitter_at_any_stamping_point(stamp: str) -> None:
    rate = RateWindow(1.0, stamp=stamp, jitter=0.05, seed=11)  # type: ignore[arg-type]
    res, statuses = upsert_through(rate, 8)
    assert statuses == [200] * 8
    assert (res["cora_status"] == "created").all()


@pytest.mark.parametrize("retry_after", ["seconds", "date", "none", "stale"])
def test_a_429_is_followed_by_one_accepted_retry_even_if_the_window_restarted(
    retry_after: str,
) -> None:
    # No room at all, against 50 ms of jitter and a server that restarts its window on a
    # refusal and may say too little in Retry-After: the first 429s come, and each is
    # followed by a retry that the server accepts (a whole window later), and every row
    # lands once.
    rate = RateWindow(0.5, stamp="body", jitter=0.05, restart_on_refusal=True,
                      retry_after=retry_after, seed=5)  # type: ignore[arg-type]

    def no_room(client: Any) -> None:
        client.limiter.ROOM = client.limiter.ROOM_SHARE = 0.0

    res, statuses = upsert_through(rate, 8, no_room)
    assert statuses.count(200) == 8 and 429 in statuses
    assert all(b == 200 for a, b in itertools.pairwise(statuses) if a == 429), statuses
    assert (res["cora_status"] == "created").all()


def test_the_eta_counts_the_room(sb: Sandbox, cora_client_for: Any) -> None:
    client = cora_client_for(min_interval=20.0)
    assert client.limiter.expected_gap() == pytest.approx(20.0 + client.limiter.ROOM)
