"""The journal file itself: WAL, reopening, refusing other files, where it lives, hashes."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recocora import ConfigError, CoraClient, JournalError, RecotapClient
from recocora._state import (
    Ack,
    Journal,
    default_journal_path,
    journal_target,
    key_fingerprint,
    open_journal,
    row_hash,
    row_hashes,
)

from .conftest import accounts, add_companies, mappings

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

TARGET = "cora https://api.corafone.com key k1"


def fresh(tmp_path: Path, target: str = TARGET) -> Journal:
    return Journal(tmp_path / "j.db", api="cora", target=target)


# What every journal records, and how, is tested on both backends in
# tests/shared/test_journal_pg.py; the tests below are the SQLite file's own.


def test_file_is_wal_and_survives_reopening(tmp_path: Path) -> None:
    with fresh(tmp_path) as j:
        run = j.begin_run(dry_run=False, rows=1, to_send=1, skipped=0)
        j.record([Ack("A", b"1" * 16, "created")], run=run, dry_run=False, batch=0)
    db = sqlite3.connect(tmp_path / "j.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with fresh(tmp_path) as j:
        assert list(j.applied().index) == ["A"]


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(ConfigError, match="cannot be used as a recocora journal"):
        Journal(junk, api="cora", target=TARGET)
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE customers (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="something else"):
        Journal(other, api="cora", target=TARGET)


def test_journal_argument_forms(tmp_path: Path, cache_dir: Path) -> None:
    url = "https://u:pw@api.corafone.com/"
    assert open_journal(None, api="cora", base_url=url, key_label="k1") is None
    assert open_journal(False, api="cora", base_url=url, key_label="k1") is None
    j = open_journal(True, api="cora", base_url=url, key_label="k1")
    assert j is not None and j.path == default_journal_path("cora", url, "k1")
    assert j.path.parent == cache_dir / "journals"
    assert j.target == "cora https://api.corafone.com key k1"
    j.close()
    with pytest.raises(TypeError, match="journal must be"):
        open_journal(3, api="cora", base_url=url, key_label="k1")  # type: ignore[arg-type]


def test_default_files_differ_by_api_key_and_server() -> None:
    names = {
        default_journal_path("cora", "https://api.corafone.com", "k1"),
        default_journal_path("cora", "https://api.corafone.com", "k2"),
        default_journal_path("cora", "http://127.0.0.1:8765", "k1"),
        default_journal_path("recotap", "https://api.corafone.com", "k1"),
    }
    assert len(names) == 4
    assert journal_target("cora", "http://[::1]:80/x/", "k") == "cora http://[::1]:80/x key k"


def test_recotap_fingerprint_is_stable_short_and_not_the_key() -> None:
    key = "rtp_live_0123456789abcdef"
    assert key_fingerprint(key) == key_fingerprint(key)
    assert key_fingerprint(key) != key_fingerprint(key + "x")
    assert key not in key_fingerprint(key) and len(key_fingerprint(key)) == 16


row_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


@given(row=st.dictionaries(st.text(max_size=6), row_values, max_size=6))
def test_hash_is_of_the_row_json_with_sorted_keys(row: dict[str, object]) -> None:
    expected = hashlib.blake2b(orjson.dumps(row, option=orjson.OPT_SORT_KEYS),
                               digest_size=16).digest()
    assert row_hash(row) == expected == row_hashes([row])[0]
    assert row_hash(dict(reversed(list(row.items())))) == expected


def test_upsert_records_exactly_what_each_row_sent(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = cora_for(rows=7)
    df = accounts(20)
    df["person.name.first"] = ["Ann", None] * 10
    journal = tmp_path / "j.db"
    res = df.cora.upsert(client=client, journal=journal, progress=False)
    sent = {a["externalId"]: a for body in df.cora.payloads()
            for a in orjson.loads(body)["accounts"]}
    with Journal(journal) as j:
        acks = j.acks().set_index("key")
    assert len(acks) == 20
    for ext, row in sent.items():
        digest = hashlib.blake2b(orjson.dumps(row, option=orjson.OPT_SORT_KEYS),
                                 digest_size=16).hexdigest()
        assert acks.loc[ext, "hash"] == digest
    by_id = res.set_index("cora_external_id")
    assert (acks["account_id"] == by_id.loc[acks.index, "cora_account_id"]).all()
    assert set(acks["status"]) == {"created"}
    assert acks["batch"].tolist() == sorted(acks["batch"].tolist())
    assert set(acks["batch"]) == {0, 1, 2}
    assert not acks["dry_run"].any()


def test_map_ids_records_each_mapping_by_domain(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], tmp_path: Path
) -> None:
    add_companies(sb, 8)
    df = mappings(10)
    df.loc["m2", "externalId"] = "crm-other"
    journal = tmp_path / "m.db"
    df.recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    with Journal(journal) as j:
        acks = j.acks().set_index("key")
    assert acks.loc["company-000002.com", "external_id"] == "crm-other"
    assert acks.loc["company-000002.com", "status"] == "mapped"
    assert acks.loc["company-000009.com", "status"] == "not_found"
    row = {"domain": "company-000002.com", "externalId": "crm-other"}
    assert acks.loc["company-000002.com", "hash"] == row_hash(row).hex()
    assert set(acks["api"]) == {"recotap"}
    assert pd.Series(acks["target"]).str.contains("key ").all()


def test_a_journal_that_cannot_be_written_stops_the_run_with_its_result(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = Journal.record
    calls = {"n": 0}

    def failing(self: Journal, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise JournalError("The journal could not be written (disk I/O error).")
        record(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "record", failing)
    journal = tmp_path / "j.db"
    df = accounts(30)
    with pytest.raises(JournalError) as info:
        df.cora.upsert(client=cora_for(rows=10), journal=journal, progress=False)
    partial = info.value.result
    assert partial is not None
    # The second answer arrived (its rows were created) but was not recorded.
    assert partial["cora_status"].value_counts().to_dict() == {"created": 20, "not_sent": 10}
    monkeypatch.setattr(Journal, "record", record)
    rest = df.cora.upsert(client=cora_for(rows=10), journal=journal, progress=False)
    assert rest.attrs["counts"] == {"skipped": 10, "unchanged": 10, "created": 10}
    with Journal(journal) as j:
        assert j.runs()["outcome"].tolist() == ["stopped: JournalError", "completed"]


def test_a_journal_path_that_cannot_be_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(ConfigError, match="journal"):
        Journal(tmp_path / "folder.db", api="cora", target=TARGET)
