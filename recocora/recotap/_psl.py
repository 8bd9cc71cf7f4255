"""Registrable domains from the Public Suffix List, offline.

The list comes from the ``publicsuffixlist`` package, which ships a snapshot of it inside the
wheel and reads only that file: nothing is downloaded when recocora runs. Its private section
is used too, so ``acme.github.io`` and ``other.github.io`` are two registrable domains, as
they are two owners.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pandas as pd
from publicsuffixlist import PublicSuffixList

__all__ = ["registrable"]


@lru_cache(maxsize=1)
def _list() -> PublicSuffixList:
    # Parsing the bundled file takes a few hundred milliseconds: once per process.
    return PublicSuffixList()


def registrable(hosts: pd.Series[Any]) -> pd.DataFrame:
    """The registrable domain (``shop.acme.co.uk`` → ``acme.co.uk``) of each host name and its
    brand, the label before the public suffix (``acme``), worked out once per distinct value.

    A host that is itself a public suffix, or missing, has neither (``<NA>``).

    >>> registrable(pd.Series(["shop.acme.co.uk", "co.uk"]))["domain"].tolist()
    ['acme.co.uk', <NA>]
    """
    psl = _list()
    distinct = pd.unique(hosts.dropna().astype(str).to_numpy())
    domain: dict[str, str | None] = {}
    brand: dict[str, str | None] = {}
    for host in distinct:
        found = psl.privatesuffix(host)
        domain[host] = found
        # A registrable domain is one label on top of its public suffix: that label.
        brand[host] = None if found is None else found.split(".", 1)[0]
    out: pd.DataFrame = pd.DataFrame(
        {
            "domain": hosts.map(domain).astype("string"),
            "brand": hosts.map(brand).astype("string"),
        },
        index=hosts.index,
    )
    return out
