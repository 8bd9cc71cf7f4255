"""Fault injection of the sandbox, seen from a plain HTTP client."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from recocora.sandbox import FaultConfig


def new_row(ext: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "externalId": ext,
        "portfolioId": "pf-1",
        "phoneNumber": "+15551230000",
        "metadata": {"filenumber": f"F-{ext}"},
    }
    row.update(fields)
    return row


def outcome(call: Callable[[], requests.Response]) -> int | str:
    """The status code, or "drop" when the connection closed without an answer."""
    try:
        return call().status_code
    except requests.ConnectionError:
        return "drop"


def records(sb: Any, count: int) -> list[Any]:
    """The last ``count`` records of the request log, waiting for them to be logged."""
    deadline = time.monotonic() + 5.0
    while len(sb.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    log = list(sb.requests)
    assert len(log) >= count, log
    # Only the last ``count``: a record of the previous test's last request can trail in after
    # reset() (see test_server.test_request_log_is_written_before_the_answer).
    return log[-count:]


def server_date(resp: requests.Response) -> float:
    return email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()


# --------------------------------------------------------------------------- 5xx


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_answers_before_processing(sb, cora, rtp, status):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.set_faults(FaultConfig(**{f"p_{status}": 1.0}))
    assert cora.upsert([new_row("a")]).status_code == status
    assert cora.get_account("a").status_code == status
    assert rtp.map([{"domain": "a.com", "externalId": "x"}]).status_code == status
    assert rtp.accounts().status_code == status
    log = records(sb, 4)
    assert [r.fault for r in log] == [str(status)] * 4
    assert [r.status for r in log] == [status] * 4
    sb.set_faults(FaultConfig())
    assert sb.cora_accounts() == []
    assert [a.get("externalId") for a in sb.recotap_accounts()] == [None]


# --------------------------------------------------------------------------- dropped connections


def test_drop_before_processing_writes_nothing(sb, cora, rtp):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.set_faults(FaultConfig(p_drop=1.0))
    with pytest.raises(requests.ConnectionError):
        cora.upsert([new_row("a")])
    with pytest.raises(requests.ConnectionError):
        rtp.map([{"domain": "a.com", "externalId": "x"}])
    assert [r.fault for r in records(sb, 2)] == ["drop", "drop"]
    assert sb.cora_accounts() == []
    assert [a.get("externalId") for a in sb.recotap_accounts()] == [None]


def test_drop_after_processing_writes_but_never_answers(sb, cora, rtp):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.set_faults(FaultConfig(p_drop_after=1.0))
    with pytest.raises(requests.ConnectionError):
        cora.upsert([new_row("a", bucket="B")])
    assert sb.cora_account("a")["bucket"] == "B"
    with pytest.raises(requests.ConnectionError):
        rtp.map([{"domain": "a.com", "externalId": "x"}])
    assert [a.get("externalId") for a in sb.recotap_accounts()] == ["x"]
    assert [r.fault for r in records(sb, 2)] == ["drop_after", "drop_after"]
    sb.set_faults(FaultConfig())
    # The client that retries now sees the row as already there.
    answer = cora.upsert_ok([new_row("a", bucket="B")])
    assert answer["results"][0]["status"] == "unchanged"


# --------------------------------------------------------------------------- latency


@pytest.mark.parametrize(
    "config",
    [FaultConfig(latency=0.01), FaultConfig(spike_p=1.0, spike=0.01)],
    ids=["fixed", "spike"],
)
def test_latency_is_recorded(sb, cora, rtp, config):
    sb.set_faults(config)
    assert cora.upsert_ok([new_row("a")])["created"] == 1
    assert rtp.accounts().status_code == 200
    log = records(sb, 2)
    assert [(r.status, r.fault) for r in log] == [(200, "latency"), (200, "latency")]


# --------------------------------------------------------------------------- forced 429


def test_forced_429_burst(sb, cora, rtp):
    sb.force_429(2, retry_after=3)
    first = cora.upsert([new_row("a")])
    assert first.status_code == 429
    assert first.json()["code"] == "RATE_LIMITED"
    assert first.json()["success"] is False
    assert first.headers["Retry-After"] == "3"
    second = rtp.accounts()
    assert second.status_code == 429
    assert second.json()["statusCode"] == 429
    assert second.headers["Retry-After"] == "3"
    assert sb.cora_accounts() == []
    assert cora.upsert_ok([new_row("a")])["created"] == 1
    assert [r.fault for r in records(sb, 3)] == ["429", "429", None]


def test_p_429_bursts(sb, cora):
    sb.set_faults(FaultConfig(p_429=1.0, burst_429=3, retry_after_429=2))
    answers = [cora.get_accounts(["a"]) for _ in range(4)]
    assert [r.status_code for r in answers] == [429] * 4
    assert {r.headers["Retry-After"] for r in answers} == {"2"}
    assert {r.json()["code"] for r in answers} == {"RATE_LIMITED"}


def test_burst_length(sb, rtp):
    # A request starts a burst with probability p_429; every burst is burst_429 answers long,
    # so runs of 429s are whole multiples of it (back-to-back bursts join), except a run the
    # end of the sample cuts short.
    sb.set_faults(FaultConfig(seed=3, p_429=0.2, burst_429=3))
    statuses = [rtp.accounts().status_code for _ in range(60)]
    assert set(statuses) == {200, 429}
    marks = "".join("x" if s == 429 else "." for s in statuses)
    runs = [len(run) for run in re.findall("x+", marks)]
    complete = runs[:-1] if marks.endswith("x") else runs
    assert complete, marks
    assert all(n % 3 == 0 for n in complete), marks


# --------------------------------------------------------------------------- clock skew


@pytest.mark.parametrize("how", ["method", "fault-config"])
def test_clock_skew(sb, cora, how):
    skew = -3600.0
    if how == "method":
        sb.set_clock_skew(skew)
    else:
        sb.set_faults(FaultConfig(clock_skew=skew))
    resp = cora.upsert([new_row("a")])
    assert resp.status_code == 401
    assert resp.json()["code"] == "REQUEST_TIMESTAMP_OUTSIDE_WINDOW"
    offset = server_date(resp) - time.time()
    assert abs(offset - skew) < 120
    # Re-signing with the server's clock, as the contract allows, is accepted.
    server_now = str(int(time.time() + offset))
    assert cora.upsert_ok([new_row("a")], timestamp=server_now)["created"] == 1
    assert abs(server_date(cora.get_account("a")) - time.time() - skew) < 120


def test_small_skew_stays_inside_window(sb, cora):
    sb.set_clock_skew(90.0)
    assert cora.upsert_ok([new_row("a")])["created"] == 1


def test_reset_clears_faults_skew_and_log(sb, cora):
    sb.set_faults(FaultConfig(p_500=1.0))
    sb.set_clock_skew(3600.0)
    assert cora.get_accounts(["a"]).status_code == 500
    assert sb.faults.p_500 == 1.0
    sb.reset()
    assert sb.requests == []
    assert sb.faults.p_500 == 0.0
    assert cora.upsert_ok([new_row("a")])["created"] == 1
    assert abs(server_date(cora.get_account("a")) - time.time()) < 120


def test_faults_round_trip(sb):
    config = FaultConfig(seed=9, p_500=0.25, latency=0.001, scope="cora")
    sb.set_faults(config)
    assert sb.faults == config


# --------------------------------------------------------------------------- scope


def test_scope_cora(sb, cora, rtp):
    sb.set_faults(FaultConfig(p_503=1.0, scope="cora"))
    assert cora.get_accounts(["a"]).status_code == 503
    assert rtp.accounts().status_code == 200


def test_scope_recotap(sb, cora, rtp):
    sb.set_faults(FaultConfig(p_503=1.0, scope="recotap"))
    assert cora.get_accounts(["a"]).status_code == 200
    assert rtp.accounts().status_code == 503


def test_scope_writes(sb, cora, rtp):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.set_faults(FaultConfig(p_502=1.0, scope="writes"))
    assert cora.get_accounts(["a"]).status_code == 200
    assert rtp.accounts().status_code == 200
    assert cora.upsert([new_row("a")]).status_code == 502
    assert cora.patch("a", {"bucket": "x"}).status_code == 502
    assert rtp.map([{"domain": "a.com", "externalId": "x"}]).status_code == 502


def test_auth_errors_are_cora_only(sb, cora, rtp):
    sb.set_faults(FaultConfig(p_auth_error=1.0))
    resp = cora.get_accounts(["a"])
    assert (resp.status_code, resp.json()["code"]) == (500, "AUTH_CHECK_FAILED")
    assert rtp.accounts().status_code == 200


# --------------------------------------------------------------------------- determinism


def _run(sb: Any, rtp: Any, config: FaultConfig, n: int = 40) -> tuple[list[Any], list[Any]]:
    sb.reset()
    sb.set_faults(config)
    outcomes = [outcome(rtp.accounts) for _ in range(n)]
    faults = [r.fault for r in records(sb, n)]
    return outcomes, faults


def test_same_seed_same_fault_sequence(sb, rtp):
    config = FaultConfig(seed=7, p_500=0.15, p_503=0.15, p_drop=0.1, p_429=0.1, burst_429=2)
    first = _run(sb, rtp, config)
    second = _run(sb, rtp, config)
    assert first == second
    assert len(set(first[0])) >= 3, first[0]
    other = _run(sb, rtp, FaultConfig(seed=8, p_500=0.15, p_503=0.15, p_drop=0.1, p_429=0.1,
                                      burst_429=2))
    assert other[0] != first[0]
