"""Turn whatever sits in a "domain" column into the bare host name Recotap matches on.

A CRM export holds ``HTTPS://WWW.Acme.com/about``, ``acme.com.``, ``www.acme.com:8080``,
``Bücher.de`` and the odd e-mail address pasted into the wrong column. Recotap matches
accounts by a plain lower-case host name, so every value is reduced to one (``acme.com``,
``xn--bcher-kva.de``) or rejected with a reason before anything is sent.

The work is vectorised over the Series with pandas ``.str`` methods, in three tiers so that
the cost follows the mess: values that already are clean domains are recognised by one
match; the rest are dissected by one extraction; only the values that still fail are
examined check by check, each check seeing just the rows no earlier check explained. The
IDNA conversion, which has no vectorised form, runs once per *distinct* non-ASCII value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import idna
import numpy as np
import pandas as pd

from recocora._json_values import unencodable_mask
from recocora._validation import validation_error

__all__ = ["domain_problems", "failure_cases", "normalize_domain", "unicode_form"]

# pandas' nullable string dtype: the same under pandas 2 and 3, missing values are pd.NA.
_STRING = pd.StringDtype()

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"

# A valid host name: labels of 1-63 letters, digits and inner hyphens, at least two labels,
# a top-level label that is not all digits (which also rules out IPv4 addresses), 253
# characters at most.
_HOST = re.compile(rf"(?=.{{1,253}}\Z)(?:{_LABEL}\.)+(?![0-9]+\Z){_LABEL}")

# The host of a valid value that is also normalised, as far as _URL_HOST leaves it.
_DONE = re.compile(rf"(?!www\.){_HOST.pattern}")

# An already normalised domain, for tier 1 (see domain_problems). Every part is
# unambiguous, so a long value that fails costs linear time, not quadratic.
_CLEAN_LABEL = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_CLEAN = re.compile(rf"(?!www\.)(?:{_CLEAN_LABEL}\.)+[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

# The host inside a URL-ish value (already trimmed and lower-cased). Scheme only when
# followed by ``//``, or ``acme.com:8080`` would read as scheme ``acme.com``. User info only
# after a scheme, because a bare ``bob@acme.com`` is an e-mail address in the wrong column,
# and guessing the domain from it could map the wrong account. One ``www.`` goes here when
# two labels follow, the common case; the rest (``www.www.x.com``, ``www.com.``) is left to
# _strip_www, because a repeated group here would make failing matches quadratic. An empty
# port must not be followed by ``//``, or ``http://[::1]`` would read as host ``http`` with
# path ``//[::1]``. What this does not match (a bare ``@``, a port that is not a number, an
# IPv6 literal) is left to the diagnosis.
_URL_HOST = re.compile(
    r"\A(?:(?:[a-z][a-z0-9+.\-]*:)?//(?:[^/?#@]*@)?)?"
    r"(?:www\.(?=[^/?#:@.]*\.[^/?#:@.]))?"
    r"([^/?#:@]*)"
    r"(?::[0-9]{1,5}|:(?!//))?"
    r"(?:[/?#]|\Z)",
    re.DOTALL,
)

_EMAIL = "looks like an email address, not a domain"

_Mask: TypeAlias = "np.ndarray[Any, np.dtype[np.bool_]]"
_Message: TypeAlias = "str | Callable[[pd.Series[Any]], pd.Series[Any]]"
_Check: TypeAlias = "tuple[Callable[[pd.Series[Any]], pd.Series[Any]], _Message]"


def domain_problems(series: pd.Series[Any]) -> pd.DataFrame:
    """Normalise every value of ``series`` and say why the ones that cannot be are invalid.

    Returns a frame with ``series``' index and two nullable string columns: ``normalized``
    (the bare lower-case ASCII host name, missing when invalid) and ``reason`` (missing when
    the value is fine). :func:`normalize_domain` and the Recotap schema are both built on it.

    >>> domain_problems(pd.Series(["HTTPS://WWW.Acme.com/x", "1.2.3.4"]))
      normalized                          reason
    0   acme.com                            <NA>
    1       <NA>  is an IP address, not a domain
    """
    # Broken UTF-16 fits no str column: such cells are set aside, then reported.
    broken = _broken_text(series)
    if broken.any():
        series = series.astype(object).where(~broken)
    # Positional from here on: the caller's index may hold duplicates or be a MultiIndex.
    raw = series.astype(_STRING).reset_index(drop=True)
    # Missing as pandas (and so the schema's not-null check) sees it: None, NaN, NA, NaT.
    missing = series.isna().to_numpy(dtype=bool)
    text = raw.str.strip().str.lower()

    # Tier 1: values that already are normalised domains, by a pattern that is sufficient,
    # not necessary: single inner hyphens only (so punycode ``xn--`` labels, which must be
    # decoded to be checked, are left to tier 2), a top-level label starting with a letter,
    # no ``www.`` (may need stripping), 63 characters at most (so no label or name is too
    # long).
    # It costs a pass over every row, so it runs only when a sample says most rows are clean;
    # the result is the same either way.
    clean = np.zeros(len(text), dtype=bool)
    sample = np.random.default_rng(0).integers(0, max(len(text), 1), size=min(len(text), 1000))
    if len(text) and _clean(text.iloc[sample]).mean() > 0.5:
        clean = _clean(text)
    normalized = np.full(len(text), None, dtype=object)
    normalized[clean] = text.to_numpy(dtype=object)[clean]
    reason = np.full(len(text), None, dtype=object)
    reason[missing] = "is missing"
    reason[broken] = "is text with unpaired surrogates (broken UTF-16); fix its encoding"

    todo = ~clean & ~missing
    if todo.any():
        normalized[todo], reason[todo] = _dissect(text[todo])

    result: pd.DataFrame = pd.DataFrame(
        {
            "normalized": pd.array(normalized, dtype=_STRING),
            "reason": pd.array(reason, dtype=_STRING),
        },
        index=series.index,
    )
    return result


def _broken_text(series: pd.Series[Any]) -> _Mask:
    dtype = series.dtype
    if not (dtype == np.dtype(object)
            or (isinstance(dtype, pd.StringDtype) and dtype.storage == "python")):
        return np.zeros(len(series), dtype=bool)
    mask = unencodable_mask(series)
    values = series.to_numpy(dtype=object)
    for i in np.flatnonzero(mask).tolist():
        mask[i] = isinstance(values[i], str)  # a huge number is just not a domain
    return mask


def normalize_domain(
    series: pd.Series[Any], errors: Literal["raise", "coerce"] = "raise"
) -> pd.Series[Any]:
    """Reduce each value to the bare host name Recotap matches accounts on.

    Trims, lower-cases, strips scheme, user info (only after a scheme), ``www.``, port,
    path, query, fragment and trailing dots, and converts internationalised names to
    punycode. Empty, missing or malformed values (``localhost``, ``1.2.3.4``,
    ``bob@acme.com``) raise a :class:`~recocora.errors.ValidationError` whose
    ``failure_cases`` name each bad row and why; with ``errors="coerce"`` they become
    missing instead. The result is a nullable string Series with ``series``' index and name.

    >>> normalize_domain(pd.Series(["HTTPS://WWW.Acme.com/x", "acme.com.", "Bücher.de"]))
    0            acme.com
    1            acme.com
    2    xn--bcher-kva.de
    dtype: string
    """
    if errors not in ("raise", "coerce"):
        raise ValueError(f"errors must be 'raise' or 'coerce', not {errors!r}")
    problems = domain_problems(series)
    if errors == "raise":
        cases = failure_cases(series, problems["reason"])
        if len(cases):
            raise validation_error(
                cases, subject="domain checks",
                advice="Fix these values, or pass errors='coerce' to get NA for them.",
            )
    out = problems["normalized"]
    out.name = series.name
    return out


def unicode_form(domain: str) -> str | None:
    """The Unicode spelling of a normalised domain with punycode labels, or ``None`` when it
    has none (or they do not decode). Recotap's docs never say it stores punycode, so a
    domain is looked for in both spellings.

    >>> unicode_form("xn--mller-bau-q9a.de"), unicode_form("acme.com")
    ('müller-bau.de', None)
    """
    if "xn--" not in domain:
        return None
    try:
        return str(idna.decode(domain))
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def failure_cases(
    values: pd.Series[Any],
    reasons: pd.Series[Any],
    *,
    column: Any = None,
    check: str = "valid_domain",
) -> pd.DataFrame:
    """Failure cases (``index``, ``column``, ``check``, ``value``, ``message``) for every row
    of ``values`` whose entry in the index-aligned ``reasons`` is not missing.

    ``index`` holds the row's label (a tuple under a MultiIndex), ``value`` the original
    cell, ``column`` defaults to ``values.name``. Rows come out in the order of ``values``.

    >>> s = pd.Series(["acme.com", "localhost"], name="site")
    >>> failure_cases(s, domain_problems(s)["reason"])[["index", "column", "value"]]
       index column      value
    0      1   site  localhost
    """
    positions = np.flatnonzero(reasons.notna().to_numpy(dtype=bool))
    labels = values.index.take(positions)
    index_col: Any = (
        pd.Series(labels.to_list(), dtype=object)
        if isinstance(labels, pd.MultiIndex)
        else pd.Series(labels)
    )
    name = values.name if column is None else column
    cases: pd.DataFrame = pd.DataFrame(
        {
            "index": index_col,
            "column": pd.Series([name] * len(positions), dtype=object),
            "check": pd.Series([check] * len(positions), dtype=object),
            "value": pd.Series(values.to_numpy(dtype=object)[positions], dtype=object),
            "message": pd.Series(reasons.to_numpy(dtype=object)[positions], dtype=object),
        }
    )
    return cases


def _matches(text: pd.Series[Any], pattern: re.Pattern[str]) -> _Mask:
    return text.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)


def _clean(text: pd.Series[Any]) -> _Mask:
    short: _Mask = (text.str.len() <= 63).fillna(False).to_numpy(dtype=bool)
    return _matches(text, _CLEAN) & short


def _contains(text: pd.Series[Any], pattern: str, *, regex: bool) -> _Mask:
    return text.str.contains(pattern, regex=regex).fillna(False).to_numpy(dtype=bool)


def _dissect(text: pd.Series[Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Tier 2: pull the host out of URL-ish values, convert IDNs, validate; then diagnose
    the failures. Returns positional object arrays (normalised, reason)."""
    host = text.str.extract(_URL_HOST, expand=False)
    ok = _matches(host, _DONE)
    idna_error = pd.Series(pd.NA, index=host.index, dtype=_STRING)
    # Trailing dots, a ``www.`` label and non-ASCII letters all make _DONE fail, so only
    # failures that show one of them need the passes that strip the first two and convert
    # the third; the other failures are invalid as they stand.
    retry = ~ok & host.notna().to_numpy(dtype=bool)
    if retry.any():
        retry[retry] = _contains(host[retry], r"\.\Z|\Awww\.|[^\x00-\x7f]", regex=True)
    if retry.any():
        fixed, error = _to_ascii(host[retry].str.rstrip("."))
        fixed = _strip_www(fixed)
        host = host.copy()
        host[retry] = fixed
        idna_error[retry] = error
        ok[retry] = _matches(fixed, _HOST) & error.isna().to_numpy(dtype=bool)
    punycode_error = pd.Series(pd.NA, index=host.index, dtype=_STRING)
    if ok.any():
        punycode_error[ok] = _punycode_errors(host[ok])
        ok &= punycode_error.isna().to_numpy(dtype=bool)

    normalized = host.to_numpy(dtype=object).copy()
    normalized[~ok] = None
    reason = np.full(len(text), None, dtype=object)
    bad = ~ok
    if bad.any():
        reason[bad] = _diagnose(
            text[bad], host[bad], idna_error[bad], punycode_error[bad]
        ).to_numpy(dtype=object)
    return normalized, reason


def _strip_www(host: pd.Series[Any]) -> pd.Series[Any]:
    """Drop leading ``www.`` labels, but only while a real domain remains: ``www.com`` is a
    domain of its own, and ``www.www.com`` becomes it."""
    starts = host.str.startswith("www.").fillna(False).to_numpy(dtype=bool)
    if not starts.any():
        return host
    stripped = host[starts].str.replace(r"\A(?:www\.)+", "", regex=True)
    host = host.copy()
    host[starts] = stripped.where(stripped.str.contains(".", regex=False), "www." + stripped)
    return host


def _diagnose(
    text: pd.Series[Any],
    host: pd.Series[Any],
    idna_error: pd.Series[Any],
    punycode_error: pd.Series[Any],
) -> pd.Series[Any]:
    """Tier 3: the reason each of these values is not a domain.

    ``host`` is what :data:`_URL_HOST` extracted, NA where the value did not even parse.
    The first check that fires gives the reason, and each check only sees the rows that no
    earlier one explained, so a column of a million e-mail addresses costs one check.
    """
    unparsed: list[_Check] = [
        (lambda t: t.str.contains("@", regex=False) & ~t.str.contains("//", regex=False),
         _email_reason),
        (lambda t: t.str.contains("[", regex=False), "is an IP address, not a domain"),
        (lambda t: t.str.contains(":", regex=False),
         "has something after ':' that is not a port number"),
    ]
    parsed: list[_Check] = [
        (lambda h: text[h.index].eq(""), "is empty"),
        (lambda h: h.eq(""), "has no host name"),
        (lambda h: idna_error[h.index].notna(),
         lambda h: "is not a valid internationalised domain name ("
         + idna_error[h.index] + ")"),
        (lambda h: h.str.fullmatch(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"),
         "is an IP address, not a domain"),
        (lambda h: h.str.contains(r"[^a-z0-9.\-]", regex=True),
         lambda h: "contains "
         + h.str.extract(r"([^a-z0-9.\-])", expand=False).map(repr)
         + ", which is not allowed in a domain name"),
        (lambda h: ~h.str.contains(".", regex=False),
         "has no top-level domain (a bare name like 'localhost' is not a domain)"),
        (lambda h: h.str.contains(r"^\.|\.\.", regex=True),
         "has an empty label (a leading dot or '..')"),
        (lambda h: h.str.contains(r"[^.]{64}", regex=True),
         "has a label longer than 63 characters"),
        (lambda h: h.str.contains(r"(?:^|\.)-|-(?:\.|$)", regex=True),
         "has a label that starts or ends with '-'"),
        (lambda h: h.str.len() > 253, "is longer than 253 characters"),
        (lambda h: h.str.contains(r"\.[0-9]+$", regex=True),
         "ends in an all-numeric label, which is not a top-level domain"),
        (lambda h: punycode_error[h.index].notna(),
         lambda h: "has an invalid punycode label (" + punycode_error[h.index] + ")"),
    ]
    reason: pd.Series[Any] = pd.Series(pd.NA, index=text.index, dtype=_STRING)
    is_unparsed = host.isna()
    _first_failing(text[is_unparsed], unparsed, reason)
    _first_failing(host[~is_unparsed], parsed, reason)
    # Every value _HOST rejects fails one of the checks above; this only keeps the promise
    # that an invalid value never goes without a reason.
    return reason.fillna("cannot be read as a domain or URL")


def _first_failing(values: pd.Series[Any], checks: list[_Check], reason: pd.Series[Any]) -> None:
    """Write into ``reason`` (aligned on the index) the message of the first check each
    value fails. Values that fail none are left as they were."""
    pending = values
    for test, message in checks:
        if pending.empty:
            return
        hit = test(pending).fillna(False).to_numpy(dtype=bool)
        if hit.any():
            caught = pending[hit]
            reason[caught.index] = message(caught) if callable(message) else message
            pending = pending[~hit]


def _email_reason(text: pd.Series[Any]) -> pd.Series[Any]:
    # The hint names the part after the last ``@`` only when it is a valid domain by
    # itself; such a domain needs no quoting beyond the quotes around it.
    domain = text.str.extract(rf"@({_HOST.pattern})\Z", expand=False)
    reason: pd.Series[Any] = (_EMAIL + " (did you mean '" + domain + "'?)").fillna(_EMAIL)
    return reason


def _to_ascii(host: pd.Series[Any]) -> tuple[pd.Series[Any], pd.Series[Any]]:
    """IDNA (UTS #46, non-transitional, as browsers do) for the non-ASCII hosts.

    Returns the hosts with the non-ASCII ones converted (left as they were where conversion
    failed) and, aligned, the conversion error or NA.
    """
    errors: pd.Series[Any] = pd.Series(pd.NA, index=host.index, dtype=_STRING)
    non_ascii = _contains(host, r"[^\x00-\x7f]", regex=True)
    if not non_ascii.any():
        return host, errors
    codes, distinct = pd.factorize(host.to_numpy(dtype=object)[non_ascii])
    ascii_of = np.array(distinct, dtype=object)
    error_of = np.full(len(distinct), None, dtype=object)
    for i, value in enumerate(distinct):
        try:
            converted = idna.encode(value, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            error_of[i] = str(exc) or type(exc).__name__
            continue
        # The mapping can itself produce a trailing dot (from the ideographic full stop).
        ascii_of[i] = converted.rstrip(".")
    host = host.copy()
    host[non_ascii] = ascii_of[codes]
    errors[non_ascii] = error_of[codes]
    return host, errors


def _punycode_errors(host: pd.Series[Any]) -> pd.Series[Any]:
    """The decoding error of the first bad ``xn--`` label of each host, or NA."""
    errors: pd.Series[Any] = pd.Series(pd.NA, index=host.index, dtype=_STRING)
    has_alabel = _contains(host, "xn--", regex=False)
    if not has_alabel.any():
        return errors
    codes, distinct = pd.factorize(host.to_numpy(dtype=object)[has_alabel])
    error_of = np.full(len(distinct), None, dtype=object)
    for i, value in enumerate(distinct):
        for label in value.split("."):
            if label.startswith("xn--"):
                try:
                    idna.ulabel(label)
                except (idna.IDNAError, UnicodeError, ValueError) as exc:
                    error_of[i] = f"{label!r}: {exc}"
                    break
    errors[has_alabel] = error_of[codes]
    return errors
