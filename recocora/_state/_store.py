"""The interface every run store offers the run engine, whatever holds the rows."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Protocol, TypeVar

import pandas as pd

__all__ = ["Ack", "BoundJournal", "JournalSpec", "Store", "upsert_acks_sql"]

J = TypeVar("J", bound="BoundJournal")

#: What ``journal=`` accepts: a path, ``True`` (the default file, or the key's journal in the
#: state database when there is one), or ``None``/``False`` (none).
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

    The run engine needs only these calls; the SQLite journal is the default implementation,
    the state database's journal the shared one.
    """

    #: Where the rows are kept, for messages and the result's attrs: a file path, or a
    #: database's URL without its password.
    location: str

    def begin_run(self, *, dry_run: bool, rows: int, to_send: int, skipped: int) -> int: ...

    def end_run(self, run: int, outcome: str) -> None: ...

    def record(self, acks: Iterable[Ack], *, run: int, dry_run: bool,
               batch: int | None) -> None: ...

    def applied(self) -> pd.DataFrame: ...

    def close(self) -> None: ...


def upsert_acks_sql(table: str, mark: str) -> str:
    """The statement recording one acknowledged row in ``table`` (placeholders ``mark``): a
    later answer replaces the earlier one but keeps an account id or time it did not carry.

    >>> upsert_acks_sql("acks", "?").split()[:3]
    ['INSERT', 'INTO', 'acks']
    """
    marks = ", ".join([mark] * 13)
    return f"""
INSERT INTO {table} (api, target, key, dry_run, hash, status, account_id, external_id,
                     updated_at, code, acked_at, run, batch)
VALUES ({marks})
ON CONFLICT (api, target, key, dry_run) DO UPDATE SET
    hash = excluded.hash,
    status = excluded.status,
    account_id = COALESCE(excluded.account_id, {table}.account_id),
    external_id = excluded.external_id,
    updated_at = COALESCE(excluded.updated_at, {table}.updated_at),
    code = excluded.code,
    acked_at = excluded.acked_at,
    run = excluded.run,
    batch = excluded.batch
"""


class BoundJournal:
    """What every journal class shares: the API and target it reads and writes (``None``
    when opened for inspection only), and closing at the end of a ``with`` block."""

    api: str | None
    target: str | None
    #: The columns of ``acks()``, the inspection of every recorded row.
    ACK_COLUMNS = ("api", "target", "key", "dry_run", "hash", "status", "account_id",
                   "external_id", "updated_at", "code", "acked_at", "run", "batch")

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _inspected(rows: list[Any], columns: Sequence[str]) -> pd.DataFrame:
        """Rows of ``acks()`` or ``runs()`` as a frame, ``dry_run`` as booleans."""
        frame: pd.DataFrame = pd.DataFrame.from_records(rows, columns=list(columns))
        frame["dry_run"] = frame["dry_run"].astype(bool)
        return frame

    def __enter__(self: J) -> J:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _bound(self) -> tuple[str, str]:
        if self.api is None or self.target is None:
            raise ValueError(f"this {type(self).__name__} was opened for reading only (no api "
                             "and target)")
        return self.api, self.target
