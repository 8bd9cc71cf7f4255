"""A person's review decisions on matches: recorded, saved to a file, re-applied, and turned
into the frame ``map_ids`` writes.

Decisions are keyed by the CRM id (``match_external_id``), not by position, so they survive a
re-run on a re-exported CRM file. The file is a CSV with the matches frame's own column names
(``match_external_id, match_decision, match_domain``), so a matches CSV that a person edited
in a spreadsheet is read the same way as the widget's log.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Hashable, Iterable
from typing import Any, cast

import pandas as pd

from .._validation import failure_frame, validation_error

__all__ = [
    "DECISIONS",
    "accept_proposals",
    "accepted",
    "apply_saved",
    "decide",
    "drop_rejected",
    "parse_decisions",
    "read_decisions",
]

#: What a person can decide about a row's proposed account.
DECISIONS = ("accepted", "rejected", "no_match")

_SPELLINGS = {
    "accepted": "accepted", "accept": "accepted", "yes": "accepted", "y": "accepted",
    "x": "accepted", "ok": "accepted", "rejected": "rejected", "reject": "rejected",
    "no": "rejected", "n": "rejected", "wrong": "rejected", "no_match": "no_match",
    "no match": "no_match", "nomatch": "no_match", "none": "no_match",
}
_FIELDS = ("match_external_id", "match_decision", "match_domain")


def parse_decisions(values: pd.Series[Any]) -> pd.Series[Any]:
    """Decisions as a person may type them (``yes``, ``Accept``, ``no match`` ...) in their
    canonical form; missing stays missing; anything else raises
    :class:`~recocora.ValidationError` naming the rows.

    >>> parse_decisions(pd.Series(["Yes", None, "no match"])).tolist()
    ['accepted', <NA>, 'no_match']
    """
    text = values.astype("string").str.strip().str.lower()
    text = text.where(text.str.len() > 0)
    parsed = text.map(_SPELLINGS, na_action="ignore").astype("string")
    bad = (text.notna() & parsed.isna()).to_numpy()
    if bad.any():
        raise validation_error(
            failure_frame(
                {"index": label, "column": "match_decision", "check": "decision",
                 "value": value, "message": "is not a decision"}
                for label, value in zip(values.index[bad], values[bad], strict=True)
            ),
            advice="Write accepted, rejected or no_match (or leave the cell empty).",
            subject="decisions",
        )
    return cast("pd.Series[Any]", parsed)


def read_decisions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The decisions saved at ``path`` (empty when there is no file yet), in file order."""
    if not os.path.exists(path):
        return cast("pd.DataFrame", pd.DataFrame({f: pd.Series(dtype="string") for f in _FIELDS}))
    saved = pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""])
    missing = [f for f in _FIELDS if f not in saved.columns]
    if missing:
        raise ValueError(
            f"{os.fspath(path)!r} is not a decisions file: it lacks the columns {missing}; "
            "it needs match_external_id, match_decision and match_domain"
        )
    saved = saved[list(_FIELDS)].copy()
    saved["match_decision"] = parse_decisions(saved["match_decision"])
    kept = saved[saved["match_decision"].notna().to_numpy()]
    return cast("pd.DataFrame", kept.reset_index(drop=True))


def _settled(saved: pd.DataFrame) -> pd.DataFrame:
    """Each id's last accept or no-match."""
    final = saved[saved["match_decision"].isin(["accepted", "no_match"]).to_numpy()]
    return cast("pd.DataFrame", final.drop_duplicates("match_external_id", keep="last"))


def drop_rejected(cand: pd.DataFrame, saved: pd.DataFrame) -> pd.DataFrame:
    """Candidates without the ones a person rejected for that id."""
    rejected = saved[(saved["match_decision"] == "rejected").to_numpy()]
    if not len(rejected):
        return cand
    pairs = pd.MultiIndex.from_arrays([rejected["match_external_id"], rejected["match_domain"]])
    mine = pd.MultiIndex.from_arrays(
        [cand["external_id"].astype(str), cand["domain"].astype(str)]
    )
    keep = ~mine.isin(pairs)
    return cast("pd.DataFrame", cand[keep].reset_index(drop=True))


def apply_saved(result: pd.DataFrame, saved: pd.DataFrame,
                candidates: pd.DataFrame) -> pd.DataFrame:
    """``result`` with the saved decisions applied: an accept sets the chosen account (when it
    is still one of the row's candidates), a no-match marks the row, and a row that had a
    candidate rejected is never ``auto`` again without a person."""
    result = result.copy()
    ids = result["match_external_id"].astype(str)
    rejected = saved.loc[(saved["match_decision"] == "rejected").to_numpy(), "match_external_id"]
    again = (ids.isin(rejected) & (result["match_status"] == "auto")).to_numpy()
    result.loc[again, "match_status"] = "review"
    final = _settled(saved).set_index("match_external_id")
    decision = ids.map(final["match_decision"])
    chosen = ids.map(final["match_domain"])
    no_match = (decision == "no_match").fillna(False).to_numpy()
    result.loc[no_match, "match_decision"] = "no_match"
    offered = pd.MultiIndex.from_arrays(
        [candidates["external_id"].astype(str), candidates["domain"].astype(str)]
    )
    name_of = pd.Series(candidates["name"].to_numpy(), index=offered)
    name_of = name_of[~name_of.index.duplicated()]
    wanted = pd.MultiIndex.from_arrays([ids, chosen.astype(str)])
    ok = ((decision == "accepted").fillna(False).to_numpy() & wanted.isin(offered))
    if ok.any():
        result.loc[ok, "match_domain"] = chosen[ok].to_numpy()
        result.loc[ok, "match_name"] = name_of.reindex(wanted[ok]).to_numpy()
        result.loc[ok, "match_decision"] = "accepted"
        result.loc[ok, "match_reason"] = (
            "Accepted in review. " + result.loc[ok, "match_reason"].astype(str)
        )
    return result


def decide(matches: pd.DataFrame, row: Hashable, decision: str,
           domain: str | None = None) -> None:
    """Record a person's ``decision`` on ``row`` of ``matches`` (in place) and append it to
    the decisions file the match was run with, if any. ``domain`` picks another of the row's
    candidates to accept; by default the proposed ``match_domain``."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}")
    if domain is None:
        current: Any = matches.at[row, "match_domain"]
        domain = None if pd.isna(current) else str(current)
    if decision == "accepted":
        if domain is None:
            raise ValueError(f"row {row!r} has no candidate account to accept")
        offered = matches.attrs.get("candidates")
        if isinstance(offered, pd.DataFrame) and len(offered):
            mine = offered[(offered["row"] == row).to_numpy()]
            hits = mine[(mine["domain"].astype(str) == domain).to_numpy()]
            if not len(hits) and domain != matches.at[row, "match_domain"]:
                raise ValueError(f"{domain!r} is not a candidate of row {row!r}")
            if len(hits):
                matches.at[row, "match_name"] = hits["name"].iloc[0]
        matches.at[row, "match_domain"] = domain
    matches.at[row, "match_decision"] = decision
    _save(matches, [(matches.at[row, "match_external_id"], decision, domain or "")])


def accept_proposals(matches: pd.DataFrame, rows: pd.Index) -> None:
    """Accept the proposed account of every row in ``rows`` at once (in place, and saved)."""
    matches.loc[rows, "match_decision"] = "accepted"
    picked = matches.loc[rows]
    _save(matches, zip(picked["match_external_id"], ["accepted"] * len(picked),
                       picked["match_domain"].astype(object).fillna(""), strict=True))


def _save(matches: pd.DataFrame, records: Iterable[tuple[Any, str, Any]]) -> None:
    """Append decisions to the file the match was run with, if any."""
    path = matches.attrs.get("decisions")
    if not path:
        return
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(_FIELDS)
        writer.writerows(records)


def accepted(matches: pd.DataFrame, *, auto: bool = True) -> pd.DataFrame:
    """The rows to write: accepted in review, plus (``auto=True``) the ``auto`` rows nobody
    decided against, as a frame ``[domain, externalId]`` with the CRM index, ready for
    ``map_ids``. Two rows sending different ids to one domain raise
    :class:`~recocora.ValidationError` naming them; repeats of one id on one domain are sent
    once.
    """
    missing = [c for c in ("match_status", "match_domain", "match_external_id")
               if c not in matches.columns]
    if missing:
        raise ValueError(f"not a matches frame: it lacks the columns {missing}")
    decision = (parse_decisions(matches["match_decision"])
                if "match_decision" in matches.columns
                else pd.Series(pd.NA, index=matches.index, dtype="string"))
    take = (decision == "accepted").fillna(False).to_numpy()
    if auto:
        take |= ((matches["match_status"] == "auto").to_numpy() & decision.isna().to_numpy())
    take &= matches["match_domain"].notna().to_numpy()
    out = pd.DataFrame(
        {
            "domain": matches.loc[take, "match_domain"].astype(str),
            "externalId": matches.loc[take, "match_external_id"].astype(str),
        },
        index=matches.index[take],
    )
    out = out[~out.duplicated().to_numpy()]
    clash = out["domain"].duplicated(keep=False).to_numpy()
    if clash.any():
        rows = out[clash]
        raise validation_error(
            failure_frame(
                {"index": label, "column": "match_domain", "check": "one_id_per_domain",
                 "value": d, "message": f"is also taken by another row (this one: id {i})"}
                for label, d, i in zip(rows.index, rows["domain"], rows["externalId"],
                                       strict=True)
            ),
            advice="Keep one row per account: reject or mark no_match the others.",
            subject="accepted matches",
        )
    return cast("pd.DataFrame", out.astype({"domain": "string", "externalId": "string"}))

