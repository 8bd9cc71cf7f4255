"""Write the two CSV files the notebooks load, from the sandbox's demo seed.

``messy_accounts.csv`` is a collections export as analysts receive it: accounts Cora already
holds (``ext-000123``, some changed since, some not) mixed with new ones that only carry a
legacy number, which pandas reads as a float (``700001.0``) because the existing rows leave
it blank. Phones are written every which way, some cells are blank, two rows are exported
twice, one phone cannot be read, one new account has no phone at all, and the export carries
Cora's read-only ``updatedAt``.

``crm_accounts.csv`` is a CRM's company list (``company``, ``website``, ``crm_id``) to
backfill into Recotap: mostly companies Recotap holds without an id, some it holds with the
same id or another one, a few it does not know, one company listed twice (a later row with a
new id), and one website that is an e-mail address. Websites are written as people write them.

``crm_messy.csv`` is a messier export of more companies (``company``, ``website``, ``email``,
``crm_id``) to match by domain, e-mail and name: URLs, shop subdomains, rows with only a
colleague's e-mail or only a name and a free-mail address, a look-alike company, a reseller
on a customer's website, a brand under another country's suffix, and two CRM ids claiming
one account (see ``recocora._demo_match``). It covers unmapped accounts that
``crm_accounts.csv`` does not.

The files depend only on the demo seed, which is deterministic, and on the fixed random seeds
below: running this again writes the same bytes.

    python notebooks/data/make_data.py            # writes beside this file
    python notebooks/data/make_data.py OUT_DIR
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import idna
import pandas as pd

from recocora._demo_match import match_export
from recocora.sandbox import Sandbox

HERE = Path(__file__).resolve().parent

EXISTING = 90
NEW = 60
BUCKETS = ("current", "30-60", "60-90", "90+")
FIRST = ("Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gil", "Ivy", "Jay", "Kim", "Lou", "Max")
LAST = ("Abbott", "Baker", "Cole", "Drake", "Ellis", "Frost", "Grant", "Hale", "Irwin")
EXPORTED_AT = "2025-01-31 09:00:00"


def formatted_phone(e164: str, style: int) -> str:
    """A North American number the way people type it: ``(512) 555-0142``, ``512.555.0142``."""
    area, mid, last = e164[2:5], e164[5:8], e164[8:]
    styles = (
        f"({area}) {mid}-{last}",
        f"{area}.{mid}.{last}",
        f"+1 {area} {mid} {last}",
        f"{area}-{mid}-{last}",
        f"1{area}{mid}{last}",
    )
    return styles[style % len(styles)]


def messy_accounts(stored: Sequence[Mapping[str, Any]], seed: int = 2024) -> pd.DataFrame:
    """The collections export, built against the Cora accounts of the demo seed."""
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(stored)), EXISTING))
    records: list[dict[str, Any]] = []
    for k, position in enumerate(picked):
        doc = stored[position]
        name = doc["person"]["name"]
        row: dict[str, Any] = {
            "externalId": doc["externalId"],
            "legacy_no": None,
            "phoneNumber": formatted_phone(doc["phoneNumber"], rng.randrange(5)),
            "emailAddress": doc["emailAddress"],
            "bucket": doc["bucket"],
            "clientStatus": doc["clientStatus"],
            "currentBalance": doc["currentBalance"],
            "portfolioId": doc["portfolioId"],
            "metadata.filenumber": doc["metadata"]["filenumber"],
            "person.name.first": name["first"],
            "person.name.last": name["last"],
        }
        if k % 3 == 0:  # moved to the next bucket since the last sync
            row["bucket"] = BUCKETS[(BUCKETS.index(row["bucket"]) + 1) % len(BUCKETS)]
        if k % 4 == 1:  # a payment came in
            row["currentBalance"] = round(doc["currentBalance"] - rng.choice((25, 50, 100)), 2)
        if k % 10 == 7:  # a blank cell: left out of the row, so Cora keeps what it has
            row["clientStatus"] = None
        records.append(row)
    for j in range(NEW):
        number = 700001 + j
        first, last = rng.choice(FIRST), rng.choice(LAST)
        e164 = f"+1{rng.randint(201, 989)}555{rng.randint(0, 9999):04d}"
        records.append({
            "externalId": None,
            "legacy_no": number,
            "phoneNumber": formatted_phone(e164, j),
            "emailAddress": f"{first.lower()}.{last.lower()}{number}@example.com"
            if j % 6 else None,
            "bucket": "current",
            "clientStatus": "open",
            "currentBalance": round(rng.uniform(40, 4000), 2),
            "portfolioId": "pf_consumer_2024",
            "metadata.filenumber": f"F-{number}",
            "person.name.first": first,
            "person.name.last": last,
        })
    rng.shuffle(records)
    new_rows = [r for r in records if r["externalId"] is None]
    old_rows = [r for r in records if r["externalId"] is not None]
    new_rows[0]["phoneNumber"] = None  # Cora cannot create an account without a phone
    old_rows[-1]["phoneNumber"] = "call front desk"  # no helper can read this one
    # The same two accounts, exported twice.
    records += [dict(old_rows[1]), dict(old_rows[2])]
    frame: pd.DataFrame = pd.DataFrame.from_records(records)
    frame["updatedAt"] = EXPORTED_AT
    return frame


def website(domain: str, style: int) -> str:
    """A company website the way a CRM holds it (internationalised names in Unicode)."""
    if "xn--" in domain:
        domain = idna.decode(domain)
    styles = (
        f"https://www.{domain}/",
        domain.upper(),
        f"http://{domain}/contact",
        f"www.{domain}",
        domain,
        f"https://{domain}/about?ref=crm",
    )
    return styles[style % len(styles)]


def crm_accounts(accounts: Sequence[Mapping[str, Any]], seed: int = 99) -> pd.DataFrame:
    """The CRM's company list, built against the Recotap accounts of the demo seed."""
    rng = random.Random(seed)
    unmapped = [a for a in accounts if not a.get("externalId")]
    mapped = [a for a in accounts if a.get("externalId")]
    records: list[dict[str, Any]] = []
    # Most of the companies Recotap holds without an id (the rest are not in this CRM).
    for k, a in enumerate(unmapped[:300]):
        records.append({"company": a["name"], "website": website(a["domain"], k),
                        "crm_id": f"CRM-{50001 + k}"})
    # Mapped already, with the id this CRM has: nothing to write.
    for k, a in enumerate(mapped[:25]):
        records.append({"company": a["name"], "website": website(a["domain"], k),
                        "crm_id": a["externalId"]})
    # Mapped already, by another system, with another id: not ours to overwrite.
    for k, a in enumerate(mapped[25:40]):
        records.append({"company": a["name"], "website": website(a["domain"], k + 1),
                        "crm_id": f"CRM-{60001 + k}"})
    # Prospects Recotap has never seen.
    for k in range(8):
        records.append({"company": f"Prospect {k + 1} LLC",
                        "website": f"https://prospect{k + 1}-{rng.randrange(10**6)}.io",
                        "crm_id": f"CRM-{70001 + k}"})
    rng.shuffle(records)
    ours = [k for k, r in enumerate(records) if str(r["crm_id"]).startswith("CRM-5")]
    # A contact's e-mail pasted into the website column.
    bad = records[ours[5]]
    bad["website"] = "billing@" + str(bad["website"]).split("//")[-1].split("/")[0].lower()
    bad["website"] = bad["website"].replace("@www.", "@")
    # One company entered twice; the later row, with a new id, is the one that counts.
    records.append({**records[ours[0]], "crm_id": "CRM-80001"})
    crm: pd.DataFrame = pd.DataFrame.from_records(
        records, columns=["company", "website", "crm_id"]
    )
    return crm


def main(argv: Sequence[str]) -> int:
    out = Path(argv[0]) if argv else HERE
    out.mkdir(parents=True, exist_ok=True)
    with Sandbox(seed="demo") as sb:
        cora = sorted(sb.cora_accounts(), key=lambda d: str(d["externalId"]))
        recotap = sorted(sb.recotap_accounts(), key=lambda a: str(a["rtp_aid"]))
    messy_accounts(cora).to_csv(out / "messy_accounts.csv", index=False, lineterminator="\n")
    crm_accounts(recotap).to_csv(out / "crm_accounts.csv", index=False, lineterminator="\n")
    # The unmapped accounts crm_accounts.csv leaves for the matching step.
    rest = [a for a in recotap if not a.get("externalId")][300:]
    match_export(rest).drop(columns="truth").to_csv(
        out / "crm_messy.csv", index=False, lineterminator="\n"
    )
    print(f"wrote messy_accounts.csv, crm_accounts.csv and crm_messy.csv in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
