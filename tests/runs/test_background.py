"""``background=True``: validation in the caller, a worker process doing the run, a handle
that any process can attach to, idempotent submits, and no secret on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import recocora
from recocora import CoraClient, RecotapClient
from tests.backfill.conftest import ROOT, accounts, add_companies, mappings
from tests.runs.conftest import RUN_LIMIT_S, bulk_posts


def test_background_upsert_returns_a_run_whose_result_is_the_foreground_one(
    sb: Any, cora_client_for: Callable[..., CoraClient]
) -> None:
    frame = accounts(23)
    run = frame.cora.upsert(client=cora_client_for(rows=5), background=True)
    assert isinstance(run, recocora.Run)
    res = run.wait(timeout=RUN_LIMIT_S)
    assert run.state == "succeeded"
    assert res.index.equals(frame.index)
    assert (res["cora_status"] == "created").all()
    assert len(bulk_posts(sb)) == 5
    assert {a["externalId"] for a in sb.cora_accounts()} == set(frame["externalId"])
    assert run.counts == {"created": 23}
    assert run.rows_done == run.rows_total == 23
    listed = recocora.runs().set_index("run_id").loc[run.id]
    assert listed["state"] == "succeeded" and listed["created"] == 23
    assert listed["key_id"] == cora_client_for().key_id
    assert "succeeded" in repr(run) and run.id in repr(run)
    assert "started run" in run.log() and "succeeded" in run.log()


def test_bad_input_is_refused_in_the_caller_and_nothing_starts(
    sb: Any, cora_client_for: Callable[..., CoraClient], cache_dir: Path
) -> None:
    frame = accounts(4)
    frame.loc["r2", "phoneNumber"] = "not a phone"
    with pytest.raises(recocora.ValidationError) as info:
        frame.cora.upsert(client=cora_client_for(), background=True)
    assert "r2" in str(info.value) and "phoneNumber" in str(info.value)
    assert not (cache_dir / "runs").exists() or recocora.runs().empty
    assert sb.requests == []


def test_background_map_ids(sb: Any, rtp_client_for: Callable[..., RecotapClient]) -> None:
    add_companies(sb, 12)
    frame = mappings(12)
    run = frame.recotap.map_ids(client=rtp_client_for(), background=True)
    res = run.wait(timeout=RUN_LIMIT_S)
    assert res.index.equals(frame.index)
    assert (res["recotap_status"] == "mapped").all()
    assert run.counts == {"mapped": 12}
    assert sorted(a["externalId"] for a in sb.recotap_accounts()) == sorted(frame["externalId"])


def test_same_frame_and_options_while_live_is_the_same_run(
    sb: Any, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_cora_window(0.5)
    client = cora_client_for(rows=2, min_interval=0.5)
    frame = accounts(20)
    first = frame.cora.upsert(client=client, background=True)
    again = frame.copy().cora.upsert(client=client, background=True)
    other = frame.cora.upsert(client=client, background=True, include_changes=True)
    assert again.id == first.id
    assert other.id != first.id
    assert len(recocora.runs()) == 2
    other.cancel()
    first.wait(timeout=RUN_LIMIT_S)
    other.wait(timeout=RUN_LIMIT_S)
    # Once the first has ended, the same submit is a new run (its journal skips every row).
    later = frame.cora.upsert(client=client, background=True)
    assert later.id != first.id


def test_no_secret_in_any_file_recocora_writes(
    sb: Any, cora_client_for: Callable[..., CoraClient], cache_dir: Path
) -> None:
    client = cora_client_for(rows=4)
    run = accounts(9).cora.upsert(client=client, background=True)
    run.wait(timeout=RUN_LIMIT_S)
    secret = sb.cora_key.split(".", 1)[1]
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert any(p.name == "registry.sqlite" for p in files)
    assert any(p.parent == run.folder() for p in files)
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert sb.cora_key.encode() not in data, path
    assert secret not in repr(run) and secret not in recocora.runs().to_string()


_STARTER = """
import os, sys
import recocora
from recocora import CoraClient
from tests.backfill.conftest import accounts
client = CoraClient(sys.argv[1], sys.argv[2], min_interval=0.2)
client.MAX_ROWS = 3
run = accounts(30).cora.upsert(client=client, background=True)
print(run.id, flush=True)
os._exit(0)
"""


def test_a_run_outlives_the_process_that_started_it(sb: Any, cache_dir: Path) -> None:
    sb.set_cora_window(0.2)
    env = {**os.environ, "RECOCORA_CACHE_DIR": str(cache_dir)}
    started = subprocess.run(
        [sys.executable, "-c", _STARTER, sb.cora_key, sb.cora_base_url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_LIMIT_S, check=True,
    )
    run_id = started.stdout.strip()
    # Another process (this one) attaches and waits.
    run = recocora.attach(run_id)
    res = run.wait(timeout=RUN_LIMIT_S)
    assert run.state == "succeeded"
    assert (res["cora_status"] == "created").all()
    assert len(sb.cora_accounts()) == 30
    assert len([r for r in bulk_posts(sb) if r.status == 200]) == 10


def test_attach_to_an_unknown_id_says_how_to_find_runs() -> None:
    with pytest.raises(recocora.RunError, match=r"recocora.runs\(\)"):
        recocora.attach("cora-nope")


def test_result_of_a_live_run_says_to_wait(
    sb: Any, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_cora_window(0.5)
    run = accounts(10).cora.upsert(client=cora_client_for(rows=2, min_interval=0.5),
                                   background=True)
    with pytest.raises(recocora.RunError, match="wait"):
        run.result()
    run.cancel()
    res = run.wait(timeout=RUN_LIMIT_S)
    assert isinstance(res, pd.DataFrame)


def test_a_registry_from_before_the_sharing_column_is_brought_up_to_date(tmp_path: Any
                                                                         ) -> None:
    import sqlite3

    from recocora._state._registry import FIELDS, SqliteRunStore

    path = tmp_path / "registry.sqlite"
    old = sqlite3.connect(path)
    columns = ", ".join(f"{name} TEXT" for name in FIELDS if name != "sharing")
    old.execute(f"CREATE TABLE runs ({columns})")
    old.execute("INSERT INTO runs (run_id, counts) VALUES ('cora-old', '{}')")
    old.commit()
    old.close()
    store = SqliteRunStore(path)
    record = store.get("cora-old")
    assert record is not None and record["sharing"] == 1
    assert store.update("cora-old", sharing=2)
    store.close()
