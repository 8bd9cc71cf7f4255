"""The Cora side of the sandbox over real HTTP, checked against the contract (section 1)."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recocora.sandbox import FaultConfig, Sandbox

BULK = "/external-api/accounts/bulk-upsert"
SUMMARY_KEYS = {
    "success", "code", "message", "dryRun", "requested", "created", "updated", "unchanged",
    "failed", "results",
}
SUCCESS_ROW_KEYS = {"index", "externalId", "status", "accountId", "updatedAt"}
FAILED_ROW_KEYS = {"index", "externalId", "status", "code", "message", "details"}
READ_ONLY_FIELDS = {
    "id": "acc_1",
    "organizationId": "org_1",
    "status_category": "OPEN",
    "currentEmailAddressId": "em_1",
    "emailAddressIds": ["em_1"],
    "createdAt": "2024-01-01T00:00:00.000Z",
    "updatedAt": "2024-01-01T00:00:00.000Z",
}
E164 = re.compile(r"\+[1-9][0-9]{0,14}")


def new_row(ext: str, **fields: Any) -> dict[str, Any]:
    """A row that creates a valid account: the three create-only requirements are present."""
    row: dict[str, Any] = {
        "externalId": ext,
        "portfolioId": "pf-1",
        "phoneNumber": "+15551230000",
        "metadata": {"filenumber": f"F-{ext}"},
    }
    row.update(fields)
    return row


def error_of(resp: requests.Response) -> tuple[int, str]:
    body = resp.json()
    assert body["success"] is False, body
    assert isinstance(body["message"], str) and body["message"], body
    return resp.status_code, body["code"]


def detail_fields(row: dict[str, Any]) -> set[str]:
    return {d["field"] for d in row["details"]}


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "path", ["/external-api/accounts?externalIds=a", "/external-api/accounts/a"]
)
def test_get_without_authorization_is_missing_auth_header(cora, path):
    resp = cora.request("GET", path, omit=["Authorization"])
    assert error_of(resp) == (401, "MISSING_AUTH_HEADER")


@pytest.mark.parametrize("header", ["Authorization", "X-Cora-Timestamp", "X-Cora-Signature"])
def test_write_missing_one_header_is_missing_auth_headers(sb, cora, header):
    resp = cora.upsert([new_row("a")], omit=[header])
    assert error_of(resp) == (401, "MISSING_AUTH_HEADERS")
    assert sb.cora_accounts() == []


def test_patch_missing_signature_headers_is_rejected(sb, cora):
    cora.upsert_ok([new_row("a", clientStatus="old")])
    resp = cora.patch("a", {"clientStatus": "new"}, signed=False)
    assert error_of(resp) == (401, "MISSING_AUTH_HEADERS")
    assert cora.account("a")["clientStatus"] == "old"


@pytest.mark.parametrize(
    "key",
    ["cora_org_nosuchkey.secret", "cora_org_without_a_dot", "not-a-cora-key"],
)
def test_unknown_or_malformed_key_is_invalid_api_key(sb, cora, key):
    resp = cora.upsert([new_row("a")], key=key, secret="secret")
    assert error_of(resp) == (401, "INVALID_API_KEY")
    resp = cora.get_accounts(["a"], key=key)
    assert error_of(resp) == (401, "INVALID_API_KEY")
    assert sb.cora_accounts() == []


def test_get_with_right_key_id_and_wrong_secret_is_invalid_api_key(cora):
    # A GET carries no signature, so the secret inside the bearer key is the only proof.
    key_id, _ = cora.key[len("cora_org_") :].split(".", 1)
    resp = cora.get_accounts(["a"], key=f"cora_org_{key_id}.wrong-secret")
    assert error_of(resp) == (401, "INVALID_API_KEY")


def test_write_with_right_key_id_and_wrong_secret_is_refused(sb, cora):
    key_id, _ = cora.key[len("cora_org_") :].split(".", 1)
    wrong = f"cora_org_{key_id}.wrong-secret"
    resp = cora.upsert([new_row("a")], key=wrong, secret="wrong-secret")
    status, code = error_of(resp)
    assert status == 401
    assert code in {"INVALID_API_KEY", "INVALID_REQUEST_SIGNATURE"}
    assert sb.cora_accounts() == []


def test_secret_is_everything_after_the_first_dot(sb, cora_for):
    sb.add_cora_key("cora_org_dotted.a.b.c", sb.cora_org)
    client = cora_for(sb.cora_base_url, "cora_org_dotted.a.b.c")
    assert client.secret == "a.b.c"
    answer = client.upsert_ok([new_row("a")])
    assert answer["created"] == 1


@pytest.mark.parametrize(
    "offset, millis",
    [(-400, False), (400, False), (-400, True), (400, True), (-86400, False), (86400, True)],
    ids=["old-s", "future-s", "old-ms", "future-ms", "day-old-s", "day-ahead-ms"],
)
def test_timestamp_outside_window(sb, cora, offset, millis):
    t = time.time() + offset
    ts = str(int(t * 1000)) if millis else str(int(t))
    resp = cora.upsert([new_row("a")], timestamp=ts)
    assert error_of(resp) == (401, "REQUEST_TIMESTAMP_OUTSIDE_WINDOW")
    assert sb.cora_accounts() == []


@pytest.mark.parametrize(
    "offset, millis",
    [(0, False), (0, True), (-200, False), (200, False), (-200, True), (200, True)],
    ids=["now-s", "now-ms", "old-s", "ahead-s", "old-ms", "ahead-ms"],
)
def test_timestamp_inside_window_is_accepted(cora, offset, millis):
    t = time.time() + offset
    ts = str(int(t * 1000)) if millis else str(int(t))
    assert cora.upsert_ok([new_row("a")], timestamp=ts)["created"] == 1


@pytest.mark.parametrize("offset", [-305, 305, -295, 295])
@pytest.mark.parametrize("millis", [False, True], ids=["s", "ms"])
def test_window_is_five_minutes(sb, cora, offset, millis):
    t = time.time() + offset
    ts = str(int(t * 1000)) if millis else str(int(t))
    resp = cora.upsert([new_row("a")], timestamp=ts)
    if abs(offset) > 300:
        assert error_of(resp) == (401, "REQUEST_TIMESTAMP_OUTSIDE_WINDOW")
    else:
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("ts", ["yesterday", "", "12abc", "-5"])
def test_garbage_timestamp_is_refused(sb, cora, ts):
    resp = cora.upsert([new_row("a")], timestamp=ts)
    assert resp.status_code == 401
    assert resp.json()["success"] is False
    assert sb.cora_accounts() == []


def test_body_tampered_after_signing(sb, cora):
    signed = json.dumps({"accounts": [new_row("a")]}).encode()
    sent = json.dumps({"accounts": [new_row("b")]}).encode()
    resp = cora.request("POST", BULK, body=sent, sign_body=signed)
    assert error_of(resp) == (401, "INVALID_REQUEST_SIGNATURE")
    assert sb.cora_accounts() == []


def test_body_reserialised_differently_breaks_signature(sb, cora):
    payload = {"accounts": [new_row("a")]}
    signed = json.dumps(payload, separators=(",", ":")).encode()
    sent = json.dumps(payload).encode()
    resp = cora.request("POST", BULK, body=sent, sign_body=signed)
    assert error_of(resp) == (401, "INVALID_REQUEST_SIGNATURE")


@pytest.mark.parametrize(
    "sign_path",
    [
        "/external-api/accounts/bulk-upsert/",
        "/external-api/accounts",
        "external-api/accounts/bulk-upsert",
        "/EXTERNAL-API/accounts/bulk-upsert",
        "http://127.0.0.1/external-api/accounts/bulk-upsert",
    ],
)
def test_signed_path_differs_from_requested_path(sb, cora, sign_path):
    resp = cora.upsert([new_row("a")], sign_path=sign_path)
    assert error_of(resp) == (401, "INVALID_REQUEST_SIGNATURE")
    assert sb.cora_accounts() == []


def test_query_omitted_from_signature(sb, cora):
    resp = cora.request("POST", BULK + "?source=test", {"accounts": [new_row("a")]}, sign_path=BULK)
    assert error_of(resp) == (401, "INVALID_REQUEST_SIGNATURE")
    assert sb.cora_accounts() == []


def test_query_included_in_signature_is_accepted(cora):
    resp = cora.request("POST", BULK + "?source=test", {"accounts": [new_row("a")]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["created"] == 1


@pytest.mark.parametrize(
    "variant",
    ["method", "timestamp", "secret", "uppercase", "truncated", "empty"],
)
def test_signature_variants_rejected(sb, cora, sign, variant):
    payload = {"accounts": [new_row("a")]}
    body = json.dumps(payload).encode()
    ts = cora.now()
    kwargs: dict[str, Any] = {"body": body, "timestamp": ts}
    good = sign(cora.secret, ts, "POST", BULK, body)
    if variant == "method":
        kwargs["sign_method"] = "PATCH"
    elif variant == "timestamp":
        kwargs["signature"] = sign(cora.secret, str(int(ts) - 1), "POST", BULK, body)
    elif variant == "secret":
        kwargs["secret"] = cora.secret + "x"
    elif variant == "uppercase":
        kwargs["signature"] = good.upper()
    elif variant == "truncated":
        kwargs["signature"] = good[:-1]
    else:
        kwargs["signature"] = ""
    resp = cora.request("POST", BULK, **kwargs)
    status, code = error_of(resp)
    assert status == 401
    # An empty header may reasonably count as a missing one.
    if variant == "empty":
        assert code in {"INVALID_REQUEST_SIGNATURE", "MISSING_AUTH_HEADERS"}
    else:
        assert code == "INVALID_REQUEST_SIGNATURE"
    assert sb.cora_accounts() == []


def test_signature_over_raw_utf8_bytes(cora):
    payload = {"accounts": [new_row("a", person={"name": {"first": "Zoë", "last": "Ørsted"}})]}
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    resp = cora.request("POST", BULK, body=body)
    assert resp.status_code == 200, resp.text
    assert cora.account("a")["person"]["name"] == {"first": "Zoë", "last": "Ørsted"}


def test_key_of_missing_organisation_is_org_mismatch(sb, cora_for):
    sb.add_cora_key("cora_org_ghostkey.ghost-secret", "ghost", create_org=False)
    ghost = cora_for(sb.cora_base_url, "cora_org_ghostkey.ghost-secret")
    assert error_of(ghost.upsert([new_row("a")])) == (401, "API_KEY_ORG_MISMATCH")
    assert error_of(ghost.get_accounts(["a"])) == (401, "API_KEY_ORG_MISMATCH")
    assert sb.cora_accounts() == []


def test_auth_check_failure_is_500(sb, cora):
    sb.set_faults(FaultConfig(p_auth_error=1.0))
    resp = cora.upsert([new_row("a")])
    assert error_of(resp) == (500, "AUTH_CHECK_FAILED")
    # The log entry may land a moment after the answer reached the client.
    deadline = time.monotonic() + 5.0
    while not sb.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sb.requests[-1].fault == "auth"
    sb.set_faults(FaultConfig())
    assert sb.cora_accounts() == []


# --------------------------------------------------------------------------- request bodies


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"accounts": {}}', b'{"accounts": "a"}', b'{"accounts": null}', b"[]", b"null",
     b'{"account": []}'],
)
def test_body_without_accounts_array(sb, cora, body):
    resp = cora.request("POST", BULK, body=body)
    assert error_of(resp) == (400, "INVALID_REQUEST_BODY")


def test_empty_accounts(cora):
    assert error_of(cora.upsert([])) == (400, "ACCOUNTS_REQUIRED")


def test_501_rows_refused_and_nothing_written(sb, cora):
    resp = cora.upsert([new_row(f"r{i}") for i in range(501)])
    assert error_of(resp) == (400, "ACCOUNTS_LIMIT_EXCEEDED")
    assert sb.cora_accounts() == []


def test_500_rows_accepted(sb, cora):
    answer = cora.upsert_ok([new_row(f"r{i}") for i in range(500)])
    assert (answer["requested"], answer["created"], answer["failed"]) == (500, 500, 0)
    assert [r["index"] for r in answer["results"]] == list(range(500))
    assert len(sb.cora_accounts()) == 500


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_bulk_upsert_wrong_method(sb, cora, method):
    if method == "GET":
        resp = cora.request(method, BULK)
    else:
        resp = cora.request(method, BULK, {"accounts": [new_row("a")]})
    assert error_of(resp) == (405, "METHOD_NOT_ALLOWED")
    assert sb.cora_accounts() == []


@pytest.mark.parametrize(
    "method, path",
    [("POST", "/external-api/accounts"), ("DELETE", "/external-api/accounts/a"),
     ("PUT", "/external-api/accounts/a"), ("POST", "/external-api/accounts/a")],
)
def test_other_wrong_methods(cora, method, path):
    resp = cora.request(method, path, {"accounts": [new_row("a")]})
    assert error_of(resp) == (405, "METHOD_NOT_ALLOWED")


# --------------------------------------------------------------------------- success shape


def test_success_shape_exactly(cora):
    answer = cora.upsert_ok([new_row("a"), new_row("b", phoneNumber="12")])
    assert set(answer) == SUMMARY_KEYS
    assert answer["success"] is True
    assert answer["code"] == "ACCOUNTS_BULK_UPSERT_COMPLETED"
    assert isinstance(answer["message"], str) and answer["message"]
    assert answer["dryRun"] is False
    counts = {k: answer[k] for k in ("requested", "created", "updated", "unchanged", "failed")}
    assert counts == {"requested": 2, "created": 1, "updated": 0, "unchanged": 0, "failed": 1}
    ok, bad = answer["results"]
    assert set(ok) == SUCCESS_ROW_KEYS
    assert (ok["index"], ok["externalId"], ok["status"]) == (0, "a", "created")
    assert isinstance(ok["accountId"], str) and ok["accountId"]
    parse_iso(ok["updatedAt"])
    assert set(bad) == FAILED_ROW_KEYS
    assert (bad["index"], bad["externalId"], bad["status"]) == (1, "b", "failed")
    assert bad["code"] == "INVALID_PHONE_NUMBER"
    assert isinstance(bad["message"], str) and bad["message"]
    assert all(set(d) == {"field", "message"} for d in bad["details"])
    assert "phoneNumber" in detail_fields(bad)
    stored = cora.account("a")
    assert stored["id"] == ok["accountId"]
    assert stored["updatedAt"] == ok["updatedAt"]
    assert stored["externalId"] == "a"
    for field in ("organizationId", "createdAt"):
        assert field in stored


def test_stored_account_keeps_every_written_field(cora):
    row = new_row(
        "full",
        bucket="B1",
        status="ACTIVE",
        clientStatus="x",
        emailAddress="a@example.com",
        person={"name": {"first": "Ann", "last": "Lee"}, "birthdate": "1980-02-03",
                "ssn": "123-45-6789", "last4SSN": "6789"},
        address={"street": "1 Main", "additionalStreet": "Apt 2", "city": "Austin",
                 "state": "TX", "zip": "78701", "country": "US"},
        history={"origin": "import", "statuteLimitationsDate": "2030-01-01T00:00:00Z"},
        typeOfDebt="MEDICAL",
        compliance={"a": 1},
        paymentRules={"min": 10},
        contactInfo={"best": "evening"},
        smsOptOut={"all": False},
        bank="First",
        client="Acme",
        originalCreditor={"name": "Old Bank"},
        currentBalance=450.25,
        tags=["x", "y"],
    )
    cora.upsert_ok([row])
    stored = cora.account("full")
    for field, value in row.items():
        assert stored[field] == value, field


@pytest.mark.parametrize("value", [450.25, 450, "450.25", "0"])
def test_current_balance_number_or_numeric_string(cora, value):
    answer = cora.upsert_ok([new_row("a", currentBalance=value)])
    assert answer["results"][0]["status"] == "created"


@pytest.mark.parametrize("value", ["Old Bank", {"name": "Old Bank", "id": 7}])
def test_original_creditor_string_or_object(cora, value):
    answer = cora.upsert_ok([new_row("a", originalCreditor=value)])
    assert answer["results"][0]["status"] == "created"


# --------------------------------------------------------------------------- per-row failures


def test_missing_required_fields_all_named(sb, cora):
    answer = cora.upsert_ok([{"externalId": "a", "clientStatus": "x"}])
    row = answer["results"][0]
    assert row["status"] == "failed"
    assert row["code"] == "MISSING_REQUIRED_FIELD"
    assert detail_fields(row) == {"phoneNumber", "portfolioId", "metadata.filenumber"}
    assert sb.cora_accounts() == []


@pytest.mark.parametrize("drop", ["phoneNumber", "portfolioId", "metadata", "metadata.filenumber"])
def test_missing_one_required_field(sb, cora, drop):
    row = new_row("a")
    if drop == "metadata.filenumber":
        row["metadata"] = {"other": 1}
    else:
        del row[drop]
    answer = cora.upsert_ok([row])
    result = answer["results"][0]
    assert (result["status"], result["code"]) == ("failed", "MISSING_REQUIRED_FIELD")
    expected = "metadata.filenumber" if drop.startswith("metadata") else drop
    assert detail_fields(result) == {expected}
    assert answer["failed"] == 1
    assert sb.cora_accounts() == []


def test_missing_external_id_fails_the_row(sb, cora):
    row = new_row("a")
    del row["externalId"]
    answer = cora.upsert_ok([row, new_row("b")])
    bad, good = answer["results"]
    assert bad["status"] == "failed" and bad["index"] == 0
    assert bad["code"] == "MISSING_REQUIRED_FIELD"
    assert "externalId" in detail_fields(bad)
    assert good["status"] == "created"
    assert [a["externalId"] for a in sb.cora_accounts()] == ["b"]


def test_required_fields_only_on_create(cora):
    cora.upsert_ok([new_row("a")])
    answer = cora.upsert_ok([{"externalId": "a", "clientStatus": "paid"}])
    assert answer["results"][0]["status"] == "updated"
    assert cora.account("a")["clientStatus"] == "paid"


@pytest.mark.parametrize(
    "phone",
    ["5551234567", "+0123456", "+", "+1234567890123456", "+1 555 123", "+1-555-123", "",
     "++15551234", "+1555123a", "+15551234\n", "+\u0661\u0662\u0663"],
)
def test_invalid_phone_number(sb, cora, phone):
    answer = cora.upsert_ok([new_row("a", phoneNumber=phone)])
    row = answer["results"][0]
    assert (row["status"], row["code"]) == ("failed", "INVALID_PHONE_NUMBER")
    assert "phoneNumber" in detail_fields(row)
    assert sb.cora_accounts() == []


@pytest.mark.parametrize("phone", ["+1", "+15551234567", "+123456789012345", "+447911123456"])
def test_valid_phone_numbers(cora, phone):
    assert cora.upsert_ok([new_row("a", phoneNumber=phone)])["created"] == 1


def test_invalid_phone_on_update_keeps_stored_value(cora):
    cora.upsert_ok([new_row("a", phoneNumber="+15550000001")])
    answer = cora.upsert_ok([{"externalId": "a", "phoneNumber": "555"}])
    assert answer["results"][0]["code"] == "INVALID_PHONE_NUMBER"
    assert cora.account("a")["phoneNumber"] == "+15550000001"


PHONES = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True),
    st.from_regex(r"\+?[0-9]{0,17}", fullmatch=True),
    st.text(alphabet="+0123456789 -a\n\u0661", max_size=18),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(PHONES, min_size=1, max_size=20))
def test_phone_validation_matches_e164(sb, cora, phones):
    tag = uuid.uuid4().hex[:8]
    rows = [new_row(f"{tag}-{i}", phoneNumber=p) for i, p in enumerate(phones)]
    answer = cora.upsert_ok(rows)
    for phone, result in zip(phones, answer["results"], strict=True):
        if E164.fullmatch(phone):
            assert result["status"] == "created", (phone, result)
        else:
            assert result.get("code") == "INVALID_PHONE_NUMBER", (phone, result)


@pytest.mark.parametrize(
    "field, value",
    [
        ("externalId", 123),
        ("portfolioId", 5),
        ("phoneNumber", 15551234567),
        ("metadata", "filenumber"),
        ("metadata", ["filenumber"]),
        ("person", "Ann Lee"),
        ("address", ["x"]),
        ("tags", "vip"),
        ("tags", [1, 2]),
        ("currentBalance", True),
        ("currentBalance", [1]),
        ("currentBalance", {"amount": 1}),
        ("currentBalance", "lots"),
        ("status", 3),
        ("emailAddress", {"a": 1}),
        ("originalCreditor", 5),
        ("smsOptOut", True),
        ("bank", ["x"]),
        ("favouriteColour", "green"),
    ],
)
def test_invalid_field_value(sb, cora, field, value):
    row = new_row("a", **{field: value})
    answer = cora.upsert_ok([row])
    result = answer["results"][0]
    assert result["status"] == "failed"
    assert result["code"] == "INVALID_FIELD_VALUE", result
    assert field in detail_fields(result)
    assert sb.cora_accounts() == []


@pytest.mark.parametrize("field", sorted(READ_ONLY_FIELDS))
def test_read_only_field_not_updatable(sb, cora, field):
    answer = cora.upsert_ok([new_row("a", **{field: READ_ONLY_FIELDS[field]})])
    result = answer["results"][0]
    assert (result["status"], result["code"]) == ("failed", "FIELD_NOT_UPDATABLE")
    assert field in detail_fields(result)
    assert sb.cora_accounts() == []
    cora.upsert_ok([new_row("b")])
    before = cora.account("b")
    answer = cora.upsert_ok([{"externalId": "b", "clientStatus": "x",
                              field: READ_ONLY_FIELDS[field]}])
    assert answer["results"][0]["code"] == "FIELD_NOT_UPDATABLE"
    assert cora.account("b") == before


def test_duplicate_external_id_second_and_later(sb, cora):
    rows = [new_row("a", clientStatus="first"), new_row("b"), new_row("a", clientStatus="second"),
            new_row("a", clientStatus="third")]
    answer = cora.upsert_ok(rows)
    statuses = [(r["index"], r["externalId"], r["status"], r.get("code"))
                for r in answer["results"]]
    assert statuses == [
        (0, "a", "created", None),
        (1, "b", "created", None),
        (2, "a", "failed", "DUPLICATE_EXTERNAL_ID"),
        (3, "a", "failed", "DUPLICATE_EXTERNAL_ID"),
    ]
    assert (answer["created"], answer["failed"]) == (2, 2)
    assert cora.account("a")["clientStatus"] == "first"


def test_duplicate_after_an_invalid_first_occurrence_still_fails(sb, cora):
    rows = [new_row("a", phoneNumber="bad"), new_row("a")]
    answer = cora.upsert_ok(rows)
    assert [r.get("code") for r in answer["results"]] == [
        "INVALID_PHONE_NUMBER", "DUPLICATE_EXTERNAL_ID"]
    assert sb.cora_accounts() == []


def test_partial_success_writes_valid_rows_only(sb, cora):
    cora.upsert_ok([new_row("old")])
    rows = [new_row("new1"), new_row("bad", phoneNumber="x"), {"externalId": "old", "bucket": "B"},
            {"externalId": "incomplete"}]
    answer = cora.upsert_ok(rows)
    assert answer["success"] is True
    assert [r["status"] for r in answer["results"]] == ["created", "failed", "updated", "failed"]
    assert (answer["created"], answer["updated"], answer["failed"]) == (1, 1, 2)
    stored = {a["externalId"] for a in sb.cora_accounts()}
    assert stored == {"old", "new1"}
    assert cora.account("old")["bucket"] == "B"


# --------------------------------------------------------------------------- merge rules


def test_deep_merge_of_objects_and_replacement_of_scalars_and_arrays(cora):
    cora.upsert_ok([new_row(
        "a",
        metadata={"filenumber": "F1", "a": 1, "nested": {"x": 1, "y": 2}, "list": [1, 2]},
        person={"name": {"first": "Ann", "last": "Lee"}, "birthdate": "1980-01-01"},
        address={"city": "Austin", "zip": "78701"},
        tags=["x", "y"],
        currentBalance=10,
        bucket="B1",
    )])
    answer = cora.upsert_ok([{
        "externalId": "a",
        "metadata": {"b": 2, "nested": {"y": 3}, "list": [9]},
        "person": {"name": {"first": "Zed"}},
        "tags": ["z"],
        "currentBalance": 5,
        "bucket": "B2",
    }])
    assert answer["results"][0]["status"] == "updated"
    stored = cora.account("a")
    assert stored["metadata"] == {"filenumber": "F1", "a": 1, "b": 2,
                                  "nested": {"x": 1, "y": 3}, "list": [9]}
    assert stored["person"] == {"name": {"first": "Zed", "last": "Lee"}, "birthdate": "1980-01-01"}
    assert stored["address"] == {"city": "Austin", "zip": "78701"}
    assert stored["tags"] == ["z"]
    assert stored["currentBalance"] == 5
    assert stored["bucket"] == "B2"


def test_empty_array_replaces(cora):
    cora.upsert_ok([new_row("a", tags=["x"])])
    cora.upsert_ok([{"externalId": "a", "tags": []}])
    assert cora.account("a")["tags"] == []


def test_explicit_null_overwrites(cora):
    cora.upsert_ok([new_row("a", emailAddress="a@example.com", address={"city": "Austin",
                                                                        "zip": "1"})])
    answer = cora.upsert_ok([{"externalId": "a", "emailAddress": None, "address": {"city": None}}])
    assert answer["results"][0]["status"] == "updated"
    stored = cora.account("a")
    assert stored.get("emailAddress") is None
    assert stored["address"].get("city") is None
    assert stored["address"]["zip"] == "1"


def test_boolean_is_not_the_number_one(cora):
    # JSON true and 1 are different values even though Python's == says otherwise.
    cora.upsert_ok([new_row("a", metadata={"filenumber": "F", "flag": 1})])
    answer = cora.upsert_ok([{"externalId": "a", "metadata": {"flag": True}}])
    assert answer["results"][0]["status"] == "updated"
    assert cora.account("a")["metadata"]["flag"] is True


def test_portfolio_id_ignored_on_existing(cora):
    cora.upsert_ok([new_row("a", portfolioId="pf-1")])
    answer = cora.upsert_ok([{"externalId": "a", "portfolioId": "pf-2"}])
    assert answer["results"][0]["status"] == "unchanged"
    answer = cora.upsert_ok([{"externalId": "a", "portfolioId": "pf-2", "bucket": "B9"}])
    assert answer["results"][0]["status"] == "updated"
    stored = cora.account("a")
    assert (stored["portfolioId"], stored["bucket"]) == ("pf-1", "B9")


def test_external_id_is_the_exact_match_key(sb, cora):
    cora.upsert_ok([new_row("Abc")])
    answer = cora.upsert_ok([new_row("abc")])
    assert answer["results"][0]["status"] == "created"
    assert {a["externalId"] for a in sb.cora_accounts()} == {"Abc", "abc"}


def test_external_id_never_updated_by_patch(cora):
    cora.upsert_ok([new_row("a")])
    cora.patch("a", {"externalId": "b", "clientStatus": "x"})
    assert cora.account("a")["externalId"] == "a"
    assert cora.get_account("b").status_code == 404


def test_unchanged_when_nothing_would_change(cora):
    row = new_row("a", tags=["x"], person={"name": {"first": "Ann"}}, currentBalance=1.5)
    first = cora.upsert_ok([row])["results"][0]
    answer = cora.upsert_ok([copy.deepcopy(row)])
    result = answer["results"][0]
    assert result["status"] == "unchanged"
    assert (answer["unchanged"], answer["updated"], answer["created"]) == (1, 0, 0)
    assert result["accountId"] == first["accountId"]
    assert result["updatedAt"] == first["updatedAt"]
    subset = {"externalId": "a", "metadata": {"filenumber": "F-a"}, "person": {"name": {}}}
    assert cora.upsert_ok([subset])["results"][0]["status"] == "unchanged"
    assert cora.account("a")["updatedAt"] == first["updatedAt"]


def _deep_merge(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _deep_merge(old.get(k), v) if k in old else v
        return out
    return new


def _get_path(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


SCALARS = st.one_of(st.integers(-5, 5), st.text("abc", max_size=3),
                    st.lists(st.integers(0, 3), max_size=3))
NESTED = st.dictionaries(st.sampled_from(["x", "y", "z"]), SCALARS, min_size=1, max_size=3)
METADATA = st.fixed_dictionaries(
    {},
    optional={"a": SCALARS, "b": SCALARS, "n1": NESTED, "n2": NESTED},
)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=METADATA, new=METADATA)
def test_merge_property(sb, cora, old, new):
    ext = uuid.uuid4().hex
    cora.upsert_ok([new_row(ext, metadata={"filenumber": "F", **old})])
    before = cora.account(ext)
    answer = cora.upsert_ok([{"externalId": ext, "metadata": new}], include_changes=True)
    result = answer["results"][0]
    expected = _deep_merge(before["metadata"], new)
    after = cora.account(ext)
    assert after["metadata"] == expected
    if expected == before["metadata"]:
        assert result["status"] == "unchanged"
        assert after["updatedAt"] == before["updatedAt"]
    else:
        assert result["status"] == "updated"
        assert result["changes"]
        for change in result["changes"]:
            assert change["field"].startswith("metadata.") or change["field"] == "metadata"
            assert _get_path(before, change["field"]) == change.get("from")
            assert _get_path(after, change["field"]) == change.get("to")
            assert change.get("from") != change.get("to")


# --------------------------------------------------------------------------- dry run & changes


def test_dry_run_writes_nothing_and_predicts_the_real_run(sb, cora):
    cora.upsert_ok([new_row("upd"), new_row("same")])
    before = sb.cora_accounts()
    rows = [new_row("new"), {"externalId": "upd", "bucket": "B2"}, {"externalId": "same"},
            new_row("bad", phoneNumber="0"), new_row("new")]
    dry = cora.upsert_ok(rows, dry_run=True, include_changes=True)
    assert dry["dryRun"] is True
    assert set(dry) == SUMMARY_KEYS
    assert sb.cora_accounts() == before
    assert cora.get_account("new").status_code == 404
    real = cora.upsert_ok(rows, include_changes=True)
    assert real["dryRun"] is False

    def shape(ans: dict[str, Any]) -> list[Any]:
        return [(r["index"], r.get("externalId"), r["status"], r.get("code"), r.get("changes"))
                for r in ans["results"]]

    assert shape(dry) == shape(real)
    for k in ("requested", "created", "updated", "unchanged", "failed"):
        assert dry[k] == real[k], k
    assert [r["status"] for r in real["results"]] == [
        "created", "updated", "unchanged", "failed", "failed"]
    assert "accountId" not in dry["results"][0] or dry["results"][0]["accountId"] is None
    assert dry["results"][1]["accountId"] == real["results"][1]["accountId"]


def test_dry_run_on_empty_store_leaves_it_empty(sb, cora):
    answer = cora.upsert_ok([new_row(f"r{i}") for i in range(20)], dry_run=True)
    assert answer["created"] == 20
    assert sb.cora_accounts() == []


def test_include_changes_dotted_paths(cora):
    cora.upsert_ok([new_row("a", phoneNumber="+15550000001", metadata={"filenumber": "F", "a": 1},
                            tags=["x"], person={"name": {"first": "Ann", "last": "Lee"}})])
    answer = cora.upsert_ok(
        [{"externalId": "a", "phoneNumber": "+15550000002", "metadata": {"a": 2, "b": 3},
          "tags": ["y"], "person": {"name": {"first": "Zed", "last": "Lee"}}}],
        include_changes=True,
    )
    result = answer["results"][0]
    assert result["status"] == "updated"
    got = {c["field"]: (c.get("from"), c.get("to")) for c in result["changes"]}
    assert got == {
        "phoneNumber": ("+15550000001", "+15550000002"),
        "metadata.a": (1, 2),
        "metadata.b": (None, 3),
        "tags": (["x"], ["y"]),
        "person.name.first": ("Ann", "Zed"),
    }
    assert all(set(c) <= {"field", "from", "to"} for c in result["changes"])


def test_created_rows_carry_no_changes(cora):
    answer = cora.upsert_ok([new_row("a")], include_changes=True)
    assert "changes" not in answer["results"][0]


def test_no_changes_without_include_changes(cora):
    cora.upsert_ok([new_row("a")])
    answer = cora.upsert_ok([{"externalId": "a", "bucket": "B"}])
    assert answer["results"][0]["status"] == "updated"
    assert "changes" not in answer["results"][0]


# --------------------------------------------------------------------------- rate window


def test_second_request_inside_window_is_429_with_retry_after(sb, cora):
    sb.set_cora_window(20.0)
    cora.upsert_ok([new_row("a")])
    resp = cora.upsert([new_row("b")])
    assert error_of(resp) == (429, "RATE_LIMITED")
    retry_after = int(resp.headers["Retry-After"])
    assert 15 <= retry_after <= 20
    assert cora.get_account("b").status_code == 404


def test_retry_after_is_rounded_up_and_honoured(sb, cora):
    sb.set_cora_window(1.0)
    cora.upsert_ok([new_row("a")])
    resp = cora.upsert([new_row("b")])
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "1"
    time.sleep(int(resp.headers["Retry-After"]))
    assert cora.upsert_ok([new_row("b")])["created"] == 1
    # The log keeps when each request arrived, the instant the window counts from.
    first, refused, accepted = (r.arrived for r in sb.requests if r.method == "POST")
    assert first < refused < accepted <= time.monotonic()
    assert refused - first < 1.0 <= accepted - first


def test_rejected_request_does_not_restart_window(sb, cora):
    sb.set_cora_window(3.0)
    cora.upsert_ok([new_row("a")])
    first = cora.upsert([new_row("b")])
    assert first.status_code == 429
    time.sleep(1.1)
    second = cora.upsert([new_row("b")])
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) < int(first.headers["Retry-After"])


def test_dry_runs_count_against_the_window(sb, cora):
    sb.set_cora_window(20.0)
    cora.upsert_ok([new_row("a")], dry_run=True)
    assert error_of(cora.upsert([new_row("a")])) == (429, "RATE_LIMITED")


def test_body_errors_consume_the_window(sb, cora):
    sb.set_cora_window(20.0)
    assert error_of(cora.upsert([])) == (400, "ACCOUNTS_REQUIRED")
    assert error_of(cora.upsert([new_row("a")])) == (429, "RATE_LIMITED")


def test_unauthenticated_requests_do_not_consume_the_window(sb, cora):
    sb.set_cora_window(20.0)
    assert cora.upsert([new_row("a")], key="cora_org_nobody.x").status_code == 401
    assert cora.upsert([new_row("a")], signature="0" * 64).status_code == 401
    assert cora.upsert_ok([new_row("a")])["created"] == 1


def test_window_is_per_key(sb, cora, cora_for):
    sb.set_cora_window(20.0)
    sb.add_cora_key("cora_org_second.two", "second-org")
    other = cora_for(sb.cora_base_url, "cora_org_second.two")
    cora.upsert_ok([new_row("a")])
    assert other.upsert_ok([new_row("a")])["created"] == 1
    assert cora.upsert([new_row("b")]).status_code == 429


def test_reads_are_not_rate_limited(sb, cora):
    sb.set_cora_window(20.0)
    cora.upsert_ok([new_row("a")])
    for _ in range(5):
        assert cora.get_accounts(["a"]).status_code == 200
        assert cora.get_account("a").status_code == 200


# --------------------------------------------------------------------------- reads and PATCH


def test_get_many_found_and_not_found(cora):
    cora.upsert_ok([new_row("a"), new_row("b"), new_row("c")])
    resp = cora.get_accounts(["a", "zz", "c"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["success"] is True
    assert body["code"] == "ACCOUNTS_FETCHED"
    assert isinstance(body["message"], str)
    assert sorted(a["externalId"] for a in body["accounts"]) == ["a", "c"]
    assert body["notFoundExternalIds"] == ["zz"]
    assert body["count"] == 2
    for account in body["accounts"]:
        assert account == cora.account(account["externalId"])


def test_get_many_limit(cora):
    ids = [f"id{i}" for i in range(200)]
    body = cora.get_accounts(ids).json()
    assert body["count"] == 0
    assert sorted(body["notFoundExternalIds"]) == sorted(ids)
    resp = cora.get_accounts([*ids, "one-more"])
    assert error_of(resp) == (400, "EXTERNAL_IDS_LIMIT_EXCEEDED")


@pytest.mark.parametrize("query", ["", "?externalIds=", "?other=1"])
def test_get_many_requires_external_ids(cora, query):
    resp = cora.request("GET", "/external-api/accounts" + query)
    assert error_of(resp) == (400, "EXTERNAL_IDS_REQUIRED")


def test_get_one(cora):
    cora.upsert_ok([new_row("a", bucket="B")])
    resp = cora.get_account("a")
    body = resp.json()
    assert resp.status_code == 200
    assert (body["success"], body["code"]) == (True, "ACCOUNT_FETCHED")
    assert body["account"]["bucket"] == "B"
    assert body["account"]["metadata"] == {"filenumber": "F-a"}


def test_get_one_unknown(cora):
    assert error_of(cora.get_account("nope")) == (404, "ACCOUNT_NOT_FOUND")


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "update-wrapper"])
def test_signed_patch_merges(cora, wrapped):
    cora.upsert_ok([new_row("a", metadata={"filenumber": "F", "a": 1}, tags=["x"])])
    fields = {"metadata": {"b": 2}, "tags": ["y"], "clientStatus": "promised"}
    resp = cora.patch("a", {"update": fields} if wrapped else fields)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["success"], body["code"]) == (True, "ACCOUNT_UPDATED")
    account = body["account"]
    assert account["metadata"] == {"filenumber": "F", "a": 1, "b": 2}
    assert account["tags"] == ["y"]
    assert account["clientStatus"] == "promised"
    assert cora.account("a") == account


def test_patch_signature_covers_the_id_in_the_path(cora):
    cora.upsert_ok([new_row("a"), new_row("b")])
    resp = cora.patch("a", {"clientStatus": "x"}, sign_path="/external-api/accounts/b")
    assert error_of(resp) == (401, "INVALID_REQUEST_SIGNATURE")
    assert "clientStatus" not in cora.account("a")
    assert "clientStatus" not in cora.account("b")


def test_patch_unknown_account(cora):
    assert error_of(cora.patch("nope", {"clientStatus": "x"})) == (404, "ACCOUNT_NOT_FOUND")


def test_patch_invalid_value_is_refused(cora):
    cora.upsert_ok([new_row("a", phoneNumber="+15550000001")])
    before = cora.account("a")
    resp = cora.patch("a", {"phoneNumber": "not a phone"})
    assert 400 <= resp.status_code < 500
    assert resp.json()["success"] is False
    assert cora.account("a") == before


# --------------------------------------------------------------------------- organisations


def test_organisations_are_isolated(sb, cora, cora_for):
    sb.add_cora_key("cora_org_orgb.secret-b", "org-b")
    other = cora_for(sb.cora_base_url, "cora_org_orgb.secret-b")
    cora.upsert_ok([new_row("shared", phoneNumber="+15550000001"), new_row("only-a")])
    answer = other.upsert_ok([new_row("shared", phoneNumber="+15550000002")])
    assert answer["results"][0]["status"] == "created"
    assert cora.account("shared")["phoneNumber"] == "+15550000001"
    assert other.account("shared")["phoneNumber"] == "+15550000002"
    assert cora.account("shared")["id"] != other.account("shared")["id"]
    assert other.get_account("only-a").status_code == 404
    assert other.get_accounts(["only-a"]).json()["notFoundExternalIds"] == ["only-a"]
    assert error_of(other.patch("only-a", {"clientStatus": "x"})) == (404, "ACCOUNT_NOT_FOUND")
    assert [a["externalId"] for a in sb.cora_accounts(org="org-b")] == ["shared"]
    assert {a["externalId"] for a in sb.cora_accounts()} == {"shared", "only-a"}
    assert sb.cora_account("only-a", org="org-b") is None


def test_two_keys_of_one_organisation_share_accounts(sb, cora, cora_for):
    sb.add_cora_key("cora_org_samekey.other-secret", sb.cora_org)
    twin = cora_for(sb.cora_base_url, "cora_org_samekey.other-secret")
    cora.upsert_ok([new_row("a")])
    assert twin.upsert_ok([{"externalId": "a", "bucket": "B"}])["updated"] == 1


# --------------------------------------------------------------------------- base URL prefix


def test_prefix_is_part_of_the_signed_path(cora_for, recotap_for):
    with Sandbox(seed="none", cora_window=0.0, prefix="/gw") as gw:
        assert gw.cora_base_url.endswith("/gw")
        assert gw.recotap_base_url.endswith("/gw/api/v1")
        client = cora_for(gw.cora_base_url, gw.cora_key)
        assert client.prefix == "/gw"
        assert client.upsert_ok([new_row("a")])["created"] == 1
        resp = client.upsert([new_row("b")], sign_path=BULK)
        assert error_of(resp) == (401, "INVALID_REQUEST_SIGNATURE")
        root = gw.cora_base_url[: -len("/gw")]
        bare = cora_for(root, gw.cora_key)
        assert bare.upsert([new_row("c")]).status_code == 404
        assert client.account("a")["externalId"] == "a"
        rtp = recotap_for(gw.recotap_base_url, gw.recotap_key)
        assert rtp.accounts().status_code == 200


def test_retry_after_is_whole_seconds_rounded_up(sb, cora):
    sb.set_cora_window(2.5)
    cora.upsert_ok([new_row("a")])
    resp = cora.upsert([new_row("b")])
    assert resp.status_code == 429
    assert resp.headers["Retry-After"].isdigit()
    # 2.5 s minus the little time spent since the first request, rounded up.
    assert int(resp.headers["Retry-After"]) in (2, 3)


def test_header_names_are_case_insensitive(cora, sign):
    body = json.dumps({"accounts": [new_row("a")]}).encode()
    ts = cora.now()
    headers = {
        "authorization": f"Bearer {cora.key}",
        "x-cora-timestamp": ts,
        "x-cora-signature": sign(cora.secret, ts, "POST", BULK, body),
        "content-type": "application/json",
    }
    resp = requests.post(cora.base_url + BULK, data=body, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text


def test_signature_covers_the_path_as_sent_percent_encoded(sb, cora):
    ext = "a b+c"
    cora.upsert_ok([new_row(ext)])
    encoded = "/external-api/accounts/a%20b%2Bc"
    resp = cora.request("PATCH", encoded, {"clientStatus": "x"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["account"]["externalId"] == ext
    resp = cora.request("GET", encoded)
    assert resp.json()["account"]["clientStatus"] == "x"
    found = cora.request("GET", "/external-api/accounts?externalIds=a%20b%2Bc").json()
    assert [a["externalId"] for a in found["accounts"]] == [ext]


def test_row_that_is_not_an_object_never_crashes(sb, cora):
    resp = cora.upsert([5, "x", None, new_row("a")])
    assert resp.status_code in (200, 400), resp.text
    body = resp.json()
    if resp.status_code == 200:
        assert [r["status"] for r in body["results"]] == ["failed"] * 3 + ["created"]
    else:
        assert body["code"] == "INVALID_REQUEST_BODY"
        assert sb.cora_accounts() == []


def test_concurrent_requests_get_one_window_slot(sb, cora):
    sb.set_cora_window(20.0)
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda i: cora.upsert([new_row(f"w{i}")]), range(10)))
    assert sorted(r.status_code for r in answers) == [200] + [429] * 9
    assert len(sb.cora_accounts()) == 1
