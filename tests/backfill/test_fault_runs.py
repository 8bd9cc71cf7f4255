"""Long runs against a misbehaving server, and runs killed outright.

The sandbox injects 5xx answers, connections dropped before and after the write, bursts of
429, latency spikes and a clock six minutes off. The runs must end with every row holding
exactly one final status, the server holding exactly the expected state, and nothing applied
that should not have been. Each test prints its figures (``pytest -s`` shows them).
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from recocora import CoraClient, RecotapClient
from recocora._state import Journal
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

WRITABLE = ("portfolioId", "phoneNumber", "clientStatus", "metadata", "person")


def faults(seed: int, **extra: Any) -> FaultConfig:
    """10% 5xx, 5% dropped connections (half before, half after the write), 429 bursts,
    latency spikes, and the server clock six minutes ahead."""
    return FaultConfig(
        seed=seed, p_500=0.04, p_502=0.03, p_503=0.03, p_drop=0.025, p_drop_after=0.025,
        p_429=0.04, burst_429=3, retry_after_429=0, spike_p=0.1, spike=0.1,
        clock_skew=360, **extra,
    )


def stored_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in WRITABLE if k in doc}


def test_20000_row_upsert_through_faults(
    sb: Sandbox, cora_for: Callable[..., CoraClient], tmp_path: Path
) -> None:
    n, existing = 20_000, 5_000
    client = cora_for()
    before = accounts(existing)
    before.cora.upsert(client=client, progress=False)
    original = {a["externalId"]: a for a in sb.cora_accounts()}

    df = accounts(n)
    df["person.name.first"] = None
    changed = df.index[:existing:2]
    df.loc[changed, "clientStatus"] = "paid"
    named = df.index[:existing:3]
    df.loc[named, "person.name.first"] = "Ada"
    rng = random.Random(3)
    invalid = pd.Index(rng.sample(list(df.index), 100))
    df.loc[invalid, "phoneNumber"] = "not a phone"
    rejected = pd.Index(rng.sample([i for i in df.index[existing:] if i not in invalid], 50))
    df.loc[rejected, "portfolioId"] = None  # Cora refuses to create an account without it

    sb.set_faults(faults(seed=20))
    journal = tmp_path / "j.db"
    started = time.monotonic()
    res = df.cora.upsert(client=client, journal=journal, on_invalid="skip", progress=False)
    took = time.monotonic() - started

    # Every row has exactly one final status, on the input's index.
    assert res.index.equals(df.index)
    assert res["cora_status"].notna().all()
    counts = Counter(res["cora_status"])
    assert sum(counts.values()) == n and counts["not_sent"] == 0
    assert set(res.loc[invalid, "cora_status"]) == {"invalid"}
    assert set(res.loc[rejected, "cora_status"]) == {"failed"}
    assert set(res.loc[rejected, "cora_code"]) == {"MISSING_REQUIRED_FIELD"}

    # The server holds exactly the expected state: every valid row applied as sent, the
    # invalid and refused rows not at all, the rest untouched.
    expected: dict[str, dict[str, Any]] = {
        ext: stored_fields(doc) for ext, doc in original.items()
    }
    for label, row in df.drop(invalid.union(rejected)).iterrows():
        ext = row["externalId"]
        doc = expected.setdefault(ext, {"portfolioId": row["portfolioId"],
                                        "metadata": {"filenumber": row["metadata.filenumber"]}})
        doc["phoneNumber"] = row["phoneNumber"]
        doc["clientStatus"] = row["clientStatus"]
        if isinstance(row["person.name.first"], str):
            doc["person"] = {"name": {"first": row["person.name.first"]}}
        status = res.loc[label, "cora_status"]
        if ext in original:
            same = doc == stored_fields(original[ext])
            assert status == "unchanged" if same else status in ("updated", "unchanged")
        else:
            assert status in ("created", "unchanged")  # unchanged: answer lost, re-sent
    stored = {a["externalId"]: stored_fields(a) for a in sb.cora_accounts()}
    assert stored == expected

    settle(sb)
    posts = bulk_posts(sb)
    sent_rows = n - len(invalid)
    minimum = math.ceil(sent_rows / 500)
    met = Counter(p.fault for p in posts)
    assert {"500", "502", "503", "drop", "drop_after", "429", "latency"} <= set(met)
    assert [p.status for p in posts].count(401) == 1  # the clock was corrected once
    reapplied = int(((res["cora_status"] == "unchanged") & ~res["cora_external_id"].isin(
        [e for e in original if expected[e] == stored_fields(original[e])])).sum())
    assert reapplied <= 500 * met["drop_after"]
    print(f"\n20,000-row upsert: {took:.1f} s, {len(posts)} requests for a minimum of "
          f"{minimum} ({dict(met)}); rows lost 0; rows re-applied after a lost answer "
          f"{reapplied} (answered 'unchanged'); counts {dict(counts)}")

    # A re-run with the journal sends only the refused rows again, faults and all.
    again = df.cora.upsert(client=client, journal=journal, on_invalid="skip", progress=False)
    assert again.attrs["rows_sent"] == len(rejected)
    assert Counter(again["cora_status"]) == {"skipped": sent_rows - len(rejected),
                                             "failed": len(rejected), "invalid": 100}
    assert {a["externalId"]: stored_fields(a) for a in sb.cora_accounts()} == expected


def test_5000_mappings_through_faults(
    sb: Sandbox, rtp_for: Callable[..., RecotapClient], tmp_path: Path
) -> None:
    add_companies(sb, 4_800)
    other = {f"company-{i:06d}.com": f"other-{i}" for i in range(0, 4_800, 24)}  # 200
    same = {f"company-{i:06d}.com": f"crm-{i:06d}" for i in range(1, 4_800, 48)}  # 100
    for domain, held in {**other, **same}.items():
        sb.add_recotap_account(domain=domain, name=domain, external_id=held)
    before = {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}

    domains = [f"https://www.company-{i:06d}.com/" for i in range(4_800)]
    ids = [f"crm-{i:06d}" for i in range(4_800)]
    domains += [f"nowhere-{i}.org" for i in range(130)]  # not_found
    ids += [f"crm-x{i}" for i in range(130)]
    domains += [f"company-{i:06d}.com" for i in range(2, 4_800, 96)]  # 50 later duplicates
    ids += [f"crm-late-{i}" for i in range(2, 4_800, 96)]
    domains += ["not a domain"] * 20
    ids += [f"crm-bad{i}" for i in range(20)]
    df = pd.DataFrame({"domain": domains, "externalId": ids},
                      index=[f"m{i}" for i in range(len(domains))])
    assert len(df) == 5_000

    sb.set_faults(faults(seed=5))
    journal = tmp_path / "m.db"
    started = time.monotonic()
    res = df.recotap.map_ids(client=rtp_for(max_concurrency=4), journal=journal, verify=True,
                             on_invalid="skip", progress=False)
    took = time.monotonic() - started

    assert res.index.equals(df.index)
    counts = Counter(res["recotap_status"])
    assert sum(counts.values()) == 5_000
    assert counts == {"mapped": 4_800 - 300 - 0, "already_mapped": 200, "unchanged": 100,
                      "not_found": 130, "superseded": 50, "invalid": 20}
    expected = dict(before)
    for domain, external_id, status in zip(res["recotap_domain"], res["recotap_external_id"],
                                           res["recotap_status"], strict=True):
        if status == "mapped":
            expected[str(domain)] = str(external_id)
    after = {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}
    assert after == expected
    for i in range(2, 4_800, 96):  # the later duplicate won where it was sent
        domain = f"company-{i:06d}.com"
        assert after[domain] == (other.get(domain) or same.get(domain) or f"crm-late-{i}")

    settle(sb)
    patches = map_patches(sb)
    sent = counts["mapped"] + counts["not_found"]
    met = Counter(r.fault for r in sb.requests)
    assert {"500", "502", "503", "drop", "drop_after", "429", "latency"} <= set(met)
    print(f"\n5,000 mappings: {took:.1f} s, {len(patches)} mapping requests for a minimum of "
          f"{math.ceil(sent / 100)}, {len(sb.requests) - len(patches)} reads; faults "
          f"{dict(met)}; rows lost 0; counts {dict(counts)}")

    again = df.recotap.map_ids(client=rtp_for(), journal=journal, on_invalid="skip",
                               progress=False)
    assert Counter(again["recotap_status"])["skipped"] == 4_500 + 100
    assert {a["domain"]: a["externalId"] for a in sb.recotap_accounts()} == expected


def _kill_and_rerun(sb: Sandbox, child: Callable[..., Child], spec: dict[str, Any],
                    journal: Path, stops: tuple[int, ...], rows: int) -> list[int]:
    """Kill a run (SIGKILL) each time the journal holds ``stops[k]`` chunks, then finish."""
    rng = random.Random(9)
    acked = []
    for chunks in stops:
        run = child(**spec)
        run.wait_for(lambda c=chunks: journal_acks(journal) >= c * rows)
        time.sleep(rng.uniform(0, 0.02))  # somewhere in the next request's round trip
        run.kill()
        acked.append(journal_acks(journal))
        settle(sb)
    final = child(**spec).finish()
    assert final["returncode"] == 0, final["stderr"]
    assert final["counts"].get("skipped", 0) == acked[-1]
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    outcomes = [r[0] for r in db.execute("SELECT outcome FROM runs ORDER BY run")]
    db.close()
    # A killed run never got to say how it ended; the journal is consistent all the same.
    assert outcomes == ["running"] * len(stops) + ["completed"]
    return acked


def test_sigkill_mid_upsert_then_rerun_sends_at_most_the_chunk_in_flight_twice(
    sb: Sandbox, child: Callable[..., Child], tmp_path: Path
) -> None:
    sb.set_faults(FaultConfig(latency=0.02))
    journal = tmp_path / "j.db"
    n, rows = 2_000, 50
    spec = {"api": "cora", "key": sb.cora_key, "url": sb.cora_base_url, "rows": rows,
            "n": n, "journal": str(journal)}
    acked = _kill_and_rerun(sb, child, spec, journal, (10, 25), rows)
    settle(sb)
    processed = sum(p.status == 200 for p in bulk_posts(sb)) * rows
    twice = processed - n
    assert 0 <= twice <= 2 * rows  # at most the chunk in flight at each of the two kills
    with Journal(journal) as j:
        acks = j.acks()
    assert len(acks) == n and set(acks["status"]) <= {"created", "unchanged"}
    assert sorted(a["externalId"] for a in sb.cora_accounts()) == [
        f"bf-{i:06d}" for i in range(n)]
    print(f"\nSIGKILL x2 during a {n}-row upsert ({rows} rows/request): journal held "
          f"{acked} rows at the kills; rows sent twice {twice}; rows lost 0")


def test_sigkill_mid_mapping_then_rerun(
    sb: Sandbox, child: Callable[..., Child], tmp_path: Path
) -> None:
    add_companies(sb, 1_500)
    sb.set_faults(FaultConfig(latency=0.02))
    journal = tmp_path / "m.db"
    n, rows, concurrency = 1_500, 50, 2
    spec = {"api": "recotap", "key": sb.recotap_key, "url": sb.recotap_base_url,
            "rows": rows, "n": n, "journal": str(journal), "overwrite": True,
            "concurrency": concurrency}
    acked = _kill_and_rerun(sb, child, spec, journal, (8,), rows)
    settle(sb)
    processed = sum(p.status == 200 for p in map_patches(sb)) * rows
    twice = processed - n
    assert 0 <= twice <= concurrency * rows  # the requests in flight at the kill
    stored = {a["domain"]: a["externalId"] for a in sb.recotap_accounts()}
    assert all(stored[f"company-{i:06d}.com"] == f"crm-{i:06d}" for i in range(n))
    print(f"\nSIGKILL during {n} mappings (concurrency {concurrency}): journal held {acked} "
          f"at the kill; mappings sent twice {twice}; lost 0")
