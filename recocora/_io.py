"""Files for the command line: read a frame, write results, and check a path before use.

CSV (``.csv``, ``.tsv``, compressed ``.csv.gz`` …) or Parquet (``.parquet``, ``.pq``),
chosen by the extension, in and out; ``-`` is CSV on standard output. Every path a command
will write is checked with :func:`check_writable` before its first request, so a typo in a
folder name never costs a run whose results then cannot be saved.

>>> file_format("accounts.csv.gz"), file_format("out.parquet"), file_format("-")
('csv', 'parquet', 'csv')
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson
import pandas as pd

from ._report import one_line
from .cora._fields import field_of
from .cora._phones import normalize_phone
from .errors import ConfigError

__all__ = [
    "UsageError",
    "check_writable",
    "emit",
    "file_format",
    "read_column_map",
    "read_cora_file",
    "read_frame",
    "save_results",
    "write_frame",
]

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".tsv", ".txt")
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")


class UsageError(Exception):
    """A problem with the command line or its files: exit code 2, one line, no traceback.

    Internal to the command: ``main`` turns it into that line, so it never reaches a user's
    code (which is why it is not one of :mod:`recocora.errors`).
    """


def file_format(path: str) -> str:
    """``"parquet"``, ``"csv"`` or ``"tsv"`` from a file name's extension (``-`` is CSV).

    >>> file_format("a.TSV")
    'tsv'
    """
    if path == "-":
        return "csv"
    name = Path(path).name.lower()
    for ext in _COMPRESSED:
        if name.endswith(ext) and not name.endswith(_PARQUET):
            name = name[: -len(ext)]
            break
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith(_CSV):
        return "csv"
    raise UsageError(
        f"cannot tell the format of {path!r} from its extension: use .csv (or .tsv, "
        ".csv.gz) or .parquet"
    )


def check_writable(path: str, flag: str, *, table: bool = True) -> None:
    """Refuse, before anything is sent, a path the command could not write later.

    ``flag`` names the option in the message (``--out``, ``--journal``). With ``table``
    the extension must say CSV or Parquet. The folder must exist and take a new file; an
    existing file must be writable. Nothing is left behind: a probe file is removed at once.

    >>> try:
    ...     check_writable("no/such/folder/results.csv", "--out")
    ... except UsageError as err:
    ...     print(str(err)[:74])
    --out no/such/folder/results.csv: the folder no/such/folder does not exist
    """
    if path == "-":
        return
    if table:
        file_format(path)
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise UsageError(
            f"{flag} {path}: the folder {folder} does not exist; create it first or choose "
            "another path"
        )
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise UsageError(f"{flag} {path}: the file exists and cannot be written")
        return
    try:
        # Creating the file is the only check that answers for every file system.
        with open(target, "xb"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot create it ({one_line(exc)})") from None
    target.unlink()


def read_frame(path: str, text: Callable[[str], bool] = lambda column: True) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file into a DataFrame with a 0-based row index.

    CSV columns for which ``text(column)`` is true are read as text, so ids, zip codes and
    phone numbers keep their leading zeros and ``+``; only empty cells are missing (``NA``
    or ``null`` stay text). Parquet keeps its own types.

    >>> read_frame("accounts.csv").columns.tolist()  # doctest: +SKIP
    ['externalId', 'bucket']
    """
    fmt = file_format(path)
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        if fmt == "parquet":
            table: pd.DataFrame = pd.read_parquet(source).reset_index(drop=True)
            return table
        sep = "\t" if fmt == "tsv" else ","
        header = pd.read_csv(source, sep=sep, nrows=0, encoding="utf-8-sig").columns
        dtypes: dict[Any, Any] = {c: str for c in header if text(str(c))}
        frame = pd.read_csv(
            source, sep=sep, dtype=dtypes, keep_default_na=False, na_values=[""],
            encoding="utf-8-sig",
        )
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(f"cannot read {path}: {one_line(exc)}") from None
    return frame


def read_cora_file(
    path: str,
    columns: Mapping[str, str] | None = None,
    *,
    drop: Sequence[str] = (),
    phone_region: str | None = None,
) -> pd.DataFrame:
    """The accounts file of ``recocora cora upsert``, shaped as its flags say.

    CSV cells are read as text except in number fields (``currentBalance``), after the
    ``columns`` renaming; ``drop`` (``--drop-columns``) leaves columns out; ``phone_region``
    (``--phone-region``) converts the phone column's national numbers to E.164 and leaves
    what it cannot read for validation to report.

    >>> read_cora_file("export.csv", drop=["updatedAt"], phone_region="US")  # doctest: +SKIP
    """

    def text(column: str) -> bool:
        field = field_of((columns or {}).get(column, column))
        return field is None or field.kind != "number"

    frame = read_frame(path, text)
    renamed = [c for c in (columns or {}) if c not in frame.columns]
    if renamed:
        raise UsageError(
            f"--columns renames {', '.join(map(repr, renamed))}, which {path} does not have; "
            f"its columns are {', '.join(map(str, frame.columns[:30]))}"
        )
    absent = [c for c in drop if c not in frame.columns]
    if absent:
        raise UsageError(
            f"--drop-columns names {', '.join(map(repr, absent))}, which {path} does not "
            f"have; its columns are {', '.join(map(str, frame.columns[:30]))}"
        )
    if drop:
        frame = frame.drop(columns=list(drop))
    if phone_region:
        source = next((c for c, f in (columns or {}).items() if f == "phoneNumber"),
                      "phoneNumber")
        if source not in frame.columns:
            raise UsageError(f"--phone-region converts the {source!r} column, which {path} "
                             "does not have")
        try:
            phones = normalize_phone(frame[source], region=phone_region, errors="keep")
        except ConfigError:
            raise UsageError(f"--phone-region {phone_region}: not a country code phone "
                             "numbers are known by; use an ISO 3166 code such as US or GB"
                             ) from None
        frame = frame.assign(**{source: phones})
    return frame


def _jsonable(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells holding lists or dicts (details, changes) become JSON text, so CSV and Parquet
    both hold them as one readable column."""
    out: pd.DataFrame = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype != object:
            continue
        nested = series.map(lambda v: isinstance(v, (list, dict)))
        if nested.any():
            out[column] = series.map(
                lambda v: orjson.dumps(v, default=str).decode() if isinstance(v, (list, dict))
                else v
            )
    return out


def write_frame(frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` as CSV/TSV or Parquet, chosen by ``path``'s extension; ``-`` writes
    CSV to standard output. Nested cells are written as JSON text.

    >>> write_frame(result, "results.parquet")  # doctest: +SKIP
    """
    fmt = file_format(path)
    flat = _jsonable(frame)
    try:
        if path == "-":
            flat.to_csv(sys.stdout, index=False)
            sys.stdout.flush()
        elif fmt == "parquet":
            flat.to_parquet(path, index=False)
        else:
            flat.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(f"cannot write {path}: {one_line(exc)}") from None


def read_column_map(path: str | None) -> dict[str, str] | None:
    """The ``--columns`` file: one JSON object renaming the file's columns to fields.

    >>> read_column_map(None) is None
    True
    """
    if path is None:
        return None
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the --columns file: {one_line(exc)}") from None
    except ValueError as exc:
        raise UsageError(f"--columns {path} is not valid JSON: {one_line(exc)}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise UsageError(
            f'--columns {path} must hold one JSON object of column names to fields, e.g. '
            '{"File #": "externalId", "Phone": "phoneNumber"}'
        )
    return mapping


def emit(lines: Iterable[str], stream: TextIO) -> None:
    """Print ``lines`` to ``stream`` and flush (reports interleave with progress bars)."""
    for line in lines:
        print(line, file=stream)
    stream.flush()


def save_results(result: pd.DataFrame, path: str | None, report: TextIO,
                 partial: bool = False) -> None:
    """Write a result frame to ``path`` (nothing when ``None``) with a leading ``row`` column
    (the 0-based data row of the input file), and say where on ``report``.

    >>> save_results(res, "results.csv", sys.stdout)  # doctest: +SKIP
    Results (3 rows, one per input row, by 0-based row number): results.csv
    """
    if path is None:
        return
    out: pd.DataFrame = result.copy()
    out.insert(0, "row", result.index)
    write_frame(out, path)
    where = "standard output" if path == "-" else path
    what = "Partial results" if partial else "Results"
    print(f"{what} ({len(result):,} rows, one per input row, by 0-based row number): "
          f"{where}", file=report)
