"""The benchmark runs end to end with tiny sizes (its figures are not judged here)."""

from __future__ import annotations

import pytest

from tests.benchmarks.__main__ import main


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--quick"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(lines) == 2 + 3  # header, rule, one line per measure
    assert "validate + serialise 2,000 rows" in out
    assert "3 chunks, 0.1 s window" in out
    assert "300 Recotap mappings" in out
