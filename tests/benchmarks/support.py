"""What the measures share: the test frame, a stopwatch, a peak-memory probe, a sandbox in a
process of its own, and the machine line printed above the table."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

# Columns Cora requires when it creates an account: kept free of blanks in a creatable frame so
# that every row of it is accepted and a figure is of rows really processed.
REQUIRED_ON_CREATE = frozenset({"portfolioId", "phoneNumber", "metadata.filenumber"})


def accounts_frame(n: int, blanks: float = 0.05, seed: int = 0,
                   creatable: bool = False) -> pd.DataFrame:
    """Realistic columns: ids, phones, names, nested person/address/metadata, 5% blanks.

    With ``creatable=True`` the columns Cora requires on create have no blanks (the other
    columns keep theirs), so Cora creates every row instead of failing some of them.
    """
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
        # Drawn for every column either way, so the other columns' blanks do not move.
        blank = rng.random(n) < blanks
        if not (creatable and col in REQUIRED_ON_CREATE):
            df.loc[blank, col] = np.nan
    return df


def change_balances(df: pd.DataFrame, every: int, limit: int | None = None) -> pd.DataFrame:
    """A copy with ``currentBalance`` set to a value the frame never holds on every
    ``every``-th row (among the first ``limit`` rows when given)."""
    out = df.copy()
    rows = out.index[: len(out) if limit is None else limit][::every]
    out.loc[rows, "currentBalance"] = 123456.78
    return out


class BenchmarkError(RuntimeError):
    """A run whose outcome is not what the measure assumes, so its figure would mean nothing."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise BenchmarkError(what)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# -- memory -------------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def _status_kb(field: str) -> int | None:
    value = _proc_field("/proc/self/status", field)  # e.g. "1234 kB"
    return int(value.split()[0]) if value else None


def _reset_high_water_mark() -> bool:
    # Linux >= 4.0: writing 5 to clear_refs sets VmHWM back to the current RSS, which makes
    # VmHWM the exact peak of the block, transient spikes between two samples included.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so that the memory a block needs
    shows as RSS growth instead of reusing what building its input left behind."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


@dataclass
class PeakRss:
    """Peak resident memory of this process above its level at the start of a ``with`` block.

    Two readings: ``/proc/self/statm`` sampled by a thread every ``interval`` seconds (it
    only runs when the main thread yields the GIL, so a short spike can fall between
    samples), and the kernel's own high-water mark (``VmHWM``, reset at the start), which
    misses nothing. ``extra`` is the larger of the two.
    """

    interval: float = 0.001
    start: int = 0
    sampled: int = 0
    hwm: int | None = None

    def __enter__(self) -> PeakRss:
        release_free_memory()
        self._stop = threading.Event()
        self._hwm_ok = _reset_high_water_mark()
        self.start = rss_bytes()
        self.sampled = self.start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.sampled = max(self.sampled, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sampled = max(self.sampled, rss_bytes())
        hwm_kb = _status_kb("VmHWM") if self._hwm_ok else None
        self.hwm = hwm_kb * 1024 if hwm_kb is not None else None

    @property
    def extra(self) -> int:
        return max(self.sampled, self.hwm or 0) - self.start


# -- a sandbox in its own process ---------------------------------------------------------

@contextlib.contextmanager
def sandbox_process(*, cora_window: float = 0.0) -> Iterator[tuple[str, str]]:
    """A ``recocora sandbox`` in a child process (so its memory is not this process's);
    yields the Cora key and base URL, and stops the child on exit."""
    key = f"cora_org_bench.{secrets.token_hex(16)}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "recocora", "sandbox", "--port", "0", "--cora-key", key,
         "--cora-window", f"{cora_window:g}", "--seed", "none"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )
    try:
        # Its first line, printed once it listens: "recocora sandbox serving on <url> ...".
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        if "on" not in first:
            raise RuntimeError(f"the sandbox did not start (exit {proc.wait()})")
        yield key, first[first.index("on") + 1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the machine line -----------------------------------------------------------------------

def _proc_field(path: str, field: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        return None
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_line() -> str:
    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    mem = _proc_field("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / 1024**2:.1f} GiB RAM" if mem else "RAM unknown"
    return (f"machine: {cpu}, {os.cpu_count()} cores, {ram}, {platform.system()} "
            f"{platform.machine()}; {platform.python_implementation()} "
            f"{platform.python_version()}, pandas {pd.__version__}, "
            f"pyarrow {_version('pyarrow')}")
