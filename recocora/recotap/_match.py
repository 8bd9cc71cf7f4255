"""Match CRM records to Recotap accounts by domain, e-mail and name, and say why.

The shape is the one record-linkage tools agree on: normalise both sides, block on cheap keys
(host, registrable domain, brand, name tokens), score only the blocked pairs, explain every
score in a sentence, accept automatically only on strong evidence (a domain), and send the
grey zone to a person. Every step works on whole columns: pandas merges find the pairs and
rapidfuzz scores them pair by pair (``process.cpdist``), never the full cross product.

>>> matches = match_accounts(crm, accounts, name="company", domain="website")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
from rapidfuzz import fuzz

from .._validation import failure_frame, validation_error
from ._decisions import apply_saved, drop_rejected, read_decisions
from ._domains import domain_problems
from ._match_data import FREE_MAIL_BRANDS, FREE_MAIL_DOMAINS
from ._names import clean_names, compact, initials, name_keys, similarity
from ._psl import registrable

__all__ = [
    "CANDIDATE_COLUMNS",
    "MATCH_COLUMNS",
    "STATUSES",
    "TIERS",
    "MatchRules",
    "match_accounts",
]

#: What a row's match can be, from most to least settled.
STATUSES = ("auto", "review", "ambiguous", "conflict", "none")

#: The kinds of evidence, strongest first; the first three are the only ones that can be
#: accepted without a person.
TIERS = (
    "exact_host",
    "registrable_domain",
    "email_domain",
    "brand_other_suffix",
    "name_exact",
    "name_fuzzy",
)
_STRONG = TIERS[:3]

#: The result's columns, in order.
MATCH_COLUMNS = (
    "match_status",
    "match_domain",
    "match_name",
    "match_score",
    "match_tier",
    "match_reason",
    "match_external_id",
    "match_decision",
)

#: ``attrs["candidates"]``: the best candidates of each row, one per line.
CANDIDATE_COLUMNS = ("row", "external_id", "rank", "domain", "name", "score", "tier", "reason")

_STRING = pd.StringDtype()
Columns = Hashable | Sequence[Hashable] | None


class MatchRules:
    """The thresholds of the matcher, as class constants (tests shrink or tighten them).

    ``TOP`` candidates are kept per row; a blocking key shared by more than ``MAX_BLOCK``
    accounts is too common to say anything ("global", "group") and is not used; fuzzy name
    candidates need ``FUZZY_MIN`` similarity (0-1); two candidates closer than
    ``AMBIGUOUS_GAP`` make a row ``ambiguous``; a domain match whose names are less than
    ``NAMES_DISAGREE`` alike goes to review.
    """

    TOP = 5
    MAX_BLOCK = 50
    FUZZY_MIN = 0.75
    AMBIGUOUS_GAP = 0.05
    NAMES_DISAGREE = 0.6
    MIN_BRAND = 3


# -- domains ------------------------------------------------------------------------------------


def _columns(frame: pd.DataFrame, spec: Columns) -> list[Hashable]:
    if spec is None:
        return []
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return [spec]


def _hosts(values: pd.Series[Any], source: str) -> pd.DataFrame:
    """``row, host, source`` for each value that gives a host name."""
    host = domain_problems(values.reset_index(drop=True))["normalized"]
    keep = host.notna().to_numpy()
    return cast("pd.DataFrame", pd.DataFrame(
        {"row": np.flatnonzero(keep), "host": host[keep].to_numpy(), "source": source}
    ))


def _with_registrable(keys: pd.DataFrame) -> pd.DataFrame:
    reg = registrable(keys["host"])
    keys = keys.assign(reg=reg["domain"].to_numpy(), brand=reg["brand"].to_numpy())
    return cast("pd.DataFrame", keys[keys["reg"].notna()])


def _crm_hosts(crm: pd.DataFrame, domain: list[Hashable], email: list[Hashable]) -> pd.DataFrame:
    parts = [_hosts(crm[c], "domain") for c in domain]
    for c in email:
        text = crm[c].astype(_STRING).str.extract(r"@([^@\s;,<>\"']+)", expand=False)
        parts.append(_hosts(text, "email"))
    if not parts:
        empty: pd.DataFrame = pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "row" else _STRING)
             for c in ("row", "host", "source", "reg", "brand")}
        )
        return empty
    keys = _with_registrable(pd.concat(parts, ignore_index=True).drop_duplicates(["row", "host"]))
    free = keys["reg"].isin(FREE_MAIL_DOMAINS) | keys["brand"].isin(FREE_MAIL_BRANDS)
    return cast("pd.DataFrame", keys[~free.to_numpy()])


def _prepare_accounts(accounts: pd.DataFrame) -> pd.DataFrame:
    for column in ("name", "domain"):
        if column not in accounts.columns:
            raise ValueError(
                f"accounts has no {column!r} column; pass rtp.unmapped_accounts() or any "
                "frame with 'name' and 'domain' columns"
            )
    raw = accounts["domain"].reset_index(drop=True)
    acc = pd.DataFrame(
        {
            "domain": raw.astype(object).to_numpy(),
            "name": accounts["name"].astype(object).to_numpy(),
            "host": domain_problems(raw)["normalized"].to_numpy(),
        }
    )
    acc = acc[acc["host"].notna()].drop_duplicates("host")
    reg = registrable(acc["host"])
    acc = acc.assign(reg=reg["domain"], brand=reg["brand"])
    acc["clean"] = clean_names(acc["name"]).to_numpy()
    return cast("pd.DataFrame", acc.reset_index(drop=True))


# -- candidates ---------------------------------------------------------------------------------


def _pairs(left: pd.DataFrame, right: pd.DataFrame, on: str, cap: int) -> pd.DataFrame:
    """Rows of ``left`` and accounts of ``right`` sharing key ``on``, skipping keys that more
    than ``cap`` accounts share."""
    sizes = right[on].map(right[on].value_counts())
    right = right[(sizes <= cap).to_numpy()]
    return cast("pd.DataFrame", left.merge(right, on=on, how="inner"))


def _domain_candidates(keys: pd.DataFrame, acc: pd.DataFrame, cap: int) -> pd.DataFrame:
    side = acc.reset_index(names="acc")[["acc", "host", "reg", "brand"]]
    exact = keys.merge(side[["acc", "host"]], on="host")
    exact["tier"] = np.where(exact["source"] == "email", "email_domain", "exact_host")
    exact["base"] = np.where(exact["source"] == "email", 0.92, 1.0)
    same = _pairs(keys, side.rename(columns={"host": "acc_host"})[["acc", "reg", "acc_host"]],
                  "reg", cap)
    same = same[same["host"] != same["acc_host"]]
    apex = (same["acc_host"] == same["reg"]).to_numpy()
    email = (same["source"] == "email").to_numpy()
    same["tier"] = np.where(email, "email_domain", "registrable_domain")
    same["base"] = np.where(email, np.where(apex, 0.9, 0.85), np.where(apex, 0.95, 0.88))
    brands = keys[keys["brand"].str.len() >= MatchRules.MIN_BRAND]
    other = _pairs(brands, side.rename(columns={"reg": "acc_reg"})[["acc", "brand", "acc_reg"]],
                   "brand", cap)
    other = other[other["reg"] != other["acc_reg"]]
    other["tier"] = "brand_other_suffix"
    other["base"] = 0.9
    cols = ["row", "acc", "tier", "base", "host", "reg", "brand"]
    return cast("pd.DataFrame", pd.concat([exact[cols], same[cols], other[cols]],
                                          ignore_index=True))


def _name_candidates(clean: pd.Series[Any], acc: pd.DataFrame, cap: int) -> pd.DataFrame:
    left = name_keys(clean.reset_index(drop=True)).rename(columns={"pos": "row"})
    right = name_keys(acc["clean"]).rename(columns={"pos": "acc"})
    pairs = _pairs(left, right, "key", cap)[["row", "acc"]].drop_duplicates()
    out = pairs.assign(tier="name_fuzzy", base=0.0, host=None, reg=None, brand=None)
    return cast("pd.DataFrame", out)


def _score(cand: pd.DataFrame, crm_clean: pd.Series[Any], acc: pd.DataFrame) -> pd.DataFrame:
    """Name similarities, scores and one candidate per (row, account), the strongest."""
    # An edit similarity cannot exceed 1 - |len a - len b| / (len a + len b): name pairs too
    # unequal in length to reach FUZZY_MIN are dropped before anything is scored.
    left = crm_clean.str.len().fillna(0).to_numpy(dtype=float)[cand["row"].to_numpy()]
    right = acc["clean"].str.len().fillna(0).to_numpy(dtype=float)[cand["acc"].to_numpy()]
    reach = 1 - np.abs(left - right) / np.maximum(left + right, 1)
    by_name = (cand["tier"] == "name_fuzzy").to_numpy()
    cand = cand[~by_name | (reach >= MatchRules.FUZZY_MIN)].reset_index(drop=True)
    rows, accs = cand["row"].to_numpy(), cand["acc"].to_numpy()
    a = crm_clean.iloc[rows].reset_index(drop=True)
    b = acc["clean"].iloc[accs].reset_index(drop=True)
    known = (a.notna() & b.notna()).to_numpy()
    ratio = similarity(a, b, fuzz.token_sort_ratio)
    # Whether names agree only matters beside domain evidence: not scored for name pairs.
    overlap = np.zeros(len(cand))
    beside = (cand["tier"] != "name_fuzzy").to_numpy()
    overlap[beside] = similarity(a[beside], b[beside], fuzz.token_set_ratio)
    # Per name once, then gathered per pair: regex work is per row, not per candidate.
    crm_compact, acc_compact = compact(crm_clean)[rows], compact(acc["clean"])[accs]
    crm_initials, acc_initials = initials(crm_clean)[rows], initials(acc["clean"])[accs]
    exact = known & (crm_compact == acc_compact)
    acronym = known & ((crm_initials == acc_compact) | (acc_initials == crm_compact))
    ratio = np.where(exact, 1.0, ratio)
    cand = cand.reset_index(drop=True).assign(
        known=known, ratio=ratio, agree=np.maximum(overlap, np.where(acronym, 1.0, 0.0))
    )
    names = cand["tier"] == "name_fuzzy"
    cand.loc[names & exact, "tier"] = "name_exact"
    keep = ~names.to_numpy() | (ratio >= MatchRules.FUZZY_MIN)
    cand = cand[keep]
    ratio, known = cand["ratio"].to_numpy(), cand["known"].to_numpy()
    tier, base = cand["tier"].to_numpy(), cand["base"].to_numpy()
    strong = np.isin(tier, _STRONG)
    score = np.select(
        [strong, tier == "brand_other_suffix", tier == "name_exact"],
        [base * np.where(known, 0.8 + 0.2 * ratio, 0.9),
         base * np.where(known, 0.6 + 0.4 * ratio, 0.7),
         np.full(len(cand), 0.85)],
        0.85 * ratio,
    )
    cand = cand.assign(score=np.round(score, 4), rank_tier=pd.Categorical(tier, TIERS).codes)
    cand = cand.sort_values(["row", "score", "rank_tier"], ascending=[True, False, True],
                            kind="stable")
    return cast("pd.DataFrame", cand.drop_duplicates(["row", "acc"]).reset_index(drop=True))


# -- reasons ------------------------------------------------------------------------------------


def _pct(values: np.ndarray[Any, Any]) -> pd.Series[Any]:
    return cast("pd.Series[Any]", pd.Series(np.round(values * 100).astype(int)).astype(str) + "%")


def _reasons(cand: pd.DataFrame, crm_names: pd.Series[Any], acc: pd.DataFrame) -> pd.Series[Any]:
    """One sentence per candidate a person can check against the two records."""
    n = len(cand)
    host = cand["host"].astype(object).fillna("").astype(str).reset_index(drop=True)
    reg = cand["reg"].astype(object).fillna("").astype(str).reset_index(drop=True)
    brand = cand["brand"].astype(object).fillna("").astype(str).reset_index(drop=True)
    acc_rows = acc.iloc[cand["acc"].to_numpy()].reset_index(drop=True)
    their = acc_rows["domain"].astype(str)
    crm_name = crm_names.iloc[cand["row"].to_numpy()].astype(object).fillna("")
    crm_name = crm_name.astype(str).reset_index(drop=True)
    acc_name = acc_rows["name"].astype(object).fillna("").astype(str)
    ratio = _pct(cand["ratio"].to_numpy())
    tier = cand["tier"].to_numpy()
    evidence = np.select(
        [tier == "exact_host", tier == "registrable_domain", tier == "email_domain",
         tier == "brand_other_suffix", tier == "name_exact"],
        [("Website " + host + " is the account's domain " + their + ".").to_numpy(),
         ("Website " + host + " and the account's domain " + their
          + " share the registrable domain " + reg + ".").to_numpy(),
         ("E-mail domain " + host + " belongs to the account's domain " + their + ".").to_numpy(),
         ("Same brand '" + brand + "' under another suffix (" + reg + " vs " + their
          + "): check it is the same company.").to_numpy(),
         ("Names are the same once cleaned ('" + crm_name + "' vs '" + acc_name
          + "'), but a name alone is never accepted automatically.").to_numpy()],
        ("Names are " + ratio + " alike ('" + crm_name + "' vs '" + acc_name
         + "'), but a name alone is never accepted automatically.").to_numpy(),
    )
    known = cand["known"].to_numpy()
    disagree = known & (cand["agree"].to_numpy() < MatchRules.NAMES_DISAGREE)
    names_note = np.select(
        [~known, disagree],
        [np.full(n, " No name on both sides to compare."),
         (" But the names disagree ('" + crm_name + "' vs '" + acc_name
          + "'): parent, subsidiary or reseller?").to_numpy()],
        (" Names agree (" + ratio + ").").to_numpy(),
    )
    by_name = np.isin(tier, ("name_exact", "name_fuzzy"))
    sentences = np.where(by_name, evidence, evidence + names_note)
    out: pd.Series[Any] = pd.Series(sentences, dtype=object)
    return out


# -- statuses -----------------------------------------------------------------------------------


def _shown(values: pd.Series[Any]) -> pd.Series[Any]:
    """Values as text for a sentence, positionally indexed so sentences line up."""
    return values.astype(object).fillna("").astype(str).reset_index(drop=True)


def _statuses(cand: pd.DataFrame, n_rows: int, ids: np.ndarray[Any, Any]) -> pd.DataFrame:
    """The row-level answer from each row's best two candidates."""
    first = cand.groupby("row", sort=False).head(1).set_index("row")
    second = cand.groupby("row", sort=False).nth(1).set_index("row")
    rows = pd.RangeIndex(n_rows)
    best = first.reindex(rows)
    runner = second["score"].reindex(rows)
    has = best["score"].notna().to_numpy()
    gap = (best["score"] - runner).fillna(np.inf).to_numpy()
    strong = best["tier"].isin(_STRONG).to_numpy()
    disagree = (best["known"].fillna(False).astype(bool)
                & (best["agree"] < MatchRules.NAMES_DISAGREE)).to_numpy()
    # A domain beats any brand or name evidence, however close their scores.
    outranks = strong & ~second["tier"].reindex(rows).isin(_STRONG).to_numpy()
    close = (gap < MatchRules.AMBIGUOUS_GAP) & ~outranks
    status = np.select(
        [~has, close, strong & ~disagree], ["none", "ambiguous", "auto"], "review"
    ).astype(object)
    reason = best["reason"].astype(object).fillna("").astype(str).reset_index(drop=True)
    two = ("Two accounts are about as likely: " + _shown(best["domain"]) + " ("
           + _shown(best["score"]) + ") and " + _shown(second["domain"].reindex(rows))
           + " (" + _shown(runner) + "). Best: " + reason)
    reason = reason.where(~close, two)
    reason = reason.where(has, "No account shares a domain, an e-mail domain or a similar name.")
    reason = reason.to_numpy(dtype=object)
    # Two different CRM ids taking one account: neither may go through without a person.
    auto = status == "auto"
    claims = pd.DataFrame({"acc": best["acc"].to_numpy()[auto], "id": ids[auto]})
    owners = claims.groupby("acc")["id"].nunique()
    contested = best["acc"].isin(owners.index[owners > 1]).to_numpy() & auto
    if contested.any():
        rivals = pd.Series(ids[contested]).groupby(best["acc"].to_numpy()[contested]).agg(
            lambda s: ", ".join(dict.fromkeys(map(str, s)))
        )
        named = pd.Series(best["acc"].to_numpy()[contested]).map(rivals)
        status[contested] = "conflict"
        reason[contested] = (
            "Conflict: CRM ids " + named + " all claim the account "
            + _shown(best["domain"][contested]) + "; choose the one that owns it. "
            + pd.Series(reason[contested])
        ).to_numpy()
    return cast("pd.DataFrame", pd.DataFrame(
        {
            "match_status": status,
            "match_domain": best["domain"].to_numpy(),
            "match_name": best["name"].to_numpy(),
            "match_score": best["score"].to_numpy(),
            "match_tier": best["tier"].to_numpy(),
            "match_reason": reason,
        }
    ))


# -- the whole match ----------------------------------------------------------------------------


def _external_ids(crm: pd.DataFrame, external_id: Hashable | None) -> np.ndarray[Any, Any]:
    if external_id is None and "externalId" in crm.columns:
        external_id = "externalId"
    if external_id is None:
        values = pd.Series(crm.index.map(str), dtype=object)
    else:
        values = crm[external_id].reset_index(drop=True)
    missing = values.isna().to_numpy()
    if missing.any():
        raise validation_error(
            failure_frame(
                {"index": crm.index[int(i)], "column": external_id, "check": "not_null",
                 "value": None, "message": "has no external id to write"}
                for i in np.flatnonzero(missing)
            ),
            advice="Fill the ids, or drop those rows before matching.",
            subject="matching",
        )
    return cast("np.ndarray[Any, Any]", values.astype(str).to_numpy(dtype=object))


def _check_columns(crm: pd.DataFrame, given: dict[str, list[Hashable]]) -> None:
    problems = [
        {"index": None, "column": c, "check": "column_exists", "value": None,
         "message": f"is not a column of the CRM frame (passed as {arg}=)"}
        for arg, columns in given.items() for c in columns if c not in crm.columns
    ]
    if problems:
        raise validation_error(
            failure_frame(problems), advice="Name columns the frame has.", subject="matching"
        )
    if not any(given.values()):
        raise ValueError("say what to match on: name=, domain= or email= (a column each)")


def match_accounts(
    crm: pd.DataFrame,
    accounts: pd.DataFrame,
    *,
    name: Hashable | None = None,
    domain: Columns = None,
    email: Columns = None,
    external_id: Hashable | None = None,
    decisions: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Match each CRM row to the Recotap account it most likely is, and say why.

    ``accounts`` is what ``rtp.unmapped_accounts()`` returns (any frame with ``name`` and
    ``domain``). ``name`` is the CRM's company-name column; ``domain`` and ``email`` are a
    column or a list of columns (websites, e-mail addresses). ``external_id`` is the column
    of ids to write (default: ``externalId`` when there is one, else the index).

    Returns a frame with the CRM frame's index and columns ``match_status`` (``auto``:
    strong domain evidence and nothing against it; ``review``: a person should look;
    ``ambiguous``: two accounts are about as likely; ``conflict``: CRM rows with different
    ids would take one account; ``none``), ``match_domain`` (the account's domain exactly
    as Recotap lists it), ``match_name``, ``match_score`` (0-1), ``match_tier`` (one of
    ``exact_host``, ``registrable_domain``, ``email_domain``, ``brand_other_suffix``,
    ``name_exact``, ``name_fuzzy``), ``match_reason`` (a sentence),
    ``match_external_id`` and ``match_decision`` (``accepted``, ``rejected``, ``no_match``
    or missing). ``attrs["candidates"]`` lists every row's best candidates, one per line.
    A name alone is never accepted automatically, nor two rows onto one account.

    ``decisions="decisions.csv"`` re-applies the decisions saved there (by the review
    widget, or a matches CSV a person edited) and is where the widget saves new ones.

    >>> m = recocora.match_accounts(crm, rtp.unmapped_accounts(all=True),
    ...                             name="company", domain="website", email="email")
    ... # doctest: +SKIP
    """
    spec = {"name": _columns(crm, name), "domain": _columns(crm, domain),
            "email": _columns(crm, email)}
    _check_columns(crm, spec)
    ids = _external_ids(crm, external_id)
    acc = _prepare_accounts(accounts)
    names = (crm[spec["name"][0]].reset_index(drop=True) if spec["name"]
             else pd.Series([None] * len(crm), dtype=object))
    crm_clean = clean_names(names)
    cap = MatchRules.MAX_BLOCK
    keys = _crm_hosts(crm, spec["domain"], spec["email"])
    cand = pd.concat(
        [_domain_candidates(keys, acc, cap), _name_candidates(crm_clean, acc, cap)],
        ignore_index=True,
    )
    cand = _score(cand, crm_clean, acc)
    cand["reason"] = _reasons(cand, names, acc).to_numpy()
    cand["domain"] = acc["domain"].to_numpy()[cand["acc"].to_numpy()]
    cand["name"] = acc["name"].to_numpy()[cand["acc"].to_numpy()]
    cand["external_id"] = ids[cand["row"].to_numpy()]
    saved = read_decisions(decisions) if decisions is not None else None
    if saved is not None:
        cand = drop_rejected(cand, saved)
    top = cand.groupby("row", sort=False).head(MatchRules.TOP).copy()
    result = _statuses(top, len(crm), ids)
    result["match_score"] = result["match_score"].astype(float)
    result["match_external_id"] = ids
    result["match_decision"] = pd.array([None] * len(crm), dtype=_STRING)
    result.index = crm.index
    result = result[list(MATCH_COLUMNS)]
    top["rank"] = top.groupby("row").cumcount() + 1
    top["row"] = crm.index[top["row"].to_numpy()]
    candidates = top[list(CANDIDATE_COLUMNS)].reset_index(drop=True)
    if saved is not None:
        result = apply_saved(result, saved, candidates)
    result.attrs["candidates"] = candidates
    result.attrs["decisions"] = None if decisions is None else os.fspath(decisions)
    return result
