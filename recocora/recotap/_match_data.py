"""The word lists the matcher relies on: company legal forms and free e-mail providers.

They are data, kept here once; :mod:`recocora.recotap._match` turns them into patterns.
"""

from __future__ import annotations

__all__ = ["FREE_MAIL_BRANDS", "FREE_MAIL_DOMAINS", "LEGAL_FORMS", "NAME_CONNECTORS"]

#: Legal forms, written as they read once the name is lower-cased, accents folded, dots
#: deleted (``S.A.`` → ``sa``) and other punctuation turned into spaces. They are removed
#: only from the *end* of a name ("Acme GmbH & Co. KG" → "acme"), never its first word, so a
#: name is never cleaned down to nothing and "Inc Magazine" keeps its "inc".
LEGAL_FORMS: tuple[str, ...] = (
    # English-speaking countries
    "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "llc",
    "llp", "lp", "plc", "pty", "pte", "pvt", "private", "holdings", "holding",
    # German-speaking countries
    "gmbh", "ag", "kg", "kgaa", "ohg", "gbr", "ug", "mbh", "ev",
    # French, Belgian, Swiss, Spanish, Portuguese, Italian, Latin America
    "sa", "sas", "sasu", "sarl", "eurl", "sci", "snc", "sl", "slu", "sau", "lda", "ltda",
    "srl", "spa", "sapa", "scarl", "sca", "cv", "de",
    # Dutch, Belgian, Nordic, Central and Eastern Europe
    "bv", "nv", "vof", "cvba", "bvba", "ab", "publ", "as", "asa", "aps", "oy", "oyj", "hf",
    "sro", "spol", "zoo", "sp", "doo", "dd", "kft", "zrt", "nyrt", "ooo", "zao", "oao",
    # Asia-Pacific
    "kk", "yk", "bhd", "sdn", "tbk", "pt", "jsc",
)

#: Words that join two names and say nothing about either: "Smith & Sons" = "Smith and Sons".
NAME_CONNECTORS: tuple[str, ...] = ("and", "und", "et", "y", "e", "the")

#: Registrable domains of free and consumer e-mail providers: an address there says nothing
#: about the company the person works for.
FREE_MAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "googlemail.com", "icloud.com", "me.com", "mac.com", "msn.com", "aol.com",
    "aim.com", "mail.com", "email.com", "usa.com", "gmx.com", "gmx.net", "gmx.de", "gmx.at",
    "gmx.ch", "web.de", "t-online.de", "freenet.de", "arcor.de", "posteo.de", "mailbox.org",
    "proton.me", "protonmail.com", "pm.me", "tutanota.com", "tuta.io", "fastmail.com",
    "hey.com", "zoho.com", "zohomail.com", "yandex.ru", "yandex.com", "ya.ru", "mail.ru",
    "bk.ru", "inbox.ru", "list.ru", "rambler.ru", "qq.com", "163.com", "126.com", "sina.com",
    "yeah.net", "naver.com", "daum.net", "hanmail.net", "rediffmail.com", "orange.fr",
    "wanadoo.fr", "free.fr", "laposte.net", "sfr.fr", "neuf.fr", "libero.it", "virgilio.it",
    "tiscali.it", "alice.it", "seznam.cz", "centrum.cz", "wp.pl", "o2.pl", "onet.pl",
    "interia.pl", "btinternet.com", "sky.com", "virginmedia.com", "ntlworld.com",
    "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net", "cox.net",
    "charter.net", "earthlink.net", "shaw.ca", "rogers.com", "sympatico.ca", "bigpond.com",
    "optusnet.com.au", "telstra.com", "xtra.co.nz", "terra.com.br", "uol.com.br",
    "bol.com.br", "telenet.be", "skynet.be", "ziggo.nl", "kpnmail.nl", "planet.nl",
    "bluewin.ch", "hotmail.com", "outlook.com", "live.com", "yahoo.com",
)

#: Brands whose mail sits under many country suffixes (``yahoo.co.uk``, ``hotmail.fr``,
#: ``outlook.de``): any registrable domain with this first label is free mail.
FREE_MAIL_BRANDS: tuple[str, ...] = (
    "gmail", "googlemail", "yahoo", "ymail", "rocketmail", "hotmail", "outlook", "live",
    "windowslive", "msn", "aol", "gmx", "yandex", "protonmail", "icloud",
)
