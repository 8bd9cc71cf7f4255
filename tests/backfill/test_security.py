"""No key or secret in any repr, exception, log line, progress bar, CLI output or file
recocora writes; plain http only to the loopback; TLS verification on; the sandbox on the
loopback; constant-time secret comparisons in the sandbox."""

from __future__ import annotations

import logging
import signal
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recocora import (
    AuthError,
    ConfigError,
    CoraClient,
    RecocoraError,
    RecotapClient,
)
from recocora._ratelimit import SpacingLimiter
from recocora._state import Journal
from recocora.cli import main as cli_main
from recocora.cora._signing import parse_key
from recocora.errors import TooManyFailedError
from recocora.sandbox import FaultConfig, Sandbox

from .conftest import FAST_RETRY, accounts, add_companies, mappings

CORA_SECRET = "Zq7-secret-Vx93kLmN0pQ"
CORA_KEY = f"cora_org_sectest.{CORA_SECRET}"
RTP_KEY = "rtp_live_Hq82MZK3tq0aLw9e"


def fragments(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


SECRETS = fragments(CORA_SECRET) | fragments(RTP_KEY[4:])


def assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    leaked = sorted(s for s in SECRETS if s.encode() in data)
    assert not leaked, f"{where} shows part of a secret: {leaked[:3]}"


@pytest.fixture
def keys(sb: Sandbox) -> Iterator[None]:
    sb.add_cora_key(CORA_KEY, sb.cora_org)
    sb.add_recotap_key(RTP_KEY, sb.recotap_org)
    yield


def clients(sb: Sandbox, **cora: Any) -> tuple[CoraClient, RecotapClient]:
    cora.setdefault("min_interval", 0)
    return (
        CoraClient(CORA_KEY, sb.cora_base_url, retry=FAST_RETRY, **cora),
        RecotapClient(RTP_KEY, sb.recotap_base_url, retry=FAST_RETRY),
    )


def error_text(exc: BaseException) -> str:
    text = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    result = getattr(exc, "result", None)
    if isinstance(result, pd.DataFrame):
        text += result.to_string() + repr(result.attrs)
    return text


def test_reprs(sb: Sandbox, keys: None, tmp_path: Path) -> None:
    cora, rtp = clients(sb)
    things: list[Any] = [cora, rtp, cora.transport, rtp.transport, parse_key(CORA_KEY),
                         cora.limiter, SpacingLimiter(1.0, shared=tmp_path / "x.slot"),
                         Journal(tmp_path / "j.db"), sb]
    for thing in things:
        assert_clean(repr(thing) + str(thing), f"repr of {type(thing).__name__}")
    assert "sectest" in repr(cora)  # the key id is shown, to tell keys apart
    cora.close()
    rtp.close()


@pytest.mark.parametrize("bad", [
    "cora_org_sectest" + CORA_SECRET,  # no dot
    f"cora_org_sectest.{CORA_SECRET} x",  # whitespace inside
    f".{CORA_SECRET}",  # empty key id
])
def test_malformed_cora_keys_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        CoraClient(bad, "https://api.corafone.com")
    assert_clean(error_text(info.value), "ConfigError")


def test_auth_errors_of_both_apis(sb: Sandbox, keys: None) -> None:
    wrong_cora = CoraClient("cora_org_sectest.Zq7-secret-WRONGpQ", sb.cora_base_url,
                            min_interval=0, retry=FAST_RETRY)
    with pytest.raises(AuthError) as cora_info:
        accounts(3).cora.upsert(client=wrong_cora, progress=False)
    assert "sectest" in str(cora_info.value)
    wrong_rtp = RecotapClient("rtp_live_Hq82MZK3tq0aLw9X", sb.recotap_base_url,
                              retry=FAST_RETRY)
    sb.add_recotap_key(RTP_KEY, sb.recotap_org)
    with pytest.raises(AuthError) as rtp_info:
        mappings(3).recotap.map_ids(client=wrong_rtp, overwrite=True, progress=False)
    for exc in (cora_info.value, rtp_info.value):
        assert_clean(error_text(exc), type(exc).__name__)
    # The wrong keys share most of their characters with the right ones: not shown either.
    assert "WRONG" not in error_text(cora_info.value)
    wrong_cora.close()
    wrong_rtp.close()


def test_logs_at_debug_progress_bars_and_errors_of_long_runs(
    sb: Sandbox, keys: None, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: recocora, urllib3, requests
    add_companies(sb, 30)
    cora, rtp = clients(sb)
    cora.MAX_ROWS = 10  # type: ignore[misc]
    journal = tmp_path / "j.db"
    sb.set_faults(FaultConfig(seed=2, p_503=0.2, p_drop=0.1, p_drop_after=0.1, p_429=0.1,
                              retry_after_429=0, clock_skew=400))
    accounts(40).cora.upsert(client=cora, journal=journal, progress=True)
    mappings(40).recotap.map_ids(client=rtp, journal=journal, verify=True, progress=True)
    sb.set_faults(FaultConfig())
    df = accounts(30, start=200)
    df.loc[["r201", "r202"], "portfolioId"] = None  # new accounts need one: Cora refuses
    errors: list[BaseException] = []
    with pytest.raises(TooManyFailedError) as info:
        df.cora.upsert(client=cora, journal=journal, max_failed=0, progress=True)
    errors.append(info.value)
    with pytest.raises(RecocoraError) as server:
        sb.set_faults(FaultConfig(p_503=1.0))
        accounts(5, start=100).cora.upsert(client=cora, progress=True)
    errors.append(server.value)
    sb.set_faults(FaultConfig())
    out = capsys.readouterr()
    assert "Cora upsert" in out.err and "Recotap map_ids" in out.err  # the bars did run
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for where, text in (("logs", caplog.text), ("stderr", out.err), ("stdout", out.out)):
        assert_clean(text, where)
    for exc in errors:
        assert_clean(error_text(exc), type(exc).__name__)
    cora.close()
    rtp.close()


def test_interrupt_message_and_partial_result(
    sb: Sandbox, keys: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recocora.errors import RunInterrupted

    cora, _ = clients(sb)
    calls = {"n": 0}
    send = CoraClient.bulk_upsert_raw

    def stop(self: CoraClient, body: bytes) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGINT)
        return send(self, body)

    monkeypatch.setattr(CoraClient, "bulk_upsert_raw", stop)
    cora.MAX_ROWS = 5  # type: ignore[misc]
    with pytest.raises(RunInterrupted) as info:
        accounts(20).cora.upsert(client=cora, journal=tmp_path / "j.db", progress=False)
    assert_clean(error_text(info.value), "RunInterrupted")
    cora.close()


def test_files_recocora_writes_hold_no_secret(
    sb: Sandbox, keys: None, tmp_path: Path, cache_dir: Path
) -> None:
    add_companies(sb, 10)
    cora, rtp = clients(sb, min_interval=0.01)
    accounts(10).cora.upsert(client=cora, journal=True, progress=False)
    accounts(10).cora.upsert(client=cora, journal=tmp_path / "mine.db", progress=False)
    mappings(10).recotap.map_ids(client=rtp, journal=True, progress=False)
    slot = cora.limiter.shared_path
    assert slot is not None and slot.is_file()
    files = [p for p in [*cache_dir.rglob("*"), *tmp_path.glob("mine.db*"), slot]
             if p.is_file()]
    assert {".sqlite", ".slot", ".db"} <= {p.suffix for p in files}
    for path in files:
        assert_clean(path.read_bytes(), str(path))
        assert_clean(str(path), "a file name")
    cora.close()
    rtp.close()


def test_cli_output(sb: Sandbox, keys: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    add_companies(sb, 5)
    monkeypatch.setenv("CORA_API_KEY", CORA_KEY)
    monkeypatch.setenv("CORA_BASE_URL", sb.cora_base_url)
    monkeypatch.setenv("RECOTAP_API_KEY", RTP_KEY)
    monkeypatch.setenv("RECOTAP_BASE_URL", sb.recotap_base_url)
    cora_csv, rtp_csv = tmp_path / "accounts.csv", tmp_path / "crm.csv"
    accounts(5).to_csv(cora_csv, index=False)
    mappings(5).to_csv(rtp_csv, index=False)
    codes = [
        cli_main(["cora", "upsert", str(cora_csv), "--min-interval", "0"]),
        cli_main(["recotap", "map-ids", str(rtp_csv)]),
    ]
    monkeypatch.setenv("CORA_API_KEY", "cora_org_sectest.Zq7-secret-WRONGpQ")
    monkeypatch.setenv("RECOTAP_API_KEY", "rtp_live_Hq82MZK3tq0aLw9X")
    codes.append(cli_main(["cora", "upsert", str(cora_csv), "--min-interval", "0"]))
    codes.append(cli_main(["recotap", "map-ids", str(rtp_csv)]))
    assert codes == [0, 0, 2, 2]
    out = capsys.readouterr()
    assert_clean(out.out + out.err, "CLI output")


# --------------------------------------------------------------------------- transport


@pytest.mark.parametrize("url", ["http://api.corafone.com", "http://10.0.0.5:8080",
                                 "http://example.com/api/v1", "ftp://127.0.0.1"])
def test_plain_http_off_the_loopback_is_refused_by_both_clients(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="http"):
        CoraClient(CORA_KEY, url)
    with pytest.raises(ConfigError, match="http"):
        RecotapClient(RTP_KEY, url)
    # The same from the environment.
    monkeypatch.setenv("CORA_BASE_URL", url)
    monkeypatch.setenv("RECOTAP_BASE_URL", url)
    with pytest.raises(ConfigError):
        CoraClient(CORA_KEY)
    with pytest.raises(ConfigError):
        RecotapClient(RTP_KEY)


@pytest.mark.parametrize("url", ["https://api.corafone.com", "http://127.0.0.1:8765",
                                 "http://localhost:1", "http://[::1]:9"])
def test_https_and_loopback_http_are_accepted_with_tls_verification_on(url: str) -> None:
    cora, rtp = CoraClient(CORA_KEY, url), RecotapClient(RTP_KEY, url)
    for client in (cora, rtp):
        assert client.transport.session.verify is True
        assert client.transport.session.trust_env is False  # no proxy or netrc picked up
        client.close()


def test_the_sandbox_binds_the_loopback_unless_told(sb: Sandbox) -> None:
    assert sb.host == "127.0.0.1"
    assert Sandbox().host == "127.0.0.1"
    assert sb.cora_base_url.startswith("http://127.0.0.1:")


def test_sandbox_compares_secrets_in_constant_time(
    sb: Sandbox, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    from recocora.sandbox import _cora_auth as sandbox_cora
    from recocora.sandbox import _recotap as sandbox_recotap

    seen: list[tuple[bytes | str, bytes | str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sandbox_cora.hmac, "compare_digest", spy)
    monkeypatch.setattr(sandbox_recotap.hmac, "compare_digest", spy)
    cora, rtp = clients(sb)
    cora.bulk_upsert([{"externalId": "x", "portfolioId": "p", "phoneNumber": "+15550000000",
                       "metadata": {"filenumber": "f"}}])
    rtp.unmapped_accounts(limit=1)
    compared = {bytes(a) if isinstance(a, bytes) else a.encode() for a, _ in seen}
    assert CORA_SECRET.encode() in compared  # the key's secret
    assert len(seen) >= 3  # secret, signature, Recotap key digest
    cora.close()
    rtp.close()
