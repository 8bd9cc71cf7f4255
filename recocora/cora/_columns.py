"""Column names: which field a name stands for, the field a user probably meant, and what to
say about a column that cannot be sent (unknown, read-only, absent but required).

Suggestions come from the field catalogue (every field's path, its last key, its last two keys
run together: ``person.name.first`` answers to ``first_name``) plus a few common aliases.

>>> suggest("Phone Number"), suggest("dob")
('phoneNumber', 'person.birthdate')
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from types import MappingProxyType

from ._fields import CATALOGUE, CLOSED_OBJECTS, READ_ONLY, ROOT, TOP_LEVEL, Field, child, keys_of

__all__ = [
    "column_message",
    "required_column_message",
    "required_message",
    "suggest",
    "unknown_key_message",
]

_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "phone": "phoneNumber",
        "mobile": "phoneNumber",
        "email": "emailAddress",
        "balance": "currentBalance",
        "dob": "person.birthdate",
        "dateofbirth": "person.birthdate",
        "firstname": "person.name.first",
        "lastname": "person.name.last",
        "zipcode": "address.zip",
        "postalcode": "address.zip",
        "postcode": "address.zip",
        "filenumber": "metadata.filenumber",
        "portfolio": "portfolioId",
        "tag": "tags",
    }
)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _candidates() -> dict[str, str]:
    """Normalised spelling → field path, for suggestions."""
    out: dict[str, str] = {}
    for path in CATALOGUE:
        if path in CLOSED_OBJECTS and "." in path:
            continue  # "name" alone should not point at the person.name object
        parts = path.split(".")
        out.setdefault(_norm(parts[-1]), path)
        if len(parts) > 1:
            out.setdefault(_norm(parts[-1] + parts[-2]), path)  # name.first → "firstname"
    for path in CATALOGUE:
        out[_norm(path)] = path
    for alias, path in _ALIASES.items():
        out.setdefault(alias, path)
    return out


_SUGGEST = _candidates()


def suggest(column: str, within: str | None = None) -> str | None:
    """The field a user probably meant by ``column`` (among the keys of ``within``), or None."""
    pool = {
        norm: path
        for norm, path in _SUGGEST.items()
        if within is None or path.startswith(within + ".")
    }
    key = _norm(column if within is None else column[len(within) + 1 :])
    if not key:
        return None
    if key in pool:
        return pool[key]
    if within is not None:
        key = _norm(column[len(within) + 1 :].split(".")[-1])
        if key in pool:
            return pool[key]
    if len(key) >= 4:
        containing = sorted({p for n, p in pool.items() if key in n})
        if len(containing) == 1:
            return containing[0]
    close = difflib.get_close_matches(key, list(pool), n=1, cutoff=0.75)
    return pool[close[0]] if close else None


def _leaf_keys(owner: str) -> list[str]:
    """The keys under a closed object, as dotted paths below it (``name.first``, ...)."""
    return [
        p[len(owner) + 1 :]
        for p, f in CATALOGUE.items()
        if p.startswith(owner + ".") and f.kind != "object"
    ]


def unknown_key_message(owner: str, key: object) -> str:
    """What to say about ``key`` inside a dict for the closed object ``owner``."""
    guess = suggest(f"{owner}.{key}", within=owner) if isinstance(key, str) else None
    did = f"; did you mean {guess.rsplit('.', 1)[-1]!r}?" if guess else ""
    return f"{owner} has no key {key!r}{did} (its keys: {', '.join(keys_of(owner))})"


def _deepest(column: str) -> Field:
    """The deepest field along ``column``'s dotted path that Cora knows."""
    field = ROOT
    for key in column.split("."):
        sub = child(field, key)
        if sub is None:
            break
        field = sub
    return field


def column_message(column: str) -> tuple[str, str]:
    """(check, message) for a column Cora does not accept."""
    if column in READ_ONLY:
        why = (
            "the organisation comes from your API key, so Cora refuses organizationId"
            if column == "organizationId"
            else f"{column} is managed by the server and read-only"
        )
        hint = (
            "; if these are your own ids, rename the column: columns={'id': 'externalId'}"
            if column == "id"
            else ""
        )
        return "read_only", f"{why}. Drop the column (df.drop(columns=[{column!r}])){hint}."
    owner = _deepest(column)
    if owner is not ROOT and owner.kind == "object" and owner.closed:
        guess = suggest(column, within=owner.path)
        did = f"did you mean {guess!r}? " if guess else ""
        return "unknown_column", (
            f"{owner.path} has no key {column[len(owner.path) + 1 :]!r}; {did}its keys are "
            f"{', '.join(_leaf_keys(owner.path))}. Rename the column, or drop it."
        )
    if owner is not ROOT and not owner.open and owner.kind != "object":
        return "unknown_column", (
            f"{owner.path} is not an object field, so {column!r} cannot be sent; "
            "rename the column, or put free-form data under metadata.<key>."
        )
    if owner is not ROOT:
        return "unknown_column", (
            "a dotted column name needs a key between every pair of dots, e.g. 'metadata.source'."
        )
    guess = suggest(column)
    if guess is not None:
        return "unknown_column", (
            f"{column!r} is not a Cora account field; did you mean {guess!r}? "
            f"Rename it with columns={{{column!r}: {guess!r}}}, or drop the column."
        )
    return "unknown_column", (
        f"{column!r} is not a Cora account field. Rename it to a field "
        f"({', '.join(sorted(TOP_LEVEL))}), put it under metadata (columns={{{column!r}: "
        f"'metadata.{_norm(column) or 'key'}'}}), or drop it."
    )


def required_message(column: str) -> str:
    """What to say about a row whose required ``column`` is empty."""
    if column == "externalId":
        return "externalId is required on every row (it is how Cora matches accounts)"
    return (
        f"mode='create' needs {column} on every row (Cora cannot create an account without "
        "it); fill it in, or use mode='upsert' if these accounts may already exist"
    )


def required_column_message(column: str) -> str:
    """What to say about a frame without the required ``column``."""
    if column == "externalId":
        return (
            "the frame has no externalId column; every row needs one. Rename yours with "
            "columns={'<your id column>': 'externalId'}"
        )
    owner, _, key = column.rpartition(".")
    source = (
        f" (a {column} column, or a {owner} column of dicts with a {key!r} key)" if owner else ""
    )
    return (
        f"mode='create' needs a {column} column{source}; add it, or use mode='upsert' "
        "if these accounts may already exist"
    )
