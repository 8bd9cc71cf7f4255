"""The benchmark runs end to end with tiny sizes (its figures are not judged here)."""

from __future__ import annotations

import re

import pytest

from tests.benchmarks.__main__ import main

# One line per measure, in this order, each naming its size.
MEASURE_LINES = (
    "validate + serialise 2,000 rows",
    "4 requests, 0.3 s window, 10 ms jitter after the body",
    "300 Recotap mappings, 10 ms latency",
    "peak memory sending 5,000 rows (sandbox, window 0, dry run)",
    "re-sync 2,000 rows, 1% changed, journal",
    "re-sync 2,000 rows held by the tenant, 5% changed, no journal",
    "preview 2,000 rows, 10 ms latency: diff()",
    "match 2,000 CRM rows to 1,000 accounts",
    "2 processes on one key through PostgreSQL, 0.3 s window",
)
NUMBER = re.compile(r"\d+(\.\d+)?")


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--quick"])
    out = capsys.readouterr().out
    assert out.startswith("machine: ")
    assert "pandas " in out.splitlines()[0] and "pyarrow " in out.splitlines()[0]
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert cells(lines[0]) == ["measure", "ours", "baseline (same run)", "ratio", "target"]
    assert set(cells(lines[1])[0]) == {"-"}
    rows = [cells(line) for line in lines[2:]]
    assert [r[0] for r in rows] == list(MEASURE_LINES)
    for row in rows:
        assert len(row) == 5 and all(row), row
        ratio = NUMBER.match(row[3])
        assert ratio is not None, row
        assert float(ratio.group()) >= 0


def test_benchmark_only_runs_the_named_measures(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--quick", "--only", "resync", "--only", "serialise"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [cells(line)[0] for line in lines[2:]] == [MEASURE_LINES[0], MEASURE_LINES[4]]
