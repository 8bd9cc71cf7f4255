"""Fixtures for background runs: a cache directory of the test's own (so the registry and the
run folders are the test's), fast Cora clients, and a helper that waits for a run's state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import recocora

RUN_LIMIT_S = 120.0


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "cache"
    monkeypatch.setenv("RECOCORA_CACHE_DIR", str(folder))
    yield folder
    # Any worker a test left behind is stopped, and has stopped, before the next test starts:
    # a request of its landing after the sandbox's reset would be counted in that test.
    for run_id in recocora.runs()["run_id"] if (folder / "runs").exists() else []:
        run = recocora.attach(run_id)
        if not run.done:
            run.cancel()
            until(lambda run=run: run.done, what=f"{run.id} stopping")


def until(check: Callable[[], Any], limit: float = RUN_LIMIT_S, what: str = "") -> Any:
    """Poll ``check`` until it returns something true; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def bulk_posts(sb: Any) -> list[Any]:
    return [r for r in sb.requests if r.method == "POST" and r.path.endswith("/bulk-upsert")]
