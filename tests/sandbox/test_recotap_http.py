"""The Recotap side of the sandbox over real HTTP, checked against the contract (section 2)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAP_PATH = "/api/v1/accounts/external-ids"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def envelope(resp: requests.Response, status: int) -> dict[str, Any]:
    """Check the envelope common to every answer and return it."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body: dict[str, Any] = resp.json()
    assert body["statusCode"] == status
    parse_iso(body["timestamp"])
    assert body["path"].startswith("/api/v1/")
    return body


def constraint_messages(data: Any) -> list[str]:
    """Every validator message in a (possibly nested) list of validator objects."""
    found: list[str] = []
    if isinstance(data, list):
        for item in data:
            found.extend(constraint_messages(item))
    elif isinstance(data, dict):
        found.extend(str(m) for m in (data.get("constraints") or {}).values())
        found.extend(constraint_messages(data.get("children") or []))
    return found


def stored_external_id(sb: Any, domain: str) -> Any:
    matches = [a for a in sb.recotap_accounts() if a["domain"] == domain]
    assert len(matches) == 1, matches
    return matches[0].get("externalId")


def listed(rtp: Any, **params: Any) -> list[dict[str, Any]]:
    return envelope(rtp.accounts(**params), 200)["data"]["data"]


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "method, path, payload",
    [
        ("PATCH", "/accounts/external-ids", {"mappings": [{"domain": "a.com", "externalId": "x"}]}),
        ("GET", "/accounts/missing-external-ids", None),
        ("GET", "/accounts", None),
    ],
)
@pytest.mark.parametrize("key", [None, "rtp_wrong", ""])
def test_401_without_a_valid_key(sb, rtp, method, path, payload, key):
    sb.add_recotap_account(domain="a.com", name="A")
    kwargs: dict[str, Any] = {"send_key": key is not None, "key": key}
    if payload is None:
        resp = rtp.request(method, path, **kwargs)
    else:
        resp = rtp.request(method, path, payload, **kwargs)
    body = envelope(resp, 401)
    assert isinstance(body["message"], str) and body["message"]
    assert stored_external_id(sb, "a.com") is None


@pytest.mark.parametrize(
    "kwargs, text",
    [({"send_key": False}, "X-Api-Key header is required"), ({"key": "nope"}, "Invalid API key")],
)
def test_401_messages(rtp, kwargs, text):
    body = envelope(rtp.request("GET", "/accounts", **kwargs), 401)
    assert text in (body["message"], body.get("customMessage"))
    assert body.get("data") is None


def test_success_envelope(sb, rtp):
    resp = rtp.accounts()
    body = envelope(resp, 200)
    assert set(body) == {"statusCode", "timestamp", "path", "data"}
    assert body["path"].startswith("/api/v1/accounts")


# --------------------------------------------------------------------------- map validation


def test_more_than_100_mappings(sb, rtp):
    for i in range(101):
        sb.add_recotap_account(domain=f"d{i}.com", name=f"D{i}")
    resp = rtp.map([{"domain": f"d{i}.com", "externalId": f"x{i}"} for i in range(101)])
    body = envelope(resp, 400)
    assert body["message"] == "Bad Request"
    assert {"property": "mappings",
            "constraints": {"arrayMaxSize": "mappings must contain no more than 100 elements"}} in [
        {"property": d.get("property"), "constraints": d.get("constraints")} for d in body["data"]]
    assert all(a.get("externalId") is None for a in sb.recotap_accounts())


def test_exactly_100_mappings(sb, rtp):
    for i in range(100):
        sb.add_recotap_account(domain=f"d{i}.com", name=f"D{i}")
    data = rtp.map_ok([{"domain": f"d{i}.com", "externalId": f"x{i}"} for i in range(100)])
    assert data == {"matched": 100, "updated": 100, "notFound": []}


def test_empty_mappings(rtp):
    body = envelope(rtp.map([]), 400)
    assert body["message"] == "Bad Request"
    assert "mappings must contain at least 1 elements" in constraint_messages(body["data"])
    entry = next(d for d in body["data"] if d.get("property") == "mappings")
    assert entry["constraints"]["arrayMinSize"] == "mappings must contain at least 1 elements"


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"domain": "", "externalId": "x"}, "domain should not be empty"),
        ({"externalId": "x"}, "domain should not be empty"),
        ({"domain": "a.com", "externalId": 5}, "externalId must be a string"),
        ({"domain": "a.com"}, "externalId must be a string"),
        ({"domain": "a.com", "externalId": None}, "externalId must be a string"),
    ],
)
def test_mapping_validator_messages(sb, rtp, mapping, message):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.add_recotap_account(domain="b.com", name="B")
    resp = rtp.map([{"domain": "b.com", "externalId": "ok"}, mapping])
    body = envelope(resp, 400)
    assert body["message"] == "Bad Request"
    assert message in constraint_messages(body["data"])
    # A validation failure rejects the whole request: the valid mapping is not applied.
    assert stored_external_id(sb, "b.com") is None


@pytest.mark.parametrize(
    "payload",
    [{}, {"mappings": "a.com"}, {"mappings": None}, {"mappings": [5]}, [], None],
)
def test_malformed_map_bodies(sb, rtp, payload):
    resp = rtp.request("PATCH", "/accounts/external-ids", body=json.dumps(payload).encode())
    envelope(resp, 400)


def test_map_body_not_json(rtp):
    body = envelope(rtp.request("PATCH", "/accounts/external-ids", body=b"{mappings:"), 400)
    assert isinstance(body["message"], str)


# --------------------------------------------------------------------------- domain matching


@pytest.mark.parametrize(
    "sent",
    [
        "acme.com",
        "HTTPS://WWW.Acme.com/x",
        "acme.com.",
        "acme.com:8443",
        "http://acme.com:80/path/deeper?q=1",
        "WWW.ACME.COM",
        "https://www.acme.com.:443/",
    ],
)
def test_domain_normalisation(sb, rtp, sent):
    sb.add_recotap_account(domain="acme.com", name="Acme")
    data = rtp.map_ok([{"domain": sent, "externalId": "crm-1"}])
    assert data == {"matched": 1, "updated": 1, "notFound": []}
    assert stored_external_id(sb, "acme.com") == "crm-1"


@pytest.mark.parametrize(
    "stored, sent",
    [("bücher.de", "xn--bcher-kva.de"), ("xn--bcher-kva.de", "bücher.de"),
     ("bücher.de", "https://www.BÜCHER.de/shop")],
)
def test_idn_unicode_and_punycode_match(sb, rtp, stored, sent):
    sb.add_recotap_account(domain=stored, name="Bücher")
    data = rtp.map_ok([{"domain": sent, "externalId": "crm-b"}])
    assert (data["matched"], data["updated"], data["notFound"]) == (1, 1, [])
    assert [a.get("externalId") for a in sb.recotap_accounts()] == ["crm-b"]


@st.composite
def domain_spellings(draw: Any) -> str:
    def mixed_case(text: str) -> str:
        flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
        return "".join(c.upper() if f else c for c, f in zip(text, flips, strict=True))

    host = mixed_case(draw(st.sampled_from(["", "www."])) + "acme-corp.io")
    if draw(st.booleans()):
        host += "."
    if draw(st.booleans()):
        host += f":{draw(st.integers(1, 65535))}"
    scheme = draw(st.sampled_from(["", "http://", "https://", "HTTPS://", "Http://"]))
    path = draw(st.sampled_from(["", "/", "/a/b", "/x?y=1", "/#frag"]))
    return scheme + host + path


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(domain_spellings())
def test_any_spelling_of_a_domain_matches(sb, rtp, sent):
    if not sb.recotap_accounts():
        sb.add_recotap_account(domain="acme-corp.io", name="Acme")
    ext = uuid.uuid4().hex
    assert rtp.map_ok([{"domain": sent, "externalId": ext}]) == {
        "matched": 1, "updated": 1, "notFound": []}
    assert stored_external_id(sb, "acme-corp.io") == ext


def test_not_found_echoes_domains_as_sent(sb, rtp):
    sb.add_recotap_account(domain="acme.com", name="Acme")
    data = rtp.map_ok([
        {"domain": "HTTPS://Unknown.example/x", "externalId": "u1"},
        {"domain": "acme.com", "externalId": "a1"},
        {"domain": "other.example.", "externalId": "u2"},
    ])
    assert data["matched"] == 1
    assert data["updated"] == 1
    assert sorted(data["notFound"]) == sorted(["HTTPS://Unknown.example/x", "other.example."])


def test_subdomain_is_not_the_same_account(sb, rtp):
    sb.add_recotap_account(domain="acme.com", name="Acme")
    data = rtp.map_ok([{"domain": "shop.acme.com", "externalId": "x"}])
    assert data == {"matched": 0, "updated": 0, "notFound": ["shop.acme.com"]}
    assert stored_external_id(sb, "acme.com") is None


def test_last_mapping_for_a_domain_wins(sb, rtp):
    sb.add_recotap_account(domain="acme.com", name="Acme")
    data = rtp.map_ok([
        {"domain": "acme.com", "externalId": "first"},
        {"domain": "https://www.acme.com", "externalId": "second"},
        {"domain": "ACME.com", "externalId": "last"},
    ])
    assert (data["matched"], data["updated"], data["notFound"]) == (1, 1, [])
    assert stored_external_id(sb, "acme.com") == "last"


def test_last_wins_even_when_it_restores_the_stored_id(sb, rtp):
    sb.add_recotap_account(domain="acme.com", name="Acme", external_id="crm-1")
    data = rtp.map_ok([{"domain": "acme.com", "externalId": "other"},
                       {"domain": "acme.com", "externalId": "crm-1"}])
    assert data == {"matched": 1, "updated": 0, "notFound": []}
    assert stored_external_id(sb, "acme.com") == "crm-1"


def test_matched_versus_updated_and_silent_overwrite(sb, rtp):
    sb.add_recotap_account(domain="same.com", name="Same", external_id="crm-same")
    sb.add_recotap_account(domain="old.com", name="Old", external_id="crm-old")
    sb.add_recotap_account(domain="fresh.com", name="Fresh")
    resp = rtp.map([
        {"domain": "same.com", "externalId": "crm-same"},
        {"domain": "old.com", "externalId": "crm-new"},
        {"domain": "fresh.com", "externalId": "crm-fresh"},
        {"domain": "ghost.com", "externalId": "crm-ghost"},
    ])
    body = envelope(resp, 200)
    assert "customMessage" not in body or not body["customMessage"]
    assert body["data"] == {"matched": 3, "updated": 2, "notFound": ["ghost.com"]}
    assert stored_external_id(sb, "same.com") == "crm-same"
    assert stored_external_id(sb, "old.com") == "crm-new"
    assert stored_external_id(sb, "fresh.com") == "crm-fresh"


def test_map_only_touches_the_keys_organisation(sb, rtp, recotap_for):
    sb.add_recotap_key("rtp_other_org", "other-org")
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.add_recotap_account(domain="acme.com", name="Acme B", org="other-org")
    other = recotap_for(sb.recotap_base_url, "rtp_other_org")
    assert other.map_ok([{"domain": "acme.com", "externalId": "b"}])["updated"] == 1
    assert stored_external_id(sb, "acme.com") is None
    assert [a["externalId"] for a in sb.recotap_accounts(org="other-org")] == ["b"]
    assert [a["name"] for a in listed(other)] == ["Acme B"]


# --------------------------------------------------------------------------- unmapped accounts


def test_missing_external_ids_shape(sb, rtp):
    for i in range(5):
        sb.add_recotap_account(domain=f"m{i}.com", name=f"M{i}",
                               external_id=f"x{i}" if i < 2 else None)
    body = envelope(rtp.missing(), 200)
    data = body["data"]
    assert isinstance(data, list)
    assert all(set(item) == {"name", "domain"} for item in data)
    assert sorted(item["domain"] for item in data) == ["m2.com", "m3.com", "m4.com"]
    assert {item["name"] for item in data} == {"M2", "M3", "M4"}


def test_missing_external_ids_limit_and_default(sb, rtp):
    for i in range(120):
        sb.add_recotap_account(domain=f"u{i}.com", name=f"U{i}")
    assert len(envelope(rtp.missing(), 200)["data"]) == 100
    assert len(envelope(rtp.missing(limit=7), 200)["data"]) == 7
    assert len(envelope(rtp.missing(limit=1), 200)["data"]) == 1
    assert len(envelope(rtp.missing(limit=1000), 200)["data"]) == 120


@pytest.mark.parametrize("limit", [0, -1, 1001, "abc", "1.5"])
def test_missing_external_ids_bad_limit(rtp, limit):
    envelope(rtp.missing(limit=limit), 400)


def test_map_a_page_then_ask_again(sb, rtp):
    for i in range(30):
        sb.add_recotap_account(domain=f"w{i}.com", name=f"W{i}")
    seen: set[str] = set()
    while page := envelope(rtp.missing(limit=10), 200)["data"]:
        domains = [item["domain"] for item in page]
        assert not seen & set(domains)
        seen |= set(domains)
        rtp.map_ok([{"domain": d, "externalId": f"id-{d}"} for d in domains])
    assert seen == {f"w{i}.com" for i in range(30)}


# --------------------------------------------------------------------------- listing


def test_full_pagination_walk(sb, rtp):
    domains = {f"p{i:03d}.com" for i in range(250)}
    for i, domain in enumerate(sorted(domains)):
        sb.add_recotap_account(domain=domain, name=f"P{i}",
                               external_id=f"ext-{i}" if i % 3 else None)
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor is not None:
            params["cursor"] = cursor
        data = envelope(rtp.accounts(**params), 200)["data"]
        assert set(data) >= {"data", "nextCursor", "hasNextPage", "syncTimestamp"}
        parse_iso(data["syncTimestamp"])
        pages.append(data)
        if not data["hasNextPage"]:
            break
        cursor = data["nextCursor"]
        assert len(pages) < 10
    assert [len(p["data"]) for p in pages] == [100, 100, 50]
    assert [p["hasNextPage"] for p in pages] == [True, True, False]
    assert pages[-1]["nextCursor"] is not None
    seen = [a["domain"] for p in pages for a in p["data"]]
    assert len(seen) == len(set(seen))
    assert set(seen) == domains
    for account in (a for p in pages for a in p["data"]):
        assert {"externalId", "name", "domain", "rtp_aid", "customFields"} <= set(account)
        assert isinstance(account["customFields"], dict)
    unmapped = [a for p in pages for a in p["data"] if a["externalId"] is None]
    assert len(unmapped) == 84


def test_list_default_limit_is_100(sb, rtp):
    for i in range(105):
        sb.add_recotap_account(domain=f"l{i}.com", name=f"L{i}")
    data = envelope(rtp.accounts(), 200)["data"]
    assert len(data["data"]) == 100
    assert data["hasNextPage"] is True


def test_mapping_shows_up_in_the_list(sb, rtp):
    sb.add_recotap_account(domain="acme.com", name="Acme")
    rtp.map_ok([{"domain": "www.acme.com", "externalId": "crm-9"}])
    [account] = listed(rtp)
    assert (account["domain"], account["externalId"]) == ("acme.com", "crm-9")


def test_last_sync_filter(sb, rtp):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.add_recotap_account(domain="b.com", name="B")
    since = envelope(rtp.accounts(), 200)["data"]["syncTimestamp"]
    time.sleep(0.05)
    rtp.map_ok([{"domain": "a.com", "externalId": "crm-a"}])
    recent = listed(rtp, lastSync=since)
    assert [a["domain"] for a in recent] == ["a.com"]
    assert len(listed(rtp)) == 2
    later = envelope(rtp.accounts(), 200)["data"]["syncTimestamp"]
    time.sleep(0.05)
    assert listed(rtp, lastSync=later) == []


@pytest.mark.parametrize("value", ["yesterday", "2024-13-45T00:00:00Z"])
def test_last_sync_must_be_iso(rtp, value):
    envelope(rtp.accounts(lastSync=value), 400)


def test_domains_filter(sb, rtp):
    for name in ("acme.com", "beta.io", "gamma.net"):
        sb.add_recotap_account(domain=name, name=name)
    found = listed(rtp, domains=json.dumps(["WWW.Acme.com", "https://beta.io/", "nope.org"]))
    assert sorted(a["domain"] for a in found) == ["acme.com", "beta.io"]


def test_domains_filter_limits(sb, rtp):
    sb.add_recotap_account(domain="d0.com", name="D0")
    hundred = json.dumps([f"d{i}.com" for i in range(100)])
    assert [a["domain"] for a in listed(rtp, domains=hundred)] == ["d0.com"]
    envelope(rtp.accounts(domains=json.dumps([f"d{i}.com" for i in range(101)])), 400)
    envelope(rtp.accounts(domains="acme.com"), 400)


# --------------------------------------------------------------------------- rate limit


def test_requests_per_second_limit(sb, rtp, cora):
    sb.set_recotap_rps(1)
    answers = [rtp.accounts() for _ in range(10)]
    limited = [r for r in answers if r.status_code == 429]
    assert answers[0].status_code == 200
    assert limited
    for resp in limited:
        envelope(resp, 429)
        assert int(resp.headers["Retry-After"]) >= 1
    # The Recotap limit leaves Cora alone.
    assert cora.get_accounts(["x"]).status_code == 200
    time.sleep(int(limited[-1].headers["Retry-After"]))
    envelope(rtp.accounts(), 200)


def test_rate_limited_mapping_is_not_applied(sb, rtp):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.set_recotap_rps(1)
    envelope(rtp.accounts(), 200)
    resp = rtp.map([{"domain": "a.com", "externalId": "x"}])
    envelope(resp, 429)
    assert stored_external_id(sb, "a.com") is None
