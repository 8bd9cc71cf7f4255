"""The measures. Each returns one table row: measure, ours, baseline (same run), ratio,
target; the ratio cell starts with a number."""

from __future__ import annotations

import itertools
import json
import math
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz import process as rf_process

import recocora
from recocora._ratelimit import SpacingLimiter
from recocora._transport import RetryPolicy
from recocora.cora._upsert import plan_upsert
from recocora.sandbox import FaultConfig, RateWindow, Sandbox

from ..recotap.matchdata import make_fixture
from .shared_key import bench_shared_key
from .support import (
    PeakRss,
    accounts_frame,
    change_balances,
    check,
    sandbox_process,
    timed,
)

Row = tuple[str, str, str, str, str]
MB = 1024**2
BULK_PATH = "/accounts/bulk-upsert"
CORA_WINDOW = 20.0

E164 = re.compile(r"^\+[1-9]\d{0,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def status_counts(res: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in res["cora_status"].value_counts().items()}


# -- validate + serialise -------------------------------------------------------------------

def naive_validate_serialise(df: pd.DataFrame) -> int:
    """What a hand-written loop does: to_dict, check and nest each row, json.dumps."""
    records = df.to_dict("records")
    rows: list[dict[str, Any]] = []
    errors = 0
    seen: set[Any] = set()
    for r in records:
        row: dict[str, Any] = {}
        for k, v in r.items():
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                continue
            if isinstance(v, np.generic):
                v = v.item()
            if k == "externalId":
                errors += (not isinstance(v, str) or not v or v in seen)
                seen.add(v)
            elif k == "phoneNumber":
                errors += not (isinstance(v, str) and E164.match(v))
            elif k == "emailAddress":
                errors += not (isinstance(v, str) and EMAIL.match(v))
            elif k == "person.birthdate":
                errors += not (isinstance(v, str) and DATE.match(v))
            elif k == "currentBalance":
                errors += not (isinstance(v, (int, float)) and math.isfinite(v))
            *parents, leaf = k.split(".")
            d = row
            for p in parents:
                d = d.setdefault(p, {})
            d[leaf] = v
        rows.append(row)
    size = 0
    for s in range(0, len(rows), 500):
        size += len(json.dumps({"accounts": rows[s : s + 500], "dryRun": False}).encode())
    return size


def ours_validate_serialise(df: pd.DataFrame) -> int:
    plan = plan_upsert(df)
    return sum(len(b) for _, _, b in plan.bodies(dry_run=False, include_changes=False))


def bench_serialise(n: int) -> Row:
    df = accounts_frame(n)
    ours = timed(lambda: ours_validate_serialise(df))
    naive = timed(lambda: naive_validate_serialise(df))
    return (f"validate + serialise {n:,} rows", f"{ours:.2f} s", f"{naive:.2f} s (naive loop)",
            f"{naive / ours:.1f}x faster", "≥ 4x")


# -- pacing at the rate limit ---------------------------------------------------------------

def pacing_run(requests: int, rate: RateWindow, room: float | None = None
               ) -> tuple[int, float, float]:
    """429s, the mean and the smallest spacing of two accepted requests' bookings beyond
    the window (seconds), for an upsert of ``requests`` chunks on a fresh sandbox and key.
    ``room`` replaces the limiter's :attr:`~SpacingLimiter.ROOM` (the baseline)."""
    with Sandbox(cora_window=rate) as sb:
        client = recocora.CoraClient(sb.cora_key, sb.cora_base_url, min_interval=rate.seconds)
        client.MAX_ROWS = 50  # small bodies: the figure is the pacing, not the upsert
        if room is not None:
            client.limiter.ROOM = client.limiter.ROOM_SHARE = room
        df = accounts_frame(requests * client.MAX_ROWS)
        df.cora.upsert(client=client, progress=False)
        posts = [r for r in sb.requests if r.method == "POST"]
        client.close()
    n429 = sum(r.status == 429 for r in posts)
    check(len(posts) == requests + n429,
          f"{requests} chunks should take {requests} POSTs, took {len(posts)}")
    arrived = sorted(r.arrived for r in posts if r.status != 429)
    gaps = [b - a - rate.seconds for a, b in itertools.pairwise(arrived)]
    return n429, sum(gaps) / len(gaps), min(gaps)


def bench_pacing(requests: int, window: float, jitter: float) -> Row:
    rate = RateWindow(window, stamp="body", jitter=jitter, seed=7)
    n429, mean, closest = pacing_run(requests, rate)
    # The same run with the room before it was sized for real networks (0.1% + 2 ms, 3 ms
    # at a 1 s window): what a client tuned to a loopback sandbox draws.
    old429, old_mean, _ = pacing_run(requests, rate, room=0.001 * window + 0.002)
    projected = (CORA_WINDOW + mean) / CORA_WINDOW
    return (f"{requests} requests, {window:g} s window, {jitter * 1000:.0f} ms jitter after "
            f"the body",
            f"{n429} x 429, {mean * 1000:.0f} ms a gap above the window (closest "
            f"{closest * 1000:+.0f} ms)",
            f"{old429} x 429, {old_mean * 1000:.0f} ms a gap (3 ms room)",
            f"{projected:.4f}x floor at {CORA_WINDOW:g} s", "0 x 429, ≤ 100 ms a gap")


# -- Recotap concurrency --------------------------------------------------------------------

def bench_recotap(n: int, latency: float) -> Row:
    walls = {}
    for conc in (1, 4):
        with Sandbox(cora_window=0) as sb:
            for i in range(n):
                sb.add_recotap_account(domain=f"bench{i:06d}.com", name=f"Bench {i}")
            sb.set_faults(FaultConfig(latency=latency, scope="recotap"))
            client = recocora.RecotapClient(sb.recotap_key, sb.recotap_base_url,
                                            max_concurrency=conc, retry=RetryPolicy())
            df = pd.DataFrame({"domain": [f"bench{i:06d}.com" for i in range(n)],
                               "externalId": [f"crm-{i}" for i in range(n)]})
            walls[conc] = timed(lambda c=client, d=df: d.recotap.map_ids(client=c, progress=False))
            client.close()
    return (f"{n:,} Recotap mappings, {latency * 1000:.0f} ms latency",
            f"{walls[4]:.2f} s (4 threads)",
            f"{walls[1]:.2f} s (1 thread)", f"{walls[1] / walls[4]:.1f}x faster", "≥ 3x")


# -- peak memory of a send ------------------------------------------------------------------

def bench_memory(n: int) -> Row:
    df = accounts_frame(n, creatable=True)
    frame_bytes = int(df.memory_usage(deep=True).sum())
    with sandbox_process(cora_window=0) as (key, url):
        client = recocora.CoraClient(key, url, min_interval=0)
        # Imports, the connection pool and the first request's setup are not the send's cost.
        df.head(10).cora.upsert(client=client, dry_run=True, progress=False)
        with PeakRss() as mem:
            res = df.cora.upsert(client=client, dry_run=True, progress=False)
        client.close()
    counts = status_counts(res)
    check(len(res) == n and counts == {"created": n},
          f"a dry run of {n:,} new rows should answer all 'created', got {counts}")
    hwm = "n/a" if mem.hwm is None else f"{(mem.hwm - mem.start) / MB:,.0f}"
    return (f"peak memory sending {n:,} rows (sandbox, window 0, dry run)",
            f"{mem.extra / MB:,.0f} MB above start (1 ms samples "
            f"{(mem.sampled - mem.start) / MB:,.0f}, VmHWM {hwm})",
            f"{frame_bytes / MB:,.0f} MB (frame, memory_usage deep)",
            f"{mem.extra / frame_bytes:.2f}x frame", "≤ 1.5x")


# -- incremental re-sync with the journal ---------------------------------------------------

@dataclass
class Sent:
    rows: int
    requests: int
    posts: int
    wall: float
    counts: dict[str, int]


def send(sb: Sandbox, df: pd.DataFrame, client: recocora.CoraClient,
         **kwargs: Any) -> Sent:
    before = len(sb.requests)
    t = time.perf_counter()
    res = df.cora.upsert(client=client, progress=False, **kwargs)
    wall = time.perf_counter() - t
    posts = sum(r.method == "POST" and r.path.endswith(BULK_PATH)
                for r in sb.requests[before:])
    sent = Sent(int(res.attrs["rows_sent"]), int(res.attrs["requests"]), posts, wall,
                status_counts(res))
    # The sandbox's own log is the independent count: one POST per 500 rows sent.
    check(sent.posts == sent.requests == math.ceil(sent.rows / client.MAX_ROWS),
          f"{sent.rows:,} rows reported sent in {sent.requests} requests, but the sandbox saw "
          f"{sent.posts} bulk POSTs")
    return sent


def bench_resync(n: int) -> Row:
    df = accounts_frame(n, creatable=True)
    changed = change_balances(df, every=100)
    n_changed = len(df.index[::100])
    with Sandbox(cora_window=0) as sb, tempfile.TemporaryDirectory() as tmp:
        client = recocora.CoraClient(sb.cora_key, sb.cora_base_url, min_interval=0)
        journal = Path(tmp) / "resync.db"
        first = send(sb, df, client, journal=journal)
        check(first.counts == {"created": n}, f"the first run should create all: {first.counts}")
        again = send(sb, changed, client, journal=journal)
        check(again.counts == {"updated": n_changed, "skipped": n - n_changed},
              f"the re-sync should update {n_changed:,} rows and skip the rest: {again.counts}")
        full = send(sb, changed, client, journal=journal, force=True)
        check(full.rows == n, f"force=True should send all {n:,} rows, sent {full.rows:,}")
        client.close()
    pct = 100 * again.rows / n
    return (f"re-sync {n:,} rows, 1% changed, journal",
            f"{plural(again.rows, 'row')} ({pct:.2f}%), {plural(again.posts, 'request')}, "
            f"{again.wall:.2f} s",
            f"{plural(full.rows, 'row')}, {plural(full.posts, 'request')}, {full.wall:.2f} s "
            "(full re-send)",
            f"{pct:.2f}% of rows", "≤ 1.2% of rows")


def bench_skip_unchanged(n: int) -> Row:
    """A tenant that already holds every row, 5% of them changed since, no journal (a lost
    journal, another machine's import): ``skip_unchanged=True`` against a plain upsert."""
    df = accounts_frame(n, creatable=True)
    changed = change_balances(df, every=20)
    n_changed = len(df.index[::20])
    with Sandbox(cora_window=0) as sb:
        client = recocora.CoraClient(sb.cora_key, sb.cora_base_url, min_interval=0)
        first = send(sb, df, client)
        check(first.counts == {"created": n}, f"the first run should create all: {first.counts}")
        ours = send(sb, changed, client, skip_unchanged=True)
        check(ours.counts == {"updated": n_changed, "skipped": n - n_changed},
              f"skip_unchanged should update {n_changed:,} rows and skip the rest: "
              f"{ours.counts}")
        plain = send(sb, changed, client)
        check(plain.rows == n, f"a plain upsert should send all {n:,} rows, sent {plain.rows:,}")
        client.close()
    gap = CORA_WINDOW + SpacingLimiter.ROOM  # one slot per request at Cora's window
    projected = [max(0, s.posts - 1) * gap for s in (ours, plain)]
    return (f"re-sync {n:,} rows held by the tenant, 5% changed, no journal",
            f"{plural(ours.rows, 'row')} ({100 * ours.rows / n:.1f}%), "
            f"{plural(ours.posts, 'slot')}, {ours.wall:.2f} s here; "
            f"{projected[0] / 60:,.0f} min at {CORA_WINDOW:g} s",
            f"{plural(plain.rows, 'row')}, {plural(plain.posts, 'slot')}; "
            f"{projected[1] / 60:,.0f} min at {CORA_WINDOW:g} s (plain upsert)",
            f"{plain.posts / max(1, ours.posts):.0f}x fewer slots",
            "≤ 5% of rows, ≥ 15x fewer slots")


# -- preview without spending bulk slots -----------------------------------------------------

def bench_diff(n: int, latency: float) -> Row:
    df = accounts_frame(n, creatable=True)
    stored = n - n // 20  # the last 5% are new accounts
    frame = change_balances(df, every=100, limit=stored)
    n_changed = len(df.index[:stored][::100])
    with Sandbox(cora_window=0) as sb:
        client = recocora.CoraClient(sb.cora_key, sb.cora_base_url, min_interval=0)
        seeded = send(sb, df.iloc[:stored], client)
        check(seeded.counts == {"created": stored}, f"seeding failed: {seeded.counts}")
        sb.set_faults(FaultConfig(latency=latency, scope="cora"))
        before = len(sb.requests)
        t = time.perf_counter()
        res = frame.cora.diff(client=client, progress=False)
        wall = time.perf_counter() - t
        seen = sb.requests[before:]
        client.close()
    gets = sum(r.method == "GET" for r in seen)
    check(len(seen) == gets == res.attrs["requests"],
          f"diff() should only GET: {sorted({(r.method, r.path) for r in seen})}")
    expected = {"created": n - stored, "updated": n_changed, "unchanged": stored - n_changed}
    check(status_counts(res) == expected, f"diff() counts {status_counts(res)} != {expected}")
    slots = math.ceil(n / recocora.CoraClient.MAX_ROWS)
    baseline = (slots - 1) * CORA_WINDOW
    return (f"preview {n:,} rows, {latency * 1000:.0f} ms latency: diff()",
            f"{wall:.2f} s, {gets} GETs, 0 bulk",
            f"{baseline:,.0f} s (dryRun, {slots} slots at {CORA_WINDOW:g} s, computed)",
            f"{baseline / wall:.0f}x faster", "< 60 s")


# -- matching CRM rows to accounts -----------------------------------------------------------

def match_data(n_crm: int, n_accounts: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n_crm`` labelled, messy CRM rows and ``n_accounts`` Recotap accounts (the rest of the
    fixture's companies become CRM rows with no account)."""
    fx = make_fixture(n_companies=n_crm, seed=11)
    crm = fx.crm.iloc[:n_crm]
    accounts = fx.accounts.iloc[:n_accounts]
    crm = crm.assign(truth=crm["truth"].where(crm["truth"].isin(accounts["domain"])))
    return crm, accounts


def naive_match(crm: pd.DataFrame, accounts: pd.DataFrame) -> int:
    """What a notebook loop does: the best-scoring account name for each row, one at a time."""
    names = accounts["name"].astype(str).tolist()
    found = 0
    for company in crm["company"].fillna("").astype(str):
        best = rf_process.extractOne(company, names, scorer=fuzz.WRatio, score_cutoff=85)
        found += best is not None
    return found


def bench_match(n_crm: int, n_accounts: int, sample: int) -> Row:
    crm, accounts = match_data(n_crm, n_accounts)
    args = {"name": "company", "domain": ["website", "website2"], "email": "email"}
    # The Public Suffix List is parsed once per process, on the first match: not the run's cost.
    recocora.match_accounts(crm.head(10), accounts.head(10), **args)
    with PeakRss() as mem:
        t, cpu = time.perf_counter(), time.process_time()
        res = recocora.match_accounts(crm, accounts, **args)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    auto = res["match_status"] == "auto"
    right = (res.loc[auto, "match_domain"].astype(str)
             == crm.loc[auto, "truth"].astype(str)).mean()
    check(bool(auto.any()), "no row was matched automatically")
    part = crm.sample(n=min(sample, len(crm)), random_state=1)
    naive = timed(lambda: naive_match(part, accounts)) * len(crm) / len(part)
    return (f"match {n_crm:,} CRM rows to {n_accounts:,} accounts",
            f"{wall:.1f} s (CPU {cpu:.1f} s), {mem.extra / MB:,.0f} MB peak, "
            f"{int(auto.sum()):,} auto "
            f"({right:.2%} right)",
            f"{naive:,.0f} s (extractOne loop, {len(part):,}-row sample extrapolated)",
            f"{naive / wall:.0f}x faster", "< 30 s, < 2 GB")


@dataclass(frozen=True)
class Measure:
    full: Callable[[], Row]
    quick: Callable[[], Row]


MEASURES: dict[str, Measure] = {
    "serialise": Measure(lambda: bench_serialise(1_000_000), lambda: bench_serialise(2_000)),
    "pacing": Measure(lambda: bench_pacing(16, 1.0, 0.04), lambda: bench_pacing(4, 0.3, 0.01)),
    "recotap": Measure(lambda: bench_recotap(10_000, 0.05), lambda: bench_recotap(300, 0.01)),
    "memory": Measure(lambda: bench_memory(1_000_000), lambda: bench_memory(5_000)),
    "resync": Measure(lambda: bench_resync(100_000), lambda: bench_resync(2_000)),
    "skip": Measure(lambda: bench_skip_unchanged(100_000),
                    lambda: bench_skip_unchanged(2_000)),
    "diff": Measure(lambda: bench_diff(100_000, 0.05), lambda: bench_diff(2_000, 0.01)),
    "match": Measure(lambda: bench_match(100_000, 50_000, 200),
                     lambda: bench_match(2_000, 1_000, 20)),
    "shared": Measure(lambda: bench_shared_key((2, 4, 8), 96),
                      lambda: bench_shared_key((2,), 4)),
}
