"""A bulk run in a process of its own, for tests that kill or interrupt it.

``python -m tests.backfill.child '<json spec>'`` runs a Cora upsert or a Recotap mapping
against the given sandbox and prints one JSON line: the result's counts, requests and the
timing; after Ctrl-C, the partial result's counts instead (exit code 130).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from recocora import CoraClient, RecotapClient
from recocora._transport import RetryPolicy
from recocora.errors import RunInterrupted
from tests.backfill.conftest import accounts, mappings


def summary(result: Any, column: str) -> dict[str, Any]:
    counts = result[column].astype(object).value_counts().to_dict()
    return {
        "counts": {str(k): int(v) for k, v in counts.items()},
        "requests": int(result.attrs.get("requests", 0)),
        "rows_sent": int(result.attrs.get("rows_sent", 0)),
        "skipped": int(result.attrs.get("skipped", 0)),
        "not_sent_ids": [str(v) for v in result.loc[
            result[column].astype(object) == "not_sent",
            "cora_external_id" if column == "cora_status" else "recotap_domain"].tolist()],
    }


def wait_for_go(spec: dict[str, Any]) -> None:
    """With ``go``: say ready, then wait for the signal to start (so runs start together)."""
    go = spec.get("go")
    if go is None:
        return
    Path(f"{go}.ready.{spec.get('start', 0)}").touch()
    while not Path(go).exists():
        time.sleep(0.001)


def main(spec: dict[str, Any]) -> int:
    retry = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)
    out: dict[str, Any] = {}
    try:
        if spec["api"] == "cora":
            client = CoraClient(spec["key"], spec["url"], min_interval=spec.get("interval", 0),
                                retry=retry, state=spec.get("state"))
            client.MAX_ROWS = spec.get("rows", 500)  # type: ignore[misc]
            frame = accounts(spec["n"], start=spec.get("start", 0))
            wait_for_go(spec)
            out["began"] = time.time()
            out["sharing"] = 1  # the most runs its progress said shared the key
            result = frame.cora.upsert(
                client=client, journal=spec.get("journal"), progress=False,
                on_progress=lambda e: out.update(sharing=max(out["sharing"], e.sharing)))
            column = "cora_status"
        else:
            rtp = RecotapClient(spec["key"], spec["url"], retry=retry,
                                max_concurrency=spec.get("concurrency", 4))
            rtp.MAX_MAPPINGS = spec.get("rows", 100)  # type: ignore[misc]
            frame = mappings(spec["n"], start=spec.get("start", 0))
            wait_for_go(spec)
            out["began"] = time.time()
            result = frame.recotap.map_ids(client=rtp, journal=spec.get("journal"),
                                           overwrite=spec.get("overwrite", False),
                                           progress=False)
            column = "recotap_status"
    except RunInterrupted as stop:
        column = "cora_status" if spec["api"] == "cora" else "recotap_status"
        out.update(summary(stop.result, column), interrupted=True, message=str(stop))
        out["ended"] = time.time()
        print(json.dumps(out), flush=True)
        return 130
    out.update(summary(result, column), interrupted=False)
    out["ended"] = time.time()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
