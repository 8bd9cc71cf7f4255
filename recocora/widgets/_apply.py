"""What the preview's Apply says: whether the preview went stale, that a client was closed,
and what a run wrote. Plain functions of frames and counts, so each sentence is written once.

>>> outcome_text(pd.DataFrame({"cora_status": ["created", "unchanged"]}), "Cora",
...              ("created", "updated"), done=True, dry_run=False)
'Applied: 1 row written to Cora (1 created); 1 unchanged.'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from .._report import status_counts

__all__ = [
    "changed_rows",
    "closed_text",
    "confirm_lines",
    "counts_text",
    "outcome_text",
    "stale_text",
    "waiting_text",
]


def counts_text(counts: Mapping[str, int]) -> str:
    """``2 created, 1 unchanged`` (zeros left out; ``nothing`` when all are zero).

    >>> counts_text({"created": 2, "updated": 0, "unchanged": 1})
    '2 created, 1 unchanged'
    """
    return ", ".join(f"{n:,} {status}" for status, n in counts.items() if n) or "nothing"


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def closed_text(client: Any, call: str) -> str | None:
    """What to say when ``client`` was closed (``None`` while it is open)."""
    if not getattr(client, "closed", False):
        return None
    name = type(client).__name__
    return (f"The {name} this preview uses was closed (its .close() was called), so nothing "
            f"can be written with it; nothing was sent. Make a new {name} and preview again: "
            f"{call}(client=...).")


def changed_rows(
    before: pd.DataFrame,
    after: pd.DataFrame,
    status_column: str,
    changes: Callable[[pd.DataFrame], pd.DataFrame],
) -> int:
    """Rows whose outcome differs between two diffs of the same frame: another status, or
    other changes (``changes(diff)`` lists them, the row's label in its ``index`` column)."""
    old = before[status_column].astype(object)
    new = after[status_column].astype(object).reindex(old.index)
    differ = old.ne(new) & ~(old.isna() & new.isna())
    labels = {repr(label) for label in old.index[differ.to_numpy(dtype=bool)].tolist()}

    def records(table: pd.DataFrame) -> set[tuple[str, ...]]:
        # Every kind of missing (None, NaN, NA) alike: a column's dtype may differ between diffs.
        cells = table.astype(object).where(table.notna(), None).map(repr)
        return set(cells.itertuples(index=False, name=None))

    moved = records(changes(before)) ^ records(changes(after))
    labels.update(record[0] for record in moved)
    return len(labels)


def stale_text(stale: int, before: Mapping[str, int], now: Mapping[str, int]) -> str:
    """The confirmation's first lines when the preview was out of date.

    >>> print(stale_text(2, {"created": 2}, {"unchanged": 2}))
    The preview is out of date: 2 rows changed since it was worked out.
    Now: 2 unchanged (the preview said 2 created).
    """
    return (f"The preview is out of date: {_rows(stale)} changed since it was worked out.\n"
            f"Now: {counts_text(now)} (the preview said {counts_text(before)}).")


def outcome_text(result: pd.DataFrame, service: str, written: tuple[str, ...], *,
                 done: bool, dry_run: bool) -> str:
    """The header once a run ended: what was written to ``service``, then the rest."""
    counts = status_counts(result)
    rest = {s: n for s, n in counts.items() if s not in written or dry_run}
    if dry_run:
        lead = "Dry run done" if done else "The dry run stopped with an error"
        return f"{lead}: nothing was written to {service}; {counts_text(rest)}."
    wrote = {s: n for s, n in counts.items() if s in written}
    n = sum(wrote.values())
    lead = "Applied" if done else "The run stopped with an error"
    text = (f"{lead}: {_rows(n)} written to {service} ({counts_text(wrote)})" if n
            else f"{lead}: nothing was written to {service}")
    return f"{text}; {counts_text(rest)}." if any(rest.values()) else f"{text}."


def waiting_text(stale_rows: int) -> str:
    """The header before a run: what the preview was worked out from, or that Apply's
    re-check found ``stale_rows`` rows changed."""
    if stale_rows:
        return (f"Re-checked before writing: {_rows(stale_rows)} changed since the preview "
                "was worked out; the counts below are the new ones. Nothing has been written "
                "yet.")
    return "Worked out from the accounts' current state: nothing has been written yet."


def confirm_lines(stale: int, before: Mapping[str, int], now: Mapping[str, int],
                  overwrite: str | None) -> list[str]:
    """What Apply asks before it writes: the re-check's news, what would be overwritten."""
    lines = [stale_text(stale, before, now)] if stale else []
    if overwrite is not None:
        lines.append(overwrite)
    lines.append("Confirm to apply, or Cancel.")
    return lines
