"""Shared fixtures: one sandbox server for the whole run, reset before every test.

The HTTP wrappers below sign Cora requests straight from the contract's words (hashlib and hmac,
nothing imported from recocora), so the sandbox is checked against the contract rather than
against its own signing code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import settings

# No timing assertions, hypothesis's included: its per-example deadline (200 ms) fails sound
# tests on a busy machine (.ci/run runs the suite on three interpreters, two cores), so it is
# off for the whole suite.
settings.register_profile("recocora", deadline=None)
settings.load_profile("recocora")

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

# The sentinel lets a test send no body at all, which differs from sending JSON null.
_NO_BODY: Any = object()
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def split_cora_key(key: str) -> tuple[str, str]:
    """Contract 1.1: drop a leading ``cora_org_``, split at the first dot."""
    bare = key[len("cora_org_") :] if key.startswith("cora_org_") else key
    key_id, dot, secret = bare.partition(".")
    if not dot:
        raise ValueError("a Cora key needs a '.' between keyId and secret")
    return key_id, secret


def cora_signature(secret: str, timestamp: str, method: str, path_with_query: str,
                   body: bytes) -> str:
    """Contract 1.1 steps 1-4: lowercase hex HMAC-SHA256 of ts.METHOD.path.sha256(body)."""
    body_hash = hashlib.sha256(body).hexdigest()
    canonical = f"{timestamp}.{method.upper()}.{path_with_query}.{body_hash}"
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def encode_json(payload: Any) -> bytes:
    # Spaces after separators on purpose: the server must hash the bytes it received, not a
    # re-serialisation of the parsed body.
    return json.dumps(payload).encode()


class CoraHttp:
    """Plain ``requests`` calls to the Cora side of a sandbox, signed per the contract.

    Every keyword of :meth:`request` exists so that a test can break exactly one part of a
    request (a header, the signed path, the signed body, the timestamp) and nothing else.
    """

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = urlsplit(self.base_url).path
        self.key = key
        self.secret = split_cora_key(key)[1]

    def now(self) -> str:
        return str(int(time.time()))

    def request(
        self,
        method: str,
        path: str,
        payload: Any = _NO_BODY,
        *,
        body: bytes | None = None,
        signed: bool | None = None,
        key: str | None = None,
        secret: str | None = None,
        timestamp: str | None = None,
        sign_method: str | None = None,
        sign_path: str | None = None,
        sign_body: bytes | None = None,
        signature: str | None = None,
        content_type: str | None = "application/json",
        omit: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> requests.Response:
        method = method.upper()
        if body is None:
            body = b"" if payload is _NO_BODY else encode_json(payload)
        if signed is None:
            signed = method in WRITE_METHODS
        headers: dict[str, str] = {"Authorization": f"Bearer {key or self.key}"}
        if signed:
            ts = timestamp if timestamp is not None else self.now()
            sig = signature
            if sig is None:
                sig = cora_signature(
                    secret if secret is not None else self.secret,
                    ts,
                    sign_method or method,
                    sign_path if sign_path is not None else self.prefix + path,
                    sign_body if sign_body is not None else body,
                )
            headers["X-Cora-Timestamp"] = ts
            headers["X-Cora-Signature"] = sig
        if content_type is not None and method in WRITE_METHODS:
            headers["Content-Type"] = content_type
        for name in omit:
            headers.pop(name, None)
        return requests.request(
            method, self.base_url + path, data=body if method in WRITE_METHODS else None,
            headers=headers, timeout=timeout,
        )

    def upsert(
        self,
        accounts: Any,
        *,
        dry_run: bool | None = None,
        include_changes: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        payload: dict[str, Any] = {"accounts": accounts}
        if dry_run is not None:
            payload["dryRun"] = dry_run
        if include_changes is not None:
            payload["includeChanges"] = include_changes
        return self.request("POST", "/external-api/accounts/bulk-upsert", payload, **kwargs)

    def upsert_ok(self, accounts: Any, **kwargs: Any) -> dict[str, Any]:
        """Upsert and insist on HTTP 200; returns the decoded answer."""
        resp = self.upsert(accounts, **kwargs)
        assert resp.status_code == 200, (resp.status_code, resp.text)
        answer: dict[str, Any] = resp.json()
        return answer

    def get_accounts(self, external_ids: Sequence[str], **kwargs: Any) -> requests.Response:
        query = "?externalIds=" + ",".join(external_ids)
        return self.request("GET", "/external-api/accounts" + query, **kwargs)

    def get_account(self, external_id: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", f"/external-api/accounts/{external_id}", **kwargs)

    def account(self, external_id: str) -> dict[str, Any]:
        """The stored account as GET shows it; the test fails if it does not exist."""
        resp = self.get_account(external_id)
        assert resp.status_code == 200, (resp.status_code, resp.text)
        doc: dict[str, Any] = resp.json()["account"]
        return doc

    def patch(self, external_id: str, payload: Any, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", f"/external-api/accounts/{external_id}", payload, **kwargs)


class RecotapHttp:
    """Plain ``requests`` calls to the Recotap side of a sandbox (``X-Api-Key``)."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key

    def request(
        self,
        method: str,
        path: str,
        payload: Any = _NO_BODY,
        *,
        body: bytes | None = None,
        key: str | None = None,
        send_key: bool = True,
        params: Mapping[str, Any] | None = None,
        content_type: str | None = "application/json",
        timeout: float = 30.0,
    ) -> requests.Response:
        method = method.upper()
        if body is None and payload is not _NO_BODY:
            body = encode_json(payload)
        headers: dict[str, str] = {}
        if send_key:
            headers["X-Api-Key"] = self.key if key is None else key
        if body is not None and content_type is not None:
            headers["Content-Type"] = content_type
        return requests.request(
            method, self.base_url + path, data=body, params=params, headers=headers,
            timeout=timeout,
        )

    def map(self, mappings: Any, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", "/accounts/external-ids", {"mappings": mappings}, **kwargs)

    def map_ok(self, mappings: Any) -> dict[str, Any]:
        resp = self.map(mappings)
        assert resp.status_code == 200, (resp.status_code, resp.text)
        data: dict[str, Any] = resp.json()["data"]
        return data

    def missing(self, limit: Any = None, **kwargs: Any) -> requests.Response:
        params = None if limit is None else {"limit": limit}
        return self.request("GET", "/accounts/missing-external-ids", params=params, **kwargs)

    def accounts(self, **params: Any) -> requests.Response:
        return self.request("GET", "/accounts", params=params or None)


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Rate-limit slot files and default journals of the whole run go to a temporary folder,
    never to the user's cache (folders of their own override it per test)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECOCORA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    # Imported here so that test modules which never start a server still collect on their own.
    from recocora.sandbox import Sandbox

    with Sandbox(seed="none", cora_window=0.0) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One real PostgreSQL server for the run (tests/pgserver.py), started on first use."""
    from tests.pgserver import PostgresServer

    with PostgresServer.running() as server:
        yield server


@pytest.fixture
def state_url(postgres: Any) -> str:
    """A fresh, empty database on the shared server: its postgresql:// URL."""
    url: str = postgres.new_database()
    return url


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A server of the test's own, which it may stop and start (an outage) without
    disturbing the others."""
    from tests.pgserver import PostgresServer

    with PostgresServer.running() as server:
        yield server


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    """The shared sandbox, emptied: no accounts, no faults, window 0, no skew, empty log."""
    sandbox.reset()
    return sandbox


@pytest.fixture
def cora(sb: Sandbox) -> CoraHttp:
    return CoraHttp(sb.cora_base_url, sb.cora_key)


@pytest.fixture
def rtp(sb: Sandbox) -> RecotapHttp:
    return RecotapHttp(sb.recotap_base_url, sb.recotap_key)


@pytest.fixture
def cora_for() -> type[CoraHttp]:
    """The Cora wrapper class, for tests that need a second key or another server."""
    return CoraHttp


@pytest.fixture
def recotap_for() -> type[RecotapHttp]:
    return RecotapHttp


@pytest.fixture
def sign() -> Any:
    """The contract's signing function, for tests that build requests by hand."""
    return cora_signature


# --------------------------------------------------------------------------- recocora clients


def _client_factory(build: Any, defaults: dict[str, Any]) -> Iterator[Any]:
    """Yield ``make(cls=None, rows=None, **kwargs)`` building clients with ``defaults`` (a
    test's kwargs win), ``rows`` shrinking the client's chunk size; all closed afterwards."""
    made: list[Any] = []

    def make(cls: Any = None, rows: int | None = None, **kwargs: Any) -> Any:
        client = (cls or build)(**{**defaults, **kwargs})
        if rows is not None:
            client.MAX_ROWS = rows
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def cora_client_for(sb: Sandbox) -> Iterator[Any]:
    """Cora clients on the sandbox: window 0 and fast retries unless the test asks."""
    from recocora import CoraClient
    from recocora._transport import RetryPolicy

    yield from _client_factory(CoraClient, {
        "api_key": sb.cora_key, "base_url": sb.cora_base_url, "min_interval": 0.0,
        # Tiny backoff keeps fault tests fast; the retry budget is the production one.
        "retry": RetryPolicy(backoff_base=0.01, backoff_cap=0.05),
    })


@pytest.fixture
def rtp_client_for(sb: Sandbox) -> Iterator[Any]:
    """Recotap clients on the sandbox with fast retries unless the test asks."""
    from recocora import RecotapClient
    from recocora._transport import RetryPolicy

    yield from _client_factory(RecotapClient, {
        "api_key": sb.recotap_key, "base_url": sb.recotap_base_url,
        "retry": RetryPolicy(backoff_base=0.01, backoff_cap=0.05),
    })
