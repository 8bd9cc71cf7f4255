"""``recocora demo``: the whole story on the embedded sandbox, end to end, in under a minute.

A messy CRM export is validated, fixed with the helpers, previewed for free, upserted into
Cora; then CRM ids are backfilled into Recotap by domain. Every step prints the line a user
would type and what came back. Nothing leaves this machine: both services are the sandbox,
started in this process on a loopback port, and its keys are never printed.

>>> from recocora._demo import run
>>> run(rows=200, progress=False)  # doctest: +SKIP
0
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import numpy as np
import pandas as pd

from ._demo_match import match_export
from ._progress import Pace, format_duration
from ._report import changes_table, count_lines, status_counts
from ._validation import failure_message
from .cora._client import CoraClient
from .cora._phones import normalize_phone
from .cora.accessor import CoraAccessor
from .recotap._client import RecotapClient
from .recotap._domains import normalize_domain
from .recotap._match import STATUSES as MATCH_STATUSES
from .recotap.accessor import RecotapAccessor
from .sandbox import Sandbox
from .widgets._review import MatchReview

__all__ = ["crm_companies", "messy_accounts", "run"]

#: Cora's real bulk rate window, for the estimates the demo prints.
REAL_WINDOW = 20.0
#: The sandbox's window during the demo, so the run stays short.
DEMO_WINDOW = 0.5

_BUCKETS = ("current", "30-60", "60-90", "90+")
_FIRST = ("Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gil", "Ivy", "Jay", "Kim", "Lou", "Max")
_LAST = ("Abbott", "Baker", "Cole", "Drake", "Ellis", "Frost", "Grant", "Hale", "Irwin")


def _formatted_phone(e164: str, style: int) -> str:
    """A US number as people type it: ``(512) 555-0142``, ``512.555.0142``, ..."""
    area, mid, last = e164[2:5], e164[5:8], e164[8:]
    return (
        f"({area}) {mid}-{last}",
        f"{area}.{mid}.{last}",
        f"+1 {area} {mid} {last}",
        f"{area}-{mid}-{last}",
        f"1{area}{mid}{last}",
    )[style % 5]


def messy_accounts(stored: Sequence[Mapping[str, Any]], rows: int,
                   seed: int = 5) -> pd.DataFrame:
    """A CRM export of ``rows`` accounts with the usual mess, built against ``stored`` (the
    accounts Cora already holds, as the sandbox returns them).

    About 60 % of the rows are existing accounts (half with a changed bucket, balance or
    client status, half exactly as stored), the rest new accounts whose ids were read as
    floats (``700001.0``). Phones are formatted every which way, some cells are blank, the
    export carries the read-only ``updatedAt``, one row is duplicated, one new account has
    no phone (Cora will refuse to create it) and one phone cannot be read at all.

    >>> with Sandbox(seed="demo") as sb:  # doctest: +SKIP
    ...     df = messy_accounts(sb.cora_accounts(), rows=100)
    >>> len(df)  # doctest: +SKIP
    101
    """
    rng = random.Random(seed)
    n_existing = min(len(stored), int(rows * 0.6))
    n_new = rows - n_existing
    records: list[dict[str, Any]] = []
    for i, doc in enumerate(stored[:n_existing]):
        balance = doc.get("currentBalance")
        row: dict[str, Any] = {
            "externalId": doc["externalId"],
            "phoneNumber": _formatted_phone(str(doc["phoneNumber"]), rng.randrange(5)),
            "bucket": doc.get("bucket"),
            "clientStatus": doc.get("clientStatus"),
            "currentBalance": balance,
            "portfolioId": doc.get("portfolioId"),
            "metadata.filenumber": doc.get("metadata", {}).get("filenumber"),
            "person.name.first": doc.get("person", {}).get("name", {}).get("first"),
            "person.name.last": doc.get("person", {}).get("name", {}).get("last"),
        }
        if i % 2 == 0:  # a change since the last sync
            row["bucket"] = _BUCKETS[(_BUCKETS.index(str(row["bucket"])) + 1) % 4]
            if isinstance(balance, (int, float)) and i % 4 == 0:
                row["currentBalance"] = round(float(balance) - rng.choice((25, 50, 100)), 2)
        if i % 7 == 3:
            row["clientStatus"] = None  # a blank cell: left out, the stored value stays
        records.append(row)
    for j in range(n_new):
        records.append({
            "externalId": float(700001 + j),  # an id column read from a CSV as floats
            "phoneNumber": _formatted_phone(f"+1512555{j % 10000:04d}", j),
            "bucket": "current",
            "clientStatus": "open" if j % 5 else None,
            "currentBalance": round(rng.uniform(40, 4000), 2),
            "portfolioId": "pf_consumer_2024",
            "metadata.filenumber": f"F-{700001 + j}",
            "person.name.first": rng.choice(_FIRST),
            "person.name.last": rng.choice(_LAST),
        })
    frame: pd.DataFrame = pd.DataFrame.from_records(records)
    frame["updatedAt"] = "2025-01-31T09:00:00Z"  # exported with the rest, read-only in Cora
    order = np.random.default_rng(seed).permutation(len(frame))
    frame = frame.iloc[order].reset_index(drop=True)
    # One new account without a phone, one phone nobody can read.
    new_rows = np.flatnonzero(frame["externalId"].map(lambda v: isinstance(v, float)).to_numpy())
    old_rows = np.flatnonzero(frame["externalId"].map(lambda v: isinstance(v, str)).to_numpy())
    if len(new_rows):
        frame.loc[int(new_rows[0]), "phoneNumber"] = None
    if len(old_rows):
        frame.loc[int(old_rows[-1]), "phoneNumber"] = "ask front desk"
    # The same account exported twice.
    if len(old_rows) > 1:
        frame = pd.concat([frame, frame.iloc[[int(old_rows[1])]]], ignore_index=True)
    return frame


def crm_companies(accounts: Sequence[Mapping[str, Any]], rows: int,
                  seed: int = 9) -> pd.DataFrame:
    """A CRM's company list (``company``, ``website``, ``crm_id``) of about ``rows`` rows,
    built against ``accounts`` (Recotap's, as the sandbox returns them).

    Most rows are companies Recotap holds without an id; some it already holds with the same
    id, some with another one; a few it does not know; one company appears twice. Websites
    are written as people write them (``https://www.acme.com/``, ``ACME.COM``).

    >>> with Sandbox(seed="demo") as sb:  # doctest: +SKIP
    ...     crm = crm_companies(sb.recotap_accounts(), rows=60)
    """
    rng = random.Random(seed)
    plain = [a for a in accounts if a.get("domain") and not a.get("domain", "").startswith("xn--")]
    unmapped = [a for a in plain if not a.get("externalId")]
    mapped = [a for a in plain if a.get("externalId")]
    n_same = max(1, rows // 10)
    n_other = max(1, rows // 10)
    n_unknown = max(1, rows // 15)
    n_new = max(1, min(len(unmapped), rows - n_same - n_other - n_unknown))

    def website(domain: str, k: int) -> str:
        return (f"https://www.{domain}/", domain.upper(), f"http://{domain}/contact",
                f"www.{domain}", domain)[k % 5]

    records = []
    for k, a in enumerate(unmapped[:n_new]):
        records.append({"company": a.get("name"), "website": website(str(a["domain"]), k),
                        "crm_id": f"CRM-{50001 + k}"})
    for k, a in enumerate(mapped[:n_same]):
        records.append({"company": a.get("name"), "website": website(str(a["domain"]), k),
                        "crm_id": a["externalId"]})
    for k, a in enumerate(mapped[n_same : n_same + n_other]):
        records.append({"company": a.get("name"), "website": website(str(a["domain"]), k),
                        "crm_id": f"CRM-{60001 + k}"})
    for k in range(n_unknown):
        records.append({"company": f"Prospect {k + 1} LLC",
                        "website": f"https://prospect{k + 1}-{rng.randrange(10**6)}.io",
                        "crm_id": f"CRM-{70001 + k}"})
    rng.shuffle(records)
    if records:
        # The CRM holds one company twice; its later row is the one that counts.
        again = dict(records[0])
        again["crm_id"] = f"CRM-{80001}"
        records.append(again)
    crm: pd.DataFrame = pd.DataFrame.from_records(
        records, columns=["company", "website", "crm_id"]
    )
    return crm


class _Story:
    """Prints numbered steps, the code they run, and timings."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0
        self.started = time.monotonic()

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)
        self.out.flush()

    def code(self, *lines: str) -> None:
        self.say(*(f"  >>> {line}" for line in lines))

    @contextmanager
    def section(self, title: str) -> Iterator[None]:
        self.step += 1
        self.say("", f"{self.step}. {title}")
        began = time.monotonic()
        yield
        self.say(f"  ({time.monotonic() - began:.1f} s)")


def _indent(text: str, by: str = "  ") -> list[str]:
    return [by + line for line in text.splitlines()]


def _request_counts(sb: Sandbox, since: int = 0) -> dict[tuple[str, str], int]:
    tally: dict[tuple[str, str], int] = {}
    for record in sb.requests[since:]:
        key = (record.api, record.method)
        tally[key] = tally.get(key, 0) + 1
    return tally


def _agree(a: pd.Series[Any], b: pd.Series[Any]) -> int:
    return int((a.astype(object) == b.astype(object)).sum())


def run(rows: int = 1000, *, progress: bool = True, out: TextIO | None = None) -> int:
    """Run the demo on a fresh embedded sandbox; returns the exit code (0 on success).

    ``rows`` sizes the messy accounts frame (the CRM frame is about a third of it);
    ``progress=False`` turns off the progress bars (they go to stderr). The story goes to
    ``out`` (stdout by default).

    >>> run(rows=200, progress=False)  # doctest: +SKIP
    0
    """
    stream = out if out is not None else sys.stdout
    story = _Story(stream)
    with Sandbox(seed="demo", cora_window=DEMO_WINDOW) as sb:
        story.say(
            "recocora demo: a CRM export into Cora, then CRM ids into Recotap.",
            f"Both services are the embedded sandbox on {sb.base_url} (demo seed: 2,000 Cora "
            "accounts ext-000001..., 1,500 Recotap accounts), its bulk window shortened to "
            f"{DEMO_WINDOW:g} s so this takes seconds; estimates below use Cora's real "
            f"{REAL_WINDOW:g} s. Progress bars go to stderr.",
        )
        cora = CoraClient(sb.cora_key, sb.cora_base_url, min_interval=DEMO_WINDOW)
        rtp = RecotapClient(sb.recotap_key, sb.recotap_base_url)
        try:
            cora_res = _cora_part(story, sb, cora, rows, progress)
            rtp_res = _recotap_part(story, sb, rtp, max(20, rows // 3), progress)
            _match_part(story, rtp, progress)
        finally:
            cora.close()
            rtp.close()
        _summary(story, sb, cora_res, rtp_res)
    return 0


def _cora_part(story: _Story, sb: Sandbox, cora: CoraClient, rows: int,
               progress: bool) -> pd.DataFrame:
    with story.section("A messy export"):
        df = messy_accounts(sb.cora_accounts(), rows)
        ids = df["externalId"]
        n_float = int(ids.map(lambda v: isinstance(v, float)).sum())
        story.say(
            f"  {len(df):,} rows, columns {', '.join(df.columns)}.",
            f"  {n_float:,} ids read as floats (700001.0 ...), phones typed every which way, "
            "blank cells, a duplicated row, the read-only updatedAt.",
        )
        shown = ["externalId", "phoneNumber", "bucket", "clientStatus", "updatedAt"]
        story.say(*_indent(df[shown].head(4).to_string(), "    "))

    with story.section("Validate: every row checked before anything is sent"):
        story.code("df.cora.validate()")
        failures = CoraAccessor(df).validate()
        story.say(*_indent(failure_message(failures, advice="", limit=5).rstrip()))

    with story.section("Fix it with the helpers"):
        story.code(
            "df = df.drop(columns=['updatedAt'])",
            "df['phoneNumber'] = recocora.normalize_phone(df['phoneNumber'], errors='keep')",
            "df = df.drop_duplicates(subset='externalId', keep='last')",
            "df.cora.validate()",
        )
        df = df.drop(columns=["updatedAt"])
        df["phoneNumber"] = normalize_phone(df["phoneNumber"], errors="keep")
        df = df.drop_duplicates(subset="externalId", keep="last")
        failures = CoraAccessor(df).validate()
        story.say(*_indent(failure_message(
            failures,
            advice="on_invalid='skip' sends the valid rows and marks this one invalid.",
        ).rstrip()))
        story.say("  (ids like 700001.0 need no fix: they are sent as '700001')")

    with story.section("Preview for free: df.cora.diff() reads the accounts, writes nothing"):
        story.code("preview = df.cora.diff(client=cora, on_invalid='skip')")
        before = len(sb.requests)
        preview = CoraAccessor(df).diff(client=cora, on_invalid="skip", progress=progress)
        used = _request_counts(sb, before)
        story.say(*count_lines(status_counts(preview)))
        changes = changes_table(preview)
        story.say(f"  {len(changes):,} field changes, for example:")
        for rec in changes.head(4).to_dict("records"):
            story.say(f"    {rec['externalId']}  {rec['field']}: {rec['from']!r} -> {rec['to']!r}")
        bulk = int(preview.attrs.get("bulk_requests", 0))
        real = Pace(cora.MAX_ROWS, REAL_WINDOW)
        eta = real.seconds(int((preview["cora_status"] != "invalid").sum()))
        story.say(
            f"  Used {used.get(('cora', 'GET'), 0)} GET requests and no bulk slot. The real "
            f"upsert needs {bulk} bulk request{'s' if bulk != 1 else ''}: "
            f"{format_duration(eta)} at one per {REAL_WINDOW:g} s "
            f"(a dry run would spend the same; 100,000 rows take "
            f"{format_duration(real.seconds(100_000))})."
        )

    with story.section(f"Upsert: chunks of {cora.MAX_ROWS}, signed, rate-limited, every row "
                       "accounted for"):
        story.code("res = df.cora.upsert(client=cora, on_invalid='skip', include_changes=True)")
        res = CoraAccessor(df).upsert(client=cora, on_invalid="skip", include_changes=True,
                                      progress=progress)
        story.say(*count_lines(status_counts(res)))
        agree = _agree(res["cora_status"], preview["cora_status"])
        story.say(f"  The preview called {agree:,} of {len(res):,} rows right.")
        odd = res[res["cora_status"].isin(["failed", "invalid"])]
        for label, row in odd.head(3).iterrows():
            message = str(row["cora_message"])
            message = message if len(message) <= 90 else message[:89] + "…"
            story.say(f"    row {label} {row['cora_status']} {row['cora_code']}: {message}")
        story.code("df.join(res)[['externalId', 'bucket', 'cora_status']]")
        joined = df.join(res)[["externalId", "bucket", "cora_status"]]
        story.say(*_indent(joined.head(3).to_string(), "    "))
    return res


def _recotap_part(story: _Story, sb: Sandbox, rtp: RecotapClient, rows: int,
                  progress: bool) -> pd.DataFrame:
    with story.section("Recotap: which accounts have no CRM id yet?"):
        story.code(f"unmapped = rtp.unmapped_accounts(limit={rtp.MAX_LIMIT})")
        unmapped = rtp.unmapped_accounts(limit=rtp.MAX_LIMIT)
        story.say(f"  {len(unmapped):,} accounts without an id, e.g. "
                  f"{', '.join(unmapped['domain'].head(3).astype(str))}")

    with story.section("Match the CRM's companies by domain"):
        crm = crm_companies(sb.recotap_accounts(), rows)
        story.code(
            "crm['domain'] = recocora.normalize_domain(crm['website'])",
            "crm.merge(unmapped, on='domain')",
        )
        crm["domain"] = normalize_domain(crm["website"])
        matched = crm.merge(unmapped, on="domain")
        story.say(
            f"  {len(crm):,} CRM rows; {len(matched):,} match an account without an id. "
            "The others: accounts already mapped, companies Recotap does not know, "
            "a company listed twice.",
        )
        story.say(*_indent(crm.head(3).to_string(max_colwidth=28), "    "))

    accessor = RecotapAccessor(crm)
    with story.section("Preview: what the mapping would do, nothing written"):
        story.code("preview = crm.recotap.diff(client=rtp, external_id='crm_id')")
        preview = accessor.diff(client=rtp, external_id="crm_id", progress=progress)
        story.say(*count_lines(status_counts(preview)))

    with story.section("Map the ids (no existing id is overwritten), then read them back"):
        story.code("res = crm.recotap.map_ids(client=rtp, external_id='crm_id', verify=True)")
        res = accessor.map_ids(client=rtp, external_id="crm_id", verify=True, progress=progress)
        story.say(*count_lines(status_counts(res)))
        agree = _agree(res["recotap_status"], preview["recotap_status"])
        story.say(f"  The preview called {agree:,} of {len(res):,} rows right.")
        held = res[res["recotap_status"] == "already_mapped"]
        if len(held):
            first = held.iloc[0]
            story.say(f"  e.g. {first['recotap_domain']}: {first['recotap_message']}")
        left = rtp.unmapped_accounts(limit=rtp.MAX_LIMIT)
        story.say(f"  Accounts still without an id: {len(unmapped):,} -> {len(left):,}.")
    return res


def _match_part(story: _Story, rtp: RecotapClient, progress: bool) -> None:
    """The accounts left: a messier CRM export matched by domain, e-mail and name, reviewed,
    and only the accepted rows mapped."""
    with story.section("A messier export: match by domain, e-mail and name"):
        story.code("unmapped = rtp.unmapped_accounts(all=True)  # every page, not the first",
                   "matches = crm.recotap.match(unmapped, name='company', domain='website',",
                   "                            email='email', external_id='crm_id')")
        unmapped = rtp.unmapped_accounts(all=True)
        export = match_export([{"name": n, "domain": d} for n, d in
                               zip(unmapped["name"], unmapped["domain"], strict=True)])
        crm = export.drop(columns="truth")
        matches = RecotapAccessor(crm).match(unmapped, name="company", domain="website",
                                             email="email", external_id="crm_id")
        tally = matches["match_status"].value_counts()
        story.say(*count_lines({s: int(tally[s]) for s in MATCH_STATUSES if s in tally}))
        auto = matches["match_status"] == "auto"
        right = int((matches.loc[auto, "match_domain"] == export.loc[auto, "truth"]).sum())
        story.say(f"  Every auto row checked against the export's answer: {right:,} of "
                  f"{int(auto.sum()):,} right.")
        # One row of each kind a person will see: look-alike, name only, reseller, conflict.
        grey = matches[matches["match_status"] != "auto"].drop_duplicates(
            ["match_status", "match_tier"])
        for status, reason in zip(grey["match_status"], grey["match_reason"], strict=True):
            story.say(f"  {status}: {reason}")

    with story.section("Review, then map only what was accepted"):
        story.code("review = matches.recotap.review()   # the widget, in a notebook",
                   "accepted = matches.recotap.accepted()",
                   "res = accepted.recotap.map_ids(client=rtp, verify=True)")
        review = MatchReview(matches)
        # As a person would: names equal once cleaned pass, the rest of the review is left.
        same_name = matches.index[(matches["match_status"] == "review").to_numpy()
                                  & (matches["match_tier"] == "name_exact").to_numpy()]
        for label in same_name:
            review.accept(label)
        contested = matches.index[(matches["match_status"] == "conflict").to_numpy()]
        if len(contested):
            review.accept(contested[0])
        review.accept_all_auto()
        accepted = RecotapAccessor(matches).accepted()
        story.say(f"  Accepted {len(same_name):,} name-only rows after a look, "
                  f"{min(1, len(contested))} of the {len(contested)} rows in conflict, and "
                  "the auto rows.")
        res = RecotapAccessor(accepted).map_ids(client=rtp, verify=True, progress=progress)
        story.say(*count_lines(status_counts(res)))
        stored = rtp.accounts(domains=accepted["domain"].tolist())
        written = dict(zip(stored["domain"], stored["externalId"], strict=True))
        left = set(rtp.unmapped_accounts(all=True)["domain"])
        exact = left == set(unmapped["domain"]) - set(accepted["domain"]) and all(
            written.get(d) == i
            for d, i in zip(accepted["domain"], accepted["externalId"], strict=True)
        )
        story.say(f"  Recotap now holds exactly the {len(accepted):,} accepted ids, and no "
                  f"other account changed: {'yes' if exact else 'NO'}.")


def _summary(story: _Story, sb: Sandbox, cora_res: pd.DataFrame,
             rtp_res: pd.DataFrame) -> None:
    reqs = _request_counts(sb)
    cora_counts = status_counts(cora_res)
    rtp_counts = status_counts(rtp_res)
    bulk = int(cora_res.attrs.get("requests", 0))
    total = time.monotonic() - story.started

    def joined(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{s} {n:,}" for s, n in counts.items())

    story.say(
        "",
        "Summary",
        f"  Cora     {len(cora_res):,} rows: {joined(cora_counts)}",
        f"           {bulk} bulk upsert{'s' if bulk != 1 else ''} (+ "
        f"{reqs.get(('cora', 'GET'), 0)} GETs for the preview); "
        f"{reqs.get(('cora', 'POST'), 0)} POSTs in all",
        f"  Recotap  {len(rtp_res):,} rows: {joined(rtp_counts)}",
        f"           {reqs.get(('recotap', 'PATCH'), 0)} mapping requests, "
        f"{reqs.get(('recotap', 'GET'), 0)} reads",
        f"  Time     {total:.1f} s in all (Cora's real window would add "
        f"{format_duration(Pace(1, REAL_WINDOW - DEMO_WINDOW).seconds(bulk))})",
        "  Failed and invalid rows are there on purpose: each keeps its code and message.",
        "",
        "Where to look next",
        "  notebooks/quickstart.ipynb    these steps cell by cell, with df.cora.preview()",
        "  notebooks/backfill.ipynb      the Recotap loop; a 10k-row Cora backfill, journaled",
        "  README.md                     'Statuses and errors', 'Command line', 'Real services'",
        "  recocora sandbox --seed demo  a sandbox that stays up; paste its export lines, then",
        "                                recocora cora upsert FILE --diff",
    )
