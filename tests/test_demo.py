"""``recocora demo`` runs end to end, says what happened and never prints a key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from recocora import normalize_phone
from recocora._demo import crm_companies, messy_accounts
from recocora.cora.accessor import CoraAccessor
from recocora.recotap._domains import normalize_domain
from recocora.sandbox import Sandbox

BIN = Path(sys.executable).with_name("recocora")
COMMAND = (
    [str(BIN)] if BIN.exists()
    else [sys.executable, "-c", "from recocora.cli import main; raise SystemExit(main())"]
)
# The sandbox's generated keys: cora_org_sandbox.<hex> and rtp_sandbox_<hex>.
KEY_SHAPES = re.compile(r"cora_org_\w+\.\w+|rtp_sandbox_[0-9a-f]+|X-Api-Key|_API_KEY=")


def test_demo_runs_to_completion_and_prints_no_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORA_", "RECOTAP_", "RECOCORA_"))}
    env["RECOCORA_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [*COMMAND, "demo", "--rows", "60", "--no-progress"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not KEY_SHAPES.search(done.stdout + done.stderr)
    assert "Traceback" not in done.stderr
    out = done.stdout
    summary = out[out.index("Summary"):]
    cora_line = next(line for line in summary.splitlines() if line.startswith("  Cora"))
    assert "60 rows" in cora_line
    for status in ("created", "updated", "unchanged", "failed 1", "invalid 1"):
        assert status in cora_line
    rtp_line = next(line for line in summary.splitlines() if line.startswith("  Recotap"))
    for status in ("mapped", "not_found", "already_mapped", "superseded 1"):
        assert status in rtp_line
    assert "Where to look next" in out and "recocora sandbox" in out
    assert "The preview called 60 of 60 rows right." in out


def test_the_messy_frame_needs_each_fix_and_leaves_one_invalid_row(sb: Sandbox) -> None:
    sb.reset(seed="demo")
    df = messy_accounts(sb.cora_accounts(), rows=80)
    assert len(df) == 81  # one row exported twice
    checks = set(zip(CoraAccessor(df).validate()["column"],
                     CoraAccessor(df).validate()["check"], strict=True))
    assert {("updatedAt", "read_only"), ("externalId", "unique"),
            ("phoneNumber", "e164")} <= checks

    df = df.drop(columns=["updatedAt"])
    df["phoneNumber"] = normalize_phone(df["phoneNumber"], errors="keep")
    df = df.drop_duplicates(subset="externalId", keep="last")
    left = CoraAccessor(df).validate()
    assert len(left) == 1
    assert df.loc[left["index"].iloc[0], "phoneNumber"] == "ask front desk"


def test_the_crm_frame_covers_every_mapping_outcome(sb: Sandbox) -> None:
    sb.reset(seed="demo")
    accounts = sb.recotap_accounts()
    crm = crm_companies(accounts, rows=60)
    held = {a["domain"]: a["externalId"] for a in accounts}
    domains = normalize_domain(crm["website"])
    kinds = pd.Series([
        "unknown" if d not in held else "unmapped" if held[d] is None
        else "same" if held[d] == i else "other"
        for d, i in zip(domains, crm["crm_id"], strict=True)
    ])
    assert set(kinds) == {"unknown", "unmapped", "same", "other"}
    assert domains.duplicated().sum() == 1
