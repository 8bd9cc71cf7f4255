"""examples/sandbox-curl.sh, pointed at a sandbox, gets the documented answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from recocora.sandbox import Sandbox

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sandbox-curl.sh"


def test_curl_examples_get_the_documented_answers() -> None:
    with Sandbox(seed="demo", cora_window=0, cora_key="cora_org_demo.s3cret",
                 recotap_key="rtp_demo") as sb:
        out = subprocess.run(
            ["bash", str(SCRIPT)], env={**os.environ, **sb.env()}, capture_output=True,
            text=True, timeout=60, check=True,
        ).stdout
        assert '"code":"ACCOUNTS_BULK_UPSERT_COMPLETED"' in out
        assert '"dryRun":true' in out and '"created":1' in out
        assert '"code":"MISSING_REQUIRED_FIELD"' in out
        assert '"code":"ACCOUNTS_FETCHED"' in out  # the script shows the first 300 bytes
        assert '"code":"ACCOUNT_UPDATED"' in out and '"clientStatus":"payment_plan"' in out
        assert '"notFound":["nosuchdomain.example"]' in out
        assert "INVALID_REQUEST_SIGNATURE" not in out
        assert [r.status for r in sb.requests] == [200] * 5
        assert sb.cora_account("curl-001") is None  # the dry run wrote nothing
