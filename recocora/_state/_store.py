"""The interface every run store offers the run engine, whatever holds the rows."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

import pandas as pd

__all__ = ["Ack", "JournalSpec", "Store"]

#: What ``journal=`` accepts: a path, ``True`` (the default file), or ``None``/``False`` (none).
JournalSpec = str | os.PathLike[str] | bool | None


class Ack(NamedTuple):
    """One acknowledged row, as the journal records it."""

    key: str
    hash: bytes
    status: str
    account_id: str | None = None
    external_id: str | None = None
    updated_at: str | None = None
    code: str | None = None


class Store(Protocol):
    """A record of runs and acknowledged rows, bound to one API and target.

    The run engine needs only these calls; the SQLite journal is the default implementation.
    """

    path: Path

    def begin_run(self, *, dry_run: bool, rows: int, to_send: int, skipped: int) -> int: ...

    def end_run(self, run: int, outcome: str) -> None: ...

    def record(self, acks: Iterable[Ack], *, run: int, dry_run: bool,
               batch: int | None) -> None: ...

    def applied(self) -> pd.DataFrame: ...

    def close(self) -> None: ...
