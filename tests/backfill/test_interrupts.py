"""Ctrl-C during a run: the answer in flight is recorded if it arrived, the journal stays
consistent, the partial result is reachable, and a re-run finishes the job."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from recocora import CoraClient
from recocora._run import deferred_interrupt
from recocora._state import Journal
from recocora.errors import RunInterrupted
from recocora.sandbox import FaultConfig

from .conftest import (
    Child,
    accounts,
    add_companies,
    bulk_posts,
    journal_acks,
    map_patches,
    settle,
)

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


class _StopOnCall(CoraClient):
    """Ctrl-C while waiting for the answer of request number ``stop_at``."""

    stop_at = 3
    calls = 0

    def bulk_upsert_raw(self, body: bytes) -> dict[str, Any]:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().bulk_upsert_raw(body)


def test_interrupt_while_waiting_leaves_the_chunk_unacknowledged(
    sb: Sandbox, tmp_path: Path
) -> None:
    client = _StopOnCall(sb.cora_key, sb.cora_base_url, min_interval=0)
    client.MAX_ROWS = 10  # type: ignore[misc]
    journal = tmp_path / "j.db"
    df = accounts(50)
    with pytest.raises(RunInterrupted) as info:
        df.cora.upsert(client=client, journal=journal, progress=False)
    assert isinstance(info.value, KeyboardInterrupt)
    assert not isinstance(info.value, Exception)  # `except Exception` never swallows Ctrl-C
    partial = info.value.result
    assert partial["cora_status"].value_counts().to_dict() == {"created": 20, "not_sent": 30}
    assert partial.loc["r20", "cora_message"].startswith("interrupted while")
    assert "journal" in str(info.value)
    with Journal(journal) as j:
        assert len(j.acks()) == 20
        assert j.runs()["outcome"].tolist() == ["interrupted"]
    client.close()
    rest = df.cora.upsert(client=CoraClient(sb.cora_key, sb.cora_base_url, min_interval=0),
                          journal=journal, progress=False)
    assert rest.attrs["counts"] == {"skipped": 20, "created": 30}


def test_interrupt_while_recording_waits_until_the_answer_is_recorded(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = Journal.record
    seen = {"n": 0}

    def interrupted_record(self: Journal, *args: Any, **kwargs: Any) -> None:
        seen["n"] += 1
        if seen["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands mid-way through recording
            time.sleep(0.05)
        record(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "record", interrupted_record)
    journal = tmp_path / "j.db"
    with pytest.raises(RunInterrupted) as info:
        accounts(40).cora.upsert(client=cora_for(rows=10), journal=journal, progress=False)
    partial = info.value.result
    # The second answer had arrived: it is merged and recorded, nothing after it is sent.
    assert partial["cora_status"].value_counts().to_dict() == {"created": 20, "not_sent": 20}
    with Journal(journal) as j:
        assert len(j.acks()) == 20
    assert len(bulk_posts(sb)) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_interrupt_outside_the_main_thread_is_a_plain_block() -> None:
    import threading

    done: list[bool] = []

    def work() -> None:
        with deferred_interrupt():
            done.append(True)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert done == [True]


def test_sigint_to_a_cora_backfill_then_rerun(
    sb: Sandbox, child: Callable[..., Child], tmp_path: Path
) -> None:
    """Three processes share one journal: two are interrupted mid-run, the third finishes."""
    sb.set_faults(FaultConfig(latency=0.02))
    journal = tmp_path / "j.db"
    n, rows = 1000, 50
    spec = {"api": "cora", "key": sb.cora_key, "url": sb.cora_base_url, "rows": rows, "n": n,
            "journal": str(journal)}
    acked = 0
    for wait_for in (5, 11):
        run = child(**spec)
        run.wait_for(lambda w=wait_for: journal_acks(journal) >= w * rows)
        run.signal(signal.SIGINT)
        report = run.finish()
        assert report["returncode"] == 130, report["stderr"]
        assert report["interrupted"] and "journal" in report["message"]
        counts = report["counts"]
        # Every row is either acknowledged (skipped from before, or answered now) or not_sent.
        assert set(counts) <= {"created", "unchanged", "skipped", "not_sent"}
        assert sum(counts.values()) == n
        answered = counts.get("created", 0) + counts.get("unchanged", 0)
        assert counts.get("skipped", 0) == acked
        acked += answered
        assert journal_acks(journal) == acked  # the journal holds exactly the answers
    settle(sb)
    final = child(**spec).finish()
    assert final["returncode"] == 0, final["stderr"]
    assert final["counts"].get("skipped", 0) == acked
    assert final["counts"].get("not_sent", 0) == 0
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    outcomes = [r[0] for r in db.execute("SELECT outcome FROM runs ORDER BY run")]
    assert outcomes == ["interrupted", "interrupted", "completed"]
    assert db.execute("SELECT COUNT(*) FROM acks").fetchone()[0] == n
    db.close()
    settle(sb)
    processed = sum(p.status == 200 for p in bulk_posts(sb)) * rows
    # At most the chunk in flight at each interrupt reached the server twice.
    assert n <= processed <= n + 2 * rows
    assert sorted(a["externalId"] for a in sb.cora_accounts()) == [
        f"bf-{i:06d}" for i in range(n)]


def test_sigint_to_a_concurrent_recotap_backfill_then_rerun(
    sb: Sandbox, child: Callable[..., Child], tmp_path: Path
) -> None:
    add_companies(sb, 2000)
    sb.set_faults(FaultConfig(latency=0.03))
    journal = tmp_path / "m.db"
    n, rows, concurrency = 2000, 50, 4
    spec = {"api": "recotap", "key": sb.recotap_key, "url": sb.recotap_base_url, "rows": rows,
            "n": n, "journal": str(journal), "overwrite": True, "concurrency": concurrency}
    run = child(**spec)
    run.wait_for(lambda: journal_acks(journal) >= 8 * rows)
    run.signal(signal.SIGINT)
    report = run.finish()
    assert report["returncode"] == 130, report["stderr"]
    counts = report["counts"]
    assert set(counts) == {"mapped", "not_sent"} and sum(counts.values()) == n
    assert journal_acks(journal) == counts["mapped"]
    settle(sb)
    final = child(**spec).finish()
    assert final["returncode"] == 0, final["stderr"]
    assert final["counts"] == {"skipped": counts["mapped"], "mapped": n - counts["mapped"]}
    settle(sb)
    processed = sum(p.status == 200 for p in map_patches(sb)) * rows
    # The requests in flight when Ctrl-C came (at most one per worker) may be sent twice.
    assert n <= processed <= n + concurrency * rows
    stored = {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}
    assert all(stored[f"company-{i:06d}.com"] == f"crm-{i:06d}" for i in range(n))
