"""A labelled matching fixture, generated deterministically: Recotap accounts and a CRM
export holding every kind of mess a real one has, each CRM row labelled with the account it
truly is (or none) and with the kind of mess it carries.

Kinds (``kind`` column of the CRM frame):

- ``url``: the website written as a URL, upper case, ``www.``, a path, a port, a trailing dot;
- ``subdomain``: ``shop.`` / ``eu.`` hosts of the account's domain;
- ``unicode``: an internationalised domain written in Unicode or punycode;
- ``email``: no website, a colleague's company e-mail (sometimes on a mail subdomain);
- ``email_in_website``: the e-mail pasted into the website column, the e-mail column empty;
- ``second_site``: the first website column empty or junk, the second one right;
- ``name_variant``: a legal form, ``&``/``and``, accents, case and punctuation changed,
  website right;
- ``name_only``: a free-mail address (which must not count) and a name variant or typo;
- ``lookalike``: a name one word away from an account (``Acme Foods`` vs ``Acme Tools``),
  no website, truly no account;
- ``lookalike_domain``: ``acmefoods.com`` beside the account ``acmetools.com``, truly
  ``acmefoods.com``, which is also an account;
- ``other_country``: the brand's domain under a suffix Recotap does not have (``acme.com``
  when Recotap lists ``acme.de`` and ``acme.fr``): truly no account of ours;
- ``country``: ``acme.de`` when Recotap lists ``acme.de`` and ``acme.fr``;
- ``hosted``: ``acme.myshopify.com`` style hosts, a different owner under the Public Suffix
  List: truly no account;
- ``reseller``: an unrelated company name on the account's website: truly not that account;
- ``conflict``: two CRM ids on one account's website;
- ``absent``: a company Recotap does not have, with its own domain;
- ``empty``: nothing to match on;
- ``plain``: a bare domain and a company e-mail, as most rows of an export are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd

SYLLABLES = ("ac", "me", "bo", "re", "lis", "tan", "go", "vi", "ra", "ne", "xo", "lu", "pe",
             "dra", "ki", "sol", "mar", "ven", "tor", "quil", "zen", "fa", "bri", "cor", "dal",
             "ish", "om", "ux", "yel", "ha")
INDUSTRY = ("Foods", "Tools", "Logistics", "Software", "Energy", "Textiles", "Labs", "Media",
            "Robotics", "Pharma", "Motors", "Capital", "Design", "Farms", "Optics")
FORMS = (("Inc.", "Incorporated"), ("Ltd", "Limited"), ("GmbH", "G.m.b.H."), ("SAS", "S.A.S."),
         ("BV", "B.V."), ("Corp.", "Corporation"), ("LLC", "L.L.C."), ("AG", "A.G."))
SUFFIXES = ("com", "com", "com", "de", "fr", "co.uk", "nl", "io", "com.au", "es")
ACCENTED = {"a": "á", "e": "é", "o": "ö", "u": "ü", "i": "í"}
KINDS = ("url", "subdomain", "unicode", "email", "email_in_website", "second_site",
         "name_variant", "name_only", "lookalike", "lookalike_domain", "other_country",
         "country", "hosted", "reseller", "conflict", "absent", "empty", "plain")
# Most rows of a real export are plain; every kind of mess still comes up often.
ROTATION = KINDS + ("plain",) * 5


@dataclass(frozen=True)
class Fixture:
    """``accounts`` (``name``, ``domain``) and ``crm`` (``company``, ``website``,
    ``website2``, ``email``, ``externalId``, and the labels ``truth`` and ``kind``)."""

    accounts: pd.DataFrame
    crm: pd.DataFrame


def _brand(rng: random.Random, taken: set[str]) -> str:
    while True:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in taken and len(word) >= 4:
            taken.add(word)
            return word


def _accent(word: str, rng: random.Random) -> str:
    spots = [i for i, c in enumerate(word) if c in ACCENTED]
    if not spots:
        return word
    i = rng.choice(spots)
    return word[:i] + ACCENTED[word[i]] + word[i + 1:]


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + word[i - 1] + word[i:]  # a doubled letter, the commonest slip


def make_fixture(n_companies: int = 1500, seed: int = 7) -> Fixture:
    """Accounts for ``n_companies`` companies (plus the extra brand-in-two-countries and
    look-alike accounts) and about one CRM row per company, every kind of mess mixed in."""
    rng = random.Random(seed)
    taken: set[str] = set()
    accounts: list[tuple[str, str]] = []
    crm: list[dict[str, object]] = []

    def row(kind: str, truth: str | None, company: object = None, website: object = None,
            website2: object = None, email: object = None, ext: str | None = None) -> None:
        crm.append({"company": company, "website": website, "website2": website2,
                    "email": email, "externalId": ext or f"crm-{len(crm):06d}",
                    "truth": truth, "kind": kind})

    for i in range(n_companies):
        brand = _brand(rng, taken)
        industry = rng.choice(INDUSTRY)
        short, long = rng.choice(FORMS)
        title = brand.capitalize()
        suffix = SUFFIXES[i % len(SUFFIXES)]
        kind = ROTATION[i % len(ROTATION)]
        if kind == "unicode":
            title = _accent(brand, rng).capitalize()
        host = f"{title.lower()}{industry.lower()}.{suffix}"
        if kind == "unicode" and rng.random() < 0.5:
            host = host.encode("idna").decode("ascii")
        # Recotap lists the account; how its name and domain read there:
        account_name = f"{title} {industry} {short}"
        account_domain = host if kind != "unicode" else host.encode("idna").decode("idna")
        if kind == "absent":
            row(kind, None, f"{title} {industry}", f"https://{host}/")
            continue
        accounts.append((account_name, account_domain))
        person = rng.choice(("jane", "j.doe", "sales", "info", "k.muller"))
        if kind == "url":
            website = rng.choice((f"HTTPS://WWW.{host.upper()}/about", f"http://{host}:8080/",
                                  f"www.{host}.", f"{host}/contact?x=1", f" {host} "))
            row(kind, account_domain, f"{title} {industry}", website)
        elif kind == "subdomain":
            row(kind, account_domain, f"{title} {industry}",
                f"{rng.choice(('shop', 'eu', 'app', 'www2'))}.{host}")
        elif kind == "unicode":
            shown = rng.choice((host, host.encode("idna").decode("ascii"), f"www.{host}"))
            row(kind, account_domain, f"{title} {industry}", shown)
        elif kind == "email":
            mail = rng.choice((host, f"mail.{host}", host.upper()))
            row(kind, account_domain, f"{title} {industry} {long}", None, None,
                f"{person}@{mail}")
        elif kind == "email_in_website":
            row(kind, account_domain, f"{title} {industry}", f"{person}@{host}")
            crm[-1]["email"] = f"{person}@{host}"
            crm[-1]["website"] = rng.choice((None, "n/a", "-"))
            crm[-1]["website2"] = f"{person}@{host}"
        elif kind == "second_site":
            row(kind, account_domain, f"{title} {industry}", rng.choice(("n/a", None, "-")),
                f"https://{host}")
        elif kind == "name_variant":
            variant = rng.choice((
                f"{title.upper()} {industry.upper()} {long.upper()}",
                f"{title} & {industry}, {long}",
                f"The {title} {industry} {short}",
                f"{_accent(title.lower(), rng)}-{industry.lower()}",
            ))
            row(kind, account_domain, variant, f"www.{host}")
        elif kind == "name_only":
            company = rng.choice((f"{title} {industry} {long}",
                                  f"{_typo(title, rng)} {industry}"))
            row(kind, account_domain, company, None, None,
                f"{person}@{rng.choice(('gmail.com', 'yahoo.co.uk', 'hotmail.fr', 'gmx.de'))}")
        elif kind == "lookalike":
            other = rng.choice([x for x in INDUSTRY if x != industry])
            row(kind, None, f"{title} {other} {short}")
        elif kind == "lookalike_domain":
            other = rng.choice([x for x in INDUSTRY if x != industry])
            twin = f"{title.lower()}{other.lower()}.{suffix}"
            accounts.append((f"{title} {other} {short}", twin))
            row(kind, twin, f"{title} {other}", f"https://www.{twin}/")
        elif kind in ("other_country", "country"):
            extra = "fr" if suffix != "fr" else "de"
            accounts.append((f"{title} {industry} {short}", host.rsplit(".", 1)[0] + "." + extra
                             if suffix in ("com", "de", "fr", "nl", "io", "es")
                             else f"{title.lower()}{industry.lower()}.{extra}"))
            if kind == "country":
                row(kind, account_domain, f"{title} {industry}", f"www.{host}")
            else:
                row(kind, None, f"{title} {industry}",
                    f"{title.lower()}{industry.lower()}.{rng.choice(('us', 'ca', 'it'))}")
        elif kind == "hosted":
            row(kind, None, f"{title} {industry}",
                f"{title.lower()}{industry.lower()}.{rng.choice(('myshopify.com', 'github.io'))}")
        elif kind == "reseller":
            stranger = _brand(rng, taken).capitalize()
            row(kind, None, f"{stranger} Consulting", f"https://{host}/partners")
        elif kind == "conflict":
            row(kind, account_domain, f"{title} {industry}", host)
            row(kind, account_domain, f"{title} {industry} {long}", f"www.{host}")
        elif kind == "empty":
            row(kind, None, None, rng.choice((None, "n/a")), None, rng.choice((None, "-")))
        elif kind == "plain":
            row(kind, account_domain, f"{title} {industry}",
                rng.choice((host, f"https://{host}", f"www.{host}/")), None,
                f"{person}@{host}")

    acc = pd.DataFrame(accounts, columns=["name", "domain"]).drop_duplicates("domain")
    frame = pd.DataFrame(crm)
    frame.index = pd.Index([f"r{i}" for i in range(len(frame))], name="crm_row")
    # A real export has plain rows first, the odd ones scattered: shuffle, deterministically.
    frame = frame.sample(frac=1.0, random_state=seed)
    return Fixture(acc.sample(frac=1.0, random_state=seed).reset_index(drop=True), frame)
