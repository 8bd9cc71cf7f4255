"""``recocora recotap match``: the installed command, credentials from the environment only,
against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recocora.cli import main
from recocora.sandbox import Sandbox

BIN = Path(sys.executable).with_name("recocora")
COMMAND = (
    [str(BIN)] if BIN.exists()
    else [sys.executable, "-c", "from recocora.cli import main; raise SystemExit(main())"]
)
CRM = """company,website,email,crm_id
Acme Tools,https://www.acmetools.com/about,,C-1
ACME FOODS LIMITED,,jane@gmail.com,C-2
Borealis,shop.borealis.nl,,C-3
Nobody,,,C-4
"""


def _run(args: list[str], sb: Sandbox, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORA_", "RECOTAP_", "RECOCORA_"))}
    env.update(sb.env(), RECOCORA_CACHE_DIR=str(cwd / "cache"))
    return subprocess.run([*COMMAND, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _accounts(sb: Sandbox) -> None:
    sb.add_recotap_account(domain="acmetools.com", name="Acme Tools Inc")
    sb.add_recotap_account(domain="acmefoods.com", name="Acme Foods Ltd")
    sb.add_recotap_account(domain="borealis.nl", name="Borealis BV")
    sb.add_recotap_account(domain="mapped.com", name="Mapped", external_id="x")


def test_match_lists_unmapped_accounts_from_the_api_and_writes_matches(
    sb: Sandbox, tmp_path: Path
) -> None:
    _accounts(sb)
    (tmp_path / "crm.csv").write_text(CRM)
    done = _run(["recotap", "match", "crm.csv", "--id-col", "crm_id", "--out", "m.csv"],
                sb, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "against 3 unmapped accounts" in done.stdout
    out = pd.read_csv(tmp_path / "m.csv", dtype=str)
    assert out["match_status"].tolist() == ["auto", "review", "auto", "none"]
    assert out["match_domain"].tolist()[:3] == ["acmetools.com", "acmefoods.com", "borealis.nl"]
    assert out["company"].tolist()[0] == "Acme Tools"
    assert not [r for r in sb.requests if r.method == "PATCH"]
    # A decision typed into the output is re-applied on the next run.
    out.loc[1, "match_decision"] = "accepted"
    out.to_csv(tmp_path / "m.csv", index=False)
    again = _run(["recotap", "match", "crm.csv", "--id-col", "crm_id", "--decisions", "m.csv"],
                 sb, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "decided accepted: 1" in again.stderr
    assert again.stdout.splitlines()[0].startswith("company,website,email,crm_id,match_status")


def test_match_against_an_accounts_file_sends_nothing(sb: Sandbox, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crm.csv").write_text(CRM)
    (tmp_path / "acc.csv").write_text("name,domain\nBorealis BV,borealis.nl\n")
    code = main(["recotap", "match", "crm.csv", "--accounts", "acc.csv", "--out", "m.parquet"])
    assert code == 0
    assert pd.read_parquet(tmp_path / "m.parquet")["match_status"].tolist() == [
        "none", "none", "auto", "none"]
    assert sb.requests == []
    (tmp_path / "bare.csv").write_text("x,y\n1,2\n")
    try:
        code = main(["recotap", "match", "bare.csv", "--accounts", "acc.csv"])
    except SystemExit as stop:
        code = int(stop.code or 0)
    assert code == 2
    assert "--name-col" in capsys.readouterr().err
