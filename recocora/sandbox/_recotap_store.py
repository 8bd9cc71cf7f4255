"""The sandbox's Recotap tables, how a stored row is shown, and its deterministic demo rows."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from ._recotap_checks import _iso_from_ms
from ._recotap_domains import normalize_domain


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()



_SCHEMA = """
CREATE TABLE IF NOT EXISTS rtp_keys (
    key_hash TEXT PRIMARY KEY,
    org TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rtp_accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL,
    name TEXT NOT NULL,
    domain TEXT NOT NULL,
    external_id TEXT,
    intent_score INTEGER NOT NULL,
    engagement_score INTEGER NOT NULL,
    fit_score INTEGER NOT NULL,
    custom_fields TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rtp_accounts_org_domain ON rtp_accounts (org, domain);
CREATE INDEX IF NOT EXISTS rtp_accounts_org_id ON rtp_accounts (org, id);
CREATE INDEX IF NOT EXISTS rtp_accounts_org_unmapped ON rtp_accounts (org, id)
    WHERE external_id IS NULL;
"""

_COLUMNS = (
    "id, name, domain, external_id, intent_score, engagement_score, fit_score, "
    "custom_fields, updated_ms"
)


_INSERT_COLUMNS = (
    "org, name, domain, external_id, intent_score, engagement_score, fit_score, "
    "custom_fields, updated_ms"
)


def _account_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "rtp_aid": f"rtp_{row['id']:06d}",
        "name": row["name"],
        "domain": row["domain"],
        "externalId": row["external_id"],
        "intentScore": row["intent_score"],
        "engagementScore": row["engagement_score"],
        "fitScore": row["fit_score"],
        "customFields": orjson.loads(row["custom_fields"]),
        "updatedAt": _iso_from_ms(row["updated_ms"]),
    }


_PREFIXES = (
    "Acme", "Apex", "Blue", "Bright", "Cedar", "Clear", "Copper", "Crest", "Delta", "Eagle",
    "Ember", "Falcon", "First", "Granite", "Green", "Harbor", "Helix", "Iron", "Juniper",
    "Keystone", "Lake", "Liberty", "Lumen", "Maple", "Meridian", "Nimbus", "North", "Nova", "Oak",
    "Orbit", "Pacific", "Peak", "Pine", "Pioneer", "Prime", "Quantum", "Red", "River", "Sage",
    "Silver", "Solar", "Summit", "Swift", "Terra", "True", "Union", "Vertex", "Vista", "West",
    "Zenith",
)  # fmt: skip
# Second word of the name, and the industry it suggests.
_CORES = (
    ("Analytics", "Software"), ("Bio", "Biotech"), ("Capital", "Financial Services"),
    ("Cloud", "Software"), ("Consulting", "Professional Services"), ("Data", "Software"),
    ("Dynamics", "Manufacturing"), ("Energy", "Energy"), ("Foods", "Food & Beverage"),
    ("Freight", "Logistics"), ("Health", "Healthcare"), ("Labs", "Research"),
    ("Logistics", "Logistics"), ("Media", "Media"), ("Metrics", "Software"),
    ("Networks", "Telecommunications"), ("Partners", "Professional Services"),
    ("Pharma", "Pharmaceuticals"), ("Robotics", "Manufacturing"), ("Security", "Cybersecurity"),
    ("Software", "Software"), ("Solutions", "IT Services"), ("Systems", "IT Services"),
    ("Textiles", "Retail"), ("Ventures", "Financial Services"), ("Works", "Construction"),
)  # fmt: skip
# Legal suffix and the top-level domains that go with it.
_SUFFIXES = (
    ("Inc", ("com", "io")), ("LLC", ("com", "net")), ("Ltd", ("co.uk", "com")),
    ("GmbH", ("de", "com")), ("Group", ("com", "net")), ("Corp", ("com", "io")),
    ("SA", ("fr", "es")), ("BV", ("nl", "com")), ("AG", ("de", "ch")), ("Co", ("com", "co")),
)  # fmt: skip
_UNICODE_COMPANIES = (
    ("Müller Logistik GmbH", "müller-logistik.de", "Logistics"),
    ("Café Olé SA", "café-olé.fr", "Food & Beverage"),
    ("Björk Design AB", "björk-design.se", "Media"),
    ("Zürich Datenwerk AG", "zürich-datenwerk.ch", "Software"),
    ("Ærø Shipping ApS", "ærø-shipping.dk", "Logistics"),
    ("Łódź Software Sp. z o.o.", "łódź-software.pl", "Software"),
    ("São Paulo Comércio Ltda", "são-paulo-comércio.com.br", "Retail"),
    ("Göteborg Energi AB", "göteborg-energi.se", "Energy"),
    ("東京データ株式会社", "東京データ.jp", "Software"),
    ("Москва Софт", "москва-софт.ru", "Software"),
    ("Ñandú Tecnología SL", "ñandú-tecnología.es", "IT Services"),
    ("Crème Brûlée Co", "crème-brûlée.com", "Food & Beverage"),
)
_DAY_MS = 86_400_000


def _demo_rows(
    rng: random.Random, count: int, taken: set[str], now_ms: int
) -> Iterable[tuple[Any, ...]]:
    """Rows (name, domain, external_id, scores x3, custom_fields, updated_ms) for seed_demo."""
    space = len(_PREFIXES) * len(_CORES) * len(_SUFFIXES)
    order = rng.sample(range(space), min(count, space))
    unicode_every = max(1, count // len(_UNICODE_COMPANIES)) if count >= 100 else 0
    unicode_left = list(_UNICODE_COMPANIES)
    for i in range(count):
        if unicode_every and i % unicode_every == unicode_every // 2 and unicode_left:
            name, raw_domain, industry = unicode_left.pop(0)
            candidates = [raw_domain]
        else:
            pick = order[i % len(order)] if order else i
            prefix = _PREFIXES[pick % len(_PREFIXES)]
            core, industry = _CORES[(pick // len(_PREFIXES)) % len(_CORES)]
            suffix, tlds = _SUFFIXES[pick // (len(_PREFIXES) * len(_CORES)) % len(_SUFFIXES)]
            lap = i // space
            name = f"{prefix} {core}{f' {lap + 1}' if lap else ''} {suffix}"
            slug = f"{prefix}{core}".lower()
            dashed = f"{prefix}-{core}".lower()
            lapped = f"-{lap + 1}" if lap else ""
            candidates = [f"{s}{lapped}.{t}" for s in (slug, dashed) for t in tlds]
            candidates.append(f"{slug}{lapped}-{suffix.lower()}.{tlds[0]}")
        domain = _unique_domain(candidates, taken)
        taken.add(domain)
        external_id = None if rng.random() < 1 / 3 else f"crm-{i + 1:06d}"
        employees = int(10 ** rng.uniform(1, 5))
        fields = {"industry": industry, "employees": employees}
        yield (
            name,
            domain,
            external_id,
            rng.randint(0, 100),
            rng.randint(0, 100),
            rng.randint(0, 100),
            orjson.dumps(fields).decode("utf-8"),
            now_ms - rng.randint(0, 30 * _DAY_MS),
        )


def _unique_domain(candidates: list[str], taken: set[str]) -> str:
    normal = [n for n in map(normalize_domain, candidates) if n is not None]
    for domain in normal:
        if domain not in taken:
            return domain
    stem, _, tld = normal[0].partition(".")
    n = 2
    while f"{stem}{n}.{tld}" in taken:
        n += 1
    return f"{stem}{n}.{tld}"
