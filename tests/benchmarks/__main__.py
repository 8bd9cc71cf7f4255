"""Side-by-side measures, each with its baseline in the same run: ``python -m tests.benchmarks``.

Prints the machine, then one markdown table (paste it into the README as is): measure, our
figure, the baseline's figure in the same run, the ratio, the target. Each measure runs in a
fresh ``python -m tests.benchmarks --measure NAME --json`` process, so that one measure's
garbage, collector state and peak memory do not reach the next one.

Not part of the pass/fail run: ``tests/test_benchmarks_smoke.py`` runs it with tiny sizes.
Options: ``--quick`` (tiny sizes), ``--only NAME`` (repeatable), ``--measure NAME`` (run one
measure in this process; with ``--json`` print its row as JSON, which is what the parent reads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .measures import MEASURES, Row
from .support import machine_line

HEAD: Row = ("measure", "ours", "baseline (same run)", "ratio", "target")
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 3600
SETTLE_S = 5.0


def run_here(name: str, quick: bool) -> Row:
    measure = MEASURES[name]
    return (measure.quick if quick else measure.full)()


def run_fresh(name: str, quick: bool) -> tuple[Row | None, str]:
    """One measure in a new interpreter: its row, or None and what went wrong."""
    cmd = [sys.executable, "-m", "tests.benchmarks", "--measure", name, "--json"]
    if quick:
        cmd.append("--quick")
    try:
        # Its rate-limit slot files and default journals go to a folder thrown away after;
        # test-only packages are hidden (see tests/benchmarks/__init__.py).
        with tempfile.TemporaryDirectory(prefix="recocora-bench-") as cache:
            env = {**os.environ, "RECOCORA_CACHE_DIR": cache, "RECOCORA_BENCH_AS_INSTALLED": "1"}
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
                                  env=env)
    except subprocess.TimeoutExpired:
        return None, f"{name}: no answer within {TIMEOUT_S} s"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return None, f"{name}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
    row = json.loads(lines[-1])["row"]
    return (row[0], row[1], row[2], row[3], row[4]), ""


def table(rows: Sequence[Row]) -> list[str]:
    widths = [max(len(r[i]) for r in [HEAD, *rows]) for i in range(5)]
    return ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in [HEAD, tuple("-" * w for w in widths), *rows]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--only", action="append", choices=list(MEASURES),
                        help="run just this measure (repeatable)")
    parser.add_argument("--measure", choices=list(MEASURES),
                        help="run one measure in this process")
    parser.add_argument("--json", action="store_true",
                        help="with --measure: print the row as one line of JSON")
    args = parser.parse_args(argv)
    if args.measure:
        row = run_here(args.measure, args.quick)
        if args.json:
            print(json.dumps({"measure": args.measure, "row": list(row)}))
        else:
            print("\n".join(table([row])))
        return
    rows: list[Row] = []
    errors: list[str] = []
    for name in MEASURES:
        if args.only and name not in args.only:
            continue
        if rows and not args.quick:
            # A measure that held gigabytes leaves the VM reclaiming them for a few seconds,
            # with stalls of 10-20 ms that land inside the window measure's spacing.
            time.sleep(SETTLE_S)
        fresh, error = run_fresh(name, args.quick)
        if fresh is None:
            errors.append(error)
        rows.append(fresh or (name, "error", "-", "-", "-"))
    print(machine_line())
    print()
    print("\n".join(table(rows)))
    if errors:
        print("\n\n".join(errors), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
