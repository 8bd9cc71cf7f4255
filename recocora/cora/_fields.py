"""The Cora account fields, written once: what each field holds and how the server treats it.

Contract §1.3, as a table of :class:`Field` entries keyed by dotted path (``person.name.first``
is the ``first`` key of the ``name`` object of ``person``). Everything that needs to know a
field's rules asks this module: the vectorised validation of a frame, the renaming and
normalising of its columns, the messages, and the local prediction of what the server will
answer (``df.cora.diff()``). A rule changed here changes everywhere.

Kinds (what a value must be, on the wire):

- ``id``: the match key, non-empty text (``externalId``).
- ``text``: text. ``code``: text that may start with ``0`` (zip, SSN), so a number there has
  probably lost digits already. ``email``: text; its shape is checked locally only (the server
  takes any text). ``phone``: text in E.164 (the server answers ``INVALID_PHONE_NUMBER``).
- ``date``: ``YYYY-MM-DD`` text; ``datetime``: ISO 8601 date and time text.
- ``number``: a finite number or numeric text (``"450.25"``).
- ``text_list``: a list of text.
- ``object``: a dict; :attr:`Field.closed` objects take only their catalogued keys, open ones
  take any key (the catalogued keys keep their kinds, the others hold ``any`` value).
- ``text_or_object``: text, or an open dict. ``any``: any JSON value.

:func:`row_problems` walks a JSON row the way the server checks it and yields each
:class:`Problem` with the per-row code the server answers.

>>> field_of("history.statuteLimitationsDate").kind, field_of("metadata.x").kind
('datetime', 'any')
>>> field_of("person.nickname") is None
True
>>> [p.code for p in row_problems({"externalId": "A1", "history": {"origin": 7}})]
['INVALID_FIELD_VALUE']
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "CATALOGUE",
    "CLOSED_OBJECTS",
    "CREATE_ONLY",
    "CREATE_REQUIRED",
    "DATE",
    "E164",
    "EMAIL",
    "NUMERIC",
    "OPEN_OBJECTS",
    "READ_ONLY",
    "ROOT",
    "TEXT_KINDS",
    "TOP_LEVEL",
    "Field",
    "Kind",
    "Problem",
    "child",
    "expected",
    "field_of",
    "is_date_text",
    "is_datetime_text",
    "is_numeric_text",
    "keys_of",
    "row_problems",
    "value_problems",
]

Kind = Literal[
    "id",
    "text",
    "code",
    "email",
    "phone",
    "date",
    "datetime",
    "number",
    "text_list",
    "object",
    "text_or_object",
    "any",
]

TEXT_KINDS: frozenset[str] = frozenset(
    {"id", "text", "code", "email", "phone", "date", "datetime"}
)
"""Kinds whose value is JSON text."""

E164 = re.compile(r"\+[1-9][0-9]{0,14}")
"""A phone number as Cora takes it: ``+``, then 1-15 digits, the first one 1-9."""
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
"""An e-mail address's shape (checked locally only)."""
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
"""A date as ``YYYY-MM-DD`` (:func:`is_date_text` also asks that the day exists)."""
NUMERIC = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
"""Numeric text a number field takes (:func:`is_numeric_text` also asks that it is finite)."""


@dataclass(frozen=True)
class Field:
    """One field: its dotted ``path``, its :data:`Kind` and how the server treats it."""

    path: str
    kind: Kind
    closed: bool = False
    """An object that takes only its catalogued keys."""
    create_only: bool = False
    """Sent to create an account, never changes a stored one (``externalId``, ``portfolioId``)."""
    required_on_create: bool = False
    """A new account cannot be created without it (``MISSING_REQUIRED_FIELD``)."""

    @property
    def open(self) -> bool:
        """True when keys beyond the catalogued ones are accepted under this field."""
        return self.kind in ("text_or_object", "any") or (self.kind == "object" and not self.closed)


def _catalogue(*fields: Field) -> Mapping[str, Field]:
    return MappingProxyType({f.path: f for f in fields})


CATALOGUE: Mapping[str, Field] = _catalogue(
    Field("externalId", "id", create_only=True),
    Field("phoneNumber", "phone", required_on_create=True),
    Field("portfolioId", "text", create_only=True, required_on_create=True),
    Field("bucket", "text"),
    Field("metadata", "object"),
    Field("metadata.filenumber", "any", required_on_create=True),
    Field("status", "text"),
    Field("clientStatus", "text"),
    Field("emailAddress", "email"),
    Field("person", "object", closed=True),
    Field("person.name", "object", closed=True),
    Field("person.name.first", "text"),
    Field("person.name.last", "text"),
    Field("person.birthdate", "date"),
    Field("person.ssn", "code"),
    Field("person.last4SSN", "code"),
    Field("address", "object", closed=True),
    Field("address.street", "text"),
    Field("address.additionalStreet", "text"),
    Field("address.city", "text"),
    Field("address.state", "text"),
    Field("address.zip", "code"),
    Field("address.country", "text"),
    Field("history", "object"),
    Field("history.origin", "text"),
    Field("history.statuteLimitationsDate", "datetime"),
    Field("typeOfDebt", "text"),
    Field("compliance", "object"),
    Field("paymentRules", "object"),
    Field("contactInfo", "object"),
    Field("smsOptOut", "object"),
    Field("bank", "text"),
    Field("client", "text"),
    Field("originalCreditor", "text_or_object"),
    Field("currentBalance", "number"),
    Field("tags", "text_list"),
)
"""Every field a client may write (contract §1.3), by dotted path."""

ROOT = Field("", "object", closed=True)
"""The account itself: a closed object whose keys are the top-level fields."""

TOP_LEVEL: tuple[str, ...] = tuple(p for p in CATALOGUE if "." not in p)
"""The top-level fields, in catalogue order."""

READ_ONLY: frozenset[str] = frozenset(
    {"id", "organizationId", "status_category", "currentEmailAddressId", "emailAddressIds",
     "createdAt", "updatedAt"}
)
"""Server-managed fields, never sent (the server answers ``FIELD_NOT_UPDATABLE``)."""

CREATE_REQUIRED: tuple[str, ...] = tuple(p for p, f in CATALOGUE.items() if f.required_on_create)
"""What a new account needs: ``phoneNumber``, ``portfolioId``, ``metadata.filenumber``."""

CREATE_ONLY: frozenset[str] = frozenset(p for p, f in CATALOGUE.items() if f.create_only)
"""Fields that never change a stored account."""

CLOSED_OBJECTS: frozenset[str] = frozenset(
    p for p, f in CATALOGUE.items() if f.kind == "object" and f.closed
)
"""Objects that take only their catalogued keys (``person``, ``person.name``, ``address``)."""

OPEN_OBJECTS: frozenset[str] = frozenset(
    p for p, f in CATALOGUE.items() if f.kind in ("object", "text_or_object") and f.open
)
"""Objects whose keys are free-form: ``metadata.<anything>`` is accepted."""


# --------------------------------------------------------------------------- lookup


def keys_of(path: str) -> tuple[str, ...]:
    """The catalogued keys of the object at ``path`` (``""``: the top-level fields).

    >>> keys_of("person.name")
    ('first', 'last')
    """
    prefix = f"{path}." if path else ""
    return tuple(
        p[len(prefix):] for p in CATALOGUE if p.startswith(prefix) and "." not in p[len(prefix):]
    )


def child(parent: Field, key: Any) -> Field | None:
    """The field of ``key`` inside ``parent`` (an object), or ``None`` when it takes no such key.

    >>> child(CATALOGUE["history"], "anything").kind, child(CATALOGUE["person"], "x")
    ('any', None)
    """
    if not isinstance(key, str) or not key or "." in key or parent.kind in TEXT_KINDS:
        return None
    path = f"{parent.path}.{key}" if parent.path else key
    known = CATALOGUE.get(path)
    if known is not None:
        return known
    return Field(path, "any") if parent.open else None


def field_of(path: str) -> Field | None:
    """The field a dotted column name stands for, or ``None`` for one Cora does not take.

    >>> field_of("person.name.first").kind, field_of("metadata.a.b").kind, field_of("nope")
    ('text', 'any', None)
    """
    field: Field | None = ROOT
    for key in path.split("."):
        field = child(field, key) if field is not None else None
    return field


# --------------------------------------------------------------------------- formats


def is_date_text(text: str) -> bool:
    """True for ``YYYY-MM-DD`` text naming a real day."""
    if DATE.fullmatch(text) is None:
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_datetime_text(text: str) -> bool:
    """True for an ISO 8601 date and time (``2031-02-03T00:00:00Z``; a date alone counts)."""
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def is_numeric_text(text: str) -> bool:
    """True for text a number field takes: a plain finite number, e.g. ``"450.25"``."""
    return NUMERIC.fullmatch(text) is not None and math.isfinite(float(text))


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ) or (isinstance(value, str) and is_numeric_text(value))


_EXPECTED: Mapping[str, str] = MappingProxyType(
    {
        "id": "text",
        "text": "text",
        "code": "text",
        "email": "text",
        "phone": "text",
        "date": "a date written YYYY-MM-DD (text)",
        "datetime": "an ISO 8601 date and time such as 2031-02-03T00:00:00Z (text)",
        "number": "a finite number or numeric text such as 450.25",
        "text_list": "a list of text",
        "object": "a dict",
        "text_or_object": "text or a dict",
        "any": "a JSON value",
    }
)


def expected(kind: Kind) -> str:
    """What a value of ``kind`` must be, as words for a message.

    >>> expected("date")
    'a date written YYYY-MM-DD (text)'
    """
    return _EXPECTED[kind]


# --------------------------------------------------------------------------- the server's checks


@dataclass(frozen=True)
class Problem:
    """Why the server refuses one value: ``code`` is the per-row code it answers."""

    path: str
    code: Literal["FIELD_NOT_UPDATABLE", "INVALID_FIELD_VALUE", "INVALID_PHONE_NUMBER"]
    message: str
    value: Any = None
    field: Field | None = None
    """The field (``None`` when the key is not one the object takes)."""
    unknown: tuple[str, Any] | None = None
    """For a key the object does not take: (the object's path, the key)."""


def _type_name(value: Any) -> str:
    return type(value).__name__


def value_problems(field: Field, value: Any) -> Iterator[Problem]:
    """The problems the server finds in ``value`` (a JSON value) sent for ``field``.

    A ``None`` (JSON null) passes: it clears the stored value.

    >>> [p.message for p in value_problems(CATALOGUE["person"], {"birthdate": "1990-02-30"})]
    ["person.birthdate must be a date written YYYY-MM-DD (text), not '1990-02-30'"]
    """
    kind, path = field.kind, field.path
    if value is None or kind == "any":
        return
    wrong = f"{path} must be {expected(kind)}, not {_type_name(value)}"
    if kind in TEXT_KINDS:
        if not isinstance(value, str):
            yield Problem(path, "INVALID_FIELD_VALUE", wrong, value, field)
        elif kind in ("date", "datetime") and not (
            is_date_text(value) if kind == "date" else is_datetime_text(value)
        ):
            yield Problem(
                path, "INVALID_FIELD_VALUE", f"{path} must be {expected(kind)}, not {value!r}",
                value, field,
            )
        elif kind == "phone" and E164.fullmatch(value) is None:
            yield Problem(
                path, "INVALID_PHONE_NUMBER",
                f"{path} must be in E.164 format, e.g. +15555550111", value, field,
            )
    elif kind == "number":
        if not _is_number(value):
            yield Problem(path, "INVALID_FIELD_VALUE", wrong, value, field)
    elif kind == "text_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            yield Problem(path, "INVALID_FIELD_VALUE", wrong, value, field)
    elif kind == "text_or_object" and isinstance(value, str):
        return
    elif not isinstance(value, dict):
        yield Problem(path, "INVALID_FIELD_VALUE", wrong, value, field)
    else:
        yield from _object_problems(field, value)


def _object_problems(field: Field, obj: dict[str, Any]) -> Iterator[Problem]:
    for key, value in obj.items():
        sub = child(field, key)
        if sub is None:
            path = f"{field.path}.{key}" if field.path else str(key)
            where = f"{field.path} has no key {key!r}" if field.path else (
                f"{key} is not a known account field"
            )
            yield Problem(path, "INVALID_FIELD_VALUE", where, value, unknown=(field.path, key))
        else:
            yield from value_problems(sub, value)


def row_problems(row: Mapping[str, Any]) -> Iterator[Problem]:
    """Every problem the bulk endpoint finds in ``row`` (a JSON object), ``externalId`` aside
    (it is the match key: the caller checks it first).

    >>> [(p.path, p.code) for p in row_problems({"createdAt": "x", "phoneNumber": "555"})]
    [('createdAt', 'FIELD_NOT_UPDATABLE'), ('phoneNumber', 'INVALID_PHONE_NUMBER')]
    """
    rest: dict[str, Any] = {}
    for key, value in row.items():
        if key == "externalId":
            continue
        if key in READ_ONLY:
            yield Problem(key, "FIELD_NOT_UPDATABLE", f"{key} is read-only", value)
        else:
            rest[key] = value
    yield from _object_problems(ROOT, rest)
