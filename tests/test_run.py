"""The run engine as its listeners see it: progress events from real runs on the sandbox."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recocora import CoraClient, RecotapClient, ServerError
from recocora._progress import Pace, Progress
from recocora.sandbox import FaultConfig, Sandbox

_FIXTURES = [HealthCheck.function_scoped_fixture]


def new_accounts(n: int) -> pd.DataFrame:
    """``n`` creatable Cora accounts, index ``r0``…"""
    return pd.DataFrame(
        {
            "externalId": [f"acct-{i:05d}" for i in range(n)],
            "portfolioId": "pf_test",
            "phoneNumber": [f"+1555555{i:04d}" for i in range(n)],
            "metadata.filenumber": [f"F-{i}" for i in range(n)],
        },
        index=[f"r{i}" for i in range(n)],
    )


def check_events(seen: list[Progress], result: pd.DataFrame) -> Progress:
    """What every run's events promise: rows done only grow, one last ``finished`` event,
    and that event's counts are the result's."""
    assert seen, "a run reports at least its start and its end"
    assert [e.finished for e in seen] == [False] * (len(seen) - 1) + [True]
    done = [e.rows_done for e in seen]
    assert done == sorted(done)
    # Every answer moves the bar forward: no two answered requests report the same rows.
    moving = [e.rows_done for e in seen[1:-1] if e.requests]
    assert all(b > a for a, b in pairwise(moving))
    assert all(e.rows_done <= e.rows_total for e in seen)
    last = seen[-1]
    assert dict(last.counts) == result.attrs["counts"]
    assert last.requests == result.attrs["requests"]
    return last


@settings(max_examples=12, deadline=None, suppress_health_check=_FIXTURES)
@given(n=st.integers(0, 30), rows=st.integers(1, 8), bad=st.integers(0, 4))
def test_cora_listener_sees_every_answer_and_ends_on_the_result(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], n: int, rows: int, bad: int
) -> None:
    sb.reset()
    df = new_accounts(n)
    bad = min(bad, n)
    df.loc[df.index[:bad], "phoneNumber"] = "not a phone"
    seen: list[Progress] = []
    res = df.cora.upsert(client=cora_client_for(rows=rows), on_invalid="skip", progress=False,
                         on_progress=seen.append)
    last = check_events(seen, res)
    assert last.rows_total == last.rows_done == n - bad
    assert last.requests == math.ceil((n - bad) / rows)
    assert {e.api for e in seen} == {"cora"}
    assert last.counts.get("invalid", 0) == bad


@settings(max_examples=10, deadline=None, suppress_health_check=_FIXTURES)
@given(n=st.integers(1, 30), size=st.integers(1, 7), concurrency=st.integers(1, 4),
       held=st.integers(0, 5), missing=st.integers(0, 5))
def test_recotap_listener_counts_only_the_rows_sent(
    sb: Sandbox, rtp_client_for: Callable[..., RecotapClient], n: int, size: int,
    concurrency: int, held: int, missing: int,
) -> None:
    sb.reset()
    held, missing = min(held, n), min(missing, n - min(held, n))
    domains = [f"co{i}.com" for i in range(n)]
    for i, d in enumerate(domains[: n - missing]):
        sb.add_recotap_account(domain=d, name=f"Co {i}",
                               external_id=f"crm-{i}" if i < held else None)
    client = rtp_client_for(max_concurrency=concurrency)
    client.MAX_MAPPINGS = size
    df = pd.DataFrame({"domain": domains, "externalId": [f"crm-{i}" for i in range(n)]})
    seen: list[Progress] = []
    res = df.recotap.map_ids(client=client, progress=False, on_progress=seen.append)
    last = check_events(seen, res)
    sent = n - held  # the accounts already holding their id are read, not written
    assert last.rows_total == last.rows_done == sent
    assert last.requests == math.ceil(sent / size)
    assert last.counts.get("unchanged", 0) == held


def test_a_run_stopped_by_an_error_still_ends_its_events_on_the_partial_result(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_faults(FaultConfig(p_503=1.0, start_after=2, scope="writes"))
    seen: list[Progress] = []
    with pytest.raises(ServerError) as info:
        new_accounts(10).cora.upsert(client=cora_client_for(rows=3), progress=False,
                                     on_progress=seen.append)
    partial = info.value.result
    assert partial is not None
    last = check_events(seen, partial)
    assert last.rows_done == 6 and last.rows_total == 10
    assert last.counts == {"created": 6, "not_sent": 4}


def test_429_answers_met_on_the_way_are_reported(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.force_429(2, retry_after=0)
    seen: list[Progress] = []
    res = new_accounts(4).cora.upsert(client=cora_client_for(rows=2), progress=False,
                                      on_progress=seen.append)
    last = check_events(seen, res)
    answered_429 = sum(r.status == 429 for r in sb.requests)
    assert answered_429 == 2
    assert last.rate_limited == answered_429
    assert [e.rate_limited for e in seen] == sorted(e.rate_limited for e in seen)


def test_the_first_event_says_how_long_the_run_takes_at_the_clients_pace(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient]
) -> None:
    seen: list[Progress] = []
    client = cora_client_for(rows=2)
    new_accounts(5).cora.upsert(client=client, progress=False, on_progress=seen.append)
    first = seen[0]
    assert (first.rows_done, first.rows_total, first.requests) == (0, 5, 0)
    assert first.eta_s == client.pace().seconds(5, wait=0.0) == 0.0
    assert seen[-1].eta_s == 0.0


@given(rows=st.integers(0, 10_000), per=st.integers(1, 600),
       interval=st.floats(0, 60), wait=st.floats(0, 60))
def test_pace_counts_requests_and_spaces_all_but_the_first(
    rows: int, per: int, interval: float, wait: float
) -> None:
    pace = Pace(per, interval)
    requests = pace.requests(rows)
    assert requests * per >= rows > (requests - 1) * per or rows == requests == 0
    expected: Any = wait + (requests - 1) * interval if requests else 0.0
    assert pace.seconds(rows, wait=wait) == pytest.approx(expected)


def test_clients_give_their_limits_as_a_pace(
    cora_client_for: Callable[..., CoraClient], rtp_client_for: Callable[..., RecotapClient]
) -> None:
    cora = cora_client_for(min_interval=20.0)
    pace = cora.pace()
    assert (pace.rows_per_request, pace.min_interval, pace.concurrency) == (
        CoraClient.MAX_ROWS, 20.0, 1)
    # The limiter's room counts in every estimate: 10 requests are 9 gaps of 20 s + room.
    room = cora.limiter.margin()
    assert pace.room == pytest.approx(room) and room >= cora.limiter.ROOM
    assert pace.seconds(10 * CoraClient.MAX_ROWS) == pytest.approx(9 * (20.0 + room))
    rtp = rtp_client_for(max_concurrency=3)
    assert rtp.pace() == Pace(RecotapClient.MAX_MAPPINGS, 0.0, 3)
