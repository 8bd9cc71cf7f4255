"""Plain words for the names of problems: the checks behind ``failure_cases["check"]`` (local
validation of both APIs) and the per-row codes Cora answers with (``cora_code``).

The codes stay what they are in frames, for code to filter on; these words are what a
person reads in the preview widget. An unlisted name still reads as words.

>>> problem_name("e164")
'phone number not in international form'
>>> problem_name("MISSING_REQUIRED_FIELD")
'missing what a new account needs'
>>> problem_name("some_new_check")
'some new check'
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["PROBLEM_NAMES", "problem_name"]

_PHONE_FORM = "phone number not in international form"
_WRONG_KIND = "wrong kind of value"

#: Check name or server code → what it means, in words.
PROBLEM_NAMES = MappingProxyType(
    {
        # Local checks on Cora frames.
        "type": _WRONG_KIND,
        "non_empty": "blank id",
        "unique": "id used twice",
        "e164": _PHONE_FORM,
        "phone": "not readable as a phone number",
        "email": "not an e-mail address",
        "number": "not a number",
        "string_list": "not a list of text",
        "date": "not a date",
        "object": "not the shape this field needs",
        "string_or_object": "not the shape this field needs",
        "structure": "not the shape this field needs",
        "json": "cannot be sent as JSON",
        "required": "missing value",
        "required_column": "missing column",
        "read_only": "column the server manages",
        "unknown_column": "unknown column",
        "column_name": "unusable column name",
        "duplicate_column": "column name used twice",
        "check_error": "column could not be checked",
        "conflict": "clashes with its dotted columns",
        "unique_index": "row label used twice",
        # Local checks on Recotap frames.
        "not_nullable": "missing value",
        "valid_domain": "not a domain",
        "valid_external_id": "unusable id",
        "column_in_dataframe": "missing column",
        # What Cora answers for one row.
        "MISSING_REQUIRED_FIELD": "missing what a new account needs",
        "INVALID_PHONE_NUMBER": _PHONE_FORM,
        "INVALID_FIELD_VALUE": _WRONG_KIND,
        "FIELD_NOT_UPDATABLE": "field the server manages",
        "DUPLICATE_EXTERNAL_ID": "id sent twice in one request",
    }
)


def problem_name(code: object) -> str:
    """The words for one check name or server code (blank for a missing one)."""
    if code is None or code != code:  # None or NaN
        return ""
    text = str(code)
    return PROBLEM_NAMES.get(text) or text.replace("_", " ").lower()
