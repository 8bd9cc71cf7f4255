"""What long runs need to survive anything: the journal, the failure limit, Ctrl-C.

**The journal** is a SQLite file (``df.cora.upsert(journal="backfill.db")``,
``df.recotap.map_ids(journal=...)``; ``journal=True`` picks a file in the cache directory, one
per API, key id and base URL). After every answer, in one transaction, it records each
acknowledged row: its key (Cora ``externalId``, Recotap normalised domain), a hash of exactly
what was sent for it, the status the server gave, the account id (Cora) or the id written
(Recotap), the time, the run and whether it was a dry run. Re-running the same call with the
same journal sends only the rows that were never acknowledged, that changed since, or that
failed; the others come back ``skipped`` with their earlier outcome. ``force=True`` sends
everything again.

The file is in WAL mode with full syncs, one transaction per answer: killing the process at
any instant leaves it consistent, holding every answer that arrived before the kill, so a
re-run sends at most the chunk that was in flight a second time (and upserts and mappings are
idempotent, so that changes nothing). The journal stores no key and no secret: rows are filed
under the API, the base URL (without any user info) and the Cora key id (Recotap, which has
no key id, by a one-way fingerprint of its key).

>>> j = Journal(":memory:", api="cora", target="cora https://api.corafone.com key k1")
>>> run = j.begin_run(dry_run=False, rows=1, to_send=1, skipped=0)
>>> j.record([Ack("A1", row_hash({"externalId": "A1"}), "created", account_id="acc_1")],
...          run=run, dry_run=False, batch=0)
>>> j.applied().loc["A1", "status"]
'created'
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import orjson
import pandas as pd

from ._config import cache_dir
from ._wire import to_json_value
from .errors import (
    ConfigError,
    JournalError,
    RecocoraError,
    RunInterrupted,
    TooManyFailedError,
)

__all__ = [
    "Ack",
    "FailureLimit",
    "Journal",
    "JournalError",
    "JournalSpec",
    "RunInterrupted",
    "TooManyFailedError",
    "combine_results",
    "default_journal_path",
    "deferred_interrupt",
    "journal_target",
    "key_fingerprint",
    "open_journal",
    "row_hash",
    "row_hashes",
]

#: What ``journal=`` accepts: a path, ``True`` (the default file), or ``None``/``False`` (none).
JournalSpec = str | os.PathLike[str] | bool | None

FORMAT = "recocora-journal"
VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY AUTOINCREMENT,
    api TEXT NOT NULL,
    target TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    rows INTEGER NOT NULL,
    to_send INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    acknowledged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS acks (
    api TEXT NOT NULL,
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    hash BLOB NOT NULL,
    status TEXT NOT NULL,
    account_id TEXT,
    external_id TEXT,
    updated_at TEXT,
    code TEXT,
    acked_at TEXT NOT NULL,
    run INTEGER NOT NULL,
    batch INTEGER,
    PRIMARY KEY (api, target, key, dry_run)
) WITHOUT ROWID;
"""

_UPSERT_ACK = """
INSERT INTO acks (api, target, key, dry_run, hash, status, account_id, external_id,
                  updated_at, code, acked_at, run, batch)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (api, target, key, dry_run) DO UPDATE SET
    hash = excluded.hash,
    status = excluded.status,
    account_id = COALESCE(excluded.account_id, acks.account_id),
    external_id = excluded.external_id,
    updated_at = COALESCE(excluded.updated_at, acks.updated_at),
    code = excluded.code,
    acked_at = excluded.acked_at,
    run = excluded.run,
    batch = excluded.batch
"""


# --------------------------------------------------------------------------- hashing


def _default(value: Any) -> Any:
    return to_json_value(value)


def row_hash(row: Any) -> bytes:
    """16-byte BLAKE2b digest of one row's JSON (keys sorted, so column order does not count).

    >>> a, b = {"externalId": "A1", "bucket": "x"}, {"bucket": "x", "externalId": "A1"}
    >>> row_hash(a) == row_hash(b)
    True
    """
    return hashlib.blake2b(
        orjson.dumps(row, default=_default, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


def row_hashes(rows: Sequence[Any]) -> list[bytes]:
    """:func:`row_hash` of each row of a chunk, in order (about a microsecond a row).

    >>> len(row_hashes([{"externalId": "A1"}, {"externalId": "A2"}]))
    2
    """
    dumps, sort, blake = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.blake2b
    return [blake(dumps(r, default=_default, option=sort), digest_size=16).digest() for r in rows]


def key_fingerprint(secret: str) -> str:
    """A short one-way label for a key that has no public id (Recotap's): it tells keys apart
    in file names and journal rows without revealing them.

    >>> len(key_fingerprint("rtp_live_0123456789"))
    16
    """
    return hashlib.sha256(b"recocora key fingerprint\n" + secret.encode()).hexdigest()[:16]


def _clean_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def journal_target(api: str, base_url: str, key_label: str) -> str:
    """How journal rows are filed: API, base URL (any user info dropped) and key label.

    >>> journal_target("cora", "https://u:p@api.corafone.com/", "k1")
    'cora https://api.corafone.com key k1'
    """
    return f"{api} {_clean_url(base_url)} key {key_label}"


def default_journal_path(api: str, base_url: str, key_label: str) -> Path:
    """The file ``journal=True`` uses: in the cache directory, one per API, key label and
    base URL.

    >>> default_journal_path("cora", "https://api.corafone.com", "k1").name  # doctest: +SKIP
    'cora-k1-3f1c2a9b.sqlite'
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", key_label)[:40] or "key"
    where = hashlib.sha256(_clean_url(base_url).encode()).hexdigest()[:8]
    return cache_dir() / "journals" / f"{api}-{slug}-{where}.sqlite"


def _now() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------- the journal


class Ack(NamedTuple):
    """One acknowledged row, as the journal records it."""

    key: str
    hash: bytes
    status: str
    account_id: str | None = None
    external_id: str | None = None
    updated_at: str | None = None
    code: str | None = None


class Journal:
    """A SQLite record of acknowledged rows (see the module docstring).

    ``api`` and ``target`` (see :func:`journal_target`) say which rows this object reads and
    writes; without them it can still be inspected with :meth:`acks` and :meth:`runs`.
    Several processes may use one file at once.

    >>> Journal("backfill.db").acks()["status"].value_counts()  # doctest: +SKIP
    """

    def __init__(
        self, path: str | os.PathLike[str], *, api: str | None = None, target: str | None = None
    ) -> None:
        self.path = Path(path)
        self.api, self.target = api, target
        self._lock = threading.RLock()
        if str(path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"Cannot create the journal's folder {self.path.parent}: {exc.strerror}."
                ) from None
        try:
            self._db = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"Cannot open the journal {str(path)!r}: {exc}.") from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(
                f"{path} cannot be used as a recocora journal ({exc}); pass another path."
            ) from None

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 30000")
        if str(self.path) != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
        # A full sync per answer costs one fsync every 20 s at Cora's pace, and keeps even a
        # power cut from losing an answer the journal said it had.
        db.execute("PRAGMA synchronous = FULL")
        with self._transaction():
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if tables and "info" not in tables:
                raise sqlite3.DatabaseError("it is a SQLite file of something else")
            # executescript would commit on its own; one statement at a time stays atomic.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            info = dict(db.execute("SELECT name, value FROM info").fetchall())
            if not info:
                db.executemany("INSERT INTO info VALUES (?, ?)",
                               [("format", FORMAT), ("version", VERSION), ("created", _now())])
            elif info.get("format") != FORMAT or info.get("version") != VERSION:
                raise sqlite3.DatabaseError(
                    f"format {info.get('format')!r} version {info.get('version')!r}"
                )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A transaction whose failure is a :class:`JournalError` (nothing of it written)."""
        try:
            with self._transaction() as db:
                yield db
        except sqlite3.Error as exc:
            raise JournalError(
                f"The journal {str(self.path)!r} could not be written ({exc}); nothing of "
                "this step was recorded, so those rows would be sent again next time."
            ) from exc

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, api={self.api!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _bound(self) -> tuple[str, str]:
        if self.api is None or self.target is None:
            raise ValueError("this Journal was opened for reading only (no api and target)")
        return self.api, self.target

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, *, dry_run: bool, rows: int, to_send: int, skipped: int) -> int:
        """Note a run's start; returns its number (the ``run`` of its rows)."""
        api, target = self._bound()
        with self._writing() as db:
            cursor = db.execute(
                "INSERT INTO runs (api, target, dry_run, started_at, outcome, rows, to_send, "
                "skipped) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (api, target, int(dry_run), _now(), rows, to_send, skipped),
            )
            return int(cursor.lastrowid or 0)

    def end_run(self, run: int, outcome: str) -> None:
        """Note how a run ended: ``completed``, ``interrupted``, ``stopped: ...``."""
        with self._writing() as db:
            db.execute("UPDATE runs SET finished_at = ?, outcome = ? WHERE run = ?",
                       (_now(), outcome, run))

    # -- rows -------------------------------------------------------------------------------

    def record(self, acks: Iterable[Ack], *, run: int, dry_run: bool,
               batch: int | None) -> None:
        """Record one answer's rows in one transaction (all of them or, on a crash, none)."""
        api, target = self._bound()
        when = _now()
        values = [
            (api, target, a.key, int(dry_run), a.hash, a.status, a.account_id, a.external_id,
             a.updated_at, a.code, when, run, batch)
            for a in acks
        ]
        with self._writing() as db:
            db.executemany(_UPSERT_ACK, values)
            db.execute(
                "UPDATE runs SET requests = requests + 1, acknowledged = acknowledged + ? "
                "WHERE run = ?", (len(values), run),
            )

    def applied(self) -> pd.DataFrame:
        """Rows acknowledged by real (not dry) runs for this API and target, indexed by key:
        ``hash``, ``status``, ``account_id``, ``external_id``, ``updated_at``, ``acked_at``."""
        api, target = self._bound()
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT key, hash, status, account_id, external_id, updated_at, acked_at "
                    "FROM acks WHERE api = ? AND target = ? AND dry_run = 0", (api, target),
                ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"The journal {str(self.path)!r} could not be read ({exc}).") \
                from exc
        columns = ["key", "hash", "status", "account_id", "external_id", "updated_at",
                   "acked_at"]
        frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)
        out: pd.DataFrame = frame.astype(object).set_index("key")
        return out

    def acks(self) -> pd.DataFrame:
        """Every recorded row of every run (``hash`` as hex), for inspection.

        >>> Journal("backfill.db").acks().groupby("status").size()  # doctest: +SKIP
        """
        with self._lock:
            cursor = self._db.execute(
                "SELECT api, target, key, dry_run, lower(hex(hash)), status, account_id, "
                "external_id, updated_at, code, acked_at, run, batch FROM acks "
                "ORDER BY run, batch, key"
            )
            rows = cursor.fetchall()
        columns = ["api", "target", "key", "dry_run", "hash", "status", "account_id",
                   "external_id", "updated_at", "code", "acked_at", "run", "batch"]
        frame: pd.DataFrame = pd.DataFrame.from_records(rows, columns=columns)
        frame["dry_run"] = frame["dry_run"].astype(bool)
        return frame

    def runs(self) -> pd.DataFrame:
        """One row per run: when, how it ended, rows, rows to send, skipped, requests.

        >>> Journal("backfill.db").runs()[["outcome", "requests"]]  # doctest: +SKIP
        """
        with self._lock:
            cursor = self._db.execute("SELECT * FROM runs ORDER BY run")
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        frame: pd.DataFrame = pd.DataFrame.from_records(rows, columns=names)
        frame["dry_run"] = frame["dry_run"].astype(bool)
        return frame


def open_journal(spec: JournalSpec, *, api: str, base_url: str, key_label: str
                 ) -> Journal | None:
    """The journal a ``journal=`` argument asks for, bound to this API and key, or ``None``.

    >>> open_journal(None, api="cora", base_url="https://api.corafone.com", key_label="k1")
    """
    if spec is None or spec is False:
        return None
    if spec is True:
        path: str | os.PathLike[str] = default_journal_path(api, base_url, key_label)
    elif isinstance(spec, (str, os.PathLike)):
        path = spec
    else:
        raise TypeError(
            f"journal must be a file path, True (a file in the cache directory) or None, "
            f"not {type(spec).__name__}"
        )
    return Journal(path, api=api, target=journal_target(api, base_url, key_label))


def combine_results(previous: pd.DataFrame, fresh: pd.DataFrame,
                    status_column: str) -> pd.DataFrame:
    """``previous`` with the rows of ``fresh`` (a run over some of its rows) replaced; the
    attrs are ``fresh``'s, with counts over the whole frame and ``resent`` rows.

    >>> fresh = df.loc[res.cora_status == "failed"].cora.upsert()  # doctest: +SKIP
    >>> res = combine_results(res, fresh, "cora_status")  # doctest: +SKIP
    """
    out: pd.DataFrame = previous.copy()
    where = out.index.get_indexer(fresh.index)
    for column in fresh.columns:
        values = fresh[column]
        if column not in out:
            out[column] = pd.Series(pd.NA if values.dtype != object else None,
                                    index=out.index, dtype=values.dtype)
        target = out[column]
        if target.dtype == object:
            merged = target.to_numpy(dtype=object, copy=True)
            merged[where] = values.to_numpy(dtype=object)
            out[column] = pd.Series(merged, index=out.index, dtype=object)
        else:
            updated = target.copy()
            updated.iloc[where] = values.to_numpy()
            out[column] = updated
    out.attrs = dict(fresh.attrs)
    tally = out[status_column].astype(object).value_counts(sort=False).to_dict()
    out.attrs["counts"] = {str(k): int(v) for k, v in tally.items()}
    out.attrs["resent"] = len(fresh)
    return out


def resend_rows(
    df: pd.DataFrame,
    previous: pd.DataFrame,
    status_column: str,
    run: Callable[[pd.DataFrame], pd.DataFrame],
    resend: Sequence[str],
    zero: dict[str, int],
) -> pd.DataFrame:
    """Run ``run`` on the rows of ``df`` that ``previous`` marks with a status in ``resend``
    and fold the answers into ``previous`` (``only=`` of upsert and map_ids). ``zero`` is
    the attrs a run that sends nothing reports; an error's partial result is folded too."""
    status = previous[status_column].astype(object)
    wanted = previous.index[status.isin(list(resend)).to_numpy(dtype=bool)]
    if not len(wanted):
        unchanged: pd.DataFrame = previous.copy()
        unchanged.attrs.update(zero)
        return unchanged
    absent = wanted.difference(df.index, sort=False)
    if len(absent):
        raise ValueError(
            f"{len(absent):,} rows to re-send are not in this frame (e.g. "
            f"{absent[:3].tolist()}); call it on the frame that produced the result."
        )
    try:
        fresh = run(df.loc[wanted])
    except (RecocoraError, RunInterrupted) as exc:
        if exc.result is not None:
            exc.result = combine_results(previous, exc.result, status_column)
        raise
    return combine_results(previous, fresh, status_column)


# --------------------------------------------------------------------------- stopping


class FailureLimit:
    """``max_failed``: ``None`` never stops; an ``int`` is a count of failed rows; a ``float``
    in [0, 1] a fraction of the rows sent so far. The run stops as soon as it is exceeded.

    >>> FailureLimit(0.1).exceeded(failed=11, sent=100), FailureLimit(20).exceeded(11, 100)
    (True, False)
    """

    def __init__(self, max_failed: int | float | None) -> None:
        if max_failed is not None and (
            isinstance(max_failed, bool) or not isinstance(max_failed, (int, float))
        ):
            raise TypeError(
                "max_failed must be None, a count (int) or a fraction of the rows sent "
                f"(float between 0 and 1), not {type(max_failed).__name__}"
            )
        if isinstance(max_failed, int) and max_failed < 0:
            raise ValueError(f"max_failed must be at least 0, not {max_failed}")
        if isinstance(max_failed, float) and not 0.0 <= max_failed <= 1.0:
            raise ValueError(
                f"max_failed={max_failed} as a float is a fraction of the rows sent and must "
                "be between 0 and 1; pass an int for a count of rows"
            )
        self.max_failed = max_failed

    def exceeded(self, failed: int, sent: int) -> bool:
        limit = self.max_failed
        if limit is None:
            return False
        if isinstance(limit, float):
            return failed > limit * sent
        return failed > limit

    def describe(self) -> str:
        limit = self.max_failed
        if isinstance(limit, float):
            return f"max_failed={limit:g} ({limit:.1%} of the rows sent)"
        return f"max_failed={limit}"


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block has finished.

    Wraps the few milliseconds between an answer's arrival and its rows being merged and
    committed to the journal, so an interrupt there cannot lose an answer that arrived. Only
    the main thread receives signals; elsewhere, or when Python does not own the SIGINT
    handler, the block runs as is.

    >>> with deferred_interrupt():
    ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)
