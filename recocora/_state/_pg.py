"""PostgreSQL as the shared state of many machines: one connection per process and database,
transactions that wait out an outage, and the versioned schema.

``RECOCORA_STATE_URL=postgresql://…`` (or ``state=`` on a client) puts the rate limiter, the
journal and the registry of runs in one database, so every machine using a key books its
slots from one schedule and a run's state outlives the machine that started it. The tables
(all named ``recocora_*``, so they can share a database with others) are created on first
use; the schema's version is a row in ``recocora_info``: an older schema is migrated in one
transaction, a newer one (written by a later recocora) is refused with a clear message.

Nothing secret is ever written: not the API keys (the Cora key id, or a one-way fingerprint
of a Recotap key, is all the tables say of them) and not this URL's password, which no
message, ``repr`` or log line shows either (:func:`mask_url`).

Fail closed: :meth:`Database.run` with ``wait=True`` (what the limiter and the journal use)
does not give up while the database cannot be reached. It logs one WARNING saying that
sending is paused, retries with a growing pause (at most :attr:`Database.RETRY_MAX_S`), and
logs when the database answers again. Nothing falls back to local state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, StateError
from ._pg_schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    import psycopg

__all__ = ["Database", "database", "is_postgres_url", "mask_url"]

log = logging.getLogger("recocora")
T = TypeVar("T")

_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database.

    >>> is_postgres_url("postgresql://u@db.internal/recocora"), is_postgres_url("x.sqlite")
    (True, False)
    """
    return urlsplit(url.strip()).scheme in _SCHEMES


def mask_url(url: str) -> str:
    """``url`` without its password (user, host, port and database stay), for messages.

    >>> mask_url("postgresql://app:s3cret@db.internal:5433/recocora?sslmode=require")
    'postgresql://app@db.internal:5433/recocora'
    """
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "A postgresql:// state URL needs psycopg 3, which is not installed: "
            "pip install 'recocora[postgres]'."
        ) from None
    return psycopg


class Database:
    """One connection to the state database, used by every part of this process in turn
    (a lock serialises transactions; none is held while sleeping).

    :meth:`run` performs one function in one transaction. Lost connections are reopened;
    with ``wait=True`` an unreachable database is waited for (fail closed), otherwise it
    raises :class:`~recocora.StateError`.
    """

    #: Seconds to wait for a connection before counting the database unreachable.
    CONNECT_TIMEOUT_S = 5.0
    #: Seconds of silence (no answer, no reset) after which a connection counts as lost, and
    #: an open transaction left idle is ended by the server.
    SILENCE_S = 15.0
    #: Seconds a statement may run (or wait for a lock) before the server cancels it; the
    #: call is then tried again like any other outage.
    STATEMENT_TIMEOUT_S = 60.0
    #: Pauses between attempts while the database is unreachable: the first, then doubling
    #: up to the last. Two seconds at most: a run resumes within that of the database's
    #: return, for one cheap connection attempt per machine every two seconds meanwhile.
    RETRY_FIRST_S = 0.25
    RETRY_MAX_S = 2.0

    def __init__(self, url: str) -> None:
        if not is_postgres_url(url):
            raise ConfigError(
                f"The state URL {mask_url(url)!r} is not a postgresql:// URL; set "
                "RECOCORA_STATE_URL=postgresql://user@host:5432/dbname (or pass state=)."
            )
        self._psycopg = _psycopg()
        self._url = url.strip()
        self.label = mask_url(self._url)
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = 0
        self._schema_ready = False
        self._down_since: float | None = None

    def __repr__(self) -> str:
        return f"Database({self.label!r})"

    # -- connection ---------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and self._pid == os.getpid() and not self._conn.closed:
            return self._conn
        silence_ms = int(self.SILENCE_S * 1000)
        conn: psycopg.Connection[Any] = self._psycopg.connect(
            self._url, autocommit=True, connect_timeout=max(1, int(self.CONNECT_TIMEOUT_S)),
            application_name="recocora",
            # A network that goes silent (no reset, no answer) ends the connection within
            # SILENCE_S instead of hanging every thread that needs the database.
            keepalives=1, keepalives_idle=max(1, int(self.SILENCE_S / 3)),
            keepalives_interval=max(1, int(self.SILENCE_S / 6)), keepalives_count=3,
            tcp_user_timeout=silence_ms,
        )
        try:
            # A transaction left open (a process suspended inside one) must not hold the
            # key's row for ever, nor may a statement wait on it for ever.
            conn.execute(f"SET idle_in_transaction_session_timeout = {silence_ms}")
            conn.execute(f"SET statement_timeout = {int(self.STATEMENT_TIMEOUT_S * 1000)}")
            if not self._schema_ready:
                self._prepare_schema(conn)
                self._schema_ready = True
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # already broken: nothing more to do
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _schema_version(self, conn: psycopg.Connection[Any]) -> int:
        """The schema version the database holds (0: none yet); a newer one is refused."""
        exists = conn.execute("SELECT to_regclass('recocora_info')").fetchone()
        row = None if exists is None or exists[0] is None else conn.execute(
            "SELECT value FROM recocora_info WHERE name = 'schema_version'").fetchone()
        found = int(row[0]) if row is not None else 0
        if found > SCHEMA_VERSION:
            raise ConfigError(
                f"The state database {self.label} holds recocora's tables in schema "
                f"version {found}, newer than this recocora understands "
                f"({SCHEMA_VERSION}): a later recocora set it up. Upgrade recocora on "
                "this machine (pip install -U 'recocora[postgres]'), or point "
                "RECOCORA_STATE_URL at another database."
            )
        return found

    def _prepare_schema(self, conn: psycopg.Connection[Any]) -> None:
        # Up to date: a plain read, so a role that may only read and write the tables (no
        # CREATE on the schema) can use a database another role set up.
        if self._schema_version(conn) == SCHEMA_VERSION:
            return
        with conn.transaction():
            # One process at a time creates or migrates; the others then find it done.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('recocora schema'))")
            conn.execute("CREATE TABLE IF NOT EXISTS recocora_info "
                         "(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = self._schema_version(conn)
            for version, statements in MIGRATIONS:
                if version <= found:
                    continue
                for statement in statements:
                    conn.execute(statement)
            if found < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO recocora_info (name, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
                if found:
                    log.info("recocora: migrated the state database %s from schema version "
                             "%d to %d", self.label, found, SCHEMA_VERSION)

    # -- transactions -------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the database is away for now (worth waiting for): the
        connection failed or broke (no SQLSTATE, class 08), the server is shutting down or
        starting (57P), out of connections (53), or a statement waited too long (57014).
        Other errors are the statement's own and are raised."""
        if isinstance(exc, self._psycopg.InterfaceError):
            return True
        if not isinstance(exc, self._psycopg.OperationalError):
            return False
        state = getattr(exc, "sqlstate", None)
        return state is None or state == "57014" or state.startswith(("08", "57P", "53"))

    def run(self, fn: Callable[[psycopg.Connection[Any]], T], *, wait: bool = True,
            what: str = "use the state database") -> T:
        """``fn(connection)`` inside one transaction, its value returned.

        A transaction that fails because the connection broke is rolled back and run again on
        a new connection, so ``fn`` must do nothing outside the database. With ``wait`` the
        database is waited for as long as it takes; without, :class:`~recocora.StateError`
        says it cannot be reached.
        """
        pause = self.RETRY_FIRST_S
        while True:
            try:
                with self._lock:
                    conn = self._connection()
                    with conn.transaction():
                        value = fn(conn)
                self._back()
                return value
            except ConfigError:
                raise
            except Exception as exc:
                if not self._unreachable(exc):
                    raise
                with self._lock:
                    self._drop()
                reason = " ".join(str(exc).split())[:300] or type(exc).__name__
                if not wait:
                    raise StateError(
                        f"Cannot {what}: the state database {self.label} cannot be reached "
                        f"({reason})."
                    ) from None
                self._down(what, reason)
            time.sleep(pause)
            pause = min(pause * 2, self.RETRY_MAX_S)

    def _down(self, what: str, reason: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "recocora: the state database %s cannot be reached (%s). Paused until it "
                "answers (to %s); nothing is sent meanwhile and nothing is lost.",
                self.label, reason, what,
            )

    def _back(self) -> None:
        if self._down_since is not None:
            log.warning("recocora: the state database %s answers again after %.1f s; "
                        "resuming.", self.label, time.monotonic() - self._down_since)
            self._down_since = None

    @property
    def down(self) -> bool:
        """Whether the last attempt found the database unreachable (and it is waited for)."""
        return self._down_since is not None


_databases: dict[tuple[str, int], Database] = {}
_databases_lock = threading.Lock()


def database(url: str) -> Database:
    """The :class:`Database` of ``url`` in this process (one connection each, made on first
    use, so naming a database that is down does not fail here)."""
    key = (url.strip(), os.getpid())
    with _databases_lock:
        db = _databases.get(key)
        if db is None:
            db = _databases[key] = Database(url)
        return db
