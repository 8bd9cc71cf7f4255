"""Validation advice on the command line: flags and file edits, never pandas code."""

from __future__ import annotations

import doctest
import re
from collections.abc import Callable

import pandas as pd
import pytest

import recocora._cli_hints as cli_hints
from recocora import RecotapClient
from recocora._cli_hints import _RULES, for_command_line, report_for_command_line
from recocora.cora.accessor import CoraAccessor
from recocora.sandbox import Sandbox

#: Frames that make the Cora schema give each piece of advice it has.
FRAMES = {
    "read-only columns": (pd.DataFrame({"externalId": ["a"], "updatedAt": ["x"], "id": ["y"]}),
                          "upsert"),
    "unknown columns": (pd.DataFrame({"externalId": ["a"], "phone": ["+15125550100"],
                                      "legacy_no": ["1"]}), "upsert"),
    "a number in a text field": (pd.DataFrame({"externalId": ["a"], "bucket": [1.5]}), "upsert"),
    "a number in a code field": (pd.DataFrame({"externalId": ["a"], "address.zip": [2134.5]}),
                                 "upsert"),
    "a national phone number": (pd.DataFrame({"externalId": ["a"],
                                              "phoneNumber": ["512.555.0142"]}), "upsert"),
    "a repeated column": (pd.DataFrame([["a", "b", "c"]],
                                       columns=["externalId", "bucket", "bucket"]), "upsert"),
    "a repeated id": (pd.DataFrame({"externalId": ["a", "a"]}), "upsert"),
    "no id column": (pd.DataFrame({"bucket": ["x"]}), "upsert"),
    "create without required columns": (pd.DataFrame({"externalId": ["a"]}), "create"),
}
PANDAS = re.compile(r"df\.|df\[|pd\.|columns=\{|recocora\.|mode='|=True")


def _cases() -> pd.DataFrame:
    found = [CoraAccessor(frame).validate(mode=mode) for frame, mode in FRAMES.values()]
    return pd.concat(found, ignore_index=True)


def test_every_piece_of_schema_advice_is_said_as_the_command_line_says_it() -> None:
    cases = _cases()
    assert cases["message"].str.contains(PANDAS).all()  # the schema speaks pandas
    said = report_for_command_line(cases)
    leaks = [m for m in said["message"] if PANDAS.search(m)]
    assert not leaks, leaks
    assert said["index"].tolist() == cases["index"].tolist()


def _held_elsewhere_message(sb: Sandbox, client: RecotapClient) -> str:
    sb.add_recotap_account(domain="held.example", name="Held", external_id="crm-1")
    crm = pd.DataFrame({"domain": ["held.example"], "externalId": ["crm-2"]})
    res = crm.recotap.map_ids(client=client, progress=False)
    assert res["recotap_status"].tolist() == ["already_mapped"]
    return str(res["recotap_message"].iloc[0])


def test_every_rule_still_matches_advice_really_given(
    sb: Sandbox, rtp_client_for: Callable[..., RecotapClient]
) -> None:
    # A rewording at the source must fail here rather than leak pandas into the CLI.
    held = _held_elsewhere_message(sb, rtp_client_for())
    messages = [*_cases()["message"].tolist(), held]
    for pattern, _ in _RULES:
        assert any(pattern.search(m) for m in messages), pattern.pattern
    assert not PANDAS.search(for_command_line(held)) and "--overwrite" in for_command_line(held)


@pytest.mark.parametrize(
    ("message", "column", "said"),
    [
        ("updatedAt is read-only. Drop the column (df.drop(columns=['updatedAt'])).", None,
         "updatedAt is read-only. Leave the column out (--drop-columns updatedAt)."),
        ("Rename it with columns={'phone': 'phoneNumber'}, or drop the column.", "phone",
         'Rename it with --columns MAP.json, the file holding {"phone": "phoneNumber"}, or '
         "leave it out (--drop-columns phone)."),
        ("put it under metadata (columns={\"it's\": 'metadata.its'}), or drop it.", None,
         'put it under metadata (--columns MAP.json, the file holding {"it\'s": '
         '"metadata.its"}), or leave it out (--drop-columns).'),
        ("convert with recocora.normalize_phone(df['phoneNumber'], region='GB')", None,
         "pass --phone-region GB to convert numbers written like (512) 555-0142"),
        ("add it, or use mode='upsert' if these accounts may already exist", None,
         "add it, or use --mode upsert if these accounts may already exist"),
        ("nothing to change here", "x", "nothing to change here"),
    ],
)
def test_examples(message: str, column: str | None, said: str) -> None:
    assert for_command_line(message, column) == said


def test_docstring_examples() -> None:
    assert doctest.testmod(cli_hints).failed == 0
