"""The journal in the state database behaves as the SQLite journal does: the same records,
the same skips of acknowledged rows, changed rows and ``force``; and an answer is never lost
while the database is away."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from recocora import CoraClient, JournalError, RecotapClient
from recocora._state import Ack, Journal, PgJournal, journal_target, open_journal
from recocora._state._pg import Database
from tests.backfill.conftest import accounts, add_companies, bulk_posts, mappings

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

TARGET = "cora https://api.corafone.com key k1"
Opener = Callable[..., Any]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the journal of a target in one backend: a SQLite file, or the state database."""
    made: list[Any] = []
    url = request.getfixturevalue("state_url") if request.param == "postgres" else None

    def opener(target: str = TARGET) -> Any:
        store = (Journal(tmp_path / "j.db", api="cora", target=target) if url is None
                 else PgJournal(url, api="cora", target=target))
        made.append(store)
        return store

    yield opener
    for store in made:
        store.close()


def test_record_then_applied_roundtrip(open_store: Opener) -> None:
    with open_store() as j:
        run = j.begin_run(dry_run=False, rows=2, to_send=2, skipped=0)
        j.record([Ack("A", b"h" * 16, "created", account_id="acc_A", updated_at="t1"),
                  Ack("B", b"g" * 16, "failed", code="MISSING_REQUIRED_FIELD")],
                 run=run, dry_run=False, batch=0)
        j.end_run(run, "completed")
        applied = j.applied()
        assert applied.loc["A", "status"] == "created"
        assert applied.loc["A", "account_id"] == "acc_A"
        assert applied.loc["A", "hash"] == b"h" * 16
        assert applied.loc["B", "status"] == "failed"
        assert applied.loc["A", "acked_at"].endswith("Z")
        runs = j.runs()
        assert runs[["outcome", "requests", "acknowledged"]].values.tolist() == [
            ["completed", 1, 2]]


def test_a_later_answer_replaces_status_but_keeps_the_account_id(open_store: Opener) -> None:
    with open_store() as j:
        run = j.begin_run(dry_run=False, rows=1, to_send=1, skipped=0)
        j.record([Ack("A", b"1" * 16, "created", account_id="acc_A")], run=run,
                 dry_run=False, batch=0)
        j.record([Ack("A", b"2" * 16, "failed", code="INVALID_FIELD_VALUE")], run=run,
                 dry_run=False, batch=1)
        row = j.applied().loc["A"]
        assert (row["status"], row["hash"], row["account_id"]) == ("failed", b"2" * 16, "acc_A")


def test_dry_run_rows_are_kept_apart_and_never_count_as_applied(open_store: Opener) -> None:
    with open_store() as j:
        run = j.begin_run(dry_run=True, rows=1, to_send=1, skipped=0)
        j.record([Ack("A", b"1" * 16, "created")], run=run, dry_run=True, batch=0)
        assert j.applied().empty
        real = j.begin_run(dry_run=False, rows=1, to_send=1, skipped=0)
        j.record([Ack("A", b"1" * 16, "updated", account_id="acc")], run=real,
                 dry_run=False, batch=0)
        j.record([Ack("A", b"9" * 16, "created")], run=run, dry_run=True, batch=1)
        assert j.applied().loc["A", "status"] == "updated"
        acks = j.acks()
        assert sorted(acks["dry_run"].tolist()) == [False, True]


def test_an_answer_is_recorded_whole_or_not_at_all(open_store: Opener) -> None:
    with open_store() as j:
        run = j.begin_run(dry_run=False, rows=3, to_send=3, skipped=0)
        broken = [Ack("A", b"1" * 16, "created"), Ack("B", b"2" * 16, "created"),
                  Ack("C", object(), "created")]  # type: ignore[arg-type]
        with pytest.raises(JournalError, match="nothing of this step was recorded"):
            j.record(broken, run=run, dry_run=False, batch=0)
        assert j.applied().empty
        assert j.runs()["requests"].tolist() == [0]
        j.record(broken[:2], run=run, dry_run=False, batch=0)
        assert sorted(j.applied().index) == ["A", "B"]


def test_rows_are_filed_per_api_and_target(open_store: Opener) -> None:
    a, b = open_store(), open_store("cora https://other key k2")
    run = a.begin_run(dry_run=False, rows=1, to_send=1, skipped=0)
    a.record([Ack("A", b"1" * 16, "created")], run=run, dry_run=False, batch=0)
    assert list(a.applied().index) == ["A"]
    assert b.applied().empty


def test_journal_true_is_the_state_database_and_a_path_stays_a_file(
    state_url: str, tmp_path: Path
) -> None:
    url = "https://u:pw@api.corafone.com/"
    shared = open_journal(True, api="cora", base_url=url, key_label="k1", state=state_url)
    assert isinstance(shared, PgJournal) and shared.target == journal_target("cora", url, "k1")
    assert "pw" not in repr(shared) and shared.location == Database(state_url).label
    file = open_journal(tmp_path / "j.db", api="cora", base_url=url, key_label="k1",
                        state=state_url)
    assert isinstance(file, Journal) and file.location == str(tmp_path / "j.db")
    file.close()


# --------------------------------------------------------------------------- through a run


def test_rerun_skips_what_any_machine_acknowledged_and_force_sends_all(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], state_url: str
) -> None:
    df = accounts(35)
    first = df.cora.upsert(client=cora_client_for(rows=10, state=state_url), journal=True,
                           progress=False)
    assert first.attrs["requests"] == 4 and first.attrs["journal"].startswith("postgresql://")
    # Another client (as on another machine: its own cache folder) finds the same journal.
    again = df.cora.upsert(client=cora_client_for(rows=10, state=state_url), journal=True,
                           progress=False)
    assert len(bulk_posts(sb)) == 4
    assert again.attrs["counts"] == {"skipped": 35}
    assert (again["cora_previous_status"] == "created").all()
    assert again["cora_account_id"].tolist() == first["cora_account_id"].tolist()
    forced = df.cora.upsert(client=cora_client_for(rows=10, state=state_url), journal=True,
                            force=True, progress=False)
    assert forced.attrs["rows_sent"] == 35 and (forced["cora_status"] == "unchanged").all()


def test_changed_rows_and_only_they_are_sent_again(
    sb: Sandbox, cora_client_for: Callable[..., CoraClient], state_url: str
) -> None:
    client = cora_client_for(state=state_url)
    df = accounts(200)
    df.cora.upsert(client=client, journal=True, progress=False)
    changed = df.copy()
    picked = changed.index[::20]
    changed.loc[picked, "clientStatus"] = "paid"
    res = changed.cora.upsert(client=client, journal=True, progress=False)
    assert res.attrs["rows_sent"] == len(picked) == 10
    assert (res.loc[picked, "cora_status"] == "updated").all()
    assert (res.drop(picked)["cora_status"] == "skipped").all()
    third = changed.cora.upsert(client=client, journal=True, progress=False)
    assert third.attrs["rows_sent"] == 0
    # A client on this machine's files keeps a journal of its own.
    local = changed.cora.upsert(client=cora_client_for(state="local"), journal=True,
                                progress=False)
    assert local.attrs["rows_sent"] == 200


def test_recotap_rerun_skips_acknowledged_mappings(
    sb: Sandbox, rtp_client_for: Callable[..., RecotapClient], state_url: str
) -> None:
    add_companies(sb, 30)
    df = mappings(35)
    first = df.recotap.map_ids(client=rtp_client_for(state=state_url), journal=True,
                               progress=False)
    assert first.attrs["counts"] == {"mapped": 30, "not_found": 5}
    again = df.recotap.map_ids(client=rtp_client_for(state=state_url), journal=True,
                               progress=False)
    assert again.attrs["counts"] == {"skipped": 30, "not_found": 5}
    secret = rtp_client_for()._key
    with psycopg.connect(state_url) as conn:
        targets = {r[0] for r in conn.execute("SELECT DISTINCT target FROM recocora_acks")}
    assert len(targets) == 1 and secret not in next(iter(targets))


def test_an_answer_recorded_while_the_database_is_down_waits_and_is_kept(
    own_postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Database, "RETRY_FIRST_S", 0.05)
    monkeypatch.setattr(Database, "RETRY_MAX_S", 0.2)
    url = own_postgres.new_database()
    j = PgJournal(url, api="cora", target=TARGET)
    run = j.begin_run(dry_run=False, rows=2, to_send=2, skipped=0)
    own_postgres.stop()
    done = threading.Event()

    def record() -> None:
        j.record([Ack("A", b"1" * 16, "created"), Ack("B", b"2" * 16, "created")],
                 run=run, dry_run=False, batch=0)
        done.set()

    writer = threading.Thread(target=record)
    writer.start()
    assert not done.wait(0.5)  # paused, not failed
    own_postgres.start()
    writer.join(60)
    assert done.is_set()
    assert sorted(j.applied().index) == ["A", "B"]
    assert j.runs()["requests"].tolist() == [1]
