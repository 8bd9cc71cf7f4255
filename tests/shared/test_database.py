"""The state database itself: schema created and versioned, outages waited out or reported,
the URL's password never shown."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
import pytest

from recocora import ConfigError, CoraClient, RecotapClient, StateError
from recocora._config import state_url
from recocora._state._pg import Database, mask_url
from recocora._state._pg_schema import SCHEMA_VERSION


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_first_use_creates_the_tables_and_records_the_version(state_url: str) -> None:
    assert _tables(state_url) == set()
    db = Database(state_url)
    assert db.run(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
    assert {"recocora_info", "recocora_slots", "recocora_acks", "recocora_runs"} <= \
        _tables(state_url)
    with psycopg.connect(state_url) as conn:
        row = conn.execute("SELECT value FROM recocora_info WHERE name = 'schema_version'")
        assert row.fetchone() == (str(SCHEMA_VERSION),)
    db.close()


def test_many_processes_creating_at_once_create_once(state_url: str) -> None:
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            Database(state_url).run(lambda c: c.execute("SELECT 1").fetchone())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_newer_schema_is_refused_with_what_to_do(state_url: str) -> None:
    Database(state_url).run(lambda c: None)
    with psycopg.connect(state_url) as conn:
        conn.execute("UPDATE recocora_info SET value = %s WHERE name = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    db = Database(state_url)
    for _ in range(2):  # a cell run again is refused again, not let through
        with pytest.raises(ConfigError, match=r"newer than this recocora.*pip install -U"):
            db.run(lambda c: c.execute("SELECT 1"))


def test_an_older_schema_is_migrated(state_url: str, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    from recocora._state import _pg, _pg_schema

    Database(state_url).run(lambda c: None)
    later = (*_pg_schema.MIGRATIONS,
             (SCHEMA_VERSION + 1, ("ALTER TABLE recocora_runs ADD COLUMN later TEXT",)))
    monkeypatch.setattr(_pg, "MIGRATIONS", later)
    monkeypatch.setattr(_pg, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    Database(state_url).run(lambda c: None)
    with psycopg.connect(state_url) as conn:
        assert conn.execute("SELECT value FROM recocora_info").fetchone() == \
            (str(SCHEMA_VERSION + 1),)
        conn.execute("SELECT later FROM recocora_runs")


def test_the_password_is_never_shown() -> None:
    url = "postgresql://app:pa55word@127.0.0.1:1/recocora"
    db = Database(url)
    assert "pa55word" not in repr(db)
    assert mask_url(url) == "postgresql://app@127.0.0.1:1/recocora"
    with pytest.raises(StateError) as caught:
        db.run(lambda c: None, wait=False)
    assert "pa55word" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_a_role_that_may_only_use_the_tables_works_on_a_database_set_up_by_another(
        postgres: Any, state_url: str) -> None:
    Database(state_url).run(lambda c: None)  # set up by the owner
    name = state_url.rsplit("/", 1)[1]
    role = f"app_{name}"
    with psycopg.connect(state_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        # What the README asks an administrator to grant.
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
                     f"TO {role}")
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    app = Database(f"postgresql://{role}@127.0.0.1:{postgres.port}/{name}")
    run = app.run(lambda c: c.execute(
        "INSERT INTO recocora_journal_runs (api, target, dry_run, outcome, rows, to_send, "
        "skipped) VALUES ('cora', 't', false, 'running', 1, 1, 0) RETURNING run").fetchone())
    assert run is not None
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # it could not create them
        app.run(lambda c: c.execute("CREATE TABLE recocora_other (x int)"))
    app.close()


def test_a_transaction_left_open_by_a_suspended_process_does_not_hold_the_others(
        state_url: str) -> None:
    import subprocess
    import sys

    Database(state_url).run(lambda c: c.execute(
        "INSERT INTO recocora_slots (scope, next_slot) VALUES ('s', now())"))
    holder = subprocess.Popen([sys.executable, "-c", f"""
import os, signal
from recocora._state._pg import Database
Database.SILENCE_S = 1.0
def hold(conn):
    conn.execute("SELECT * FROM recocora_slots WHERE scope = 's' FOR UPDATE")
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # a laptop closed in the middle of a transaction
Database({state_url!r}).run(hold)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        row = Database(state_url).run(lambda c: c.execute(
            "SELECT scope FROM recocora_slots WHERE scope = 's' FOR UPDATE").fetchone())
        assert row == ("s",)  # the server ended the stopped process's transaction
    finally:
        holder.kill()
        holder.wait()


def test_a_state_that_is_not_postgres_is_refused_clearly(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    with pytest.raises(ConfigError, match="neither 'local' nor a postgresql:// URL"):
        state_url("mysql://root:pw@db/x")
    with pytest.raises(ConfigError) as caught:
        state_url("password=hunter2 host=db.internal dbname=recocora")
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("RECOCORA_STATE_URL", "postgresql://app@db.internal/recocora")
    assert state_url(None) == "postgresql://app@db.internal/recocora"
    assert state_url("local") is None
    monkeypatch.delenv("RECOCORA_STATE_URL")
    assert state_url(None) is None


def test_clients_take_the_state_from_the_environment_or_the_argument(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOCORA_STATE_URL", "postgresql://app:pw@127.0.0.1:1/x")
    cora = CoraClient("cora_org_k1.s", "http://127.0.0.1:9", min_interval=0)
    rtp = RecotapClient("rtp_x", "http://127.0.0.1:9", state="local")
    assert cora.state_url == "postgresql://app:pw@127.0.0.1:1/x"
    assert rtp.state_url is None
    assert "pw" not in repr(cora) + repr(rtp)
    cora.close()
    rtp.close()


def test_an_outage_is_waited_out_and_said_once(own_postgres: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    url = own_postgres.new_database()
    db = Database(url)
    db.RETRY_MAX_S = 0.2
    db.run(lambda c: None)
    own_postgres.stop()
    answered: list[Any] = []
    caplog.set_level(logging.WARNING, logger="recocora")

    def use() -> None:
        answered.append(db.run(lambda c: c.execute("SELECT 42").fetchone()))

    waiter = threading.Thread(target=use)
    waiter.start()
    for _ in range(1200):
        if db.down:
            break
        time.sleep(0.05)
    assert db.down
    assert answered == []
    own_postgres.start()
    waiter.join(timeout=60)
    assert answered == [(42,)]
    said = [r.getMessage() for r in caplog.records if r.name == "recocora"]
    assert sum("cannot be reached" in m for m in said) == 1
    assert sum("answers again" in m for m in said) == 1
