"""What one Map External IDs answer says about each row of its request, and reading the
accounts back where it does not say.

The answer is ``matched``, ``updated`` and ``notFound``: rows whose domain is in
``notFound`` are ``not_found``. When every other account was written (``matched`` equals
``updated`` and equals the rows not in ``notFound``), they are ``mapped``. Otherwise some
account was matched but not written, or already held the id, and the answer does not say
which: the rows are never called ``mapped`` on faith. Their accounts are read back
(``GET /accounts?domains=``, this request's domains only) and each row gets what the
account holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ._client import RecotapClient
from ._domains import normalize_domain

__all__ = ["ABSENT", "BatchOutcome", "lookup", "read_held", "settle_batch", "silent"]

#: ``lookup(..., present=True)``'s mark for a domain no account has.
ABSENT: Any = object()

NOT_FOUND = "no Recotap account has this domain"


class BatchOutcome(NamedTuple):
    """Each row's status and message, and the GET requests spent reading back."""

    status: np.ndarray[Any, Any]
    message: np.ndarray[Any, Any]
    reads: int
    read_back: bool


def lookup(found: dict[str, dict[str, Any]], domains: Sequence[str] | np.ndarray[Any, Any],
           present: bool = False) -> list[Any]:
    """Each domain's stored id: ``None`` when it has none (or, unless ``present``, when no
    account was found); :data:`ABSENT` when no account was found and ``present`` is set.
    ``found`` is keyed by the domain as Recotap spells it (punycode or Unicode): both match
    our normal form."""
    keyed = dict(found)
    theirs = list(found)
    ours = normalize_domain(pd.Series(theirs, dtype=object), errors="coerce").tolist()
    for spelled, normal in zip(theirs, ours, strict=True):
        if isinstance(normal, str):
            keyed.setdefault(normal, found[spelled])
    out: list[Any] = []
    for d in domains:
        account = keyed.get(d)
        if account is None:
            out.append(ABSENT if present else None)
            continue
        held = account.get("externalId")
        out.append(held if isinstance(held, str) and held else None)
    return out


def read_held(client: RecotapClient, domains: Sequence[str] | np.ndarray[Any, Any]
              ) -> tuple[np.ndarray[Any, Any], int]:
    """Each domain's stored id as :func:`lookup` with ``present``, read now; and the GET
    requests it took."""
    found, reads = client.fetch_by_domain([str(d) for d in domains])
    return np.array(lookup(found, domains, present=True), dtype=object), reads


def silent(answer: dict[str, Any], sent: int, not_found: int) -> bool:
    """Whether the answer leaves the outcome of some rows unknown: an account matched but
    not written (``matched`` above ``updated``), or counts that do not add up to the rows
    sent.

    >>> silent({"matched": 2, "updated": 1, "notFound": []}, sent=2, not_found=0)
    True
    >>> silent({"matched": 1, "updated": 1, "notFound": ["x.com"]}, sent=2, not_found=1)
    False
    """
    matched, updated = answer["matched"], answer["updated"]
    return bool(matched > updated or matched != sent - not_found)


def settle_batch(client: RecotapClient, domains: np.ndarray[Any, Any],
                 ids: np.ndarray[Any, Any], answer: dict[str, Any]) -> BatchOutcome:
    """The status and message of each row of one request (``domains`` normalised, ``ids``
    sent), from its ``answer``, reading the accounts back when the answer is
    :func:`silent`."""
    echoed = {str(d) for d in answer["notFound"]}
    # notFound echoes domains as sent, or in the server's own normal form (Unicode, say):
    # normalised, either spelling matches ours.
    echoed |= {
        str(d) for d in normalize_domain(pd.Series(sorted(echoed), dtype=object),
                                         errors="coerce").dropna()
    }
    missing = np.isin(domains.astype(str), sorted(echoed))
    status = np.where(missing, "not_found", "mapped").astype(object)
    message = np.full(len(domains), None, dtype=object)
    message[missing] = NOT_FOUND
    if not silent(answer, len(domains), int(np.count_nonzero(missing))):
        return BatchOutcome(status, message, 0, False)
    rows = np.flatnonzero(~missing)
    if not len(rows):
        return BatchOutcome(status, message, 0, False)
    held, reads = read_held(client, domains[rows])
    said = (f"Recotap answered matched {answer['matched']}, updated {answer['updated']} "
            "without saying which; read back,")
    absent = np.array([h is ABSENT for h in held], dtype=bool)
    same = ~absent & (held == ids[rows])
    status[rows[absent]] = "not_found"
    message[rows[absent]] = f"{said} no account has this domain"
    message[rows[same]] = f"{said} the account holds this id"
    wrong = rows[~absent & ~same]
    status[wrong] = "failed"
    message[wrong] = [
        f"{said} the account holds {h!r}, not this id: it was not written"
        if h is not None else f"{said} the account holds no id: it was not written"
        for h in held[~absent & ~same]
    ]
    return BatchOutcome(status, message, reads, True)
