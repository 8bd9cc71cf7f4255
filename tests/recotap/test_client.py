"""``RecotapClient`` against the sandbox: auth, envelopes, errors, retries, paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from recocora._transport import Reply, RetryPolicy
from recocora.errors import (
    AuthError,
    ConfigError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
    ValidationError,
)
from recocora.recotap._client import RecotapClient, constraint_messages
from recocora.sandbox import FaultConfig

from .conftest import calls, logged, stored_ids

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


# --------------------------------------------------------------------------- construction


def test_repr_and_errors_never_show_the_key(sb: Sandbox) -> None:
    secret = "rtp_live_abcdefghijklmnopqrstuvwxyz"
    c = RecotapClient(secret, sb.recotap_base_url)
    assert secret not in repr(c)
    assert secret not in repr(c.transport)
    with pytest.raises(AuthError) as info:
        c.unmapped_accounts()
    assert secret not in str(info.value)
    assert "RECOTAP_API_KEY" in str(info.value)


def test_key_and_url_come_from_the_environment(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOTAP_API_KEY", sb.recotap_key)
    monkeypatch.setenv("RECOTAP_BASE_URL", sb.recotap_base_url)
    sb.add_recotap_account(domain="acme.com", name="Acme")
    assert RecotapClient().unmapped_accounts()["domain"].tolist() == ["acme.com"]


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOTAP_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="RECOTAP_API_KEY"):
        RecotapClient(base_url="http://127.0.0.1:1/api/v1")


def test_plain_http_off_loopback_is_refused() -> None:
    with pytest.raises(ConfigError, match="http://"):
        RecotapClient("k", "http://example.com/api/v1")


@pytest.mark.parametrize("bad", [0, -3])
def test_max_concurrency_must_be_positive(sb: Sandbox, bad: int) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        RecotapClient(sb.recotap_key, sb.recotap_base_url, max_concurrency=bad)


# --------------------------------------------------------------------------- errors


def test_wrong_key_is_an_auth_error_and_not_retried(
    sb: Sandbox, client_for: Callable[..., RecotapClient]
) -> None:
    c = client_for(api_key="rtp_wrong_key_0000")
    with pytest.raises(AuthError) as info:
        c.map_external_ids([{"domain": "acme.com", "externalId": "x"}])
    assert info.value.status == 401
    assert len(logged(sb, 1)) == 1


def test_validator_objects_become_the_message(sb: Sandbox, client: RecotapClient) -> None:
    body = b'{"mappings": [{"domain": "", "externalId": 5}]}'
    with pytest.raises(RequestRejectedError) as info:
        client.map_external_ids_raw(body)
    text = str(info.value)
    assert info.value.status == 400
    assert "domain should not be empty" in text
    assert "externalId must be a string" in text
    assert len(logged(sb, 1)) == 1


def test_too_many_mappings_are_refused_before_sending(
    sb: Sandbox, client: RecotapClient
) -> None:
    with pytest.raises(ValueError, match="1 to 100"):
        client.map_external_ids([{"domain": f"d{i}.com", "externalId": "x"} for i in range(101)])
    with pytest.raises(ValueError, match="1 to 100"):
        client.map_external_ids([])
    assert logged(sb) == []


def test_server_limit_is_reported_with_its_constraint(client: RecotapClient) -> None:
    mappings = ",".join(f'{{"domain":"d{i}.com","externalId":"x"}}' for i in range(101))
    with pytest.raises(RequestRejectedError, match="no more than 100 elements"):
        client.map_external_ids_raw(f'{{"mappings":[{mappings}]}}'.encode())


@pytest.mark.parametrize(
    "status, data, text, kind, expected",
    [
        (502, None, "<html><body>Bad gateway</body></html>", ServerError, "Bad gateway"),
        (400, {"statusCode": 400, "message": "Bad Request"}, "", RequestRejectedError,
         "Bad Request"),
        (400, {"statusCode": 400, "message": "Bad Request", "customMessage": "Invalid cursor",
               "data": None}, "", RequestRejectedError, "Invalid cursor"),
        (401, {"statusCode": 401, "message": "Unauthorized access"}, "", AuthError,
         "RECOTAP_API_KEY"),
        (400, {"data": [{"property": "mappings", "children": [
            {"property": "0", "constraints": {"isNotEmpty": "domain should not be empty"}}]}]},
         "", RequestRejectedError, "domain should not be empty"),
        (418, None, "", RequestRejectedError, "HTTP 418"),
    ],
)
def test_error_bodies_of_any_shape_are_decoded(
    client: RecotapClient, status: int, data: Any, text: str, kind: type[Exception],
    expected: str,
) -> None:
    reply = Reply(status, {}, data, text, 1, 0.0)
    err = client.transport.error_for(reply, "GET /api/v1/accounts")
    assert type(err) is kind
    assert expected in str(err)


def test_constraint_messages_walk_nested_children() -> None:
    data = [{"property": "a", "constraints": {"x": "one"},
             "children": [{"property": "b", "constraints": {"y": "two"}}]}]
    assert constraint_messages(data) == ["a: one", "b: two"]
    assert constraint_messages(None) == []


# --------------------------------------------------------------------------- retries


def test_429_is_retried_after_retry_after(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.force_429(3, retry_after=0)
    assert client.unmapped_accounts()["domain"].tolist() == ["acme.com"]
    assert [r.status for r in logged(sb, 4)] == [429, 429, 429, 200]


def test_429_without_end_raises_rate_limit_error(
    sb: Sandbox, client_for: Callable[..., RecotapClient]
) -> None:
    c = client_for(retry=RetryPolicy(backoff_base=0.01, max_rate_limited=3))
    sb.force_429(10, retry_after=0)
    with pytest.raises(RateLimitError):
        c.unmapped_accounts()
    assert len(logged(sb, 3)) == 3


def test_5xx_and_dropped_answers_are_retried_and_writes_stay_exact(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(10)
    sb.set_faults(FaultConfig(seed=3, p_503=0.2, p_500=0.1, p_drop=0.1, p_drop_after=0.2,
                              scope="recotap"))
    answers = [
        client.map_external_ids([{"domain": d, "externalId": f"id-{d}"}]) for d in domains
    ]
    assert stored_ids(sb) == {d: f"id-{d}" for d in domains}
    # A write whose answer was lost is applied again: the answer then says nothing changed.
    assert all(a["matched"] == 1 and a["notFound"] == [] for a in answers)
    assert any(r.fault for r in sb.requests)


def test_server_errors_past_the_budget_raise(
    sb: Sandbox, client_for: Callable[..., RecotapClient]
) -> None:
    c = client_for(retry=RetryPolicy(backoff_base=0.01, max_attempts=2))
    sb.set_faults(FaultConfig(p_503=1.0, scope="recotap"))
    with pytest.raises(ServerError) as info:
        c.unmapped_accounts()
    assert info.value.status == 503
    assert len(logged(sb, 2)) == 2


# --------------------------------------------------------------------------- endpoints


def test_map_external_ids_answer(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme", external_id="old")
    answer = client.map_external_ids(
        [{"domain": "acme.com", "externalId": "new"}, {"domain": "nope.org", "externalId": "x"}]
    )
    assert answer == {"matched": 1, "updated": 1, "notFound": ["nope.org"]}
    again = client.map_external_ids([{"domain": "acme.com", "externalId": "new"}])
    assert again == {"matched": 1, "updated": 0, "notFound": []}


def test_unmapped_accounts(sb: Sandbox, client: RecotapClient,
                           accounts: Callable[..., list[str]]) -> None:
    domains = accounts(6, ids={1: "a", 4: "b"})
    frame = client.unmapped_accounts(limit=3)
    assert frame.columns.tolist() == ["name", "domain"]
    assert frame["domain"].tolist() == [domains[0], domains[2], domains[3]]
    assert client.unmapped_accounts(limit=100)["domain"].tolist() == [
        domains[i] for i in (0, 2, 3, 5)
    ]
    with pytest.raises(ValueError, match="limit"):
        client.unmapped_accounts(limit=0)


def test_unmapped_accounts_empty(client: RecotapClient) -> None:
    frame = client.unmapped_accounts()
    assert frame.columns.tolist() == ["name", "domain"]
    assert len(frame) == 0


def test_accounts_walks_every_page_on_has_next_page(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(250)
    frame = client.accounts(limit=100)
    assert frame["domain"].tolist() == domains
    assert frame.columns[:4].tolist() == ["rtp_aid", "name", "domain", "externalId"]
    # The last page still carries a nextCursor; following it would cost a 4th request.
    assert len(calls(sb, "GET", "/api/v1/accounts", 3)) == 3
    assert isinstance(frame.attrs["sync_timestamp"], str)


def test_accounts_by_domain_batches_of_100_with_messy_spellings(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(250)
    messy = [f"HTTPS://WWW.{d.upper()}/about" if i % 2 else f"{d}." for i, d in
             enumerate(domains)]
    frame = client.accounts(domains=[*messy, "unknown-domain.com"])
    assert sorted(frame["domain"]) == domains
    assert len(calls(sb, "GET", "/api/v1/accounts", 3)) == 3


def test_accounts_domains_idn(sb: Sandbox, client: RecotapClient) -> None:
    sb.add_recotap_account(domain="müller.de", name="Müller")
    frame = client.accounts(domains=pd.Series(["https://www.MÜLLER.de/kontakt"]))
    assert frame["domain"].tolist() == ["xn--mller-kva.de"]


def test_accounts_refuses_invalid_domains_before_sending(
    sb: Sandbox, client: RecotapClient
) -> None:
    with pytest.raises(ValidationError):
        client.accounts(domains=["acme.com", "localhost"])
    assert logged(sb) == []


def test_accounts_empty_domain_list_sends_nothing(sb: Sandbox, client: RecotapClient) -> None:
    frame = client.accounts(domains=[])
    assert len(frame) == 0
    assert frame.columns.tolist() == ["rtp_aid", "name", "domain", "externalId"]
    assert logged(sb) == []


def test_accounts_last_sync(
    sb: Sandbox, client: RecotapClient, accounts: Callable[..., list[str]]
) -> None:
    domains = accounts(4)
    stamp = client.accounts().attrs["sync_timestamp"]
    client.map_external_ids([{"domain": domains[2], "externalId": "fresh"}])
    changed = client.accounts(last_sync=stamp)
    assert changed["domain"].tolist() == [domains[2]]
    assert changed["externalId"].tolist() == ["fresh"]
    since = pd.Timestamp(stamp)
    assert client.accounts(last_sync=since)["domain"].tolist() == [domains[2]]
