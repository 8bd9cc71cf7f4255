"""Phone numbers written any common way, read into the E.164 form Cora takes.

The one public function is :func:`recocora.normalize_phone`; what E.164 is lives in the field
catalogue (``phoneNumber`` is a ``phone`` field), which the validation checks against.

>>> normalize_phone(pd.Series(["555-555-0111"])).tolist()
['+15555550111']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import phonenumbers

from .._validation import failure_frame, validation_error
from ..errors import ConfigError
from ._coerce import text_series

__all__ = ["normalize_phone"]

_PARSE_ERRORS: Mapping[int, str] = MappingProxyType(
    {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
            "no valid country code, and no region to assume (pass region=...)"
        ),
        phonenumbers.NumberParseException.NOT_A_NUMBER: "it does not look like a phone number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the '+'/prefix",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }
)


# North American numbers (country code 1) written with only digits and the usual
# punctuation are by far the most common input; for them, phonenumbers' answer is fixed
# (10 digits after an optional 1, area code starting 2-9), and skipping its full parser
# makes a million distinct numbers take about a second instead of half a minute.
_NANP_PUNCTUATION = re.compile(r"[ \t().\-]+")
_NANP_NATIONAL = re.compile(r"(?:\+?1)?([2-9]\d{9})")
_NANP_INTERNATIONAL = re.compile(r"\+1([2-9]\d{9})")


def _nanp_fast_path(text: str, nanp_region: bool) -> str | None:
    """E.164 for a plainly written North American number, or None to use the full parser."""
    digits = _NANP_PUNCTUATION.sub("", text)
    match = (_NANP_NATIONAL if nanp_region else _NANP_INTERNATIONAL).fullmatch(digits)
    return "+1" + match.group(1) if match else None


def _phone_problem(value: Any, region: str | None, nanp_region: bool) -> tuple[str | None, str]:
    """(E.164 text, "") or (None, why it cannot be read)."""
    if isinstance(value, str):
        text = value.strip()
        fast = _nanp_fast_path(text, nanp_region)
        if fast is not None:
            return fast, ""
    elif isinstance(value, bool | np.bool_):
        return None, "a boolean is not a phone number"
    elif isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and np.isfinite(value) and value % 1 == 0
    ):
        text = str(int(value))
    else:
        return None, f"a {type(value).__name__} is not a phone number"
    if not text:
        return None, "the text is blank"
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return None, _PARSE_ERRORS.get(exc.error_type, str(exc))
    if number.extension:
        return None, f"it has an extension ({number.extension}), which E.164 cannot hold"
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return None, "it is a local number without its area code"
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None, "it has the wrong number of digits"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""


def normalize_phone(
    series: pd.Series,
    region: str | None = "US",
    errors: Literal["raise", "keep", "coerce"] = "raise",
) -> pd.Series:
    """Phone numbers written any common way → E.164 (``(555) 555-0111`` → ``+15555550111``).

    Numbers without a ``+`` are read as numbers of ``region`` (an ISO country code such as
    ``"US"``, ``"GB"``; ``None`` when every number has a ``+``). Numbers that are *possible*
    (right length, area code included) are accepted, so fictional 555 numbers pass; local
    numbers without an area code and numbers with an extension are not. Whole numbers (a
    column read as integers) are read as digits. Missing cells stay missing. Each distinct
    value is parsed once. The result has ``series``'s index and name.

    ``errors``: ``"raise"`` raises :class:`~recocora.errors.ValidationError` naming every
    row it cannot read; ``"keep"`` leaves those values as they were (validation will flag
    them); ``"coerce"`` makes them missing. Applying it twice changes nothing.

    >>> normalize_phone(pd.Series(["(555) 555-0111", None, "+44 20 7946 0958"])).tolist()
    ['+15555550111', nan, '+442079460958']
    """
    if errors not in ("raise", "keep", "coerce"):
        raise ConfigError(f"errors must be 'raise', 'keep' or 'coerce', not {errors!r}.")
    if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"region {region!r} is not a region phonenumbers knows; use an ISO 3166 code such "
            "as 'US' or 'GB', or None when every number starts with '+'."
        )
    region = region.upper() if region is not None else None
    nanp_region = region is not None and phonenumbers.country_code_for_region(region) == 1
    values = series.to_numpy(dtype=object)
    missing = np.asarray(pd.isna(values), dtype=bool) if len(values) else np.zeros(0, bool)
    out = values.copy()
    bad: list[int] = []
    reasons: list[str] = []
    cache: dict[Any, tuple[str | None, str]] = {}
    for position in np.flatnonzero(~missing).tolist():
        value = values[position]
        key = value if type(value) is str else (type(value), repr(value))
        try:
            result = cache[key]
        except KeyError:
            result = cache[key] = _phone_problem(value, region, nanp_region)
        text, reason = result
        if text is not None:
            out[position] = text
            continue
        bad.append(position)
        reasons.append(reason)
        out[position] = None if errors == "coerce" else value
    if bad and errors == "raise":
        column = str(series.name) if series.name is not None else "phoneNumber"
        shown = f" for region {region}" if region else ""
        failures = failure_frame(
            {
                "index": series.index[p],
                "column": column,
                "check": "phone",
                "value": values[p],
                "message": f"cannot read this as a phone number{shown}: {r}",
            }
            for p, r in zip(bad, reasons, strict=True)
        )
        raise validation_error(
            failures,
            subject="phone normalisation",
            advice=(
                "Fix these numbers, or pass errors='keep' (leave them as they are; validation "
                "will flag them) or errors='coerce' (make them empty)."
            ),
        )
    return text_series(out, series)
