"""Runs in the state database: leases that let one live worker hold a run, a killed worker
taken over from another machine, queued runs claimed by ``recocora worker``, a database outage
waited out, cancel from anywhere, and no secret in the database.

Each "machine" is a process with a cache folder of its own; they share only the state
database (and the sandbox). Leases are 2 s and heartbeats 0.2 s here (tests/shared/pg_worker).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
import psycopg
import pytest

import recocora
from recocora import ConfigError, CoraClient, RecotapClient
from recocora._runs_launch import process_start
from recocora._state import PgJournal, journal_target
from recocora._state._pg_registry import PgRunStore
from recocora.cli import main
from recocora.sandbox import FaultConfig
from tests.backfill.conftest import ROOT, accounts, add_companies, mappings
from tests.runs.conftest import RUN_LIMIT_S, bulk_posts, until
from tests.shared import pg_worker

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


@pytest.fixture(autouse=True)
def short_leases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process is one more machine: a cache folder of its own, the tests' leases."""
    monkeypatch.setenv("RECOCORA_CACHE_DIR", str(tmp_path / "here"))
    monkeypatch.delenv("RECOCORA_STATE_URL", raising=False)
    pg_worker.shorten(monkeypatch.setattr)


class Machines:
    """Processes standing for other machines: each with its own cache folder, the state URL
    and the sandbox's keys in its environment. Every process left is killed at the end, and
    every live run cancelled and waited for, so nothing reaches the next test's sandbox."""

    def __init__(self, root: Path, sb: Sandbox, url: str) -> None:
        self.root, self.sb, self.url = root, sb, url
        self.procs: list[subprocess.Popen[str]] = []

    def env(self) -> dict[str, str]:
        folder = self.root / f"machine-{uuid.uuid4().hex[:6]}"
        return {**os.environ, **self.sb.env(), "RECOCORA_CACHE_DIR": str(folder),
                "RECOCORA_STATE_URL": self.url}

    def start(self, *args: str, code: str | None = None) -> subprocess.Popen[str]:
        """``recocora ARGS`` (or ``code`` with ARGS as ``sys.argv[1:]``) on a new machine."""
        command = [sys.executable, "-c", code, *args] if code else \
            [sys.executable, "-m", "tests.shared.pg_worker", *args]
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        out, err = proc.communicate(timeout=RUN_LIMIT_S)
        assert proc.returncode == 0, err
        return out, err

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for run_id in recocora.runs(state=self.url)["run_id"]:
            run = recocora.attach(run_id, state=self.url)
            if not run.done:
                run.cancel()
                until(lambda run=run: run.done, what=f"{run.id} stopping")


@pytest.fixture
def machines(tmp_path: Path, sb: Sandbox, state_url: str) -> Iterator[Machines]:
    group = Machines(tmp_path, sb, state_url)
    yield group
    group.close()


def exactly_stored(sb: Sandbox, frame: pd.DataFrame) -> None:
    """Every row of ``frame`` is an account holding exactly its values, and nothing else."""
    stored = {a["externalId"]: a for a in sb.cora_accounts()}
    assert sorted(stored) == sorted(frame["externalId"])
    for row in frame.to_dict("records"):
        account = stored[row["externalId"]]
        assert (account["portfolioId"], account["phoneNumber"], account["clientStatus"],
                account["metadata"]["filenumber"]) == (row["portfolioId"], row["phoneNumber"],
                                                       row["clientStatus"],
                                                       row["metadata.filenumber"])


def ok_posts(sb: Sandbox) -> int:
    return len([r for r in bulk_posts(sb) if r.status == 200])


def paced_run(sb: Sandbox, make: Callable[..., CoraClient], url: str, frame: pd.DataFrame,
              rows: int) -> recocora.Run:
    """``frame`` upserted by a worker of this machine, ``rows`` a request and one request a
    0.3 s window, once its first two answers are in."""
    sb.set_cora_window(0.3)
    run = frame.cora.upsert(client=make(rows=rows, min_interval=0.3, state=url),
                            background=True)
    until(lambda: run.rows_done >= 2 * rows, what="two answers")
    return run


# --------------------------------------------------------------------------- queued runs


def test_a_queued_run_waits_for_a_worker_elsewhere_and_a_third_machine_reads_it(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient],
    rtp_client_for: Callable[..., RecotapClient], machines: Machines,
) -> None:
    frame = accounts(23)
    run = frame.cora.upsert(client=cora_client_for(rows=5, state=machines.url),
                            background="queue")
    assert run.state == "queued" and run.info()["mode"] == "queue"
    add_companies(sb, 6)
    maps = mappings(6).recotap.map_ids(client=rtp_client_for(state=machines.url),
                                       background="queue")
    other_key = accounts(2, start=90).cora.upsert(
        client=cora_client_for(api_key="cora_org_elsewhere.s3cret", state=machines.url),
        background="queue")
    assert sb.requests == []  # no worker here: they wait for one
    out, err = machines.finish(machines.start("worker", "--once"))
    assert f"claimed run {run.id}" in err and f"claimed run {maps.id}" in err
    assert "stops" in err
    assert maps.state == "succeeded" and maps.counts == {"mapped": 6}
    assert other_key.state == "queued"  # a key this worker does not hold: never claimed
    reader = machines.start(run.id, code=(
        "import sys, recocora, tests.shared.pg_worker as short\n"
        "short.shorten()\n"
        "run = recocora.attach(sys.argv[1])\n"
        "res = run.wait(timeout=60)\n"
        "print(run.state, res['cora_status'].eq('created').sum(), list(res.index[:2]))\n"
        "print(run.log())\n"))
    out, _ = machines.finish(reader)
    assert out.splitlines()[0] == "succeeded 23 ['r0', 'r1']"
    assert "claimed run" in out and "succeeded" in out  # the worker's log, read from the DB
    assert ok_posts(sb) == 5
    exactly_stored(sb, frame)
    assert run.result().index.equals(frame.index)


def test_two_workers_racing_for_one_queued_run_exactly_one_runs_it(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], machines: Machines
) -> None:
    frame = accounts(12)
    run = frame.cora.upsert(client=cora_client_for(rows=4, state=machines.url),
                            background="queue")
    # Both workers reach their claim while the registry is locked, then race for the row.
    with psycopg.connect(machines.url) as conn:
        conn.execute("LOCK TABLE recocora_runs IN ACCESS EXCLUSIVE MODE")
        racers = [machines.start("worker", "--once") for _ in range(2)]

        def waiting() -> bool:
            with psycopg.connect(machines.url, autocommit=True) as look:
                row = look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                    "'recocora' AND wait_event_type = 'Lock'").fetchone()
            return row is not None and row[0] == 2

        until(waiting, what="both workers waiting to claim")
    logs = [machines.finish(p)[1] for p in racers]
    assert sorted(f"claimed run {run.id}" in log for log in logs) == [False, True]
    assert run.wait(timeout=RUN_LIMIT_S).attrs["counts"] == {"created": 12}
    assert run.info()["attempts"] == 1
    assert ok_posts(sb) == len(bulk_posts(sb)) == 3
    exactly_stored(sb, frame)


def test_a_worker_goes_on_after_a_cancel_and_gives_its_run_back_when_stopped(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], machines: Machines
) -> None:
    sb.set_cora_window(0.3)
    client = cora_client_for(rows=4, min_interval=0.3, state=machines.url)
    cancelled = accounts(40, start=500).cora.upsert(client=client, background="queue")
    frame = accounts(48)
    run = frame.cora.upsert(client=client, background="queue")
    worker = machines.start("worker")  # long-lived: claims, works until told to stop
    until(lambda: cancelled.rows_done >= 8, what="two answers of the first run")
    cancelled.cancel()
    assert cancelled.wait(timeout=RUN_LIMIT_S)["cora_status"].eq("not_sent").any()
    until(lambda: run.rows_done >= 8, what="the worker going on with the next run")
    worker.send_signal(signal.SIGTERM)
    _, err = machines.finish(worker)
    assert "goes back in the queue" in err
    back = run.info()
    assert back["state"] == "queued" and back["owner"] is None
    done_before = back["rows_done"]
    # Every answer that arrived was recorded before the run was given back.
    assert done_before == 4 * (ok_posts(sb) - cancelled.rows_done // 4)
    machines.finish(machines.start("worker", "--once"))
    res = run.wait(timeout=RUN_LIMIT_S)
    assert run.info()["attempts"] == 2 and run.rows_done == 48
    assert (res["cora_status"] == "created").sum() == 48 - done_before
    exactly_stored(sb, pd.concat([frame, accounts(cancelled.rows_done, start=500)]))
    assert ok_posts(sb) == len(bulk_posts(sb)) == 12 + cancelled.rows_done // 4


def test_a_lease_holds_a_run_for_one_worker_until_it_runs_out(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], machines: Machines
) -> None:
    run = accounts(4).cora.upsert(client=cora_client_for(state=machines.url),
                                  background="queue")
    store = PgRunStore(machines.url)
    keys = [("cora", "sandbox", sb.cora_base_url)]
    assert store.claim_next("worker-a", keys) == run.id
    assert store.claim_next("worker-b", keys) is None  # held: nothing else to claim
    assert store.beat(run.id, "worker-a", {"rows_done": 2}, ["a line"]) is False
    assert store.beat(run.id, "worker-b", {"rows_done": 3}, []) is None  # not its run
    assert run.rows_done == 2 and run.state == "running"
    until(lambda: run.state == "interrupted", what="the lease running out")
    # Nobody resumed it: its worker, back, takes it again.
    assert store.beat(run.id, "worker-a", {"rows_done": 3}, []) is False
    assert run.state == "running"
    until(lambda: run.state == "interrupted", what="the lease running out again")
    run.resume()  # a queued run goes back in the queue, for any worker with its key
    assert (run.state, run.info()["owner"], run.info()["attempts"]) == ("queued", None, 2)
    assert store.beat(run.id, "worker-a", {"rows_done": 4}, []) is None  # too late
    assert store.claim_next("worker-b", keys) == run.id
    assert not store.finish(run.id, "worker-a", None, [], state="succeeded")
    assert store.finish(run.id, "worker-b", None, ["done"], state="cancelled")
    assert run.state == "cancelled" and run.log().splitlines() == ["a line", "done"]
    assert run.rows_done == 3 and sb.requests == []


def test_a_run_says_how_many_runs_share_its_key_while_it_lasts(
    cora_client_for: Callable[..., CoraClient], machines: Machines
) -> None:
    run = accounts(4).cora.upsert(client=cora_client_for(state=machines.url),
                                  background="queue")
    store = PgRunStore(machines.url)
    assert store.claim_next("worker-a", [("cora", "sandbox", run.info()["base_url"])]) == run.id
    store.beat(run.id, "worker-a", {"eta_s": 40.0, "sharing": 3}, [])
    assert "~40 s left (key shared by 3 runs)" in run.summary()
    store.beat(run.id, "worker-a", {"eta_s": 20.0, "sharing": 1}, [])
    assert "shared" not in run.summary()
    store.finish(run.id, "worker-a", None, [], state="cancelled")
    assert "shared" not in run.summary()


# --------------------------------------------------------------------------- takeover


_TAKE_OVER = """
import sys, time
import tests.shared.pg_worker as short
import recocora
short.shorten()
run = recocora.attach(sys.argv[1])
while run.state not in ("interrupted", "succeeded"):
    time.sleep(0.02)
print(time.time(), flush=True)
run.resume()
print(run.state, run.info()["host"], flush=True)
"""


def test_a_killed_worker_is_taken_over_from_another_machine(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], machines: Machines
) -> None:
    frame = accounts(60)
    run = paced_run(sb, cora_client_for, machines.url, frame, 5)
    os.kill(int(run.info()["pid"]), signal.SIGKILL)
    killed_at = time.time()
    other = machines.start(run.id, code=_TAKE_OVER)
    out, _ = machines.finish(other)
    seen_at, resumed = out.splitlines()
    assert resumed.startswith("queued")
    res = run.wait(timeout=RUN_LIMIT_S)
    finished_after = time.time() - killed_at
    assert run.state == "succeeded" and run.info()["attempts"] == 2
    assert "/machine-" in run.info()["run_dir"]  # the other machine's worker finished it
    assert set(res["cora_status"]) <= {"created", "skipped", "unchanged"}
    exactly_stored(sb, frame)
    assert ok_posts(sb) <= 12 + 1  # at most the chunk in flight at the kill, twice
    target = journal_target("cora", sb.cora_base_url, "sandbox")
    acks = PgJournal(machines.url, api="cora", target=f"{target} run {run.id}").acks()
    assert sorted(acks["key"]) == sorted(frame["externalId"])
    print(f"takeover: interrupted seen {float(seen_at) - killed_at:.2f} s after the SIGKILL "
          f"(lease {PgRunStore.LEASE_S:g} s), run finished elsewhere {finished_after:.1f} s "
          f"after it; {ok_posts(sb)} bulk requests for 12 chunks")


# --------------------------------------------------------------------------- lease lost


def stopped_past_its_lease(run: recocora.Run) -> int:
    """Suspend the run's worker (SIGSTOP) until its lease has run out: its pid."""
    pid = int(run.info()["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        until(lambda: run.state == "interrupted", what="the lease running out")
    except BaseException:
        os.kill(pid, signal.SIGCONT)
        raise
    return pid


def test_a_worker_cut_off_past_its_lease_takes_its_run_back_when_nobody_resumed_it(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], machines: Machines
) -> None:
    frame = accounts(40)
    run = paced_run(sb, cora_client_for, machines.url, frame, 4)
    pid = stopped_past_its_lease(run)
    os.kill(pid, signal.SIGCONT)
    until(lambda: run.state != "interrupted", what="the worker taking its run back")
    res = run.wait(timeout=RUN_LIMIT_S)
    assert run.state == "succeeded" and run.info()["attempts"] == 1
    assert (res["cora_status"] == "created").all()
    exactly_stored(sb, frame)
    assert ok_posts(sb) == len(bulk_posts(sb)) == 10


def test_a_worker_back_after_its_run_was_taken_over_sends_nothing_more(
    sb: Sandbox, rtp_client_for: Callable[..., RecotapClient], machines: Machines
) -> None:
    add_companies(sb, 60)
    sb.set_faults(FaultConfig(latency=0.1))
    client = rtp_client_for(state=machines.url, max_concurrency=1)
    client.MAX_MAPPINGS = 2
    run = mappings(60).recotap.map_ids(client=client, background=True)
    until(lambda: run.rows_done >= 4, what="two answers")
    pid = stopped_past_its_lease(run)
    # Another machine resumes the run; its worker has not started yet.
    store = PgRunStore(machines.url)
    assert store.requeue(run.id, store.spec(run.id), reserve="elsewhere:1:resumed", attempts=2)
    sent = len(sb.requests)
    with psycopg.connect(machines.url, autocommit=True) as conn:
        # For a moment after it wakes the database refuses its heartbeats (what the worker
        # would send without knowing its lease goes out meanwhile), then answers again.
        conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'refused for a moment'; END $$")
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON recocora_runs "
                     "FOR EACH STATEMENT EXECUTE FUNCTION refuse()")
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.5)
        conn.execute("DROP TRIGGER refuse ON recocora_runs")
    until(lambda: process_start(pid) is None, what="the old worker stopping")
    assert len(sb.requests) == sent  # not one request once the run was another's
    assert "no longer this worker's" in run.log()
    assert (run.state, run.info()["owner"]) == ("queued", "elsewhere:1:resumed")
    store.update(run.id, state="cancelled")  # the resumed worker never comes


def test_claims_are_idempotent_for_their_worker(
    cora_client_for: Callable[..., CoraClient], machines: Machines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claim whose commit was cut off is run again: it must give the same answer."""
    client = cora_client_for(state=machines.url)
    first = accounts(2).cora.upsert(client=client, background="queue")
    second = accounts(2, start=10).cora.upsert(client=client, background="queue")
    store = PgRunStore(machines.url)
    keys = [("cora", "sandbox", first.info()["base_url"])]
    with monkeypatch.context() as patch:  # the claim's moment, as a call run again has it
        patch.setattr("recocora._state._pg_registry.now_iso", lambda: "2030-01-01T00:00:00Z")
        assert store.claim_next("worker-a", keys) == first.id
        assert store.claim_next("worker-a", keys) == first.id  # the same call, run again
    assert store.claim_next("worker-a", keys) == second.id  # a new call: the next run
    store.update(first.id, state="interrupted")
    assert store.requeue(first.id, store.spec(first.id), reserve="worker-b")
    assert store.claim(first.id, "worker-b") and store.claim(first.id, "worker-b")
    assert not store.claim(first.id, "worker-c")
    for run in (first, second):
        store.update(run.id, state="cancelled")


# --------------------------------------------------------------------------- outage


def test_a_database_outage_pauses_the_run_and_loses_nothing(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], own_postgres: Any,
    tmp_path: Path,
) -> None:
    sb.set_cora_window(0.3)
    url = own_postgres.new_database()
    group = Machines(tmp_path, sb, url)
    frame = accounts(48)
    try:
        run = frame.cora.upsert(client=cora_client_for(rows=4, min_interval=0.3, state=url),
                                background="queue")
        worker = group.start("worker", "--once")
        until(lambda: run.rows_done >= 8, what="two answers")
        own_postgres.stop()
        stopped_at, sent_before = time.monotonic(), len(bulk_posts(sb))
        time.sleep(1.0)  # the outage lasts a while
        sent_during = len(bulk_posts(sb)) - sent_before
        own_postgres.start()
        outage = time.monotonic() - stopped_at
        _, err = group.finish(worker)
        res = run.wait(timeout=RUN_LIMIT_S)
        assert run.state == "succeeded" and run.info()["attempts"] == 1
        assert (res["cora_status"] == "created").all()
        exactly_stored(sb, frame)
        assert ok_posts(sb) == len(bulk_posts(sb)) == 12
        assert sent_during <= 1  # the request in flight; its answer waited to be recorded
        target = journal_target("cora", sb.cora_base_url, "sandbox")
        acks = PgJournal(url, api="cora", target=f"{target} run {run.id}").acks()
        assert sorted(acks["key"]) == sorted(frame["externalId"])
        assert "cannot be reached" in err and "answers again" in err
        assert "cannot be reached" in run.log()
        paused = [line for line in err.splitlines() if "answers again" in line]
    finally:
        group.close()
    print(f"outage: database down {outage:.1f} s; {sent_during} request(s) left meanwhile; "
          f"worker: {paused[0].split('recocora: ', 1)[-1]}")


# --------------------------------------------------------------------------- cancel, errors


def test_cancel_from_another_machine_and_a_queued_run_cancelled_at_once(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], machines: Machines,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    sb.set_cora_window(0.3)
    client = cora_client_for(rows=2, min_interval=0.3, state=machines.url)
    run = accounts(40).cora.upsert(client=client, background=True)
    waiting = accounts(5, start=100).cora.upsert(client=client, background="queue")
    until(lambda: run.rows_done >= 4, what="two answers")
    monkeypatch.setenv("RECOCORA_CACHE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("RECOCORA_STATE_URL", machines.url)
    there = recocora.attach(run.id)
    there.cancel()
    res = there.wait(timeout=RUN_LIMIT_S)
    assert there.state == "cancelled" and (res["cora_status"] == "not_sent").sum() > 0
    assert ok_posts(sb) * 2 == (res["cora_status"] == "created").sum()
    recocora.attach(waiting.id).cancel()
    assert waiting.state == "cancelled"
    listed = recocora.runs().set_index("run_id")["state"]
    assert listed.to_dict() == {run.id: "cancelled", waiting.id: "cancelled"}


def test_cli_queues_lists_and_cancels_through_the_state_database(
    sb: Sandbox, machines: Machines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in sb.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECOCORA_STATE_URL", machines.url)
    path = tmp_path / "accounts.csv"
    accounts(6).to_csv(path, index=False)
    assert main(["cora", "upsert", str(path), "--background", "queue"]) == 0
    run_id = capsys.readouterr().out.strip()
    assert recocora.attach(run_id).state == "queued"
    assert main(["runs"]) == 0 and run_id in capsys.readouterr().out
    assert main(["runs", "cancel", run_id]) == 0
    assert recocora.attach(run_id).state == "cancelled" and sb.requests == []


def test_queue_and_worker_refuse_what_they_cannot_do(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], state_url: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ConfigError, match="RECOCORA_STATE_URL"):
        accounts(2).cora.upsert(client=cora_client_for(), background="queue")
    for background in ("queue", True):  # it may be resumed on another machine
        with pytest.raises(ConfigError, match="journal is kept in the state database"):
            accounts(2).cora.upsert(client=cora_client_for(state=state_url),
                                    background=background, journal=tmp_path / "j.db")
    mixed = accounts(3)
    mixed["metadata.filenumber"] = ["F-1", 2, "F-3"]  # valid, but no Parquet column
    with pytest.raises(ConfigError, match="Parquet"):
        mixed.cora.upsert(client=cora_client_for(state=state_url), background=True)
    with pytest.raises(ValueError, match="'queue'"):
        accounts(2).cora.upsert(client=cora_client_for(), background="later")  # type: ignore
    assert main(["worker", "--once"]) == 2
    assert "RECOCORA_STATE_URL" in capsys.readouterr().err
    monkeypatch.delenv("CORA_API_KEY", raising=False)
    monkeypatch.delenv("RECOTAP_API_KEY", raising=False)
    assert main(["worker", "--once", "--state", state_url]) == 2
    assert "CORA_API_KEY" in capsys.readouterr().err


# --------------------------------------------------------------------------- secrets


def test_the_database_holds_no_secret(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient],
    rtp_client_for: Callable[..., RecotapClient], postgres: Any, tmp_path: Path,
) -> None:
    role, password = f"app_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    url = f"postgresql://{role}:{password}@127.0.0.1:{postgres.port}/{name}"
    add_companies(sb, 6)
    cora = accounts(9).cora.upsert(client=cora_client_for(rows=4, state=url), background=True)
    rtp = mappings(6).recotap.map_ids(client=rtp_client_for(state=url), background=True,
                                      journal=True)
    queued = accounts(3, start=50).cora.upsert(client=cora_client_for(state=url),
                                               background="queue")
    cora.wait(timeout=RUN_LIMIT_S)
    rtp.wait(timeout=RUN_LIMIT_S)
    queued.cancel()
    secrets = [sb.cora_key, sb.cora_key.split(".", 1)[1], sb.recotap_key, password]
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE "
            "table_name LIKE 'recocora%%' AND data_type IN "
            "('text', 'bytea', 'json', 'jsonb', 'character varying')").fetchall()
        assert len(columns) > 20
        for table, column in columns:
            for (value,) in conn.execute(f"SELECT {column} FROM {table}"):
                data = value if isinstance(value, bytes) else orjson.dumps(value)
                for secret in secrets:
                    assert secret.encode() not in data, (table, column)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files  # the workers' logs
    for path in files:
        for secret in secrets:
            assert secret.encode() not in path.read_bytes(), path
    for shown in (repr(cora), cora.log(), recocora.runs(state=url).to_string()):
        assert not any(secret in shown for secret in secrets)
