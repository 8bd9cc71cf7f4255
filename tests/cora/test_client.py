"""CoraClient against the sandbox: keys, signing, the shared limiter, retries, reads."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from recocora import AuthError, ClockSkewError, ConfigError, CoraClient, NotFoundError
from recocora.sandbox import FaultConfig, Sandbox

from .conftest import FAST_RETRY, bulk_posts

ROW = {"externalId": "c-1", "portfolioId": "p", "phoneNumber": "+15555550111",
       "metadata": {"filenumber": "F1"}}


@pytest.mark.parametrize(
    "bad", ["cora_org_nodotQx7", "   ", "cora_org_.Qx7s3cr3t", "cora_org_idQx7.", "a b.Qx7c"]
)
def test_malformed_key_is_refused_before_any_request(sb: Sandbox, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        CoraClient(bad, sb.cora_base_url)
    assert "Qx7" not in str(info.value)  # the message never repeats the key
    assert sb.requests == []


def test_secret_never_in_repr_logs_or_errors(
    sb: Sandbox, client_for: Callable[..., CoraClient], caplog: pytest.LogCaptureFixture
) -> None:
    secret = sb.cora_key.split(".", 1)[1]
    wrong = client_for(api_key="cora_org_sandbox.wrongsecretvalue123")
    caplog.set_level(logging.DEBUG, logger="recocora")
    with pytest.raises(AuthError) as info:
        wrong.bulk_upsert([ROW])
    good = client_for()
    good.bulk_upsert([ROW])
    for text in (repr(good), repr(wrong), str(info.value), repr(info.value), caplog.text):
        assert secret not in text
        assert "wrongsecretvalue123" not in text
    assert info.value.code == "INVALID_API_KEY"
    assert len(bulk_posts(sb)) == 2  # the refused attempt was not retried


def test_signature_covers_a_base_url_path_prefix() -> None:
    with Sandbox(prefix="/gw", cora_window=0) as gw:
        c = CoraClient(gw.cora_key, gw.cora_base_url, min_interval=0, retry=FAST_RETRY)
        assert gw.cora_base_url.endswith("/gw")
        answer = c.bulk_upsert([ROW])
        assert answer["created"] == 1
        assert c.update_account("c-1", {"clientStatus": "x"})["clientStatus"] == "x"
        c.close()


def test_two_clients_of_one_key_share_the_limiter(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    sb.set_cora_window(0.3)
    a, b = client_for(min_interval=0.3), client_for(min_interval=0.3)
    assert a.limiter is b.limiter
    for i in range(3):
        a.bulk_upsert([{**ROW, "externalId": f"a-{i}"}])
        assert b.limiter.wait_time() > 0  # a's request booked the slot b must wait for
        b.bulk_upsert([{**ROW, "externalId": f"b-{i}"}])
    statuses = [r.status for r in bulk_posts(sb)]
    # Unshared limiters would draw a 429 on each of b's three calls; a shared one spaces
    # them (one 429 is tolerated: this machine's scheduler can delay a request's arrival).
    assert statuses.count(429) <= 1
    assert len(sb.cora_accounts()) == 6


def test_429_without_retry_after_waits_the_window_and_resigns(
    sb: Sandbox, client_for: Callable[..., CoraClient]
) -> None:
    sb.force_429(2, retry_after=None)
    c = client_for(min_interval=0.2)
    assert c.bulk_upsert([ROW])["created"] == 1
    assert [r.status for r in bulk_posts(sb)] == [429, 429, 200]


def test_5xx_and_drops_are_retried(sb: Sandbox, client: CoraClient) -> None:
    sb.set_faults(FaultConfig(seed=3, p_503=0.1, p_502=0.05, p_drop=0.1, p_drop_after=0.1,
                              p_auth_error=0.05, scope="writes"))
    for i in range(10):
        client.bulk_upsert([{**ROW, "externalId": f"x-{i}"}])
    assert {a["externalId"] for a in sb.cora_accounts()} == {f"x-{i}" for i in range(10)}
    assert any(r.fault for r in sb.requests)


def test_clock_skew_is_corrected_once_from_the_date_header(
    sb: Sandbox, client: CoraClient
) -> None:
    sb.set_clock_skew(-360)  # the server runs six minutes behind us
    assert client.bulk_upsert([ROW])["created"] == 1
    assert [r.status for r in bulk_posts(sb)] == [401, 200]
    # The learnt offset sticks: the next write goes through first time.
    client.update_account("c-1", {"clientStatus": "y"})
    assert sb.requests[-1].status == 200


def test_clock_skew_that_cannot_be_fixed_is_a_clear_error(
    sb: Sandbox, client: CoraClient
) -> None:
    client.transport.retry_once_after = lambda reply: False  # type: ignore[method-assign]
    sb.set_clock_skew(900)
    with pytest.raises(ClockSkewError, match="clock"):
        client.bulk_upsert([ROW])


def test_reads_and_patch(sb: Sandbox, client: CoraClient) -> None:
    client.bulk_upsert([ROW, {**ROW, "externalId": "c/2", "person": {"name": {"first": "Al"}}}])
    frame = client.get_accounts(["c-1", "c/2", "nope"])
    assert frame["externalId"].tolist() == ["c-1", "c/2"]
    assert "person.name.first" in frame.columns
    assert frame.attrs["not_found"] == ["nope"]
    assert client.get_account("c/2")["person"]["name"]["first"] == "Al"
    updated = client.update_account("c/2", {"person": {"name": {"last": "Bo"}}})
    assert updated["person"]["name"] == {"first": "Al", "last": "Bo"}
    with pytest.raises(NotFoundError):
        client.get_account("nope")


def test_get_accounts_batches_200_ids(sb: Sandbox, client: CoraClient) -> None:
    for i in range(0, 450, 150):
        client.bulk_upsert([{**ROW, "externalId": f"g-{j}"} for j in range(i, i + 150)])
    frame = client.get_accounts([f"g-{j}" for j in range(450)])
    assert len(frame) == 450
    gets = [r for r in sb.requests if r.method == "GET"]
    assert len(gets) == 3


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="https"):
        CoraClient("cora_org_a.b", "http://cora.example.com")


def test_a_lost_connection_tells_the_limiter_a_new_one_is_opened(
    sb: Sandbox, client_for: Callable[..., CoraClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The retry opens a new connection, which reaches the server later after its booking:
    # the limiter must know, to leave room after it.
    client = client_for()
    sb.set_faults(FaultConfig(p_drop=1.0, scope="writes"))
    told: list[str] = []

    def lost() -> None:
        told.append("new connection")
        sb.set_faults(FaultConfig())  # the retry goes through

    monkeypatch.setattr(client.limiter, "new_connection", lost)
    assert client.bulk_upsert([ROW])["created"] == 1
    assert told == ["new connection"]
    assert [p.status for p in bulk_posts(sb)] == [None, 200]
