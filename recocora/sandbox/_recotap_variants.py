"""The answer variants of the sandbox's Recotap: how domains are shown and matched when a
variant of :class:`recocora.sandbox.FaultConfig` is switched on."""

from __future__ import annotations

import sqlite3
from typing import Any

import idna

from ._faults import FaultConfig
from ._recotap_domains import normalize_domain
from ._recotap_store import _account_json


class AnswerVariants:
    """Domain showing and matching of :class:`RecotapApi` under its ``variants``."""

    variants: FaultConfig

    def _shown(self, domain: str) -> str:
        """A stored domain as answers show it: Unicode under ``unicode_domains``."""
        if not self.variants.unicode_domains or "xn--" not in domain:
            return domain
        try:
            return str(idna.decode(domain))
        except (idna.IDNAError, UnicodeError):
            return domain

    def _match_key(self, text: object) -> str | None:
        """The stored domain a sent one matches. Under ``unicode_domains`` the server
        normalises as its docs say (case, scheme, ``www.``, path) and knows no punycode: a
        domain sent as ``xn--...`` matches no internationalised account."""
        normal = normalize_domain(text)
        if (normal is not None and self.variants.unicode_domains
                and isinstance(text, str) and "xn--" in text.lower()):
            return None
        return normal

    def _shown_account(self, row: sqlite3.Row) -> dict[str, Any]:
        account = _account_json(row)
        account["domain"] = self._shown(account["domain"])
        return account
