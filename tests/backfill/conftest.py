"""Fixtures for long-run tests: fast clients, a private cache directory, child processes.

Child processes run :mod:`tests.backfill.child` against the session's sandbox, so a test can
kill or interrupt a real run and look at the journal and the server afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from recocora import CoraClient, RecotapClient
from recocora._transport import RetryPolicy

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
# Tiny backoff keeps fault tests fast; the retry budget is the production one.
FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default journals and shared rate-limit files go to a folder of the test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RECOCORA_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def cora_for(cora_client_for: Callable[..., CoraClient]) -> Callable[..., CoraClient]:
    """Cora clients on the sandbox; ``rows=`` shrinks the chunk size."""
    return cora_client_for


@pytest.fixture
def rtp_for(rtp_client_for: Callable[..., RecotapClient]) -> Callable[..., RecotapClient]:
    """Recotap clients on the sandbox."""
    return rtp_client_for


def accounts(n: int, start: int = 0, **extra: Any) -> pd.DataFrame:
    """``n`` creatable Cora accounts ``bf-000000``…, index ``r0``…"""
    rng = range(start, start + n)
    return pd.DataFrame(
        {
            "externalId": [f"bf-{i:06d}" for i in rng],
            "portfolioId": "pf_backfill",
            "phoneNumber": [f"+1555{i % 10_000_000:07d}" for i in rng],
            "metadata.filenumber": [f"F-{i}" for i in rng],
            "clientStatus": "open",
            **extra,
        },
        index=[f"r{i}" for i in rng],
    )


def mappings(n: int, start: int = 0) -> pd.DataFrame:
    """``n`` Recotap mappings ``https://www.company-000000.com/`` → ``crm-000000``."""
    rng = range(start, start + n)
    return pd.DataFrame(
        {"domain": [f"https://www.company-{i:06d}.com/" for i in rng],
         "externalId": [f"crm-{i:06d}" for i in rng]},
        index=[f"m{i}" for i in rng],
    )


def add_companies(sb: Sandbox, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        sb.add_recotap_account(domain=f"company-{i:06d}.com", name=f"Company {i}")


def bulk_posts(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method == "POST" and r.path.endswith("/bulk-upsert")]


def map_patches(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method == "PATCH" and r.path.endswith("/external-ids")]


def settle(sb: Sandbox, quiet: float = 0.3, limit: float = 10.0) -> None:
    """Wait until the sandbox's log has not grown for ``quiet`` seconds: a killed client's
    last request may still be answered (and logged) after the client is gone."""
    deadline = time.monotonic() + limit
    seen = -1
    while time.monotonic() < deadline:
        now = len(sb.requests)
        if now == seen:
            return
        seen = now
        time.sleep(quiet)


def journal_acks(path: Path) -> int:
    """Rows in a journal, read the way another process would (0 before it exists)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM acks").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the child has not created the tables yet
    finally:
        db.close()


class Child:
    """A run of :mod:`tests.backfill.child` (or ``module``, which runs it) in its own
    process."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str],
                 module: str = "tests.backfill.child") -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(spec)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_for(self, ready: Callable[[], bool], limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while not ready():
            assert self.proc.poll() is None, self.finish()
            assert time.monotonic() < deadline, "the child never got there"
            time.sleep(0.002)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, limit: float = 60.0) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=limit)
        self.stderr = err
        lines = [line for line in out.splitlines() if line.startswith("{")]
        report: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        report["returncode"] = self.proc.returncode
        report["stderr"] = err
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)


@pytest.fixture
def child(cache_dir: Path) -> Iterator[Callable[..., Child]]:
    """Start child runs; any still running at the end are killed."""
    started: list[Child] = []
    env = {**os.environ, "RECOCORA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}

    def start(**spec: Any) -> Child:
        run = Child(spec, env)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.kill()
