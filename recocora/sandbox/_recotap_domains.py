"""Recotap's domain normal form in the sandbox: ``https://www.Müller.de:443/x`` and
``xn--mller-kva.de`` name the same account."""

from __future__ import annotations

import re

import idna

__all__ = ["normalize_domain"]

_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://")
# Dots that IDNA treats as label separators (ideographic, fullwidth, halfwidth).
_UNICODE_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^[0-9]{0,5}$")


def normalize_domain(value: object) -> str | None:
    """Reduce a domain, URL or e-mail address to the bare host name Recotap matches on.

    Lower-cases and trims; drops scheme, user info, ``www.``, port, path, query, fragment and a
    trailing dot; converts non-ASCII labels to punycode (IDNA with UTS #46 mapping, as
    browsers do), so the unicode and punycode spellings of one domain agree. Returns ``None`` when
    nothing usable is left (empty text, IP addresses, illegal characters, a single label), and
    such a value matches no account.

    >>> normalize_domain("HTTPS://www.Müller.de:443/kontakt?x=1#top")
    'xn--mller-kva.de'
    """
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    scheme = _SCHEME.match(text)
    if scheme:
        text = text[scheme.end() :]
    elif text.startswith("//"):
        text = text[2:]
    host = re.split(r"[/?#\\]", text, maxsplit=1)[0]
    host = host.rpartition("@")[2]
    if host.startswith("["):
        return None  # IPv6 literal: never a company domain
    host, _, port = host.partition(":")
    if not _PORT.match(port):
        return None
    host = host.translate(_UNICODE_DOTS)
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        return None
    try:
        # UTS #46, non-transitional: the mapping browsers use (ß stays ß, xn--fa-hia).
        host = idna.encode(host, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
    labels = host.split(".")
    if labels[0] == "www" and len(labels) > 2:
        labels = labels[1:]
    if len(labels) < 2 or labels[-1].isdigit():
        return None
    for label in labels:
        if not _LABEL.match(label):
            return None
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return None
    return ".".join(labels)
