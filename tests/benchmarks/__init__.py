"""The benchmark (``python -m tests.benchmarks``); see ``__main__``.

Each measure runs in a child process with ``RECOCORA_BENCH_AS_INSTALLED=1``: hypothesis, a
test-only dependency, is then hidden as it is on a user's machine. pandera imports it on the
first validation in a process when it is present (0.13 s here), which a user never pays.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("RECOCORA_BENCH_AS_INSTALLED") == "1":
    sys.modules["hypothesis"] = None  # type: ignore[assignment]
