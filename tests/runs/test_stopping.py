"""Stopping a background run: cancel between requests, a killed worker resumed, and the
CLI's view of both."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import recocora
from recocora import CoraClient
from recocora.cli import main
from tests.backfill.conftest import accounts
from tests.runs.conftest import RUN_LIMIT_S, bulk_posts, until


def test_cancel_stops_before_the_next_request_and_keeps_the_answer_in_flight(
    sb: Any, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_cora_window(0.5)
    frame = accounts(40)
    run = frame.cora.upsert(client=cora_client_for(rows=4, min_interval=0.5),
                            background=True)
    until(lambda: run.rows_done >= 8, what="two answers")
    sent_before = len(bulk_posts(sb))
    run.cancel()
    res = run.wait(timeout=RUN_LIMIT_S)
    assert run.state == "cancelled"
    # At most the request already on its way when cancel came went out after it.
    assert len(bulk_posts(sb)) <= sent_before + 1
    status = res["cora_status"]
    assert (status == "not_sent").sum() > 0
    stored = {a["externalId"] for a in sb.cora_accounts()}
    sent = set(res.loc[status == "created", "cora_external_id"])
    assert sent == stored  # every answer that arrived is in the result
    assert run.counts["created"] == len(sent)


def test_a_killed_worker_is_interrupted_and_resume_sends_at_most_the_chunk_in_flight_again(
    sb: Any, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_cora_window(0.2)
    frame = accounts(45)
    client = cora_client_for(rows=5, min_interval=0.2)
    run = frame.cora.upsert(client=client, background=True)
    until(lambda: run.rows_done >= 10, what="two answers")
    os.kill(int(run.info()["pid"]), signal.SIGKILL)
    until(lambda: run.state == "interrupted", what="the death noticed")
    run.resume(client=client)
    res = run.wait(timeout=RUN_LIMIT_S)
    assert run.state == "succeeded"
    assert set(res["cora_status"]) <= {"created", "skipped", "unchanged"}
    assert {a["externalId"] for a in sb.cora_accounts()} == set(frame["externalId"])
    assert len([r for r in bulk_posts(sb) if r.status == 200]) <= 9 + 1
    assert run.info()["attempts"] == 2


def test_resume_refuses_a_run_that_is_not_interrupted(
    sb: Any, cora_client_for: Callable[..., CoraClient]
) -> None:
    run = accounts(3).cora.upsert(client=cora_client_for(), background=True)
    run.wait(timeout=RUN_LIMIT_S)
    try:
        run.resume()
    except recocora.RunError as exc:
        assert "succeeded" in str(exc)
    else:
        raise AssertionError("resume of a finished run was accepted")


def test_cli_lists_shows_waits_and_cancels(
    sb: Any, cora_client_for: Callable[..., CoraClient], capsys: Any
) -> None:
    sb.set_cora_window(0.5)
    done = accounts(4).cora.upsert(client=cora_client_for(min_interval=0.5), background=True)
    slow = accounts(400, start=100).cora.upsert(
        client=cora_client_for(rows=2, min_interval=0.5), background=True)
    assert main(["runs", "wait", done.id]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["runs", "cancel", slow.id]) == 0
    assert main(["runs", "wait", slow.id]) == 1
    out = capsys.readouterr().out
    assert "cancelled" in out
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert done.id in table and slow.id in table
    assert main(["runs", "show", done.id]) == 0
    assert "log:" in capsys.readouterr().out


def test_cli_background_prints_the_run_id(sb: Any, tmp_path: Any, capsys: Any,
                                           monkeypatch: Any) -> None:
    for name, value in sb.env().items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "accounts.csv"
    accounts(6).to_csv(path, index=False)
    assert main(["cora", "upsert", str(path), "--min-interval", "0", "--background"]) == 0
    run_id = capsys.readouterr().out.strip()
    assert recocora.attach(run_id).wait(timeout=RUN_LIMIT_S)["cora_status"].eq("created").all()
