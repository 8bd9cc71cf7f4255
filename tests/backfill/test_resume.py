"""Resume, skip-unchanged and incremental sync with a journal; ``force``, ``only`` and
``max_failed``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from recocora import CoraClient, RecotapClient, ServerError
from recocora._state import Journal
from recocora.errors import TooManyFailedError
from recocora.sandbox import FaultConfig

from .conftest import accounts, add_companies, bulk_posts, map_patches, mappings

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


def test_rerun_sends_nothing_and_reports_the_earlier_outcome(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = cora_for(rows=10)
    df = accounts(35)
    journal = tmp_path / "j.db"
    first = df.cora.upsert(client=client, journal=journal, progress=False)
    assert first.attrs["requests"] == 4 and first.attrs["skipped"] == 0
    again = df.cora.upsert(client=client, journal=journal, progress=False)
    assert len(bulk_posts(sb)) == 4
    assert again.attrs["requests"] == 0 and again.attrs["rows_sent"] == 0
    assert (again["cora_status"] == "skipped").all()
    assert (again["cora_previous_status"] == "created").all()
    assert again["cora_account_id"].tolist() == first["cora_account_id"].tolist()
    assert again["cora_batch"].isna().all()
    assert again["cora_message"].str.contains("force=True").all()
    assert again.attrs["counts"] == {"skipped": 35}


def test_changed_rows_and_only_they_are_sent_again(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = cora_for()
    df = accounts(200)
    journal = tmp_path / "j.db"
    df.cora.upsert(client=client, journal=journal, progress=False)
    changed = df.copy()
    picked = changed.index[::20]
    changed.loc[picked, "clientStatus"] = "paid"
    # Same content in another column order is not a change.
    changed = changed[list(reversed(changed.columns))]
    res = changed.cora.upsert(client=client, journal=journal, progress=False)
    assert res.attrs["rows_sent"] == len(picked) == 10
    assert (res.loc[picked, "cora_status"] == "updated").all()
    assert (res.drop(picked)["cora_status"] == "skipped").all()
    assert sb.cora_account("bf-000020")["clientStatus"] == "paid"  # type: ignore[index]
    # The journal now holds the new content: a third run sends nothing.
    third = changed.cora.upsert(client=client, journal=journal, progress=False)
    assert third.attrs["rows_sent"] == 0


def test_one_percent_changed_sends_one_percent(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = cora_for()
    n = 10_000
    df = accounts(n)
    journal = tmp_path / "j.db"
    df.cora.upsert(client=client, journal=journal, progress=False)
    rng = np.random.default_rng(6)
    picked = df.index[rng.choice(n, n // 100, replace=False)]
    df.loc[picked, "clientStatus"] = "disputed"
    before = len(bulk_posts(sb))
    res = df.cora.upsert(client=client, journal=journal, progress=False)
    assert res.attrs["rows_sent"] == n // 100
    assert len(bulk_posts(sb)) - before == res.attrs["requests"] == 1
    assert res.attrs["counts"] == {"updated": n // 100, "skipped": n - n // 100}
    stored = {a["externalId"]: a["clientStatus"] for a in sb.cora_accounts()}
    assert sum(v == "disputed" for v in stored.values()) == n // 100


def test_server_rejected_rows_are_sent_again(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = cora_for()
    df = accounts(6)
    df.loc[["r1", "r4"], "portfolioId"] = None  # a new account needs one: Cora refuses
    journal = tmp_path / "j.db"
    first = df.cora.upsert(client=client, journal=journal, progress=False)
    assert first.loc[["r1", "r4"], "cora_status"].tolist() == ["failed", "failed"]
    again = df.cora.upsert(client=client, journal=journal, progress=False)
    assert again.attrs["rows_sent"] == 2
    assert again.loc[["r1", "r4"], "cora_status"].tolist() == ["failed", "failed"]
    df.loc[["r1", "r4"], "portfolioId"] = "pf_fixed"
    fixed = df.cora.upsert(client=client, journal=journal, progress=False)
    assert fixed.loc[["r1", "r4"], "cora_status"].tolist() == ["created", "created"]
    assert (fixed.drop(["r1", "r4"])["cora_status"] == "skipped").all()


def test_force_sends_everything(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = cora_for()
    df = accounts(12)
    journal = tmp_path / "j.db"
    df.cora.upsert(client=client, journal=journal, progress=False)
    res = df.cora.upsert(client=client, journal=journal, force=True, progress=False)
    assert res.attrs["rows_sent"] == 12
    assert (res["cora_status"] == "unchanged").all()


def test_dry_run_never_marks_rows_applied(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    client = cora_for()
    df = accounts(8)
    journal = tmp_path / "j.db"
    dry = df.cora.upsert(client=client, journal=journal, dry_run=True, progress=False)
    assert (dry["cora_status"] == "created").all() and sb.cora_accounts() == []
    real = df.cora.upsert(client=client, journal=journal, progress=False)
    assert real.attrs["rows_sent"] == 8 and (real["cora_status"] == "created").all()
    # A dry run after the real one skips what is applied, and still records as dry.
    df.loc["r3", "clientStatus"] = "closed"
    dry_again = df.cora.upsert(client=client, journal=journal, dry_run=True, progress=False)
    assert dry_again.attrs["rows_sent"] == 1
    assert dry_again.loc["r3", "cora_status"] == "updated"
    assert sb.cora_account("bf-000003")["clientStatus"] == "open"  # type: ignore[index]
    with Journal(journal) as j:
        acks = j.acks()
        runs = j.runs()
    assert acks.loc[acks["key"] == "bf-000003", "dry_run"].tolist() == [False, True]
    assert runs["dry_run"].tolist() == [True, False, True]
    final = df.cora.upsert(client=client, journal=journal, progress=False)
    assert final.attrs["rows_sent"] == 1 and final.loc["r3", "cora_status"] == "updated"


def test_journal_is_per_server_and_key(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    journal = tmp_path / "j.db"
    df = accounts(5)
    df.cora.upsert(client=cora_for(), journal=journal, progress=False)
    sb.add_cora_key("cora_org_second.othersecret", "org_second")
    other = cora_for(api_key="cora_org_second.othersecret")
    res = df.cora.upsert(client=other, journal=journal, progress=False)
    assert res.attrs["rows_sent"] == 5 and (res["cora_status"] == "created").all()
    assert len(sb.cora_accounts("org_second")) == 5


def test_journal_true_uses_the_cache_directory(
    sb: Sandbox, cora_for: Callable[..., CoraClient], cache_dir: Path
) -> None:
    client = cora_for()
    accounts(3).cora.upsert(client=client, journal=True, progress=False)
    res = accounts(3).cora.upsert(client=client, journal=True, progress=False)
    assert res.attrs["rows_sent"] == 0
    files = list((cache_dir / "journals").glob("*.sqlite"))
    assert len(files) == 1 and files[0].name.startswith("cora-sandbox-")
    assert res.attrs["journal"] == str(files[0])


def test_invalid_rows_are_not_recorded(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    df = accounts(4)
    df.loc["r2", "phoneNumber"] = "not a phone"
    journal = tmp_path / "j.db"
    res = df.cora.upsert(client=cora_for(), journal=journal, on_invalid="skip",
                         progress=False)
    assert res.loc["r2", "cora_status"] == "invalid"
    with Journal(journal) as j:
        assert sorted(j.acks()["key"]) == ["bf-000000", "bf-000001", "bf-000003"]


# --------------------------------------------------------------------------- only=


def test_only_resends_not_sent_rows_after_an_error(
    sb: Sandbox, cora_for: Callable[..., CoraClient]
) -> None:
    client = cora_for(rows=10)
    sb.set_faults(FaultConfig(p_503=1.0, start_after=2, scope="writes"))
    df = accounts(45)
    with pytest.raises(ServerError) as info:
        df.cora.upsert(client=client, progress=False)
    partial = info.value.result
    assert partial is not None
    assert partial["cora_status"].value_counts().to_dict() == {"not_sent": 25, "created": 20}
    inflight = partial["cora_batch"].isna() & partial["cora_message"].notna()
    assert inflight.sum() == 10  # the chunk whose request failed says so
    sb.set_faults(FaultConfig())
    posts = len(bulk_posts(sb))
    res = df.cora.upsert(client=client, only=partial, progress=False)
    assert res.index.equals(df.index)
    assert (res["cora_status"] == "created").all()
    assert res.attrs["resent"] == 25 and res.attrs["counts"] == {"created": 45}
    assert len(bulk_posts(sb)) - posts == 3
    assert len(sb.cora_accounts()) == 45
    # Nothing left to re-send: no request at all.
    assert df.cora.upsert(client=client, only=res, progress=False).attrs["requests"] == 0
    assert len(bulk_posts(sb)) - posts == 3


def test_only_resends_failed_rows_after_they_are_fixed(
    sb: Sandbox, cora_for: Callable[..., CoraClient]
) -> None:
    client = cora_for()
    df = accounts(5)
    df.loc["r3", "portfolioId"] = None
    res = df.cora.upsert(client=client, progress=False)
    assert res.loc["r3", "cora_status"] == "failed"
    df.loc["r3", "portfolioId"] = "pf_fixed"
    again = df.cora.upsert(client=client, only=res, progress=False)
    assert again.loc["r3", "cora_status"] == "created"
    assert again.drop("r3")["cora_account_id"].tolist() == res.drop("r3")[
        "cora_account_id"].tolist()
    assert again.attrs["rows_sent"] == 1


def test_only_refuses_what_it_cannot_do_safely(
    sb: Sandbox, cora_for: Callable[..., CoraClient]
) -> None:
    client = cora_for()
    df = accounts(3)
    df.loc["r1", "portfolioId"] = None
    dry = df.cora.upsert(client=client, dry_run=True, progress=False)
    with pytest.raises(ValueError, match="dry run"):
        df.cora.upsert(client=client, only=dry, progress=False)
    res = df.cora.upsert(client=client, progress=False)
    with pytest.raises(ValueError, match="not in this frame"):
        df.drop("r1").cora.upsert(client=client, only=res, progress=False)
    with pytest.raises(TypeError, match="result frame"):
        df.cora.upsert(client=client, only=df, progress=False)


# --------------------------------------------------------------------------- max_failed


@pytest.mark.parametrize("limit", [3, 0.05])
def test_max_failed_stops_the_run_with_the_partial_result(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path, limit: float
) -> None:
    client = cora_for(rows=20)
    df = accounts(100)
    df.loc[df.index[20:40:4], "portfolioId"] = None  # 5 failures in the second chunk
    journal = tmp_path / "j.db"
    with pytest.raises(TooManyFailedError, match="max_failed") as info:
        df.cora.upsert(client=client, journal=journal, max_failed=limit, progress=False)
    partial = info.value.result
    assert partial is not None
    assert partial["cora_status"].value_counts().to_dict() == {
        "created": 35, "not_sent": 60, "failed": 5}
    assert len(bulk_posts(sb)) == 2
    with Journal(journal) as j:
        assert j.runs()["outcome"].tolist() == ["stopped: TooManyFailedError"]
        assert len(j.acks()) == 40


def test_max_failed_lets_a_run_within_the_limit_finish(
    sb: Sandbox, cora_for: Callable[..., CoraClient]
) -> None:
    df = accounts(50)
    df.loc[["r3", "r30"], "portfolioId"] = None
    res = df.cora.upsert(client=cora_for(rows=10), max_failed=2, progress=False)
    assert res.attrs["counts"] == {"created": 48, "failed": 2}


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_max_failed_must_be_a_count_or_fraction(
    cora_for: Callable[..., CoraClient], bad: object
) -> None:
    with pytest.raises((TypeError, ValueError), match="max_failed"):
        accounts(1).cora.upsert(client=cora_for(), max_failed=bad, progress=False)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Recotap


def test_recotap_rerun_skips_acknowledged_mappings_before_reading(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], tmp_path: Path
) -> None:
    add_companies(sb, 150)
    df = mappings(160)
    journal = tmp_path / "m.db"
    first = df.recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    assert first.attrs["counts"] == {"mapped": 150, "not_found": 10}
    before = len(sb.requests)
    again = df.recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    assert again.attrs["counts"] == {"skipped": 150, "not_found": 10}
    assert (again.loc[again.recotap_status == "skipped", "recotap_previous_status"]
            == "mapped").all()
    # Only the ten not_found domains were read and sent again (they may exist by now).
    new = sb.requests[before:]
    assert [r.method for r in new] == ["GET", "PATCH"]
    add_companies(sb, 10, start=150)
    third = df.recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    assert third.attrs["counts"] == {"skipped": 150, "mapped": 10}


def test_recotap_changed_id_is_sent_again_and_the_guard_still_holds(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], tmp_path: Path
) -> None:
    add_companies(sb, 5)
    df = mappings(5)
    journal = tmp_path / "m.db"
    df.recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    df.loc["m1", "externalId"] = "crm-new"
    guarded = df.recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    assert guarded.loc["m1", "recotap_status"] == "already_mapped"
    forced = df.recotap.map_ids(client=rtp_for(), journal=journal, overwrite=True,
                                progress=False)
    assert forced.loc["m1", "recotap_status"] == "mapped"
    assert forced.attrs["counts"] == {"mapped": 1, "skipped": 4}
    stored = {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}
    assert stored["company-000001.com"] == "crm-new"


def test_recotap_guard_answer_is_recorded_as_unchanged(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], tmp_path: Path
) -> None:
    sb.add_recotap_account(domain="company-000000.com", name="A", external_id="crm-000000")
    journal = tmp_path / "m.db"
    res = mappings(1).recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    assert res["recotap_status"].tolist() == ["unchanged"]
    again = mappings(1).recotap.map_ids(client=rtp_for(), journal=journal, progress=False)
    assert again["recotap_status"].tolist() == ["skipped"]
    assert again["recotap_previous_status"].tolist() == ["unchanged"]


def test_recotap_force_and_only(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 10)
    add_companies(sb, 40)
    df = mappings(40)
    client = rtp_for(max_concurrency=1)
    sb.set_faults(FaultConfig(p_503=1.0, start_after=3, scope="writes"))
    with pytest.raises(ServerError) as info:
        df.recotap.map_ids(client=client, overwrite=True, progress=False)
    partial = info.value.result
    assert partial is not None
    assert partial["recotap_status"].value_counts().to_dict() == {"mapped": 30, "not_sent": 10}
    sb.set_faults(FaultConfig())
    patches = len(map_patches(sb))
    res = df.recotap.map_ids(client=client, overwrite=True, only=partial, progress=False)
    assert (res["recotap_status"] == "mapped").all() and res.attrs["resent"] == 10
    assert len(map_patches(sb)) - patches == 1
    journal = tmp_path / "m.db"
    df.recotap.map_ids(client=client, journal=journal, overwrite=True, progress=False)
    forced = df.recotap.map_ids(client=client, journal=journal, overwrite=True, force=True,
                                progress=False)
    assert forced.attrs["requests"] == 4 and forced.attrs["counts"] == {"mapped": 40}


class _RacingClient(RecotapClient):
    """After each mapping request, before its answer is handed back, another writer puts
    ``"rival"`` on ``target``: the race ``verify`` catches."""

    target = ""
    rival: RecotapClient

    def map_external_ids_raw(self, body: bytes) -> dict[str, Any]:
        answer = super().map_external_ids_raw(body)
        self.rival.map_external_ids([{"domain": self.target, "externalId": "rival"}])
        return answer


def test_recotap_verify_failures_are_recorded_and_sent_again(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], tmp_path: Path
) -> None:
    add_companies(sb, 3)
    journal = tmp_path / "m.db"
    df = mappings(3)
    racing = _RacingClient(sb.recotap_key, sb.recotap_base_url)
    racing.target, racing.rival = "company-000001.com", rtp_for()
    try:
        res = df.recotap.map_ids(client=racing, journal=journal, verify=True, progress=False)
    finally:
        racing.close()
    assert res["recotap_status"].tolist() == ["mapped", "failed", "mapped"]
    with Journal(journal) as j:
        acks = j.acks().set_index("key")
    assert acks.loc["company-000001.com", "status"] == "failed"
    again = df.recotap.map_ids(client=rtp_for(), journal=journal, overwrite=True,
                               progress=False)
    assert again["recotap_status"].tolist() == ["skipped", "mapped", "skipped"]
    stored = {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}
    assert stored["company-000001.com"] == "crm-000001"


def test_recotap_max_failed_counts_not_found(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RecotapClient, "MAX_MAPPINGS", 10)
    add_companies(sb, 10)
    df = mappings(60)  # the last 50 domains exist nowhere
    with pytest.raises(TooManyFailedError) as info:
        df.recotap.map_ids(client=rtp_for(max_concurrency=1), overwrite=True, max_failed=0.2,
                           progress=False)
    partial = info.value.result
    assert partial is not None
    counts = partial["recotap_status"].value_counts().to_dict()
    assert counts == {"mapped": 10, "not_found": 10, "not_sent": 40}
    assert pd.isna(partial.loc["m59", "recotap_batch"])
