"""What a result frame says, in words: counts by status, summaries, rows to look at.

One reading of a result for every front end: the command line prints
:func:`cora_summary` / :func:`recotap_summary`, the demo prints :func:`count_lines`, and
notebooks show :func:`summary_text` (``recocora._display`` adds the colours).

>>> res = pd.DataFrame({"cora_status": ["created", "failed", "created"]})
>>> status_counts(res)
{'created': 2, 'failed': 1}
>>> count_lines(status_counts(res))
['  created  2', '  failed   1']
>>> summary_text(res)
'Cora upsert: 2 created, 1 failed (3 rows)'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ._progress import Pace, format_duration

__all__ = [
    "CORA_STATUSES",
    "PROBLEM_STATUSES",
    "RECOTAP_STATUSES",
    "STATUS_ORDER",
    "api_of",
    "changes_table",
    "cora_summary",
    "count_lines",
    "facts",
    "has_problems",
    "one_line",
    "plural",
    "recotap_summary",
    "status_counts",
    "summary_text",
    "title",
]

#: Every value ``cora_status`` can take, in reading order: what happened, then what did not.
CORA_STATUSES = ("created", "updated", "unchanged", "failed", "invalid", "skipped", "not_sent")

#: Every value ``recotap_status`` can take, in reading order.
RECOTAP_STATUSES = (
    "mapped",          # written (or already so); the account now holds the row's id
    "unchanged",       # the account already held this id; not sent
    "not_found",       # no account has this domain
    "already_mapped",  # the account holds a different id and overwrite=False; not sent
    "superseded",      # a later row with the same domain wins; not sent
    "invalid",         # failed validation; not sent
    "failed",          # read back (verify=True, or an answer that did not say): id not there
    "skipped",         # the journal holds this exact mapping as acknowledged; not sent
    "not_sent",        # the run stopped (an error) before this row was acknowledged
)

#: The statuses of each API's result frames, keyed by the API's name.
STATUS_ORDER: dict[str, tuple[str, ...]] = {"cora": CORA_STATUSES, "recotap": RECOTAP_STATUSES}

#: Statuses that need attention: the row was not applied (the command exits 1).
PROBLEM_STATUSES = frozenset({"failed", "invalid", "not_sent"})

_STATUS_COLUMN = {"cora": "cora_status", "recotap": "recotap_status"}


def api_of(frame: pd.DataFrame) -> str | None:
    """``"cora"`` or ``"recotap"`` from a result frame's status column, else ``None``.

    >>> api_of(pd.DataFrame({"recotap_status": []})), api_of(pd.DataFrame({"x": []}))
    ('recotap', None)
    """
    for api, column in _STATUS_COLUMN.items():
        if column in frame.columns:
            return api
    return None


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per status of a Cora or Recotap result frame, in reading order, zero counts left
    out (empty when the frame has no status column).

    >>> status_counts(pd.DataFrame({"recotap_status": ["not_found", "mapped"]}))
    {'mapped': 1, 'not_found': 1}
    """
    api = api_of(frame)
    if api is None:
        return {}
    tally = frame[_STATUS_COLUMN[api]].astype(object).value_counts(dropna=False)
    found = {str(k): int(v) for k, v in tally.items()}
    ordered = {s: found.pop(s) for s in STATUS_ORDER[api] if s in found}
    ordered.update(sorted(found.items()))
    return ordered


def has_problems(frame: pd.DataFrame) -> bool:
    """True when some row of a result frame is ``failed``, ``invalid`` or ``not_sent``.

    >>> has_problems(pd.DataFrame({"cora_status": ["created", "not_sent"]}))
    True
    """
    return bool(PROBLEM_STATUSES.intersection(status_counts(frame)))


def count_lines(counts: Mapping[str, int], indent: str = "  ") -> list[str]:
    """``created 12``-style lines, numbers aligned.

    >>> count_lines({"created": 3, "failed": 12})
    ['  created   3', '  failed   12']
    """
    if not counts:
        return [f"{indent}(no rows)"]
    width = max(len(s) for s in counts)
    digits = max(len(f"{n:,}") for n in counts.values())
    return [f"{indent}{s:<{width}} {n:>{digits + 1},}" for s, n in counts.items()]


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, with an ``s`` unless ``n`` is one.

    >>> plural(1, "row"), plural(1200, "row")
    ('1 row', '1,200 rows')
    """
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def one_line(exc: BaseException | str) -> str:
    """An error's text on one line (the command line prints one line per error).

    >>> one_line(ValueError("no such\\n  file"))
    'no such file'
    """
    return " ".join(str(exc).split()) or type(exc).__name__


def title(frame: pd.DataFrame) -> str:
    """What produced the frame, read from its columns and ``attrs``.

    >>> title(pd.DataFrame({"cora_status": []}))
    'Cora upsert'
    """
    api = api_of(frame) or str(frame.attrs.get("api", ""))
    if api == "recotap":
        return "Recotap preview" if frame.attrs.get("preview") else "Recotap map_ids"
    if frame.attrs.get("preview"):
        return f"Cora preview ({frame.attrs['preview']})"
    return "Cora dry run" if frame.attrs.get("dry_run") else "Cora upsert"


def facts(frame: pd.DataFrame) -> list[str]:
    """Rows, requests and time of a result, as short phrases.

    >>> facts(pd.DataFrame({"cora_status": ["created"]}))
    ['1 row']
    """
    out = [plural(len(frame), "row")]
    requests = frame.attrs.get("requests")
    if isinstance(requests, int) and requests:
        out.append(plural(requests, "request"))
    seconds = frame.attrs.get("duration_s", frame.attrs.get("duration"))
    if isinstance(seconds, (int, float)) and seconds:
        out.append(f"{seconds:.1f} s" if seconds >= 0.1 else "under 0.1 s")
    return out


def summary_text(frame: pd.DataFrame) -> str:
    """One line: what ran, counts by status, rows, requests and time.

    >>> summary_text(pd.DataFrame({"recotap_status": ["mapped"]}))
    'Recotap map_ids: 1 mapped (1 row)'
    """
    counts = status_counts(frame)
    body = ", ".join(f"{n:,} {s}" for s, n in counts.items()) or "no rows"
    return f"{title(frame)}: {body} ({', '.join(facts(frame))})"


def changes_table(result: pd.DataFrame) -> pd.DataFrame:
    """Long form of a result's ``cora_changes``: one row per changed field, with columns
    ``index`` (the input row's label), ``externalId``, ``field``, ``from``, ``to``.

    >>> res = pd.DataFrame({"cora_external_id": ["a1"], "cora_changes": [
    ...     [{"field": "bucket", "from": "current", "to": "90+"}]]})
    >>> changes_table(res).to_dict("records")
    [{'index': 0, 'externalId': 'a1', 'field': 'bucket', 'from': 'current', 'to': '90+'}]
    """
    columns = ["index", "externalId", "field", "from", "to"]
    if "cora_changes" not in result:
        raise ValueError("not a Cora result frame: it has no cora_changes column")
    lists = result["cora_changes"].tolist()
    sizes = np.fromiter((len(v) if isinstance(v, list) else 0 for v in lists), np.int64,
                        len(lists))
    # One position per change, then whole columns at once: no per-row lookups.
    pos = np.repeat(np.arange(len(lists)), sizes)
    flat = [c if isinstance(c, dict) else {} for v, n in zip(lists, sizes, strict=True)
            if n for c in v]
    ids = result.get("cora_external_id")
    data = {
        "index": pd.Series(result.index[pos].tolist(), dtype=object),
        "externalId": (ids.to_numpy(dtype=object)[pos] if ids is not None
                       else np.full(len(pos), None, dtype=object)),
        "field": [c.get("field") for c in flat],
        "from": [c.get("from") for c in flat],
        "to": [c.get("to") for c in flat],
    }
    return pd.DataFrame(data, columns=columns, dtype=object)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- command line


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return ""
    return str(value)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _problem_lines(result: pd.DataFrame, prefix: str, key: str, limit: int = 10) -> list[str]:
    """The first ``limit`` rows whose status is a problem, one line each: row, key, status,
    code and message."""
    status = result[f"{prefix}_status"].astype(object)
    bad = result[status.isin(sorted(PROBLEM_STATUSES))]
    if not len(bad):
        return []
    lines = [f"Rows to look at (first {min(limit, len(bad))} of {len(bad):,}):"]
    codes = bad.get(f"{prefix}_code")
    for label, row in bad.head(limit).iterrows():
        code = _cell(codes.loc[label]) if codes is not None else ""
        message = _cell(row.get(f"{prefix}_message"))
        parts = [f"row {label}", _cell(row.get(key)) or "-", str(row[f"{prefix}_status"])]
        if code:
            parts.append(code)
        lines.append("  " + "  ".join(parts) + (f": {_short(message, 110)}" if message else ""))
    return lines


def _change_lines(result: pd.DataFrame, limit: int = 10) -> list[str]:
    """The first ``limit`` field changes of a Cora result, ``from → to``."""
    if "cora_changes" not in result:
        return []
    table = changes_table(result)
    if not len(table):
        return []
    lines = [f"Field changes (first {min(limit, len(table))} of {len(table):,}):"]
    for rec in table.head(limit).to_dict("records"):
        lines.append(
            f"  row {rec['index']}  {rec['externalId']}  {rec['field']}: "
            f"{_short(repr(rec['from']), 40)} → {_short(repr(rec['to']), 40)}"
        )
    return lines


def cora_summary(
    result: pd.DataFrame, source: str, *, interval: float, rows_per_request: int
) -> list[str]:
    """The lines ``recocora cora upsert`` prints: what ran, counts by status, the first
    problem rows and field changes. ``interval`` (seconds between bulk requests) and
    ``rows_per_request`` (the client's ``MAX_ROWS``) give the real run's estimate.

    >>> res = pd.DataFrame({"cora_status": ["created"] * 3})
    >>> res.attrs.update(dry_run=True, requests=1)
    >>> print("\\n".join(cora_summary(res, "a.csv", interval=20, rows_per_request=2)))
    Cora dry run of a.csv (nothing written): 3 rows, 1 bulk request
    would be:
      created  3
    The real run needs 2 bulk requests, one every 20 s: ~20 s.
    """
    attrs = result.attrs
    local = attrs.get("preview") == "local"
    dry = bool(attrs.get("dry_run"))
    if local:
        head, tail = "Cora preview", ", computed locally (nothing written, no bulk request)"
    elif dry:
        head, tail = "Cora dry run", " (nothing written)"
    else:
        head, tail = "Cora upsert", ""
    bits = [plural(len(result), "row")]
    if "requests" in attrs:
        bits.append(plural(int(attrs["requests"]), "read request" if local else "bulk request"))
    seconds = attrs.get("duration_s", attrs.get("duration"))
    if seconds is not None:
        bits.append(f"{float(seconds):.1f} s")
    lines = [f"{head} of {source}{tail}: {', '.join(bits)}"]
    counts = status_counts(result)
    lines.append("would be:" if local or dry else "outcome:")
    lines.extend(count_lines(counts))
    if local or dry:
        sendable = sum(n for s, n in counts.items() if s not in ("invalid", "skipped"))
        pace = Pace(rows_per_request, interval)
        requests, eta = pace.requests(sendable), pace.seconds(sendable)
        if requests > 1:
            lines.append(f"The real run needs {requests} bulk requests, one every "
                         f"{interval:g} s: {format_duration(eta)}.")
        else:
            lines.append(f"The real run needs {plural(requests, 'bulk request')}: no wait "
                         "for the rate limit.")
    lines.extend(_problem_lines(result, "cora", "cora_external_id"))
    lines.extend(_change_lines(result))
    return lines


def recotap_summary(result: pd.DataFrame, source: str) -> list[str]:
    """The lines ``recocora recotap map-ids`` prints: counts by status, requests, problems.

    >>> res = pd.DataFrame({"recotap_status": ["mapped", "already_mapped"]})
    >>> recotap_summary(res, "crm.csv")[0]
    'Recotap map-ids of crm.csv: 2 rows'
    """
    attrs = result.attrs
    local = attrs.get("preview") == "local"
    head = "Recotap preview (nothing written)" if local else "Recotap map-ids"
    bits = [plural(len(result), "row")]
    if "requests" in attrs:
        bits.append(plural(int(attrs["requests"]), "mapping request"))
    if attrs.get("read_requests"):
        bits.append(plural(int(attrs["read_requests"]), "read request"))
    seconds = attrs.get("duration", attrs.get("duration_s"))
    if seconds is not None:
        bits.append(f"{float(seconds):.1f} s")
    lines = [f"{head} of {source}: {', '.join(bits)}"]
    lines.append("would be:" if local else "outcome:")
    lines.extend(count_lines(status_counts(result)))
    lines.extend(_problem_lines(result, "recotap", "recotap_domain"))
    held = result[result["recotap_status"].astype(object) == "already_mapped"]
    if len(held):
        lines.append(f"{plural(len(held), 'account')} already held another id and "
                     f"{'was' if len(held) == 1 else 'were'} left alone "
                     "(--overwrite replaces them).")
    return lines
