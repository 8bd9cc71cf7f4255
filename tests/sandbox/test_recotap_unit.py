"""Direct tests of the sandbox's Recotap routes: ``RecotapApi.handle`` without HTTP."""

from __future__ import annotations

import re
import threading
import urllib.parse
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recocora.sandbox._core import Clock, Request, Response, Store
from recocora.sandbox._recotap import RecotapApi
from recocora.sandbox._recotap_checks import _decode_cursor, _encode_cursor, _parse_iso_ms
from recocora.sandbox._recotap_domains import normalize_domain

KEY = "rtp_test_key"
OTHER_KEY = "rtp_other_key"
ORG = "org-a"
OTHER_ORG = "org-b"
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FixedClock(Clock):
    """A server clock that only moves when told to."""

    def __init__(self, t: float = T0) -> None:
        super().__init__()
        self.t = t

    def now(self) -> float:
        return self.t


class Ticker:
    """Stands in for time.monotonic in the rate limiter."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_api(rps: float | None = None, clock: Clock | None = None) -> RecotapApi:
    api = RecotapApi(Store(), clock or FixedClock(), rps=rps)
    api.add_key(KEY, ORG)
    api.add_key(OTHER_KEY, OTHER_ORG)
    return api


def call(
    api: RecotapApi,
    method: str,
    subpath: str,
    *,
    query: dict[str, Any] | str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> tuple[Response, dict[str, Any]]:
    path = "/api/v1" + subpath
    qs = urllib.parse.urlencode(query, doseq=True) if isinstance(query, dict) else query or ""
    target = path + ("?" + qs if qs else "")
    hdrs: dict[str, str] = {}
    if key is not None:
        hdrs["x-api-key"] = key
    if raw is None and body is not None:
        raw = orjson.dumps(body)
        hdrs["content-type"] = "application/json"
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    req = Request(
        method,
        path,
        target,
        urllib.parse.parse_qs(qs, keep_blank_values=True),
        hdrs,
        raw or b"",
    )
    resp = api.handle(req, subpath)
    return resp, orjson.loads(resp.body)


def patch(api: RecotapApi, mappings: Any, **kw: Any) -> tuple[Response, dict[str, Any]]:
    return call(api, "PATCH", "/accounts/external-ids", body={"mappings": mappings}, **kw)


def m(domain: Any, external_id: Any) -> dict[str, Any]:
    return {"domain": domain, "externalId": external_id}


def assert_custom_error(resp: Response, body: dict[str, Any], status: int, message: str) -> None:
    assert resp.status == status
    assert body["statusCode"] == status
    assert set(body) == {"statusCode", "timestamp", "path", "message", "customMessage", "data"}
    assert body["data"] is None
    assert body["customMessage"] == message
    assert ISO_RE.match(body["timestamp"])


def violations(resp: Response, body: dict[str, Any]) -> list[dict[str, Any]]:
    assert resp.status == 400
    assert body["message"] == "Bad Request"
    assert set(body) == {"statusCode", "timestamp", "path", "message", "data"}
    assert isinstance(body["data"], list) and body["data"]
    return list(body["data"])


def by_domain(api: RecotapApi, org: str = ORG) -> dict[str, dict[str, Any]]:
    return {a["domain"]: a for a in api.accounts(org)}


@pytest.fixture
def api() -> RecotapApi:
    a = make_api()
    a.add_account(ORG, name="Acme Inc", domain="acme.com")
    a.add_account(ORG, name="Globex", domain="https://www.Globex.io/about", external_id="crm-1")
    a.add_account(ORG, name="Müller GmbH", domain="müller.de")
    a.add_account(ORG, name="Initech", domain="xn--bcher-kva.example")
    a.add_account(OTHER_ORG, name="Acme (B)", domain="acme.com")
    return a


# -- envelope, auth, routing ------------------------------------------------------------------


def test_success_envelope_is_exact(api: RecotapApi) -> None:
    resp, body = call(api, "GET", "/accounts/missing-external-ids")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert set(body) == {"statusCode", "timestamp", "path", "data"}
    assert body["statusCode"] == 200
    assert body["path"] == "/api/v1/accounts/missing-external-ids"
    assert body["timestamp"] == "2023-11-14T22:13:20.000Z"


@pytest.mark.parametrize(
    ("method", "subpath"),
    [
        ("GET", "/accounts"),
        ("GET", "/accounts/missing-external-ids"),
        ("PATCH", "/accounts/external-ids"),
    ],
)
def test_every_route_requires_the_key(api: RecotapApi, method: str, subpath: str) -> None:
    body = {"mappings": [m("acme.com", "x")]} if method == "PATCH" else None
    resp, out = call(api, method, subpath, key=None, body=body)
    assert_custom_error(resp, out, 401, "X-Api-Key header is required")
    assert out["message"] == "Unauthorized"
    assert out["path"] == "/api/v1" + subpath
    resp, out = call(api, method, subpath, key="", body=body)
    assert_custom_error(resp, out, 401, "X-Api-Key header is required")
    resp, out = call(api, method, subpath, key="rtp_wrong", body=body)
    assert_custom_error(resp, out, 401, "Invalid API key")
    resp, out = call(api, method, subpath, key=KEY + " ", body=body)
    assert_custom_error(resp, out, 401, "Invalid API key")
    assert by_domain(api)["acme.com"]["externalId"] is None


def test_keys_are_scoped_to_their_organisation(api: RecotapApi) -> None:
    _, out = patch(api, [m("acme.com", "b-1")], key=OTHER_KEY)
    assert out["data"] == {"matched": 1, "updated": 1, "notFound": []}
    assert by_domain(api, OTHER_ORG)["acme.com"]["externalId"] == "b-1"
    assert by_domain(api)["acme.com"]["externalId"] is None
    _, out = call(api, "GET", "/accounts", key=OTHER_KEY)
    assert [a["name"] for a in out["data"]["data"]] == ["Acme (B)"]
    _, out = patch(api, [m("globex.io", "x")], key=OTHER_KEY)
    assert out["data"]["notFound"] == ["globex.io"]


def test_add_key_rules() -> None:
    api = make_api()
    api.add_key(KEY, ORG)  # idempotent for the same organisation
    with pytest.raises(ValueError, match="another organisation"):
        api.add_key(KEY, OTHER_ORG)
    for bad in ("", " padded "):
        with pytest.raises(ValueError):
            api.add_key(bad, ORG)


def test_keys_are_not_stored_in_clear() -> None:
    api = make_api()
    with api.store.read() as db:
        dump = "\n".join(db.iterdump())
    assert KEY not in dump


def test_unknown_path_is_404_even_without_a_key(api: RecotapApi) -> None:
    for key in (KEY, None):
        resp, out = call(api, "GET", "/accounts/nope", key=key)
        assert_custom_error(resp, out, 404, "Cannot GET /api/v1/accounts/nope")
        assert out["message"] == "Not Found"
    resp, out = call(api, "POST", "/accounts/", key=KEY)
    assert_custom_error(resp, out, 404, "Cannot POST /api/v1/accounts/")


@pytest.mark.parametrize(
    ("method", "subpath", "allow"),
    [
        ("POST", "/accounts", "GET"),
        ("PATCH", "/accounts", "GET"),
        ("DELETE", "/accounts/missing-external-ids", "GET"),
        ("GET", "/accounts/external-ids", "PATCH"),
        ("PUT", "/accounts/external-ids", "PATCH"),
    ],
)
def test_wrong_method_is_405(api: RecotapApi, method: str, subpath: str, allow: str) -> None:
    resp, out = call(api, method, subpath)
    assert resp.status == 405
    assert out["message"] == "Method Not Allowed"
    assert out["data"] is None and allow in out["customMessage"]
    assert resp.headers["Allow"] == allow


# -- rate limit -----------------------------------------------------------------------------


def test_rate_limit_sliding_window_and_retry_after() -> None:
    api = make_api(rps=2)
    tick = Ticker()
    api.monotonic = tick
    assert call(api, "GET", "/accounts")[0].status == 200
    tick.t += 0.4
    assert call(api, "GET", "/accounts")[0].status == 200
    tick.t += 0.1
    resp, out = call(api, "GET", "/accounts")
    assert_custom_error(resp, out, 429, out["customMessage"])
    assert out["message"] == "Too Many Requests"
    assert resp.headers["Retry-After"] == "1"
    # The other key has its own budget.
    assert call(api, "GET", "/accounts", key=OTHER_KEY)[0].status == 200
    # One second after the first request, one slot frees up, not two.
    tick.t = 1001.0
    assert call(api, "GET", "/accounts")[0].status == 200
    assert call(api, "GET", "/accounts")[0].status == 429


def test_rejected_requests_do_not_count() -> None:
    api = make_api(rps=1)
    tick = Ticker()
    api.monotonic = tick
    assert call(api, "GET", "/accounts")[0].status == 200
    for step in (0.3, 0.3, 0.3):
        tick.t += step
        assert call(api, "GET", "/accounts")[0].status == 429
    tick.t = 1001.0
    assert call(api, "GET", "/accounts")[0].status == 200


def test_retry_after_rounds_up_whole_seconds() -> None:
    api = make_api(rps=0.25)  # one request per four seconds
    tick = Ticker()
    api.monotonic = tick
    assert call(api, "GET", "/accounts")[0].status == 200
    tick.t += 0.5
    resp, _ = call(api, "GET", "/accounts")
    assert resp.status == 429 and resp.headers["Retry-After"] == "4"
    tick.t += 3.2
    resp, _ = call(api, "GET", "/accounts")
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    tick.t += 0.3
    assert call(api, "GET", "/accounts")[0].status == 200


def test_rate_limit_is_adjustable_and_ignores_unauthenticated_requests() -> None:
    api = make_api()
    tick = Ticker()
    api.monotonic = tick
    for _ in range(50):
        assert call(api, "GET", "/accounts")[0].status == 200
    api.rps = 1
    for _ in range(5):
        assert call(api, "GET", "/accounts", key="wrong")[0].status == 401
    assert call(api, "GET", "/accounts")[0].status == 200
    assert call(api, "GET", "/accounts")[0].status == 429
    api.reset()
    api.add_key(KEY, ORG)
    assert call(api, "GET", "/accounts")[0].status == 200
    api.rps = None
    assert call(api, "GET", "/accounts")[0].status == 200
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            api.rps = bad


def test_rate_limited_patch_writes_nothing() -> None:
    api = make_api(rps=1)
    api.monotonic = Ticker()
    api.add_account(ORG, name="A", domain="a.com")
    api.add_account(ORG, name="B", domain="b.com")
    assert patch(api, [m("a.com", "1")])[0].status == 200
    resp, _ = patch(api, [m("b.com", "2")])
    assert resp.status == 429
    assert by_domain(api)["b.com"]["externalId"] is None


# -- PATCH /accounts/external-ids: request errors ----------------------------------------------


def test_patch_needs_json_content_type(api: RecotapApi) -> None:
    raw = orjson.dumps({"mappings": [m("acme.com", "x")]})
    resp, out = call(api, "PATCH", "/accounts/external-ids", raw=raw)
    assert_custom_error(resp, out, 415, "Content-Type must be application/json")
    resp, out = call(
        api, "PATCH", "/accounts/external-ids", raw=raw, headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 415
    resp, out = call(
        api,
        "PATCH",
        "/accounts/external-ids",
        raw=raw,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert resp.status == 200
    assert out["data"] == {"matched": 1, "updated": 1, "notFound": []}


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"mappings": [}', b"\xff\xfe", b"NaN"])
def test_patch_rejects_a_body_that_is_not_json(api: RecotapApi, raw: bytes) -> None:
    resp, out = call(
        api,
        "PATCH",
        "/accounts/external-ids",
        raw=raw,
        headers={"content-type": "application/json"},
    )
    assert resp.status == 400 and out["data"] is None
    assert out["customMessage"].startswith("Request body is not valid JSON")


@pytest.mark.parametrize("payload", [[], "mappings", 5, None])
def test_patch_rejects_a_body_that_is_not_an_object(api: RecotapApi, payload: Any) -> None:
    resp, out = call(api, "PATCH", "/accounts/external-ids", body=payload)
    if payload is None:  # JSON null
        resp, out = call(
            api,
            "PATCH",
            "/accounts/external-ids",
            raw=b"null",
            headers={"content-type": "application/json"},
        )
    assert_custom_error(resp, out, 400, "Request body must be a JSON object")


IS_ARRAY = {"property": "mappings", "constraints": {"isArray": "mappings must be an array"}}


@pytest.mark.parametrize(
    "payload", [{}, {"mappings": None}, {"mappings": "a.com"}, {"mappings": {}}]
)
def test_patch_mappings_must_be_an_array(api: RecotapApi, payload: Any) -> None:
    resp, out = call(api, "PATCH", "/accounts/external-ids", body=payload)
    assert violations(resp, out) == [IS_ARRAY]


def test_patch_empty_body_is_a_validation_error(api: RecotapApi) -> None:
    resp, out = call(
        api,
        "PATCH",
        "/accounts/external-ids",
        raw=b"",
        headers={"content-type": "application/json"},
    )
    assert violations(resp, out) == [IS_ARRAY]


def test_patch_array_size_limits(api: RecotapApi) -> None:
    resp, out = patch(api, [])
    assert violations(resp, out) == [
        {
            "property": "mappings",
            "constraints": {"arrayMinSize": "mappings must contain at least 1 elements"},
        }
    ]
    too_many = [m("acme.com", "x")] + [m(f"d{i}.com", f"id-{i}") for i in range(100)]
    resp, out = patch(api, too_many)
    assert violations(resp, out) == [
        {
            "property": "mappings",
            "constraints": {"arrayMaxSize": "mappings must contain no more than 100 elements"},
        }
    ]
    assert by_domain(api)["acme.com"]["externalId"] is None
    resp, out = patch(api, too_many[:100])
    assert resp.status == 200
    assert out["data"]["matched"] == 1 and len(out["data"]["notFound"]) == 99


def test_patch_collects_every_element_error_and_writes_nothing(api: RecotapApi) -> None:
    mappings: list[Any] = [
        m("acme.com", "ok"),  # valid, still not written
        {"externalId": "x"},
        m("", 5),
        m(None, None),
        m("   ", "  "),
        "acme.com",
        ["acme.com", "x"],
        None,
        {"domain": "acme.com", "externalId": "y", "overwrite": True},
        m(12, "z"),
    ]
    resp, out = call(
        api,
        "PATCH",
        "/accounts/external-ids",
        body={"mappings": mappings, "dryRun": True},
    )
    both = {"isString": "domain must be a string", "isNotEmpty": "domain should not be empty"}
    both_id = {
        "isString": "externalId must be a string",
        "isNotEmpty": "externalId should not be empty",
    }
    assert violations(resp, out) == [
        {
            "property": "dryRun",
            "constraints": {"whitelistValidation": "property dryRun should not exist"},
        },
        {"property": "mappings.1.domain", "constraints": both},
        {"property": "mappings.2.domain", "constraints": {"isNotEmpty": both["isNotEmpty"]}},
        {"property": "mappings.2.externalId", "constraints": {"isString": both_id["isString"]}},
        {"property": "mappings.3.domain", "constraints": both},
        {"property": "mappings.3.externalId", "constraints": both_id},
        {"property": "mappings.4.domain", "constraints": {"isNotEmpty": both["isNotEmpty"]}},
        {
            "property": "mappings.4.externalId",
            "constraints": {"isNotEmpty": both_id["isNotEmpty"]},
        },
        {"property": "mappings.5", "constraints": {"isObject": "mappings.5 must be an object"}},
        {"property": "mappings.6", "constraints": {"isObject": "mappings.6 must be an object"}},
        {"property": "mappings.7", "constraints": {"isObject": "mappings.7 must be an object"}},
        {
            "property": "mappings.8.overwrite",
            "constraints": {"whitelistValidation": "property overwrite should not exist"},
        },
        {"property": "mappings.9.domain", "constraints": {"isString": both["isString"]}},
    ]
    assert all(a["externalId"] in (None, "crm-1") for a in api.accounts(ORG))


def test_patch_refuses_query_parameters(api: RecotapApi) -> None:
    resp, out = call(
        api,
        "PATCH",
        "/accounts/external-ids",
        query={"dryRun": "true"},
        body={"mappings": [m("acme.com", "x")]},
    )
    assert violations(resp, out) == [
        {
            "property": "dryRun",
            "constraints": {"whitelistValidation": "property dryRun should not exist"},
        }
    ]
    assert by_domain(api)["acme.com"]["externalId"] is None


# -- PATCH /accounts/external-ids: matching rules ----------------------------------------------


def test_patch_maps_overwrites_and_reports(api: RecotapApi) -> None:
    clock = api.clock
    assert isinstance(clock, FixedClock)
    clock.t += 60
    resp, out = patch(
        api,
        [
            m("https://WWW.ACME.com/pricing", "crm-9"),
            m("globex.io", "crm-2"),  # overwrites crm-1 without warning
            m("unknown.com", "crm-3"),
            m("not a domain", "crm-4"),
        ],
    )
    assert resp.status == 200
    assert out["path"] == "/api/v1/accounts/external-ids"
    assert out["data"] == {"matched": 2, "updated": 2, "notFound": ["unknown.com", "not a domain"]}
    accounts = by_domain(api)
    assert accounts["acme.com"]["externalId"] == "crm-9"
    assert accounts["globex.io"]["externalId"] == "crm-2"
    assert accounts["acme.com"]["updatedAt"] == "2023-11-14T22:14:20.000Z"
    assert accounts["xn--mller-kva.de"]["updatedAt"] == "2023-11-14T22:13:20.000Z"


def test_patch_same_id_is_matched_not_updated(api: RecotapApi) -> None:
    before = by_domain(api)["globex.io"]["updatedAt"]
    api.clock.t += 5  # type: ignore[attr-defined]
    _, out = patch(api, [m("globex.io", "crm-1"), m("acme.com", "new")])
    assert out["data"] == {"matched": 2, "updated": 1, "notFound": []}
    assert by_domain(api)["globex.io"]["updatedAt"] == before


def test_patch_last_mapping_wins_across_spellings(api: RecotapApi) -> None:
    _, out = patch(
        api,
        [
            m("acme.com", "first"),
            m("unknown.com", "a"),
            m("http://www.acme.com:8080/", "second"),
            m("unknown.com", "b"),
            m("ACME.COM.", "third"),
            m("Unknown.com", "c"),
        ],
    )
    assert out["data"] == {
        "matched": 1,
        "updated": 1,
        "notFound": ["unknown.com", "Unknown.com"],
    }
    assert by_domain(api)["acme.com"]["externalId"] == "third"


def test_patch_unicode_and_punycode_spellings_meet(api: RecotapApi) -> None:
    _, out = patch(api, [m("xn--mller-kva.de", "p-1"), m("bücher.example", "u-1")])
    assert out["data"] == {"matched": 2, "updated": 2, "notFound": []}
    accounts = by_domain(api)
    assert accounts["xn--mller-kva.de"]["externalId"] == "p-1"
    assert accounts["xn--bcher-kva.example"]["externalId"] == "u-1"
    _, out = patch(api, [m("MÜLLER.de", "p-2")])
    assert out["data"] == {"matched": 1, "updated": 1, "notFound": []}


def test_patch_counts_every_account_on_a_shared_domain() -> None:
    api = make_api()
    api.add_account(ORG, name="Acme US", domain="acme.com")
    api.add_account(ORG, name="Acme EU", domain="www.acme.com", external_id="eu")
    _, out = patch(api, [m("acme.com", "eu")])
    assert out["data"] == {"matched": 2, "updated": 1, "notFound": []}
    assert {a["externalId"] for a in api.accounts(ORG)} == {"eu"}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # index into BASES (>= 3: not stored)
            st.sampled_from(["{}", "https://www.{}/x", "{}.", "{}:443", " {} "]),
            st.sampled_from(["e1", "e2", "e3"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=100,
    )
)
def test_patch_agrees_with_a_reference_model(
    ops: list[tuple[int, str, str, bool]],
) -> None:
    bases = ["alpha.com", "beta.io", "gamma.de", "delta.com", "eps.io", "zeta.org"]
    api = make_api()
    api.add_account(ORG, name="Alpha", domain="alpha.com", external_id="e1")
    api.add_account(ORG, name="Beta", domain="beta.io")
    api.add_account(ORG, name="Gamma", domain="gamma.de")
    mappings = []
    final: dict[str, str] = {}
    sent_unknown: list[str] = []
    for base_i, pattern, ext, upper in ops:
        base = bases[base_i]
        text = pattern.format(base.upper() if upper else base)
        mappings.append(m(text, ext))
        final[base] = ext
        if base_i >= 3 and text not in sent_unknown:
            sent_unknown.append(text)
    stored_before = {"alpha.com": "e1", "beta.io": None, "gamma.de": None}
    resp, out = patch(api, mappings)
    assert resp.status == 200
    known = [b for b in final if b in stored_before]
    assert out["data"] == {
        "matched": len(known),
        "updated": sum(final[b] != stored_before[b] for b in known),
        "notFound": sent_unknown,
    }
    after = by_domain(api)
    for base, before in stored_before.items():
        assert after[base]["externalId"] == final.get(base, before)


def test_concurrent_patches_lose_nothing() -> None:
    api = make_api()
    for i in range(400):
        api.add_account(ORG, name=f"Co {i}", domain=f"co{i}.com")
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for start in range(w * 50, w * 50 + 50, 10):
            _, out = patch(api, [m(f"co{i}.com", f"w{w}-{i}") for i in range(start, start + 10)])
            with lock:
                results.append(out["data"])

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["updated"] for r in results) == 400
    assert all(a["externalId"] for a in api.accounts(ORG))


# -- GET /accounts/missing-external-ids -----------------------------------------------------------


def test_missing_external_ids_default_limit_order_and_shape() -> None:
    api = make_api()
    api.seed_demo(ORG)
    unmapped = [a for a in api.accounts(ORG) if a["externalId"] is None]
    resp, out = call(api, "GET", "/accounts/missing-external-ids")
    assert resp.status == 200
    assert out["data"] == [{"name": a["name"], "domain": a["domain"]} for a in unmapped[:100]]
    _, out = call(api, "GET", "/accounts/missing-external-ids", query={"limit": "1000"})
    assert len(out["data"]) == len(unmapped)
    _, out = call(api, "GET", "/accounts/missing-external-ids", query={"limit": "0" * 30 + "1"})
    assert out["data"] == [{"name": unmapped[0]["name"], "domain": unmapped[0]["domain"]}]


def test_missing_external_ids_walk_by_mapping_pages() -> None:
    api = make_api()
    api.seed_demo(ORG, count=400)
    expected = {a["domain"] for a in api.accounts(ORG) if a["externalId"] is None}
    seen: set[str] = set()
    rounds = 0
    while True:
        _, out = call(api, "GET", "/accounts/missing-external-ids", query={"limit": "37"})
        page = out["data"]
        if not page:
            break
        rounds += 1
        domains = [row["domain"] for row in page]
        assert not seen & set(domains)
        seen.update(domains)
        _, res = patch(api, [m(d, f"new-{d}") for d in domains])
        assert res["data"] == {"matched": len(domains), "updated": len(domains), "notFound": []}
    assert seen == expected
    assert rounds == -(-len(expected) // 37)


LIMIT_CASES: list[tuple[str, dict[str, str]]] = [
    ("0", {"min": "limit must not be less than 1"}),
    ("-3", {"min": "limit must not be less than 1"}),
    ("1001", {"max": "limit must not be greater than 1000"}),
    ("99999999999999999999", {"max": "limit must not be greater than 1000"}),
    ("9" * 5000, {"max": "limit must not be greater than 1000"}),
    ("-" + "9" * 5000, {"min": "limit must not be less than 1"}),
    ("abc", {"isInt": "limit must be an integer number"}),
    ("1.5", {"isInt": "limit must be an integer number"}),
    ("", {"isInt": "limit must be an integer number"}),
    (" 5", {"isInt": "limit must be an integer number"}),
    ("1e2", {"isInt": "limit must be an integer number"}),
]


@pytest.mark.parametrize("subpath", ["/accounts/missing-external-ids", "/accounts"])
@pytest.mark.parametrize(("value", "constraints"), LIMIT_CASES)
def test_limit_validation(
    api: RecotapApi, subpath: str, value: str, constraints: dict[str, str]
) -> None:
    resp, out = call(api, "GET", subpath, query={"limit": value})
    assert violations(resp, out) == [{"property": "limit", "constraints": constraints}]


@pytest.mark.parametrize("subpath", ["/accounts/missing-external-ids", "/accounts"])
def test_repeated_or_unknown_query_parameters_are_refused(api: RecotapApi, subpath: str) -> None:
    resp, out = call(api, "GET", subpath, query="limit=5&limit=6")
    assert violations(resp, out) == [
        {"property": "limit", "constraints": {"isInt": "limit must be an integer number"}}
    ]
    resp, out = call(api, "GET", subpath, query={"offset": "100"})
    assert violations(resp, out) == [
        {
            "property": "offset",
            "constraints": {"whitelistValidation": "property offset should not exist"},
        }
    ]


def test_missing_external_ids_has_no_cursor(api: RecotapApi) -> None:
    resp, out = call(api, "GET", "/accounts/missing-external-ids", query={"cursor": "x"})
    assert violations(resp, out)[0]["property"] == "cursor"


# -- GET /accounts ------------------------------------------------------------------------


def test_account_shape(api: RecotapApi) -> None:
    _, out = call(api, "GET", "/accounts")
    page = out["data"]
    assert set(page) == {"data", "nextCursor", "hasNextPage", "syncTimestamp"}
    first = page["data"][0]
    assert set(first) == {
        "rtp_aid",
        "name",
        "domain",
        "externalId",
        "intentScore",
        "engagementScore",
        "fitScore",
        "customFields",
        "updatedAt",
    }
    assert first["rtp_aid"] == "rtp_000001"
    assert first["externalId"] is None
    assert first["customFields"] == {}
    for a in page["data"]:
        assert re.fullmatch(r"rtp_\d{6,}", a["rtp_aid"])
        assert ISO_RE.match(a["updatedAt"])
        for score in ("intentScore", "engagementScore", "fitScore"):
            assert isinstance(a[score], int) and 0 <= a[score] <= 100
    assert [a["domain"] for a in page["data"]] == [
        "acme.com",
        "globex.io",
        "xn--mller-kva.de",
        "xn--bcher-kva.example",
    ]
    assert page["hasNextPage"] is False
    assert page["nextCursor"] is not None  # non-null on the last, non-empty page


def walk(api: RecotapApi, query: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        q = dict(query)
        if cursor is not None:
            q["cursor"] = cursor
        resp, out = call(api, "GET", "/accounts", query=q)
        assert resp.status == 200, out
        pages += 1
        page = out["data"]
        rows.extend(page["data"])
        if not page["hasNextPage"]:
            assert page["nextCursor"] is not None or not page["data"]
            return rows, pages
        assert page["nextCursor"]
        cursor = page["nextCursor"]


def test_full_pagination_walk_of_the_demo_set() -> None:
    api = make_api()
    api.seed_demo(ORG)
    everything = api.accounts(ORG)
    assert len(everything) == 1500
    for limit, pages in (("1000", 2), ("400", 4), ("100", 15)):
        rows, n = walk(api, {"limit": limit})
        assert rows == everything
        assert n == pages
    rows, n = walk(api, {})
    assert rows == everything and n == 15


def test_last_page_cursor_leads_to_an_empty_page() -> None:
    api = make_api()
    for i in range(200):
        api.add_account(ORG, name=f"Co {i}", domain=f"co{i}.com")
    _, first = call(api, "GET", "/accounts")
    assert first["data"]["hasNextPage"] is True
    _, second = call(api, "GET", "/accounts", query={"cursor": first["data"]["nextCursor"]})
    assert len(second["data"]["data"]) == 100
    assert second["data"]["hasNextPage"] is False
    assert second["data"]["nextCursor"] is not None
    _, third = call(api, "GET", "/accounts", query={"cursor": second["data"]["nextCursor"]})
    assert third["data"]["data"] == []
    assert third["data"]["hasNextPage"] is False
    assert third["data"]["nextCursor"] is None


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 60), limit=st.integers(1, 25))
def test_pagination_walk_property(count: int, limit: int) -> None:
    api = make_api()
    for i in range(count):
        api.add_account(ORG, name=f"Co {i}", domain=f"co{i}.com")
        if i % 7 == 0:
            api.add_account(OTHER_ORG, name=f"Other {i}", domain=f"co{i}.com")
    rows, pages = walk(api, {"limit": str(limit)})
    assert rows == api.accounts(ORG)
    assert pages == max(1, -(-count // limit))


@pytest.mark.parametrize(
    "cursor",
    ["", "garbage!", "cnRwOjE=", "cnRwOjE", "eHl6OjE", "cnRwOi0x", "cnRwOmFi", "CNRWOJE", "%%%"],
)
def test_bad_cursor_is_400(api: RecotapApi, cursor: str) -> None:
    if cursor == "cnRwOjE":  # the server's own spelling of id 1 is fine
        assert call(api, "GET", "/accounts", query={"cursor": cursor})[0].status == 200
        return
    resp, out = call(api, "GET", "/accounts", query={"cursor": cursor})
    assert_custom_error(
        resp, out, 400, "Invalid cursor: pass the nextCursor of a previous answer as is"
    )


@given(st.integers(0, 10**12))
def test_cursor_round_trip(row_id: int) -> None:
    cursor = _encode_cursor(row_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert _decode_cursor(cursor) == row_id


def test_validation_errors_are_collected_before_the_cursor(api: RecotapApi) -> None:
    resp, out = call(
        api,
        "GET",
        "/accounts",
        query={"limit": "0", "lastSync": "yesterday", "domains": "acme.com", "cursor": "bad"},
    )
    props = [v["property"] for v in violations(resp, out)]
    assert sorted(props) == ["domains", "lastSync", "limit"]


def test_last_sync_is_strictly_after() -> None:
    clock = FixedClock()
    api = make_api(clock=clock)
    api.add_account(ORG, name="Old", domain="old.com")
    clock.t += 10
    api.add_account(ORG, name="Mid", domain="mid.com")
    clock.t += 10
    _, out = patch(api, [m("old.com", "o-1")])
    assert out["data"]["updated"] == 1

    def names(last_sync: str) -> list[str]:
        resp, out = call(api, "GET", "/accounts", query={"lastSync": last_sync})
        assert resp.status == 200, out
        return [a["name"] for a in out["data"]["data"]]

    assert names("2023-11-14T22:13:20.000Z") == ["Old", "Mid"]
    assert names("2023-11-14T22:13:29.999Z") == ["Old", "Mid"]
    assert names("2023-11-14T22:13:30.000Z") == ["Old"]  # equal is not after
    assert names("2023-11-14T22:13:30Z") == ["Old"]
    assert names("2023-11-14T23:13:30+01:00") == ["Old"]
    assert names("2023-11-14T17:13:30-0500") == ["Old"]
    assert names("2023-11-14T22:13:30") == ["Old"]  # no offset: UTC
    assert names("2023-11-14T22:13:39.9999Z") == ["Old"]
    assert names("2023-11-14T22:13:40Z") == []
    assert names("2023-11-14") == ["Old", "Mid"]
    assert names("2023-11-15") == []


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "1700000000",
        "2023-13-01",
        "2023-02-30T00:00:00Z",
        "2023-11-14T25:00:00Z",
        "2023-11-14T22:13:30+24:00",
        "2023-11-14T22:13:30Zjunk",
        "14/11/2023",
    ],
)
def test_bad_last_sync_is_a_validation_error(api: RecotapApi, value: str) -> None:
    resp, out = call(api, "GET", "/accounts", query={"lastSync": value})
    assert violations(resp, out) == [
        {
            "property": "lastSync",
            "constraints": {"isIso8601": "lastSync must be a valid ISO 8601 date string"},
        }
    ]


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        ),
    )
)
def test_iso_parsing_matches_datetime(dt: datetime) -> None:
    expected = (dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)
    assert _parse_iso_ms(dt.isoformat()) == expected
    utc = dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    assert _parse_iso_ms(utc + "Z") == expected


def test_sync_timestamp_catches_writes_in_the_same_millisecond() -> None:
    clock = FixedClock()
    api = make_api(clock=clock)
    api.add_account(ORG, name="A", domain="a.com")
    api.add_account(ORG, name="B", domain="b.com")
    _, listing = call(api, "GET", "/accounts")
    sync = listing["data"]["syncTimestamp"]
    assert ISO_RE.match(sync)
    assert sync <= listing["timestamp"]
    patch(api, [m("b.com", "b-1")])  # same millisecond as the listing
    _, out = call(api, "GET", "/accounts", query={"lastSync": sync})
    assert [a["name"] for a in out["data"]["data"]] == ["A", "B"]  # A resent: harmless
    clock.t += 1
    _, again = call(api, "GET", "/accounts", query={"lastSync": out["data"]["syncTimestamp"]})
    assert len(again["data"]["data"]) == 2  # written at the same instant as that listing
    _, later = call(api, "GET", "/accounts", query={"lastSync": again["data"]["syncTimestamp"]})
    assert later["data"]["data"] == []


def test_domains_filter_matches_after_normalisation(api: RecotapApi) -> None:
    query = {"domains": orjson.dumps(["HTTPS://www.Acme.com/x", "müller.de", "nope"]).decode()}
    _, out = call(api, "GET", "/accounts", query=query)
    assert [a["name"] for a in out["data"]["data"]] == ["Acme Inc", "Müller GmbH"]
    query = {"domains": '["xn--bcher-kva.example", "not a domain"]', "lastSync": "2000-01-01"}
    _, out = call(api, "GET", "/accounts", query=query)
    assert [a["name"] for a in out["data"]["data"]] == ["Initech"]
    _, out = call(api, "GET", "/accounts", query={"domains": '["", "::"]'})
    assert out["data"]["data"] == [] and out["data"]["hasNextPage"] is False


def test_domains_filter_pages_too() -> None:
    api = make_api()
    for i in range(30):
        api.add_account(ORG, name=f"Co {i}", domain=f"co{i}.com")
    wanted = [f"co{i}.com" for i in range(0, 30, 3)]
    rows, pages = walk(api, {"limit": "4", "domains": orjson.dumps(wanted).decode()})
    assert [r["domain"] for r in rows] == wanted
    assert pages == 3


@pytest.mark.parametrize(
    ("value", "constraints"),
    [
        ("acme.com", {"isJson": "domains must be a JSON array string of domains"}),
        ('"acme.com"', {"isJson": "domains must be a JSON array string of domains"}),
        ('{"a": 1}', {"isJson": "domains must be a JSON array string of domains"}),
        ("['acme.com']", {"isJson": "domains must be a JSON array string of domains"}),
        ("[]", {"arrayMinSize": "domains must contain at least 1 elements"}),
        ('["a.com", 5]', {"isString": "each value in domains must be a string"}),
        ('["a.com", null]', {"isString": "each value in domains must be a string"}),
        (
            orjson.dumps([f"d{i}.com" for i in range(101)]).decode(),
            {"arrayMaxSize": "domains must contain no more than 100 elements"},
        ),
    ],
)
def test_bad_domains_filter(api: RecotapApi, value: str, constraints: dict[str, str]) -> None:
    resp, out = call(api, "GET", "/accounts", query={"domains": value})
    assert violations(resp, out) == [{"property": "domains", "constraints": constraints}]


def test_domains_filter_accepts_exactly_100(api: RecotapApi) -> None:
    value = orjson.dumps(["acme.com"] + [f"d{i}.com" for i in range(99)]).decode()
    resp, out = call(api, "GET", "/accounts", query={"domains": value})
    assert resp.status == 200 and len(out["data"]["data"]) == 1


# -- domain normalisation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme.com", "acme.com"),
        ("  ACME.com  ", "acme.com"),
        ("https://www.acme.com", "acme.com"),
        ("http://acme.com:8080/path?q=1#frag", "acme.com"),
        ("acme.com/path", "acme.com"),
        ("acme.com?x", "acme.com"),
        ("acme.com#x", "acme.com"),
        ("acme.com.", "acme.com"),
        ("www.acme.com.", "acme.com"),
        ("user:secret@acme.com", "acme.com"),
        ("ftp://user@www.acme.com:21", "acme.com"),
        ("//acme.com/x", "acme.com"),
        ("sub.acme.co.uk", "sub.acme.co.uk"),
        ("www.com", "www.com"),
        ("acme.com:", "acme.com"),
        ("müller.de", "xn--mller-kva.de"),
        ("https://www.MÜLLER.de/", "xn--mller-kva.de"),
        ("XN--MLLER-KVA.DE", "xn--mller-kva.de"),
        ("東京データ.jp", "xn--5ckp3n428i34z.jp"),
        (
            "\uff57\uff57\uff57\uff0e\uff41\uff43\uff4d\uff45\uff0e\uff43\uff4f\uff4d",
            "acme.com",
        ),  # fullwidth
        ("acme\u3002com", "acme.com"),  # ideographic full stop
        ("", None),
        ("   ", None),
        ("acme", None),
        ("acme..com", None),
        (".acme.com", None),
        ("acme.com..", None),
        ("-acme.com", None),
        ("acme-.com", None),
        ("ac_me.com", None),
        ("ac me.com", None),
        ("acme.com:http", None),
        ("192.168.0.1", None),
        ("[::1]", None),
        ("http://", None),
        ("xn--zzzz.de", None),
        ("a" * 64 + ".com", None),
    ],
)
def test_normalize_domain_cases(raw: str, expected: str | None) -> None:
    assert normalize_domain(raw) == expected


def test_normalize_domain_rejects_non_strings() -> None:
    for value in (None, 5, b"acme.com", ["acme.com"]):
        assert normalize_domain(value) is None


LABEL = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789äöüéçñåø"),
    min_size=1,
    max_size=12,
)
HOST = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(LABEL, min_size=1, max_size=3),
    st.sampled_from(["com", "de", "io", "co.uk"]),
)


@given(
    host=HOST,
    scheme=st.sampled_from(["", "http://", "https://", "HTTPS://", "//"]),
    userinfo=st.sampled_from(["", "me@", "me:pw@"]),
    www=st.booleans(),
    port=st.sampled_from(["", ":80", ":8443"]),
    tail=st.sampled_from(["", "/", "/a/b", "?q=1", "#f", "/x?y#z"]),
    dot=st.booleans(),
    upper=st.booleans(),
)
def test_normalize_domain_ignores_decoration(
    host: str,
    scheme: str,
    userinfo: str,
    www: bool,
    port: str,
    tail: str,
    dot: bool,
    upper: bool,
) -> None:
    base = normalize_domain(host)
    assert base is not None
    decorated = f"{'www.' if www else ''}{host}{'.' if dot else ''}"
    decorated = decorated.upper() if upper else decorated
    assert normalize_domain(f"  {scheme}{userinfo}{decorated}{port}{tail} ") == base
    assert normalize_domain(base) == base  # idempotent
    assert base.isascii() and base == base.lower()


@given(HOST)
def test_unicode_and_punycode_forms_agree(host: str) -> None:
    puny = host.encode("idna").decode("ascii")
    assert normalize_domain(host) == normalize_domain(puny) == normalize_domain(puny.upper())


# -- state helpers -------------------------------------------------------------------------


def test_add_account_normalises_and_validates() -> None:
    api = make_api()
    acct = api.add_account(
        ORG,
        name="Acme",
        domain="HTTPS://WWW.ACME.COM/x",
        external_id="crm-7",
        custom_fields={"industry": "Software", "employees": 12},
    )
    assert acct["domain"] == "acme.com"
    assert acct["externalId"] == "crm-7"
    assert acct["customFields"] == {"industry": "Software", "employees": 12}
    assert acct["updatedAt"] == "2023-11-14T22:13:20.000Z"
    assert api.accounts(ORG) == [acct]
    assert api.accounts() == [acct]
    assert api.accounts(OTHER_ORG) == []
    with pytest.raises(ValueError, match="usable domain"):
        api.add_account(ORG, name="X", domain="not a domain")
    with pytest.raises(ValueError, match="name"):
        api.add_account(ORG, name=" ", domain="x.com")
    with pytest.raises(ValueError, match="external_id"):
        api.add_account(ORG, name="X", domain="x.com", external_id="  ")
    with pytest.raises(ValueError, match="JSON"):
        api.add_account(ORG, name="X", domain="x.com", custom_fields={"a": object()})
    assert len(api.accounts()) == 1


def test_reset_wipes_accounts_keys_and_numbering() -> None:
    api = make_api()
    api.seed_demo(ORG, count=20)
    api.reset()
    assert api.accounts() == []
    resp, out = call(api, "GET", "/accounts")
    assert_custom_error(resp, out, 401, "Invalid API key")
    api.add_key(KEY, ORG)
    assert api.add_account(ORG, name="A", domain="a.com")["rtp_aid"] == "rtp_000001"


def test_seed_demo_is_realistic_and_deterministic() -> None:
    first = make_api()
    first.seed_demo(ORG)
    accounts = first.accounts(ORG)
    assert len(accounts) == 1500
    domains = [a["domain"] for a in accounts]
    assert len(set(domains)) == 1500
    assert all(normalize_domain(d) == d for d in domains)
    punycode = [a for a in accounts if "xn--" in a["domain"]]
    assert 5 <= len(punycode) <= 30
    assert all(not a["name"].isascii() for a in punycode)
    unmapped = sum(a["externalId"] is None for a in accounts)
    assert 0.25 <= unmapped / 1500 <= 0.42
    ids = [a["externalId"] for a in accounts if a["externalId"] is not None]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"crm-\d{6}", i) for i in ids)
    assert len({a["intentScore"] for a in accounts}) > 50
    assert all(set(a["customFields"]) == {"industry", "employees"} for a in accounts)
    assert len({a["customFields"]["industry"] for a in accounts}) > 5
    assert len({a["name"] for a in accounts}) == 1500

    second = make_api()
    second.seed_demo(ORG)
    assert second.accounts(ORG) == accounts
    third = make_api()
    third.seed_demo(ORG, seed=8)
    assert third.accounts(ORG) != accounts


def test_seed_demo_avoids_domains_already_taken() -> None:
    api = make_api()
    api.seed_demo(ORG, count=300)
    api.seed_demo(ORG, count=300)
    domains = [a["domain"] for a in api.accounts(ORG)]
    assert len(domains) == len(set(domains)) == 600
    api.seed_demo(OTHER_ORG, count=0)
    assert api.accounts(OTHER_ORG) == []


def test_seed_demo_beyond_the_name_space() -> None:
    api = make_api()
    api.seed_demo(ORG, count=14_000)
    accounts = api.accounts(ORG)
    assert len({a["domain"] for a in accounts}) == 14_000
    assert len({a["name"] for a in accounts}) == 14_000
