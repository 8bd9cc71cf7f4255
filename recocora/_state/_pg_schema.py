"""The tables recocora keeps in a PostgreSQL state database, version by version.

:data:`MIGRATIONS` lists, for each schema version, the statements that bring a database from
the version before to it; :data:`SCHEMA_VERSION` is the last. ``recocora._state._pg`` applies
the missing ones in one transaction on first use. A released version's statements are never
edited: a change is a new version appended below.

No column holds a secret: keys appear as the Cora key id or a one-way fingerprint.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

#: The rate limiter: one row per key and service (``scope`` is a digest of both), its next
#: free slot on the database's clock, how far late wake-ups moved every booked slot on
#: (``shift``), the last slot taken, the 429s seen (``generation``) and the extra room they
#: taught; and who booked on it lately (to count sharers). See ``_pg_limiter``.
_SLOTS = (
    """
    CREATE TABLE recocora_slots (
        scope TEXT PRIMARY KEY,
        next_slot TIMESTAMPTZ NOT NULL,
        shift INTERVAL NOT NULL DEFAULT '0',
        sent_slot TIMESTAMPTZ,
        generation BIGINT NOT NULL DEFAULT 0,
        learned DOUBLE PRECISION NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE recocora_slot_holders (
        scope TEXT NOT NULL,
        holder TEXT NOT NULL,
        booked_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (scope, holder)
    )
    """,
)

#: The journal: the same rows the SQLite journal keeps, filed by API and target.
_JOURNAL = (
    """
    CREATE TABLE recocora_journal_runs (
        run BIGSERIAL PRIMARY KEY,
        api TEXT NOT NULL,
        target TEXT NOT NULL,
        dry_run BOOLEAN NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        finished_at TIMESTAMPTZ,
        outcome TEXT NOT NULL,
        rows INTEGER NOT NULL,
        to_send INTEGER NOT NULL,
        skipped INTEGER NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0,
        acknowledged INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE recocora_acks (
        api TEXT NOT NULL,
        target TEXT NOT NULL,
        key TEXT NOT NULL,
        dry_run BOOLEAN NOT NULL,
        hash BYTEA NOT NULL,
        status TEXT NOT NULL,
        account_id TEXT,
        external_id TEXT,
        updated_at TEXT,
        code TEXT,
        acked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        run BIGINT NOT NULL,
        batch INTEGER,
        PRIMARY KEY (api, target, key, dry_run)
    )
    """,
)

#: The registry of runs, with the lease that keeps one live worker per run (``owner`` holds
#: it until ``lease_until``, on the database's clock; ``mode`` says who may claim it: the
#: worker its submitter spawned, or any ``recocora worker`` with its key), the settings, staged
#: input and result (so any machine can run, resume or read a run), and the worker's log.
_RUNS = (
    """
    CREATE TABLE recocora_runs (
        run_id TEXT PRIMARY KEY,
        api TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        key_id TEXT NOT NULL,
        base_url TEXT NOT NULL,
        rows INTEGER NOT NULL,
        rows_total INTEGER,
        rows_done INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        rate_limited INTEGER NOT NULL DEFAULT 0,
        eta_s DOUBLE PRECISION,
        counts JSONB NOT NULL DEFAULT '{}',
        host TEXT,
        pid INTEGER,
        pid_start BIGINT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        heartbeat_at TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        sharing INTEGER NOT NULL DEFAULT 1,
        owner TEXT,
        lease_until TIMESTAMPTZ,
        lease_s DOUBLE PRECISION,
        mode TEXT NOT NULL DEFAULT 'spawn',
        spec JSONB,
        input BYTEA,
        input_format TEXT,
        result BYTEA
    )
    """,
    "CREATE INDEX recocora_runs_by_fingerprint ON recocora_runs (fingerprint, state)",
    """
    CREATE TABLE recocora_run_log (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now(),
        line TEXT NOT NULL
    )
    """,
    "CREATE INDEX recocora_run_log_by_run ON recocora_run_log (run_id, id)",
)

#: ``(version, statements)``, oldest first.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, _SLOTS + _JOURNAL + _RUNS),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
