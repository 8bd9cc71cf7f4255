"""Side-by-side measures, each with its baseline in the same run: ``python -m tests.benchmarks``.

Not part of the pass/fail run: ``tests/test_benchmarks_smoke.py`` runs it with tiny sizes.
Options: ``--quick`` (tiny sizes), ``--only NAME`` (repeatable).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import recocora
from recocora._transport import RetryPolicy
from recocora.cora.upsert import plan_upsert
from recocora.sandbox import FaultConfig, Sandbox

E164 = re.compile(r"^\+[1-9]\d{0,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def accounts_frame(n: int, blanks: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Realistic columns: ids, phones, names, nested person/address/metadata, 5% blanks."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    pick = lambda values: rng.choice(np.array(values, dtype=object), n)  # noqa: E731
    df = pd.DataFrame({
        "externalId": [f"ACC-{i:08d}" for i in ids],
        "portfolioId": pick(["P1", "P2", "P3"]),
        "phoneNumber": [f"+1555{x:07d}" for x in rng.integers(0, 10**7, n)],
        "status": pick(["ACTIVE", "PAUSED"]),
        "emailAddress": [f"user{i}@example.com" for i in ids],
        "person.name.first": pick(["Ada", "Grace", "Alan", "Edsger", "Barbara"]),
        "person.name.last": pick(["Lovelace", "Hopper", "Turing", "Liskov"]),
        "person.birthdate": (np.datetime64("1950-01-01") + rng.integers(0, 20000, n)).astype(str),
        "address.city": pick(["Austin", "Boston", "Denver", "Miami"]),
        "currentBalance": np.round(rng.random(n) * 5000, 2),
        "metadata.filenumber": [f"F{i}" for i in ids],
        "metadata.region": pick(["north", "south"]),
    })
    for col in df.columns[1:]:
        df.loc[rng.random(n) < blanks, col] = np.nan
    return df


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


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


Row = tuple[str, str, str, str, str]


def bench_serialise(n: int) -> Row:
    df = accounts_frame(n)
    ours = timed(lambda: ours_validate_serialise(df))
    naive = timed(lambda: naive_validate_serialise(df))
    return (f"validate + serialise {n:,} rows", f"{ours:.2f} s", f"{naive:.2f} s (naive loop)",
            f"{naive / ours:.1f}x faster", "≥ 4x")


def bench_window(chunks: int, window: float, latency: float) -> Row:
    with Sandbox(cora_window=window) as sb:
        sb.set_faults(FaultConfig(latency=latency, scope="cora"))
        client = recocora.CoraClient(sb.cora_key, sb.cora_base_url, min_interval=window)
        df = accounts_frame(chunks * client.MAX_ROWS)
        wall = timed(lambda: df.cora.upsert(client=client, progress=False))
        n429 = sum(r.status == 429 for r in sb.requests)
        client.close()
    floor = (chunks - 1) * window
    return (f"{chunks} chunks, {window} s window, {latency * 1000:.0f} ms latency",
            f"{wall:.2f} s, {n429} x 429", f"{floor:.2f} s (floor)", f"{wall / floor:.3f}x floor",
            "≤ 1.02x, 0 x 429")


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--only", action="append", choices=["serialise", "window", "recotap"])
    args = parser.parse_args(argv)
    q = args.quick
    runs: dict[str, Callable[[], Row]] = {
        "serialise": lambda: bench_serialise(2_000 if q else 1_000_000),
        "window": lambda: bench_window(3 if q else 20, 0.1 if q else 0.5, 0.02),
        "recotap": lambda: bench_recotap(300 if q else 10_000, 0.01 if q else 0.05),
    }
    rows = [fn() for name, fn in runs.items() if not args.only or name in args.only]
    head = ("measure", "ours", "baseline (same run)", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(5)]
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, pandas {pd.__version__}")
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
