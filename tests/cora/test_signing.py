"""Cora key parsing and request signing (contract §1.1), checked against hashlib/hmac."""

from __future__ import annotations

import doctest
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

import recocora.cora._signing as signing
from recocora.cora._signing import (
    CoraKey,
    body_hash,
    canonical_string,
    get_headers,
    parse_key,
    signature,
    signed_headers,
)
from recocora.errors import ConfigError, RecocoraError

BULK = "/external-api/accounts/bulk-upsert"
SECRET = "s3cr3t.with.dots"
KEY = f"cora_org_k7Hq.{SECRET}"


def test_known_answer_for_a_bulk_upsert() -> None:
    body = b'{"accounts":[{"externalId":"a1"}],"dryRun":false}'
    headers = signed_headers(parse_key(KEY), "POST", BULK, body, 1_700_000_000.75)

    body_sha = hashlib.sha256(body).hexdigest()
    canonical = f"1700000000.POST.{BULK}.{body_sha}"
    expected = hmac.new(SECRET.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    assert headers == {
        "Authorization": f"Bearer {KEY}",
        "X-Cora-Timestamp": "1700000000",
        "X-Cora-Signature": expected,
        "Content-Type": "application/json",
    }
    # Pinned once from the formula above, so a change on both sides is caught too.
    assert expected == "8aca68f5c1dc970d24e881186923a0c6aaabe5a1fc565d11b2feebb63ed66e96"


def test_canonical_string_pieces() -> None:
    empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert body_hash(b"") == empty_sha
    assert canonical_string("1700000000", "patch", "/external-api/accounts/a%201?x=1", b"") == (
        f"1700000000.PATCH./external-api/accounts/a%201?x=1.{empty_sha}"
    )


def test_canonical_string_refuses_a_url_instead_of_a_path() -> None:
    with pytest.raises(ValueError, match="path"):
        canonical_string("1", "POST", "https://api.corafone.com" + BULK, b"")


def test_signature_is_lowercase_hex_hmac_sha256() -> None:
    sig = signature("k", "msg")
    assert sig == hmac.new(b"k", b"msg", hashlib.sha256).hexdigest()
    assert sig == sig.lower() and len(sig) == 64


def test_signature_depends_on_every_part() -> None:
    key = parse_key(KEY)
    base = signed_headers(key, "POST", BULK, b"{}", 1000)["X-Cora-Signature"]
    assert signed_headers(key, "POST", BULK, b"{} ", 1000)["X-Cora-Signature"] != base
    assert signed_headers(key, "PATCH", BULK, b"{}", 1000)["X-Cora-Signature"] != base
    assert signed_headers(key, "POST", BULK + "?a=1", b"{}", 1000)["X-Cora-Signature"] != base
    assert signed_headers(key, "POST", BULK, b"{}", 1001)["X-Cora-Signature"] != base
    other = parse_key("cora_org_k7Hq.other")
    assert signed_headers(other, "POST", BULK, b"{}", 1000)["X-Cora-Signature"] != base


def test_get_headers_carry_only_the_bearer_key() -> None:
    assert get_headers(parse_key(KEY)) == {"Authorization": f"Bearer {KEY}"}


@pytest.mark.parametrize(
    ("raw", "key_id", "secret"),
    [
        ("cora_org_abc.def", "abc", "def"),
        ("abc.def", "abc", "def"),  # prefix optional
        ("cora_org_abc.def.ghi", "abc", "def.ghi"),  # split at the FIRST dot
        ("cora_org_abc..x", "abc", ".x"),
        ("  cora_org_abc.def\n", "abc", "def"),  # pasted with whitespace
        ("cora_org_cora_org_x.y", "cora_org_x", "y"),  # only one prefix is dropped
    ],
)
def test_parse_key(raw: str, key_id: str, secret: str) -> None:
    key = parse_key(raw)
    assert (key.key_id, key.secret, key.raw) == (key_id, secret, raw.strip())


@pytest.mark.parametrize(
    "raw",
    [
        "cora_org_abcdefSECRETPART",  # no dot
        "",
        "   ",
        "cora_org_.SECRETPART",  # empty keyId
        "cora_org_abc.",  # empty secret
        "cora_org_abc.SECRET PART",  # whitespace inside
    ],
)
def test_malformed_keys_raise_without_echoing_the_secret(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_key(raw)
    message = str(info.value)
    assert "SECRET" not in message
    assert "cora_org_<keyId>.<secret>" in message
    assert isinstance(info.value, RecocoraError) and isinstance(info.value, ValueError)


def test_a_non_string_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="string"):
        parse_key(12345)  # type: ignore[arg-type]


def test_repr_and_str_never_show_the_secret() -> None:
    key = parse_key(KEY)
    shown = [repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})]
    for text in shown:
        assert SECRET not in text and "s3cr3t" not in text
        assert "k7Hq" in text
    assert repr(key) == "CoraKey(key_id='k7Hq', secret=****)"
    assert str(key) == "cora_org_k7Hq.****"


def test_key_is_frozen() -> None:
    key = parse_key(KEY)
    with pytest.raises(AttributeError):
        key.secret = "x"  # type: ignore[misc]
    assert key == CoraKey("k7Hq", SECRET, KEY)


_ID = st.text(st.characters(categories=("L", "N"), include_characters="_-"), min_size=1)
_SECRET = st.text(st.characters(codec="utf-8", exclude_categories=("Z", "C")), min_size=1).filter(
    lambda s: not any(c.isspace() for c in s)
)


@given(key_id=_ID.filter(lambda s: "." not in s), secret=_SECRET, prefixed=st.booleans())
def test_parse_key_round_trips(key_id: str, secret: str, prefixed: bool) -> None:
    raw = f"{'cora_org_' if prefixed else ''}{key_id}.{secret}"
    key = parse_key(raw)
    assert key.secret == secret
    assert key.raw == raw
    if prefixed or not key_id.startswith("cora_org_"):
        assert key.key_id == key_id
    assert repr(key) == f"CoraKey(key_id={key.key_id!r}, secret=****)"
    assert str(key) == f"cora_org_{key.key_id}.****"


@given(
    secret=_SECRET,
    method=st.sampled_from(["POST", "PATCH", "post"]),
    path=st.from_regex(r"/[a-z/\-]{0,30}(\?[a-z=&,0-9]{1,20})?", fullmatch=True),
    body=st.binary(max_size=200),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_signed_headers_match_the_contract_formula(
    secret: str, method: str, path: str, body: bytes, now: float
) -> None:
    key = parse_key(f"cora_org_id.{secret}")
    headers = signed_headers(key, method, path, body, now)
    timestamp = str(int(now))
    canonical = f"{timestamp}.{method.upper()}.{path}.{hashlib.sha256(body).hexdigest()}"
    assert headers["X-Cora-Timestamp"] == timestamp
    assert (
        headers["X-Cora-Signature"]
        == hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    )


def test_docstring_examples() -> None:
    assert doctest.testmod(signing).failed == 0
