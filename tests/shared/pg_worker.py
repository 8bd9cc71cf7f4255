"""``python -m tests.shared.pg_worker ARGS...``: ``recocora ARGS...`` as a test's other machine
runs it, with the short leases, heartbeats, polls and database retries of the tests
(:func:`shorten`; the tests' scripts call it first, the tests monkeypatch the same values).
"""

from __future__ import annotations

import sys
from typing import Any

from recocora._queue import Queue
from recocora._state._pg import Database
from recocora._state._pg_registry import PgRunStore

#: Lease of the tests' runs; ten heartbeats a lease.
LEASE_S = 2.0
SHORT: dict[tuple[type, str], float] = {
    (PgRunStore, "LEASE_S"): LEASE_S,
    (PgRunStore, "HEARTBEAT_S"): LEASE_S / 10,
    (Database, "RETRY_FIRST_S"): 0.05,
    (Database, "RETRY_MAX_S"): 0.2,
    (Queue, "POLL_S"): 0.2,
}


def shorten(assign: Any = setattr) -> None:
    for (cls, name), value in SHORT.items():
        assign(cls, name, value)


if __name__ == "__main__":
    from recocora.cli import main

    shorten()
    sys.exit(main(sys.argv[1:]))
