"""The sandbox as a server: headers, bad bodies, unknown routes, size limit, concurrency, CLI,
seed data and persistence."""

from __future__ import annotations

import email.utils
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

BULK = "/external-api/accounts/bulk-upsert"
MAX_BODY = 16 * 1024 * 1024
EXPORTS = {"CORA_BASE_URL", "CORA_API_KEY", "RECOTAP_BASE_URL", "RECOTAP_API_KEY"}
READ_ONLY = {"id", "organizationId", "status_category", "currentEmailAddressId",
             "emailAddressIds", "createdAt", "updatedAt"}


def new_row(ext: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "externalId": ext,
        "portfolioId": "pf-1",
        "phoneNumber": "+15551230000",
        "metadata": {"filenumber": f"F-{ext}"},
    }
    row.update(fields)
    return row


def cora_error(resp: requests.Response) -> tuple[int, str]:
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    return resp.status_code, body["code"]


def recotap_error(resp: requests.Response) -> int:
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["statusCode"] == resp.status_code
    assert isinstance(body["message"], str) and body["message"]
    assert body["path"].startswith("/api/v1")
    return resp.status_code


def logged(sb: Any, count: int) -> list[Any]:
    """The last ``count`` records of the request log, waiting for them to be logged (a record
    may trail its answer, see test_request_log_is_written_before_the_answer)."""
    deadline = time.monotonic() + 5.0
    while len(sb.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(sb.requests)[-count:]


def padded(prefix: bytes, size: int) -> bytes:
    # JSON allows trailing whitespace, so this is a valid document of exactly ``size`` bytes.
    return prefix + b" " * (size - len(prefix))


# --------------------------------------------------------------------------- Date header


REQUESTS: dict[str, Callable[[Any, Any], requests.Response]] = {
    "cora-200": lambda cora, rtp: cora.upsert([new_row("a")]),
    "cora-get": lambda cora, rtp: cora.get_accounts(["a"]),
    "cora-401": lambda cora, rtp: cora.get_accounts(["a"], key="cora_org_no.body"),
    "cora-400": lambda cora, rtp: cora.upsert([]),
    "cora-404": lambda cora, rtp: cora.get_account("missing"),
    "cora-405": lambda cora, rtp: cora.request("DELETE", BULK, {}),
    "cora-415": lambda cora, rtp: cora.upsert([new_row("a")], content_type=None),
    "unknown-404": lambda cora, rtp: requests.get(cora.base_url + "/nowhere", timeout=10),
    "recotap-200": lambda cora, rtp: rtp.accounts(),
    "recotap-401": lambda cora, rtp: rtp.request("GET", "/accounts", send_key=False),
    "recotap-400": lambda cora, rtp: rtp.map([]),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_every_response_has_a_date_header(sb, cora, rtp, name):
    resp = REQUESTS[name](cora, rtp)
    assert name.endswith(str(resp.status_code)) or name.endswith("get"), resp.status_code
    date = email.utils.parsedate_to_datetime(resp.headers["Date"])
    assert abs(date.timestamp() - time.time()) < 120


def test_429_has_a_date_header(sb, cora):
    sb.force_429(1)
    resp = cora.get_accounts(["a"])
    assert resp.status_code == 429
    assert "Date" in resp.headers


# --------------------------------------------------------------------------- bad bodies


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{\"accounts\": [", b"\xff\xfe\x00garbage", b"",
     b'{"accounts": [{"externalId": "a", "currentBalance": NaN}]}', b"{} {}"],
    ids=["text", "truncated", "binary", "empty", "nan", "two-documents"],
)
def test_cora_body_not_json(sb, cora, body):
    resp = cora.request("POST", BULK, body=body)
    assert cora_error(resp) == (400, "INVALID_REQUEST_BODY")
    assert sb.cora_accounts() == []


def test_cora_patch_body_not_json(sb, cora):
    cora.upsert_ok([new_row("a")])
    resp = cora.request("PATCH", "/external-api/accounts/a", body=b"{bucket:")
    assert cora_error(resp)[0] == 400


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"", b'{"mappings": [NaN]}'])
def test_recotap_body_not_json(rtp, body):
    assert recotap_error(rtp.request("PATCH", "/accounts/external-ids", body=body)) == 400


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_cora_writes_need_json_content_type(sb, cora, content_type):
    cora.upsert_ok([new_row("a")])
    resp = cora.upsert([new_row("b")], content_type=content_type)
    assert cora_error(resp) == (415, "UNSUPPORTED_MEDIA_TYPE")
    resp = cora.patch("a", {"bucket": "x"}, content_type=content_type)
    assert cora_error(resp) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert [a["externalId"] for a in sb.cora_accounts()] == ["a"]
    assert "bucket" not in sb.cora_account("a")


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_recotap_writes_need_json_content_type(sb, rtp, content_type):
    sb.add_recotap_account(domain="a.com", name="A")
    resp = rtp.map([{"domain": "a.com", "externalId": "x"}], content_type=content_type)
    assert recotap_error(resp) == 415
    assert [a.get("externalId") for a in sb.recotap_accounts()] == [None]


def test_json_content_type_with_charset_is_accepted(sb, cora, rtp):
    ct = "application/json; charset=utf-8"
    assert cora.upsert([new_row("a")], content_type=ct).status_code == 200
    sb.add_recotap_account(domain="a.com", name="A")
    assert rtp.map([{"domain": "a.com", "externalId": "x"}], content_type=ct).status_code == 200


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    "path", ["/external-api/nothing", "/external-api/accounts/a/b", "/external-api/"]
)
def test_unknown_cora_path(cora, path):
    assert cora_error(cora.request("GET", path)) == (404, "NOT_FOUND")


@pytest.mark.parametrize("path", ["/nothing", "/accounts/a/b", "/account"])
def test_unknown_recotap_path(rtp, path):
    assert recotap_error(rtp.request("GET", path)) == 404


@pytest.mark.parametrize("path", ["/", "/favicon.ico", "/api/v2/accounts", "/external"])
def test_unknown_path_elsewhere(cora, path):
    resp = requests.get(cora.base_url + path, timeout=10)
    assert resp.status_code == 404
    assert "Date" in resp.headers


@pytest.mark.parametrize(
    "method, path",
    [("POST", "/accounts/external-ids"), ("DELETE", "/accounts"), ("PUT", "/accounts"),
     ("POST", "/accounts/missing-external-ids")],
)
def test_recotap_wrong_method(rtp, method, path):
    assert recotap_error(rtp.request(method, path, {"mappings": []})) == 405


# --------------------------------------------------------------------------- body size


def test_oversized_cora_body(sb, cora):
    resp = cora.request("POST", BULK, body=padded(b'{"accounts": []}', MAX_BODY + 1))
    assert cora_error(resp) == (413, "PAYLOAD_TOO_LARGE")


def test_body_of_exactly_the_limit_is_read(cora):
    resp = cora.request("POST", BULK, body=padded(b'{"accounts": []}', MAX_BODY))
    assert cora_error(resp) == (400, "ACCOUNTS_REQUIRED")


def test_oversized_recotap_body(sb, rtp):
    resp = rtp.request("PATCH", "/accounts/external-ids",
                       body=padded(b'{"mappings": []}', MAX_BODY + 1))
    assert recotap_error(resp) == 413


def test_server_still_serves_after_an_oversized_body(sb, cora):
    cora.request("POST", BULK, body=padded(b'{"accounts": []}', MAX_BODY + 1))
    assert cora.upsert_ok([new_row("a")])["created"] == 1


# --------------------------------------------------------------------------- concurrency


def test_fifty_concurrent_requests(sb, cora, rtp):
    for i in range(10):
        sb.add_recotap_account(domain=f"c{i}.com", name=f"C{i}")

    def job(i: int) -> int:
        kind = i % 5
        if kind in (0, 1):
            return cora.upsert([new_row(f"c{i}")]).status_code
        if kind == 2:
            return cora.get_accounts([f"c{i - 2}", "x"]).status_code
        if kind == 3:
            return rtp.map([{"domain": f"c{i % 10}.com", "externalId": f"e{i}"}]).status_code
        return rtp.accounts(limit=5).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(job, range(50)))
    assert statuses == [200] * 50
    assert len(sb.cora_accounts()) == 20
    assert len(logged(sb, 50)) == 50


def test_concurrent_upserts_of_one_id_create_it_once(sb, cora):
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: cora.upsert_ok([new_row("same")]), range(20)))
    statuses = sorted(a["results"][0]["status"] for a in answers)
    assert statuses == ["created"] + ["unchanged"] * 19
    assert len(sb.cora_accounts()) == 1


def test_keep_alive_session(cora):
    with requests.Session() as session:
        for _ in range(20):
            resp = session.get(cora.base_url + "/external-api/accounts?externalIds=a",
                               headers={"Authorization": f"Bearer {cora.key}"}, timeout=10)
            assert resp.status_code == 200


def test_request_log_is_written_before_the_answer(sb, cora):
    # Tests read sb.requests right after their last answer, and the next test starts with
    # reset(): a record that lands after its answer is missing from the first and leaks into
    # the second.
    missing = 0
    for _ in range(100):
        cora.get_accounts(["a"])
        missing += not sb.requests
        sb.reset()
    time.sleep(0.2)
    assert (missing, sb.requests) == (0, [])


def test_request_log(sb, cora):
    cora.get_accounts(["a"])
    cora.upsert([])
    log = logged(sb, 2)
    assert [(r.method, r.path.split("?")[0], r.status, r.fault) for r in log] == [
        ("GET", "/external-api/accounts", 200, None),
        ("POST", BULK, 400, None),
    ]


# --------------------------------------------------------------------------- seed data


def _projection(accounts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((a["externalId"], a.get("phoneNumber"), a.get("portfolioId"),
                   repr(a.get("metadata")), repr(a.get("person"))) for a in accounts)


def test_demo_seed(sb, cora, rtp):
    sb.reset(seed="demo")
    accounts = sb.cora_accounts()
    assert 1800 <= len(accounts) <= 2200
    assert len({a["portfolioId"] for a in accounts}) == 2
    assert all(a["metadata"].get("filenumber") for a in accounts)
    assert all(re.fullmatch(r"\+[1-9][0-9]{0,14}", a["phoneNumber"]) for a in accounts)
    assert sum(bool(a.get("person")) for a in accounts) >= 0.9 * len(accounts)
    assert sum(bool(a.get("address")) for a in accounts) >= 0.9 * len(accounts)
    assert len(set(a["metadata"].get("filenumber") for a in accounts)) > 1
    recotap = sb.recotap_accounts()
    assert 1350 <= len(recotap) <= 1650
    unmapped = sum(a.get("externalId") is None for a in recotap)
    assert 0.28 <= unmapped / len(recotap) <= 0.39
    assert len({a["domain"] for a in recotap}) == len(recotap)

    # The seed is served over HTTP like any other data, and it is valid by the server's own
    # rules: sending 500 accounts back unmodified changes nothing.
    ids = [a["externalId"] for a in accounts[:200]]
    assert cora.get_accounts(ids).json()["count"] == 200
    rows = [{k: v for k, v in a.items() if k not in READ_ONLY} for a in accounts[:500]]
    answer = cora.upsert_ok(rows)
    changed = [r for r in answer["results"] if r["status"] != "unchanged"]
    assert answer["unchanged"] == 500, changed[:3]
    missing = rtp.missing(limit=1000).json()["data"]
    assert len(missing) == unmapped

    sb.reset(seed="demo")
    assert _projection(sb.cora_accounts()) == _projection(accounts)
    assert sorted((a["domain"], a.get("externalId")) for a in sb.recotap_accounts()) == sorted(
        (a["domain"], a.get("externalId")) for a in recotap)


# --------------------------------------------------------------------------- CLI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("recocora")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from recocora.cli import main; sys.exit(main())"]


class CliServer:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def exports(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in self.lines:
            m = re.match(r"\s*export\s+([A-Z_]+)=(.*)$", line)
            if m:
                found[m.group(1)] = m.group(2).strip().strip("'\"")
        return found

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output
            try:
                requests.get(f"http://127.0.0.1:{self.port}/api/v1/accounts", timeout=1)
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            if set(self.exports()) >= EXPORTS:
                return
            time.sleep(0.05)
        raise AssertionError(f"sandbox CLI not ready after {timeout}s:\n{self.output}")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        self._reader.join(timeout=5)
        return code


@contextmanager
def cli(*args: str) -> Iterator[CliServer]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*cli_command(), "sandbox", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    server = CliServer(proc, port)
    try:
        server.wait_ready()
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_cli_serves_demo_and_stops_on_sigint(cora_for, recotap_for):
    with cli("--seed", "demo", "--cora-key", "cora_org_demo.s3cret", "--recotap-key", "rtp_demo",
             "--cora-window", "0") as server:
        base = f"http://127.0.0.1:{server.port}"
        assert server.exports() == {
            "CORA_BASE_URL": base,
            "CORA_API_KEY": "cora_org_demo.s3cret",
            "RECOTAP_BASE_URL": base + "/api/v1",
            "RECOTAP_API_KEY": "rtp_demo",
        }
        assert base in server.output
        cora = cora_for(base, "cora_org_demo.s3cret")
        answer = cora.upsert_ok([new_row("cli-1")])
        assert answer["results"][0]["status"] == "created"
        assert cora.account("cli-1")["externalId"] == "cli-1"
        rtp = recotap_for(base + "/api/v1", "rtp_demo")
        unmapped = rtp.missing(limit=1000).json()["data"]
        assert 400 <= len(unmapped) <= 600
        assert server.interrupt() == 0
    assert "Traceback" not in server.output


def test_cli_db_survives_restart_and_takes_fault_flags(tmp_path, cora_for):
    db = str(tmp_path / "sandbox.db")
    keys = ("--cora-key", "cora_org_keep.secret", "--recotap-key", "rtp_keep")
    with cli("--seed", "none", "--db", db, *keys) as server:
        base = f"http://127.0.0.1:{server.port}"
        cora = cora_for(base, "cora_org_keep.secret")
        cora.upsert_ok([new_row("persist", bucket="B")])
        assert server.interrupt() == 0
    with cli("--db", db, *keys, "--clock-skew", "3600") as server:
        base = f"http://127.0.0.1:{server.port}"
        cora = cora_for(base, "cora_org_keep.secret")
        resp = cora.get_account("persist")
        assert resp.status_code == 200
        assert resp.json()["account"]["bucket"] == "B"
        skew = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp() - time.time()
        assert abs(skew - 3600) < 120
        assert server.interrupt() == 0


def test_cli_takes_answer_variants(recotap_for):
    with cli("--seed", "demo", "--recotap-key", "rtp_variants", "--variant", "unicode_domains",
             "--variant", "bare_answers") as server:
        rtp = recotap_for(f"http://127.0.0.1:{server.port}/api/v1", "rtp_variants")
        unmapped = rtp.missing(limit=1000).json()
        assert isinstance(unmapped, list)
        assert any(not row["domain"].isascii() for row in unmapped)
        assert server.interrupt() == 0


def test_cli_random_keys_and_window(cora_for):
    with cli("--seed", "none", "--cora-window", "30") as server:
        exports = server.exports()
        cora = cora_for(exports["CORA_BASE_URL"], exports["CORA_API_KEY"])
        assert cora.upsert_ok([new_row("a")])["created"] == 1
        resp = cora.upsert([new_row("b")])
        assert resp.status_code == 429
        assert 25 <= int(resp.headers["Retry-After"]) <= 30
        assert server.interrupt() == 0


def test_cli_fault_flags(cora_for):
    flags = ["--fault-seed", "5", "--p-500", "0", "--p-502", "0", "--p-503", "1",
             "--p-drop", "0", "--p-drop-after", "0", "--latency", "0", "--spike-p", "0",
             "--spike", "0", "--p-429", "0", "--burst-429", "1", "--clock-skew", "0",
             "--recotap-rps", "100"]
    with cli("--seed", "none", *flags) as server:
        exports = server.exports()
        cora = cora_for(exports["CORA_BASE_URL"], exports["CORA_API_KEY"])
        assert cora.get_accounts(["a"]).status_code == 503
        assert server.interrupt() == 0


def test_deeply_nested_body_is_a_clean_400(sb, cora, rtp):
    depth = 100_000
    nested = b'{"accounts": [{"externalId": "a", "metadata": ' + b'{"a": ' * depth + b"1" + (
        b"}" * depth) + b"}]}"
    resp = cora.request("POST", BULK, body=nested)
    assert 400 <= resp.status_code < 500
    assert resp.json()["success"] is False
    deep_list = b'{"mappings": ' + b"[" * depth + b"]" * depth + b"}"
    resp = rtp.request("PATCH", "/accounts/external-ids", body=deep_list)
    assert recotap_error(resp) == 400
    assert cora.upsert_ok([new_row("b")])["created"] == 1


@pytest.mark.parametrize(
    "params",
    [{"cursor": "garbage"}, {"cursor": ""}, {"limit": "0"}, {"limit": "-3"}, {"limit": "x"},
     {"limit": "100000"}],
)
def test_odd_list_parameters_never_crash(sb, rtp, params):
    sb.add_recotap_account(domain="a.com", name="A")
    resp = rtp.request("GET", "/accounts", params=params)
    assert resp.status_code < 500
    assert resp.json()["statusCode"] == resp.status_code


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", ["/external-api/accounts/bulk-upsert", "/api/v1/accounts"])
def test_other_standard_methods_are_405_json(cora, method, path):
    resp = requests.request(method, cora.base_url + path, timeout=10)
    assert resp.status_code == 405
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "Date" in resp.headers


@pytest.mark.parametrize("path", ["/external-api/accounts/bulk-upsert", "/api/v1/accounts"])
def test_head_never_crashes(cora, path):
    resp = requests.head(cora.base_url + path, timeout=10)
    assert resp.status_code < 500
    assert "Date" in resp.headers


def test_a_stopped_sandbox_ends_the_connections_clients_kept_alive() -> None:
    from recocora.sandbox import Sandbox

    own = Sandbox(seed="none", cora_window=0.0).start()
    url = own.recotap_base_url + "/accounts"
    headers = {"X-API-Key": own.recotap_key}
    with requests.Session() as session:
        try:
            assert session.get(url, headers=headers, timeout=10).status_code == 200
        finally:
            own.close()
        # The pooled connection is gone too: nothing answers, not even a handler thread
        # left serving a closed store.
        with pytest.raises(requests.ConnectionError):
            session.get(url, headers=headers, timeout=10)
