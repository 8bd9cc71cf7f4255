"""A server that cannot be reached: a few quick attempts, then one clear error naming host and
port, and no claim about writes that never left. A lost answer to a read is not a write."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

import pandas as pd
import pytest

import recocora  # noqa: F401  (registers the accessors)
from recocora import (
    ClockSkewError,
    CoraClient,
    RecotapClient,
    TransportError,
    UnreachableError,
)
from recocora._transport import RetryPolicy
from recocora.sandbox import FaultConfig, Sandbox

FAST = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def attempts(message: str) -> int:
    found = re.search(r"(\d+) attempts", message)
    assert found, message
    return int(found.group(1))


def assert_unreachable(exc: UnreachableError, where: str, setting: str) -> None:
    text = str(exc)
    assert where in text
    assert "connection refused" in text
    assert "Nothing was sent" in text
    assert setting in text
    assert "idempotent" not in text
    assert attempts(text) == FAST.max_unreachable


def test_a_refused_bulk_upsert_fails_at_once_and_keeps_the_rate_slot(closed_port: int) -> None:
    # The real 20 s window: an attempt that never left must not spend a slot.
    cora = CoraClient("cora_org_kx.s3cret", f"http://127.0.0.1:{closed_port}",
                      min_interval=20.0, retry=FAST)
    try:
        with pytest.raises(UnreachableError) as caught:
            cora.bulk_upsert([{"externalId": "A1"}])
        assert_unreachable(caught.value, f"127.0.0.1:{closed_port}", "CORA_BASE_URL")
        assert isinstance(caught.value, TransportError)
        assert cora.limiter.wait_time() == 0.0
    finally:
        cora.close()


def test_a_refused_read_says_nothing_about_writes(closed_port: int) -> None:
    rtp = RecotapClient("rtp_key_0123456789", f"http://127.0.0.1:{closed_port}/api/v1",
                        retry=FAST)
    try:
        with pytest.raises(UnreachableError) as caught:
            rtp.unmapped_accounts()
        assert_unreachable(caught.value, f"127.0.0.1:{closed_port}", "RECOTAP_BASE_URL")
    finally:
        rtp.close()


def test_map_ids_rows_say_not_sent_when_recotap_is_unreachable(closed_port: int) -> None:
    rtp = RecotapClient("rtp_key_0123456789", f"http://127.0.0.1:{closed_port}/api/v1",
                        retry=FAST)
    crm = pd.DataFrame({"domain": ["acme.com", "globex.com"], "externalId": ["c1", "c2"]})
    try:
        with pytest.raises(UnreachableError) as caught:
            crm.recotap.map_ids(client=rtp, overwrite=True, progress=False)
    finally:
        rtp.close()
    result = caught.value.result
    assert result is not None
    assert result["recotap_status"].tolist() == ["not_sent", "not_sent"]
    assert result["recotap_message"].str.startswith("not sent: Cannot reach Recotap").all()


def test_upsert_rows_say_not_sent_when_cora_is_unreachable(closed_port: int) -> None:
    cora = CoraClient("cora_org_kx.s3cret", f"http://127.0.0.1:{closed_port}",
                      min_interval=20.0, retry=FAST)
    frame = pd.DataFrame({"externalId": ["A1", "A2"], "bucket": ["x", "y"]})
    try:
        with pytest.raises(UnreachableError) as caught:
            frame.cora.upsert(client=cora, progress=False)
    finally:
        cora.close()
    result = caught.value.result
    assert result is not None
    assert result["cora_status"].tolist() == ["not_sent", "not_sent"]
    assert result["cora_message"].str.startswith("not sent: Cannot reach Cora").all()


def test_a_server_gone_after_a_lost_answer_does_not_claim_nothing_was_sent() -> None:
    # The first attempt is written and its answer lost; then the server stops.
    server = Sandbox(cora_window=0.0, faults=FaultConfig(p_drop_after=1.0)).start()
    cora = CoraClient(server.cora_key, server.cora_base_url, min_interval=0.0, retry=FAST)
    cora.transport._sleep = lambda seconds: server.stop()
    try:
        with pytest.raises(TransportError) as caught:
            cora.bulk_upsert([{"externalId": "A1", "phoneNumber": "+15555550111",
                               "portfolioId": "p", "metadata": {"filenumber": "F1"}}])
        assert server.cora_account("A1") is not None
    finally:
        cora.close()
        server.close()
    text = str(caught.value)
    assert not isinstance(caught.value, UnreachableError)
    assert "Whether it was applied is unknown" in text
    assert "connection refused" in text
    assert "Nothing was sent" not in text


def test_an_unknown_host_is_named_with_its_port() -> None:
    # RFC 6761: names under .invalid never resolve.
    cora = CoraClient("cora_org_kx.s3cret", "https://recocora-test.invalid", retry=FAST)
    try:
        with pytest.raises(UnreachableError) as caught:
            cora.get_account("A1")
    finally:
        cora.close()
    text = str(caught.value)
    assert "recocora-test.invalid:443" in text
    assert "unknown host" in text
    assert "host name" in text
    assert attempts(text) == FAST.max_unreachable


def test_a_lost_answer_to_a_read_is_not_called_an_idempotent_write(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_faults(FaultConfig(p_drop=1.0))
    cora = cora_client_for()
    with pytest.raises(TransportError) as caught:
        cora.get_account("A1")
    assert not isinstance(caught.value, UnreachableError)
    text = str(caught.value)
    assert "A read changes nothing" in text
    assert "idempotent" not in text
    drops = [r for r in sb.requests if r.fault == "drop"]
    assert len(drops) == attempts(text) == FAST.max_attempts


def test_clock_skew_without_a_date_header_claims_no_correction(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_faults(FaultConfig(clock_skew=3600.0, no_date=True))
    cora = cora_client_for()
    with pytest.raises(ClockSkewError) as caught:
        cora.update_account("A1", {"bucket": "x"})
    text = str(caught.value)
    assert "no Date header" in text
    assert "learnt" not in text
    # Nothing to correct from, so no second attempt.
    assert [r.method for r in sb.requests] == ["PATCH"]
