"""A CRM export with the mess real ones have, for matching against Recotap's unmapped accounts
(``recocora demo`` and the backfill notebook's data both build it here).

>>> from recocora.sandbox import Sandbox
>>> with Sandbox(seed="demo") as sb:  # doctest: +SKIP
...     crm = match_export(sb.recotap_accounts())
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["match_export"]

_LONG_FORMS = {"Inc": "Incorporated", "Ltd": "Limited", "Corp": "Corporation", "Co": "Company",
               "GmbH": "G.m.b.H.", "AG": "A.G.", "SA": "S.A.", "LLC": "L.L.C.", "BV": "B.V."}
_FREE = ("gmail.com", "yahoo.co.uk", "hotmail.fr", "outlook.com")
# One word away from an industry the demo accounts use: "Acme Tools" → "Acme Foods".
_LOOKALIKE = {"Tools": "Foods", "Foods": "Tools", "Health": "Wealth", "Metrics": "Matrix",
              "Cloud": "Clout", "Labs": "Tabs", "Works": "Forks", "Systems": "Sisters",
              "Data": "Date", "Energy": "Synergy", "Freight": "Flight", "Pharma": "Farma"}


def _website(domain: str, k: int) -> str | None:
    return (f"https://www.{domain}/about", f"shop.{domain}", None, None, domain,
            domain.upper(), f"http://{domain}/contact", f"www.{domain}")[k % 8]


def _long_form(name: str) -> str:
    words = name.split()
    if words and words[-1] in _LONG_FORMS:
        words[-1] = _LONG_FORMS[words[-1]]
    return " ".join(words).upper()


def match_export(accounts: Sequence[Mapping[str, Any]], rows: int = 60,
                 seed: int = 5) -> pd.DataFrame:
    """About ``rows`` CRM rows (``company``, ``website``, ``email``, ``crm_id``, and the
    answer in ``truth``: the domain the row truly is, or missing) for the accounts without an
    id among ``accounts``.

    Websites come as URLs, shop subdomains and upper case; some rows have only a colleague's
    e-mail, some only a name and a free-mail address; one look-alike company
    (``Acme Foods`` beside ``Acme Tools``), one reseller on a customer's website, one brand
    under another country's suffix, and two CRM ids claiming one account.
    """
    rng = random.Random(seed)
    free = [a for a in accounts if not a.get("externalId") and a.get("domain")
            and "xn--" not in str(a["domain"])]
    picked = free[:rows]
    records: list[dict[str, Any]] = []
    for k, a in enumerate(picked[:-4]):
        domain, name = str(a["domain"]), str(a["name"])
        site = _website(domain, k)
        if k % 8 == 3:  # a name and a personal address: a person must look
            records.append({"company": _long_form(name), "website": None,
                            "email": f"{name.split()[0].lower()}@{rng.choice(_FREE)}",
                            "truth": domain})
            continue
        email = f"{rng.choice(('ap', 'jane.doe', 'billing'))}@{domain}" if site is None else None
        company = name.rsplit(" ", 1)[0] if k % 2 else name
        records.append({"company": company, "website": site, "email": email, "truth": domain})
    if len(picked) >= 4:
        look, resold, abroad, contested = picked[-4:]
        # The look-alike of a company whose industry has a one-word-away twin, if any.
        look = next((a for a in picked if len(str(a["name"]).split()) > 1
                     and str(a["name"]).split()[1] in _LOOKALIKE), look)
        words = str(look["name"]).split()
        twin = _LOOKALIKE.get(words[1], "Foods & Wine") if len(words) > 1 else "Foods & Wine"
        records.append({"company": f"{words[0]} {twin} Ltd", "website": None,
                        "email": f"orders@{rng.choice(_FREE)}", "truth": None})
        records.append({"company": "Northwind Consulting",
                        "website": f"{resold['domain']}/partners", "email": None, "truth": None})
        label = str(abroad["domain"]).split(".", 1)[0]
        records.append({"company": str(abroad["name"]).rsplit(" ", 1)[0],
                        "website": f"www.{label}.com.br", "email": None, "truth": None})
        for suffix in ("", " Group"):
            records.append({"company": f"{contested['name']}{suffix}",
                            "website": str(contested["domain"]), "email": None,
                            "truth": str(contested["domain"])})
    rng.shuffle(records)
    frame: pd.DataFrame = pd.DataFrame.from_records(
        records, columns=["company", "website", "email", "truth"]
    )
    frame.insert(3, "crm_id", [f"CRM-{90001 + k}" for k in range(len(frame))])
    return frame
