"""Machines sharing one Cora key through a PostgreSQL state database: the rows per second N
processes reach together against the key's limit, and the 429s they draw.

Each process is a machine of its own (a cache folder of its own, so no slot file is shared):
a :mod:`tests.backfill.child` run against one sandbox, all started together once imported.
The sandbox stamps each request as it arrives; the share of the key's limit is the accepted
requests' count over the time from the first to the last, against one per window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recocora.sandbox import Sandbox

from ..pgserver import PostgresServer
from .support import check

Row = tuple[str, str, str, str, str]
ROOT = Path(__file__).resolve().parents[2]
WINDOW = 0.3
ROWS = 100  # rows per request: small bodies, the figure is the pacing


def machines(sb: Sandbox, n: int, requests: int, state: str | None, folder: Path
             ) -> list[dict[str, Any]]:
    """``n`` runs of ``requests`` requests each on the sandbox's key, each in a process with
    a cache folder of its own, started together; their reports."""
    go = folder / "go"
    procs = []
    for i in range(n):
        spec = {"api": "cora", "key": sb.cora_key, "url": sb.cora_base_url,
                "interval": WINDOW, "rows": ROWS, "n": ROWS * requests, "start": i * 100_000,
                "go": str(go), "state": state}
        env = {**os.environ, "RECOCORA_CACHE_DIR": str(folder / f"machine{i}"),
               "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.backfill.child", json.dumps(spec)], cwd=ROOT,
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    try:
        deadline = time.monotonic() + 300
        while not all(Path(f"{go}.ready.{i * 100_000}").exists() for i in range(n)):
            check(all(p.poll() is None for p in procs) and time.monotonic() < deadline,
                  "a process ended (or hung) before it was ready")
            time.sleep(0.01)
        go.touch()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            check(proc.returncode == 0 and bool(lines),
                  f"a process failed (exit {proc.returncode}): {err[-2000:]}")
            reports.append(json.loads(lines[-1]))
        return reports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def key_share(n: int, requests: int, state: str | None) -> tuple[float, int]:
    """The share of the key's limit ``n`` machines reach together, and their 429s."""
    with Sandbox(cora_window=WINDOW) as sb, \
            tempfile.TemporaryDirectory(prefix="recocora-machines-") as tmp:
        reports = machines(sb, n, requests, state, Path(tmp))
        posts = [r for r in sb.requests if r.method == "POST"]
        stored = len(sb.cora_accounts())
    accepted = sorted(r.arrived for r in posts if r.status == 200)
    check(stored == n * requests * ROWS and len(accepted) == n * requests
          and all(r["counts"] == {"created": requests * ROWS} for r in reports),
          f"{n} x {requests} requests should store every row once: {stored:,} rows stored, "
          f"{len(accepted)} requests accepted")
    share = (len(accepted) - 1) * WINDOW / (accepted[-1] - accepted[0])
    return share, sum(r.status == 429 for r in posts)


def bench_shared_key(counts: tuple[int, ...], requests: int) -> Row:
    """``counts`` processes (each run in turn) sharing ``requests`` requests in all, through
    PostgreSQL; the baseline is the most processes without a state database."""
    with PostgresServer.running() as server:
        ours = {n: key_share(n, requests // n, server.new_database()) for n in counts}
    most = max(counts)
    alone_share, alone_429 = key_share(most, requests // most, None)
    limit = ROWS / WINDOW
    worst = min(share for share, _ in ours.values())
    return (f"{'/'.join(map(str, counts))} processes on one key through PostgreSQL, "
            f"{WINDOW:g} s window",
            "; ".join(f"{n}: {share:.1%} of the key's {limit:.0f} rows/s, {n429} x 429"
                      for n, (share, n429) in ours.items()),
            f"{most} without a state database: {alone_share:.1%}, {alone_429} x 429",
            f"{worst:.3f}x the key's limit at worst", "≥ 0.95x, 0 x 429")
