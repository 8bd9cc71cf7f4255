"""The ``recocora`` command, run as a subprocess against the test sandbox.

Credentials reach the command through the environment only, as they do for a user; every
test checks the exit code and what was (or was not) sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recocora import CoraClient
from recocora._report import CORA_STATUSES
from recocora.cli import main
from recocora.sandbox import Sandbox

BIN = Path(sys.executable).with_name("recocora")
COMMAND = (
    [str(BIN)] if BIN.exists()
    else [sys.executable, "-c", "from recocora.cli import main; raise SystemExit(main())"]
)
SECRET = "cli-test-secret-9f3a"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORA_", "RECOTAP_", "RECOCORA_"))}
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
        check=False,
    )


@pytest.fixture
def env(sb: Sandbox, tmp_path: Path) -> dict[str, str]:
    # Rate-limit slots are shared between processes through the cache folder: one per test.
    return clean_env(**sb.env(), RECOCORA_CACHE_DIR=str(tmp_path / "cache"))


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def call(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        extra = []
        if args[:2] == ("cora", "upsert") and "--help" not in args:
            extra = ["--min-interval", "0"]  # the test sandbox has no bulk window
        return run([*args, *extra], {**env, **overrides}, tmp_path)

    return call


def posts(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method == "POST"]


def existing(sb: Sandbox, external_id: str, **fields: Any) -> None:
    sb.put_cora_account({
        "externalId": external_id, "portfolioId": "pf_1", "phoneNumber": "+15125550100",
        "metadata": {"filenumber": f"F-{external_id}"}, "bucket": "current", **fields,
    })


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


NEW_ACCOUNTS = (
    "externalId,phoneNumber,portfolioId,metadata.filenumber,address.zip,currentBalance\n"
    "A-1,+15125550101,pf_1,F-1,02134,10.5\n"
    "A-2,+15125550102,pf_1,F-2,,20\n"
)


def test_upsert_csv_creates_accounts_and_writes_one_result_row_per_input_row(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS)
    done = cli("cora", "upsert", "in.csv", "--out", "res.csv", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "created" in done.stdout and "res.csv" in done.stdout
    res = pd.read_csv(tmp_path / "res.csv", dtype=str)
    assert res["row"].tolist() == ["0", "1"]
    assert res["cora_status"].tolist() == ["created", "created"]
    assert res["cora_external_id"].tolist() == ["A-1", "A-2"]
    # Cells are read as text: the zip keeps its leading zero; the empty one is left out.
    stored = sb.cora_account("A-1")
    assert stored is not None and stored["address"]["zip"] == "02134"
    assert stored["currentBalance"] == 10.5
    assert "address" not in (sb.cora_account("A-2") or {})
    assert len(posts(sb)) == 1


def test_parquet_in_and_out_with_a_failed_row_exits_1(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    existing(sb, "E-1")
    frame = pd.DataFrame({
        "externalId": ["E-1", "N-1"],
        "bucket": ["90+", "current"],
        "currentBalance": [12.25, 30.0],
    })
    frame.to_parquet(tmp_path / "in.parquet")
    done = cli("cora", "upsert", "in.parquet", "--out", "res.parquet", "--no-progress",
               "--include-changes")
    assert done.returncode == 1, done.stderr
    res = pd.read_parquet(tmp_path / "res.parquet")
    assert res["cora_status"].tolist() == ["updated", "failed"]
    assert res.loc[1, "cora_code"] == "MISSING_REQUIRED_FIELD"
    # Nested cells are JSON text in the file.
    details = json.loads(res.loc[1, "cora_details"])
    assert {d["field"] for d in details} == {"phoneNumber", "portfolioId", "metadata.filenumber"}
    changes = json.loads(res.loc[0, "cora_changes"])
    assert {"field": "bucket", "from": "current", "to": "90+"} in changes
    assert "N-1" in done.stdout and "MISSING_REQUIRED_FIELD" in done.stdout
    assert "bucket" in done.stdout  # the first field changes are shown


def test_diff_previews_without_any_post(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    existing(sb, "E-1")
    write_csv(tmp_path / "in.csv", "externalId,bucket\nE-1,60-90\nE-2,current\n")
    done = cli("cora", "upsert", "in.csv", "--diff", "--out", "preview.csv")
    assert done.returncode == 1  # E-2 would fail: a new account without create fields
    assert posts(sb) == []
    assert (sb.cora_account("E-1") or {})["bucket"] == "current"
    res = pd.read_csv(tmp_path / "preview.csv")
    assert res["cora_status"].tolist() == ["updated", "failed"]
    assert "computed locally" in done.stdout
    assert "'current' → '60-90'" in done.stdout


def test_diff_of_fine_rows_exits_0(cli: Callable[..., Any], sb: Sandbox, tmp_path: Path) -> None:
    existing(sb, "E-1")
    write_csv(tmp_path / "in.csv", "externalId,bucket\nE-1,current\n")
    done = cli("cora", "upsert", "in.csv", "--diff", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unchanged" in done.stdout
    assert posts(sb) == []


def test_dry_run_sends_one_dry_request_and_writes_nothing(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    existing(sb, "E-1")
    write_csv(tmp_path / "in.csv", "externalId,bucket\nE-1,30-60\n")
    done = cli("cora", "upsert", "in.csv", "--dry-run", "--include-changes", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert len(posts(sb)) == 1
    assert (sb.cora_account("E-1") or {})["bucket"] == "current"
    assert "dry run" in done.stdout and "updated" in done.stdout
    assert "'current' → '30-60'" in done.stdout


def test_columns_map_renames_the_files_columns(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "export.csv",
              "File #,Phone,Portfolio,File number\n0042,+15125550142,pf_1,F-42\n")
    (tmp_path / "map.json").write_text(json.dumps({
        "File #": "externalId", "Phone": "phoneNumber", "Portfolio": "portfolioId",
        "File number": "metadata.filenumber",
    }))
    done = cli("cora", "upsert", "export.csv", "--columns", "map.json", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    stored = sb.cora_account("0042")  # read as text: the leading zeros survive
    assert stored is not None and stored["metadata"]["filenumber"] == "F-42"


def test_a_journaled_rerun_sends_only_what_was_not_acknowledged(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS)
    first = cli("cora", "upsert", "in.csv", "--journal", "run.db", "--no-progress")
    assert first.returncode == 0, first.stderr
    again = cli("cora", "upsert", "in.csv", "--journal", "run.db", "--no-progress",
                "--out", "again.csv")
    assert again.returncode == 0, again.stderr
    assert len(posts(sb)) == 1
    assert set(pd.read_csv(tmp_path / "again.csv")["cora_status"]) == {"skipped"}
    forced = cli("cora", "upsert", "in.csv", "--journal", "run.db", "--force", "--no-progress")
    assert forced.returncode == 0 and "unchanged" in forced.stdout
    assert len(posts(sb)) == 2


def test_invalid_rows_raise_sends_nothing_and_exits_1(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS + "A-3,(512) 555-0103,pf_1,F-3,,\n")
    done = cli("cora", "upsert", "in.csv", "--out", "res.csv")
    assert done.returncode == 1
    assert "row 2, column phoneNumber" in done.stdout
    assert "--on-invalid skip" in done.stderr
    assert sb.requests == []
    assert not (tmp_path / "res.csv").exists()


def test_invalid_rows_skip_sends_the_rest(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS + "A-3,(512) 555-0103,pf_1,F-3,,\n")
    done = cli("cora", "upsert", "in.csv", "--on-invalid", "skip", "--out", "res.csv",
               "--no-progress")
    assert done.returncode == 1
    res = pd.read_csv(tmp_path / "res.csv")
    assert res["cora_status"].tolist() == ["created", "created", "invalid"]
    assert sb.cora_account("A-3") is None


def test_results_to_stdout_keep_the_summary_off_it(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS)
    done = cli("cora", "upsert", "in.csv", "--out", "-", "--no-progress")
    assert done.returncode == 0, done.stderr
    from io import StringIO

    res = pd.read_csv(StringIO(done.stdout))
    assert res["cora_status"].tolist() == ["created", "created"]
    assert "outcome:" in done.stderr


def test_auth_error_exits_2_with_one_clean_line_and_no_secret(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS)
    bad_key = f"cora_org_sandbox.{SECRET}"
    done = cli("cora", "upsert", "in.csv", "--out", "res.csv", "--no-progress",
               CORA_API_KEY=bad_key)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("recocora:")]
    assert len(errors) == 1 and "401" in errors[0]
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr
    # What was known when the run stopped is kept: every row not sent.
    res = pd.read_csv(tmp_path / "res.csv")
    assert set(res["cora_status"]) == {"not_sent"}
    assert sb.cora_accounts() == []


def test_recotap_auth_error_exits_2_without_the_key(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    done = cli("recotap", "unmapped", RECOTAP_API_KEY=f"rtp_{SECRET}")
    assert done.returncode == 2
    assert "401" in done.stderr and "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


# Usage errors and help run in process (same ``main`` as the installed command), to keep the
# suite quick; the subprocess tests above cover the command's wiring and environment.


def in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["cora", "upsert", "missing.csv"], "no such file"),
        (["cora", "upsert", "in.xlsx"], "extension"),
        (["cora", "upsert", "in.csv", "--out", "res.xlsx"], "extension"),
        (["cora", "upsert", "in.csv", "--dry-run", "--diff"], "not allowed"),
        (["recotap", "map-ids", "in.csv", "--domain-col", "website"], "website"),
        (["recotap", "unmapped", "--limit", "5000"], "--limit"),
        (["cora", "upsert", "in.csv", "--api-key", "x"], "unrecognized"),
        (["demo", "--rows", "3"], "--rows"),
        (["cora", "upsert", "in.csv", "--columns", "list.json"], "--columns"),
        (["cora", "upsert", "in.csv", "--columns", "missing.json"], "--columns"),
        (["cora", "upsert", "in.csv", "--diff", "--journal", "j.db"], "--journal"),
        (["cora", "upsert", "in.csv", "--force"], "--force needs --journal"),
        (["cora", "upsert", "in.csv", "--max-failed", "1.5"], "fraction"),
        (["cora", "upsert", "in.csv", "--drop-columns", "nope"], "'nope'"),
        (["cora", "upsert", "in.csv", "--drop-columns", "a,,b"], "comma-separated"),
        (["cora", "upsert", "in.csv", "--phone-region", "XX"], "--phone-region XX"),
        (["cora", "upsert", "in.csv", "--columns", "tel.json"], "--columns renames 'Tel'"),
    ],
)
def test_usage_errors_exit_2(
    env: dict[str, str], sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS)
    (tmp_path / "in.xlsx").write_text("x")
    (tmp_path / "list.json").write_text('["externalId"]')
    (tmp_path / "tel.json").write_text('{"Tel": "phoneNumber"}')
    code, _, err = in_process(args, capsys)
    assert code == 2
    assert says in err and "Traceback" not in err
    assert sb.requests == []


def test_missing_credentials_and_unsafe_url_are_configuration_errors(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS)
    monkeypatch.delenv("CORA_API_KEY", raising=False)
    monkeypatch.setenv("CORA_BASE_URL", sb.cora_base_url)
    code, _, err = in_process(["cora", "upsert", "in.csv"], capsys)
    assert code == 2 and "CORA_API_KEY" in err
    monkeypatch.setenv("CORA_API_KEY", f"cora_org_k.{SECRET}")
    monkeypatch.setenv("CORA_BASE_URL", "http://example.com")
    code, out, err = in_process(["cora", "upsert", "in.csv"], capsys)
    assert code == 2 and "https" in err
    assert SECRET not in out + err
    assert sb.requests == []


@pytest.mark.parametrize(
    "args",
    [[], ["cora", "upsert"], ["recotap", "map-ids"], ["recotap", "unmapped"], ["demo"]],
)
def test_help_shows_examples(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = in_process([*args, "--help"], capsys)
    assert code == 0
    assert "examples:" in out


def test_unmapped_to_a_file_and_to_stdout(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.add_recotap_account(domain="globex.com", name="Globex", external_id="crm-2")
    sb.add_recotap_account(domain="initech.com", name="Initech")
    done = cli("recotap", "unmapped", "--out", "unmapped.parquet")
    assert done.returncode == 0, done.stderr
    listed = pd.read_parquet(tmp_path / "unmapped.parquet")
    assert sorted(listed["domain"]) == ["acme.com", "initech.com"]
    assert "2 Recotap accounts" in done.stdout
    piped = cli("recotap", "unmapped", "--limit", "1")
    assert piped.returncode == 0
    assert piped.stdout.splitlines()[0] == "name,domain" and len(piped.stdout.splitlines()) == 2
    assert "may be more" in piped.stderr


def test_map_ids_by_domain_with_verify_and_overwrite(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    sb.add_recotap_account(domain="globex.com", name="Globex", external_id="crm-old")
    write_csv(tmp_path / "crm.csv",
              "website,crm_id\nhttps://www.Acme.com/,0001\nglobex.com,C-2\nunknown.io,C-3\n")
    preview = cli("recotap", "map-ids", "crm.csv", "--domain-col", "website", "--id-col",
                  "crm_id", "--diff")
    assert preview.returncode == 0, preview.stderr
    assert "would be:" in preview.stdout and "already_mapped" in preview.stdout
    assert [r for r in sb.requests if r.method == "PATCH"] == []

    done = cli("recotap", "map-ids", "crm.csv", "--domain-col", "website", "--id-col", "crm_id",
               "--verify", "--out", "res.csv", "--no-progress")
    assert done.returncode == 0, done.stderr
    res = pd.read_csv(tmp_path / "res.csv", dtype=str)
    assert res["recotap_status"].tolist() == ["mapped", "already_mapped", "not_found"]
    ids = {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}
    assert ids == {"acme.com": "0001", "globex.com": "crm-old"}
    assert "--overwrite" in done.stdout

    again = cli("recotap", "map-ids", "crm.csv", "--domain-col", "website", "--id-col",
                "crm_id", "--overwrite", "--no-progress")
    assert again.returncode == 0
    assert {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}["globex.com"] == "C-2"


def test_map_ids_invalid_rows_exit_1(cli: Callable[..., Any], sb: Sandbox,
                                     tmp_path: Path) -> None:
    sb.add_recotap_account(domain="acme.com", name="Acme")
    write_csv(tmp_path / "crm.csv", "domain,externalId\nacme.com,C-1\nlocalhost,C-2\n")
    done = cli("recotap", "map-ids", "crm.csv", "--on-invalid", "skip", "--no-progress")
    assert done.returncode == 1
    assert "invalid" in done.stdout and "localhost" in done.stdout
    assert sb.recotap_accounts()[0]["externalId"] == "C-1"


# --------------------------------------------------------------------------- in process


def test_python_dash_m_recocora_is_the_same_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recocora", "recotap", "unmapped", "--help"], env=clean_env(),
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: recocora recotap unmapped" in done.stdout


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    "args",
    [
        ["cora", "upsert", "in.csv", "--out", "missing/res.csv"],
        ["cora", "upsert", "in.csv", "--dry-run", "--out", "missing/res.parquet"],
        ["cora", "upsert", "in.csv", "--journal", "missing/run.db"],
        ["cora", "upsert", "in.csv", "--out", "folder.csv"],
        ["recotap", "map-ids", "crm.csv", "--out", "missing/mapped.csv"],
        ["recotap", "map-ids", "crm.csv", "--journal", "missing/run.db"],
        ["recotap", "unmapped", "--out", "missing/unmapped.csv"],
    ],
)
def test_an_output_path_that_cannot_be_written_sends_nothing(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path, args: list[str]
) -> None:
    write_csv(tmp_path / "in.csv", NEW_ACCOUNTS)
    write_csv(tmp_path / "crm.csv", "domain,externalId\nacme.com,crm-1\n")
    (tmp_path / "folder.csv").mkdir()
    done = cli(*args, "--no-progress") if args[1] != "unmapped" else cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stderr.strip().splitlines()
    assert said[-1].startswith("recocora: error: --")
    assert "does not exist" in said[-1] or "is a folder" in said[-1]
    assert "Traceback" not in done.stderr
    assert sb.requests == []  # not one request: nothing written, nothing read
    assert sb.cora_account("A-1") is None
    assert not (tmp_path / "missing").exists()


def test_the_out_check_leaves_no_file_behind(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", "externalId,phoneNumber\nA-1,ask front desk\n")
    done = cli("cora", "upsert", "in.csv", "--out", "res.csv", "--no-progress")
    assert done.returncode == 1  # refused by validation, after the path was checked
    assert not (tmp_path / "res.csv").exists()
    assert sb.requests == []


# --------------------------------------------------------------------------- the messy sample

SAMPLE = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "messy_accounts.csv"
PANDAS_ADVICE = ("df.", "df[", "pd.", "columns={", "recocora.normalize", "mode='", "=True")


def test_the_sample_report_speaks_command_line(
    cli: Callable[..., Any], sb: Sandbox
) -> None:
    done = cli("cora", "upsert", str(SAMPLE), "--no-progress")
    assert done.returncode == 1, done.stderr
    report = done.stdout
    assert "--drop-columns updatedAt" in report and "--drop-columns legacy_no" in report
    assert "--phone-region US" in report and "--on-invalid skip" in report
    assert not [bit for bit in PANDAS_ADVICE if bit in report], report
    assert sb.requests == []


def test_the_messy_sample_goes_through_with_the_documented_flags(
    cli: Callable[..., Any], sb: Sandbox, tmp_path: Path
) -> None:
    done = cli("cora", "upsert", str(SAMPLE), "--drop-columns", "legacy_no,updatedAt",
               "--phone-region", "US", "--on-invalid", "skip", "--out", "res.csv",
               "--no-progress")
    assert done.returncode == 1, done.stderr  # some rows are invalid on purpose
    rows = len(pd.read_csv(SAMPLE, dtype=str))
    res = pd.read_csv(tmp_path / "res.csv", dtype=str, keep_default_na=False)
    assert res["row"].tolist() == [str(i) for i in range(rows)]
    assert set(res["cora_status"]) <= set(CORA_STATUSES) and "" not in set(res["cora_status"])
    sent = res["cora_status"].isin(["created", "updated", "unchanged"])
    assert sent.sum() > rows / 2
    # Every row the server answered for is stored as sent, phone in E.164.
    for external_id in res.loc[sent, "cora_external_id"]:
        stored = sb.cora_account(external_id)
        assert stored is not None and stored["phoneNumber"].startswith("+1")
    assert len(posts(sb)) == -(-int(sent.sum()) // CoraClient.MAX_ROWS)
    invalid = res.loc[res["cora_status"] == "invalid", "cora_message"]
    assert len(invalid) and (invalid != "").all()
    assert not [m for m in invalid for bit in PANDAS_ADVICE if bit in m]
    assert not [bit for bit in PANDAS_ADVICE if bit in done.stdout]
