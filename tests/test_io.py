"""Files for the command line: formats, text-safe reading, and paths checked before use."""

from __future__ import annotations

import doctest
import string
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recocora._io as io
from recocora._io import (
    UsageError,
    check_writable,
    file_format,
    read_column_map,
    read_cora_file,
    read_frame,
    write_frame,
)


def test_file_format_by_extension() -> None:
    assert [file_format(p) for p in ("a.CSV", "a.csv.gz", "a.tsv", "a.parquet", "a.pq", "-")] \
        == ["csv", "csv", "tsv", "parquet", "parquet", "csv"]


_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "+-. ,'\"#/é", min_size=1,
                max_size=12).filter(lambda s: s.strip() == s)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(_TEXT, min_size=1, max_size=8), suffix=st.sampled_from([".csv", ".tsv"]))
def test_text_cells_survive_a_round_trip_through_a_file(values: list[str], suffix: str) -> None:
    # Ids and phone numbers such as '007', '+1 512', 'NA' or '1e5' must come back as written.
    frame = pd.DataFrame({"externalId": values, "bucket": values[::-1]})
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"rows{suffix}")
        write_frame(frame, path)
        back = read_frame(path)
    assert back["externalId"].tolist() == values
    assert back["bucket"].tolist() == values[::-1]




def test_a_writable_path_passes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    check_writable(str(tmp_path / "res.csv"), "--out")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.parquet").write_bytes(b"x")
    check_writable(str(tmp_path / "old.parquet"), "--out")
    assert (tmp_path / "old.parquet").read_bytes() == b"x"
    check_writable("-", "--out")
    check_writable(str(tmp_path / "run.db"), "--journal", table=False)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("missing/res.csv", "--out {p}: the folder {d}/missing does not exist"),
        ("res.xlsx", "extension"),
        ("folder.csv", "--out {p} is a folder"),
    ],
)
def test_an_unwritable_path_is_refused_by_name(tmp_path: Path, name: str, says: str) -> None:
    (tmp_path / "folder.csv").mkdir()
    path = str(tmp_path / name)
    with pytest.raises(UsageError) as info:
        check_writable(path, "--out")
    assert says.format(p=path, d=tmp_path) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv"]


def test_a_column_map_must_be_one_object_of_names(tmp_path: Path) -> None:
    good = tmp_path / "map.json"
    good.write_text('{"File #": "externalId"}', encoding="utf-8")
    assert read_column_map(str(good)) == {"File #": "externalId"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"File #": 3}', encoding="utf-8")
    with pytest.raises(UsageError, match="one JSON object"):
        read_column_map(str(bad))


def test_docstring_examples() -> None:
    assert doctest.testmod(io).failed == 0


def test_the_accounts_file_is_read_as_the_cora_flags_say(tmp_path: Path) -> None:
    source = tmp_path / "export.csv"
    source.write_text(
        "File #,Tel,currentBalance,updatedAt,address.zip\n"
        "007,(512) 555-0142,12.5,2025-01-31,02134\n"
        "008,ask front desk,,2025-01-31,\n",
        encoding="utf-8",
    )
    columns = {"File #": "externalId", "Tel": "phoneNumber"}
    frame = read_cora_file(str(source), columns, drop=["updatedAt"], phone_region="US")
    assert frame.columns.tolist() == ["File #", "Tel", "currentBalance", "address.zip"]
    assert frame["File #"].tolist() == ["007", "008"]  # text keeps its leading zeros
    assert frame["address.zip"].tolist()[0] == "02134"
    assert frame["currentBalance"].tolist()[0] == 12.5  # a number field stays a number
    assert frame["Tel"].tolist() == ["+15125550142", "ask front desk"]  # left for validation
    for kwargs, says in (
        ({"drop": ["nope"]}, "--drop-columns names 'nope'"),
        ({"phone_region": "US"}, "--phone-region converts the 'phoneNumber' column"),
    ):
        with pytest.raises(UsageError, match=says):
            read_cora_file(str(source), None, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--phone-region XX"):
        read_cora_file(str(source), columns, phone_region="XX")
    with pytest.raises(UsageError, match="--columns renames 'Phone'"):
        read_cora_file(str(source), {"Phone": "phoneNumber"})
