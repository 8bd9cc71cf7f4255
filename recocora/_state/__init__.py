"""Where runs and journals live: the store interface, its SQLite implementation (one
machine) and its PostgreSQL one (a state database shared by machines).

:func:`open_journal` turns a ``journal=`` argument into a :class:`Store` bound to one API, base
URL and key; the run engine talks to that interface only.
"""

from __future__ import annotations

import os

from ._keys import (
    default_journal_path,
    journal_target,
    key_fingerprint,
    row_hash,
    row_hashes,
)
from ._pg_journal import PgJournal
from ._sqlite import Journal
from ._store import Ack, JournalSpec, Store

__all__ = [
    "Ack",
    "Journal",
    "JournalSpec",
    "PgJournal",
    "Store",
    "default_journal_path",
    "journal_target",
    "key_fingerprint",
    "open_journal",
    "row_hash",
    "row_hashes",
]


def open_journal(spec: JournalSpec | Store, *, api: str, base_url: str, key_label: str,
                 state: str | None = None) -> Store | None:
    """The journal a ``journal=`` argument asks for, bound to this API and key, or ``None``.

    ``True`` is the key's journal in the state database ``state`` (a ``postgresql://`` URL)
    when there is one, else a file in the cache directory; a path is always that SQLite
    file. An open :class:`Store` (a background run's own journal) is used as it is.

    >>> open_journal(None, api="cora", base_url="https://api.corafone.com", key_label="k1")
    """
    if spec is None or spec is False:
        return None
    target = journal_target(api, base_url, key_label)
    if spec is True:
        if state is not None:
            return PgJournal(state, api=api, target=target)
        path: str | os.PathLike[str] = default_journal_path(api, base_url, key_label)
    elif isinstance(spec, (str, os.PathLike)):
        path = spec
    elif isinstance(spec, (Journal, PgJournal)):
        return spec
    else:
        raise TypeError(
            f"journal must be a file path, True (a file in the cache directory, or the state "
            f"database when there is one) or None, not {type(spec).__name__}"
        )
    return Journal(path, api=api, target=target)
