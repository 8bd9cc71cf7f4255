"""Where runs and journals live: the store interface and its SQLite implementation.

:func:`open_journal` turns a ``journal=`` argument into a :class:`Store` bound to one API, base
URL and key; the run engine talks to that interface only, so another backend plugs in here.
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
from ._sqlite import Journal
from ._store import Ack, JournalSpec, Store

__all__ = [
    "Ack",
    "Journal",
    "JournalSpec",
    "Store",
    "default_journal_path",
    "journal_target",
    "key_fingerprint",
    "open_journal",
    "row_hash",
    "row_hashes",
]


def open_journal(spec: JournalSpec, *, api: str, base_url: str, key_label: str
                 ) -> Store | None:
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
