"""Company names for matching: cleaned (legal forms, accents, connectors), blocking keys,
and pairwise similarities, each worked out on whole columns."""

from __future__ import annotations

import re
from typing import Any, cast

import numpy as np
import pandas as pd
from rapidfuzz import process

from ._match_data import LEGAL_FORMS, NAME_CONNECTORS

__all__ = ["clean_names", "compact", "initials", "name_keys", "similarity"]

_STRING = pd.StringDtype()

_FORMS = "|".join(sorted(LEGAL_FORMS, key=len, reverse=True))
_TRAILING_FORMS = re.compile(rf"(?:\s+(?:{_FORMS}))+$")
_CONNECTOR = re.compile(rf"(?<=\S)\s+(?:{'|'.join(NAME_CONNECTORS)})\s+(?=\S)")


def clean_names(names: pd.Series[Any]) -> pd.Series[Any]:
    """Company names reduced to what tells them apart: lower case, accents folded, ``&`` and
    "and" dropped, punctuation gone, trailing legal forms (Inc, Ltd, GmbH, SAS, BV ...)
    removed. The first word always stays, so no name is cleaned down to nothing; a missing
    or empty name gives ``<NA>``.

    >>> clean_names(pd.Series(["ACME Incorporated", "Acme, Inc.", "Müller & Söhne GmbH"]))
    0              acme
    1              acme
    2    muller sohne
    dtype: string
    """
    s = names.astype(_STRING)
    s = s.str.normalize("NFKD").str.replace(r"[\u0300-\u036f]", "", regex=True).str.casefold()
    s = s.str.replace(".", "", regex=False).str.replace("'", "", regex=False)
    s = s.str.replace(r"[\W_]+", " ", regex=True).str.strip()
    s = s.str.replace(r"^the\s+(?=\S)", "", regex=True)
    s = s.str.replace(_CONNECTOR, " ", regex=True)
    s = s.str.replace(_TRAILING_FORMS, "", regex=True)
    return cast("pd.Series[Any]", s.where(s.str.len() > 0))


def name_keys(clean: pd.Series[Any]) -> pd.DataFrame:
    """Blocking keys of each cleaned name: its words, its first six letters without spaces
    ("acmetools" meets "acme tools"), and the consonant skeleton of its first word (so a typo
    there still meets its account). Short keys shared by thousands would cost more pairs
    than they find."""
    present = clean.dropna()
    if not len(present):
        none: pd.DataFrame = pd.DataFrame(
            {"pos": pd.Series(dtype="int64"), "key": pd.Series(dtype=object)}
        )
        return none
    compact = present.str.replace(" ", "", regex=False)
    words = present.str.split(" ")
    # The first word's consonants, repeats squeezed: "Rrayel" and "Rayel" both give "ryl".
    skeleton = words.str[0].str.replace(r"(?<=.)[aeiouy]", "", regex=True).str.replace(
        r"(.)\1+", r"\1", regex=True
    )
    keys = pd.concat([
        words.explode(),
        "^" + compact.str.slice(0, 6),
        "~" + skeleton[skeleton.str.len() >= 2],
    ])
    frame = pd.DataFrame({"pos": keys.index.to_numpy(), "key": keys.to_numpy()})
    return cast("pd.DataFrame", frame.drop_duplicates())


def similarity(a: pd.Series[Any], b: pd.Series[Any], scorer: Any) -> np.ndarray[Any, Any]:
    """Pairwise similarity (0-1) of ``a`` and ``b`` by ``scorer``, 0 where either is missing."""
    known = (a.notna() & b.notna()).to_numpy()
    out = np.zeros(len(a))
    if known.any():
        out[known] = process.cpdist(
            a[known].astype(str).tolist(), b[known].astype(str).tolist(),
            scorer=scorer, workers=-1,
        ) / 100.0
    return out


def compact(clean: pd.Series[Any]) -> np.ndarray[Any, Any]:
    """Each name without spaces, "" when missing, as an array to gather pairs from."""
    return clean.str.replace(" ", "", regex=False).fillna("").to_numpy(dtype=object)


def initials(clean: pd.Series[Any]) -> np.ndarray[Any, Any]:
    """The first letters of each name's words ("international business machines" → "ibm");
    a missing name gets a value no name equals."""
    first = clean.str.split(" ").map(lambda words: "".join(w[:1] for w in words),
                                     na_action="ignore")
    return first.fillna("\x00").to_numpy(dtype=object)
