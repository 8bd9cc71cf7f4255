"""Validation advice in the words of the command line.

The schemas speak to someone holding a DataFrame: ``df.drop(columns=[...])``,
``columns={...}``, ``on_invalid='skip'``. On the command line the same fixes are flags
(``--drop-columns``, ``--columns MAP.json``, ``--mode``, ``--overwrite``, ``--phone-region``) or
an edit of the file. :func:`for_command_line` rewrites a message's advice; the rest of the
message (what is wrong, with which value) is kept word for word.

>>> for_command_line("updatedAt is read-only. Drop the column (df.drop(columns=['updatedAt'])).")
'updatedAt is read-only. Leave the column out (--drop-columns updatedAt).'
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable

import pandas as pd

__all__ = ["for_command_line", "report_for_command_line", "results_for_command_line"]

_QUOTED = r"(?:'[^'\\]*(?:\\.[^'\\]*)*'|\"[^\"\\]*(?:\\.[^\"\\]*)*\")"


def _text(quoted: str) -> str:
    value = ast.literal_eval(quoted)
    return value if isinstance(value, str) else str(value)


def _rename(m: re.Match[str]) -> str:
    pair = json.dumps({_text(m["src"]): _text(m["dst"])}, ensure_ascii=False)
    return f"--columns MAP.json, the file holding {pair}"


def _drop(column: str | None) -> Callable[[re.Match[str]], str]:
    def say(m: re.Match[str]) -> str:
        named = f" {column}" if column else ""
        return f"{m['lead']}leave it out (--drop-columns{named})"

    return say


#: (pattern, replacement) pairs, applied in order. Each names the pandas idiom a schema
#: message suggests; ``tests/test_cli_hints.py`` checks every one still matches a message
#: the schemas really produce, so a rewording there cannot leak pandas into the CLI.
_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], str | None], str]]] = [
    (re.compile(rf"Drop the column \(df\.drop\(columns=\[(?P<name>{_QUOTED})\]\)\)"),
     lambda m, c: f"Leave the column out (--drop-columns {_text(m['name'])})"),
    (re.compile(rf"columns=\{{(?P<src>{_QUOTED}): (?P<dst>{_QUOTED})\}}"),
     lambda m, c: _rename(m)),
    (re.compile(r"(?P<lead>,? or )drop (?:the column|it)"),
     lambda m, c: _drop(c)(m)),
    (re.compile(r"\(e\.g\. df\[col\]\.astype\(str\)\)"),
     lambda m, c: "(write them as text in the file)"),
    (re.compile(rf"Read the column as text: pd\.read_csv\(\.\.\., dtype=\{{{_QUOTED}: str\}}\)"),
     lambda m, c: "Store the column as text in the file (CSV cells are read as text)"),
    (re.compile(rf"convert with recocora\.normalize_phone\(df\[{_QUOTED}\], "
                rf"region=(?P<region>{_QUOTED})\)"),
     lambda m, c: f"pass --phone-region {_text(m['region'])} to convert numbers written "
                  "like (512) 555-0142"),
    (re.compile(r"keep one,? (?:e\.g\. )?\(?df\.loc\[:, ~df\.columns\.duplicated\(\)\]\)?"),
     lambda m, c: "keep one (leave the other out with --drop-columns, or change --columns)"),
    (re.compile(r"Keep one row per id, e\.g\. df\.drop_duplicates\([^)]*\)"),
     lambda m, c: "Keep one row per id in the file"),
    (re.compile(r"mode='(?P<mode>\w+)'"), lambda m, c: f"--mode {m['mode']}"),
    (re.compile(r"\boverwrite=True\b"), lambda m, c: "--overwrite"),
]


def for_command_line(message: str, column: str | None = None) -> str:
    """``message`` with its pandas advice said as command-line flags; ``column`` (the
    failure's column) lets "drop it" name the column to leave out.

    >>> for_command_line("'Phone #' is not a Cora account field; did you mean "
    ...                  "'phoneNumber'? Rename it with columns={'Phone #': 'phoneNumber'}, "
    ...                  "or drop the column.", "Phone #")[-69:]
    '{"Phone #": "phoneNumber"}, or leave it out (--drop-columns Phone #).'
    """
    for pattern, replace in _RULES:
        message = pattern.sub(lambda m, r=replace: r(m, column), message)  # type: ignore[misc]
    return message


def report_for_command_line(failure_cases: pd.DataFrame) -> pd.DataFrame:
    """A failure-cases frame whose messages speak command line (a copy).

    >>> fc = pd.DataFrame({"index": [None], "column": ["updatedAt"], "check": ["read_only"],
    ...                    "value": [None], "message": ["Drop the column "
    ...                                                 "(df.drop(columns=['updatedAt']))."]})
    >>> report_for_command_line(fc)["message"].tolist()
    ['Leave the column out (--drop-columns updatedAt).']
    """
    out: pd.DataFrame = failure_cases.copy()
    out["message"] = [
        for_command_line(str(m), None if c is None or pd.isna(c) else str(c))
        for m, c in zip(out["message"], out["column"], strict=True)
    ]
    return out


def results_for_command_line(result: pd.DataFrame, column: str) -> pd.DataFrame:
    """``result`` with the messages in ``column`` (``cora_message`` …) speaking command line.

    >>> res = pd.DataFrame({"recotap_message": ["holds 'crm-9'; pass overwrite=True"]})
    >>> results_for_command_line(res, "recotap_message")["recotap_message"].tolist()
    ["holds 'crm-9'; pass --overwrite"]
    """
    if column not in result.columns:
        return result
    out: pd.DataFrame = result.copy()
    messages = out[column].astype(object)
    # Rows share a few messages: each distinct one is rewritten once.
    said = {m: for_command_line(m) for m in messages.dropna().unique() if isinstance(m, str)}
    if said:
        rewritten = messages.map(said)
        out[column] = rewritten.where(rewritten.notna(), messages)
    out.attrs = dict(result.attrs)
    return out
